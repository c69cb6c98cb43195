//! The configuration file `ipvec init` writes: every option with its meaning and its value.

use super::Config;

impl Config {
    /// The file `ipvec init` writes: every option with its meaning.
    pub fn to_documented_toml(&self) -> String {
        let list = |items: &[String]| {
            items
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "# ipvec repository configuration.\n\
             # Environment variables IPVEC_<SECTION>_<KEY> (e.g. IPVEC_API_LISTEN) override it, and\n\
             # command-line flags override both. `ipvec config show` prints the result.\n\
             \n\
             [api]\n\
             # Address the daemon's HTTP API listens on (port 0: any free port). Anything but\n\
             # loopback makes every request but /health and /ready need the bearer token in\n\
             # keys/api.token.\n\
             listen = {:?}\n\
             # Ask for the token on loopback too.\n\
             require_token = {}\n\
             # Largest request body accepted, in bytes (CAR imports are streamed and not limited).\n\
             max_body_bytes = {}\n\
             # Most points (or ids) in one upsert or delete request.\n\
             max_batch_points = {}\n\
             # Host names answered besides IP addresses and localhost (DNS rebinding guard; \"*\": any).\n\
             allowed_hosts = [{}]\n\
             # Origins (https://app.example) whose browser pages may call the API.\n\
             allowed_origins = [{}]\n\
             # Requests served at once per kind; more wait up to queue_timeout_ms, then get 503.\n\
             max_concurrent_searches = {}\n\
             max_concurrent_writes = {}\n\
             # CAR import and export, fetches, pins, gc.\n\
             max_concurrent_heavy = {}\n\
             queue_timeout_ms = {}\n\
             \n\
             [search]\n\
             # Most hits (k) and largest HNSW candidate list (ef) one search may ask for.\n\
             max_k = {}\n\
             max_ef = {}\n\
             # Deadline of a search that names none, and the longest one it may name, in ms.\n\
             deadline_ms = {}\n\
             max_deadline_ms = {}\n\
             # Most queries in one batch search (POST /v1/collections/NAME/search/batch).\n\
             max_batch_queries = {}\n\
             # The search cache: repeated searches of a collection at the same state (root and\n\
             # acknowledged writes) are answered from memory. Most answers and bytes it keeps,\n\
             # the least recently used leaving first (0 in either: no cache).\n\
             cache_entries = {}\n\
             cache_bytes = {}\n\
             \n\
             [p2p]\n\
             # libp2p multiaddresses to listen on (port 0: any free port).\n\
             listen = [{}]\n\
             # Peers to connect to at start and to seed the DHT with, each ending in /p2p/<peer id>.\n\
             bootstrap = [{}]\n\
             # Find peers on the local network with mDNS.\n\
             mdns = {}\n\
             # Also announce collection roots on the public IPFS DHT (/ipfs/kad/1.0.0), so IPFS\n\
             # nodes find who holds them.\n\
             ipfs_dht = {}\n\
             # Peers that seed the IPFS DHT, each ending in /p2p/<peer id> (used with ipfs_dht).\n\
             ipfs_bootstrap = [{}]\n\
             # How often this node publishes its provider records (collections, shards) again, in seconds.\n\
             reprovide_interval_secs = {}\n\
             # How long provider records live, in seconds (longer than the reprovide interval):\n\
             # a dropped collection's records disappear from other nodes after this.\n\
             provider_ttl_secs = {}\n\
             # Federated searches one peer may ask of this node per second (bursts of twice as\n\
             # many); more are refused, and a peer that never slows down is banned.\n\
             search_rate_per_peer = {}\n\
             # Peers refused whatever they do (peer ids, 12D3KooW…): their connections are closed at\n\
             # once, they are never dialled, asked for blocks or searches, nor heard on gossip.\n\
             # `ipvec peers deny` adds to the repository's denied_peers file instead.\n\
             deny_peers = [{}]\n\
             \n\
             [storage]\n\
             # Refuse new writes once the block store holds this many bytes (0: no limit).\n\
             max_bytes = {}\n\
             # How often the daemon commits acknowledged writes from each collection's log into\n\
             # its tree (a new version), in milliseconds. Writes are durable and searchable at once.\n\
             commit_interval_ms = {}\n\
             # Nice value (0 to 19) of the threads that run writes, commits and index builds:\n\
             # above 0 they yield the CPU to searches when both want it.\n\
             background_nice = {}\n\
             # Threads that insert at once when an index is rebuilt from the trees (0: one per\n\
             # core). 1 builds the same graph on every node; more build faster, each node a\n\
             # graph of its own.\n\
             index_build_threads = {}\n\
             # Threads a write inserts its vectors into the graph from (0: one per core). 1\n\
             # inserts in log order, the graph a replica that follows the writes builds; more\n\
             # write faster, each node a graph of its own.\n\
             write_threads = {}\n\
             # Collections written here publish their index as a snapshot with their versions\n\
             # once they hold this many points (0: never); new replicas load it instead of\n\
             # building the graph. A new one is published when a tenth of the points changed.\n\
             index_snapshot_min_points = {}\n\
             \n\
             {}\
             {}\
             {}\
             [log]\n\
             # Least severe level logged: error, warn, info, debug or trace. RUST_LOG overrides it.\n\
             level = {:?}\n\
             # Line format: \"text\" or \"json\".\n\
             format = {:?}\n\
             \n\
             {}",
            self.api.listen,
            self.api.require_token,
            self.api.max_body_bytes,
            self.api.max_batch_points,
            list(&self.api.allowed_hosts),
            list(&self.api.allowed_origins),
            self.api.max_concurrent_searches,
            self.api.max_concurrent_writes,
            self.api.max_concurrent_heavy,
            self.api.queue_timeout_ms,
            self.search.max_k,
            self.search.max_ef,
            self.search.deadline_ms,
            self.search.max_deadline_ms,
            self.search.max_batch_queries,
            self.search.cache_entries,
            self.search.cache_bytes,
            list(&self.p2p.listen),
            list(&self.p2p.bootstrap),
            self.p2p.mdns,
            self.p2p.ipfs_dht,
            list(&self.p2p.ipfs_bootstrap),
            self.p2p.reprovide_interval_secs,
            self.p2p.provider_ttl_secs,
            self.p2p.search_rate_per_peer,
            list(&self.p2p.deny_peers),
            self.storage.max_bytes,
            self.storage.commit_interval_ms,
            self.storage.background_nice,
            self.storage.index_build_threads,
            self.storage.write_threads,
            self.storage.index_snapshot_min_points,
            self.embedding.to_documented_toml(),
            self.limits.to_documented_toml(),
            self.outbound.to_documented_toml(),
            self.log.level,
            self.log.format,
            self.backup.to_documented_toml()
        )
    }
}
