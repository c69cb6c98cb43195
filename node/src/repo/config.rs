//! The repository's configuration: `config.toml`, then `IPVEC_<SECTION>_<KEY>` environment
//! variables, then command-line flags, each overriding the one before.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub use super::backup::BackupConfig;
pub use super::embedding::EmbeddingConfig;
pub use super::limits::LimitsConfig;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file is not valid TOML or has unknown keys.
    #[error("config file {path} is invalid: {reason}")]
    Parse { path: PathBuf, reason: String },
    /// A value is out of range.
    #[error("config value {key} is invalid: {reason}")]
    Invalid { key: String, reason: String },
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The largest `search.max_k` and `search.max_ef` a configuration may set: beyond it one
/// search would allocate gigabytes.
pub const MAX_K_CEILING: u64 = 1_000_000;

/// Everything configurable, with the defaults `ipvec init` writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP API.
    pub api: ApiConfig,
    /// Search limits and deadlines.
    pub search: SearchConfig,
    /// Peer-to-peer networking.
    pub p2p: P2pConfig,
    /// Storage limits.
    pub storage: StorageConfig,
    /// Embedding providers: how text becomes vectors.
    pub embedding: EmbeddingConfig,
    /// Logging.
    pub log: LogConfig,
    /// The daemon's backup schedule.
    pub backup: BackupConfig,
    /// Request rates and quotas.
    pub limits: LimitsConfig,
    /// Retries and circuit breakers of calls to other machines.
    pub outbound: super::OutboundConfig,
}

/// HTTP API options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address the daemon's HTTP API listens on (port 0: any free port).
    pub listen: String,
    /// Ask for the bearer token (keys/api.token) on every request but /health and /ready,
    /// even on loopback. Off loopback it is always asked for.
    pub require_token: bool,
    /// Largest request body accepted, in bytes (CAR imports are streamed and not limited).
    pub max_body_bytes: u64,
    /// Most points (or ids) in one upsert or delete request.
    pub max_batch_points: u64,
    /// Host names answered besides IP addresses and `localhost` (a browser on a page whose
    /// name resolves to this machine sends that name: DNS rebinding). `"*"` answers any.
    pub allowed_hosts: Vec<String>,
    /// Origins (`https://app.example`) whose browser pages may call the API; requests with
    /// any other `Origin` header are refused.
    pub allowed_origins: Vec<String>,
    /// Searches served at once; more wait up to `queue_timeout_ms`.
    pub max_concurrent_searches: u32,
    /// Writes (upserts, deletes, collection create and drop) served at once.
    pub max_concurrent_writes: u32,
    /// Heavy requests (CAR import and export, fetches, pins, gc) served at once.
    pub max_concurrent_heavy: u32,
    /// How long a request waits for its turn before it is answered 503, in milliseconds.
    pub queue_timeout_ms: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:5080".into(),
            require_token: false,
            max_body_bytes: 32 << 20,
            max_batch_points: 100_000,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_concurrent_searches: 64,
            max_concurrent_writes: 16,
            max_concurrent_heavy: 4,
            queue_timeout_ms: 5_000,
        }
    }
}

/// Search limits and deadlines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Most hits one search may ask for (`k`).
    pub max_k: u64,
    /// Largest HNSW candidate list one search may ask for (`ef`).
    pub max_ef: u64,
    /// How long a search may run when it names no deadline, in milliseconds.
    pub deadline_ms: u64,
    /// Longest deadline a search may ask for, in milliseconds.
    pub max_deadline_ms: u64,
    /// Most queries in one batch search (`POST …/search/batch`).
    pub max_batch_queries: u64,
    /// Most answers the search cache keeps (0: no cache).
    pub cache_entries: u64,
    /// Most bytes the search cache's answers take, about (0: no cache).
    pub cache_bytes: u64,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            max_k: 10_000,
            max_ef: 10_000,
            deadline_ms: 10_000,
            max_deadline_ms: 120_000,
            max_batch_queries: 1_024,
            cache_entries: 10_000,
            cache_bytes: 64 << 20,
        }
    }
}

impl ApiConfig {
    /// The listen address, parsed.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|e| ConfigError::Invalid {
            key: "api.listen".into(),
            reason: format!(
                "{:?} is not an address like 127.0.0.1:5080 ({e})",
                self.listen
            ),
        })
    }
}

/// Peer-to-peer options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pConfig {
    /// libp2p multiaddresses to listen on.
    pub listen: Vec<String>,
    /// Peers to connect to at start and to seed the DHT with (`…/p2p/<peer id>`).
    pub bootstrap: Vec<String>,
    /// Find peers on the local network with mDNS.
    pub mdns: bool,
    /// Also announce collection roots on the public IPFS DHT (`/ipfs/kad/1.0.0`), so IPFS
    /// nodes can find who holds them.
    pub ipfs_dht: bool,
    /// Peers that seed the IPFS DHT (`…/p2p/<peer id>`), used when `ipfs_dht` is on.
    pub ipfs_bootstrap: Vec<String>,
    /// How often this node publishes its provider records again, in seconds.
    pub reprovide_interval_secs: u64,
    /// How long provider records are kept, in seconds: other nodes' records stored here, and
    /// (as each node sets it for itself) ours elsewhere. Longer than the reprovide interval.
    pub provider_ttl_secs: u64,
    /// Federated searches one peer may ask of this node per second (bursts of twice as
    /// many); more are answered `rate_limited`, and a peer that never slows down is banned.
    pub search_rate_per_peer: u32,
    /// Peers refused whatever they do (peer ids): their connections are closed at once and
    /// they are never dialled, asked for blocks or searches, nor heard on gossip. Peers
    /// denied at run time (`ipvec peers deny`) are kept in the repository's `denied_peers`
    /// file instead.
    pub deny_peers: Vec<String>,
    /// How long a member record of a community collection holds, in seconds: a member not
    /// heard from for this long drops out of the collection's membership and the next
    /// holders fetch its shards. Members announce themselves every third of it.
    pub member_ttl_secs: u64,
}

impl P2pConfig {
    /// The peers of `deny_peers`, parsed; one that is not a peer id is an error naming the key.
    pub fn denied(&self) -> Result<Vec<libp2p::PeerId>, ConfigError> {
        self.deny_peers
            .iter()
            .map(|text| {
                text.trim().parse().map_err(|e| ConfigError::Invalid {
                    key: "p2p.deny_peers".into(),
                    reason: format!(
                        "{text:?} is not a peer id ({e}); `ipvec id` on that node prints it (12D3KooW…)"
                    ),
                })
            })
            .collect()
    }
}

/// An IPFS bootstrap node reachable by IP (the others in Kubo's list are `/dnsaddr` names,
/// which this build does not resolve).
pub const IPFS_BOOTSTRAP: &str =
    "/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ";

impl Default for P2pConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4080".into(),
                "/ip4/0.0.0.0/udp/4080/quic-v1".into(),
            ],
            bootstrap: Vec::new(),
            mdns: true,
            ipfs_dht: false,
            ipfs_bootstrap: vec![IPFS_BOOTSTRAP.to_string()],
            reprovide_interval_secs: 60 * 60,
            provider_ttl_secs: 48 * 60 * 60,
            search_rate_per_peer: 1_000,
            deny_peers: Vec::new(),
            member_ttl_secs: 600,
        }
    }
}

/// Storage limits and commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Refuse new writes once the block store holds this many bytes (0: no limit).
    pub max_bytes: u64,
    /// How often the daemon commits acknowledged writes from each collection's log into its
    /// tree (a new version), in milliseconds. Writes are durable and searchable before that.
    pub commit_interval_ms: u64,
    /// The nice value (0 to 19) of the threads that run writes, commits and index builds:
    /// above 0 they yield the CPU to searches when both want it (Linux).
    pub background_nice: i32,
    /// Threads that insert at once when a collection's index is rebuilt from its trees (0:
    /// one per core). One, the default, inserts in id order and builds the same graph on
    /// every node; more build faster (2.25× on two cores), each node a graph of its own (the
    /// points usearch's concurrent inserts leave that no graph walk reaches are inserted
    /// again from one thread).
    pub index_build_threads: usize,
    /// Threads a write inserts its vectors into a collection's graph from (0: one per core).
    /// One, the default, inserts in log order: the writer builds the graph a replica that
    /// follows its writes builds, and the same writes give the same answers. More make large
    /// writes faster, each node a graph of its own (each slice of a write's entries is
    /// inserted together, and the points the concurrent inserts leave that no walk reaches
    /// are inserted again from one thread).
    pub write_threads: usize,
    /// A collection this node writes publishes its index as a snapshot with its versions
    /// once it holds this many points (0: never), so that new replicas load it instead of
    /// building the graph; a new one when a tenth of the points changed since the last.
    pub index_snapshot_min_points: u64,
}

impl StorageConfig {
    /// Threads a write inserts from (`write_threads`, 0 read as one per core).
    pub fn write_threads(&self) -> usize {
        per_core(self.write_threads)
    }

    /// Threads an index rebuild inserts from (`index_build_threads`, 0 read as one per core).
    pub fn index_build_threads(&self) -> usize {
        per_core(self.index_build_threads)
    }

    /// When collections written here publish index snapshots.
    pub fn publishing(&self) -> Option<crate::collection::snapshot::Publishing> {
        (self.index_snapshot_min_points > 0).then(|| crate::collection::snapshot::Publishing {
            min_points: self.index_snapshot_min_points,
            ..Default::default()
        })
    }
}

/// A thread count as configured: 0 is one per core.
fn per_core(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            max_bytes: 0,
            commit_interval_ms: 2_000,
            background_nice: 10,
            index_build_threads: 1,
            write_threads: 1,
            index_snapshot_min_points: 100_000,
        }
    }
}

/// Logging options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Least severe level logged: error, warn, info, debug or trace. RUST_LOG overrides it.
    pub level: String,
    /// Line format: "text" or "json".
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

impl Config {
    /// This config as shown to a user or an API caller: secrets (`embedding.api_key`)
    /// replaced by a note that they are set.
    pub fn redacted(&self) -> Config {
        let mut shown = self.clone();
        if !shown.embedding.api_key.is_empty() {
            shown.embedding.api_key = "(set; hidden)".into();
        }
        shown
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// This config with the `IPVEC_<SECTION>_<KEY>` environment variables applied.
    pub fn with_env(self) -> Result<Config, ConfigError> {
        self.with_vars(|name| std::env::var(name).ok())
    }

    /// This config with overrides from `var` (a variable name to its value) applied: every
    /// key `section.key` is looked up as `IPVEC_SECTION_KEY`; lists are comma-separated.
    pub fn with_vars(self, var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut table = toml::Value::try_from(&self).map_err(|e| ConfigError::Invalid {
            key: "(config)".into(),
            reason: e.to_string(),
        })?;
        let Some(sections) = table.as_table_mut() else {
            return Ok(self);
        };
        for (section, values) in sections.iter_mut() {
            let Some(values) = values.as_table_mut() else {
                continue;
            };
            for (key, value) in values.iter_mut() {
                let name = format!("IPVEC_{section}_{key}").to_uppercase();
                let Some(text) = var(&name) else { continue };
                let invalid = |reason: String| ConfigError::Invalid {
                    key: format!("{section}.{key} (from ${name})"),
                    reason,
                };
                *value = match value {
                    toml::Value::String(_) => toml::Value::String(text),
                    toml::Value::Integer(_) => toml::Value::Integer(
                        text.trim()
                            .parse()
                            .map_err(|_| invalid(format!("{text:?} is not a whole number")))?,
                    ),
                    toml::Value::Boolean(_) => toml::Value::Boolean(
                        text.trim()
                            .parse()
                            .map_err(|_| invalid(format!("{text:?} is not true or false")))?,
                    ),
                    toml::Value::Array(_) => toml::Value::Array(
                        text.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(|s| toml::Value::String(s.to_string()))
                            .collect(),
                    ),
                    _ => continue,
                };
            }
        }
        let config: Config = table.try_into().map_err(|e| ConfigError::Invalid {
            key: "(environment)".into(),
            reason: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        };
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            return Err(invalid(
                "log.level",
                "use error, warn, info, debug or trace",
            ));
        }
        if !["text", "json"].contains(&self.log.format.as_str()) {
            return Err(invalid("log.format", "use text or json"));
        }
        self.api.listen_addr()?;
        if self.storage.commit_interval_ms < 10 {
            return Err(invalid("storage.commit_interval_ms", "must be at least 10"));
        }
        if !(0..=19).contains(&self.storage.background_nice) {
            return Err(invalid(
                "storage.background_nice",
                "must be 0 (the searches' priority) to 19 (the lowest)",
            ));
        }
        if self.api.max_body_bytes < 1024 {
            return Err(invalid("api.max_body_bytes", "must be at least 1024"));
        }
        for (key, value) in [
            ("api.max_batch_points", self.api.max_batch_points),
            (
                "api.max_concurrent_searches",
                self.api.max_concurrent_searches.into(),
            ),
            (
                "api.max_concurrent_writes",
                self.api.max_concurrent_writes.into(),
            ),
            (
                "api.max_concurrent_heavy",
                self.api.max_concurrent_heavy.into(),
            ),
            ("search.max_k", self.search.max_k),
            ("search.max_ef", self.search.max_ef),
            ("search.deadline_ms", self.search.deadline_ms),
            ("search.max_batch_queries", self.search.max_batch_queries),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.search.max_k > MAX_K_CEILING || self.search.max_ef > MAX_K_CEILING {
            return Err(invalid(
                "search.max_k",
                &format!("search.max_k and search.max_ef must be at most {MAX_K_CEILING}"),
            ));
        }
        if self.search.max_deadline_ms < self.search.deadline_ms {
            return Err(invalid(
                "search.max_deadline_ms",
                "must be at least search.deadline_ms",
            ));
        }
        if self.p2p.reprovide_interval_secs == 0 {
            return Err(invalid("p2p.reprovide_interval_secs", "must be at least 1"));
        }
        if !(3..=3_600).contains(&self.p2p.member_ttl_secs) {
            return Err(invalid(
                "p2p.member_ttl_secs",
                "must be from 3 to 3600 (members announce themselves every third of it)",
            ));
        }
        if self.p2p.search_rate_per_peer == 0 {
            return Err(invalid(
                "p2p.search_rate_per_peer",
                "must be at least 1 (searches a second)",
            ));
        }
        self.embedding.validate()?;
        self.limits.validate()?;
        self.outbound.validate()?;
        if self.p2p.provider_ttl_secs <= self.p2p.reprovide_interval_secs {
            return Err(invalid(
                "p2p.provider_ttl_secs",
                "must be longer than p2p.reprovide_interval_secs, or records expire before they are published again",
            ));
        }
        self.p2p.denied()?;
        self.backup.validate()?;
        Ok(())
    }
}

mod documented;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_file_parses_back_to_the_defaults() {
        let text = Config::default().to_documented_toml();
        let parsed: Config = toml::from_str(&text).unwrap();
        assert_eq!(parsed, Config::default());
        assert!(
            toml::from_str::<Config>("[log]\nlevle = \"x\"\n").is_err(),
            "unknown keys are refused"
        );
        let bad = Config {
            log: LogConfig {
                level: "loud".into(),
                ..LogConfig::default()
            },
            ..Config::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn provider_records_must_outlive_the_reprovide_interval() {
        let with = |interval: &str, ttl: &str| {
            Config::default().with_vars(|n| match n {
                "IPVEC_P2P_REPROVIDE_INTERVAL_SECS" => Some(interval.to_string()),
                "IPVEC_P2P_PROVIDER_TTL_SECS" => Some(ttl.to_string()),
                _ => None,
            })
        };
        let ok = with("2", "6").unwrap();
        assert_eq!(
            (ok.p2p.reprovide_interval_secs, ok.p2p.provider_ttl_secs),
            (2, 6)
        );
        let err = with("60", "60").unwrap_err().to_string();
        assert!(
            err.contains("p2p.provider_ttl_secs") && err.contains("longer"),
            "{err}"
        );
        let err = with("0", "60").unwrap_err().to_string();
        assert!(err.contains("p2p.reprovide_interval_secs"), "{err}");
    }

    #[test]
    fn denied_peers_must_be_peer_ids() {
        let peer = libp2p::PeerId::random();
        let with = |value: String| {
            Config::default()
                .with_vars(move |n| (n == "IPVEC_P2P_DENY_PEERS").then(|| value.clone()))
        };
        let config = with(format!("{peer}")).unwrap();
        assert_eq!(config.p2p.denied().unwrap(), [peer]);
        let err = with(format!("{peer}, not-a-peer")).unwrap_err().to_string();
        assert!(
            err.contains("p2p.deny_peers") && err.contains("not-a-peer"),
            "{err}"
        );
        let text = "[p2p]\ndeny_peers = [\"QmNope\"]\n";
        let parsed: Config = toml::from_str(text).unwrap();
        let err = parsed.validate().unwrap_err().to_string();
        assert!(err.contains("p2p.deny_peers"), "{err}");
    }

    #[test]
    fn environment_overrides_each_kind_of_value() {
        let vars = |name: &str| match name {
            "IPVEC_API_LISTEN" => Some("127.0.0.1:0".to_string()),
            "IPVEC_API_REQUIRE_TOKEN" => Some("true".to_string()),
            "IPVEC_STORAGE_MAX_BYTES" => Some("1000000".to_string()),
            "IPVEC_P2P_LISTEN" => Some("/ip4/127.0.0.1/tcp/1, /ip4/127.0.0.1/tcp/2".to_string()),
            "IPVEC_LOG_FORMAT" => Some("json".to_string()),
            _ => None,
        };
        let config = Config::default().with_vars(vars).unwrap();
        assert_eq!(config.api.listen, "127.0.0.1:0");
        assert!(config.api.require_token);
        assert_eq!(config.storage.max_bytes, 1_000_000);
        assert_eq!(
            config.p2p.listen,
            ["/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/2"]
        );
        assert_eq!(config.log.format, "json");
        assert_eq!(config.log.level, "info", "untouched keys keep their value");

        let secret = Config::default()
            .with_vars(|n| (n == "IPVEC_EMBEDDING_API_KEY").then(|| "sk-123".to_string()))
            .unwrap();
        assert_eq!(secret.embedding.api_key, "sk-123");
        let shown = serde_json::to_string(&secret.redacted()).unwrap();
        assert!(
            !shown.contains("sk-123") && shown.contains("(set; hidden)"),
            "{shown}"
        );

        let err = Config::default()
            .with_vars(|n| (n == "IPVEC_STORAGE_MAX_BYTES").then(|| "lots".to_string()))
            .unwrap_err();
        assert!(err.to_string().contains("IPVEC_STORAGE_MAX_BYTES"), "{err}");
        let err = Config::default()
            .with_vars(|n| (n == "IPVEC_LOG_LEVEL").then(|| "loud".to_string()))
            .unwrap_err();
        assert!(err.to_string().contains("log.level"), "{err}");
    }
}
