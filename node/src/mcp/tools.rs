//! The tools: each maps onto one operation of [`Operations`](crate::ops::Operations) (or the
//! CLI's CAR file helpers, which stream through either backend), and answers with the
//! operation's own JSON as structured content. A failure is a tool error (`isError`) whose
//! text is the operation's message, which says what to do next.

use std::{path::Path, sync::Arc};

use rmcp::{
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig},
    tool, tool_handler, tool_router, ServerHandler,
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};

use super::params::*;
use crate::{
    api::{
        types::{CreateCollection, PointIn, SearchRequest},
        ExportTarget,
    },
    bridge::{BridgeOptions, Endpoint, Migration},
    cli::{
        carfile::{self, ImportAs, Imported},
        Backend,
    },
    ops::Operations,
    repo,
};

/// What the server tells a client about itself when it connects.
const INSTRUCTIONS: &str = "ipvec is a peer-to-peer vector database. Collections hold points \
(an id, a vector of the collection's dimension, JSON metadata); each version of a collection \
is one content address (a CID). Create a collection, add vectors, then search it. Tools fail \
with a message that says what to change.";

/// The MCP server: the tools over one [`Backend`] (a daemon's API or a repository opened in
/// this process). Cloned per session; clones share the backend.
#[derive(Debug, Clone)]
pub struct IpvecTools {
    backend: Arc<Backend>,
    /// Whether the CAR tools may read and write files by path: over stdio the client runs
    /// the server as its own user; over the daemon's HTTP they would let any API caller
    /// touch the daemon's files, so they refuse.
    files: bool,
    tool_router: ToolRouter<Self>,
}

/// The name of the block store every node uses.
const STORE: &str = "iroh-blobs-fs";

/// Why the CAR tools refuse over HTTP.
const NO_FILES: &str = "over the daemon's HTTP endpoint the MCP tools do not read or write files on the daemon's machine; run `ipvec mcp` (stdio) on that machine for CAR files, or use the HTTP API (`GET /v1/collections/{name}/export`, `POST /v1/collections/import`)";

/// A tool's answer: `value` as structured content (and as its JSON text). It goes through
/// JSON text so that `f32`s (scores, vectors) keep their shortest spelling, as the HTTP API
/// and the CLI print them, rather than their widened `f64` digits.
pub(super) fn answer<T: Serialize>(value: &T) -> CallToolResult {
    let json = serde_json::to_string(value).and_then(|text| serde_json::from_str(&text));
    match json {
        Ok(value) => CallToolResult::structured(value),
        Err(e) => failed(format!("cannot encode the answer as JSON: {e}")),
    }
}

/// A tool error whose text says what went wrong and what to do.
pub(super) fn failed(message: impl std::fmt::Display) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.to_string())])
}

/// The answer of an operation, or its error as a tool error.
pub(super) fn outcome<T: Serialize, E: std::fmt::Display>(result: Result<T, E>) -> CallToolResult {
    match result {
        Ok(value) => answer(&value),
        Err(e) => failed(e),
    }
}

/// Writes tool input back into an operation's request type, so the request's own defaults
/// and checks apply.
fn request<T: DeserializeOwned>(input: &impl Serialize) -> Result<T, String> {
    serde_json::to_value(input)
        .and_then(serde_json::from_value)
        .map_err(|e| format!("invalid arguments: {e}"))
}

#[tool_router]
impl IpvecTools {
    /// The tools over `backend`, for a client that started this process (stdio): the CAR
    /// tools read and write the files it names.
    pub fn new(backend: Arc<Backend>) -> Self {
        Self {
            backend,
            files: true,
            tool_router: Self::tool_router() + Self::ipld_router(),
        }
    }

    /// The tools over `backend` for remote callers (the daemon's `/mcp`): the CAR tools
    /// refuse, as files named by path would be the daemon's.
    pub fn without_files(backend: Arc<Backend>) -> Self {
        Self {
            files: false,
            ..Self::new(backend)
        }
    }

    pub(super) fn ops(&self) -> &dyn Operations {
        self.backend.ops()
    }

    pub(super) fn backend(&self) -> &Backend {
        &self.backend
    }

    #[tool(
        description = "Create a vector collection: a name, the vectors' dimension (or, for a \
        text collection, the embedding model: local or http:MODEL), and optionally the metric \
        (cosine, l2, dot), quantization and HNSW settings. Answers the collection's settings, \
        id and root CID."
    )]
    async fn create_vector_collection(
        &self,
        Parameters(params): Parameters<CreateParams>,
    ) -> CallToolResult {
        match request::<CreateCollection>(&params) {
            Ok(create) => outcome(self.ops().create_collection(create).await),
            Err(e) => failed(e),
        }
    }

    #[tool(
        description = "Add vectors (with ids and optional JSON metadata) to a collection, or \
        in a text collection texts (embedded by the node, kept in the metadata), or replace the \
        points with those ids. The batch is stored whole or not at all. Answers how many \
        points changed and the collection's size."
    )]
    async fn add_vectors_to_collection(
        &self,
        Parameters(params): Parameters<AddParams>,
    ) -> CallToolResult {
        if params.vectors.is_empty() && params.texts.is_empty() {
            return failed(
                "nothing to add: pass `vectors`, a list of {id, vector, metadata}, or in a text \
                 collection `texts`",
            );
        }
        let keep_text = params.store_text.unwrap_or(true);
        let vectors = params
            .vectors
            .into_iter()
            .map(|v| PointIn::vector(v.id.into(), v.vector, v.metadata.map(Value::Object)));
        let texts = params.texts.into_iter().map(|t| {
            let mut point = t.into_point();
            if keep_text {
                point.keep_text();
            }
            point
        });
        let points = vectors.chain(texts).collect();
        outcome(self.ops().upsert(&params.collection, points).await)
    }

    #[tool(
        description = "Find the k nearest points to a vector (or, in a text collection, to a \
        question in plain words: `text`) in a collection, optionally \
        filtered by metadata, in an older version (`at`), or federated across the peers that \
        hold the collection's shards. Answers hits (id, score, metadata, the CID of the block \
        holding the vector) and, for a federated search, which shards answered."
    )]
    async fn search_vectors(&self, Parameters(params): Parameters<SearchParams>) -> CallToolResult {
        match request::<SearchRequest>(&params) {
            Ok(search) => outcome(self.ops().search(&params.collection, search).await),
            Err(e) => failed(e),
        }
    }

    #[tool(description = "Get one point of a collection by id: its vector and metadata.")]
    async fn get_vector_by_id(
        &self,
        Parameters(params): Parameters<PointParams>,
    ) -> CallToolResult {
        outcome(
            self.ops()
                .get_point(&params.collection, params.id.into())
                .await,
        )
    }

    #[tool(description = "Delete points of a collection by id. Answers how many were deleted.")]
    async fn delete_vectors(&self, Parameters(params): Parameters<DeleteParams>) -> CallToolResult {
        let ids = params.ids.into_iter().map(Into::into).collect();
        outcome(self.ops().delete(&params.collection, ids).await)
    }

    #[tool(
        description = "Replace (or with merge=true, extend) the metadata of one point, keeping \
        its vector. It reads the point and writes it back: a write to the same id in between \
        is overwritten."
    )]
    async fn update_vector_metadata(
        &self,
        Parameters(params): Parameters<MetadataParams>,
    ) -> CallToolResult {
        let id = params.id.into();
        let point = match self.ops().get_point(&params.collection, id).await {
            Ok(point) => point,
            Err(e) => return failed(e),
        };
        let metadata = match (params.merge, point.metadata) {
            (true, Some(Value::Object(mut old))) => {
                old.extend(params.metadata);
                old
            }
            _ => params.metadata,
        };
        let write = PointIn::vector(point.id, point.vector, Some(Value::Object(metadata)));
        outcome(self.ops().upsert(&params.collection, vec![write]).await)
    }

    #[tool(
        description = "Write a collection (signed head, manifest, shards, trees, history) as a \
        CAR v1 file at `path` on the machine this server runs on. Answers the root CID and \
        the blocks and bytes written."
    )]
    async fn export_collection_to_car(
        &self,
        Parameters(params): Parameters<ExportParams>,
    ) -> CallToolResult {
        if !self.files {
            return failed(NO_FILES);
        }
        let target = ExportTarget::Collection(&params.collection);
        match carfile::export_to_file(&self.backend, target, Path::new(&params.path)).await {
            Ok(exported) => answer(&json!({
                "path": params.path,
                "root": exported.root,
                "blocks": exported.blocks,
                "bytes": exported.bytes,
            })),
            Err(e) => failed(format!("{e:#}")),
        }
    }

    #[tool(
        description = "Add a collection from a CAR file written by export_collection_to_car \
        (every block is checked). It is read-only here unless this node holds its owner key."
    )]
    async fn import_collection_from_car(
        &self,
        Parameters(params): Parameters<ImportParams>,
    ) -> CallToolResult {
        if !self.files {
            return failed(NO_FILES);
        }
        let how = ImportAs::Collection(params.name);
        match carfile::import_file(&self.backend, Path::new(&params.path), how).await {
            Ok(Imported::Collection(imported)) => answer(&imported),
            Ok(Imported::Dag(imported)) => answer(&imported),
            Err(e) => failed(format!("{e:#}")),
        }
    }

    #[tool(
        description = "The content address of a collection: its id (the owner's key, stable \
        across versions), the root CID of its current version, and the version number."
    )]
    async fn get_collection_cid(
        &self,
        Parameters(params): Parameters<CollectionName>,
    ) -> CallToolResult {
        match self.ops().collection_info(&params.collection).await {
            Ok(info) => answer(&json!({
                "name": info.name,
                "id": info.id,
                "root": info.root,
                "version": info.version,
            })),
            Err(e) => failed(e),
        }
    }

    #[tool(description = "List every collection with its settings and counts.")]
    async fn list_collections(&self) -> CallToolResult {
        outcome(self.ops().list_collections().await)
    }

    #[tool(
        description = "A collection's settings and statistics: points, shards, index memory, \
        log size, replication state."
    )]
    async fn get_collection_stats(
        &self,
        Parameters(params): Parameters<CollectionName>,
    ) -> CallToolResult {
        outcome(self.ops().collection_info(&params.collection).await)
    }

    #[tool(
        description = "Replicate another node's collection by its id: fetch its blocks from \
        its providers (or `from`), pin them, and keep following its new versions. Needs the \
        daemon (peer-to-peer networking)."
    )]
    async fn fetch_collection(
        &self,
        Parameters(params): Parameters<FetchParams>,
    ) -> CallToolResult {
        let fetched = self
            .ops()
            .fetch_collection(&params.id, params.name, &params.from, params.shards)
            .await;
        outcome(fetched)
    }

    #[tool(
        description = "This node: peer id, version, repository, store totals, listen \
        addresses, uptime, long operations running, and the connected peers."
    )]
    async fn get_node_status(&self) -> CallToolResult {
        let ops = self.ops();
        let (node, jobs, peers) = match (ops.node_info().await, ops.jobs().await) {
            (Ok(node), Ok(jobs)) => (node, jobs, ops.peers().await),
            (Err(e), _) | (_, Err(e)) => return failed(e),
        };
        // Peers are known only to a daemon; without one this node is offline.
        let peers = match peers {
            Ok(list) => json!(list.peers),
            Err(e) => json!({ "unavailable": e.to_string() }),
        };
        answer(&json!({ "node": node, "jobs": jobs.jobs, "peers": peers }))
    }

    #[tool(
        description = "The block store's health as this node knows it: blocks and bytes \
        stored, pins, and each collection's replication state. Blocks are checked when read \
        and when imported; there is no full re-verification yet."
    )]
    async fn get_store_health(&self) -> CallToolResult {
        let ops = self.ops();
        let (node, pins, list) = match (
            ops.node_info().await,
            ops.pins().await,
            ops.list_collections().await,
        ) {
            (Ok(node), Ok(pins), Ok(list)) => (node, pins, list),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return failed(e),
        };
        let collections: Vec<Value> = list
            .collections
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "root": c.root,
                    "writable": c.writable,
                    "state": c.state,
                    "sync_percent": c.sync_percent,
                    "replicas": c.replicas,
                    "replication_factor": c.replication_factor,
                })
            })
            .collect();
        answer(&json!({
            "store": node.store,
            "pins": pins.pins.len(),
            "collections": collections,
        }))
    }

    #[tool(
        description = "The block stores this node can use and the one in use: the \
        iroh-blobs store on disk in the repository's `blocks` folder (blocks keyed by their \
        BLAKE3 digest and checked when read, pins kept as tags, garbage collected from the \
        pins), with its folder, blocks, bytes and size limit (`storage.max_bytes`, 0 for \
        none). It is the only one: the configuration has no setting that picks another. \
        Also the other stores collections move to and from (`bridges`: FAISS, Parquet, \
        Qdrant, Elasticsearch, OpenSearch, bulk files), as `migrate_collection` and `ipvec \
        migrate` reach them."
    )]
    async fn list_available_stores(&self) -> CallToolResult {
        let ops = self.ops();
        let (node, config) = match (ops.node_info().await, ops.config().await) {
            (Ok(node), Ok(config)) => (node, config),
            (Err(e), _) | (_, Err(e)) => return failed(e),
        };
        let store = json!({
            "name": STORE,
            "in_use": true,
            "kind": "iroh-blobs FsStore (on disk)",
            "path": repo::store_dir(Path::new(&node.repo)),
            "blocks": node.store.blocks,
            "bytes": node.store.bytes,
            "max_bytes": config.storage.max_bytes,
        });
        answer(&json!({
            "in_use": STORE,
            "stores": [store],
            "bridges": bridges(),
            "note": "every ipvec node keeps its blocks in this one store; the configuration \
                     has no setting that picks another (storage.max_bytes caps its size), and \
                     the in-memory stores in ipvec's code serve its tests only",
        }))
    }

    #[tool(
        description = "The peers of this node: those connected now (address, direction, \
        latency, protocols, agent, Bitswap blocks exchanged, how they answer federated \
        searches), or why there are none (the daemon knows them), and those it refuses, \
        each with where the denial comes from (`config`: p2p.deny_peers; `runtime`: \
        `ipvec peers deny`)."
    )]
    async fn get_peer_status(&self) -> CallToolResult {
        let ops = self.ops();
        let denied = match ops.denied_peers().await {
            Ok(list) => list.peers,
            Err(e) => return failed(e),
        };
        // Peers are known only to a daemon; without one this node is offline.
        let connected = match ops.peers().await {
            Ok(list) => json!(list.peers),
            Err(e) => json!({ "unavailable": e.to_string() }),
        };
        answer(&json!({ "connected": connected, "denied": denied }))
    }

    #[tool(
        description = "Bring a collection in from another store: a FAISS index file \
        (IndexFlatL2/IP, IndexIDMap/IDMap2 around them, IndexHNSWFlat), a Parquet table, a \
        Qdrant collection, an Elasticsearch/OpenSearch index or bulk NDJSON file, or another \
        collection of this node. It is created under `name`, filled in batches and read back \
        to verify it (count, a content digest of every id, vector and metadata, and a sample \
        compared one by one); a move that fails leaves no collection. Files are read only \
        over stdio (`ipvec mcp`)."
    )]
    async fn migrate_collection(
        &self,
        Parameters(params): Parameters<MigrateParams>,
    ) -> CallToolResult {
        let from = match Endpoint::parse(&format!("{}:{}", params.source, params.location)) {
            Ok(from) => from,
            Err(e) => return failed(e),
        };
        let reads_file = matches!(
            from,
            Endpoint::Faiss { .. } | Endpoint::Parquet { .. } | Endpoint::Bulk { .. }
        ) || params.metadata_file.is_some();
        if reads_file && !self.files {
            return failed(NO_FILES);
        }
        let metric = match params
            .metric
            .as_deref()
            .map(crate::bridge::ipvec::parse_metric)
        {
            None => None,
            Some(Ok(metric)) => Some(metric),
            Some(Err(e)) => return failed(e),
        };
        let defaults = BridgeOptions::default();
        let migration = Migration {
            options: BridgeOptions {
                api_key: params.api_key,
                vector_name: params.vector_name,
                vector_field: params.vector_field.unwrap_or(defaults.vector_field),
                id_field: params.id_field.unwrap_or(defaults.id_field),
                metadata_file: params.metadata_file.map(Into::into),
                metric,
            },
            ..Migration::new(
                from,
                Endpoint::Ipvec {
                    name: params.name.clone(),
                },
            )
        };
        match crate::bridge::migrate(&migration, self.ops(), &mut |_| {}).await {
            Ok(report) => answer(&report),
            Err(e) => failed(e),
        }
    }

    #[tool(
        description = "Compact or re-index a collection. Not available yet: the node has no \
        optimize operation (it commits and indexes on its own)."
    )]
    async fn optimize_collection(
        &self,
        Parameters(params): Parameters<CollectionName>,
    ) -> CallToolResult {
        failed(format!(
            "optimizing {} is not available yet: the node has no optimize operation; it \
             commits logged writes into versions and keeps its index up to date on its own, \
             and `ipvec gc` removes blocks no pin reaches",
            params.collection
        ))
    }
}

/// The other stores `migrate_collection` and `ipvec migrate` reach, as `list_available_stores`
/// names them.
fn bridges() -> Value {
    json!([
        { "kind": "faiss", "location": "PATH", "directions": ["import", "export"],
          "what": "FAISS index files: IndexFlatL2/IP, IndexIDMap/IDMap2 around them, IndexHNSWFlat (read); IndexIDMap2 over a flat index (written)" },
        { "kind": "parquet", "location": "PATH", "directions": ["import", "export"],
          "what": "Parquet tables: an id column, a vector column, metadata columns" },
        { "kind": "qdrant", "location": "http://HOST:6333/COLLECTION", "directions": ["import", "export"],
          "what": "a Qdrant collection over its REST API" },
        { "kind": "elasticsearch", "location": "http://HOST:9200/INDEX", "directions": ["import", "export"],
          "what": "an Elasticsearch index with a dense_vector field" },
        { "kind": "opensearch", "location": "http://HOST:9200/INDEX", "directions": ["import", "export"],
          "what": "an OpenSearch k-NN index with a knn_vector field" },
        { "kind": "bulk", "location": "PATH", "directions": ["import", "export"],
          "what": "Elasticsearch/OpenSearch bulk NDJSON files" },
        { "kind": "ipvec", "location": "NAME", "directions": ["import", "export"],
          "what": "another collection of this node" },
    ])
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for IpvecTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("ipvec", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_input_becomes_the_operations_request_with_its_defaults() {
        let params: SearchParams = serde_json::from_value(json!({
            "collection": "docs",
            "vector": [1.0, 2.0],
            "federated": true,
            "filter": {"must": [{"key": "even", "match": true}]},
        }))
        .unwrap();
        let search: SearchRequest = request(&params).unwrap();
        assert_eq!(search.vector, vec![1.0, 2.0]);
        assert_eq!(search.k, 10, "the operation's default");
        assert!(search.federated);
        assert!(!search.exact);
        assert_eq!(search.filter.unwrap()["must"][0]["key"], "even");
    }

    #[test]
    fn create_input_keeps_the_operations_checks() {
        let params: CreateParams =
            serde_json::from_value(json!({"name": "docs", "dim": 3, "metric": "l2"})).unwrap();
        let create: CreateCollection = request(&params).unwrap();
        assert_eq!((create.dim, create.shards), (3, 1));
        let params: CreateParams =
            serde_json::from_value(json!({"name": "docs", "dim": 3, "metric": "hamming"})).unwrap();
        let refused = request::<CreateCollection>(&params).unwrap_err();
        assert!(refused.contains("invalid arguments"), "{refused}");
    }

    #[test]
    fn answers_keep_the_shortest_spelling_of_f32s() {
        #[derive(Serialize)]
        struct Hit {
            score: f32,
        }
        let result = answer(&Hit { score: 0.1 });
        assert_eq!(result.is_error, Some(false));
        let content = result.structured_content.unwrap();
        assert_eq!(content["score"].to_string(), "0.1");
        let result = failed("no such collection");
        assert_eq!(result.is_error, Some(true));
    }
}
