//! The node's operations on an open repository: what every front end (the HTTP daemon, the
//! CLI's direct path when no daemon runs) calls, so they all answer alike.
//!
//! Collections stay open in a shared map, each behind a read/write lock: searches and reads
//! share it; writes and commits take it alone only briefly, to apply a durable write or swap in
//! a new version (their fsyncs and tree building run beside searches, see
//! [`collection::shared`](crate::collection::shared)). Opening, creating and dropping a name take turns in its
//! slot of the map (`lifecycle`). Index and log work runs on tokio's blocking pool so the
//! async workers stay free to accept requests. Garbage collection excludes every operation
//! that writes blocks (it must not sweep blocks written but not yet pinned).
//!
//! # Layout
//! - this module: [`Node`], its construction, opening and closing, and the checks every
//!   operation shares (storage limit, batch size, timing).
//! - [`error`]: [`Error`], what an operation fails with, by meaning.
//! - [`collections`]: creating, listing, describing, committing and dropping collections.
//! - [`points`]: writing, deleting and reading points.
//! - [`search`]: searching a collection or an older version of it.
//! - [`backup`]: backing collections up into a directory and restoring them.
//! - [`blocks`]: DAG blocks, pins, garbage collection and CAR files.
//! - [`peers`]: this node on the network: peers, connections, DHT providers, announcements.
//! - [`deny`]: denied peers: refusing a peer, lifting it, listing who is refused.
//! - [`writers`]: the keys a collection allows to publish versions, changed by its owner.
//! - [`replicate`]: fetching other nodes' collections, following their heads.
//! - [`federation`]: federated search: asking the peers that hold a collection's shards, and
//!   answering their searches of the shards held here.
//! - [`status`]: what this node knows of its collections' replication.
//! - `lifecycle`: opening, creating and dropping a collection name, one at a time per name.
//! - `ids`: the open collections by id, for judging gossip without their locks.
//! - `quota`: per-collection and per-token quotas, checked before a write is logged.
//! - [`jobs`]: long operations in flight and their progress.
//! - [`metrics`]: the Prometheus registry.
//! - [`operations`]: [`Operations`], the one list of operations, implemented here and by
//!   the HTTP client.

pub mod backup;
pub mod blocks;
mod breakers;
pub mod collections;
pub mod deny;
pub mod error;
pub mod federation;
mod fetch;
mod ids;
pub mod jobs;
mod lifecycle;
pub mod members;
pub mod metrics;
pub mod operations;
pub mod peers;
pub mod points;
mod quota;
pub mod ready;
pub mod replicate;
pub mod search;
pub mod search_cache;
pub mod status;
pub mod text;
pub mod writers;

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

use cid::Cid;
use ipvec_protocol::{api::*, cid as pcid};
use tokio::sync::RwLock;

pub use self::{
    error::{Error, Result},
    operations::Operations,
};
use self::{jobs::Jobs, lifecycle::Slot, metrics::Metrics};
use crate::{
    collection::{catalog, Collection},
    repo::{Config, Repo},
    store::{BlockStore, IrohBlockStore},
};

/// An open collection shared between requests.
pub type SharedCollection = Arc<RwLock<Collection<IrohBlockStore>>>;

/// How long a measured store size is trusted by the storage limit check.
const STORE_SIZE_TTL: Duration = Duration::from_secs(5);

/// A cloneable handle on an open repository and its open collections.
#[derive(Debug, Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    repo: Repo,
    config: Config,
    /// Each collection name's slot: its lifecycle turn and, once open, the collection.
    collections: tokio::sync::Mutex<HashMap<String, Arc<Slot>>>,
    /// Held shared by every operation that writes blocks, alone by gc.
    gc_lock: RwLock<()>,
    metrics: Metrics,
    jobs: Jobs,
    ready: AtomicBool,
    /// Set by [`Node::open_all`]: the collections open in the background while requests are
    /// served, so a request waits for a collection's opening only a moment (`lifecycle`).
    opens_in_background: AtomicBool,
    store_size: Mutex<Option<(Instant, u64)>>,
    /// The swarm, in a daemon.
    network: std::sync::OnceLock<crate::net::Network>,
    /// When the node opened the repository.
    started: Instant,
    /// What the node knows of its collections' replication.
    replication: status::Tracker,
    /// The open collections by id (gossip validation reads it without their locks).
    ids: ids::CollectionIds,
    /// The node's background tasks (following heads, counting providers, exports).
    tasks: crate::tasks::Tasks,
    /// What federated searches keep between them (peers' latencies, shards' holders).
    federation: federation::State,
    /// The peers denied at run time (the repository's `denied_peers` file), see [`deny`].
    denied: Mutex<std::collections::BTreeSet<libp2p::PeerId>>,
    /// The embedding models of text collections, made when first needed, see [`text`].
    models: crate::embed::Models,
    /// Answers of local searches, see [`search_cache`].
    search_cache: Mutex<search_cache::SearchCache>,
    /// The members of the collections held here, see [`members`].
    groups: members::Groups,
}

/// Runs `work` on the blocking pool (it may search an index for a while).
async fn offload<T: Send + 'static>(
    work: impl Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T, Error> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(work))
        .await
        .map_err(stopped)?
}

/// Runs `work` on the [`background`](crate::background) pool, which yields the CPU to
/// searches: writes (index inserts, log fsyncs), commits, creates and drops.
async fn offload_background<T: Send + 'static>(
    work: impl Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T, Error> {
    let handle = tokio::runtime::Handle::current();
    crate::background::run(move || handle.block_on(work))
        .await
        .map_err(stopped)?
}

fn stopped(e: tokio::task::JoinError) -> Error {
    Error::internal(format!("operation failed: {e}"))
}

/// Parses a CID from a request.
pub fn parse_cid(text: &str) -> Result<Cid, Error> {
    let cid = pcid::parse_cid(text)?;
    pcid::check_supported(&cid)?;
    Ok(cid)
}

impl Node {
    /// Wraps an open repository; `config` is its effective configuration (file, environment
    /// and flags). Collections open on first use, or all at once with [`Node::open_all`].
    pub fn new(repo: Repo, config: Config) -> Self {
        crate::background::set_nice(config.storage.background_nice);
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
        let denied = crate::repo::denied::load(repo.path()).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the denied peers; none are refused until it is fixed");
            Default::default()
        });
        crate::outbound::Outbound::shared().configure(&config.outbound);
        let peer_breakers = federation::State::new(config.outbound.breaker());
        Self {
            inner: Arc::new(Inner {
                denied: Mutex::new(denied),
                models: crate::embed::Models::new(config.embedding.clone()),
                groups: Default::default(),
                search_cache: Mutex::new(search_cache::SearchCache::new(
                    config.search.cache_entries,
                    config.search.cache_bytes,
                )),
                repo,
                config,
                collections: Default::default(),
                gc_lock: RwLock::new(()),
                metrics: Metrics::new(),
                jobs: Jobs::default(),
                ready: AtomicBool::new(false),
                opens_in_background: AtomicBool::new(false),
                store_size: Mutex::new(None),
                network: std::sync::OnceLock::new(),
                started: Instant::now(),
                replication: Default::default(),
                ids: Default::default(),
                tasks: crate::tasks::Tasks::new(Default::default()),
                federation: peer_breakers,
            }),
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

    /// The node's background tasks (a front end spawns its streaming work here, so it is
    /// stopped with the node).
    pub(crate) fn tasks(&self) -> &crate::tasks::Tasks {
        &self.inner.tasks
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Whether every collection is open and its log replayed.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    fn store(&self) -> &IrohBlockStore {
        self.inner.repo.store()
    }

    fn collections_root(&self) -> PathBuf {
        self.inner.repo.path().join("collections")
    }

    /// Times `work` as operation `op` on `collection` in the metrics.
    async fn observed<T>(
        &self,
        op: &str,
        collection: &str,
        work: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let start = Instant::now();
        let result = work.await;
        self.inner
            .metrics
            .operation(op, collection, result.is_ok(), start.elapsed());
        result
    }

    /// Whether collections open in the background while requests are served (see
    /// [`Node::open_all`]).
    fn opens_in_background(&self) -> bool {
        self.inner.opens_in_background.load(Ordering::Acquire)
    }

    /// Opens every collection (replaying its log), then marks the node ready. Requests are
    /// served meanwhile: a collection dropped before its turn is skipped. From the call on,
    /// the node opens collections in the background: a request for a collection that is not
    /// open yet waits for it only a moment, then is refused as unavailable with how far its
    /// opening has come (and the opening goes on), so one collection's index rebuild never
    /// holds up requests for long, and never those for other collections.
    pub async fn open_all(&self) -> Result<(), Error> {
        self.inner
            .opens_in_background
            .store(true, Ordering::Release);
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
    /// meanwhile); a conflict while it is being dropped. Once [`Node::open_all`] has run, a
    /// collection still opening after a moment is refused as unavailable, with how much of its
    /// index is built.
    pub async fn collection(&self, name: &str) -> Result<SharedCollection, Error> {
        let dir = catalog::dir_of(&self.collections_root(), name)?;
        let slot = self.slot(name).await;
        let opened = self.open_in(name, &slot, &dir).await;
        if opened.is_err() {
            self.release(name, slot).await;
        }
        opened
    }

    /// Refuses a write when the store has reached `storage.max_bytes`.
    async fn check_storage(&self) -> Result<(), Error> {
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
            return Err(Error::insufficient_storage(format!(
                "the block store holds {bytes} bytes, at its limit storage.max_bytes = {max}; \
                 raise the limit, drop collections and run `ipvec gc`"
            )));
        }
        Ok(())
    }

    /// Node facts.
    pub async fn node_info(&self) -> Result<NodeInfo, Error> {
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
            uptime_secs: Some(self.inner.started.elapsed().as_secs()),
            listen_addresses: Vec::new(),
            api: None,
        })
    }

    /// The running long operations.
    pub fn jobs(&self) -> JobList {
        JobList {
            jobs: self.inner.jobs.list(),
        }
    }

    /// Refuses a batch over `api.max_batch_points`.
    fn check_batch(&self, what: &str, n: usize) -> Result<(), Error> {
        let max = self.inner.config.api.max_batch_points;
        if n as u64 > max {
            return Err(Error::too_large(format!(
                "the request holds {n} {what}, over api.max_batch_points = {max}; send them in \
                 batches of at most {max}"
            )));
        }
        Ok(())
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

    /// Commits every open collection's log into its tree and saves its index (the daemon
    /// calls this at shutdown; the CLI after each command).
    pub async fn close(&self) -> Result<(), Error> {
        self.inner.ready.store(false, Ordering::Release);
        let open = self.open_collections().await;
        self.inner.collections.lock().await.clear();
        self.inner.ids.clear();
        let mut first_error = None;
        for (name, c) in open {
            let mut c = c.write().await;
            if let Err(e) = c.sync().await {
                tracing::error!(collection = %name, error = %e, "closing the collection failed");
                first_error.get_or_insert(Error::from(e));
            }
        }
        if let Err(e) = self.store().shutdown().await {
            first_error.get_or_insert(Error::from(e));
        }
        first_error.map_or(Ok(()), Err)
    }
}
