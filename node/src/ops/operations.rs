//! The one list of the node's operations: [`Operations`]. The node implements it in process
//! ([`Node`]) and the HTTP client over a daemon's API ([`Client`](crate::api::Client)), so a
//! front end (the CLI, an MCP server) is written once against either, and never restates
//! the list.
//!
//! The futures are boxed, so a front end can hold a `&dyn Operations` and pick the
//! implementation at run time (the CLI does: the daemon's API when one runs, else the
//! repository). CAR export and import stream their bytes (a reader and a writer in process,
//! HTTP bodies over the API), so they stay outside the list: see
//! [`Node::export_car`], [`Node::import_car`] and [`Client::export`](crate::api::Client::export).

use futures::future::BoxFuture;
use ipvec_protocol::api::*;

use super::{
    backup::{BackupCreated, BackupRequest, BackupRestored, RestoreRequest},
    Node, Result,
};
use crate::repo::Config;

/// What a node does, wherever it runs.
pub trait Operations: Send + Sync {
    /// Node facts: peer id, version, repository, store totals.
    fn node_info(&self) -> BoxFuture<'_, Result<NodeInfo>>;

    /// The effective configuration (file, then environment, then flags).
    fn config(&self) -> BoxFuture<'_, Result<Config>>;

    /// The long operations running now, with their progress.
    fn jobs(&self) -> BoxFuture<'_, Result<JobList>>;

    /// This node on the network: peer id and addresses.
    fn id(&self) -> BoxFuture<'_, Result<IdInfo>>;

    /// The connected peers.
    fn peers(&self) -> BoxFuture<'_, Result<PeerList>>;

    /// Refuses a peer (by peer id) from now on and after restarts.
    fn deny_peer<'a>(&'a self, peer: &'a str) -> BoxFuture<'a, Result<PeerDenial>>;

    /// Stops refusing a peer denied at run time.
    fn allow_peer<'a>(&'a self, peer: &'a str) -> BoxFuture<'a, Result<PeerDenial>>;

    /// The peers this node refuses (from the config and from run time).
    fn denied_peers(&self) -> BoxFuture<'_, Result<DeniedPeerList>>;

    /// Connects to a peer by multiaddress.
    fn connect<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<Connected>>;

    /// The peers the DHT knows to provide a key.
    fn providers<'a>(&'a self, cid: &'a str) -> BoxFuture<'a, Result<ProviderList>>;

    /// Fetches the DAG under `cid` from peers over Bitswap (from `from`, or every connected
    /// peer), checking every block, and pins it.
    fn dag_fetch<'a>(&'a self, cid: &'a str, from: &'a [String]) -> BoxFuture<'a, Result<Fetched>>;

    /// Replicates collection `id` from the peers at `from` (or its providers) under `name`
    /// (default: its own): every shard, or only `shards`.
    fn fetch_collection<'a>(
        &'a self,
        id: &'a str,
        name: Option<String>,
        from: &'a [String],
        shards: Option<Vec<u32>>,
    ) -> BoxFuture<'a, Result<CollectionImported>>;

    /// Creates a collection: whole, or (on failure) nothing of it.
    fn create_collection(&self, request: CreateCollection)
        -> BoxFuture<'_, Result<CollectionInfo>>;

    /// Every collection.
    fn list_collections(&self) -> BoxFuture<'_, Result<CollectionList>>;

    /// One collection's settings, counts and current version.
    fn collection_info<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<CollectionInfo>>;

    /// A collection's versions, newest first.
    fn collection_log<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<VersionList>>;

    /// The keys a collection allows to publish versions, the owner's first.
    fn writers<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<WriterList>>;

    /// Who holds each shard of a collection (DHT providers, alive or not) against the
    /// replication it asks for.
    fn shard_map<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<ShardMap>>;

    /// Makes this node a member of a collection's serving set (`ipvec join`).
    fn join(&self, request: JoinCollection) -> BoxFuture<'_, Result<MembershipInfo>>;

    /// Hands this node's shards of a collection over, then leaves it (`ipvec leave`).
    fn leave<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<MembershipInfo>>;

    /// This node's view of a collection's members and its own shards.
    fn membership<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<MembershipInfo>>;

    /// Allows (`allow`) or stops allowing a key (a peer id) to publish versions of a
    /// collection: a new version the owner signs, so only the owner's node can.
    fn change_writer<'a>(
        &'a self,
        name: &'a str,
        key: &'a str,
        allow: bool,
    ) -> BoxFuture<'a, Result<WriterList>>;

    /// Sets a collection's own quota on this node (0: none).
    fn set_quota<'a>(
        &'a self,
        name: &'a str,
        quota: CollectionQuota,
    ) -> BoxFuture<'a, Result<CollectionQuota>>;

    /// Drops a collection (its blocks go at the next gc).
    fn drop_collection<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Dropped>>;

    /// Upserts a batch of points: stored whole once durable, or not at all.
    fn upsert<'a>(
        &'a self,
        name: &'a str,
        points: Vec<PointIn>,
    ) -> BoxFuture<'a, Result<WriteResult>>;

    /// Deletes points by id.
    fn delete<'a>(&'a self, name: &'a str, ids: Vec<PointId>)
        -> BoxFuture<'a, Result<WriteResult>>;

    /// One point.
    fn get_point<'a>(&'a self, name: &'a str, id: PointId) -> BoxFuture<'a, Result<PointOut>>;

    /// A page of a collection's points, all pages of a walk from one version: the first
    /// (`cursor` `None`) names it, the others continue from the `next` of the page before.
    fn points_page<'a>(
        &'a self,
        name: &'a str,
        cursor: Option<String>,
        limit: usize,
    ) -> BoxFuture<'a, Result<PointPage>>;

    /// The nearest points to a vector, optionally filtered, or in an older version.
    fn search<'a>(
        &'a self,
        name: &'a str,
        request: SearchRequest,
    ) -> BoxFuture<'a, Result<SearchResponse>>;

    /// Many searches with the same options, answered in order, each as [`Self::search`]
    /// answers it.
    fn search_batch<'a>(
        &'a self,
        name: &'a str,
        request: BatchSearchRequest,
    ) -> BoxFuture<'a, Result<BatchSearchResponse>>;

    /// Stores a DAG-JSON value as one DAG-CBOR block, pinned if asked.
    fn dag_put(&self, dag_json: Vec<u8>, pin: bool) -> BoxFuture<'_, Result<DagPut>>;

    /// A block as DAG-JSON.
    fn dag_get<'a>(&'a self, cid: &'a str) -> BoxFuture<'a, Result<Vec<u8>>>;

    /// A block's size and codec.
    fn block_stat<'a>(&'a self, cid: &'a str) -> BoxFuture<'a, Result<BlockStat>>;

    /// Every pin.
    fn pins(&self) -> BoxFuture<'_, Result<PinList>>;

    /// Pins the DAG under `cid` (all of it must be stored).
    fn pin_add<'a>(&'a self, cid: &'a str) -> BoxFuture<'a, Result<Pin>>;

    /// Removes a `pin add` pin.
    fn pin_rm<'a>(&'a self, cid: &'a str) -> BoxFuture<'a, Result<Pin>>;

    /// Removes every block no pin reaches.
    fn gc(&self) -> BoxFuture<'_, Result<GcResult>>;

    /// Backs collections up into a directory on the node's machine: full, then incremental.
    fn backup_create(&self, request: BackupRequest) -> BoxFuture<'_, Result<BackupCreated>>;

    /// Restores collections from a backup directory on the node's machine.
    fn backup_restore(&self, request: RestoreRequest) -> BoxFuture<'_, Result<BackupRestored>>;
}

/// In process: each operation is the node's own (the inherent methods, which the HTTP
/// server's handlers call too).
impl Operations for Node {
    fn node_info(&self) -> BoxFuture<'_, Result<NodeInfo>> {
        Box::pin(Node::node_info(self))
    }

    fn config(&self) -> BoxFuture<'_, Result<Config>> {
        let config = Node::config(self).redacted();
        Box::pin(async move { Ok(config) })
    }

    fn jobs(&self) -> BoxFuture<'_, Result<JobList>> {
        let jobs = Node::jobs(self);
        Box::pin(async move { Ok(jobs) })
    }

    fn id(&self) -> BoxFuture<'_, Result<IdInfo>> {
        Box::pin(Node::id(self))
    }

    fn peers(&self) -> BoxFuture<'_, Result<PeerList>> {
        Box::pin(Node::peers(self))
    }

    fn deny_peer<'a>(&'a self, peer: &'a str) -> BoxFuture<'a, Result<PeerDenial>> {
        Box::pin(Node::deny_peer(self, peer))
    }

    fn allow_peer<'a>(&'a self, peer: &'a str) -> BoxFuture<'a, Result<PeerDenial>> {
        Box::pin(Node::allow_peer(self, peer))
    }

    fn denied_peers(&self) -> BoxFuture<'_, Result<DeniedPeerList>> {
        Box::pin(Node::denied_peers(self))
    }

    fn connect<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<Connected>> {
        Box::pin(Node::connect(self, address))
    }

    fn providers<'a>(&'a self, cid: &'a str) -> BoxFuture<'a, Result<ProviderList>> {
        Box::pin(Node::providers(self, cid))
    }

    fn dag_fetch<'a>(&'a self, cid: &'a str, from: &'a [String]) -> BoxFuture<'a, Result<Fetched>> {
        Box::pin(Node::dag_fetch(self, cid, from))
    }

    fn fetch_collection<'a>(
        &'a self,
        id: &'a str,
        name: Option<String>,
        from: &'a [String],
        shards: Option<Vec<u32>>,
    ) -> BoxFuture<'a, Result<CollectionImported>> {
        Box::pin(Node::fetch_collection(self, id, name, from, shards))
    }

    fn create_collection(
        &self,
        request: CreateCollection,
    ) -> BoxFuture<'_, Result<CollectionInfo>> {
        Box::pin(Node::create_collection(self, request))
    }

    fn list_collections(&self) -> BoxFuture<'_, Result<CollectionList>> {
        Box::pin(Node::list_collections(self))
    }

    fn collection_info<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<CollectionInfo>> {
        Box::pin(Node::collection_info(self, name))
    }

    fn collection_log<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<VersionList>> {
        Box::pin(Node::collection_log(self, name))
    }

    fn writers<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<WriterList>> {
        Box::pin(Node::writers(self, name))
    }

    fn shard_map<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<ShardMap>> {
        Box::pin(Node::shard_map(self, name))
    }

    fn join(&self, request: JoinCollection) -> BoxFuture<'_, Result<MembershipInfo>> {
        Box::pin(Node::join(self, request))
    }

    fn leave<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<MembershipInfo>> {
        Box::pin(Node::leave(self, name))
    }

    fn membership<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<MembershipInfo>> {
        Box::pin(Node::membership(self, name))
    }

    fn change_writer<'a>(
        &'a self,
        name: &'a str,
        key: &'a str,
        allow: bool,
    ) -> BoxFuture<'a, Result<WriterList>> {
        Box::pin(Node::change_writer(self, name, key, allow))
    }

    fn set_quota<'a>(
        &'a self,
        name: &'a str,
        quota: CollectionQuota,
    ) -> BoxFuture<'a, Result<CollectionQuota>> {
        Box::pin(Node::set_quota(self, name, quota))
    }

    fn drop_collection<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Dropped>> {
        Box::pin(Node::drop_collection(self, name))
    }

    fn upsert<'a>(
        &'a self,
        name: &'a str,
        points: Vec<PointIn>,
    ) -> BoxFuture<'a, Result<WriteResult>> {
        Box::pin(Node::upsert(self, name, points))
    }

    fn delete<'a>(
        &'a self,
        name: &'a str,
        ids: Vec<PointId>,
    ) -> BoxFuture<'a, Result<WriteResult>> {
        Box::pin(Node::delete(self, name, ids))
    }

    fn get_point<'a>(&'a self, name: &'a str, id: PointId) -> BoxFuture<'a, Result<PointOut>> {
        Box::pin(Node::get_point(self, name, id))
    }

    fn points_page<'a>(
        &'a self,
        name: &'a str,
        cursor: Option<String>,
        limit: usize,
    ) -> BoxFuture<'a, Result<PointPage>> {
        Box::pin(Node::points_page(self, name, cursor, limit))
    }

    fn search<'a>(
        &'a self,
        name: &'a str,
        request: SearchRequest,
    ) -> BoxFuture<'a, Result<SearchResponse>> {
        Box::pin(Node::search(self, name, request))
    }

    fn search_batch<'a>(
        &'a self,
        name: &'a str,
        request: BatchSearchRequest,
    ) -> BoxFuture<'a, Result<BatchSearchResponse>> {
        Box::pin(Node::search_batch(self, name, request))
    }

    fn dag_put(&self, dag_json: Vec<u8>, pin: bool) -> BoxFuture<'_, Result<DagPut>> {
        Box::pin(async move { Node::dag_put(self, &dag_json, pin).await })
    }

    fn dag_get<'a>(&'a self, cid: &'a str) -> BoxFuture<'a, Result<Vec<u8>>> {
        Box::pin(Node::dag_get(self, cid))
    }

    fn block_stat<'a>(&'a self, cid: &'a str) -> BoxFuture<'a, Result<BlockStat>> {
        Box::pin(Node::block_stat(self, cid))
    }

    fn pins(&self) -> BoxFuture<'_, Result<PinList>> {
        Box::pin(Node::pins(self))
    }

    fn pin_add<'a>(&'a self, cid: &'a str) -> BoxFuture<'a, Result<Pin>> {
        Box::pin(Node::pin_add(self, cid))
    }

    fn pin_rm<'a>(&'a self, cid: &'a str) -> BoxFuture<'a, Result<Pin>> {
        Box::pin(Node::pin_rm(self, cid))
    }

    fn gc(&self) -> BoxFuture<'_, Result<GcResult>> {
        Box::pin(Node::gc(self))
    }

    fn backup_create(&self, request: BackupRequest) -> BoxFuture<'_, Result<BackupCreated>> {
        // In process: the node's own operator.
        Box::pin(self.backup_requested(request, true))
    }

    fn backup_restore(&self, request: RestoreRequest) -> BoxFuture<'_, Result<BackupRestored>> {
        Box::pin(self.restore_requested(request, true))
    }
}
