//! The ipvec engine and daemon.
//!
//! # Layout
//! - [`store`]: block storage (iroh-blobs and in-memory backends), pins, GC, CAR files.
//! - [`tree`]: the history-independent shard tree: build, edit, lookup, range, diff, merge.
//! - [`index`]: vector indexes: usearch HNSW and the exact reference.
//! - [`limits`]: rate limits (keyed token buckets), API token roles and quotas.
//! - [`collection`]: collections: points, search, filters, write-ahead log, versions.
//! - [`embed`]: embedding providers behind one trait: all-MiniLM-L6-v2 on the CPU, an
//!   OpenAI-compatible or Ollama server, and a cache of embeddings already made.
//! - [`repo`]: the on-disk repository: config, node key, store, lock.
//! - [`cluster`]: sans-io cores (time passed in): the Bitswap want ledger, DAG fetch
//!   scheduling, following collections, membership, shard placement, repair and
//!   rebalancing.
//! - [`federation`]: the sans-io core of federated search: planning, hedging, failover,
//!   peer scores and circuit breakers, merging, coverage.
//! - [`net`]: the peer-to-peer layer: the libp2p swarm and its event loop.
//! - [`ops`]: the node's operations on an open repository, split by concept, their errors
//!   ([`ops::Error`]) and their one list ([`ops::Operations`]), which every front end calls.
//! - [`outbound`]: calls to other machines: the shared retry back-off and the sans-io
//!   circuit breaker (per target, in bounded memory) that peers, embedding servers and
//!   bridges go through.
//! - [`api`]: the HTTP front end: the daemon that serves the operations, and its client.
//! - [`bridge`]: moving collections between ipvec and FAISS files, Parquet tables, Qdrant,
//!   Elasticsearch/OpenSearch and their bulk files, both ways, verified.
//! - [`cli`]: the `ipvec` command line (over the daemon's API when one runs).
//! - [`mcp`]: the Model Context Protocol front end: the operations as MCP tools, over stdio
//!   (`ipvec mcp`) and the daemon's `/mcp`.
//! - [`backup`]: backup directories: chains of full and incremental CAR files, their
//!   manifest, verification and pruning.
//! - [`tasks`]: who owns each background task and what stops it.
//! - [`background`]: the lower-priority threads that writes, commits and index builds run on.

pub mod api;
pub mod background;
pub mod backup;
pub mod bridge;
pub mod cli;
pub mod cluster;
pub mod collection;
pub mod embed;
pub mod federation;
pub mod index;
pub mod limits;
pub mod mcp;
pub mod net;
pub mod ops;
pub mod outbound;
pub mod repo;
pub mod store;
pub mod tasks;
pub mod tree;
