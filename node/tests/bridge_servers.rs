//! The Qdrant and Elasticsearch/OpenSearch bridges against loopback servers written from the
//! vendors' API documentation (`bridge_servers/`), and bulk NDJSON files: moves both ways
//! with the same content digest, paging, throttling, resume after a failure, and refusals
//! that leave nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bridge_servers {
    pub mod elastic;
    pub mod qdrant;
}

use std::path::Path;

use bridge_servers::{elastic::ElasticServer, qdrant::QdrantServer};
use ipvec_node::{
    bridge::{endpoint::Flavor, migrate, BridgeOptions, Endpoint, Migration, MigrationReport},
    ops::Node,
};
use ipvec_protocol::{
    api::{CreateCollection, PointId, PointIn},
    manifest::Metric,
};
use serde_json::json;

const DIM: usize = 8;

/// A node on a fresh repository in `dir`.
async fn node(dir: &Path) -> Node {
    let repo = ipvec_node::repo::Repo::init(&dir.join("repo"))
        .await
        .unwrap();
    let config = repo.config().clone();
    Node::new(repo, config)
}

/// Deterministic components in [-1, 1), some of them with many digits.
fn vector(seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..DIM)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `n` points: integer ids, and every tenth a string id from `string_id`; metadata of mixed
/// kinds (none on every seventh).
fn points(n: u64, string_id: impl Fn(u64) -> String) -> Vec<PointIn> {
    (0..n)
        .map(|i| {
            let id = if i % 10 == 3 {
                PointId::Str(string_id(i))
            } else {
                PointId::Int(i * 3 + 1)
            };
            let metadata = (i % 7 != 0).then(|| {
                json!({
                    "group": i % 5,
                    "even": i % 2 == 0,
                    "title": format!("item \"{i}\" ü"),
                    "score": i as f64 / 8.0,
                    "tags": {"b": [format!("t{}", i % 3), "x"], "a": null},
                })
            });
            PointIn::vector(id, vector(i), metadata)
        })
        .collect()
}

fn uuid(i: u64) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", i, i * 7919)
}

/// Any string: ids that look like integers or JSON strings included.
fn any_string(i: u64) -> String {
    match i % 3 {
        0 => format!("{i}"),
        1 => format!("doc-{i}"),
        _ => format!("\"q{i}\""),
    }
}

async fn collection(node: &Node, name: &str, metric: Metric, points: Vec<PointIn>) {
    let request: CreateCollection = serde_json::from_value(json!({
        "name": name, "dim": DIM, "metric": metric.as_str()
    }))
    .unwrap();
    node.create_collection(request).await.unwrap();
    for chunk in points.chunks(100) {
        node.upsert(name, chunk.to_vec()).await.unwrap();
    }
}

async fn collections(node: &Node) -> Vec<String> {
    let list = node.list_collections().await.unwrap();
    let mut names: Vec<String> = list.collections.into_iter().map(|c| c.name).collect();
    names.sort();
    names
}

fn endpoint(text: &str) -> Endpoint {
    Endpoint::parse(text).unwrap()
}

fn moving(from: &str, to: &str, options: &BridgeOptions, batch: usize) -> Migration {
    let mut m = Migration::new(endpoint(from), endpoint(to));
    m.options = options.clone();
    m.batch = batch;
    m
}

async fn run(m: &Migration, node: &Node) -> MigrationReport {
    migrate(m, node, &mut |_| {}).await.unwrap()
}

/// Time passing before the user runs a failed move again: past the open spell of the
/// server's circuit breaker (at most `outbound.breaker_max_open_ms`, a minute), which the
/// failed move's retries opened; the clock is paused, so no test waits for it.
async fn later() {
    tokio::time::sleep(std::time::Duration::from_secs(61)).await;
}

/// The error a move that must fail stops with.
async fn refused(m: &Migration, node: &Node) -> String {
    migrate(m, node, &mut |_| {}).await.unwrap_err().to_string()
}

fn digest(report: &MigrationReport) -> String {
    report.verified.as_ref().unwrap().digest.clone()
}

fn keyed(key: &str) -> BridgeOptions {
    BridgeOptions {
        api_key: Some(key.into()),
        ..BridgeOptions::default()
    }
}

#[tokio::test]
async fn qdrant_round_trip_keeps_every_point_over_several_pages_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let server = QdrantServer::start(Some("sekret")).await;
    collection(&node, "src", Metric::L2, points(230, uuid)).await;
    let options = keyed("sekret");

    let out = moving(
        "ipvec:src",
        &format!("qdrant:{}/items", server.url),
        &options,
        64,
    );
    let exported = run(&out, &node).await;
    assert_eq!(exported.points, 230);
    server.with(|s| {
        let c = &s.collections["items"];
        assert_eq!(c.vectors, json!({"size": DIM, "distance": "Euclid"}));
        assert_eq!(c.points.len(), 230);
        assert_eq!(s.upserts, 4, "230 points in batches of 64");
    });
    let scrolls_before = server.with(|s| s.scrolls);

    let back = moving(
        &format!("qdrant:{}/items", server.url),
        "ipvec:back",
        &options,
        50,
    );
    let imported = run(&back, &node).await;
    assert_eq!(imported.points, 230);
    assert_eq!(imported.metric, "l2");
    assert_eq!(digest(&imported), digest(&exported));
    assert!(
        server.with(|s| s.scrolls) - scrolls_before >= 5,
        "230 points read in pages of 50"
    );

    // A named vector, written and read by name.
    let named = BridgeOptions {
        vector_name: Some("image".into()),
        ..options.clone()
    };
    let out = moving(
        "ipvec:src",
        &format!("qdrant:{}/named", server.url),
        &named,
        100,
    );
    let exported_named = run(&out, &node).await;
    server.with(|s| {
        assert_eq!(
            s.collections["named"].vectors,
            json!({"image": {"size": DIM, "distance": "Euclid"}})
        )
    });
    let back = moving(
        &format!("qdrant:{}/named", server.url),
        "ipvec:back2",
        &named,
        100,
    );
    assert_eq!(digest(&run(&back, &node).await), digest(&exported_named));

    // Without the vector's name, the error lists the names there are.
    let unnamed = moving(
        &format!("qdrant:{}/named", server.url),
        "ipvec:x",
        &options,
        100,
    );
    let e = refused(&unnamed, &node).await;
    assert!(e.contains("[\"image\"]"), "{e}");
    node.close().await.unwrap();
}

#[tokio::test]
async fn qdrant_refuses_what_it_cannot_keep_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let server = QdrantServer::start(Some("sekret")).await;
    collection(&node, "words", Metric::Dot, points(40, any_string)).await;
    let url = server.url.clone();

    // No key: 401, said so.
    let m = moving(
        &format!("qdrant:{url}/c"),
        "ipvec:c",
        &BridgeOptions::default(),
        10,
    );
    let e = refused(&m, &node).await;
    assert!(e.contains("401") && e.contains("--api-key"), "{e}");

    // An unknown collection: 404 with Qdrant's words.
    let m = moving(
        &format!("qdrant:{url}/nope"),
        "ipvec:c",
        &keyed("sekret"),
        10,
    );
    let e = refused(&m, &node).await;
    assert!(e.contains("404") && e.contains("doesn't exist"), "{e}");

    // String ids that are not UUIDs: refused, naming the point; the collection it made is gone.
    let m = moving(
        "ipvec:words",
        &format!("qdrant:{url}/words"),
        &keyed("sekret"),
        10,
    );
    let e = refused(&m, &node).await;
    assert!(e.contains("q23") && e.contains("not a UUID"), "{e}");
    assert!(server.with(|s| s.collections.is_empty()));

    // A collection that exists is not written into.
    collection(&node, "ints", Metric::L2, points(20, uuid)).await;
    let m = moving(
        "ipvec:ints",
        &format!("qdrant:{url}/taken"),
        &keyed("sekret"),
        10,
    );
    server.with(|s| {
        s.collections.insert(
            "taken".into(),
            bridge_servers::qdrant::Collection {
                vectors: json!({"size": DIM, "distance": "Cosine"}),
                points: Default::default(),
            },
        )
    });
    let e = refused(&m, &node).await;
    assert!(e.contains("exists already"), "{e}");
    assert!(server.with(|s| s.collections.contains_key("taken")));

    // Manhattan distance has no counterpart.
    server.with(|s| {
        s.collections.insert(
            "manhattan".into(),
            bridge_servers::qdrant::Collection {
                vectors: json!({"size": DIM, "distance": "Manhattan"}),
                points: Default::default(),
            },
        )
    });
    let m = moving(
        &format!("qdrant:{url}/manhattan"),
        "ipvec:m",
        &keyed("sekret"),
        10,
    );
    let e = refused(&m, &node).await;
    assert!(e.contains("Manhattan"), "{e}");

    // A collection whose points do not have its dimension: the import fails and is dropped.
    let m = moving(
        "ipvec:ints",
        &format!("qdrant:{url}/short"),
        &keyed("sekret"),
        10,
    );
    run(&m, &node).await;
    server.with(|s| {
        let c = s.collections.get_mut("short").unwrap();
        let p = c.points.values_mut().nth(5).unwrap();
        p.vectors.get_mut("").unwrap().pop();
    });
    let m = moving(
        &format!("qdrant:{url}/short"),
        "ipvec:short",
        &keyed("sekret"),
        4,
    );
    let e = refused(&m, &node).await;
    assert!(
        e.contains("7 components") && e.contains("dimension is 8"),
        "{e}"
    );

    // Garbage instead of a scroll page: a clear error, no collection.
    server.with(|s| s.garbage_scrolls = true);
    let m = moving(
        &format!("qdrant:{url}/short"),
        "ipvec:garbage",
        &keyed("sekret"),
        4,
    );
    let e = refused(&m, &node).await;
    assert!(
        e.contains("not JSON") && e.contains("upstream proxy"),
        "{e}"
    );

    assert_eq!(collections(&node).await, vec!["ints", "words"]);
    node.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn qdrant_throttling_is_waited_out_as_retry_after_says() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let server = QdrantServer::start(None).await;
    collection(&node, "src", Metric::Dot, points(30, uuid)).await;
    server.with(|s| s.throttle_next_upsert = true);
    let started = tokio::time::Instant::now();
    let m = moving(
        "ipvec:src",
        &format!("qdrant:{}/t", server.url),
        &BridgeOptions::default(),
        10,
    );
    let report = run(&m, &node).await;
    assert_eq!(report.points, 30);
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    server.with(|s| {
        assert_eq!(s.throttled, 1);
        assert_eq!(s.upserts, 3);
        assert_eq!(s.log.iter().filter(|l| l.ends_with(" 429")).count(), 1);
    });
    node.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn qdrant_moves_resume_after_the_server_failed_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let server = QdrantServer::start(None).await;
    collection(&node, "src", Metric::L2, points(100, uuid)).await;
    let options = BridgeOptions::default();
    let checkpoint = dir.path().join("move.checkpoint");

    // Out: the server fails after two batches; the move stops, keeping what it wrote.
    server.with(|s| s.fail_upserts_after = Some(2));
    let mut out = moving(
        "ipvec:src",
        &format!("qdrant:{}/r", server.url),
        &options,
        20,
    );
    out.checkpoint = Some(checkpoint.clone());
    let e = refused(&out, &node).await;
    assert!(e.contains("500") && e.contains("attempts"), "{e}");
    assert!(checkpoint.exists());
    assert_eq!(server.with(|s| s.collections["r"].points.len()), 40);
    server.with(|s| s.fail_upserts_after = None);
    later().await;
    out.resume = true;
    let report = run(&out, &node).await;
    assert_eq!((report.points, report.resumed_after), (100, 40));
    assert!(!checkpoint.exists());
    let original = report.verified.unwrap().digest;

    // Back: the server fails after two pages; the import resumes at the page cursor.
    server.with(|s| {
        s.scrolls = 0;
        s.fail_scrolls_after = Some(2);
    });
    let mut back = moving(
        &format!("qdrant:{}/r", server.url),
        "ipvec:back",
        &options,
        30,
    );
    back.checkpoint = Some(checkpoint.clone());
    let e = refused(&back, &node).await;
    assert!(e.contains("500"), "{e}");
    assert_eq!(node.collection_info("back").await.unwrap().points, 60);
    server.with(|s| s.fail_scrolls_after = None);
    later().await;
    back.resume = true;
    let report = run(&back, &node).await;
    assert_eq!((report.points, report.resumed_after), (100, 60));
    let verified = report.verified.unwrap();
    assert!(
        !verified.digest_compared,
        "the first 60 were skipped by cursor"
    );
    assert_eq!(verified.digest, original);
    node.close().await.unwrap();
}

async fn elastic_round_trip(flavor: Flavor) {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let server = ElasticServer::start(flavor, Some("k3y")).await;
    let kind = match flavor {
        Flavor::Elasticsearch => "elasticsearch",
        Flavor::OpenSearch => "opensearch",
    };
    collection(&node, "src", Metric::Dot, points(230, any_string)).await;
    let options = keyed("k3y");
    let index = format!("{kind}:{}/items", server.url);

    let exported = run(&moving("ipvec:src", &index, &options, 64), &node).await;
    assert_eq!(exported.points, 230);
    server.with(|s| {
        let i = &s.indices["items"];
        assert_eq!(i.docs.len(), 230, "refreshed at the end");
        assert!(
            i.docs.contains_key("\"3\""),
            "a string id that looks like a number is quoted"
        );
        assert!(i.docs.contains_key("doc-13"));
        assert!(i.docs.contains_key("1"));
        let field = &i.properties["vector"];
        match flavor {
            Flavor::Elasticsearch => assert_eq!(
                field,
                &json!({"type": "dense_vector", "dims": DIM, "index": true,
                        "similarity": "max_inner_product"})
            ),
            Flavor::OpenSearch => assert_eq!(field["method"]["space_type"], "innerproduct"),
        }
        assert_eq!(s.bulks, 4);
    });

    let imported = run(&moving(&index, "ipvec:back", &options, 50), &node).await;
    assert_eq!((imported.points, imported.metric.as_str()), (230, "dot"));
    assert_eq!(digest(&imported), digest(&exported));
    server.with(|s| {
        assert!(
            s.cursors.is_empty(),
            "every point in time or scroll is closed"
        );
        let pages = s
            .log
            .iter()
            .filter(|l| l.starts_with("POST /_search") || l.contains("/_search "))
            .count();
        assert!(pages >= 5, "{pages} pages for 230 points in 50s");
    });

    // Without the key: 401, said so; nothing made.
    let m = moving(&index, "ipvec:nokey", &BridgeOptions::default(), 10);
    let e = refused(&m, &node).await;
    assert!(e.contains("401") && e.contains("security_exception"), "{e}");
    // An unknown index: 404 with the server's reason.
    let m = moving(
        &format!("{kind}:{}/nope", server.url),
        "ipvec:x",
        &options,
        10,
    );
    let e = refused(&m, &node).await;
    assert!(
        e.contains("404") && e.contains("no such index [nope]"),
        "{e}"
    );
    // An index that exists is not written into.
    let e = migrate(
        &moving("ipvec:src", &index, &options, 64),
        &node,
        &mut |_| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("exists already"), "{e}");
    assert_eq!(collections(&node).await, vec!["back", "src"]);
    node.close().await.unwrap();
}

#[tokio::test]
async fn elasticsearch_round_trip_keeps_every_point_and_id() {
    elastic_round_trip(Flavor::Elasticsearch).await;
}

#[tokio::test]
async fn opensearch_round_trip_keeps_every_point_and_id() {
    elastic_round_trip(Flavor::OpenSearch).await;
}

#[tokio::test(start_paused = true)]
async fn elastic_throttling_waits_and_a_failed_bulk_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let server = ElasticServer::start(Flavor::Elasticsearch, None).await;
    collection(&node, "src", Metric::Cosine, points(100, any_string)).await;
    let options = BridgeOptions::default();
    let index = format!("elasticsearch:{}/r", server.url);
    let checkpoint = dir.path().join("es.checkpoint");

    server.with(|s| {
        s.throttle_next_bulk = true;
        s.throttle_items_next_bulk = true;
        s.fail_bulks_after = Some(3);
    });
    let started = tokio::time::Instant::now();
    let mut out = moving("ipvec:src", &index, &options, 20);
    out.checkpoint = Some(checkpoint.clone());
    let e = refused(&out, &node).await;
    assert!(e.contains("500"), "{e}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    // The whole first request was throttled, then half its items: sent again alone.
    assert_eq!(
        server.with(|s| (s.throttled, s.throttled_items, s.bulks)),
        (1, 10, 3)
    );
    server.with(|s| s.fail_bulks_after = None);
    later().await;
    out.resume = true;
    let report = run(&out, &node).await;
    assert_eq!((report.points, report.resumed_after), (100, 40));

    let back = run(&moving(&index, "ipvec:back", &options, 30), &node).await;
    assert_eq!(digest(&back), digest(&report));
    node.close().await.unwrap();
}

#[tokio::test]
async fn elastic_refusals_name_the_point_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let server = ElasticServer::start(Flavor::Elasticsearch, None).await;
    let options = BridgeOptions::default();

    // A field that is a number in one point and text in another: the bulk item fails, the
    // move names the point and removes the index it made.
    let mut mixed = points(30, any_string);
    mixed[12].metadata = Some(json!({"group": "twelve"}));
    collection(&node, "mixed", Metric::L2, mixed).await;
    let m = moving(
        "ipvec:mixed",
        &format!("elasticsearch:{}/mixed", server.url),
        &options,
        10,
    );
    let e = refused(&m, &node).await;
    assert!(
        e.contains("point 37") && e.contains("[group] of type [long]"),
        "{e}"
    );
    assert!(server.with(|s| s.indices.is_empty()));

    // An index whose documents do not have the mapping's dimension: the import fails and its
    // collection is dropped.
    let m = moving(
        "ipvec:src",
        &format!("elasticsearch:{}/short", server.url),
        &options,
        10,
    );
    collection(&node, "src", Metric::L2, points(30, any_string)).await;
    run(&m, &node).await;
    server.with(|s| {
        let docs = &mut s.indices.get_mut("short").unwrap().docs;
        let doc = docs.values_mut().nth(17).unwrap();
        doc["vector"].as_array_mut().unwrap().pop();
    });
    let m = moving(
        &format!("elasticsearch:{}/short", server.url),
        "ipvec:short",
        &options,
        8,
    );
    let e = refused(&m, &node).await;
    assert!(e.contains("7 components"), "{e}");

    // A mapping of another flavor's vector type, and a similarity ipvec lacks.
    let m = moving(
        &format!("opensearch:{}/short", server.url),
        "ipvec:os",
        &options,
        8,
    );
    let e = refused(&m, &node).await;
    assert!(e.contains("not knn_vector"), "{e}");
    let os = ElasticServer::start(Flavor::OpenSearch, None).await;
    os.with(|s| {
        s.indices.insert(
            "l1".into(),
            bridge_servers::elastic::Index {
                properties: serde_json::from_value(json!({"vector": {
                    "type": "knn_vector", "dimension": 8, "method": {"space_type": "l1"}
                }}))
                .unwrap(),
                ..Default::default()
            },
        )
    });
    let m = moving(
        &format!("opensearch:{}/l1", os.url),
        "ipvec:l1",
        &options,
        8,
    );
    let e = refused(&m, &node).await;
    assert!(e.contains("\"l1\""), "{e}");

    assert_eq!(collections(&node).await, vec!["mixed", "src"]);
    node.close().await.unwrap();
}

#[tokio::test]
async fn bulk_files_round_trip_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    collection(&node, "src", Metric::L2, points(120, any_string)).await;
    let file1 = dir.path().join("one.ndjson");
    let file2 = dir.path().join("two.ndjson");
    let options = BridgeOptions {
        metric: Some(Metric::L2),
        ..BridgeOptions::default()
    };
    let out = run(
        &moving(
            "ipvec:src",
            &format!("bulk:{}", file1.display()),
            &options,
            50,
        ),
        &node,
    )
    .await;
    let back = run(
        &moving(
            &format!("bulk:{}", file1.display()),
            "ipvec:back",
            &options,
            50,
        ),
        &node,
    )
    .await;
    assert_eq!(digest(&out), digest(&back));
    run(
        &moving(
            "ipvec:back",
            &format!("bulk:{}", file2.display()),
            &options,
            50,
        ),
        &node,
    )
    .await;
    let one = std::fs::read_to_string(&file1).unwrap();
    let two = std::fs::read_to_string(&file2).unwrap();
    for (n, (a, b)) in one.lines().zip(two.lines()).enumerate() {
        assert_eq!(a, b, "line {} differs", n + 1);
    }
    assert!(one == two, "the files differ in length or line ends");
    let text = one;
    assert_eq!(text.lines().count(), 240);
    assert!(text.starts_with("{\"index\":{\"_id\":"), "{}", &text[..80]);

    // Without a metric, and with a broken line: errors that say what to do and where.
    let m = moving(
        &format!("bulk:{}", file1.display()),
        "ipvec:x",
        &BridgeOptions::default(),
        50,
    );
    let e = refused(&m, &node).await;
    assert!(e.contains("--metric"), "{e}");
    let broken = dir.path().join("broken.ndjson");
    let mut lines: Vec<&str> = text.lines().collect();
    lines[57] = "{\"index\": {\"_id\": \"x\"}";
    std::fs::write(&broken, lines.join("\n")).unwrap();
    let m = moving(
        &format!("bulk:{}", broken.display()),
        "ipvec:y",
        &options,
        10,
    );
    let e = refused(&m, &node).await;
    assert!(e.contains("line 58"), "{e}");
    assert_eq!(collections(&node).await, vec!["back", "src"]);
    node.close().await.unwrap();
}
