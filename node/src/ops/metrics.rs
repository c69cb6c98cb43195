//! The node's Prometheus metrics (`GET /metrics`, OpenMetrics text). Counters and histograms
//! move as requests and operations happen; the gauges are read from the node at scrape time.

use std::time::Duration;

use crate::store::BlockStore;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

/// Labels of an HTTP request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// The matched route pattern (`/v1/collections/:name/search`), not the raw path.
    pub route: String,
    /// Response status code.
    pub status: u16,
}

/// Labels of an HTTP route's latency.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method.
    pub method: String,
    /// The matched route pattern.
    pub route: String,
}

/// Labels of an engine operation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// search, upsert, delete, get, create, drop, export, import, gc, …
    pub operation: String,
    /// The collection, or "" for repository-wide operations.
    pub collection: String,
}

/// Labels of a gossiped head's verdict.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    /// accepted, ignored or rejected.
    pub verdict: String,
}

/// Labels of a federated search event.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FederationLabels {
    /// searches, shard_requests, hedges, failovers, timeouts, missing_shards,
    /// verification_failures, remote_served or remote_refused.
    pub event: String,
}

/// Labels of a per-collection gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CollectionLabels {
    /// The collection.
    pub collection: String,
}

/// Labels of a request refused over its rate.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitedLabels {
    /// `api` (HTTP callers) or `peer` (peer-to-peer requests).
    pub scope: String,
    /// `read` or `write` (api); `search`, `head` or `want` (peer).
    pub kind: String,
}

type Latency = Family<RouteLabels, Histogram, fn() -> Histogram>;
type OperationLatency = Family<OperationLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs to ~26 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

/// Every metric the node exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Latency,
    operations: Family<OperationLabels, Counter>,
    operation_errors: Family<OperationLabels, Counter>,
    operation_seconds: OperationLatency,
    search_hits: Family<CollectionLabels, Counter>,
    points_written: Family<CollectionLabels, Counter>,
    texts_embedded: Counter,
    heads: Family<VerdictLabels, Counter>,
    member_records: Family<VerdictLabels, Counter>,
    federation: Family<FederationLabels, Counter>,
    /// Live points per collection (set at scrape).
    pub points: Family<CollectionLabels, Gauge>,
    /// HNSW index bytes per collection (set at scrape).
    pub index_memory: Family<CollectionLabels, Gauge>,
    /// Points per collection whose vector the index shares with another point (set at scrape).
    pub index_duplicate_points: Family<CollectionLabels, Gauge>,
    /// Vector bytes per collection the index saves by storing identical vectors once (set at
    /// scrape).
    pub index_duplicate_bytes_saved: Family<CollectionLabels, Gauge>,
    /// Write-ahead log bytes per collection (set at scrape).
    pub wal_bytes: Family<CollectionLabels, Gauge>,
    /// fsyncs that made logged writes durable, over every collection (brought up to the log
    /// layer's count at scrape; concurrent writers share fsyncs, so it grows slower than the
    /// writes).
    pub wal_fsyncs: Counter,
    /// Blocks in the store (set at scrape).
    pub store_blocks: Gauge,
    /// Bytes in the store (set at scrape).
    pub store_bytes: Gauge,
    /// 1 once every collection is open and its log replayed.
    pub ready: Gauge,
    /// Bitswap totals since start, by kind (set at scrape).
    pub bitswap: Family<KindLabels, Gauge>,
    /// DHT totals since start, by kind (set at scrape).
    pub dht: Family<KindLabels, Gauge>,
    /// Connection totals since start, by kind (set at scrape).
    pub connections: Family<KindLabels, Gauge>,
    /// What the alert rules of docs/alerts.yml watch besides the above (set at scrape).
    pub health: HealthGauges,
    /// The search cache's counts (brought up to the cache's own at scrape).
    pub search_cache: SearchCacheMetrics,
    /// Requests refused over their rate, by scope and kind (the API counts as it refuses;
    /// peer refusals are brought up to the network's counts at scrape).
    rate_limited: Family<RateLimitedLabels, Counter>,
    /// Circuit breakers of outbound calls: each target's state (0 closed, 1 open, 2
    /// half-open; set at scrape, closed targets forgotten drop out).
    pub breaker_state: Family<BreakerLabels, Gauge>,
    /// Times a breaker opened, by kind of target (brought up to the count at scrape).
    pub breaker_opened: Family<KindLabels, Counter>,
}

/// Labels of a circuit breaker.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerLabels {
    /// peer, embedding or bridge.
    pub kind: String,
    /// The peer id or URL called.
    pub target: String,
}

/// The gauges the alert rules (docs/alerts.yml) watch: room left, peers, replication.
#[derive(Debug, Default)]
pub struct HealthGauges {
    /// Peers connected now.
    pub peers_connected: Gauge,
    /// Free bytes on the file system of the repository (for an unprivileged user).
    pub disk_free_bytes: Gauge,
    /// Size of the file system of the repository.
    pub disk_total_bytes: Gauge,
    /// `storage.max_bytes` (0: no limit).
    pub store_limit_bytes: Gauge,
    /// Peers known to hold the collection's current version (its least-held shard), when
    /// counted.
    pub replicas: Family<CollectionLabels, Gauge>,
    /// The replicas the collection asks for (its manifest's replication factor).
    pub replication_target: Family<CollectionLabels, Gauge>,
}

impl HealthGauges {
    fn register(registry: &mut Registry) -> Self {
        let gauges = Self::default();
        registry.register(
            "peers_connected",
            "Peers connected now",
            gauges.peers_connected.clone(),
        );
        registry.register(
            "disk_free_bytes",
            "Bytes free for the daemon on the file system of the repository",
            gauges.disk_free_bytes.clone(),
        );
        registry.register(
            "disk_total_bytes",
            "Size in bytes of the file system of the repository",
            gauges.disk_total_bytes.clone(),
        );
        registry.register(
            "store_limit_bytes",
            "storage.max_bytes: writes are refused when the store reaches it (0: no limit)",
            gauges.store_limit_bytes.clone(),
        );
        registry.register(
            "collection_replicas",
            "Peers known to hold the collection's current version (of its least-held shard); absent until counted",
            gauges.replicas.clone(),
        );
        registry.register(
            "collection_replication_target",
            "Replicas the collection asks for (its replication factor)",
            gauges.replication_target.clone(),
        );
        gauges
    }
}

/// The search cache's metrics ([`search_cache`](super::search_cache)).
#[derive(Debug, Default)]
pub struct SearchCacheMetrics {
    /// Searches answered from the cache.
    pub hits: Counter,
    /// Searches looked up in the cache and not found there.
    pub misses: Counter,
    /// Answers dropped to make room.
    pub evictions: Counter,
    /// Answers held.
    pub entries: Gauge,
    /// Bytes the answers held take, about.
    pub bytes: Gauge,
}

impl SearchCacheMetrics {
    /// Registers each metric in `registry`.
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "search_cache_hits",
            "Searches answered from the search cache (the same search at the same collection state)",
            self.hits.clone(),
        );
        registry.register(
            "search_cache_misses",
            "Searches looked up in the search cache and not found there (searched, then kept)",
            self.misses.clone(),
        );
        registry.register(
            "search_cache_evictions",
            "Answers the search cache dropped to make room (search.cache_entries, search.cache_bytes)",
            self.evictions.clone(),
        );
        registry.register(
            "search_cache_entries",
            "Answers the search cache holds",
            self.entries.clone(),
        );
        registry.register(
            "search_cache_bytes",
            "Bytes the search cache's answers take, about",
            self.bytes.clone(),
        );
    }

    /// Brings the metrics up to the cache's counts.
    fn set(&self, stats: super::search_cache::CacheStats) {
        use std::sync::atomic::Ordering::Relaxed;
        self.hits.inner().fetch_max(stats.hits, Relaxed);
        self.misses.inner().fetch_max(stats.misses, Relaxed);
        self.evictions.inner().fetch_max(stats.evictions, Relaxed);
        self.entries.set(stats.entries as i64);
        self.bytes.set(stats.bytes as i64);
    }
}

/// Labels of a Bitswap total.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// What is counted, e.g. blocks_sent (Bitswap) or republished (DHT).
    pub kind: String,
}

/// Sets each `(kind, total)` of a family of totals by kind.
pub fn set_totals(family: &Family<KindLabels, Gauge>, totals: &[(&str, u64)]) {
    for (kind, value) in totals {
        family
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .set(*value as i64);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered under the `ipvec_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ipvec");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        let request_seconds: Latency = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            request_seconds.clone(),
        );
        let operations = Family::<OperationLabels, Counter>::default();
        registry.register(
            "operations",
            "Engine operations by operation and collection",
            operations.clone(),
        );
        let operation_errors = Family::<OperationLabels, Counter>::default();
        registry.register(
            "operation_errors",
            "Engine operations that failed, by operation and collection",
            operation_errors.clone(),
        );
        let operation_seconds: OperationLatency = Family::new_with_constructor(latency_histogram);
        registry.register(
            "operation_duration_seconds",
            "Engine operation latency by operation and collection",
            operation_seconds.clone(),
        );
        let search_hits = Family::<CollectionLabels, Counter>::default();
        registry.register(
            "search_hits",
            "Search hits returned, by collection",
            search_hits.clone(),
        );
        let points_written = Family::<CollectionLabels, Counter>::default();
        registry.register(
            "points_written",
            "Points upserted or deleted (acknowledged), by collection",
            points_written.clone(),
        );
        let texts_embedded = Counter::default();
        registry.register(
            "texts_embedded",
            "Texts of points and queries embedded with a text collection's model",
            texts_embedded.clone(),
        );
        let heads = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "gossip_heads",
            "Signed heads received over gossipsub or asked of peers, by verdict (rejected: bad signature, an unknown or removed writer, or a bad form)",
            heads.clone(),
        );
        let member_records = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "gossip_member_records",
            "Member records of community collections received over gossipsub, by verdict (rejected: bad signature or another collection's)",
            member_records.clone(),
        );
        let federation = Family::<FederationLabels, Counter>::default();
        registry.register(
            "federation_events",
            "Federated search events: searches asked, shard requests sent, hedges, failovers, \
             timeouts, shards missing, hits failing verification, and peers' searches served or refused",
            federation.clone(),
        );
        let points = Family::<CollectionLabels, Gauge>::default();
        registry.register(
            "collection_points",
            "Live points per collection",
            points.clone(),
        );
        let index_memory = Family::<CollectionLabels, Gauge>::default();
        registry.register(
            "index_memory_bytes",
            "Memory of each collection's HNSW index",
            index_memory.clone(),
        );
        let index_duplicate_points = Family::<CollectionLabels, Gauge>::default();
        registry.register(
            "index_duplicate_points",
            "Points of each collection whose vector is identical to another point's, stored once in the HNSW index",
            index_duplicate_points.clone(),
        );
        let index_duplicate_bytes_saved = Family::<CollectionLabels, Gauge>::default();
        registry.register(
            "index_duplicate_bytes_saved",
            "Vector bytes each collection's HNSW index does not hold because identical vectors are stored once",
            index_duplicate_bytes_saved.clone(),
        );
        let wal_bytes = Family::<CollectionLabels, Gauge>::default();
        registry.register(
            "wal_bytes",
            "Bytes in each collection's write-ahead log (acknowledged, not yet in the tree)",
            wal_bytes.clone(),
        );
        let wal_fsyncs = Counter::default();
        registry.register(
            "wal_fsyncs",
            "fsyncs that made write-ahead log records durable, over every collection (writers that log together share one)",
            wal_fsyncs.clone(),
        );
        let store_blocks = Gauge::default();
        registry.register(
            "store_blocks",
            "Blocks in the block store",
            store_blocks.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register(
            "store_bytes",
            "Bytes of block data in the block store",
            store_bytes.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 once the repository is open and every log replayed",
            ready.clone(),
        );
        let bitswap = Family::<KindLabels, Gauge>::default();
        registry.register(
            "bitswap",
            "Bitswap totals since the daemon started: blocks_sent, blocks_received, bytes_received, refused (malformed messages, unsolicited or wrong blocks), duplicates (late copies of blocks asked of several peers), peers_banned (peers disconnected for breaking the protocol or sending wrong blocks)",
            bitswap.clone(),
        );
        let dht = Family::<KindLabels, Gauge>::default();
        registry.register(
            "dht",
            "DHT totals since the daemon started: provider_records_received (placed here by other peers, first announcements and republishes), republished (this node's provider records published again on schedule)",
            dht.clone(),
        );
        let connections = Family::<KindLabels, Gauge>::default();
        registry.register(
            "connections",
            "Connection totals since the daemon started: denied (connections of denied peers refused or closed at once, inbound and outbound)",
            connections.clone(),
        );
        let health = HealthGauges::register(&mut registry);
        let search_cache = SearchCacheMetrics::default();
        search_cache.register(&mut registry);
        let rate_limited = Family::<RateLimitedLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused over their rate limit, by scope (api, peer) and kind",
            rate_limited.clone(),
        );
        let breaker_state = Family::<BreakerLabels, Gauge>::default();
        registry.register(
            "breaker_state",
            "Circuit breaker of each outbound target with failures lately, by kind (peer, embedding, bridge): 0 closed, 1 open (calls fail fast, peers are skipped), 2 half-open (one trial call)",
            breaker_state.clone(),
        );
        let breaker_opened = Family::<KindLabels, Counter>::default();
        registry.register(
            "breaker_opened",
            "Times an outbound target's circuit breaker opened, by kind (peer, embedding, bridge)",
            breaker_opened.clone(),
        );
        Self {
            search_cache,
            rate_limited,
            breaker_state,
            breaker_opened,
            bitswap,
            dht,
            connections,
            health,
            registry,
            requests,
            request_seconds,
            operations,
            operation_errors,
            operation_seconds,
            search_hits,
            points_written,
            texts_embedded,
            heads,
            member_records,
            federation,
            points,
            index_memory,
            index_duplicate_points,
            index_duplicate_bytes_saved,
            wal_bytes,
            wal_fsyncs,
            store_blocks,
            store_bytes,
            ready,
        }
    }

    /// Counts one HTTP request.
    pub fn request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.request_seconds
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one engine operation.
    pub fn operation(&self, operation: &str, collection: &str, ok: bool, elapsed: Duration) {
        let labels = OperationLabels {
            operation: operation.to_string(),
            collection: collection.to_string(),
        };
        self.operations.get_or_create(&labels).inc();
        if !ok {
            self.operation_errors.get_or_create(&labels).inc();
        }
        self.operation_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts search hits returned.
    pub fn hits(&self, collection: &str, n: usize) {
        self.search_hits
            .get_or_create(&CollectionLabels {
                collection: collection.to_string(),
            })
            .inc_by(n as u64);
    }

    /// Counts points written.
    pub fn written(&self, collection: &str, n: u64) {
        self.points_written
            .get_or_create(&CollectionLabels {
                collection: collection.to_string(),
            })
            .inc_by(n);
    }

    /// Counts texts embedded.
    pub fn embedded(&self, n: u64) {
        self.texts_embedded.inc_by(n);
    }

    /// Counts a gossiped head by its verdict.
    pub fn head(&self, verdict: &str) {
        self.heads
            .get_or_create(&VerdictLabels {
                verdict: verdict.to_string(),
            })
            .inc();
    }

    /// Counts a gossiped member record by its verdict.
    pub fn member_record(&self, verdict: &str) {
        self.member_records
            .get_or_create(&VerdictLabels {
                verdict: verdict.to_string(),
            })
            .inc();
    }

    /// Counts `n` federated search events of one kind (see [`FederationLabels`]).
    pub fn federation(&self, event: &str, n: u64) {
        if n > 0 {
            self.federation
                .get_or_create(&FederationLabels {
                    event: event.to_string(),
                })
                .inc_by(n);
        }
    }

    /// The OpenMetrics text of every metric.
    /// The family of `ipvec_rate_limited_total`, for the API's guard to count in.
    pub fn rate_limited_family(&self) -> Family<RateLimitedLabels, Counter> {
        self.rate_limited.clone()
    }

    /// Brings the peer refusals of `kind` up to `total` (the network's count since start).
    pub fn peer_rate_limited(&self, kind: &str, total: u64) {
        self.rate_limited
            .get_or_create(&RateLimitedLabels {
                scope: "peer".into(),
                kind: kind.into(),
            })
            .inner()
            .fetch_max(total, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl super::Node {
    /// Sets the scrape-time gauges and returns the metrics text.
    pub async fn metrics_text(&self) -> String {
        let metrics = &self.inner.metrics;
        metrics.wal_fsyncs.inner().fetch_max(
            crate::collection::wal::fsyncs_total(),
            std::sync::atomic::Ordering::Relaxed,
        );
        for (name, c) in self.open_collections().await {
            let labels = CollectionLabels { collection: name };
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
                metrics
                    .health
                    .replication_target
                    .get_or_create(&labels)
                    .set(i64::from(c.manifest().replication));
                if let Ok(id) = c.id() {
                    // Scrapes keep the count fresh for the replication alert.
                    self.count_providers(&id, c.manifest().shards.len() as u32);
                    let replication = self.inner.replication.of(&id, c.head().seq, c.writable());
                    if let Some(least) = replication.providers.and_then(|p| p.into_iter().min()) {
                        metrics
                            .health
                            .replicas
                            .get_or_create(&labels)
                            .set(i64::from(least));
                    }
                }
            }
        }
        if let Some(network) = self.inner.network.get() {
            use std::sync::atomic::Ordering::Relaxed;
            for (kind, total) in network.rate_limited() {
                metrics.peer_rate_limited(kind, total);
            }
            let stats = network.bitswap().stats();
            set_totals(
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
            set_totals(
                &metrics.dht,
                &[
                    (
                        "provider_records_received",
                        dht.records_received.load(Relaxed),
                    ),
                    ("republished", dht.republished.load(Relaxed)),
                ],
            );
            set_totals(
                &metrics.connections,
                &[("denied", network.connection_stats().denied.load(Relaxed))],
            );
            if let Ok(peers) = network.peers().await {
                metrics.health.peers_connected.set(peers.len() as i64);
            }
        }
        metrics.search_cache.set(self.search_cache_stats());
        if let Ok(stats) = self.store().stats().await {
            metrics.store_blocks.set(stats.blocks as i64);
            metrics.store_bytes.set(stats.bytes as i64);
        }
        metrics
            .health
            .store_limit_bytes
            .set(self.inner.config.storage.max_bytes as i64);
        if let Ok(fs) = rustix::fs::statvfs(self.repo().path()) {
            let bytes = |blocks: u64| (blocks.saturating_mul(fs.f_frsize)) as i64;
            metrics.health.disk_free_bytes.set(bytes(fs.f_bavail));
            metrics.health.disk_total_bytes.set(bytes(fs.f_blocks));
        }
        self.set_breaker_metrics();
        metrics.encode()
    }
}
