//! The Parquet bridge against pyarrow, the reference implementation: tables pyarrow writes
//! from real vectors (Fashion-MNIST images) come into ipvec with the same ids, vectors (bit
//! for bit) and metadata; tables ipvec writes read back in pyarrow the same; a collection
//! whose points carry different metadata keys makes the round trip with the same content
//! digest; and broken tables are refused with what to do, leaving no collection behind.
//!
//! `.ci/run` installs pyarrow and numpy into `~/.cache/ipvec-venv` (`IPVEC_TEST_PYTHON`
//! names another python).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::HashMap, path::Path, process::Command};

use common::{python, workspace};
use ipvec_node::{
    bridge::{
        self, digest::canonical_metadata, ipvec::IpvecSource, BridgeOptions, Endpoint, Migration,
        MigrationReport, Source,
    },
    ops::Node,
    repo::Repo,
};
use ipvec_protocol::{
    api::{PointId, PointIn},
    manifest::Metric,
};
use serde_json::{json, Value};

/// Images taken from Fashion-MNIST.
const IMAGES: usize = 2_000;

/// Runs `tests/parquet/tables.py` with `args`; its standard output.
fn tables(args: &[&str]) -> String {
    let out = Command::new(python("pyarrow, numpy", "pyarrow==26.0.1 numpy==2.4.6"))
        .arg(workspace().join("tests/parquet/tables.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tables.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn node_in(dir: &Path) -> Node {
    let repo = Repo::init(&dir.join("repo")).await.unwrap();
    let config = repo.config().clone();
    Node::new(repo, config)
}

async fn run(
    node: &Node,
    from: &str,
    to: &str,
    metric: Option<Metric>,
) -> bridge::Result<MigrationReport> {
    let mut migration = Migration::new(Endpoint::parse(from)?, Endpoint::parse(to)?);
    migration.options = BridgeOptions {
        metric,
        ..BridgeOptions::default()
    };
    bridge::migrate(&migration, node, &mut |_| {}).await
}

/// Every point of collection `name`.
async fn points_of(node: &Node, name: &str) -> Vec<PointIn> {
    let mut source = IpvecSource::new(node, name);
    source.shape().await.unwrap();
    let mut all = Vec::new();
    loop {
        let batch = source.next_batch(1_000).await.unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

fn id_of(value: &Value) -> PointId {
    match value {
        Value::Number(n) => PointId::Int(n.as_u64().unwrap()),
        Value::String(s) => PointId::Str(s.clone()),
        other => panic!("id {other}"),
    }
}

/// An id as a map key (an integer and a string never collide).
fn key(id: &PointId) -> String {
    format!("{id:?}")
}

/// Lines `{"id", "bits", "metadata"}` as points, by id.
fn expected(lines: &str) -> HashMap<String, (Vec<u32>, Value)> {
    lines
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let bits = v["bits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap() as u32)
                .collect();
            (key(&id_of(&v["id"])), (bits, v["metadata"].clone()))
        })
        .collect()
}

/// Checks that `points` are exactly `expected`: the same ids, vector bits and metadata.
fn assert_same(what: &str, points: &[PointIn], expected: &HashMap<String, (Vec<u32>, Value)>) {
    assert_eq!(points.len(), expected.len(), "{what}: point count");
    for point in points {
        let (bits, metadata) = expected
            .get(&key(&point.id))
            .unwrap_or_else(|| panic!("{what}: unexpected point {:?}", point.id));
        let found: Vec<u32> = point.vector.iter().map(|x| x.to_bits()).collect();
        assert!(
            found == *bits,
            "{what}: point {:?}'s vector differs",
            point.id
        );
        assert_eq!(
            canonical_metadata(point.metadata.as_ref()),
            canonical_metadata(Some(metadata)),
            "{what}: point {:?}'s metadata: {:?} where {metadata} was written",
            point.id,
            point.metadata
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyarrow_tables_come_in_whole_and_go_back_out_readable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    tables(&["write", data.to_str().unwrap(), &IMAGES.to_string()]);
    let node = node_in(dir.path()).await;
    let file = |name: &str| data.join(name).display().to_string();

    // A table that records no metric needs one.
    let e = run(&node, &file("fixed.parquet"), "ipvec:fixed", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("--metric cosine|l2|dot"), "{e}");

    let imports = [
        ("fixed", "parquet:", Metric::Cosine),
        ("list", "parquet:", Metric::L2),
        ("double", "parquet:", Metric::Dot),
    ];
    for (name, kind, metric) in imports {
        let from = format!("{kind}{}", file(&format!("{name}.parquet")));
        let mut migration = Migration::new(
            Endpoint::parse(&from).unwrap(),
            Endpoint::parse(&format!("ipvec:{name}")).unwrap(),
        );
        migration.options.metric = Some(metric);
        if name == "list" {
            migration.options.id_field = "key".into();
            migration.options.vector_field = "embedding".into();
        }
        let report = bridge::migrate(&migration, &node, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(report.points, IMAGES as u64, "{name}");
        assert_eq!(report.dimension, 784, "{name}");
        assert!(report.verified.is_some(), "{name}");
        let lines = std::fs::read_to_string(data.join(format!("{name}.jsonl"))).unwrap();
        assert_same(name, &points_of(&node, name).await, &expected(&lines));
    }

    // Out again, read by pyarrow.
    let out = file("out.parquet");
    let report = run(&node, "ipvec:fixed", &out, None).await.unwrap();
    assert_eq!(report.points, IMAGES as u64);
    let read = tables(&["read", &out]);
    let (header, rows) = read.split_once('\n').unwrap();
    let header: Value = serde_json::from_str(header).unwrap();
    assert_eq!(header["columns"]["id"], "uint64", "{header}");
    assert_eq!(
        header["columns"]["vector"], "fixed_size_list<item: float not null>[784]",
        "{header}"
    );
    assert_eq!(header["ipvec"]["ipvec.metric"], "cosine", "{header}");
    assert_eq!(header["ipvec"]["ipvec.dimension"], "784", "{header}");
    let lines = std::fs::read_to_string(data.join("fixed.jsonl")).unwrap();
    let written = expected(&lines);
    let read_back: Vec<PointIn> = rows
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let vector = v["bits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| f32::from_bits(b.as_u64().unwrap() as u32))
                .collect();
            PointIn::vector(id_of(&v["id"]), vector, Some(v["metadata"].clone()))
        })
        .collect();
    assert_same("read back by pyarrow", &read_back, &written);

    // String ids go out as utf8, and the file names its metric for the way back in.
    let out = file("list_out.parquet");
    run(&node, "ipvec:list", &out, None).await.unwrap();
    let read = tables(&["read", &out]);
    let header: Value = serde_json::from_str(read.lines().next().unwrap()).unwrap();
    assert_eq!(header["columns"]["id"], "string", "{header}");
    let report = run(&node, &out, "ipvec:list_again", None).await.unwrap();
    assert_eq!(report.metric, "l2");
    node.close().await.unwrap();
}

/// Points whose metadata keys and value types differ (keys first seen after the first row
/// group are covered by the unit tests, with small row groups).
fn varied_points(n: u64) -> Vec<PointIn> {
    let vectors = common::seeded_vectors(11, n as usize, 8);
    vectors
        .into_iter()
        .enumerate()
        .map(|(i, vector)| {
            let i = i as u64;
            let mut m = serde_json::Map::new();
            m.insert("group".into(), json!(i % 5));
            if i.is_multiple_of(2) {
                m.insert("even".into(), json!(true));
            }
            // Mostly floats, sometimes an integer or a string.
            m.insert(
                "score".into(),
                match i % 10 {
                    0 => json!(3),
                    1 => json!("high"),
                    _ => json!(i as f64 / 4.0 + 0.125),
                },
            );
            if i.is_multiple_of(7) {
                m.insert(
                    "nested".into(),
                    json!({"a": [1, 2.5, "x"], "b": {"c": null}}),
                );
            }
            if i.is_multiple_of(11) {
                m.insert("big".into(), json!(u64::MAX - i));
            }
            if i.is_multiple_of(13) {
                m.insert("nothing".into(), Value::Null);
            }
            // Keys of the last points only, and keys named like the columns.
            if i > 2_500 && i.is_multiple_of(3) {
                m.insert("late".into(), json!(format!("late-{i}")));
            }
            if i.is_multiple_of(17) {
                m.insert("id".into(), json!("shadow"));
                m.insert("metadata_json".into(), json!({"x": 1}));
            }
            let metadata = (!i.is_multiple_of(19)).then_some(Value::Object(m));
            PointIn::vector(PointId::Int(i * 3), vector, metadata)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_makes_the_round_trip_through_parquet_with_the_same_digest() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_in(dir.path()).await;
    let request = serde_json::from_value(json!({"name": "a", "dim": 8, "metric": "l2"})).unwrap();
    node.create_collection(request).await.unwrap();
    let points = varied_points(3_000);
    for chunk in points.chunks(1_000) {
        node.upsert("a", chunk.to_vec()).await.unwrap();
    }
    let file = dir.path().join("a.parquet").display().to_string();
    let out = run(&node, "ipvec:a", &file, None).await.unwrap();
    let back = run(&node, &file, "ipvec:b", None).await.unwrap();
    assert_eq!(out.points, 3_000);
    assert_eq!(back.points, 3_000);
    assert_eq!(back.metric, "l2");
    let (out, back) = (out.verified.unwrap(), back.verified.unwrap());
    assert_eq!(out.digest, back.digest);
    assert!(out.digest_compared && back.digest_compared);

    // Writing over a file is refused.
    let e = run(&node, "ipvec:a", &file, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("exists"), "{e}");
    node.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_tables_are_refused_with_what_to_do_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    tables(&["bad", data.to_str().unwrap()]);
    tables(&["write", data.to_str().unwrap(), "300"]);
    let whole = std::fs::read(data.join("fixed.parquet")).unwrap();
    std::fs::write(data.join("truncated.parquet"), &whole[..whole.len() / 2]).unwrap();
    // The footer kept, a page in the middle overwritten.
    let mut damaged = whole.clone();
    let middle = damaged.len() / 2;
    damaged[middle..middle + 4096].fill(0xA5);
    std::fs::write(data.join("damaged.parquet"), &damaged).unwrap();
    let node = node_in(dir.path()).await;

    let cases = [
        (
            "no_id.parquet",
            vec!["no id column \"id\"", "idx (UInt64)", "--id-field"],
        ),
        (
            "text_vector.parquet",
            vec!["vector column \"vector\" has type Utf8", "float32"],
        ),
        ("negative_id.parquet", vec!["row 2 has id -3"]),
        ("null_vector.parquet", vec!["row 2 has no vector"]),
        (
            "ragged.parquet",
            vec!["point 2 has 2 components", "dimension is 3"],
        ),
        (
            "nan.parquet",
            vec!["point 3 has NaN as component 1", "finite"],
        ),
        (
            "binary_metadata.parquet",
            vec!["column \"blob\" has type Binary", "drop the column"],
        ),
        (
            "truncated.parquet",
            vec!["not a readable Parquet file", "truncated"],
        ),
        ("damaged.parquet", vec!["damaged"]),
        ("missing.parquet", vec!["missing.parquet"]),
    ];
    for (name, wanted) in cases {
        let path = data.join(name).display().to_string();
        let e = run(&node, &path, "ipvec:bad", Some(Metric::L2))
            .await
            .unwrap_err()
            .to_string();
        for w in wanted {
            assert!(e.contains(w), "{name}: {e:?} should say {w:?}");
        }
        let list = node.list_collections().await.unwrap();
        assert!(list.collections.is_empty(), "{name} left {list:?}");
    }

    // A move that keeps a checkpoint keeps it from the start: failing in its first batch (of
    // 3,000 points, the NaN at 2,500), it leaves the collection it made and a checkpoint
    // `--resume` continues from.
    let checkpoint = data.join("late_nan.checkpoint");
    let mut migration = Migration::new(
        Endpoint::parse(&data.join("late_nan.parquet").display().to_string()).unwrap(),
        Endpoint::parse("ipvec:kept").unwrap(),
    );
    migration.batch = 3_000;
    migration.checkpoint = Some(checkpoint.clone());
    migration.options.metric = Some(Metric::L2);
    let e = bridge::migrate(&migration, &node, &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("point 2500 has NaN as component 1"),
        "{e}"
    );
    let saved: Value = serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    assert_eq!(saved["done"], 0, "{saved}");
    let list = node.list_collections().await.unwrap();
    assert_eq!(list.collections.len(), 1, "{list:?}");
    assert_eq!(list.collections[0].name, "kept");
    migration.resume = true;
    let e = bridge::migrate(&migration, &node, &mut |_| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("point 2500 has NaN"), "{e}");
    node.drop_collection("kept").await.unwrap();

    // An export that fails leaves no file and no temporary file behind.
    let request =
        serde_json::from_value(json!({"name": "mixed", "dim": 2, "metric": "l2"})).unwrap();
    node.create_collection(request).await.unwrap();
    node.upsert(
        "mixed",
        vec![
            PointIn::vector(PointId::Int(1), vec![1.0, 0.0], None),
            PointIn::vector(PointId::Str("two".into()), vec![0.0, 1.0], None),
        ],
    )
    .await
    .unwrap();
    let out = data.join("mixed.parquet");
    let e = run(&node, "ipvec:mixed", &out.display().to_string(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("mixes integer and string ids"), "{e}");
    assert!(!out.exists());
    assert!(!data.join("mixed.parquet.tmp").exists());
    node.close().await.unwrap();
}
