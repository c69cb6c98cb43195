//! This node on the network: its id, peers, the deny list, DHT providers, and fetches of DAGs
//! and collections from peers.

use super::*;

/// This node on the network: peer id and addresses.
#[utoipa::path(get, path = "/v1/id", responses((status = 200, body = IdInfo)))]
pub(super) async fn id(State(s): State<AppState>) -> ApiResult<IdInfo> {
    Ok(Json(s.node.id().await?))
}

/// The connected peers.
#[utoipa::path(get, path = "/v1/peers", responses((status = 200, body = PeerList), (status = 503, body = ErrorBody)))]
pub(super) async fn peers(State(s): State<AppState>) -> ApiResult<PeerList> {
    Ok(Json(s.node.peers().await?))
}

/// Connects to a peer by multiaddress.
#[utoipa::path(post, path = "/v1/peers/connect", request_body = Connect,
    responses((status = 200, body = Connected), (status = 400, body = ErrorBody)))]
pub(super) async fn connect(
    State(s): State<AppState>,
    ApiJson(request): ApiJson<Connect>,
) -> ApiResult<Connected> {
    Ok(Json(s.node.connect(&request.address).await?))
}

/// The peers this node refuses: from the config (`p2p.deny_peers`) and denied at run time.
#[utoipa::path(get, path = "/v1/peers/denied", responses((status = 200, body = DeniedPeerList)))]
pub(super) async fn denied_peers(State(s): State<AppState>) -> ApiResult<DeniedPeerList> {
    Ok(Json(s.node.denied_peers().await?))
}

/// Refuses a peer from now on and after restarts (kept in the repository's `denied_peers`
/// file): its connections are closed at once, it is not dialled, asked for blocks or
/// searches, nor heard on gossip.
#[utoipa::path(post, path = "/v1/peers/{peer_id}/deny", params(("peer_id" = String, Path, description = "the peer id")),
    responses((status = 200, body = PeerDenial), (status = 400, body = ErrorBody)))]
pub(super) async fn deny_peer(
    State(s): State<AppState>,
    ApiPath(peer): ApiPath<String>,
) -> ApiResult<PeerDenial> {
    Ok(Json(s.node.deny_peer(&peer).await?))
}

/// Stops refusing a peer denied at run time (one denied in the config is a 409).
#[utoipa::path(post, path = "/v1/peers/{peer_id}/allow", params(("peer_id" = String, Path, description = "the peer id")),
    responses((status = 200, body = PeerDenial), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn allow_peer(
    State(s): State<AppState>,
    ApiPath(peer): ApiPath<String>,
) -> ApiResult<PeerDenial> {
    Ok(Json(s.node.allow_peer(&peer).await?))
}

/// The peers the DHT knows to provide a key (a collection or shard key, or any CID).
#[utoipa::path(get, path = "/v1/dht/providers/{cid}", params(("cid" = String, Path, description = "the key")),
    responses((status = 200, body = ProviderList), (status = 400, body = ErrorBody)))]
pub(super) async fn providers(
    State(s): State<AppState>,
    ApiPath(cid): ApiPath<String>,
) -> ApiResult<ProviderList> {
    Ok(Json(s.node.providers(&cid).await?))
}

/// Fetches a DAG from peers over Bitswap (every block checked) and pins it.
#[utoipa::path(post, path = "/v1/dag/fetch", request_body = DagFetch,
    responses((status = 200, body = Fetched), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn dag_fetch(
    State(s): State<AppState>,
    ApiJson(request): ApiJson<DagFetch>,
) -> ApiResult<Fetched> {
    Ok(Json(s.node.dag_fetch(&request.cid, &request.from).await?))
}

/// Replicates another node's collection by id: its providers (or the given peers) are asked
/// for its newest signed head, and its DAG is fetched over Bitswap.
#[utoipa::path(post, path = "/v1/collections/fetch", request_body = FetchCollection,
    responses((status = 200, body = CollectionImported), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn fetch_collection(
    State(s): State<AppState>,
    ApiJson(request): ApiJson<FetchCollection>,
) -> ApiResult<CollectionImported> {
    Ok(Json(
        s.node
            .fetch_collection(&request.id, request.name, &request.from, request.shards)
            .await?,
    ))
}
