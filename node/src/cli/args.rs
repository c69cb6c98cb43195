//! The command line's grammar: every command, its arguments and their help, as clap reads
//! them. What each command does is in the sibling modules; `run` dispatches.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::{backup, embed, migrate, token};

/// ipvec: a peer-to-peer vector database whose data is IPFS/IPLD content.
#[derive(Debug, Parser)]
#[command(name = "ipvec", version, about, propagate_version = true)]
pub struct Cli {
    /// Repository folder (default: $IPVEC_PATH, else ~/.ipvec).
    #[arg(long, global = true, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Use the daemon API at this URL (default: the one the repository's daemon wrote into
    /// DIR/api, if it answers; else open the repository directly).
    #[arg(long, global = true, value_name = "URL", env = "IPVEC_API")]
    pub api: Option<String>,
    /// Bearer token to send to the daemon API (default: the repository's keys/api.token).
    /// Needed for a daemon on another machine, or one that requires a token.
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        env = "IPVEC_API_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Log level: error, warn, info, debug or trace (RUST_LOG overrides it).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log line format: text or json.
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a repository: config, node key, API token and block store.
    Init,
    /// Run the node: serve the HTTP API until SIGINT or SIGTERM (initialises the repository
    /// on first run).
    Daemon {
        /// Address of the HTTP API (default: api.listen in the config, 127.0.0.1:5080).
        #[arg(long, value_name = "ADDR")]
        api_listen: Option<String>,
        /// A libp2p address to listen on (repeatable; port 0: any free port; default:
        /// p2p.listen in the config).
        #[arg(long, value_name = "MULTIADDR")]
        p2p_listen: Vec<String>,
        /// A peer to connect to at start and seed the DHT with (repeatable; ends in /p2p/<id>).
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<String>,
        /// Do not look for peers on the local network (mDNS).
        #[arg(long)]
        no_mdns: bool,
    },
    /// Replicate another node's collection by its id (from its providers in the DHT, or
    /// --from), and keep it up to date.
    Fetch {
        /// The collection id (`collection info` on the writer's node prints it).
        id: String,
        /// Name to register it under (default: its own).
        #[arg(long)]
        name: Option<String>,
        /// A peer to fetch from (repeatable; default: the collection's providers in the DHT).
        #[arg(long, value_name = "MULTIADDR")]
        from: Vec<String>,
        /// Hold only these shards (numbers from 0, e.g. `0,3`): only their trees are fetched,
        /// announced and searched, and searches say which shards they covered (default: all).
        #[arg(long, value_name = "N,N,…", value_delimiter = ',')]
        shards: Option<Vec<u32>>,
    },
    /// Become a member of a community collection: announce this node with its capacity and
    /// hold and serve the shards placement gives it, for as long as the daemon runs.
    Join {
        /// The collection id (`collection info` prints it).
        id: String,
        /// Space this node offers the collection (e.g. `10G`, `512M`, or bytes; default 1G):
        /// placement gives members shards in proportion.
        #[arg(long, value_parser = parse_size)]
        capacity: Option<u64>,
        /// Name to register it under (default: its own).
        #[arg(long)]
        name: Option<String>,
        /// A peer to get the collection's head from (repeatable; default: its providers in
        /// the DHT).
        #[arg(long, value_name = "MULTIADDR")]
        from: Vec<String>,
    },
    /// Leave a community collection: hand its shards over to their new holders, then drop it.
    Leave {
        /// The collection's name or id.
        id: String,
    },
    /// Print this node's peer id and addresses.
    Id,
    /// List connected peers, or refuse peers: `peers deny`, `peers allow`, `peers denied`.
    Peers {
        #[command(subcommand)]
        action: Option<PeersCommand>,
    },
    /// Connect to a peer.
    Connect {
        /// Its multiaddress, e.g. /ip4/192.0.2.7/tcp/4080/p2p/12D3KooW…
        address: String,
    },
    /// Query the DHT.
    #[command(subcommand)]
    Dht(DhtCommand),
    /// Show the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Make, list and revoke API tokens with roles (read or write) besides keys/api.token.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Work with IPLD DAGs: put, get, export and import CAR files.
    #[command(subcommand)]
    Dag(DagCommand),
    /// Inspect raw blocks.
    #[command(subcommand)]
    Block(BlockCommand),
    /// Keep DAGs from garbage collection.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Remove every block no pin reaches.
    Gc,
    /// Back up collections into a directory (full, then incremental), verify and restore.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Create, list, inspect and drop collections.
    #[command(subcommand)]
    Collection(CollectionCommand),
    /// Add points from a .npy (2-D float32), .fvecs or .jsonl file, or texts to a text
    /// collection.
    Add {
        /// Collection name.
        name: String,
        /// The file: .npy or .fvecs (ids are row numbers unless --ids), or .jsonl
        /// ({"id": …, "vector": […], "metadata": {…}} a line; in a text collection
        /// {"text": "…"} instead of "vector", and "id" may be left out).
        #[arg(required_unless_present = "text")]
        file: Option<PathBuf>,
        /// A text to embed and add (text collections; repeat for more). Its id is --id, or
        /// one made from the text ("t" and 16 hex digits of its BLAKE3 hash).
        #[arg(long, conflicts_with_all = ["file", "ids"])]
        text: Vec<String>,
        /// The id of the one --text.
        #[arg(long, requires = "text", value_name = "ID")]
        id: Option<String>,
        /// Do not keep each text in its point's metadata (under "text"); searches then
        /// answer with ids and the rest of the metadata only.
        #[arg(long)]
        no_store_text: bool,
        /// A text file of ids, one a line, for .npy and .fvecs rows.
        #[arg(long, value_name = "FILE")]
        ids: Option<PathBuf>,
        /// Points per batch (each batch is stored whole or not at all; default 1,000, or 64
        /// when texts are embedded).
        #[arg(long)]
        batch: Option<usize>,
    },
    /// Find the nearest points to a vector (or to each row of a query file), or in a text
    /// collection to a question in plain words.
    Search {
        /// Collection name, or a collection id (one held only by peers is searched through
        /// them).
        name: String,
        /// A question in plain words (text collections): embedded with the collection's
        /// model.
        #[arg(conflicts_with_all = ["vector", "query_file"])]
        text: Option<String>,
        /// The query vector, comma-separated.
        #[arg(long, allow_hyphen_values = true)]
        vector: Option<String>,
        /// Query vectors from a .npy or .fvecs file.
        #[arg(long, value_name = "FILE")]
        query_file: Option<PathBuf>,
        /// Number of hits.
        #[arg(short, default_value_t = 10)]
        k: usize,
        /// HNSW candidate list size (default: the collection's ef_search).
        #[arg(long)]
        ef: Option<usize>,
        /// Exact (brute-force) search.
        #[arg(long)]
        exact: bool,
        /// Search an older version (a manifest CID from `collection log`), exactly.
        #[arg(long, value_name = "CID")]
        at: Option<String>,
        /// Only points that pass this filter (JSON: {"must": […], "should": […], "must_not": […]}).
        #[arg(long, value_name = "JSON")]
        filter: Option<String>,
        /// Ask the peers that hold the collection's shards (the daemon's), even for a
        /// collection held here; the output ends with a coverage line.
        #[arg(long)]
        federated: bool,
        /// Check each hit of a federated search against the collection's signed head (its
        /// tree path and score); hits that fail are dropped and named in the coverage.
        #[arg(long)]
        verify: bool,
        /// Stop after this many milliseconds (default search.deadline_ms); a federated
        /// search answers with the shards that answered by then.
        #[arg(long, value_name = "MS")]
        deadline_ms: Option<u64>,
        /// Fail unless at least this fraction of the shards answered (0 to 1; 1: all).
        #[arg(long, value_name = "F")]
        min_coverage: Option<f64>,
    },
    /// Print one point.
    #[command(after_help = POINT_IDS)]
    Get {
        /// Collection name.
        name: String,
        /// Point id: digits are an integer id, '"42"' (quoted) the string id 42.
        id: String,
    },
    /// Delete points by id.
    #[command(after_help = POINT_IDS)]
    Delete {
        /// Collection name.
        name: String,
        /// Point ids: digits are integer ids, '"42"' (quoted) the string id 42.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Move a collection between stores, both ways: ipvec, FAISS index files, Parquet,
    /// Qdrant, Elasticsearch/OpenSearch and their bulk NDJSON files; in batches, verified at
    /// the end (docs/bridges.md).
    #[command(after_help = ENDPOINTS)]
    Migrate {
        /// Where the points are: KIND:WHERE (see below).
        #[arg(long, value_name = "SOURCE")]
        from: String,
        /// Where they go: KIND:WHERE (see below). A collection or index is created, and
        /// must not exist yet.
        #[arg(long, value_name = "TARGET")]
        to: String,
        #[command(flatten)]
        bridge: migrate::BridgeArgs,
    },
    /// Bring a collection in from another store: `migrate --from SOURCE --to ipvec:NAME`.
    #[command(after_help = ENDPOINTS)]
    Import {
        /// Where the points are: KIND:WHERE (see below).
        source: String,
        /// The new collection's name.
        name: String,
        #[command(flatten)]
        bridge: migrate::BridgeArgs,
    },
    /// Take a collection out to another store: `migrate --from ipvec:NAME --to TARGET`.
    #[command(after_help = ENDPOINTS)]
    Export {
        /// The collection's name.
        name: String,
        /// Where the points go: KIND:WHERE (see below).
        target: String,
        #[command(flatten)]
        bridge: migrate::BridgeArgs,
    },
    /// Serve the Model Context Protocol on stdin and stdout, for AI assistants and other MCP
    /// clients (docs/mcp.md): the node's operations as tools, through the daemon when one runs.
    Mcp,
    /// Turn texts into vectors with an embedding provider (the [embedding] config section)
    /// and print them as JSON.
    Embed {
        /// The provider (default: embedding.provider in the config).
        #[arg(long, value_enum)]
        provider: Option<embed::ProviderArg>,
        /// The texts, one vector each.
        #[arg(required = true)]
        texts: Vec<String>,
    },
    /// Open the terminal dashboard on the repository's daemon (or the one --api names).
    Tui,
    /// Print a shell completion script, e.g. `ipvec completion bash >
    /// /etc/bash_completion.d/ipvec`, or `source <(ipvec completion zsh)`.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// The stores `migrate`, `import` and `export` reach.
const ENDPOINTS: &str = "Stores: ipvec:NAME (a collection of this node), faiss:PATH (an index \
file: IndexFlatL2/IP, IndexIDMap/IDMap2 around them, IndexHNSWFlat), parquet:PATH, bulk:PATH \
(Elasticsearch/OpenSearch bulk NDJSON), qdrant:http://HOST:6333/COLLECTION, \
elasticsearch:http://HOST:9200/INDEX, opensearch:http://HOST:9200/INDEX. A path ending in \
.faiss, .index, .parquet or .ndjson needs no prefix.";

/// How `get` and `delete` read ids (the same rule as the API's URL paths).
const POINT_IDS: &str =
    "Point ids: digits alone are an integer id (42); an id that starts with \" \
is a JSON string literal, so '\"42\"' (quoted for the shell) is the string id 42; anything \
else is a string id (doc-7).";

/// Metric names on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MetricArg {
    /// Cosine similarity.
    Cosine,
    /// Negated squared Euclidean distance.
    L2,
    /// Inner product.
    Dot,
}

impl From<MetricArg> for ipvec_protocol::manifest::Metric {
    fn from(m: MetricArg) -> Self {
        match m {
            MetricArg::Cosine => Self::Cosine,
            MetricArg::L2 => Self::L2,
            MetricArg::Dot => Self::Dot,
        }
    }
}

/// Quantization names on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum QuantizationArg {
    /// 32-bit floats.
    F32,
    /// 16-bit floats.
    F16,
    /// Signed bytes (cosine only).
    I8,
}

impl From<QuantizationArg> for ipvec_protocol::manifest::Quantization {
    fn from(q: QuantizationArg) -> Self {
        match q {
            QuantizationArg::F32 => Self::F32,
            QuantizationArg::F16 => Self::F16,
            QuantizationArg::I8 => Self::I8,
        }
    }
}

/// `ipvec collection …`
#[derive(Debug, Subcommand)]
pub enum CollectionCommand {
    /// Create a collection.
    Create {
        /// Name: letters, digits, '-' and '_'.
        name: String,
        /// Vector dimension (taken from the model with --embedding).
        #[arg(long, required_unless_present = "embedding")]
        dim: Option<u32>,
        /// Make a text collection: the model that embeds its texts and questions, `local`
        /// (all-MiniLM-L6-v2 on this CPU, from embedding.model_dir) or `http` / `http:MODEL`
        /// (the server at embedding.http_url). Recorded in the manifest.
        #[arg(long, value_name = "MODEL")]
        embedding: Option<String>,
        /// Similarity metric.
        #[arg(long, value_enum, default_value = "cosine")]
        metric: MetricArg,
        /// Storage quantization.
        #[arg(long, value_enum, default_value = "f32")]
        quantization: QuantizationArg,
        /// HNSW links per node.
        #[arg(long, default_value_t = 16)]
        m: u32,
        /// HNSW candidate list size while building.
        #[arg(long, default_value_t = 128)]
        ef_construction: u32,
        /// Default HNSW candidate list size while searching.
        #[arg(long, default_value_t = 64)]
        ef_search: u32,
        /// Walk the graph on one-byte codes of the vectors and score the candidates again on
        /// the f32 vectors: faster searches and inserts, about a quarter more index memory
        /// (f32 collections under the l2 or cosine metric).
        #[arg(long)]
        codes: bool,
        /// Number of hash-range shards.
        #[arg(long, default_value_t = 1)]
        shards: u32,
        /// Replicas each shard should have, this node included (shown against the DHT's
        /// providers by `collection info`).
        #[arg(long, default_value_t = 1)]
        replication: u32,
        /// Most live points this node keeps in it (0: none of its own; the node's
        /// limits.collection_max_points holds too).
        #[arg(long, default_value_t = 0)]
        max_points: u64,
        /// Most vector bytes (points × dim × bytes per component; 0: none of its own).
        #[arg(long, default_value_t = 0)]
        max_bytes: u64,
    },
    /// Show or set a collection's own quota on this node; the node's
    /// limits.collection_max_* hold too, so it can only lower them.
    Quota {
        /// Collection name.
        name: String,
        /// Most live points (0: none of its own; left out: as it is).
        #[arg(long)]
        max_points: Option<u64>,
        /// Most vector bytes (0: none of its own; left out: as it is).
        #[arg(long)]
        max_bytes: Option<u64>,
    },
    /// Show who holds each shard of a collection: the peers the DHT names (alive or not), and
    /// live holders against the replication the collection asks for.
    Shards {
        /// Collection name.
        name: String,
    },
    /// List, add or remove the keys allowed to publish versions of a collection (adding and
    /// removing make a new version the owner signs: only on the owner's node).
    #[command(subcommand)]
    Writers(WritersCommand),
    /// Show a collection's members (capacity, shards held) and, on a member, where each shard
    /// stands: placed here, held, fetching, holders against replication.
    Members {
        /// Collection name.
        name: String,
    },
    /// List collections.
    List,
    /// Show a collection's settings, counts and root CID.
    Info {
        /// Collection name.
        name: String,
    },
    /// List a collection's versions, newest first.
    Log {
        /// Collection name.
        name: String,
    },
    /// Delete a collection (its blocks go at the next gc).
    Drop {
        /// Collection name.
        name: String,
    },
    /// Write a collection (signed head, manifest, shards, trees and history) as a CAR v1 file.
    Export {
        /// Collection name.
        name: String,
        /// Output file.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Add a collection from a CAR file written by `collection export` (read-only here unless
    /// this node holds its owner key).
    Import {
        /// The CAR file.
        file: PathBuf,
        /// Name to register it under (default: its own name).
        #[arg(long)]
        name: Option<String>,
    },
}

/// `ipvec collection writers …`
#[derive(Debug, Subcommand)]
pub enum WritersCommand {
    /// The allowed keys, the owner's first.
    Ls {
        /// Collection name.
        name: String,
    },
    /// Allow a key to publish versions.
    Add {
        /// Collection name.
        name: String,
        /// The writer's key as a peer id (`12D3KooW…`, what its `ipvec id` prints).
        key: String,
    },
    /// Stop allowing a key (its later heads are refused; what it wrote before stays).
    Rm {
        /// Collection name.
        name: String,
        /// The writer's key as a peer id.
        key: String,
    },
}

/// `ipvec peers …`
#[derive(Debug, Subcommand)]
pub enum PeersCommand {
    /// Refuse a peer from now on and after restarts (kept in the repository's denied_peers
    /// file): its connections are closed at once, it is not dialled, asked for blocks or
    /// searches, nor heard on gossip. Without a daemon only the file changes.
    Deny {
        /// Its peer id (12D3KooW…), as `ipvec peers` prints it.
        peer_id: String,
    },
    /// Stop refusing a peer denied with `peers deny` (one in p2p.deny_peers stays denied
    /// until removed from the config).
    Allow {
        /// Its peer id.
        peer_id: String,
    },
    /// List the denied peers: from the config (p2p.deny_peers) and from `peers deny`.
    Denied,
}

/// `ipvec dht …`
#[derive(Debug, Subcommand)]
pub enum DhtCommand {
    /// Peers that announce a key (a collection or shard key, or any CID).
    Providers {
        /// The key.
        cid: String,
    },
}

/// `ipvec config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (file, then IPVEC_… variables, then flags), as the
    /// daemon runs it when one runs.
    Show,
}

/// `ipvec dag …`
#[derive(Debug, Subcommand)]
pub enum DagCommand {
    /// Read DAG-JSON on stdin (links as {"/": "<cid>"}), store it as DAG-CBOR, print its CID.
    Put {
        /// Also pin the new block.
        #[arg(long)]
        pin: bool,
    },
    /// Print a block as DAG-JSON.
    Get {
        /// The block's CID.
        cid: String,
    },
    /// Write the DAG under a root as a CAR v1 file.
    Export {
        /// The root CID.
        cid: String,
        /// Output file (default: stdout).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Fetch the DAG under a root from peers over Bitswap (checking every block) and pin it.
    Fetch {
        /// The root CID.
        cid: String,
        /// A peer to fetch from (repeatable; default: every connected peer).
        #[arg(long, value_name = "MULTIADDR")]
        from: Vec<String>,
    },
    /// Import CAR v1 files, checking every block, and pin their roots.
    Import {
        /// CAR files to import.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `ipvec block …`
#[derive(Debug, Subcommand)]
pub enum BlockCommand {
    /// Print a block's size and codec.
    Stat {
        /// The block's CID.
        cid: String,
    },
}

/// `ipvec pin …`
#[derive(Debug, Subcommand)]
pub enum PinCommand {
    /// List pinned roots.
    Ls,
    /// Pin the DAG under a root (every block must be stored).
    Add {
        /// The root CID.
        cid: String,
    },
    /// Remove a pin; its blocks go at the next gc unless another pin reaches them.
    Rm {
        /// The root CID.
        cid: String,
    },
}

/// A size in bytes: a number, optionally followed by `K`, `M`, `G` or `T` (powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((at, unit)) if unit.is_ascii_alphabetic() => {
            let shift = match unit.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{text:?}: the unit is one of K, M, G, T")),
            };
            (&text[..at], shift)
        }
        _ => (text, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size: give bytes, or e.g. 512M, 10G"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("10g"), Ok(10 << 30));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert!(parse_size("10X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
