//! Backups end to end, with the real binary on real repositories: a full backup and two
//! incrementals across writes, each version restored into a fresh repository with its root
//! and points; a flipped byte found by `verify` and refused by `restore` before anything is
//! stored; a daemon killed (SIGKILL) in the middle of a scheduled backup leaves a chain that
//! verifies and that the next backup continues.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::*;
use serde_json::{json, Value};

/// Points by id (as JSON), with their vectors and metadata.
type Points = BTreeMap<String, (Vec<f32>, Option<Value>)>;

const DIM: usize = 16;

/// JSON lines of points `ids` with vectors from `seed`.
fn points_file(path: &Path, ids: std::ops::Range<u64>, seed: u64) {
    let vectors = seeded_vectors(seed, (ids.end - ids.start) as usize, DIM);
    let lines: String = ids
        .zip(vectors)
        .map(|(id, v)| {
            json!({ "id": id, "vector": v, "metadata": { "seed": seed } }).to_string() + "\n"
        })
        .collect();
    std::fs::write(path, lines).unwrap();
}

/// Every point of collection `name`, read through the repository (no daemon may run).
fn read_points(repo: &Path, name: &str) -> Points {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let opened = ipvec_node::repo::Repo::open(repo).await.unwrap();
        let config = opened.config().clone();
        let node = ipvec_node::ops::Node::new(opened, config);
        let mut points = Points::new();
        let mut cursor = None;
        loop {
            let page = node.points_page(name, cursor, 1000).await.unwrap();
            for p in page.points {
                points.insert(
                    serde_json::to_string(&p.id).unwrap(),
                    (p.vector, p.metadata),
                );
            }
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        node.close().await.unwrap();
        points
    })
}

/// The store's block count and bytes, and the pins (no daemon may run).
fn store_state(repo: &Path) -> (u64, u64, Vec<(String, String)>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let opened = ipvec_node::repo::Repo::open(repo).await.unwrap();
        let config = opened.config().clone();
        let node = ipvec_node::ops::Node::new(opened, config);
        let info = node.node_info().await.unwrap();
        let mut pins: Vec<(String, String)> = node
            .pins()
            .await
            .unwrap()
            .pins
            .into_iter()
            .map(|p| (p.name, p.cid))
            .collect();
        pins.sort();
        node.close().await.unwrap();
        (info.store.blocks, info.store.bytes, pins)
    })
}

/// `collection info` as JSON.
fn info(repo: &Path, name: &str) -> Value {
    json_of(&ok(repo, &["--json", "collection", "info", name]))
}

/// `backup create` as JSON.
fn create(repo: &Path, dir: &Path) -> Value {
    json_of(&ok(
        repo,
        &["--json", "backup", "create", dir.to_str().unwrap()],
    ))
}

fn manifest(dir: &Path) -> Value {
    json_of(&std::fs::read_to_string(dir.join("backup.json")).unwrap())
}

struct Version {
    root: String,
    points: u64,
    contents: Points,
}

#[test]
fn full_and_incremental_backups_restore_every_version() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let backups = work.path().join("backups");
    ok(&repo, &["init"]);
    // One shard: its tree holds the ids in order, so a change to a range of ids rewrites
    // the few leaves that hold them.
    let dim = DIM.to_string();
    let make_collection = [
        "collection",
        "create",
        "c",
        "--dim",
        &dim,
        "--metric",
        "l2",
        "--shards",
        "1",
        // A sparse graph: the restores rebuild it three times in a debug build.
        "--m",
        "8",
        "--ef-construction",
        "16",
    ];
    ok(&repo, &make_collection);
    let file = work.path().join("points.jsonl");
    let n = 20_000u64;
    points_file(&file, 0..n, 1);
    ok(&repo, &["add", "c", file.to_str().unwrap()]);

    let mut versions = Vec::new();
    let snapshot = |repo: &Path| {
        let i = info(repo, "c");
        Version {
            root: i["root"].as_str().unwrap().to_string(),
            points: i["points"].as_u64().unwrap(),
            contents: read_points(repo, "c"),
        }
    };
    let full = create(&repo, &backups);
    assert_eq!(full["collections"][0]["link"]["kind"], "full", "{full}");
    versions.push(snapshot(&repo));
    assert_eq!(versions[0].points, n);

    // 1% of the points rewritten, 1% added.
    points_file(&file, 0..n / 100, 2);
    ok(&repo, &["add", "c", file.to_str().unwrap()]);
    points_file(&file, n..n + n / 100, 3);
    ok(&repo, &["add", "c", file.to_str().unwrap()]);
    let first = create(&repo, &backups);
    assert_eq!(
        first["collections"][0]["link"]["kind"], "incremental",
        "{first}"
    );
    versions.push(snapshot(&repo));

    // Nothing written since: nothing to back up.
    let same = create(&repo, &backups);
    assert!(same["collections"][0]["link"].is_null(), "{same}");

    // Some deleted, some rewritten in the middle.
    let ids: Vec<String> = (100..150).map(|i| i.to_string()).collect();
    let mut args = vec!["delete", "c"];
    args.extend(ids.iter().map(String::as_str));
    ok(&repo, &args);
    points_file(&file, n / 2..n / 2 + 50, 4);
    ok(&repo, &["add", "c", file.to_str().unwrap()]);
    let second = create(&repo, &backups);
    assert_eq!(
        second["collections"][0]["link"]["kind"], "incremental",
        "{second}"
    );
    versions.push(snapshot(&repo));
    assert_eq!(versions[2].points, n + n / 100 - 50);

    // The manifest: one chain, full then two incrementals, each naming its version.
    let m = manifest(&backups);
    assert_eq!(m["format"], 1);
    let links = m["collections"]["c"]["chains"][0]["links"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(links.len(), 3, "{m}");
    for (link, version) in links.iter().zip(&versions) {
        assert_eq!(link["version_root"], version.root.as_str());
        assert_eq!(link["points"], version.points);
    }
    let bytes = |l: &Value| l["bytes"].as_u64().unwrap();
    let blocks = |l: &Value| l["blocks"].as_u64().unwrap();
    assert!(bytes(&links[1]) < bytes(&links[0]) / 2, "{m}");
    assert!(bytes(&links[2]) < bytes(&links[0]) / 2, "{m}");
    // The share of blocks changed, against what the incremental weighs.
    for (i, link) in links.iter().enumerate().skip(1) {
        println!(
            "incremental {i}: {} of the full's bytes ({} blocks of {}: {:.1}% of the blocks) after changing ~{}% of the points",
            format_args!("{:.1}%", 100.0 * bytes(link) as f64 / bytes(&links[0]) as f64),
            blocks(link),
            blocks(&links[0]),
            100.0 * blocks(link) as f64 / blocks(&links[0]) as f64,
            if i == 1 { 2.0 } else { 0.5 }
        );
    }
    ok(&repo, &["backup", "verify", backups.to_str().unwrap()]);

    // The repository is lost; every version comes back, with its root and its points.
    std::fs::remove_dir_all(&repo).unwrap();
    for (i, version) in versions.iter().enumerate() {
        let fresh = work.path().join(format!("restored-{i}"));
        ok(&fresh, &["init"]);
        let restored = json_of(&ok(
            &fresh,
            &[
                "--json",
                "backup",
                "restore",
                backups.to_str().unwrap(),
                "--at",
                &version.root,
            ],
        ));
        assert_eq!(restored["collections"][0]["root"], version.root.as_str());
        let now = info(&fresh, "c");
        assert_eq!(now["root"], version.root.as_str(), "version {i}");
        assert_eq!(now["points"], version.points, "version {i}");
        assert_eq!(read_points(&fresh, "c"), version.contents, "version {i}");
        // Pinned like an imported collection: gc keeps it whole.
        ok(&fresh, &["gc"]);
        assert_eq!(
            read_points(&fresh, "c"),
            version.contents,
            "version {i} after gc"
        );
    }
    // Without --at: the newest.
    let latest = work.path().join("restored-latest");
    ok(&latest, &["init"]);
    ok(
        &latest,
        &[
            "backup",
            "restore",
            backups.to_str().unwrap(),
            "--collection",
            "c",
        ],
    );
    assert_eq!(info(&latest, "c")["root"], versions[2].root.as_str());
    // Restoring over an existing collection is refused.
    let err = fails(&latest, &["backup", "restore", backups.to_str().unwrap()]);
    assert!(
        err.contains("exists") && err.contains("collection drop c"),
        "{err}"
    );

    // A flipped byte in the first incremental: inside its last block.
    let broken = work.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for entry in std::fs::read_dir(&backups).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), broken.join(entry.file_name())).unwrap();
    }
    let damaged = links[1]["file"].as_str().unwrap();
    let path = broken.join(damaged);
    let mut data = std::fs::read(&path).unwrap();
    let at = data.len() - 10;
    data[at] ^= 0x40;
    std::fs::write(&path, data).unwrap();
    let out = ipvec(
        &latest,
        &["backup", "verify", broken.to_str().unwrap()],
        &[],
    );
    assert!(!out.status.success(), "verify must fail on a damaged file");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(damaged), "verify names the file: {err}");
    assert!(err.contains("block bafy"), "verify names the block: {err}");
    assert!(
        err.contains("--full") || err.contains("--at"),
        "verify says what to do: {err}"
    );
    println!("verify said:\n{err}");

    // Restore refuses before it stores anything.
    let target = work.path().join("untouched");
    ok(&target, &["init"]);
    ok(&target, &["collection", "create", "other", "--dim", "4"]);
    ok(
        &target,
        &["add", "other", write_small(work.path()).to_str().unwrap()],
    );
    let before = store_state(&target);
    let err = fails(&target, &["backup", "restore", broken.to_str().unwrap()]);
    assert!(err.contains(damaged) && err.contains("block bafy"), "{err}");
    assert!(err.contains("nothing was stored"), "{err}");
    assert_eq!(
        store_state(&target),
        before,
        "the refused restore touched the store"
    );
    let list = json_of(&ok(&target, &["--json", "collection", "list"]));
    assert_eq!(list.to_string().matches("\"name\"").count(), 1, "{list}");
    // The full alone is still good: the version before the damage restores.
    ok(
        &target,
        &[
            "backup",
            "restore",
            broken.to_str().unwrap(),
            "--at",
            &versions[0].root,
        ],
    );
    assert_eq!(info(&target, "c")["root"], versions[0].root.as_str());
}

fn write_small(dir: &Path) -> PathBuf {
    let path = dir.join("small.jsonl");
    std::fs::write(&path, points_jsonl(0..50)).unwrap();
    path
}

/// A `.npy` file of `rows` × `dim` float32 values from `seed`.
fn npy_file(path: &Path, rows: usize, dim: usize, seed: u64) {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    for row in seeded_vectors(seed, rows, dim) {
        for x in row {
            out.extend(x.to_le_bytes());
        }
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn a_daemon_killed_during_a_scheduled_backup_leaves_a_chain_that_goes_on() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let backups = work.path().join("backups");
    ok(&repo, &["init"]);
    let dim = 64;
    let rows = 60_000;
    ok(
        &repo,
        &[
            "collection",
            "create",
            "big",
            "--dim",
            &dim.to_string(),
            "--metric",
            "l2",
            // A sparse graph: the test is about the backup, and a debug build adds 60,000
            // points this way in about a tenth of the default graph's time.
            "--m",
            "8",
            "--ef-construction",
            "16",
        ],
    );
    let file = work.path().join("big.npy");
    npy_file(&file, rows, dim, 7);
    ok(&repo, &["add", "big", file.to_str().unwrap()]);
    // The chain's first link, by hand.
    create(&repo, &backups);
    // A third of the points rewritten: the next backup has most leaves to write.
    npy_file(&file, rows / 3, dim, 8);
    ok(&repo, &["add", "big", file.to_str().unwrap()]);
    let written = info(&repo, "big");

    let dir = backups.to_str().unwrap();
    let mut daemon = Daemon::spawn_with(
        &repo,
        &[("IPVEC_BACKUP_DIR", dir), ("IPVEC_BACKUP_EVERY", "1s")],
        &[],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Kill it once the backup shows as a job, or its temporary file appears.
    let started = Instant::now();
    let mut seen_job = false;
    loop {
        let tmp = std::fs::read_dir(&backups)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"));
        if !seen_job {
            seen_job = runtime.block_on(async {
                let Ok(response) = daemon
                    .request(reqwest::Method::GET, "/v1/jobs")
                    .send()
                    .await
                else {
                    return false;
                };
                let jobs: Value = response.json().await.unwrap_or(Value::Null);
                jobs.to_string().contains("\"backup\"")
            });
        }
        if seen_job || tmp {
            break;
        }
        let links = manifest(&backups)["collections"]["big"]["chains"][0]["links"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(
            links, 1,
            "the scheduled backup ended before the test saw it run; make the collection larger"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no scheduled backup started"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut child = daemon.child.take().unwrap();
    signal("KILL", child.id());
    child.wait().unwrap();
    println!("killed during the backup (job listed: {seen_job})");

    // Whatever the kill interrupted, the directory verifies.
    let verified = ok(&repo, &["backup", "verify", dir]);
    assert!(verified.contains("all good"), "{verified}");
    // The next backup continues the chain, and the half-written file is gone.
    let next = create(&repo, &backups);
    let m = manifest(&backups);
    let chains = m["collections"]["big"]["chains"].as_array().unwrap();
    assert_eq!(chains.len(), 1, "{m}");
    let links = chains[0]["links"].as_array().unwrap();
    assert_eq!(links.last().unwrap()["kind"], "incremental", "{next}");
    assert_eq!(links.last().unwrap()["version_root"], written["root"]);
    assert!(std::fs::read_dir(&backups)
        .unwrap()
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().ends_with(".tmp")));
    ok(&repo, &["backup", "verify", dir]);
    let fresh = work.path().join("fresh");
    ok(&fresh, &["init"]);
    ok(&fresh, &["backup", "restore", dir]);
    let restored = info(&fresh, "big");
    assert_eq!(restored["root"], written["root"]);
    assert_eq!(restored["points"], rows as u64);
}

#[test]
fn the_daemon_backs_up_on_schedule_and_prunes_whole_chains() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let backups = work.path().join("backups");
    ok(&repo, &["init"]);
    ok(&repo, &["collection", "create", "c", "--dim", "4"]);
    let dir = backups.to_str().unwrap();
    let daemon = Daemon::start(
        &repo,
        &[
            ("IPVEC_BACKUP_DIR", dir),
            ("IPVEC_BACKUP_EVERY", "1"),
            ("IPVEC_BACKUP_KEEP", "2"),
            ("IPVEC_STORAGE_COMMIT_INTERVAL_MS", "50"),
        ],
    );
    let small = work.path().join("p.jsonl");
    let links_of = |m: &Value| -> Vec<usize> {
        m["collections"]["c"]["chains"]
            .as_array()
            .map(|chains| {
                chains
                    .iter()
                    .map(|c| c["links"].as_array().unwrap().len())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut roots = Vec::new();
    let mut last_version = info(&repo, "c")["version"].as_u64().unwrap();
    for round in 0..5u64 {
        std::fs::write(&small, points_jsonl(round * 10..round * 10 + 10)).unwrap();
        // Through the daemon.
        ok(&repo, &["add", "c", small.to_str().unwrap()]);
        let root = loop {
            let i = info(&repo, "c");
            // Committed into a new version (the daemon commits every 50 ms).
            let version = i["version"].as_u64().unwrap();
            if i["points"] == (round + 1) * 10 && version > last_version {
                last_version = version;
                break i["root"].as_str().unwrap().to_string();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        eventually("the scheduled backup of the new version", || {
            backups.join("backup.json").exists()
                && manifest(&backups)
                    .to_string()
                    .contains(&format!("\"{root}\""))
        });
        roots.push(root);
        let m = manifest(&backups);
        let shape = links_of(&m);
        // At most 2 links a chain; every kept chain starts with a full one; at least 2 kept.
        assert!(shape.iter().all(|&l| (1..=2).contains(&l)), "{shape:?}");
        assert!(
            shape.iter().sum::<usize>() >= 2.min(round as usize + 1),
            "{shape:?}"
        );
        for chain in m["collections"]["c"]["chains"].as_array().unwrap() {
            assert_eq!(chain["links"][0]["kind"], "full");
        }
    }
    // Killed, maybe between a manifest that drops a chain and the removal of its files: the
    // next backup (nothing new to write) removes what the manifest does not name.
    drop(daemon);
    create(&repo, &backups);
    // Only the files the manifest names are left, and they verify.
    let m = manifest(&backups);
    let named: Vec<String> = m["collections"]["c"]["chains"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            c["links"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["file"].as_str().unwrap().to_string())
        })
        .collect();
    let mut cars: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".car"))
        .collect();
    cars.sort();
    let mut sorted = named.clone();
    sorted.sort();
    assert_eq!(cars, sorted);
    assert!(links_of(&m).len() <= 2, "{m}");
    ok(&repo, &["backup", "verify", dir]);
    // The newest version restores.
    let fresh = work.path().join("fresh");
    ok(&fresh, &["init"]);
    ok(&fresh, &["backup", "restore", dir]);
    assert_eq!(info(&fresh, "c")["root"], roots.last().unwrap().as_str());
}
