//! The node's operations on an open repository. The daemon's HTTP handlers and the CLI's
//! direct path (no daemon running) both call these, so the two answer alike.
//!
//! Collections stay open in a shared map, each behind a read/write lock: searches and reads
//! share it; writes and commits take it alone only briefly, to apply a durable write or swap in
//! a new version (their fsyncs and tree building run beside searches, see
//! [`collection::shared`](crate::collection::shared)). Opening, creating and dropping a name take turns in its
//! slot of the map (`lifecycle`). Index and log work runs on tokio's blocking pool so the
//! async workers stay free to accept requests. Garbage collection excludes every operation
//! that writes blocks (it must not sweep blocks written but not yet pinned).

use std::{
    collections::HashMap,
    future::Future,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use cid::Cid;
use ipvec_protocol::{cid as pcid, dagcbor, head::HeadRecord, limits, manifest::Manifest, Ipld};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::RwLock,
};

use super::{error::ApiError, jobs::Jobs, lifecycle::Slot, metrics::Metrics, types::*};
use crate::{
    collection::{
        self, catalog,
        points::{ipld_to_json, json_to_ipld},
        Collection, CollectionError, CollectionSpec, Filter, Point, SearchOptions,
    },
    repo::{Config, Repo},
    store::{car, dag, gc, BlockStore, IrohBlockStore},
};

/// An open collection shared between requests.
pub type SharedCollection = Arc<RwLock<Collection<IrohBlockStore>>>;

/// How long a measured store size is trusted by the storage limit check.
const STORE_SIZE_TTL: Duration = Duration::from_secs(5);

/// A cloneable handle on an open repository and its open collections.
#[derive(Debug, Clone)]
pub struct Node {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) repo: Repo,
    pub(super) config: Config,
    /// Each collection name's slot: its lifecycle turn and, once open, the collection.
    pub(super) collections: tokio::sync::Mutex<HashMap<String, Arc<Slot>>>,
    /// Held shared by every operation that writes blocks, alone by gc.
    pub(super) gc_lock: RwLock<()>,
    pub(super) metrics: Metrics,
    pub(super) jobs: Jobs,
    pub(super) ready: AtomicBool,
    pub(super) store_size: Mutex<Option<(Instant, u64)>>,
    /// The swarm, in a daemon.
    pub(super) network: std::sync::OnceLock<crate::net::Network>,
    /// When the node opened the repository.
    pub(super) started: Instant,
    /// What the node knows of its collections' replication.
    pub(super) replication: super::status::Tracker,
    /// The open collections by id (gossip validation reads it without their locks).
    pub(super) ids: super::ids::CollectionIds,
    /// The node's background tasks (following heads, counting providers, exports).
    pub(super) tasks: crate::tasks::Tasks,
}

/// Runs `work` on the blocking pool (it may search an index or fsync a log for a while).
pub(super) async fn offload<T: Send + 'static>(
    work: impl Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(work))
        .await
        .map_err(|e| ApiError::internal(format!("operation failed: {e}")))?
}

/// Parses a CID from a request.
pub fn parse_cid(text: &str) -> Result<Cid, ApiError> {
    let cid = pcid::parse_cid(text)?;
    pcid::check_supported(&cid)?;
    Ok(cid)
}

/// A point id as URL paths and the CLI spell it: text that starts with `"` is a JSON string
/// literal (`"42"` is the string id 42), digits alone are an integer id, anything else is a
/// string id. [`PointId::spelled`] writes ids this way.
pub fn parse_point_id(text: &str) -> Result<PointId, ApiError> {
    if text.starts_with('"') {
        return serde_json::from_str::<String>(text)
            .map(PointId::Str)
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "point id {text} starts with a quote but is not a JSON string ({e}); write a string id that looks like a number as \"42\" (in a URL %2242%22), or leave the quotes off"
                ))
            });
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().map(PointId::Int).map_err(|_| {
            ApiError::bad_request(format!(
                "point id {text} is over the largest integer id, {}; write it as \"{text}\" (in a URL %22{text}%22) for a string id",
                u64::MAX
            ))
        });
    }
    Ok(PointId::Str(text.to_string()))
}

/// Turns request points into engine points; metadata must be an object.
fn to_points(points: Vec<PointIn>) -> Result<Vec<Point>, ApiError> {
    points
        .into_iter()
        .enumerate()
        .map(|(position, p)| {
            let metadata = match p.metadata {
                None | Some(serde_json::Value::Null) => None,
                Some(m @ serde_json::Value::Object(_)) => Some(json_to_ipld(m)),
                Some(_) => {
                    return Err(CollectionError::BadPoint {
                        position,
                        id: p.id.to_string(),
                        reason: "metadata must be a JSON object".into(),
                    }
                    .into())
                }
            };
            Ok(Point {
                id: p.id.into(),
                vector: p.vector,
                metadata,
            })
        })
        .collect()
}

fn write_result(written: collection::shared::Written) -> WriteResult {
    WriteResult {
        changed: written.report.changed,
        points: written.report.points,
        root: written.root.to_string(),
    }
}

impl Node {
    /// Wraps an open repository; `config` is its effective configuration (file, environment
    /// and flags). Collections open on first use, or all at once with [`Node::open_all`].
    pub fn new(repo: Repo, config: Config) -> Self {
        // Before any request: the folders of creates and drops a crash cut short.
        let root = repo.path().join("collections");
        match catalog::sweep(&root) {
            Ok(0) => {}
            Ok(removed) => tracing::info!(
                removed,
                "removed the folders of interrupted collection creates and drops"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot remove the folders of interrupted collection creates and drops")
            }
        }
        Self {
            inner: Arc::new(Inner {
                repo,
                config,
                collections: Default::default(),
                gc_lock: RwLock::new(()),
                metrics: Metrics::new(),
                jobs: Jobs::default(),
                ready: AtomicBool::new(false),
                store_size: Mutex::new(None),
                network: std::sync::OnceLock::new(),
                started: Instant::now(),
                replication: Default::default(),
                ids: Default::default(),
                tasks: crate::tasks::Tasks::new(Default::default()),
            }),
        }
    }

    /// Gives the node its running swarm (the daemon does, once).
    pub fn attach_network(&self, network: crate::net::Network) {
        self.serve_heads(&network);
        let _ = self.inner.network.set(network);
    }

    pub(super) fn network(&self) -> Result<&crate::net::Network, ApiError> {
        self.inner.network.get().ok_or_else(|| {
            ApiError::unavailable(
                "the peer-to-peer layer runs in the daemon: start `ipvec daemon` and run this again",
            )
        })
    }

    /// This node on the network.
    pub async fn id(&self) -> Result<IdInfo, ApiError> {
        let peer_id = self.inner.repo.peer_id().to_string();
        let agent = crate::net::AGENT.to_string();
        let Some(network) = self.inner.network.get() else {
            return Ok(IdInfo {
                peer_id,
                addresses: Vec::new(),
                listen: self.inner.config.p2p.listen.clone(),
                observed: Vec::new(),
                agent,
            });
        };
        let local = network.local().await?;
        let with_id = |a: &libp2p::Multiaddr| format!("{a}/p2p/{peer_id}");
        let mut addresses: Vec<String> = local.listen.iter().map(with_id).collect();
        for a in local.observed.iter().map(with_id) {
            if !addresses.contains(&a) {
                addresses.push(a);
            }
        }
        Ok(IdInfo {
            addresses,
            listen: local.listen.iter().map(|a| a.to_string()).collect(),
            observed: local.observed.iter().map(|a| a.to_string()).collect(),
            peer_id,
            agent,
        })
    }

    /// The connected peers.
    pub async fn peers(&self) -> Result<PeerList, ApiError> {
        let network = self.network()?;
        let stats = network.bitswap().stats();
        Ok(PeerList {
            peers: network
                .peers()
                .await?
                .into_iter()
                .map(|p| PeerOut {
                    blocks_sent: stats.of_peer(&p.peer_id).sent,
                    blocks_received: stats.of_peer(&p.peer_id).received,
                    peer_id: p.peer_id.to_string(),
                    address: p.address.to_string(),
                    direction: if p.outbound { "outbound" } else { "inbound" }.to_string(),
                    latency_ms: p.rtt.map(|d| d.as_secs_f64() * 1e3),
                    protocols: p.protocols,
                    agent: p.agent,
                    gossip_score: p.score,
                })
                .collect(),
        })
    }

    /// Connects to a peer.
    pub async fn connect(&self, address: &str) -> Result<Connected, ApiError> {
        let address: libp2p::Multiaddr = address.parse().map_err(|e| {
            ApiError::bad_request(format!(
                "{address:?} is not a multiaddress ({e}); `ipvec id` on the other node prints its addresses"
            ))
        })?;
        let peer = self.network()?.dial(address).await?;
        Ok(Connected {
            peer_id: peer.to_string(),
        })
    }

    /// The peers the DHT knows to provide `cid`.
    pub async fn providers(&self, cid: &str) -> Result<ProviderList, ApiError> {
        let key = pcid::parse_cid(cid)?;
        let found = self.network()?.providers(key).await?;
        Ok(ProviderList {
            key: key.to_string(),
            providers: found
                .into_iter()
                .map(|p| ProviderOut {
                    peer_id: p.peer_id.to_string(),
                    addresses: p.addresses.iter().map(|a| a.to_string()).collect(),
                })
                .collect(),
        })
    }

    /// Connects to each address in `from`; the peers' ids.
    pub(super) async fn dial_all(&self, from: &[String]) -> Result<Vec<libp2p::PeerId>, ApiError> {
        let mut peers = Vec::with_capacity(from.len());
        for address in from {
            let peer = self.connect(address).await?.peer_id;
            peers.push(
                peer.parse().map_err(|_| {
                    ApiError::internal("the swarm gave a peer id that does not parse")
                })?,
            );
        }
        Ok(peers)
    }

    /// Fetches the DAG under `cid` over Bitswap from the peers at `from` (dialed first), or
    /// from every connected peer, checking every block; pins it once complete. Blocks already
    /// stored are not fetched again, so an interrupted fetch resumes.
    pub async fn dag_fetch(&self, cid: &str, from: &[String]) -> Result<Fetched, ApiError> {
        self.observed("fetch", "", async {
            let root = parse_cid(cid)?;
            let network = self.network()?;
            let mut peers = self.dial_all(from).await?;
            if from.is_empty() {
                peers = network
                    .peers()
                    .await?
                    .into_iter()
                    .map(|p| p.peer_id)
                    .collect();
            }
            self.check_storage().await?;
            let _writing = self.inner.gc_lock.read().await;
            let job = self
                .inner
                .jobs
                .start("fetch", root.to_string(), "blocks", None);
            let totals = network
                .bitswap()
                .fetch_dag(root, &peers, |t| job.set(t.blocks))
                .await
                .map_err(|e| match e {
                    crate::net::bitswap::FetchError::NoPeers
                    | crate::net::bitswap::FetchError::Unsupported(..) => {
                        ApiError::bad_request(e.to_string())
                    }
                    crate::net::bitswap::FetchError::NotFound(_) => {
                        ApiError::not_found(e.to_string())
                    }
                    crate::net::bitswap::FetchError::Timeout(_)
                    | crate::net::bitswap::FetchError::Stopped => {
                        ApiError::unavailable(e.to_string())
                    }
                    _ => ApiError::internal(e.to_string()),
                })?;
            // The fetch walked every block under the root (stored ones read back, the rest
            // fetched and hashed), so the DAG is complete: no second walk before the pin.
            self.store().pin(&root).await?;
            self.store().flush().await?;
            Ok(Fetched {
                root: root.to_string(),
                blocks: totals.blocks,
                fetched: totals.fetched,
                bytes: totals.bytes,
            })
        })
        .await
    }

    /// Announces in the DHT that this node hosts collection `name` and each of its shards.
    pub async fn announce(&self, name: &str) -> Result<(), ApiError> {
        let Some(network) = self.inner.network.get() else {
            return Ok(());
        };
        let c = self.collection(name).await?;
        let (id, shards) = {
            let c = c.read().await;
            (c.id()?, c.manifest().shards.len() as u32)
        };
        network
            .provide(ipvec_protocol::announce::collection_key(&id))
            .await?;
        self.gossip_head(name).await?;
        for shard in 0..shards {
            network
                .provide(ipvec_protocol::announce::shard_key(&id, shard))
                .await?;
        }
        self.inner.replication.announced(&id);
        Ok(())
    }

    /// Withdraws the announcements of a collection with id `id` and `shards` shards.
    pub(super) async fn withdraw(&self, id: &str, shards: u32) {
        self.inner.replication.forget(id);
        if let Some(network) = self.inner.network.get() {
            let _ = network
                .stop_providing(ipvec_protocol::announce::collection_key(id))
                .await;
            for shard in 0..shards {
                let _ = network
                    .stop_providing(ipvec_protocol::announce::shard_key(id, shard))
                    .await;
            }
        }
    }

    /// The repository.
    pub fn repo(&self) -> &Repo {
        &self.inner.repo
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Whether every collection is open and its log replayed.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    pub(super) fn store(&self) -> &IrohBlockStore {
        self.inner.repo.store()
    }

    pub(super) fn collections_root(&self) -> PathBuf {
        self.inner.repo.path().join("collections")
    }

    /// Times `work` as operation `op` on `collection` in the metrics.
    pub(super) async fn observed<T>(
        &self,
        op: &str,
        collection: &str,
        work: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let start = Instant::now();
        let result = work.await;
        self.inner
            .metrics
            .operation(op, collection, result.is_ok(), start.elapsed());
        result
    }

    /// Opens every collection (replaying its log), then marks the node ready. Requests are
    /// served meanwhile: a collection dropped before its turn is skipped.
    pub async fn open_all(&self) -> Result<(), ApiError> {
        if let Err(e) = self.unpin_dropped().await {
            tracing::warn!(error = %e, "cannot remove the pins of collections a crash dropped half way; their blocks stay until gc after a restart");
        }
        for name in catalog::list(&self.collections_root())? {
            let started = Instant::now();
            let Some(c) = self.open_and_announce(&name).await? else {
                continue;
            };
            let points = c.read().await.points();
            tracing::info!(collection = %name, points, elapsed_ms = started.elapsed().as_millis() as u64, "collection open");
        }
        self.inner.ready.store(true, Ordering::Release);
        self.inner.metrics.ready.set(1);
        Ok(())
    }

    /// The open collection `name`, opening it if needed (other names are not held up
    /// meanwhile); 409 while it is being dropped.
    pub async fn collection(&self, name: &str) -> Result<SharedCollection, ApiError> {
        let dir = catalog::dir_of(&self.collections_root(), name)?;
        let slot = self.slot(name).await;
        let opened = self.open_in(name, &slot, &dir).await;
        if opened.is_err() {
            self.release(name, slot).await;
        }
        opened
    }

    /// Refuses a write when the store has reached `storage.max_bytes`.
    async fn check_storage(&self) -> Result<(), ApiError> {
        let max = self.inner.config.storage.max_bytes;
        if max == 0 {
            return Ok(());
        }
        let cached = self
            .inner
            .store_size
            .lock()
            .ok()
            .and_then(|s| *s)
            .filter(|(at, _)| at.elapsed() < STORE_SIZE_TTL);
        let bytes = match cached {
            Some((_, bytes)) => bytes,
            None => {
                let bytes = self.store().stats().await?.bytes;
                if let Ok(mut s) = self.inner.store_size.lock() {
                    *s = Some((Instant::now(), bytes));
                }
                bytes
            }
        };
        if bytes >= max {
            return Err(ApiError::insufficient_storage(format!(
                "the block store holds {bytes} bytes, at its limit storage.max_bytes = {max}; \
                 raise the limit, drop collections and run `ipvec gc`"
            )));
        }
        Ok(())
    }

    /// Node facts.
    pub async fn node_info(&self) -> Result<NodeInfo, ApiError> {
        let stats = self.store().stats().await?;
        Ok(NodeInfo {
            peer_id: self.inner.repo.peer_id().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            repo: self.inner.repo.path().display().to_string(),
            collections: catalog::list(&self.collections_root())?.len(),
            store: StoreInfo {
                blocks: stats.blocks,
                bytes: stats.bytes,
            },
            uptime_secs: self.inner.started.elapsed().as_secs(),
        })
    }

    /// The running long operations.
    pub fn jobs(&self) -> JobList {
        JobList {
            jobs: self.inner.jobs.list(),
        }
    }

    /// Creates a collection: whole, or (on failure) nothing of it.
    pub async fn create_collection(
        &self,
        request: CreateCollection,
    ) -> Result<CollectionInfo, ApiError> {
        let spec = CollectionSpec {
            name: request.name.clone(),
            dimension: request.dim,
            metric: request.metric,
            quantization: request.quantization,
            hnsw: ipvec_protocol::manifest::HnswParams {
                m: request.m,
                ef_construction: request.ef_construction,
                ef_search: request.ef_search,
            },
            shards: request.shards,
            replication: request.replication,
        };
        let node = self.clone();
        // Offloaded: it runs to its end even if the caller goes away.
        let created = offload(async move { node.create_in_turn(spec).await });
        self.observed("create", &request.name, created).await
    }

    /// Every collection.
    pub async fn list_collections(&self) -> Result<CollectionList, ApiError> {
        let root = self.collections_root();
        let mut collections = Vec::new();
        for name in catalog::list(&root)? {
            match self.collection_info(&name).await {
                Ok(info) => collections.push(info),
                // Dropped since the folder was listed, or being dropped.
                Err(e) if e.code == "conflict" || !catalog::exists(&root.join(&name)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(CollectionList { collections })
    }

    /// One collection's settings and counts.
    pub async fn collection_info(&self, name: &str) -> Result<CollectionInfo, ApiError> {
        let c = self.collection(name).await?;
        let c = c.read().await;
        self.info_of(name, &c)
    }

    pub(super) fn info_of(
        &self,
        name: &str,
        c: &Collection<IrohBlockStore>,
    ) -> Result<CollectionInfo, ApiError> {
        let m = c.manifest();
        let id = c.id()?;
        let replication = self.inner.replication.of(&id, c.head().seq, c.writable());
        let shard_status = self.shard_status(&id, c, replication.providers.as_deref());
        Ok(CollectionInfo {
            name: name.to_string(),
            dim: m.dimension,
            metric: m.metric,
            quantization: m.quantization,
            hnsw: HnswInfo {
                m: m.hnsw.m,
                ef_construction: m.hnsw.ef_construction,
                ef_search: m.hnsw.ef_search,
            },
            shards: m.shards.len(),
            points: c.points(),
            root: c.root().to_string(),
            version: c.head().seq,
            index_memory_bytes: c.index_memory(),
            wal_bytes: c.wal_bytes(),
            writable: c.writable(),
            state: replication.state.to_string(),
            sync_percent: replication.sync_percent,
            lag: replication.lag,
            replication_factor: m.replication,
            replicas: replication.providers.and_then(|p| p.into_iter().min()),
            announced_secs_ago: replication.announced_secs_ago,
            shard_status,
            id,
        })
    }

    /// A collection's versions, newest first (its acknowledged writes committed first).
    pub async fn collection_log(&self, name: &str) -> Result<VersionList, ApiError> {
        self.commit(name).await?;
        let c = self.collection(name).await?;
        let c = c.read().await;
        let versions = c
            .versions()
            .await?
            .into_iter()
            .map(|(cid, m)| VersionInfo {
                root: cid.to_string(),
                points: m.points,
                updated: m.updated,
            })
            .collect();
        Ok(VersionList { versions })
    }

    /// Drops a collection: its folder goes now, its blocks at the next gc. Requests in flight
    /// on it finish first; requests that come meanwhile get 409.
    pub async fn drop_collection(&self, name: &str) -> Result<Dropped, ApiError> {
        self.observed("drop", name, async {
            let node = self.clone();
            let owned = name.to_string();
            // Offloaded: it runs to its end even if the caller goes away.
            let dropped = offload(async move { node.drop_in_turn(&owned).await }).await?;
            for family in [
                &self.inner.metrics.points,
                &self.inner.metrics.index_memory,
                &self.inner.metrics.index_duplicate_points,
                &self.inner.metrics.index_duplicate_bytes_saved,
                &self.inner.metrics.wal_bytes,
            ] {
                family.remove(&super::metrics::CollectionLabels {
                    collection: name.to_string(),
                });
            }
            Ok(dropped)
        })
        .await
    }

    /// Upserts a batch: stored whole once durable, or not at all.
    pub async fn upsert(&self, name: &str, points: Vec<PointIn>) -> Result<WriteResult, ApiError> {
        let n = points.len() as u64;
        self.observed("upsert", name, async {
            self.check_batch("points", points.len())?;
            let points = to_points(points)?;
            self.check_storage().await?;
            let shared = self.collection(name).await?;
            let node = self.clone();
            let job = self.inner.jobs.start("upsert", name, "points", Some(n));
            let result = offload(async move {
                let _writing = node.inner.gc_lock.read().await;
                let written = collection::shared::upsert(&shared, points).await?;
                Ok(write_result(written))
            })
            .await?;
            job.set(n);
            self.inner.metrics.written(name, result.changed);
            Ok(result)
        })
        .await
    }

    /// Deletes points by id.
    pub async fn delete(&self, name: &str, ids: Vec<PointId>) -> Result<WriteResult, ApiError> {
        self.observed("delete", name, async {
            self.check_batch("ids", ids.len())?;
            let shared = self.collection(name).await?;
            let node = self.clone();
            let ids: Vec<_> = ids.into_iter().map(Into::into).collect();
            let result = offload(async move {
                let _writing = node.inner.gc_lock.read().await;
                let written = collection::shared::delete(&shared, &ids).await?;
                Ok(write_result(written))
            })
            .await?;
            self.inner.metrics.written(name, result.changed);
            Ok(result)
        })
        .await
    }

    /// One point.
    pub async fn get_point(&self, name: &str, id: PointId) -> Result<PointOut, ApiError> {
        self.observed("get", name, async {
            let c = self.collection(name).await?;
            let c = c.read().await;
            let entry_id = id.clone().into();
            let Some((entry, leaf)) = c.get(&entry_id).await? else {
                return Err(ApiError::not_found(format!(
                    "collection {name} has no point {id}"
                )));
            };
            Ok(PointOut {
                id,
                vector: c.vector_of(&entry),
                metadata: entry.meta.as_ref().map(ipld_to_json),
                cid: leaf.map(|c| c.to_string()),
            })
        })
        .await
    }

    /// Checks a search's numbers against `search.*` before any work, and gives its deadline.
    fn search_budget(&self, request: &SearchRequest) -> Result<Duration, ApiError> {
        let limits = &self.inner.config.search;
        let within = |field: &str, value: u64, max: u64, key: &str| {
            if value == 0 || value > max {
                Err(ApiError::bad_request(format!(
                    "{field} = {value} is outside 1..={max} ({key}); {}",
                    if value == 0 {
                        format!("{field} must be at least 1")
                    } else {
                        format!("ask for less, or raise {key} in the config")
                    }
                )))
            } else {
                Ok(value)
            }
        };
        within("k", request.k as u64, limits.max_k, "search.max_k")?;
        if let Some(ef) = request.ef {
            within("ef", ef as u64, limits.max_ef, "search.max_ef")?;
        }
        let deadline = match request.deadline_ms {
            Some(ms) => within(
                "deadline_ms",
                ms,
                limits.max_deadline_ms,
                "search.max_deadline_ms",
            )?,
            None => limits.deadline_ms,
        };
        Ok(Duration::from_millis(deadline))
    }

    /// Searches a collection (or, with `at`, an older version of it), stopping at the
    /// request's deadline (`search.deadline_ms` when it names none).
    pub async fn search(
        &self,
        name: &str,
        request: SearchRequest,
    ) -> Result<SearchResponse, ApiError> {
        let response = self
            .observed("search", name, async {
                let deadline = self.search_budget(&request)?;
                let filter = request
                    .filter
                    .as_ref()
                    .map(|f| Filter::from_json(f).and_then(Filter::compile))
                    .transpose()?;
                let at = request.at.as_deref().map(parse_cid).transpose()?;
                let shared = self.collection(name).await?;
                let work = async move {
                    let c = shared.read_owned().await;
                    let hits = match at {
                        Some(at) => {
                            c.search_at(&at, &request.vector, request.k, filter.as_ref())
                                .await?
                        }
                        None => {
                            let options = SearchOptions {
                                k: request.k,
                                ef: request.ef,
                                exact: request.exact,
                            };
                            c.search(&request.vector, options, filter.as_ref()).await?
                        }
                    };
                    Ok(SearchResponse {
                        hits: hits
                            .into_iter()
                            .map(|h| Hit {
                                id: PointId::from(&h.id),
                                score: h.score,
                                cid: h.leaf.map(|c| c.to_string()),
                                metadata: h.metadata.as_ref().map(ipld_to_json),
                            })
                            .collect(),
                    })
                };
                // The deadline runs inside the blocking task, so a search stopped by it stops
                // working too (at its next wait: a lock, a block read) instead of running on
                // unseen.
                offload(async move {
                    tokio::time::timeout(deadline, work)
                        .await
                        .unwrap_or_else(|_| {
                            Err(ApiError::deadline_exceeded(format!(
                            "the search was stopped at its deadline of {} ms; ask for a longer \
                             deadline_ms (at most search.max_deadline_ms), a smaller k or ef, \
                             or an HNSW search instead of an exact one",
                            deadline.as_millis()
                        )))
                        })
                })
                .await
            })
            .await?;
        self.inner.metrics.hits(name, response.hits.len());
        Ok(response)
    }

    /// Refuses a batch over `api.max_batch_points`.
    fn check_batch(&self, what: &str, n: usize) -> Result<(), ApiError> {
        let max = self.inner.config.api.max_batch_points;
        if n as u64 > max {
            return Err(ApiError::too_large(format!(
                "the request holds {n} {what}, over api.max_batch_points = {max}; send them in \
                 batches of at most {max}"
            )));
        }
        Ok(())
    }

    /// Commits collection `name`'s acknowledged writes into its tree (a new version), if it
    /// has any.
    pub async fn commit(&self, name: &str) -> Result<(), ApiError> {
        let shared = self.collection(name).await?;
        if shared.read().await.wal_bytes() == 0 {
            return Ok(());
        }
        let node = self.clone();
        self.observed("commit", name, async move {
            offload(async move {
                let _writing = node.inner.gc_lock.read().await;
                collection::shared::checkpoint(&shared).await?;
                Ok(())
            })
            .await
        })
        .await?;
        // A new version: tell the followers.
        self.gossip_head(name).await
    }

    /// Commits every open collection's acknowledged writes (the daemon does this every
    /// `storage.commit_interval_ms`, so leaf CIDs and versions follow writes closely).
    pub async fn commit_all(&self) {
        for (name, _) in self.open_collections().await {
            if let Err(e) = self.commit(&name).await {
                tracing::warn!(collection = %name, error = %e, "committing the log failed; it stays in the log and is retried");
            }
        }
    }

    /// Stores the signed head of collection `name` as a block and returns its CID: the root
    /// of the collection's export (its acknowledged writes committed first).
    pub async fn collection_export_root(&self, name: &str) -> Result<Cid, ApiError> {
        self.commit(name).await?;
        let c = self.collection(name).await?;
        let c = c.read().await;
        let head = self
            .store()
            .put(pcid::DAG_CBOR, Bytes::from(dagcbor::encode(c.head())?))
            .await?;
        Ok(head)
    }

    /// Writes the DAG under `root` as a CAR v1 stream into `out`.
    pub async fn export_car<W: AsyncWrite + Unpin + Send>(
        &self,
        root: &Cid,
        out: W,
        progress: impl FnMut(car::CarProgress),
    ) -> Result<car::CarProgress, ApiError> {
        self.observed("export", "", async {
            let job = self
                .inner
                .jobs
                .start("export", root.to_string(), "bytes", None);
            let mut progress = progress;
            let totals = car::export(self.store(), root, out, |p| {
                job.set(p.bytes);
                progress(p)
            })
            .await?;
            Ok(totals)
        })
        .await
    }

    /// Reads a CAR v1 stream into the store, checking every block; pins its roots only if
    /// all of it is good.
    pub async fn import_car<R: AsyncRead + Unpin + Send>(
        &self,
        input: R,
        total: Option<u64>,
        progress: impl FnMut(car::CarProgress),
    ) -> Result<CarImported, ApiError> {
        self.observed("import", "", async {
            self.check_storage().await?;
            let _writing = self.inner.gc_lock.read().await;
            let job = self.inner.jobs.start("import", "car", "bytes", total);
            let mut progress = progress;
            let summary = car::import(self.store(), input, |p| {
                job.set(p.bytes);
                progress(p)
            })
            .await?;
            Ok(CarImported {
                roots: summary.roots.iter().map(|c| c.to_string()).collect(),
                blocks: summary.totals.blocks,
                bytes: summary.totals.bytes,
            })
        })
        .await
    }

    /// Registers a collection from an imported CAR (from `collection export`) whose root
    /// is its signed head, under `name` or its own name.
    pub async fn adopt_collection(
        &self,
        imported: &CarImported,
        name: Option<String>,
    ) -> Result<CollectionImported, ApiError> {
        let store = self.store();
        let [ref root] = imported.roots[..] else {
            return Err(ApiError::bad_request(format!(
                "the CAR has {} roots; a collection export has exactly one (its signed head)",
                imported.roots.len()
            )));
        };
        let root = parse_cid(root.as_str())?;
        let adopted = async {
            let head: HeadRecord = dagcbor::decode(&store.require(&root).await?).map_err(|_| {
                ApiError::bad_request(
                    "the CAR is not a collection export (its root is no signed head); \
                     use `ipvec dag import` for other DAGs",
                )
            })?;
            self.register(head, name).await
        }
        .await;
        // The collection's own pin (on its manifest) now keeps the DAG; the file's root pin goes.
        store.unpin(&root).await?;
        store.flush().await?;
        adopted
    }

    /// Registers the collection of `head` (whose DAG is in the store) under `name` or the
    /// manifest's own name, and announces it.
    pub(super) async fn register(
        &self,
        head: HeadRecord,
        name: Option<String>,
    ) -> Result<CollectionImported, ApiError> {
        let store = self.store();
        let manifest: Manifest = dagcbor::decode(&store.require(&head.manifest).await?)?;
        let name = name.unwrap_or(manifest.name);
        catalog::check_new_name(&name)?;
        let node = self.clone();
        // Offloaded: it runs to its end even if the caller goes away.
        offload(async move { node.register_in_turn(head, &name).await }).await
    }

    /// Stores a DAG-JSON value as one DAG-CBOR block, pinned if asked (its links must then
    /// all be stored).
    pub async fn dag_put(&self, dag_json: &[u8], pin: bool) -> Result<DagPut, ApiError> {
        self.observed("dag_put", "", async {
            let value: Ipld = serde_ipld_dagjson::from_slice(dag_json).map_err(|e| {
                ApiError::bad_request(format!("the input is not valid DAG-JSON ({e}); write links as {{\"/\": \"<cid>\"}} and bytes as {{\"/\": {{\"bytes\": \"<base64>\"}}}}"))
            })?;
            let bytes = dagcbor::encode(&value)?;
            if bytes.len() > limits::MAX_BLOCK_BYTES {
                return Err(ApiError::bad_request(format!(
                    "the block is {} bytes as DAG-CBOR, over the {}-byte limit; split it into linked blocks",
                    bytes.len(),
                    limits::MAX_BLOCK_BYTES
                )));
            }
            self.check_storage().await?;
            let _writing = self.inner.gc_lock.read().await;
            let cid = self.store().put(pcid::DAG_CBOR, Bytes::from(bytes)).await?;
            if pin {
                dag::check_complete(self.store(), &cid).await?;
                self.store().pin(&cid).await?;
            }
            self.store().flush().await?;
            Ok(DagPut {
                cid: cid.to_string(),
                pinned: pin,
            })
        })
        .await
    }

    /// A block as DAG-JSON (raw blocks as DAG-JSON bytes).
    pub async fn dag_get(&self, cid: &str) -> Result<Vec<u8>, ApiError> {
        let cid = parse_cid(cid)?;
        let bytes = self.store().require(&cid).await?;
        let value: Ipld = match cid.codec() {
            pcid::DAG_CBOR => dagcbor::decode_trusted(&bytes)?,
            _ => Ipld::Bytes(bytes.to_vec()),
        };
        serde_ipld_dagjson::to_vec(&value)
            .map_err(|e| ApiError::internal(format!("cannot write the block as DAG-JSON: {e}")))
    }

    /// A block's size and codec.
    pub async fn block_stat(&self, cid: &str) -> Result<BlockStat, ApiError> {
        let cid = parse_cid(cid)?;
        let bytes = self.store().require(&cid).await?;
        Ok(BlockStat {
            cid: cid.to_string(),
            size: bytes.len(),
            codec: pcid::codec_name(cid.codec()).to_string(),
        })
    }

    /// Every pin.
    pub async fn pins(&self) -> Result<PinList, ApiError> {
        let pins = self
            .store()
            .pins()
            .await?
            .into_iter()
            .map(|(name, cid)| Pin {
                cid: cid.to_string(),
                name,
            })
            .collect();
        Ok(PinList { pins })
    }

    /// Pins the DAG under `cid` (all of it must be stored).
    pub async fn pin_add(&self, cid: &str) -> Result<Pin, ApiError> {
        let cid = parse_cid(cid)?;
        let _writing = self.inner.gc_lock.read().await;
        dag::check_complete(self.store(), &cid).await.map_err(|e| {
            ApiError::bad_request(format!("cannot pin {cid}: its DAG is not complete in this repository; import it first (ipvec dag import): {e}"))
        })?;
        self.store().pin(&cid).await?;
        self.store().flush().await?;
        Ok(Pin {
            cid: cid.to_string(),
            name: cid.to_string(),
        })
    }

    /// Removes a `pin add` pin.
    pub async fn pin_rm(&self, cid: &str) -> Result<Pin, ApiError> {
        let cid = parse_cid(cid)?;
        if !self.store().unpin(&cid).await? {
            return Err(ApiError::not_found(format!(
                "{cid} is not pinned; `ipvec pin ls` lists the pins"
            )));
        }
        self.store().flush().await?;
        Ok(Pin {
            cid: cid.to_string(),
            name: cid.to_string(),
        })
    }

    /// Removes every block no pin reaches.
    pub async fn gc(&self) -> Result<GcResult, ApiError> {
        self.observed("gc", "", async {
            let _alone = self.inner.gc_lock.write().await;
            let _job = self.inner.jobs.start("gc", "", "blocks", None);
            let report = gc::collect_garbage(self.store()).await?;
            if let Ok(mut size) = self.inner.store_size.lock() {
                *size = None;
            }
            Ok(GcResult {
                removed_blocks: report.removed.blocks,
                removed_bytes: report.removed.bytes,
                live_blocks: report.live_blocks,
                missing_blocks: report.missing_blocks,
            })
        })
        .await
    }

    /// The open collections, by name (a snapshot: the map is not held while they are used).
    pub(super) async fn open_collections(&self) -> Vec<(String, SharedCollection)> {
        self.inner
            .collections
            .lock()
            .await
            .iter()
            .filter_map(|(n, slot)| Some((n.clone(), slot.open()?)))
            .collect()
    }

    /// Sets the scrape-time gauges and returns the metrics text.
    pub async fn metrics_text(&self) -> String {
        let metrics = &self.inner.metrics;
        metrics.wal_fsyncs.inner().fetch_max(
            collection::wal::fsyncs_total(),
            std::sync::atomic::Ordering::Relaxed,
        );
        for (name, c) in self.open_collections().await {
            let labels = super::metrics::CollectionLabels { collection: name };
            // A collection busy with a long write keeps its last values.
            if let Ok(c) = c.try_read() {
                metrics.points.get_or_create(&labels).set(c.points() as i64);
                metrics
                    .index_memory
                    .get_or_create(&labels)
                    .set(c.index_memory() as i64);
                let duplicates = c.duplicate_stats();
                metrics
                    .index_duplicate_points
                    .get_or_create(&labels)
                    .set(duplicates.points as i64);
                metrics
                    .index_duplicate_bytes_saved
                    .get_or_create(&labels)
                    .set(duplicates.bytes_saved as i64);
                metrics
                    .wal_bytes
                    .get_or_create(&labels)
                    .set(c.wal_bytes() as i64);
            }
        }
        if let Some(network) = self.inner.network.get() {
            use std::sync::atomic::Ordering::Relaxed;
            let stats = network.bitswap().stats();
            super::metrics::set_totals(
                &metrics.bitswap,
                &[
                    ("blocks_sent", stats.blocks_sent.load(Relaxed)),
                    ("blocks_received", stats.blocks_received.load(Relaxed)),
                    ("bytes_received", stats.bytes_received.load(Relaxed)),
                    ("refused", stats.refused.load(Relaxed)),
                    ("duplicates", stats.duplicates.load(Relaxed)),
                    ("peers_banned", stats.peers_banned.load(Relaxed)),
                ],
            );
            let dht = network.dht_stats();
            super::metrics::set_totals(
                &metrics.dht,
                &[
                    (
                        "provider_records_received",
                        dht.records_received.load(Relaxed),
                    ),
                    ("republished", dht.republished.load(Relaxed)),
                ],
            );
        }
        if let Ok(stats) = self.store().stats().await {
            metrics.store_blocks.set(stats.blocks as i64);
            metrics.store_bytes.set(stats.bytes as i64);
        }
        metrics.encode()
    }

    /// Commits every open collection's log into its tree and saves its index (the daemon
    /// calls this at shutdown; the CLI after each command).
    pub async fn close(&self) -> Result<(), ApiError> {
        self.inner.ready.store(false, Ordering::Release);
        let open = self.open_collections().await;
        self.inner.collections.lock().await.clear();
        self.inner.ids.clear();
        let mut first_error = None;
        for (name, c) in open {
            let mut c = c.write().await;
            if let Err(e) = c.sync().await {
                tracing::error!(collection = %name, error = %e, "closing the collection failed");
                first_error.get_or_insert(ApiError::from(e));
            }
        }
        if let Err(e) = self.store().shutdown().await {
            first_error.get_or_insert(ApiError::from(e));
        }
        first_error.map_or(Ok(()), Err)
    }
}
