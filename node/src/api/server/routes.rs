//! The router: every route of the API in one table (which a test holds equal to the OpenAPI
//! document), the layers around it (the guard, request metrics), and serving it until the
//! daemon stops. The handlers are in the sibling modules, by resource.

use tokio_util::sync::CancellationToken;

use super::*;

async fn track(State(s): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        // `/v1/collections/:name/search`: braces in label values trip some parsers.
        .map(|p| p.as_str().replace('{', ":").replace('}', ""))
        .unwrap_or_else(|| "(unmatched)".to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    s.node.metrics().request(&method, &route, status, elapsed);
    tracing::debug!(%method, %route, status, elapsed_us = elapsed.as_micros() as u64, "request");
    response
}

/// One route of the API.
struct Route {
    /// The method `handler` takes; the test against the OpenAPI document reads it.
    #[cfg_attr(not(test), allow(dead_code))]
    method: Method,
    path: &'static str,
    kind: Kind,
    body: BodyKind,
    handler: MethodRouter<AppState>,
}

/// Every route of the API: the router is built from this list, and a test holds it equal to
/// the OpenAPI document.
fn route_table() -> Vec<Route> {
    use BodyKind::{Car, Json, None as Empty};
    use Kind::{Heavy, Light, Search, Write};
    macro_rules! route {
        ($method:ident $path:literal, $kind:expr, $body:expr, $handler:expr) => {
            Route {
                method: Method::$method,
                path: $path,
                kind: $kind,
                body: $body,
                handler: axum::routing::on(MethodFilter::$method, $handler),
            }
        };
    }
    vec![
        route!(GET "/health", Light, Empty, health),
        route!(GET "/ready", Light, Empty, ready),
        route!(GET "/metrics", Light, Empty, metrics),
        route!(GET "/openapi.json", Light, Empty, openapi),
        route!(GET "/v1/node", Light, Empty, node_info),
        route!(GET "/v1/config", Light, Empty, config),
        route!(GET "/v1/jobs", Light, Empty, jobs),
        route!(GET "/v1/logs", Light, Empty, logs),
        route!(GET "/v1/id", Light, Empty, id),
        route!(GET "/v1/peers", Light, Empty, peers),
        route!(POST "/v1/peers/connect", Heavy, Json, connect),
        route!(GET "/v1/peers/denied", Light, Empty, denied_peers),
        route!(POST "/v1/peers/{peer_id}/deny", Light, Empty, deny_peer),
        route!(POST "/v1/peers/{peer_id}/allow", Light, Empty, allow_peer),
        route!(GET "/v1/dht/providers/{cid}", Heavy, Empty, providers),
        route!(GET "/v1/collections", Light, Empty, list_collections),
        route!(POST "/v1/collections", Write, Json, create_collection),
        route!(POST "/v1/collections/fetch", Heavy, Json, fetch_collection),
        route!(POST "/v1/collections/join", Heavy, Json, join_collection),
        route!(POST "/v1/collections/import", Heavy, Car, import_collection),
        route!(GET "/v1/collections/{name}", Light, Empty, collection_info),
        route!(DELETE "/v1/collections/{name}", Write, Empty, drop_collection),
        route!(GET "/v1/collections/{name}/log", Light, Empty, collection_log),
        route!(PUT "/v1/collections/{name}/quota", Write, Json, set_quota),
        route!(GET "/v1/collections/{name}/writers", Light, Empty, writers),
        route!(GET "/v1/collections/{name}/shards", Heavy, Empty, shard_map),
        route!(GET "/v1/collections/{name}/membership", Light, Empty, membership),
        route!(POST "/v1/collections/{name}/leave", Write, Empty, leave_collection),
        route!(PUT "/v1/collections/{name}/writers/{key}", Write, Empty, add_writer),
        route!(DELETE "/v1/collections/{name}/writers/{key}", Write, Empty, remove_writer),
        route!(PUT "/v1/collections/{name}/points", Write, Json, upsert),
        route!(POST "/v1/collections/{name}/points/delete", Write, Json, delete_points),
        route!(POST "/v1/collections/{name}/points/page", Heavy, Json, points_page),
        route!(GET "/v1/collections/{name}/points/{id}", Light, Empty, get_point),
        route!(POST "/v1/collections/{name}/search", Search, Json, search),
        route!(POST "/v1/collections/{name}/search/batch", Search, Json, search_batch),
        route!(GET "/v1/collections/{name}/export", Heavy, Empty, export_collection),
        route!(POST "/v1/dag", Write, Json, dag_put),
        route!(POST "/v1/dag/fetch", Heavy, Json, dag_fetch),
        route!(POST "/v1/dag/import", Heavy, Car, dag_import),
        route!(GET "/v1/dag/{cid}", Light, Empty, dag_get),
        route!(GET "/v1/dag/{cid}/export", Heavy, Empty, dag_export),
        route!(GET "/v1/blocks/{cid}", Light, Empty, block_stat),
        route!(GET "/v1/pins", Light, Empty, pins),
        route!(POST "/v1/pins/{cid}", Heavy, Empty, pin_add),
        route!(DELETE "/v1/pins/{cid}", Heavy, Empty, pin_rm),
        route!(POST "/v1/gc", Heavy, Empty, gc),
        route!(POST "/v1/backup", Heavy, Json, backup_create),
        route!(POST "/v1/backup/restore", Heavy, Json, backup_restore),
    ]
}

/// The API's routes over `node`; `token` is the bearer token to require, if any.
pub fn router(node: Node, token: Option<String>) -> Router {
    // Never stopping: event streams end with their connection.
    let (_, stopping) = tokio::sync::watch::channel(false);
    routes(node, token, stopping)
}

fn routes(
    node: Node,
    token: Option<String>,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Router {
    let api = &node.config().api;
    let max_body = api.max_body_bytes as usize;
    let gate = Gate::new(api, token)
        .knowing_admin(crate::repo::read_api_token(node.repo().path()))
        .with_limits(
            crate::limits::tokens::TokenTable::of_repo(node.repo().path()),
            &node.config().limits,
            node.metrics(),
        );
    let limits = Limits::new(api);
    let mcp = crate::mcp::http_service(node.clone(), mcp_stop(&stopping));
    let state = AppState { node, stopping };
    let mut router = Router::new();
    for route in route_table() {
        // CAR imports are streamed: any length.
        let streamed = route.body == BodyKind::Car;
        let rules = RouteRules {
            body: route.body,
            max_body: (!streamed).then_some(max_body as u64),
            slots: limits.of(route.kind),
        };
        let body_limit = if streamed {
            DefaultBodyLimit::disable()
        } else {
            DefaultBodyLimit::max(max_body)
        };
        let handler: MethodRouter<AppState> = route
            .handler
            .layer::<_, std::convert::Infallible>(middleware::from_fn_with_state(
                rules,
                guard::route_rules,
            ))
            .layer::<_, std::convert::Infallible>(body_limit);
        router = router.route(route.path, handler);
    }
    router
        .nest_service("/mcp", mcp)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(gate, guard::gate))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// A token that ends the MCP sessions (their event streams) when the server starts
/// shutting down, as `stopping` ends the API's own event streams.
fn mcp_stop(stopping: &tokio::sync::watch::Receiver<bool>) -> CancellationToken {
    let stop = CancellationToken::new();
    // Outside a runtime (a router built for a test) nothing serves it, so nothing to stop.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let mut stopping = stopping.clone();
        let cancel = stop.clone();
        runtime.spawn(async move {
            // An error: the sender is gone without stopping (a router that never stops).
            if stopping.wait_for(|stop| *stop).await.is_ok() {
                cancel.cancel();
            }
        });
    }
    stop
}

/// Serves the API on `listener` until `shutdown` completes, then lets requests in flight
/// finish (for at most `drain`).
pub async fn serve(
    node: Node,
    listener: tokio::net::TcpListener,
    token: Option<String>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let app = routes(node, token, stopping);
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    // Callers without a token are told apart by address.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
        let _ = stopped_tx.send(());
    });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => return result,
        _ = stopped_rx => {}
    }
    match tokio::time::timeout(drain, server).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                seconds = drain.as_secs(),
                "requests still running after the drain period; closing"
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The router is built from [`route_table`]; the document must name exactly its routes.
    #[test]
    fn the_openapi_document_covers_every_route_and_no_other() {
        let routed: BTreeSet<(String, String)> = route_table()
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        let doc = ApiDoc::openapi();
        let mut documented = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
                ("HEAD", &item.head),
            ] {
                if op.is_some() {
                    documented.insert((method.to_string(), path.clone()));
                }
            }
        }
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "routes missing from the document: {missing:?}; documented but not routed: {extra:?}"
        );
        let schemes = doc.components.as_ref().map(|c| c.security_schemes.len());
        assert_eq!(schemes, Some(1), "the bearer scheme is declared");
    }
}
