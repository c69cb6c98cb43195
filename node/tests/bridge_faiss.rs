//! The FAISS bridge against the real library: files written by PyPI faiss-cpu from
//! Fashion-MNIST are imported and compared bit for bit; collections exported by ipvec are read
//! by `faiss.read_index` and searched, and its hits are ipvec's exact hits.
//!
//! Needs the venv `.ci/run` makes (`$HOME/.cache/ipvec-venv` with faiss-cpu and numpy, or
//! `$IPVEC_TEST_PYTHON`) and Debian's dataset-fashion-mnist, which `.ci/run` installs.

mod common;

use std::{collections::HashMap, path::Path, process::Command};

use anyhow::{bail, ensure, Context, Result};
use common::python;
use ipvec_node::{
    bridge::{migrate, BridgeOptions, Endpoint, Migration, MigrationReport},
    ops::Node,
    repo::Repo,
};
use ipvec_protocol::{
    api::{PointId, PointIn, SearchRequest},
    manifest::Metric,
};
use serde_json::{json, Value};

/// Fashion-MNIST images in each file.
const N: usize = 2_000;
const D: usize = 784;
const K: usize = 10;
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bridge/faiss_files.py");

fn run_python(args: &[&str]) -> Result<()> {
    let out = Command::new(python("faiss, numpy", "faiss-cpu==1.15.1 numpy==2.4.6"))
        .arg(SCRIPT)
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "faiss_files.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn f32s(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn i64s(path: &Path) -> Result<Vec<i64>> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect())
}

async fn new_node(dir: &Path) -> Result<Node> {
    let repo = Repo::init(dir).await?;
    let config = repo.config().clone();
    Ok(Node::new(repo, config))
}

async fn run(node: &Node, from: &str, to: &str, options: BridgeOptions) -> Result<MigrationReport> {
    let mut migration = Migration::new(Endpoint::parse(from)?, Endpoint::parse(to)?);
    migration.options = options;
    Ok(migrate(&migration, node, &mut |_| {}).await?)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

async fn collection_names(node: &Node) -> Result<Vec<String>> {
    Ok(node
        .list_collections()
        .await?
        .collections
        .into_iter()
        .map(|c| c.name)
        .collect())
}

/// Checks collection `name` holds `vectors[i]` under `ids[i]`, bit for bit.
async fn check_points(node: &Node, name: &str, ids: &[u64], vectors: &[f32]) -> Result<()> {
    let info = node.collection_info(name).await?;
    ensure!(
        info.points == ids.len() as u64,
        "{name}: {} points",
        info.points
    );
    for (i, id) in ids.iter().enumerate() {
        let point = node.get_point(name, PointId::Int(*id)).await?;
        ensure!(
            bits(&point.vector) == bits(&vectors[i * D..(i + 1) * D]),
            "{name}: point {id} (position {i}) came back with another vector"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faiss_files_move_both_ways_bit_for_bit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let files = dir.path().join("faiss");
    std::fs::create_dir(&files)?;
    let files_arg = files.to_str().context("utf-8 path")?;
    run_python(&["write", files_arg, &N.to_string()])?;
    let vectors = f32s(&files.join("vectors.f32"))?;
    let queries = f32s(&files.join("queries.f32"))?;
    let map_ids: Vec<u64> = i64s(&files.join("ids.i64"))?
        .iter()
        .map(|i| *i as u64)
        .collect();
    let positions: Vec<u64> = (0..N as u64).collect();
    let node = new_node(&dir.path().join("repo")).await?;

    // Import every kind of file FAISS writes that ipvec reads.
    let imports = [
        ("flat_l2", "l2", &positions),
        ("flat_ip", "dot", &positions),
        ("idmap", "l2", &map_ids),
        ("idmap2", "dot", &map_ids),
        ("hnsw_l2", "l2", &positions),
        ("hnsw_ip", "dot", &positions),
    ];
    for (file, metric, ids) in imports {
        let path = files.join(format!("{file}.index"));
        let report = run(
            &node,
            &format!("faiss:{}", path.display()),
            &format!("ipvec:{file}"),
            BridgeOptions::default(),
        )
        .await
        .with_context(|| format!("importing {file}"))?;
        ensure!(
            report.points == N as u64 && report.metric == metric,
            "{file}: {report:?}"
        );
        check_points(&node, file, ids, &vectors).await?;
    }

    // The side file's labels are joined by id.
    let labels = files.join("labels.jsonl");
    let with_labels = BridgeOptions {
        metadata_file: Some(labels.clone()),
        ..BridgeOptions::default()
    };
    let path = files.join("idmap.index");
    run(
        &node,
        &format!("faiss:{}", path.display()),
        "ipvec:labelled",
        with_labels,
    )
    .await?;
    for line in std::fs::read_to_string(&labels)?.lines().take(50) {
        let line: Value = serde_json::from_str(line)?;
        let id = line["id"].as_u64().context("id")?;
        let point = node.get_point("labelled", PointId::Int(id)).await?;
        ensure!(
            point.metadata == Some(json!({"label": line["label"]})),
            "{point:?}"
        );
    }

    // Export L2 and dot collections; faiss reads them, and its hits are ipvec's exact hits.
    for (name, metric) in [("idmap", Metric::L2), ("flat_ip", Metric::Dot)] {
        let out = dir.path().join(format!("{name}.out.index"));
        let report = run(
            &node,
            &format!("ipvec:{name}"),
            &format!("faiss:{}", out.display()),
            BridgeOptions::default(),
        )
        .await?;
        ensure!(report.verified.is_some(), "{report:?}");
        let read_dir = dir.path().join(format!("{name}.read"));
        std::fs::create_dir(&read_dir)?;
        run_python(&[
            "read",
            out.to_str().context("utf-8")?,
            files.join("queries.f32").to_str().context("utf-8")?,
            &K.to_string(),
            read_dir.to_str().context("utf-8")?,
        ])?;
        let read: Value =
            serde_json::from_str(&std::fs::read_to_string(read_dir.join("read.json"))?)?;
        let expected_inner = if metric == Metric::L2 {
            "IndexFlatL2"
        } else {
            "IndexFlatIP"
        };
        ensure!(
            read["type"] == "IndexIDMap2" && read["inner"] == expected_inner && read["ntotal"] == N,
            "{name}: faiss read {read}"
        );
        // Vectors by id, as faiss holds them, equal ipvec's bit for bit.
        let faiss_ids = i64s(&read_dir.join("ids.i64"))?;
        let faiss_vectors = f32s(&read_dir.join("vectors.f32"))?;
        let original: HashMap<u64, &[f32]> = imports
            .iter()
            .find(|(file, _, _)| *file == name)
            .map(|(_, _, ids)| ids.iter().copied().zip(vectors.chunks_exact(D)).collect())
            .context("source ids")?;
        let mut by_id: HashMap<u64, &[f32]> = HashMap::new();
        for (id, vector) in faiss_ids.iter().zip(faiss_vectors.chunks_exact(D)) {
            ensure!(*id >= 0, "faiss holds id {id}");
            by_id.insert(*id as u64, vector);
        }
        ensure!(by_id.len() == N, "{name}: {} distinct ids", by_id.len());
        for (id, vector) in &original {
            let theirs = by_id
                .get(id)
                .with_context(|| format!("{name}: id {id} missing"))?;
            ensure!(bits(theirs) == bits(vector), "{name}: id {id} differs");
        }
        let hits = read["hits"].as_array().context("hits")?;
        let score = |q: &[f32], id: u64| -> f64 {
            let v = original[&id];
            match metric {
                Metric::L2 => -q
                    .iter()
                    .zip(v)
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum::<f64>(),
                _ => q
                    .iter()
                    .zip(v)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum(),
            }
        };
        let mut same = 0;
        for (q, faiss_hits) in queries.chunks_exact(D).zip(hits) {
            let mut request = SearchRequest::new(q.to_vec());
            request.k = K;
            request.exact = true;
            let ours: Vec<u64> = node
                .search(name, request)
                .await?
                .hits
                .iter()
                .map(|h| match h.id {
                    PointId::Int(n) => Ok(n),
                    PointId::Str(ref s) => bail!("string id {s}"),
                })
                .collect::<Result<_>>()?;
            let theirs: Vec<u64> = faiss_hits
                .as_array()
                .context("hit row")?
                .iter()
                .map(|h| h.as_u64().context("hit id"))
                .collect::<Result<_>>()?;
            ensure!(ours.len() == K && theirs.len() == K, "{ours:?} {theirs:?}");
            for (a, b) in ours.iter().zip(&theirs) {
                if a == b {
                    same += 1;
                    continue;
                }
                // Ties aside: a different id at a rank must score the same.
                let (sa, sb) = (score(q, *a), score(q, *b));
                ensure!(
                    (sa - sb).abs() <= 1e-4 * sa.abs().max(1.0),
                    "{name}: ipvec ranks {a} ({sa}) where faiss ranks {b} ({sb})"
                );
            }
        }
        ensure!(
            same >= hits.len() * K * 9 / 10,
            "{name}: only {same} hits agree"
        );
    }

    // ipvec → FAISS → ipvec with metadata: the same content digest both ways.
    let dim = 24;
    node.create_collection(serde_json::from_value(
        json!({"name": "meta", "dim": dim, "metric": "l2"}),
    )?)
    .await?;
    let points: Vec<PointIn> = (0..500u64)
        .map(|i| {
            let vector = (0..dim)
                .map(|j| ((i * 31 + j) % 97) as f32 / 7.0 - 3.0)
                .collect();
            let metadata =
                (i % 4 != 0).then(|| json!({"n": i, "tag": format!("t{}", i % 5), "x": [i, 0.5]}));
            PointIn::vector(PointId::Int(i * 3 + 1), vector, metadata)
        })
        .collect();
    node.upsert("meta", points).await?;
    let side = dir.path().join("meta.jsonl");
    let options = BridgeOptions {
        metadata_file: Some(side.clone()),
        ..BridgeOptions::default()
    };
    let file = dir.path().join("meta.index");
    let out = run(
        &node,
        "ipvec:meta",
        &format!("faiss:{}", file.display()),
        options.clone(),
    )
    .await?;
    let back = run(
        &node,
        &format!("faiss:{}", file.display()),
        "ipvec:meta2",
        options,
    )
    .await?;
    let digest = |r: &MigrationReport| r.verified.as_ref().map(|v| v.digest.clone());
    ensure!(
        digest(&out).is_some() && digest(&out) == digest(&back),
        "{out:?} {back:?}"
    );
    let point = node.get_point("meta2", PointId::Int(3 * 7 + 1)).await?;
    ensure!(
        point.metadata == Some(json!({"n": 7, "tag": "t2", "x": [7, 0.5]})),
        "{point:?}"
    );
    ensure!(std::fs::read_to_string(&side)?.lines().count() == 375);

    // A dot collection's file says inner product; a cosine collection needs --metric dot.
    node.create_collection(serde_json::from_value(
        json!({"name": "cos", "dim": dim, "metric": "cosine"}),
    )?)
    .await?;
    let refused = run(
        &node,
        "ipvec:cos",
        &format!("faiss:{}", dir.path().join("cos.index").display()),
        BridgeOptions::default(),
    )
    .await;
    let message = format!(
        "{:#}",
        refused
            .err()
            .context("a cosine export without --metric dot")?
    );
    ensure!(message.contains("--metric dot"), "{message}");
    ensure!(!dir.path().join("cos.index").exists() && !dir.path().join("cos.index.tmp").exists());
    node.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_files_are_refused_and_leave_no_collection() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let files = dir.path().join("faiss");
    std::fs::create_dir(&files)?;
    run_python(&["write", files.to_str().context("utf-8")?, "100"])?;
    let node = new_node(&dir.path().join("repo")).await?;
    let good = std::fs::read(files.join("idmap.index"))?;

    let truncated = dir.path().join("truncated.index");
    std::fs::write(&truncated, &good[..good.len() / 2])?;
    let mut wrong_magic = good.clone();
    wrong_magic[..4].copy_from_slice(b"IwFl");
    let magic = dir.path().join("magic.index");
    std::fs::write(&magic, &wrong_magic)?;
    // The id at position 17 made negative.
    let mut negative = good.clone();
    let at = good.len() - 8 * (100 - 17);
    negative[at..at + 8].copy_from_slice(&(-3i64).to_le_bytes());
    let negative_path = dir.path().join("negative.index");
    std::fs::write(&negative_path, &negative)?;
    // Labels naming an id the index lacks.
    let stray = dir.path().join("stray.jsonl");
    std::fs::write(
        &stray,
        "{\"id\": 17, \"a\": 1}\n\n{\"id\": 500, \"a\": 2}\n",
    )?;
    let bad_json = dir.path().join("bad.jsonl");
    std::fs::write(&bad_json, "{\"id\": 0}\n{\"id\": 1, \n")?;

    let flat_l2 = files.join("flat_l2.index");
    let cases: Vec<(&Path, BridgeOptions, Vec<&str>)> = vec![
        (
            &truncated,
            BridgeOptions::default(),
            vec!["truncated.index", "truncated"],
        ),
        (
            &magic,
            BridgeOptions::default(),
            vec!["magic.index", "\"IwFl\"", "does not read"],
        ),
        (
            &negative_path,
            BridgeOptions::default(),
            vec!["position 17", "id -3"],
        ),
        (
            &flat_l2,
            BridgeOptions {
                metric: Some(Metric::Dot),
                ..BridgeOptions::default()
            },
            vec!["flat_l2.index", "by L2, not dot"],
        ),
        (
            &flat_l2,
            BridgeOptions {
                metadata_file: Some(stray.clone()),
                ..BridgeOptions::default()
            },
            vec!["stray.jsonl line 3", "id 500"],
        ),
        (
            &flat_l2,
            BridgeOptions {
                metadata_file: Some(bad_json.clone()),
                ..BridgeOptions::default()
            },
            vec!["bad.jsonl line 2", "not JSON"],
        ),
    ];
    for (path, options, expected) in cases {
        let result = run(
            &node,
            &format!("faiss:{}", path.display()),
            "ipvec:broken",
            options,
        )
        .await;
        let message = format!("{:#}", result.err().context("a broken import succeeded")?);
        for part in expected {
            ensure!(message.contains(part), "{message:?} does not say {part:?}");
        }
        ensure!(
            collection_names(&node).await?.is_empty(),
            "{message}: a collection stayed"
        );
    }
    node.close().await?;
    Ok(())
}
