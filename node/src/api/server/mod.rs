//! The daemon's HTTP API (axum): routes under `/v1/`, `/health`, `/ready`, `/metrics`,
//! `/openapi.json`, and the MCP server at `/mcp` ([`crate::mcp`]). Handlers are thin: they
//! decode the request, call [`Node`] and encode the answer; every failure is an [`ApiError`]
//! sent as `{"error": {"code", "message"}}`.
//!
//! # Layout
//! - this file: the node's own routes (health, readiness, metrics, the OpenAPI document, node
//!   facts, configuration, jobs, logs) and [`ApiDoc`];
//! - `collections`, `points`, `blocks`, `p2p`: the handlers of each resource;
//! - `routes`: the route table, its layers, and serving it.

use std::{
    future::{Future, IntoFuture},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{header, HeaderMap, Method},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{MethodFilter, MethodRouter},
    Json, Router,
};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use tokio_util::io::{ReaderStream, StreamReader};
use utoipa::OpenApi;

use super::{
    error::ApiError,
    extract::{ApiBytes, ApiJson, ApiPath, ApiQuery, PointsJson, SearchJson},
    guard::{self, BodyKind, Gate, Kind, Limits, RouteRules},
    openapi::{BearerScheme, ErrorResponses},
    types::*,
};
use crate::{
    limits::callers::Caller,
    ops::{self, Node},
};

mod blocks;
mod collections;
mod p2p;
mod points;
mod routes;

use self::{blocks::*, collections::*, p2p::*, points::*};
pub use routes::{router, serve};

/// The CAR media type.
pub const CAR_MEDIA_TYPE: &str = "application/vnd.ipld.car";

#[derive(Debug, Clone)]
struct AppState {
    node: Node,
    /// Turns true when the server starts shutting down (ends event streams).
    stopping: tokio::sync::watch::Receiver<bool>,
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/health", responses((status = 200, description = "alive")))]
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness, part by part: the block store answers, every collection is open (index loaded,
/// log replayed), the peer-to-peer layer runs. 503 names the parts not ready.
#[utoipa::path(get, path = "/ready", responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn ready(State(s): State<AppState>) -> Response {
    let readiness = s.node.readiness().await;
    let status = if readiness.is_ready() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.node.metrics_text().await,
    )
        .into_response()
}

/// This OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "the OpenAPI document", content_type = "application/json")))]
async fn openapi() -> Response {
    match ApiDoc::openapi().to_pretty_json() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

/// Node facts: peer id, version, repository, store totals.
#[utoipa::path(get, path = "/v1/node", responses((status = 200, body = NodeInfo)))]
async fn node_info(State(s): State<AppState>) -> ApiResult<NodeInfo> {
    Ok(Json(s.node.node_info().await?))
}

/// The effective configuration (file, then environment, then flags).
#[utoipa::path(get, path = "/v1/config", responses((status = 200, description = "the configuration as JSON")))]
async fn config(State(s): State<AppState>) -> Json<crate::repo::Config> {
    Json(s.node.config().redacted())
}

/// Long operations running now, with their progress.
#[utoipa::path(get, path = "/v1/jobs", responses((status = 200, body = JobList)))]
async fn jobs(State(s): State<AppState>) -> Json<JobList> {
    Json(s.node.jobs())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    level: Option<String>,
}

/// The node's recent log events, then new ones as they happen: server-sent events named
/// `log`, each a JSON `LogLine`. The stream ends when the daemon stops.
#[utoipa::path(get, path = "/v1/logs", params(("level" = Option<String>, Query, description = "least severe level sent: error, warn, info (default), debug or trace")),
    responses((status = 200, description = "text/event-stream of LogLine objects", content_type = "text/event-stream"), (status = 400, body = ErrorBody)))]
async fn logs(
    State(s): State<AppState>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Response, ApiError> {
    use super::logs::{at_least, feed};
    use axum::response::sse::{Event, KeepAlive, Sse};
    let least: tracing::Level = query
        .level
        .as_deref()
        .unwrap_or("info")
        .parse()
        .map_err(|_| ApiError::bad_request("level must be error, warn, info, debug or trace"))?;
    let (recent, live) = feed().subscribe();
    let live = futures::stream::unfold(live, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(line) => return Some((line, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let mut stopping = s.stopping.clone();
    let stopped = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let events = futures::stream::iter(recent)
        .chain(live)
        .filter(move |line| futures::future::ready(at_least(line, least)))
        .map(|line| Event::default().event("log").json_data(&line))
        .take_until(stopped);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such API route; /openapi.json lists them")
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::method_not_allowed(format!(
        "{} does not take {method}; /openapi.json lists the methods of every route",
        uri.path()
    ))
}

/// The OpenAPI document, generated from the handlers and types above.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "ipvec node API",
        description = "HTTP/JSON API of an ipvec node. Errors are {\"error\": {\"code\", \"message\"}}."
    ),
    modifiers(&BearerScheme, &ErrorResponses),
    security((), ("bearer" = [])),
    paths(
        health,
        ready,
        metrics,
        openapi,
        node_info,
        config,
        jobs,
        logs,
        id,
        peers,
        connect,
        denied_peers,
        deny_peer,
        allow_peer,
        providers,
        list_collections,
        create_collection,
        fetch_collection,
        join_collection,
        leave_collection,
        membership,
        collection_info,
        drop_collection,
        collection_log,
        set_quota,
        writers,
        shard_map,
        add_writer,
        remove_writer,
        upsert,
        delete_points,
        get_point,
        points_page,
        search,
        search_batch,
        export_collection,
        import_collection,
        dag_put,
        dag_fetch,
        dag_get,
        dag_export,
        dag_import,
        block_stat,
        pins,
        pin_add,
        pin_rm,
        gc,
        backup_create,
        backup_restore
    )
)]
pub struct ApiDoc;
