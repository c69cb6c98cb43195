//! Collections: create, list, inspect, drop, quotas, versions, the shard map, membership of a
//! community collection, writers, export and import as CAR, backups.

use super::*;

/// Every collection.
#[utoipa::path(get, path = "/v1/collections", responses((status = 200, body = CollectionList)))]
pub(super) async fn list_collections(State(s): State<AppState>) -> ApiResult<CollectionList> {
    Ok(Json(s.node.list_collections().await?))
}

/// Creates a collection.
#[utoipa::path(post, path = "/v1/collections", request_body = CreateCollection,
    responses((status = 200, body = CollectionInfo), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_collection(
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
pub(super) async fn collection_info(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<CollectionInfo> {
    Ok(Json(s.node.collection_info(&name).await?))
}

/// Drops a collection (its blocks go at the next gc).
#[utoipa::path(delete, path = "/v1/collections/{name}", params(("name" = String, Path, description = "collection name")),
    responses((status = 200, body = Dropped), (status = 404, body = ErrorBody)))]
pub(super) async fn drop_collection(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Dropped> {
    Ok(Json(s.node.drop_collection(&name).await?))
}

/// A collection's versions, newest first.
#[utoipa::path(get, path = "/v1/collections/{name}/log", params(("name" = String, Path, description = "collection name")),
    responses((status = 200, body = VersionList), (status = 404, body = ErrorBody)))]
pub(super) async fn collection_log(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<VersionList> {
    Ok(Json(s.node.collection_log(&name).await?))
}

/// Sets a collection's own quota on this node (0: none); `limits.collection_max_*` hold too.
#[utoipa::path(put, path = "/v1/collections/{name}/quota", params(("name" = String, Path, description = "collection name")),
    request_body = CollectionQuota,
    responses((status = 200, body = CollectionQuota), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn set_quota(
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
pub(super) async fn shard_map(
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
pub(super) async fn join_collection(
    State(s): State<AppState>,
    ApiJson(request): ApiJson<JoinCollection>,
) -> ApiResult<MembershipInfo> {
    Ok(Json(s.node.join(request).await?))
}

/// Hands this node's shards of a collection over to their new holders, then drops it here
/// (the answer comes at once; `membership` shows the handover).
#[utoipa::path(post, path = "/v1/collections/{name}/leave", params(("name" = String, Path, description = "collection name or id")),
    responses((status = 200, body = MembershipInfo), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn leave_collection(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<MembershipInfo> {
    Ok(Json(s.node.leave(&name).await?))
}

/// The members of a collection this node hears, and where each shard stands on this node
/// when it is one.
#[utoipa::path(get, path = "/v1/collections/{name}/membership", params(("name" = String, Path, description = "collection name")),
    responses((status = 200, body = MembershipInfo), (status = 404, body = ErrorBody)))]
pub(super) async fn membership(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<MembershipInfo> {
    Ok(Json(s.node.membership(&name).await?))
}

/// The keys a collection allows to publish versions, the owner's first.
#[utoipa::path(get, path = "/v1/collections/{name}/writers", params(("name" = String, Path, description = "collection name")),
    responses((status = 200, body = WriterList), (status = 404, body = ErrorBody)))]
pub(super) async fn writers(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<WriterList> {
    Ok(Json(s.node.writers(&name).await?))
}

/// Allows a key (a peer id, `12D3KooW…`) to publish versions of a collection: a new version
/// signed by the owner, so only the owner's node can (a replica answers 409 `read_only`, another writer 400).
#[utoipa::path(put, path = "/v1/collections/{name}/writers/{key}", params(("name" = String, Path, description = "collection name"), ("key" = String, Path, description = "the writer's key as a peer id")),
    responses((status = 200, body = WriterList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn add_writer(
    State(s): State<AppState>,
    ApiPath((name, key)): ApiPath<(String, String)>,
) -> ApiResult<WriterList> {
    Ok(Json(s.node.change_writer(&name, &key, true).await?))
}

/// Stops allowing a key to publish versions of a collection (the owner's key always stays):
/// peers refuse its later heads; what it wrote before stays.
#[utoipa::path(delete, path = "/v1/collections/{name}/writers/{key}", params(("name" = String, Path, description = "collection name"), ("key" = String, Path, description = "the writer's key as a peer id")),
    responses((status = 200, body = WriterList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn remove_writer(
    State(s): State<AppState>,
    ApiPath((name, key)): ApiPath<(String, String)>,
) -> ApiResult<WriterList> {
    Ok(Json(s.node.change_writer(&name, &key, false).await?))
}

/// The collection's current version as a CAR v1 stream (root: its signed head).
#[utoipa::path(get, path = "/v1/collections/{name}/export", params(("name" = String, Path, description = "collection name")),
    responses((status = 200, description = "CAR v1", content_type = "application/vnd.ipld.car"), (status = 404, body = ErrorBody)))]
pub(super) async fn export_collection(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    let root = s.node.collection_export_root(&name).await?;
    Ok(car_stream(s.node, root))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportQuery {
    name: Option<String>,
}

/// Registers a collection from a CAR written by its export (streamed request body).
#[utoipa::path(post, path = "/v1/collections/import", params(("name" = Option<String>, Query, description = "name to register it under")),
    request_body(content = Vec<u8>, content_type = "application/vnd.ipld.car"),
    responses((status = 200, body = CollectionImported), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn import_collection(
    State(s): State<AppState>,
    ApiQuery(query): ApiQuery<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<CollectionImported> {
    let imported = import_body(&s.node, &headers, body).await?;
    Ok(Json(s.node.adopt_collection(&imported, query.name).await?))
}

/// Backs collections up into a directory on the node's machine (docs/operations.md, "Backups").
#[utoipa::path(post, path = "/v1/backup", request_body = crate::ops::backup::BackupRequest,
    responses((status = 200, body = crate::ops::backup::BackupCreated), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn backup_create(
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
pub(super) async fn backup_restore(
    State(s): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    ApiJson(request): ApiJson<crate::ops::backup::RestoreRequest>,
) -> ApiResult<crate::ops::backup::BackupRestored> {
    let anywhere = is_admin(caller.as_ref());
    Ok(Json(s.node.restore_requested(request, anywhere).await?))
}

/// Whether the caller holds the admin token (which may name backup folders anywhere).
pub(super) fn is_admin(caller: Option<&axum::Extension<Caller>>) -> bool {
    matches!(caller, Some(axum::Extension(Caller::Admin)))
}
