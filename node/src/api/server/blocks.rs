//! Blocks and DAGs: DAG-JSON put and get, CAR export and import, block stats, pins and gc,
//! and the CAR streaming both directions share.

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PutQuery {
    #[serde(default)]
    pin: bool,
}

/// Stores a DAG-JSON value as a DAG-CBOR block.
#[utoipa::path(post, path = "/v1/dag", params(("pin" = Option<bool>, Query, description = "also pin it")),
    request_body(content = serde_json::Value, description = "any DAG-JSON value", content_type = "application/json"),
    responses((status = 200, body = DagPut), (status = 400, body = ErrorBody)))]
pub(super) async fn dag_put(
    State(s): State<AppState>,
    ApiQuery(query): ApiQuery<PutQuery>,
    ApiBytes(body): ApiBytes,
) -> ApiResult<DagPut> {
    Ok(Json(s.node.dag_put(&body, query.pin).await?))
}

/// A block as DAG-JSON.
#[utoipa::path(get, path = "/v1/dag/{cid}", params(("cid" = String, Path, description = "block CID")),
    responses((status = 200, description = "DAG-JSON"), (status = 404, body = ErrorBody)))]
pub(super) async fn dag_get(
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
pub(super) async fn dag_export(
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
pub(super) async fn dag_import(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<CarImported> {
    Ok(Json(import_body(&s.node, &headers, body).await?))
}

/// A block's size and codec.
#[utoipa::path(get, path = "/v1/blocks/{cid}", params(("cid" = String, Path, description = "block CID")),
    responses((status = 200, body = BlockStat), (status = 404, body = ErrorBody)))]
pub(super) async fn block_stat(
    State(s): State<AppState>,
    ApiPath(cid): ApiPath<String>,
) -> ApiResult<BlockStat> {
    Ok(Json(s.node.block_stat(&cid).await?))
}

/// Every pin.
#[utoipa::path(get, path = "/v1/pins", responses((status = 200, body = PinList)))]
pub(super) async fn pins(State(s): State<AppState>) -> ApiResult<PinList> {
    Ok(Json(s.node.pins().await?))
}

/// Pins the DAG under a root (all of it must be stored).
#[utoipa::path(post, path = "/v1/pins/{cid}", params(("cid" = String, Path, description = "root CID")),
    responses((status = 200, body = Pin), (status = 400, body = ErrorBody)))]
pub(super) async fn pin_add(
    State(s): State<AppState>,
    ApiPath(cid): ApiPath<String>,
) -> ApiResult<Pin> {
    Ok(Json(s.node.pin_add(&cid).await?))
}

/// Removes a pin.
#[utoipa::path(delete, path = "/v1/pins/{cid}", params(("cid" = String, Path, description = "root CID")),
    responses((status = 200, body = Pin), (status = 404, body = ErrorBody)))]
pub(super) async fn pin_rm(
    State(s): State<AppState>,
    ApiPath(cid): ApiPath<String>,
) -> ApiResult<Pin> {
    Ok(Json(s.node.pin_rm(&cid).await?))
}

/// Removes every block no pin reaches.
#[utoipa::path(post, path = "/v1/gc", responses((status = 200, body = GcResult)))]
pub(super) async fn gc(State(s): State<AppState>) -> ApiResult<GcResult> {
    Ok(Json(s.node.gc().await?))
}

/// A streamed CAR export; a failure midway aborts the response, so a client never mistakes
/// a cut-off CAR for a whole one.
pub(super) fn car_stream(node: Node, root: cid::Cid) -> Response {
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

pub(super) async fn import_body(
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
