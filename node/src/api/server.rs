//! The daemon's HTTP API (axum): routes under `/v1/`, `/health`, `/ready`, `/metrics`,
//! `/openapi.json`, and the MCP server at `/mcp` ([`crate::mcp`]). Handlers are thin: they
//! decode the request, call [`Node`] and encode the answer; every failure is an [`ApiError`]
//! sent as `{"error": {"code", "message"}}`.

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

/// Every collection.
#[utoipa::path(get, path = "/v1/collections", responses((status = 200, body = CollectionList)))]
async fn list_collections(State(s): State<AppState>) -> ApiResult<CollectionList> {
    Ok(Json(s.node.list_collections().await?))
}

/// Creates a collection.
#[utoipa::path(post, path = "/v1/collections", request_body = CreateCollection,
    responses((status = 200, body = CollectionInfo), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_collection(
    State(s): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    ApiJson(request): ApiJson<CreateCollection>,
) -> ApiResult<CollectionInfo> {
    let token = caller.as_ref().and_then(|c| c.token_name());
    Ok(Json(s.node.create_collection_by(request, token).await?))
}

/// A collection's settings, counts and current manifest CID.
#[utoipa::path(get, path = "/v1/collections/{name}", params(("name" = String, Path, description = "collection name")),
    responses((status = 200, body = CollectionInfo), (status = 404, body = ErrorBody)))]
async fn collection_info(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<CollectionInfo> {
    Ok(Json(s.node.collection_info(&name).await?))
}

/// Drops a collection (its blocks go at the next gc).
#[utoipa::path(delete, path = "/v1/collections/{name}", params(("name" = String, Path, description = "collection name")),
    responses((status = 200, body = Dropped), (status = 404, body = ErrorBody)))]
async fn drop_collection(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Dropped> {
    Ok(Json(s.node.drop_collection(&name).await?))
}

/// A collection's versions, newest first.
#[utoipa::path(get, path = "/v1/collections/{name}/log", params(("name" = String, Path, description = "collection name")),
    responses((status = 200, body = VersionList), (status = 404, body = ErrorBody)))]
async fn collection_log(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<VersionList> {
    Ok(Json(s.node.collection_log(&name).await?))
}

/// Sets a collection's own quota on this node (0: none); `limits.collection_max_*` hold too.
#[utoipa::path(put, path = "/v1/collections/{name}/quota", params(("name" = String, Path, description = "collection name")),
    request_body = CollectionQuota,
    responses((status = 200, body = CollectionQuota), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set_quota(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(quota): ApiJson<CollectionQuota>,
) -> ApiResult<CollectionQuota> {
    Ok(Json(s.node.set_quota(&name, quota).await?))
}

/// Who holds each shard of a collection: the peers the DHT names as its providers (this node
/// included when it holds it), which are alive, against the replication the manifest asks for.
#[utoipa::path(get, path = "/v1/collections/{name}/shards", params(("name" = String, Path, description = "collection name")),
    responses((status = 200, body = ShardMap), (status = 404, body = ErrorBody)))]
async fn shard_map(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<ShardMap> {
    Ok(Json(s.node.shard_map(&name).await?))
}

/// Makes this node a member of a collection's serving set: it registers the collection
/// (holding no shard yet) unless held here, announces itself with its capacity, and fetches
/// the shards placement gives it.
#[utoipa::path(post, path = "/v1/collections/join", request_body = JoinCollection,
    responses((status = 200, body = MembershipInfo), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn join_collection(
    State(s): State<AppState>,
    ApiJson(request): ApiJson<JoinCollection>,
) -> ApiResult<MembershipInfo> {
    Ok(Json(s.node.join(request).await?))
}

/// Hands this node's shards of a collection over to their new holders, then drops it here
/// (the answer comes at once; `membership` shows the handover).
#[utoipa::path(post, path = "/v1/collections/{name}/leave", params(("name" = String, Path, description = "collection name or id")),
    responses((status = 200, body = MembershipInfo), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn leave_collection(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<MembershipInfo> {
    Ok(Json(s.node.leave(&name).await?))
}

/// The members of a collection this node hears, and where each shard stands on this node
/// when it is one.
#[utoipa::path(get, path = "/v1/collections/{name}/membership", params(("name" = String, Path, description = "collection name")),
    responses((status = 200, body = MembershipInfo), (status = 404, body = ErrorBody)))]
async fn membership(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<MembershipInfo> {
    Ok(Json(s.node.membership(&name).await?))
}

/// The keys a collection allows to publish versions, the owner's first.
#[utoipa::path(get, path = "/v1/collections/{name}/writers", params(("name" = String, Path, description = "collection name")),
    responses((status = 200, body = WriterList), (status = 404, body = ErrorBody)))]
async fn writers(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<WriterList> {
    Ok(Json(s.node.writers(&name).await?))
}

/// Allows a key (a peer id, `12D3KooW…`) to publish versions of a collection: a new version
/// signed by the owner, so only the owner's node can (a replica answers 409 `read_only`, another writer 400).
#[utoipa::path(put, path = "/v1/collections/{name}/writers/{key}", params(("name" = String, Path, description = "collection name"), ("key" = String, Path, description = "the writer's key as a peer id")),
    responses((status = 200, body = WriterList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn add_writer(
    State(s): State<AppState>,
    ApiPath((name, key)): ApiPath<(String, String)>,
) -> ApiResult<WriterList> {
    Ok(Json(s.node.change_writer(&name, &key, true).await?))
}

/// Stops allowing a key to publish versions of a collection (the owner's key always stays):
/// peers refuse its later heads; what it wrote before stays.
#[utoipa::path(delete, path = "/v1/collections/{name}/writers/{key}", params(("name" = String, Path, description = "collection name"), ("key" = String, Path, description = "the writer's key as a peer id")),
    responses((status = 200, body = WriterList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn remove_writer(
    State(s): State<AppState>,
    ApiPath((name, key)): ApiPath<(String, String)>,
) -> ApiResult<WriterList> {
    Ok(Json(s.node.change_writer(&name, &key, false).await?))
}

/// Upserts a batch of points; answered once the batch is durable (all or nothing).
#[utoipa::path(put, path = "/v1/collections/{name}/points", params(("name" = String, Path, description = "collection name")),
    request_body = UpsertPoints,
    responses((status = 200, body = WriteResult), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn upsert(
    State(s): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    ApiPath(name): ApiPath<String>,
    PointsJson(points): PointsJson,
) -> ApiResult<WriteResult> {
    let token = caller.as_ref().and_then(|c| c.token_name());
    Ok(Json(s.node.upsert_by(&name, points, token).await?))
}

/// Deletes points by id.
#[utoipa::path(post, path = "/v1/collections/{name}/points/delete", params(("name" = String, Path, description = "collection name")),
    request_body = DeletePoints,
    responses((status = 200, body = WriteResult), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_points(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<DeletePoints>,
) -> ApiResult<WriteResult> {
    Ok(Json(s.node.delete(&name, request.ids).await?))
}

/// One point. `{id}`: digits alone are an integer id, a JSON string literal (`"42"`, percent-encoded) a string id, anything else a string id as it is.
#[utoipa::path(get, path = "/v1/collections/{name}/points/{id}",
    params(("name" = String, Path, description = "collection name"), ("id" = String, Path, description = "point id: digits are an integer id; a JSON string literal such as \"42\" (percent-encoded) is a string id; anything else is a string id as written")),
    responses((status = 200, body = PointOut), (status = 404, body = ErrorBody)))]
async fn get_point(
    State(s): State<AppState>,
    ApiPath((name, id)): ApiPath<(String, String)>,
) -> ApiResult<PointOut> {
    let id = ops::points::parse_point_id(&id)?;
    Ok(Json(s.node.get_point(&name, id).await?))
}

/// A page of a collection's points (ids, vectors, metadata), in shard and id order. The first
/// page (no `cursor`) commits the log and reads the current version; every later page reads
/// that same version, so a walk sees the collection as it was when it began.
#[utoipa::path(post, path = "/v1/collections/{name}/points/page", params(("name" = String, Path, description = "collection name")),
    request_body = PagePoints,
    responses((status = 200, body = PointPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn points_page(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<PagePoints>,
) -> ApiResult<PointPage> {
    Ok(Json(
        s.node
            .points_page(&name, request.cursor, request.limit)
            .await?,
    ))
}

/// The `k` nearest points to a vector, optionally filtered, or in an older version (`at`).
/// A collection id searches a collection held only by peers through them (`federated`).
/// A repeated search of the same state of the collection is answered from the search cache
/// (`"cached": true`) unless the request says `Cache-Control: no-cache` or `no-store`, or
/// `"cache": false`.
#[utoipa::path(post, path = "/v1/collections/{name}/search", params(("name" = String, Path, description = "collection name, or collection id"), ("Cache-Control" = Option<String>, Header, description = "no-cache or no-store: search the index, and leave the search cache alone")),
    request_body = SearchRequest,
    responses((status = 200, body = SearchResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn search(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(mut request): ApiJson<SearchRequest>,
) -> ApiResult<SearchResponse> {
    request.cache &= !bypasses_cache(&headers);
    Ok(Json(s.node.search(&name, request).await?))
}

/// Whether a request's `Cache-Control` asks for no cached answer (`no-cache`) or for none
/// to be kept (`no-store`): either way the search leaves the search cache alone.
fn bypasses_cache(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|directive| directive.trim())
        .any(|d| d.eq_ignore_ascii_case("no-cache") || d.eq_ignore_ascii_case("no-store"))
}

/// Many query vectors searched with the same options (`k`, `ef`, `filter`, …), answered in
/// the order of the queries, each exactly as `…/search` answers it alone. 1 to
/// `search.max_batch_queries` (default 1,024) queries; `deadline_ms` is each query's.
/// Each vector is given as `vector` (numbers) or `vector_b64` (base64 of little-endian f32).
/// Each query uses the search cache as a single search does.
#[utoipa::path(post, path = "/v1/collections/{name}/search/batch", params(("name" = String, Path, description = "collection name, or collection id"), ("Cache-Control" = Option<String>, Header, description = "no-cache or no-store: search the index, and leave the search cache alone")),
    request_body = BatchSearchRequest,
    responses((status = 200, body = BatchSearchResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn search_batch(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    SearchJson(mut request): SearchJson<BatchSearchRequest>,
) -> ApiResult<BatchSearchResponse> {
    request.cache &= !bypasses_cache(&headers);
    Ok(Json(s.node.search_batch(&name, request).await?))
}

/// The collection's current version as a CAR v1 stream (root: its signed head).
#[utoipa::path(get, path = "/v1/collections/{name}/export", params(("name" = String, Path, description = "collection name")),
    responses((status = 200, description = "CAR v1", content_type = "application/vnd.ipld.car"), (status = 404, body = ErrorBody)))]
async fn export_collection(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    let root = s.node.collection_export_root(&name).await?;
    Ok(car_stream(s.node, root))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    name: Option<String>,
}

/// Registers a collection from a CAR written by its export (streamed request body).
#[utoipa::path(post, path = "/v1/collections/import", params(("name" = Option<String>, Query, description = "name to register it under")),
    request_body(content = Vec<u8>, content_type = "application/vnd.ipld.car"),
    responses((status = 200, body = CollectionImported), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn import_collection(
    State(s): State<AppState>,
    ApiQuery(query): ApiQuery<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<CollectionImported> {
    let imported = import_body(&s.node, &headers, body).await?;
    Ok(Json(s.node.adopt_collection(&imported, query.name).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutQuery {
    #[serde(default)]
    pin: bool,
}

/// Stores a DAG-JSON value as a DAG-CBOR block.
#[utoipa::path(post, path = "/v1/dag", params(("pin" = Option<bool>, Query, description = "also pin it")),
    request_body(content = serde_json::Value, description = "any DAG-JSON value", content_type = "application/json"),
    responses((status = 200, body = DagPut), (status = 400, body = ErrorBody)))]
async fn dag_put(
    State(s): State<AppState>,
    ApiQuery(query): ApiQuery<PutQuery>,
    ApiBytes(body): ApiBytes,
) -> ApiResult<DagPut> {
    Ok(Json(s.node.dag_put(&body, query.pin).await?))
}

/// A block as DAG-JSON.
#[utoipa::path(get, path = "/v1/dag/{cid}", params(("cid" = String, Path, description = "block CID")),
    responses((status = 200, description = "DAG-JSON"), (status = 404, body = ErrorBody)))]
async fn dag_get(
    State(s): State<AppState>,
    ApiPath(cid): ApiPath<String>,
) -> Result<Response, ApiError> {
    let text = s.node.dag_get(&cid).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/vnd.ipld.dag-json")],
        text,
    )
        .into_response())
}

/// The DAG under a root as a CAR v1 stream.
#[utoipa::path(get, path = "/v1/dag/{cid}/export", params(("cid" = String, Path, description = "root CID")),
    responses((status = 200, description = "CAR v1", content_type = "application/vnd.ipld.car"), (status = 404, body = ErrorBody)))]
async fn dag_export(
    State(s): State<AppState>,
    ApiPath(cid): ApiPath<String>,
) -> Result<Response, ApiError> {
    let root = ops::parse_cid(&cid)?;
    // Fail before streaming when the root itself is missing.
    s.node.block_stat(&cid).await?;
    Ok(car_stream(s.node, root))
}

/// Imports a CAR v1 stream, checking every block; pins its roots if all of it is good.
#[utoipa::path(post, path = "/v1/dag/import", request_body(content = Vec<u8>, content_type = "application/vnd.ipld.car"),
    responses((status = 200, body = CarImported), (status = 400, body = ErrorBody)))]
async fn dag_import(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<CarImported> {
    Ok(Json(import_body(&s.node, &headers, body).await?))
}

/// A block's size and codec.
#[utoipa::path(get, path = "/v1/blocks/{cid}", params(("cid" = String, Path, description = "block CID")),
    responses((status = 200, body = BlockStat), (status = 404, body = ErrorBody)))]
async fn block_stat(
    State(s): State<AppState>,
    ApiPath(cid): ApiPath<String>,
) -> ApiResult<BlockStat> {
    Ok(Json(s.node.block_stat(&cid).await?))
}

/// Every pin.
#[utoipa::path(get, path = "/v1/pins", responses((status = 200, body = PinList)))]
async fn pins(State(s): State<AppState>) -> ApiResult<PinList> {
    Ok(Json(s.node.pins().await?))
}

/// Pins the DAG under a root (all of it must be stored).
#[utoipa::path(post, path = "/v1/pins/{cid}", params(("cid" = String, Path, description = "root CID")),
    responses((status = 200, body = Pin), (status = 400, body = ErrorBody)))]
async fn pin_add(State(s): State<AppState>, ApiPath(cid): ApiPath<String>) -> ApiResult<Pin> {
    Ok(Json(s.node.pin_add(&cid).await?))
}

/// Removes a pin.
#[utoipa::path(delete, path = "/v1/pins/{cid}", params(("cid" = String, Path, description = "root CID")),
    responses((status = 200, body = Pin), (status = 404, body = ErrorBody)))]
async fn pin_rm(State(s): State<AppState>, ApiPath(cid): ApiPath<String>) -> ApiResult<Pin> {
    Ok(Json(s.node.pin_rm(&cid).await?))
}

/// Removes every block no pin reaches.
#[utoipa::path(post, path = "/v1/gc", responses((status = 200, body = GcResult)))]
async fn gc(State(s): State<AppState>) -> ApiResult<GcResult> {
    Ok(Json(s.node.gc().await?))
}

/// Backs collections up into a directory on the node's machine (docs/operations.md, "Backups").
#[utoipa::path(post, path = "/v1/backup", request_body = crate::ops::backup::BackupRequest,
    responses((status = 200, body = crate::ops::backup::BackupCreated), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn backup_create(
    State(s): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    ApiJson(request): ApiJson<crate::ops::backup::BackupRequest>,
) -> ApiResult<crate::ops::backup::BackupCreated> {
    let anywhere = is_admin(caller.as_ref());
    Ok(Json(s.node.backup_requested(request, anywhere).await?))
}

/// Restores collections from a backup directory on the node's machine, every file checked first.
#[utoipa::path(post, path = "/v1/backup/restore", request_body = crate::ops::backup::RestoreRequest,
    responses((status = 200, body = crate::ops::backup::BackupRestored), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn backup_restore(
    State(s): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    ApiJson(request): ApiJson<crate::ops::backup::RestoreRequest>,
) -> ApiResult<crate::ops::backup::BackupRestored> {
    let anywhere = is_admin(caller.as_ref());
    Ok(Json(s.node.restore_requested(request, anywhere).await?))
}

/// Whether the caller holds the admin token (which may name backup folders anywhere).
fn is_admin(caller: Option<&axum::Extension<Caller>>) -> bool {
    matches!(caller, Some(axum::Extension(Caller::Admin)))
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

/// This node on the network: peer id and addresses.
#[utoipa::path(get, path = "/v1/id", responses((status = 200, body = IdInfo)))]
async fn id(State(s): State<AppState>) -> ApiResult<IdInfo> {
    Ok(Json(s.node.id().await?))
}

/// The connected peers.
#[utoipa::path(get, path = "/v1/peers", responses((status = 200, body = PeerList), (status = 503, body = ErrorBody)))]
async fn peers(State(s): State<AppState>) -> ApiResult<PeerList> {
    Ok(Json(s.node.peers().await?))
}

/// Connects to a peer by multiaddress.
#[utoipa::path(post, path = "/v1/peers/connect", request_body = Connect,
    responses((status = 200, body = Connected), (status = 400, body = ErrorBody)))]
async fn connect(
    State(s): State<AppState>,
    ApiJson(request): ApiJson<Connect>,
) -> ApiResult<Connected> {
    Ok(Json(s.node.connect(&request.address).await?))
}

/// The peers this node refuses: from the config (`p2p.deny_peers`) and denied at run time.
#[utoipa::path(get, path = "/v1/peers/denied", responses((status = 200, body = DeniedPeerList)))]
async fn denied_peers(State(s): State<AppState>) -> ApiResult<DeniedPeerList> {
    Ok(Json(s.node.denied_peers().await?))
}

/// Refuses a peer from now on and after restarts (kept in the repository's `denied_peers`
/// file): its connections are closed at once, it is not dialled, asked for blocks or
/// searches, nor heard on gossip.
#[utoipa::path(post, path = "/v1/peers/{peer_id}/deny", params(("peer_id" = String, Path, description = "the peer id")),
    responses((status = 200, body = PeerDenial), (status = 400, body = ErrorBody)))]
async fn deny_peer(
    State(s): State<AppState>,
    ApiPath(peer): ApiPath<String>,
) -> ApiResult<PeerDenial> {
    Ok(Json(s.node.deny_peer(&peer).await?))
}

/// Stops refusing a peer denied at run time (one denied in the config is a 409).
#[utoipa::path(post, path = "/v1/peers/{peer_id}/allow", params(("peer_id" = String, Path, description = "the peer id")),
    responses((status = 200, body = PeerDenial), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn allow_peer(
    State(s): State<AppState>,
    ApiPath(peer): ApiPath<String>,
) -> ApiResult<PeerDenial> {
    Ok(Json(s.node.allow_peer(&peer).await?))
}

/// The peers the DHT knows to provide a key (a collection or shard key, or any CID).
#[utoipa::path(get, path = "/v1/dht/providers/{cid}", params(("cid" = String, Path, description = "the key")),
    responses((status = 200, body = ProviderList), (status = 400, body = ErrorBody)))]
async fn providers(
    State(s): State<AppState>,
    ApiPath(cid): ApiPath<String>,
) -> ApiResult<ProviderList> {
    Ok(Json(s.node.providers(&cid).await?))
}

/// Fetches a DAG from peers over Bitswap (every block checked) and pins it.
#[utoipa::path(post, path = "/v1/dag/fetch", request_body = DagFetch,
    responses((status = 200, body = Fetched), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn dag_fetch(
    State(s): State<AppState>,
    ApiJson(request): ApiJson<DagFetch>,
) -> ApiResult<Fetched> {
    Ok(Json(s.node.dag_fetch(&request.cid, &request.from).await?))
}

/// Replicates another node's collection by id: its providers (or the given peers) are asked
/// for its newest signed head, and its DAG is fetched over Bitswap.
#[utoipa::path(post, path = "/v1/collections/fetch", request_body = FetchCollection,
    responses((status = 200, body = CollectionImported), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn fetch_collection(
    State(s): State<AppState>,
    ApiJson(request): ApiJson<FetchCollection>,
) -> ApiResult<CollectionImported> {
    Ok(Json(
        s.node
            .fetch_collection(&request.id, request.name, &request.from, request.shards)
            .await?,
    ))
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

/// A streamed CAR export; a failure midway aborts the response, so a client never mistakes
/// a cut-off CAR for a whole one.
fn car_stream(node: Node, root: cid::Cid) -> Response {
    let (writer, reader) = tokio::io::duplex(256 * 1024);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    // Left to finish within the shutdown bound (the HTTP drain waits for its response); it
    // ends early if the client goes away. Refused once the node is stopping.
    let exporter = node.clone();
    node.tasks().spawn_finishing(async move {
        let result = exporter.export_car(&root, writer, |_| {}).await;
        let _ = done_tx.send(result);
    });
    let tail = futures::stream::once(async move {
        match done_rx.await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(Err(std::io::Error::other(e.to_string()))),
            Err(_) => Some(Err(std::io::Error::other("the export stopped"))),
        }
    })
    .filter_map(futures::future::ready);
    let body = Body::from_stream(ReaderStream::new(reader).chain(tail));
    ([(header::CONTENT_TYPE, CAR_MEDIA_TYPE)], body).into_response()
}

async fn import_body(
    node: &Node,
    headers: &HeaderMap,
    body: Body,
) -> Result<CarImported, ApiError> {
    let total = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    Ok(node
        .import_car(StreamReader::new(stream), total, |_| {})
        .await?)
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

mod routes;
pub use routes::{router, serve};
