//! Our CAR files and blocks, checked by implementations that are not ours.
//!
//! - `rs-car`, a Rust CAR reader written independently of ipvec;
//! - the JavaScript reference stack (`@ipld/car`, `@ipld/dag-cbor`, `multiformats`) run by
//!   `tests/js/verify-car.mjs`, which re-encodes every DAG-CBOR block and requires identical bytes;
//! - a CAR written by that stack (`tests/js/make-car.mjs`), imported by ipvec.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use cid::Cid;
use ipvec_node::{
    store::{car, dag, BlockStore, IrohBlockStore},
    tree::{self, Edit},
};
use ipvec_protocol::{
    cid as pcid,
    entry::{Entry, EntryId},
    hlc::Hlc,
    Ipld,
};

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Installs the JavaScript packages once (CI does it in advance; a fresh checkout does it here).
fn node() -> &'static str {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let version = Command::new("node").arg("--version").output();
        let version = version.expect(
            "the interop tests need Node.js >= 20 and npm on PATH (apt-get install nodejs npm)",
        );
        assert!(version.status.success(), "node --version failed");
        if !js_dir()
            .join("node_modules")
            .join("@ipld")
            .join("car")
            .exists()
        {
            let status = Command::new("npm")
                .args([
                    "ci",
                    "--ignore-scripts",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                ])
                .current_dir(js_dir())
                .status()
                .expect("npm is needed to install the JavaScript IPLD packages");
            assert!(status.success(), "npm ci in tests/js failed");
        }
    });
    "node"
}

/// Runs a script of tests/js and returns its stdout lines; panics with its output on failure.
fn run_js(args: &[&str]) -> (bool, Vec<String>) {
    let out = Command::new(node())
        .args(args)
        .current_dir(js_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        eprintln!("{args:?} stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    (
        out.status.success(),
        stdout.lines().map(str::to_string).collect(),
    )
}

fn f32s(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
    values.into_iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A shard with every kind of entry: integer and string ids, metadata with all IPLD kinds
/// (including a link), tombstones; big enough for several leaves under a branch.
async fn sample_tree(store: &IrohBlockStore) -> Cid {
    let writer = [7u8; 32];
    let linked = store
        .put(pcid::RAW, bytes::Bytes::from_static(b"an attachment"))
        .await
        .unwrap();
    let mut entries = Vec::new();
    for i in 0..1_500u64 {
        let vec = f32s((0..96).map(|d| ((i * 31 + d) as f32 * 0.013).sin()));
        let meta = Ipld::Map(
            [
                ("n".to_string(), Ipld::Integer(i128::from(i) - 700)),
                ("label".to_string(), Ipld::String(format!("item-{i}"))),
                ("score".to_string(), Ipld::Float(i as f64 / 7.0 + 0.5)),
                ("neg".to_string(), Ipld::Float(-0.0)),
                ("flag".to_string(), Ipld::Bool(i % 2 == 0)),
                ("blob".to_string(), Ipld::Bytes(vec![i as u8; 5])),
                ("none".to_string(), Ipld::Null),
                (
                    "list".to_string(),
                    Ipld::List(vec![Ipld::Integer(1), Ipld::String("x".into())]),
                ),
                ("attachment".to_string(), Ipld::Link(linked)),
            ]
            .into(),
        );
        // Metadata from JSON goes through the number rule: -0.0 is stored as the integer 0.
        let meta = ipvec_protocol::entry::normalize_metadata(meta);
        entries.push(Entry::put(
            EntryId::Int(i).to_key().unwrap(),
            vec,
            Some(meta),
            Hlc(1 << 20),
            writer,
        ));
    }
    for s in ["alpha", "beta", "gamma-δ"] {
        entries.push(Entry::put(
            EntryId::Str(s.into()).to_key().unwrap(),
            f32s([1.0; 96]),
            None,
            Hlc(5),
            writer,
        ));
    }
    let root = tree::build(store, entries).await.unwrap();
    // Some tombstones, written as an edit like a delete would be.
    let deletes = (0..1_500u64).step_by(97).map(|i| {
        Edit::Put(Entry::tombstone(
            EntryId::Int(i).to_key().unwrap(),
            Hlc(1 << 21),
            writer,
        ))
    });
    let (root, _) = tree::apply(store, root, deletes.collect()).await.unwrap();
    store.pin(&root).await.unwrap();
    root
}

async fn export_sample(dir: &Path) -> (IrohBlockStore, Cid, PathBuf, HashSet<Cid>) {
    let store = IrohBlockStore::open(&dir.join("store")).await.unwrap();
    let root = sample_tree(&store).await;
    let path = dir.join("sample.car");
    let file = tokio::fs::File::create(&path).await.unwrap();
    car::export(&store, &root, file, |_| {}).await.unwrap();
    // The blocks of the DAG, from our own walk.
    let walk = dag::reachable(&store, &[root]).await.unwrap();
    assert!(walk.missing.is_empty());
    let mut cids = HashSet::new();
    let mut stack = vec![root];
    while let Some(cid) = stack.pop() {
        if cids.insert(cid) {
            stack.extend(dag::block_links(&cid, &store.require(&cid).await.unwrap()).unwrap());
        }
    }
    assert_eq!(cids.len(), walk.live.len());
    (store, root, path, cids)
}

#[tokio::test(flavor = "multi_thread")]
async fn rs_car_reads_our_car_files() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, root, path, cids) = export_sample(dir.path()).await;
    assert!(
        cids.len() >= 4,
        "the sample spans several blocks ({})",
        cids.len()
    );
    let bytes = std::fs::read(&path).unwrap();
    let mut reader = futures::io::Cursor::new(bytes);
    // rs-car verifies only SHA-2 and BLAKE2b hashes; BLAKE3 is checked here with the blake3 crate.
    let (blocks, header) = rs_car::car_read_all(&mut reader, false).await.unwrap();
    assert!(
        header.characteristics_v2.is_none(),
        "a CAR v1 file: {header:?}"
    );
    assert_eq!(
        header
            .roots
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
        vec![root.to_string()]
    );
    let mut seen = HashSet::new();
    for (cid, data) in blocks {
        let cid = Cid::try_from(cid.to_bytes()).unwrap();
        assert_eq!(cid.hash().code(), 0x1e);
        assert_eq!(
            cid.hash().digest(),
            blake3::hash(&data).as_bytes(),
            "block {cid} does not hash to its CID"
        );
        assert!(seen.insert(cid), "block {cid} written twice");
    }
    assert_eq!(seen, cids, "the CAR holds exactly the DAG's blocks");
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript_reference_stack_verifies_our_car_files() {
    let dir = tempfile::tempdir().unwrap();
    let (store, root, path, cids) = export_sample(dir.path()).await;
    let (ok, lines) = run_js(&[
        "verify-car.mjs",
        path.to_str().unwrap(),
        "--dump-json",
        &root.to_string(),
    ]);
    assert!(ok, "verify-car.mjs rejected our CAR: {lines:?}");
    let report: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["roots"], serde_json::json!([root.to_string()]));
    assert_eq!(report["blocks"].as_u64().unwrap() as usize, cids.len());
    let raw = cids.iter().filter(|c| c.codec() == pcid::RAW).count();
    assert_eq!(report["raw"].as_u64().unwrap() as usize, raw);
    // The JavaScript DAG-JSON of the root equals ours.
    let ours: Ipld = ipvec_protocol::dagcbor::decode(&store.require(&root).await.unwrap()).unwrap();
    let ours: serde_json::Value = serde_json::from_slice(&serde_ipld_dagjson_bytes(&ours)).unwrap();
    let theirs: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(theirs, ours);

    // A corrupted copy is rejected by the JavaScript side too (the test can fail).
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff;
    let bad = dir.path().join("bad.car");
    std::fs::write(&bad, bytes).unwrap();
    let (ok, lines) = run_js(&["verify-car.mjs", bad.to_str().unwrap()]);
    assert!(!ok, "a corrupted CAR must fail verification: {lines:?}");
}

fn serde_ipld_dagjson_bytes(value: &Ipld) -> Vec<u8> {
    ipvec_node::cli::dag_json(value).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn ipvec_imports_a_car_written_by_javascript() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("from-js.car");
    let (ok, lines) = run_js(&["make-car.mjs", path.to_str().unwrap()]);
    assert!(ok, "make-car.mjs failed: {lines:?}");
    let root = pcid::parse_cid(lines.last().unwrap()).unwrap();
    let store = IrohBlockStore::open(&dir.path().join("store"))
        .await
        .unwrap();
    let file = tokio::fs::File::open(&path).await.unwrap();
    let summary = car::import(&store, file, |_| {}).await.unwrap();
    assert_eq!(summary.roots, vec![root]);
    assert!(summary.totals.blocks >= 3);
    dag::check_complete(&store, &root).await.unwrap();
    assert_eq!(store.pins().await.unwrap(), vec![(root.to_string(), root)]);
    // And back out: our export of it is read by the JavaScript verifier.
    let again = dir.path().join("again.car");
    car::export(
        &store,
        &root,
        tokio::fs::File::create(&again).await.unwrap(),
        |_| {},
    )
    .await
    .unwrap();
    let (ok, lines) = run_js(&["verify-car.mjs", again.to_str().unwrap()]);
    assert!(ok, "{lines:?}");
    let report: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(report["blocks"].as_u64().unwrap(), summary.totals.blocks);
}
