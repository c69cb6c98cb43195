//! Points: upserts, deletes, reads, pages, and searches (single, batched, federated).

use super::*;

/// Upserts a batch of points; answered once the batch is durable (all or nothing).
#[utoipa::path(put, path = "/v1/collections/{name}/points", params(("name" = String, Path, description = "collection name")),
    request_body = UpsertPoints,
    responses((status = 200, body = WriteResult), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(super) async fn upsert(
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
pub(super) async fn delete_points(
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
pub(super) async fn get_point(
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
pub(super) async fn points_page(
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
pub(super) async fn search(
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
pub(super) fn bypasses_cache(headers: &HeaderMap) -> bool {
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
pub(super) async fn search_batch(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    SearchJson(mut request): SearchJson<BatchSearchRequest>,
) -> ApiResult<BatchSearchResponse> {
    request.cache &= !bypasses_cache(&headers);
    Ok(Json(s.node.search_batch(&name, request).await?))
}
