//! The MCP server driven by independent clients: the official Python SDK (PyPI `mcp`,
//! tests/mcp/client.py) over stdio through a daemon and over the daemon's `/mcp`, and the
//! official TypeScript SDK (npm `@modelcontextprotocol/sdk`, tests/js-mcp/client.mjs) over
//! stdio on a repository opened in process. Their answers are held against the CLI's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{path::Path, process::Command};

use common::*;
use serde_json::{json, Value};

/// The tools the server must list.
const TOOLS: &[&str] = &[
    "add_vectors_to_collection",
    "create_vector_collection",
    "delete_vectors",
    "export_collection_to_car",
    "export_collection_to_ipld",
    "fetch_collection",
    "get_collection_cid",
    "get_collection_stats",
    "get_node_status",
    "get_peer_status",
    "get_store_health",
    "get_vector_by_id",
    "import_collection_from_car",
    "import_collection_from_ipld",
    "list_available_stores",
    "list_collections",
    "migrate_collection",
    "optimize_collection",
    "pin_collection_to_ipfs",
    "search_vectors",
    "update_vector_metadata",
];

/// Runs the Python client with `plan` (a list of tool calls) over `transport` (`--` and a
/// command, or `--url` and a URL); its report.
fn python_client(dir: &Path, plan: &Value, transport: &[&str]) -> Value {
    let plan_file = dir.join("plan.json");
    std::fs::write(&plan_file, plan.to_string()).unwrap();
    let out = Command::new(python("mcp", "mcp==2.3.0"))
        .arg(workspace().join("tests/mcp/client.py"))
        .arg(&plan_file)
        .args(transport)
        .env_remove("IPVEC_PATH")
        .env_remove("IPVEC_API")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Python MCP client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_of(&String::from_utf8(out.stdout).unwrap())
}

/// `ipvec --repo REPO mcp`, as a client's command line.
fn mcp_command(repo: &Path) -> Vec<String> {
    vec![
        env!("CARGO_BIN_EXE_ipvec").to_string(),
        "--repo".to_string(),
        repo.to_str().unwrap().to_string(),
        "mcp".to_string(),
    ]
}

/// (id, score) of each hit.
fn hits(response: &Value) -> Vec<(Value, f64)> {
    response["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits in {response}"))
        .iter()
        .map(|h| (h["id"].clone(), h["score"].as_f64().unwrap()))
        .collect()
}

/// The points of tests/common's `points_jsonl(range)`, as tool input.
fn vectors(range: std::ops::Range<u64>) -> Vec<Value> {
    points_jsonl(range).lines().map(json_of).collect()
}

/// A successful call's structured content.
fn answered(report: &Value, step: usize) -> &Value {
    let call = &report["calls"][step];
    assert_eq!(call["isError"], false, "call {step} failed: {call}");
    assert!(call["structuredContent"].is_object(), "call {step}: {call}");
    &call["structuredContent"]
}

/// A failed call's text, which must mention every one of `words`.
fn refused(report: &Value, step: usize, words: &[&str]) {
    let call = &report["calls"][step];
    assert_eq!(call["isError"], true, "call {step} should fail: {call}");
    let text = call["text"].as_str().unwrap();
    for word in words {
        assert!(text.contains(word), "call {step}: {text:?} lacks {word:?}");
    }
}

#[test]
fn the_python_sdk_adds_texts_and_asks_questions_in_a_text_collection() {
    let model = model_dir();
    let repo = new_repo();
    let dir = repo.path.parent().unwrap().to_path_buf();
    let _daemon = Daemon::start(&repo.path, &[("IPVEC_EMBEDDING_MODEL_DIR", model.as_str())]);
    let question = "Which animal sleeps most of the day?";
    let plan = json!([
        {"name": "create_vector_collection", "arguments": {"name": "notes", "embedding": "local"}},
        {"name": "add_vectors_to_collection", "arguments": {"collection": "notes", "texts": [
            "Cats sleep for most of the day.",
            "The train to the airport leaves every twenty minutes.",
            {"id": "soup", "text": "The soup needs more salt.", "metadata": {"kind": "food"}},
            {"text": "Tea tastes better with a slice of lemon.", "metadata": {"kind": "food"}}
        ]}},
        {"name": "search_vectors", "arguments": {"collection": "notes", "text": question, "k": 2}},
        {"name": "search_vectors", "arguments": {"collection": "notes", "text": "What would improve this dish?", "k": 4,
            "filter": {"must": [{"key": "kind", "match": "food"}]}}},
        {"name": "search_vectors", "arguments": {"collection": "notes", "text": question, "vector": [1.0]}},
        {"name": "create_vector_collection", "arguments": {"name": "bad", "embedding": "local", "dim": 3}},
    ]);
    let command = mcp_command(&repo.path);
    let mut transport = vec!["--"];
    transport.extend(command.iter().map(String::as_str));
    let report = python_client(&dir, &plan, &transport);

    let created = answered(&report, 0);
    assert_eq!(created["dim"], 384);
    assert_eq!(created["embedding"]["provider"], "local");
    assert_eq!(answered(&report, 1)["points"], 4);
    let cats = answered(&report, 2);
    assert_eq!(
        cats["hits"][0]["metadata"]["text"],
        "Cats sleep for most of the day."
    );
    let cli = json_of(&ok(
        &repo.path,
        &["--json", "search", "notes", question, "-k", "2"],
    ));
    assert_eq!(hits(cats), hits(&cli), "the tool answers as the CLI does");
    let food = answered(&report, 3)["hits"].as_array().unwrap().clone();
    assert_eq!(food.len(), 2, "only the two food points pass the filter");
    assert_eq!(food[0]["id"], "soup");
    refused(&report, 4, &["not two of them"]);
    refused(&report, 5, &["384"]);
}

#[test]
fn the_python_sdk_drives_every_tool_through_the_daemon_over_stdio_and_http() {
    let repo = new_repo();
    let dir = repo.path.parent().unwrap().to_path_buf();
    let daemon = Daemon::start(&repo.path, &[("IPVEC_API_REQUIRE_TOKEN", "true")]);
    let car = dir.join("docs.car");
    let query = json!([40.0, 5.0, 1.0, 1.5]);
    let filter = json!({"must": [{"key": "even", "match": true}]});
    let plan = json!([
        {"name": "create_vector_collection", "arguments": {"name": "docs", "dim": 4, "metric": "l2"}},
        {"name": "add_vectors_to_collection", "arguments": {"collection": "docs", "vectors": vectors(0..60)}},
        {"name": "update_vector_metadata", "arguments": {"collection": "docs", "id": 7, "metadata": {"tag": "x"}, "merge": true}},
        {"name": "get_vector_by_id", "arguments": {"collection": "docs", "id": 7}},
        {"name": "delete_vectors", "arguments": {"collection": "docs", "ids": [3, 4]}},
        // 5
        {"name": "search_vectors", "arguments": {"collection": "docs", "vector": query, "k": 5}},
        {"name": "search_vectors", "arguments": {"collection": "docs", "vector": query, "k": 5, "filter": filter}},
        {"name": "get_collection_cid", "arguments": {"collection": "docs"}},
        {"name": "get_collection_stats", "arguments": {"collection": "docs"}},
        {"name": "list_collections", "arguments": {}},
        // 10
        {"name": "export_collection_to_car", "arguments": {"collection": "docs", "path": car}},
        {"name": "import_collection_from_car", "arguments": {"path": car, "name": "docs-copy"}},
        {"name": "get_node_status", "arguments": {}},
        {"name": "get_store_health", "arguments": {}},
        {"name": "search_vectors", "arguments": {"collection": "docs", "vector": [1.0, 2.0, 3.0], "k": 5}},
        // 15
        {"name": "search_vectors", "arguments": {"collection": "nope", "vector": query}},
        {"name": "add_vectors_to_collection", "arguments": {"collection": "docs", "vectors": [{"id": 99, "vector": [1.0]}]}},
        {"name": "add_vectors_to_collection", "arguments": {"collection": "docs", "texts": ["hello"]}},
        {"name": "get_vector_by_id", "arguments": {"collection": "docs", "id": 3}},
        {"name": "migrate_collection", "arguments": {"source": "qdrant", "location": "http://localhost:6333", "name": "q"}},
        // 20
        {"name": "optimize_collection", "arguments": {"collection": "docs"}},
        {"name": "fetch_collection", "arguments": {"id": "not-an-id"}},
        {"name": "export_collection_to_ipld", "arguments": {"collection": "nope"}},
        {"name": "pin_collection_to_ipfs", "arguments": {"collection": "nope"}},
        {"name": "import_collection_from_ipld", "arguments": {"root": "bafy-not-a-cid"}},
        // 25
        {"name": "list_available_stores", "arguments": {}},
        {"name": "migrate_collection", "arguments": {"source": "ipvec", "location": "docs", "name": "docs-moved"}},
        {"name": "migrate_collection", "arguments": {"source": "faiss", "location": "/nonexistent/x.index", "name": "f"}},
    ]);
    let command = mcp_command(&repo.path);
    let mut transport = vec!["--"];
    transport.extend(command.iter().map(String::as_str));
    let report = python_client(&dir, &plan, &transport);

    assert_eq!(report["server"]["name"], "ipvec");
    let mut listed: Vec<&str> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["inputSchema"]["type"], "object", "{t}");
            assert!(!t["description"].as_str().unwrap().is_empty(), "{t}");
            t["name"].as_str().unwrap()
        })
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, TOOLS);
    let search_schema = &report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "search_vectors")
        .unwrap()["inputSchema"];
    for field in ["collection", "vector", "k", "ef", "filter", "federated"] {
        assert!(search_schema["properties"][field].is_object(), "{field}");
    }

    // Writes.
    assert_eq!(answered(&report, 0)["dim"], 4);
    assert_eq!(answered(&report, 1)["points"], 60);
    assert_eq!(answered(&report, 4)["points"], 58);
    let point = answered(&report, 3);
    assert_eq!(point["metadata"]["tag"], "x");
    assert_eq!(
        point["metadata"]["group"], 2,
        "merged into the old metadata"
    );

    // The same answers as the CLI's, through the same daemon.
    let cli_point = json_of(&ok(&repo.path, &["--json", "get", "docs", "7"]));
    assert_eq!(point["vector"], cli_point["vector"]);
    assert_eq!(point["metadata"], cli_point["metadata"]);
    let cli_search = json_of(&ok(
        &repo.path,
        &[
            "--json",
            "search",
            "docs",
            "--vector",
            "40,5,1,1.5",
            "-k",
            "5",
        ],
    ));
    assert_eq!(hits(answered(&report, 5)), hits(&cli_search));
    assert_eq!(hits(answered(&report, 5)).len(), 5);
    let filter_text = filter.to_string();
    let cli_filtered = json_of(&ok(
        &repo.path,
        &[
            "--json",
            "search",
            "docs",
            "--vector",
            "40,5,1,1.5",
            "-k",
            "5",
            "--filter",
            &filter_text,
        ],
    ));
    let filtered = hits(answered(&report, 6));
    assert_eq!(filtered, hits(&cli_filtered));
    assert!(filtered.iter().all(|(id, _)| id.as_u64().unwrap() % 2 == 0));
    let info = json_of(&ok(&repo.path, &["--json", "collection", "info", "docs"]));
    assert_eq!(answered(&report, 7)["id"], info["id"]);
    assert!(answered(&report, 7)["root"]
        .as_str()
        .unwrap()
        .starts_with('b'));
    let stats = answered(&report, 8);
    for field in ["id", "name", "dim", "metric", "points", "shards"] {
        assert_eq!(stats[field], info[field], "{field}");
    }
    assert_eq!(stats["points"], 58);
    assert_eq!(answered(&report, 9)["collections"][0]["name"], "docs");

    // CAR files: the export is a file the CLI imports into another repository alike.
    let exported = answered(&report, 10);
    assert!(exported["blocks"].as_u64().unwrap() > 0);
    assert!(car.exists());
    let imported = answered(&report, 11);
    let copy = json_of(&ok(
        &repo.path,
        &["--json", "collection", "info", "docs-copy"],
    ));
    assert_eq!(imported["root"], copy["root"]);
    assert_eq!(imported["id"], info["id"]);
    assert_eq!(imported["points"], copy["points"]);

    // Node and store.
    let node = json_of(&ok(&repo.path, &["--json", "id"]));
    assert_eq!(answered(&report, 12)["node"]["peer_id"], node["peer_id"]);
    assert!(answered(&report, 12)["peers"].is_array());
    let health = answered(&report, 13);
    assert!(health["store"]["blocks"].as_u64().unwrap() > 0);
    assert!(health["pins"].as_u64().unwrap() > 0);
    assert_eq!(health["collections"].as_array().unwrap().len(), 2);

    // Bad arguments and parts not built: tool errors that say what to do.
    refused(&report, 14, &["dimension"]);
    refused(&report, 15, &["nope"]);
    refused(&report, 16, &["dimension"]);
    refused(&report, 17, &["holds vectors, not texts", "--embedding"]);
    refused(&report, 18, &["3"]);
    refused(&report, 19, &["localhost:6333"]);
    refused(&report, 20, &["not available yet"]);
    let call = &report["calls"][21];
    assert_eq!(call["isError"], true, "{call}");
    refused(&report, 22, &["nope"]);
    refused(&report, 23, &["nope"]);
    refused(&report, 24, &["collection id", "manifest CID"]);

    // The one block store, where the repository keeps it.
    let stores = answered(&report, 25);
    assert_eq!(stores["in_use"], "iroh-blobs-fs");
    assert_eq!(stores["stores"].as_array().unwrap().len(), 1);
    let store = &stores["stores"][0];
    assert_eq!(store["in_use"], true);
    assert_eq!(store["path"], repo.path.join("blocks").to_str().unwrap());
    assert!(store["blocks"].as_u64().unwrap() > 0);
    let kinds: Vec<&str> = stores["bridges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "faiss",
        "parquet",
        "qdrant",
        "elasticsearch",
        "opensearch",
        "bulk",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }

    // A collection moved through the bridge driver, verified; a file that is not there.
    let moved = answered(&report, 26);
    let moved_info = json_of(&ok(
        &repo.path,
        &["--json", "collection", "info", "docs-moved"],
    ));
    assert_eq!(moved["to"], "ipvec:docs-moved");
    assert_eq!(moved["points"], moved_info["points"]);
    assert_eq!(moved["verified"]["points"], moved_info["points"]);
    refused(&report, 27, &["/nonexistent/x.index"]);

    // The daemon's /mcp answers the same, and only with the token.
    let url = format!("{}/mcp", daemon.url);
    let token = daemon.token.clone().unwrap();
    let plan = json!([
        {"name": "search_vectors", "arguments": {"collection": "docs", "vector": query, "k": 5}},
        {"name": "get_collection_cid", "arguments": {"collection": "docs"}},
        {"name": "export_collection_to_car", "arguments": {"collection": "docs", "path": dir.join("http.car")}},
        {"name": "import_collection_from_car", "arguments": {"path": car, "name": "http-copy"}},
    ]);
    let over_http = python_client(&dir, &plan, &["--url", &url, "--token", &token]);
    let mut http_tools: Vec<&str> = over_http["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    http_tools.sort_unstable();
    assert_eq!(http_tools, TOOLS);
    assert_eq!(hits(answered(&over_http, 0)), hits(&cli_search));
    assert_eq!(answered(&over_http, 1)["id"], info["id"]);
    // Files named by path would be the daemon's: the CAR tools refuse over HTTP.
    refused(
        &over_http,
        2,
        &["ipvec mcp", "/v1/collections/{name}/export"],
    );
    refused(&over_http, 3, &["ipvec mcp"]);
    assert!(!dir.join("http.car").exists());
    fails(&repo.path, &["collection", "info", "http-copy"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 401, "/mcp without the token");
}

/// The peer ids in a list of peers.
fn peer_ids(peers: &Value) -> Vec<String> {
    let mut ids: Vec<String> = peers
        .as_array()
        .unwrap_or_else(|| panic!("not a list of peers: {peers}"))
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn the_python_sdk_moves_a_collection_between_daemons_as_ipld_and_pins_it() {
    // A writes the collection; B brings it in over the MCP tools, through its daemon.
    let a = new_repo();
    let file = a.path.parent().unwrap().join("points.jsonl");
    std::fs::write(&file, points_jsonl(0..300)).unwrap();
    ok(
        &a.path,
        &[
            "collection",
            "create",
            "docs",
            "--dim",
            "4",
            "--shards",
            "2",
        ],
    );
    ok(&a.path, &["add", "docs", file.to_str().unwrap()]);
    let info_a = json_of(&ok(&a.path, &["--json", "collection", "info", "docs"]));
    let (id, root) = (
        info_a["id"].as_str().unwrap(),
        info_a["root"].as_str().unwrap(),
    );
    let _daemon_a = Daemon::start(&a.path, &[]);
    let address_a = address_of(&a.path);
    let b = new_repo();
    let dir = b.path.parent().unwrap().to_path_buf();
    let _daemon_b = Daemon::start(&b.path, &[]);
    // A third node's id: a peer B refuses, and a collection id no node holds.
    let refused_peer = peer_of(&new_repo().path);
    ok(&b.path, &["peers", "deny", &refused_peer]);

    let plan = json!([
        {"name": "import_collection_from_ipld", "arguments": {"root": root, "from": [address_a]}},
        {"name": "import_collection_from_ipld", "arguments": {"root": id, "from": [address_a], "name": "replica"}},
        {"name": "export_collection_to_ipld", "arguments": {"collection": "replica"}},
        {"name": "pin_collection_to_ipfs", "arguments": {"collection": "replica"}},
        {"name": "get_peer_status", "arguments": {}},
        // 5
        {"name": "list_available_stores", "arguments": {}},
        {"name": "import_collection_from_ipld", "arguments": {"root": refused_peer, "from": [address_a]}},
        {"name": "import_collection_from_ipld", "arguments": {"root": root, "name": "named"}},
        {"name": "import_collection_from_ipld", "arguments": {"root": "bafy-not-a-cid"}},
        {"name": "export_collection_to_ipld", "arguments": {"collection": "nope"}},
        // 10
        {"name": "pin_collection_to_ipfs", "arguments": {"collection": "nope"}},
    ]);
    let command = mcp_command(&b.path);
    let mut transport = vec!["--"];
    transport.extend(command.iter().map(String::as_str));
    let report = python_client(&dir, &plan, &transport);

    // By manifest CID: that version's DAG, fetched from A and pinned on B.
    let dag = answered(&report, 0);
    assert_eq!(dag["root"], root);
    assert!(dag["fetched"].as_u64().unwrap() > 3, "{dag}");
    let pins_b = json_of(&ok(&b.path, &["--json", "pin", "ls"]));
    let pinned = |cid: &Value| {
        pins_b["pins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["cid"] == *cid)
    };
    assert!(pinned(&dag["root"]), "{pins_b}");
    // By collection id: a read-only replica, at A's version.
    let replica = answered(&report, 1);
    let info_b = json_of(&ok(&b.path, &["--json", "collection", "info", "replica"]));
    assert_eq!(replica["id"], id);
    assert_eq!(replica["root"], root);
    assert_eq!(replica["points"], 300);
    assert_eq!(replica["writable"], false);
    assert_eq!(info_b["root"], root);

    // Exported as IPLD: the manifest A wrote, and its shard roots.
    let exported = answered(&report, 2);
    assert_eq!(exported["root"], root);
    assert_eq!(exported["id"], id);
    assert_eq!(exported["version"], info_a["version"]);
    let manifest_a = json_of(&ok(&a.path, &["dag", "get", root]));
    assert_eq!(exported["manifest"], manifest_a);
    let shards = exported["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    for (shard, link) in shards.iter().zip(manifest_a["shards"].as_array().unwrap()) {
        assert_eq!(*shard, link["/"]);
        let shard_root = json_of(&ok(&b.path, &["dag", "get", shard.as_str().unwrap()]));
        assert!(shard_root["tree"]["/"].is_string(), "{shard_root}");
    }

    // Pinned on B, which names where to fetch it.
    let pin = answered(&report, 3);
    assert_eq!(pin["cid"], root);
    assert!(pinned(&pin["cid"]), "{pins_b}");
    let id_b = json_of(&ok(&b.path, &["--json", "id"]));
    assert_eq!(pin["peer_id"], id_b["peer_id"]);
    let address_b = pin["addresses"][0].as_str().unwrap();
    let addresses_b = id_b["addresses"].as_array().unwrap();
    assert!(addresses_b.iter().any(|a| a == address_b), "{id_b}");
    let fetch = pin["fetch"].as_str().unwrap();
    assert!(
        fetch.contains(&format!("ipfs swarm connect {address_b}")),
        "{fetch}"
    );
    assert!(fetch.contains(&format!("ipfs dag get {root}")), "{fetch}");
    assert_eq!(pin["announced_on_ipfs_dht"], false);

    // Peers as the CLI lists them: A connected, the third node refused.
    let peers = answered(&report, 4);
    let connected = peer_ids(&peers["connected"]);
    assert!(connected.contains(&peer_of(&a.path)), "{peers}");
    assert_eq!(
        connected,
        peer_ids(&json_of(&ok(&b.path, &["--json", "peers"]))["peers"])
    );
    let denied = json_of(&ok(&b.path, &["--json", "peers", "denied"]));
    assert_eq!(peers["denied"], denied["peers"]);
    assert_eq!(peers["denied"][0]["peer_id"], refused_peer.as_str());
    assert_eq!(peers["denied"][0]["source"], "runtime");

    let stores = answered(&report, 5);
    assert_eq!(
        stores["stores"][0]["path"],
        b.path.join("blocks").to_str().unwrap()
    );

    // Bad roots and unknown collections: tool errors that say what to do.
    refused(&report, 6, &[&refused_peer]);
    refused(&report, 7, &["drop `name`", "collection id"]);
    refused(&report, 8, &["collection id", "manifest CID"]);
    refused(&report, 9, &["nope"]);
    refused(&report, 10, &["nope"]);
}

#[test]
fn the_typescript_sdk_searches_a_repository_opened_in_process() {
    let js = workspace().join("tests/js-mcp");
    assert!(
        js.join("node_modules/@modelcontextprotocol/sdk").exists(),
        "the TypeScript MCP SDK is needed: run .ci/run, or `(cd tests/js-mcp && npm ci \
         --ignore-scripts)` (Node.js 20 or newer)"
    );
    let repo = new_repo();
    let dir = repo.path.parent().unwrap().to_path_buf();
    let file = dir.join("points.jsonl");
    std::fs::write(&file, points_jsonl(0..50)).unwrap();
    ok(&repo.path, &["collection", "create", "docs", "--dim", "4"]);
    ok(&repo.path, &["add", "docs", file.to_str().unwrap()]);
    let cli_search = json_of(&ok(
        &repo.path,
        &[
            "--json", "search", "docs", "--vector", "1,2,-3,4", "-k", "7",
        ],
    ));

    let search = json!({"collection": "docs", "vector": [1.0, 2.0, -3.0, 4.0], "k": 7});
    let out = Command::new("node")
        .arg(js.join("client.mjs"))
        .arg(search.to_string())
        .args(mcp_command(&repo.path))
        .env_remove("IPVEC_PATH")
        .env_remove("IPVEC_API")
        .output()
        .expect("Node.js runs the TypeScript MCP client: install Node.js 20 or newer");
    assert!(
        out.status.success(),
        "the TypeScript MCP client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_of(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(report["server"]["name"], "ipvec");
    let mut listed: Vec<&str> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, TOOLS);
    assert_eq!(report["search"]["isError"], false, "{report}");
    let found = hits(&report["search"]["structuredContent"]);
    assert_eq!(found.len(), 7);
    assert_eq!(found, hits(&cli_search));
    // The server closed the repository: the CLI opens it again.
    ok(&repo.path, &["collection", "info", "docs"]);
}
