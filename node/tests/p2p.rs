//! The peer-to-peer layer between real daemons on loopback: identity, connections,
//! bootstrap, provider records in the DHT, replication by collection id, following gossiped
//! heads with small deltas, and a replica killed or stopped mid-fetch (its link stalled by a
//! relay in the test) that resumes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::{pair::*, *};
use serde_json::Value;

#[test]
fn daemons_connect_bootstrap_and_find_providers_in_the_dht() {
    // A hosts a collection.
    let a = new_repo();
    ok(
        &a.path,
        &[
            "collection",
            "create",
            "shared",
            "--dim",
            "4",
            "--shards",
            "2",
        ],
    );
    let _da = Daemon::start(&a.path, &[]);
    let id_a = json_of(&ok(&a.path, &["--json", "id"]));
    let peer_a = id_a["peer_id"].as_str().unwrap().to_string();
    let addr_a = id_a["addresses"][0].as_str().unwrap().to_string();
    assert!(
        addr_a.starts_with("/ip4/127.0.0.1/tcp/") && addr_a.ends_with(&format!("/p2p/{peer_a}")),
        "{addr_a}"
    );

    // B knows only A's address, as a bootstrap peer.
    let b = new_repo();
    let _db = Daemon::start_with(&b.path, &[], &["--bootstrap", &addr_a]);
    let peer_b = peer_of(&b.path);
    eventually("B connected to A", || peers_of(&b.path).contains(&peer_a));
    eventually("A sees B", || peers_of(&a.path).contains(&peer_b));
    let peers: Value = json_of(&ok(&b.path, &["--json", "peers"]));
    let a_seen = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == peer_a.as_str())
        .unwrap();
    assert_eq!(a_seen["direction"], "outbound");
    eventually("identify told B A's protocols", || {
        json_of(&ok(&b.path, &["--json", "peers"]))["peers"][0]["protocols"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p == "/ipvec/kad/1.0.0"))
    });

    // The collection and its shards are announced: B finds A as their provider.
    let info = json_of(&ok(&a.path, &["--json", "collection", "info", "shared"]));
    let collection = info["id"].as_str().unwrap();
    let keys = [
        ipvec_protocol::announce::collection_key(collection),
        ipvec_protocol::announce::shard_key(collection, 0),
        ipvec_protocol::announce::shard_key(collection, 1),
    ];
    for key in keys {
        eventually("B finds A providing the key", || {
            let found = json_of(&ok(
                &b.path,
                &["--json", "dht", "providers", &key.to_string()],
            ));
            found["providers"].as_array().unwrap().iter().any(|p| {
                p["peer_id"] == peer_a.as_str()
                    && p["addresses"].as_array().is_some_and(|a| !a.is_empty())
            })
        });
    }
    let unknown = ipvec_protocol::announce::collection_key("nobody");
    let found = json_of(&ok(
        &b.path,
        &["--json", "dht", "providers", &unknown.to_string()],
    ));
    assert_eq!(found["providers"], serde_json::json!([]));

    // C connects to B by hand; B's DHT then tells C about A's records too.
    let c = new_repo();
    let _dc = Daemon::start(&c.path, &[]);
    let addr_b = address_of(&b.path);
    let connected = json_of(&ok(&c.path, &["--json", "connect", &addr_b]));
    assert_eq!(connected["peer_id"], peer_b.as_str());
    eventually("C finds A through B", || {
        let found = json_of(&ok(
            &c.path,
            &["--json", "dht", "providers", &keys[0].to_string()],
        ));
        found["providers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["peer_id"] == peer_a.as_str())
    });

    // Bad input: a clear error, the daemon keeps serving.
    let err = fails(&c.path, &["connect", "not-an-address"]);
    assert!(err.contains("is not a multiaddress"), "{err}");
    let err = fails(&c.path, &["connect", "/ip4/127.0.0.1/tcp/1"]);
    assert!(
        err.contains("cannot connect to /ip4/127.0.0.1/tcp/1"),
        "{err}"
    );
    let err = fails(&c.path, &["dht", "providers", "nonsense"]);
    assert!(err.contains("not a valid CID"), "{err}");
    assert!(peers_of(&c.path).contains(&peer_b));
}

#[test]
fn provider_records_are_republished_on_schedule_and_expire_once_withdrawn() {
    // Records live 6 s and are republished every 2 s (defaults: 48 h and 1 h).
    let short = [
        ("IPVEC_P2P_REPROVIDE_INTERVAL_SECS", "2"),
        ("IPVEC_P2P_PROVIDER_TTL_SECS", "6"),
    ];
    let a = new_repo();
    filled_collection(&a.path, "kept", 10);
    let da = Daemon::start(&a.path, &short);
    let peer_a = peer_of(&a.path);
    let addr_a = address_of(&a.path);
    let b = new_repo();
    let db = Daemon::start_with(&b.path, &short, &["--bootstrap", &addr_a]);
    let key = ipvec_protocol::announce::collection_key(
        json_of(&ok(&a.path, &["--json", "collection", "info", "kept"]))["id"]
            .as_str()
            .unwrap(),
    )
    .to_string();
    let providers_seen_by_b = || -> Vec<String> {
        json_of(&ok(&b.path, &["--json", "dht", "providers", &key]))["providers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["peer_id"].as_str().unwrap().to_string())
            .collect()
    };
    eventually("B finds A providing the collection", || {
        providers_seen_by_b().contains(&peer_a)
    });
    let found = Instant::now();

    // Nothing is written, yet A publishes its records again on schedule and B receives
    // them: at least two more of each.
    let (republished, received) = (
        total_of(&da, "ipvec_dht", "republished"),
        total_of(&db, "ipvec_dht", "provider_records_received"),
    );
    eventually("A republishes its records and B receives them", || {
        total_of(&da, "ipvec_dht", "republished") - republished >= 2.0
            && total_of(&db, "ipvec_dht", "provider_records_received") - received >= 2.0
    });
    // Longer than a record lives: B still finds A.
    if let Some(rest) = Duration::from_secs(7).checked_sub(found.elapsed()) {
        std::thread::sleep(rest);
    }
    eprintln!(
        "in {:.1} s: A republished {} times, B received {} records",
        found.elapsed().as_secs_f64(),
        total_of(&da, "ipvec_dht", "republished") - republished,
        total_of(&db, "ipvec_dht", "provider_records_received") - received
    );
    assert!(providers_seen_by_b().contains(&peer_a));

    // Dropped, the collection is withdrawn: A stops naming itself, and the copies it placed
    // on B expire.
    ok(&a.path, &["collection", "drop", "kept"]);
    eventually("A's records expire once withdrawn", || {
        !providers_seen_by_b().contains(&peer_a)
    });
}

#[test]
fn without_a_daemon_id_works_and_peers_say_what_to_do() {
    let r = new_repo();
    let id = json_of(&ok(&r.path, &["--json", "id"]));
    assert!(id["peer_id"].as_str().unwrap().starts_with("12D3KooW"));
    assert_eq!(id["addresses"], serde_json::json!([]));
    let err = fails(&r.path, &["peers"]);
    assert!(err.contains("start `ipvec daemon`"), "{err}");
    let err = ipvec(
        &r.path,
        &[
            "daemon",
            "--api-listen",
            "127.0.0.1:0",
            "--bootstrap",
            "/ip4/127.0.0.1/tcp/1",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&err.stderr);
    assert!(err.contains("/p2p/<peer id>"), "{err}");
}

#[test]
fn bitswap_fetches_a_whole_dag_checks_it_and_skips_what_it_has() {
    let a = new_repo();
    ok(&a.path, &["collection", "create", "big", "--dim", "4"]);
    let file = a.path.parent().unwrap().join("points.jsonl");
    std::fs::write(&file, points_jsonl(0..3_000)).unwrap();
    ok(&a.path, &["add", "big", file.to_str().unwrap()]);
    let root = json_of(&ok(&a.path, &["--json", "collection", "info", "big"]))["root"]
        .as_str()
        .unwrap()
        .to_string();
    let _da = Daemon::start(&a.path, &[]);
    let addr_a = address_of(&a.path);

    let b = new_repo();
    let _db = Daemon::start(&b.path, &[]);
    let fetched = json_of(&ok(
        &b.path,
        &["--json", "dag", "fetch", &root, "--from", &addr_a],
    ));
    let blocks = fetched["blocks"].as_u64().unwrap();
    assert!(blocks > 3, "{fetched}");
    assert_eq!(
        fetched["fetched"].as_u64(),
        Some(blocks),
        "everything was new to B"
    );
    assert!(fetched["bytes"].as_u64().unwrap() > 3_000 * 16);
    // Pinned, and the same DAG byte for byte.
    let pins = ok(&b.path, &["pin", "ls"]);
    assert!(pins.contains(&root), "{pins}");
    let dir = b.path.parent().unwrap();
    ok(
        &a.path,
        &[
            "dag",
            "export",
            &root,
            "-o",
            dir.join("a.car").to_str().unwrap(),
        ],
    );
    ok(
        &b.path,
        &[
            "dag",
            "export",
            &root,
            "-o",
            dir.join("b.car").to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(dir.join("a.car")).unwrap(),
        std::fs::read(dir.join("b.car")).unwrap()
    );

    // Again, from the connected peers: nothing new to fetch.
    let again = json_of(&ok(&b.path, &["--json", "dag", "fetch", &root]));
    assert_eq!(
        (again["blocks"].as_u64(), again["fetched"].as_u64()),
        (Some(blocks), Some(0))
    );

    // A block nobody has: a clear error, nothing pinned.
    let missing = ipvec_protocol::cid::block_cid(ipvec_protocol::cid::RAW, b"nobody has this");
    let err = fails(
        &b.path,
        &["dag", "fetch", &missing.to_string(), "--from", &addr_a],
    );
    assert!(err.contains("no peer in the session has block"), "{err}");
    assert!(!ok(&b.path, &["pin", "ls"]).contains(&missing.to_string()));
}

#[test]
fn replicas_fetch_a_collection_by_id_through_the_dht_and_catch_up() {
    // Three replicas wanted: A and the two that will fetch it. B knows A only as a bootstrap
    // peer; C knows only B.
    let WriterAndPeer {
        a,
        _da,
        info_a,
        id,
        b,
        db,
        ..
    } = writer_and_peer(&["--replication", "3"]);
    let addr_b = address_of(&b.path);
    let c = new_repo();
    let _dc = Daemon::start_with(&c.path, &[], &["--bootstrap", &addr_b]);
    eventually("C connected", || !peers_of(&c.path).is_empty());

    // The answer, whether or not a node's search cache gave it (a repeated search's is).
    let search = |r: &std::path::Path, name: &str| {
        let mut answer = json_of(&ok(
            r,
            &["--json", "search", name, "--vector", "3,1,-2,5", "-k", "10"],
        ));
        answer.as_object_mut().unwrap().remove("cached");
        answer
    };
    for replica in [&b.path, &c.path] {
        let fetched = json_of(&ok(replica, &["--json", "fetch", &id]));
        assert_eq!(fetched["id"], id.as_str());
        assert_eq!(
            fetched["root"], info_a["root"],
            "same root CID as the writer"
        );
        assert_eq!(fetched["points"], 2_000);
        assert_eq!(fetched["writable"], false);
        let info = json_of(&ok(replica, &["--json", "collection", "info", "films"]));
        assert_eq!(
            (info["root"].clone(), info["id"].clone()),
            (info_a["root"].clone(), info_a["id"].clone())
        );
    }
    // Replication state: A writes it and, once its DHT lookup has run, counts three
    // providers of its shard (itself, B and C); the replicas are caught up on the same shard.
    let info_of = |r: &std::path::Path| json_of(&ok(r, &["--json", "collection", "info", "films"]));
    eventually("A counts three replicas of its shard", || {
        let info = info_of(&a.path);
        info["replicas"] == 3 && info["shard_status"][0]["replicas"] == 3
    });
    let info = info_of(&a.path);
    assert_eq!(
        (info["state"].as_str(), info["lag"].as_u64()),
        (Some("writer"), Some(0))
    );
    // The manifest asks for what `collection create --replication` said; the text says
    // how many there are of how many wanted.
    assert_eq!(info["replication_factor"], 3);
    let text = ok(&a.path, &["collection", "info", "films"]);
    assert!(text.contains("replicas:     3 of 3"), "{text}");
    assert!(info["announced_secs_ago"].as_u64().is_some(), "{info}");
    for replica in [&b.path, &c.path] {
        let r = info_of(replica);
        assert_eq!(
            (r["state"].as_str(), r["lag"].as_u64()),
            (Some("caught up"), Some(0))
        );
        assert_eq!(r["shard_status"], {
            let mut shards = info["shard_status"].clone();
            // Provider counts are each node's own view; roots and points must agree.
            for s in shards.as_array_mut().unwrap() {
                s["replicas"] = r["shard_status"][0]["replicas"].clone();
            }
            shards
        });
        assert_eq!(r["shard_status"][0]["points"], 2_000);
    }
    // Per-peer Bitswap counts: B received blocks from A, and A sent them to B.
    let peer_entry = |r: &std::path::Path, peer: &str| {
        json_of(&ok(r, &["--json", "peers"]))["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["peer_id"] == peer)
            .cloned()
            .unwrap_or_else(|| panic!("{peer} not among the peers"))
    };
    let peer_a = peer_of(&a.path);
    let peer_b = peer_of(&b.path);
    let from_a = peer_entry(&b.path, &peer_a)["blocks_received"]
        .as_u64()
        .unwrap();
    assert!(from_a > 0, "B received no blocks from A");
    assert_eq!(peer_entry(&b.path, &peer_a)["blocks_sent"], 0);
    assert!(
        peer_entry(&a.path, &peer_b)["blocks_sent"]
            .as_u64()
            .unwrap()
            >= from_a
    );

    // Same hits and scores; leaf CIDs too, as the trees are the same blocks.
    let hits_a = search(&a.path, "films");
    assert_eq!(search(&b.path, "films"), hits_a);
    assert_eq!(search(&c.path, "films"), hits_a);
    // Replicas announce it too: C now finds B among the providers.
    let key = ipvec_protocol::announce::collection_key(&id).to_string();
    eventually("C sees B providing the collection", || {
        json_of(&ok(&c.path, &["--json", "dht", "providers", &key]))["providers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["peer_id"] == peer_b.as_str())
    });

    // A writes 20 points and commits: B and C follow the gossiped head by themselves,
    // fetching only blocks they lack.
    let before = bitswap_total(&db, "bytes_received");
    let more = a.path.parent().unwrap().join("more.jsonl");
    std::fs::write(&more, points_jsonl(2_000..2_020)).unwrap();
    ok(&a.path, &["add", "films", more.to_str().unwrap()]);
    let log = json_of(&ok(&a.path, &["--json", "collection", "log", "films"]));
    let new_root = log["versions"][0]["root"].as_str().unwrap().to_string();
    assert_ne!(new_root, info_a["root"].as_str().unwrap());
    for replica in [&b.path, &c.path] {
        eventually("the replica follows the new head", || {
            json_of(&ok(replica, &["--json", "collection", "info", "films"]))["root"]
                == new_root.as_str()
        });
        let r = info_of(replica);
        assert_eq!(
            (r["state"].as_str(), r["lag"].as_u64()),
            (Some("caught up"), Some(0))
        );
        assert_eq!(r["version"], info_of(&a.path)["version"]);
        assert_eq!(search(replica, "films"), search(&a.path, "films"));
    }
    let exported = json_of(&ok(
        &a.path,
        &[
            "--json",
            "dag",
            "export",
            &new_root,
            "-o",
            a.path.parent().unwrap().join("v2.car").to_str().unwrap(),
        ],
    ));
    let moved = bitswap_total(&db, "bytes_received") - before;
    let total = exported["bytes"].as_f64().unwrap();
    assert!(
        moved > 0.0 && moved < total,
        "B fetched {moved} bytes of a {total}-byte version"
    );
    // An explicit fetch now has nothing to move.
    let again = json_of(&ok(&b.path, &["--json", "fetch", &id]));
    assert_eq!(
        (again["root"].as_str(), again["points"].as_u64()),
        (Some(new_root.as_str()), Some(2_020))
    );

    // Unknown collection, and a writer fetching its own: clear answers.
    let err = fails(
        &c.path,
        &[
            "fetch",
            "12D3KooWGzBa6MmMKvSzvZpn1h6Si4q8nrRA4AmBxnRaSkkTcXZh",
        ],
    );
    assert!(
        err.contains("no reachable peer provides collection"),
        "{err}"
    );
}

/// A 2-D float32 `.npy` file of `rows` × `dim` values that differ from row to row.
fn write_npy(path: &std::path::Path, rows: usize, dim: usize, seed: usize) {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    // Magic, version 1.0, header length; the header padded with spaces to a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    for row in 0..rows {
        for i in 0..dim {
            let x = ((row * 31 + i * 17 + seed) % 101) as f32 / 10.0 + (row % 7) as f32;
            bytes.extend(x.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).unwrap();
}

/// A Bitswap total of a daemon's `/metrics`.
fn bitswap_total(daemon: &Daemon, kind: &str) -> f64 {
    total_of(daemon, "ipvec_bitswap", kind)
}

/// A total by kind (`metric{kind="…"}`) of a daemon's `/metrics`.
fn total_of(daemon: &Daemon, metric: &str, kind: &str) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scrape = rt.block_on(daemon.metrics());
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && s.labels.get("kind") == Some(kind))
        .map_or(0.0, |s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
}

/// A TCP relay in front of a daemon's libp2p address that passes everything towards the
/// daemon but at most `budget` bytes back, then holds the rest: the connection stays open and
/// the dialer's transfer stalls part-way, however large the loopback socket buffers are (a
/// stopped process's buffered bytes still arrive). Returns the relay's address for `--from`
/// (the daemon's peer id, so the handshake is the daemon's) and the bytes still to pass.
fn stalling_link(
    address: &str,
    budget: usize,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let parts: Vec<&str> = address.split('/').collect();
    assert!(
        parts.len() == 7 && parts[1] == "ip4" && parts[3] == "tcp" && parts[5] == "p2p",
        "not a /ip4/…/tcp/…/p2p/… address: {address}"
    );
    let target = format!("{}:{}", parts[2], parts[4]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay = format!(
        "/ip4/127.0.0.1/tcp/{}/p2p/{}",
        listener.local_addr().unwrap().port(),
        parts[6]
    );
    let left = std::sync::Arc::new(AtomicUsize::new(budget));
    let remaining = left.clone();
    std::thread::spawn(move || {
        for dialer in listener.incoming() {
            let Ok(mut dialer) = dialer else { return };
            let Ok(mut daemon) = TcpStream::connect(&target) else {
                return;
            };
            let (mut to_daemon, mut from_dialer) =
                (daemon.try_clone().unwrap(), dialer.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_dialer, &mut to_daemon);
                // The dialer closed (or died): so does the link, as a killed process's
                // connections close.
                let _ = to_daemon.shutdown(std::net::Shutdown::Both);
            });
            let left = left.clone();
            std::thread::spawn(move || {
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    // Take up to a buffer's worth of what is left; give back what is not read.
                    let chunk = buffer.len();
                    let room = left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| {
                            Some(l.saturating_sub(chunk))
                        })
                        .unwrap()
                        .min(chunk);
                    if room == 0 {
                        // Spent: keep both sockets open and pass nothing more.
                        loop {
                            std::thread::park();
                        }
                    }
                    let Ok(n) = daemon.read(&mut buffer[..room]) else {
                        return;
                    };
                    left.fetch_add(room - n, Ordering::SeqCst);
                    if n == 0 || dialer.write_all(&buffer[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (relay, remaining)
}

/// `ipvec fetch ID --from ADDRESS` on `repo`'s daemon, running in the background.
fn fetch_in_background(repo: &std::path::Path, id: &str, address: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_ipvec"))
        .arg("--repo")
        .arg(repo)
        .args(["fetch", id, "--from", address])
        .env_remove("IPVEC_PATH")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// A daemon serving collection "big" of 6,000 × 1024 (about 25 MB, a hundred leaves): long
/// enough to fetch that a fetch can be caught midway on loopback.
struct Served {
    a: TestRepo,
    da: Daemon,
    /// `collection info big` on A.
    info_a: Value,
    id: String,
    addr_a: String,
    /// Blocks of the version's DAG (the exported CAR holds them and the signed head).
    total: f64,
    /// Bytes of the exported CAR.
    bytes: f64,
}

fn served_big_collection() -> Served {
    let a = new_repo();
    ok(
        &a.path,
        &[
            "collection",
            "create",
            "big",
            "--dim",
            "1024",
            "--metric",
            "l2",
        ],
    );
    let npy = a.path.parent().unwrap().join("big.npy");
    write_npy(&npy, 6_000, 1024, 0);
    ok(&a.path, &["add", "big", npy.to_str().unwrap()]);
    let da = Daemon::start(&a.path, &[]);
    let info_a = json_of(&ok(&a.path, &["--json", "collection", "info", "big"]));
    let id = info_a["id"].as_str().unwrap().to_string();
    let addr_a = address_of(&a.path);
    // Blocks of the version's DAG: the exported CAR holds them and the signed head.
    let car = a.path.parent().unwrap().join("big.car");
    let exported = json_of(&ok(
        &a.path,
        &[
            "--json",
            "collection",
            "export",
            "big",
            "-o",
            car.to_str().unwrap(),
        ],
    ));
    let total = exported["blocks"].as_f64().unwrap() - 1.0;
    Served {
        a,
        da,
        info_a,
        id,
        addr_a,
        total,
        bytes: exported["bytes"].as_f64().unwrap(),
    }
}

/// A writer publishes its index with its versions once the collection holds enough points;
/// a new replica fetches that snapshot with the trees, loads it instead of building the graph
/// and answers exactly as the writer does (the same graph). A replica of a collection below
/// the threshold builds its index, as before.
#[test]
fn a_new_replica_loads_the_writers_index_snapshot() {
    let publish = [("IPVEC_STORAGE_INDEX_SNAPSHOT_MIN_POINTS", "1000")];
    let a = new_repo();
    for (name, n) in [("films", 2_000), ("small", 500)] {
        ok(
            &a.path,
            &["collection", "create", name, "--dim", "4", "--metric", "l2"],
        );
        let file = a.path.parent().unwrap().join(format!("{name}.jsonl"));
        std::fs::write(&file, points_jsonl(0..n)).unwrap();
        let out = ipvec(&a.path, &["add", name, file.to_str().unwrap()], &publish);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let da = Daemon::start(&a.path, &publish);
    let info =
        |r: &std::path::Path, name: &str| json_of(&ok(r, &["--json", "collection", "info", name]));
    let info_a = info(&a.path, "films");
    let snapshot = info_a["index_snapshot"]
        .as_str()
        .expect("a snapshot")
        .to_string();
    assert_eq!(info(&a.path, "small")["index_snapshot"], Value::Null);

    let b = new_repo();
    let _db = Daemon::start_with(&b.path, &[], &["--bootstrap", &address_of(&a.path)]);
    eventually("B connected", || !peers_of(&b.path).is_empty());
    for name in ["films", "small"] {
        let id = info(&a.path, name)["id"].as_str().unwrap().to_string();
        let fetched = json_of(&ok(&b.path, &["--json", "fetch", &id]));
        assert_eq!(fetched["root"], info(&a.path, name)["root"]);
    }
    let info_b = info(&b.path, "films");
    assert_eq!(info_b["index_source"], "snapshot", "{info_b}");
    assert_eq!(info_b["index_snapshot"], snapshot.as_str());
    assert_eq!(info(&b.path, "small")["index_source"], "built");
    let text = ok(&b.path, &["collection", "info", "films"]);
    assert!(
        text.contains("index:        loaded from the writer's published snapshot"),
        "{text}"
    );
    for vector in ["3,1,-2,5", "100,7,0.5,-3", "-40,2,9,11"] {
        let search = |r: &std::path::Path| {
            let mut answer = json_of(&ok(
                r,
                &[
                    "--json", "search", "films", "--vector", vector, "-k", "10", "--ef", "16",
                ],
            ));
            answer.as_object_mut().unwrap().remove("cached");
            answer
        };
        assert_eq!(search(&b.path), search(&a.path));
    }

    // 30 new points (1.5%): committed in a version that names the old snapshot, then, once
    // the writes stop, a version of its own with a new one. B follows both; a new replica C
    // loads the new snapshot.
    // The daemon first checks its snapshot (after a start it does not know how old it is):
    // the same bytes, no new version.
    eventually("A knows its snapshot is current", || {
        info(&a.path, "films")["index_snapshot_lag"] == 0
    });
    assert_eq!(info(&a.path, "films")["index_snapshot"], snapshot.as_str());
    let more = a.path.parent().unwrap().join("more.jsonl");
    std::fs::write(&more, points_jsonl(2_000..2_030)).unwrap();
    ok(&a.path, &["add", "films", more.to_str().unwrap()]);
    eventually("A publishes a new snapshot", || {
        info(&a.path, "films")["index_snapshot"].as_str() != Some(snapshot.as_str())
    });
    let info_a = info(&a.path, "films");
    // Both counted as operations of their own in the metrics.
    let scrape = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(da.metrics());
    let publish = [("operation", "publish_index"), ("collection", "films")];
    assert_eq!(sample(&scrape, "ipvec_operations", &publish), 2.0);
    eventually("B follows", || {
        info(&b.path, "films")["root"] == info_a["root"]
    });
    let c = new_repo();
    let _dc = Daemon::start_with(&c.path, &[], &["--bootstrap", &address_of(&a.path)]);
    eventually("C connected", || !peers_of(&c.path).is_empty());
    let fetched = json_of(&ok(
        &c.path,
        &["--json", "fetch", info_a["id"].as_str().unwrap()],
    ));
    assert_eq!(fetched["points"], 2_030);
    let info_c = info(&c.path, "films");
    assert_eq!(info_c["index_source"], "snapshot", "{info_c}");
    assert_eq!(info_c["index_snapshot"], info_a["index_snapshot"]);
}

#[test]
fn a_replica_killed_mid_fetch_resumes_without_refetching_what_it_has() {
    // A collection of about 25 MB (about a hundred leaves), so that a fetch takes a while even
    // on loopback and a 1% update touches few of its blocks.
    let Served {
        a,
        mut da,
        info_a,
        id,
        addr_a,
        total,
        bytes,
    } = served_big_collection();

    let b = new_repo();
    let mut db = Daemon::start(&b.path, &[]);
    // B fetches through a link that stalls after 8 MB (about a third of the DAG), so B is
    // caught mid-fetch, and B is killed outright.
    let (link, left) = stalling_link(&addr_a, 8 << 20);
    let mut fetch = fetch_in_background(&b.path, &id, &link);
    eventually("the link passes its 8 MB", || left.load(SeqCst) == 0);
    eventually("B receives blocks", || {
        bitswap_total(&db, "blocks_received") > 0.0
    });
    // (B takes in what the link passed before it is counted.)
    std::thread::sleep(Duration::from_millis(300));
    let before_kill = bitswap_total(&db, "blocks_received");
    signal("KILL", db.pid());
    let _ = db.child.take().unwrap().wait();
    let _ = fetch.wait();
    assert!(
        before_kill < total,
        "B had all {total} blocks before it was killed; the fetch was not interrupted"
    );

    // Restarted, B fetches again: it completes, receiving fewer blocks than the whole DAG.
    // Its index is rebuilt on one thread, in id order: A's graph (A wrote the points in id
    // order), so that HNSW answers compare equal below; more threads build other graphs.
    let db = Daemon::start(&b.path, &[("IPVEC_STORAGE_INDEX_BUILD_THREADS", "1")]);
    let fetched = json_of(&ok(&b.path, &["--json", "fetch", &id, "--from", &addr_a]));
    assert_eq!(fetched["root"], info_a["root"]);
    assert_eq!(fetched["points"], 6_000);
    let second = bitswap_total(&db, "blocks_received");
    eprintln!(
        "DAG of {total} blocks: {before_kill} received before the kill, {second} after the restart"
    );
    assert!(second > 0.0, "nothing left to fetch after the kill");
    assert!(
        second < total,
        "the restarted fetch received {second} of {total} blocks: it refetched what it had"
    );
    assert!(
        second + before_kill >= total,
        "{second} + {before_kill} blocks cannot make up a DAG of {total}"
    );
    let search = |r: &std::path::Path| {
        ok(
            r,
            &[
                "--json",
                "search",
                "big",
                "--vector",
                &vec!["1"; 1024].join(","),
                "-k",
                "5",
            ],
        )
    };
    assert_eq!(search(&b.path), search(&a.path));

    // A rewrites 1% of the vectors (ids 0..60, new values): B follows the gossiped head and
    // fetches at most 3% of the collection's bytes.
    let before = bitswap_total(&db, "bytes_received");
    let update = a.path.parent().unwrap().join("update.npy");
    write_npy(&update, 60, 1024, 50);
    ok(&a.path, &["add", "big", update.to_str().unwrap()]);
    let log = json_of(&ok(&a.path, &["--json", "collection", "log", "big"]));
    let new_root = log["versions"][0]["root"].as_str().unwrap().to_string();
    assert_ne!(new_root.as_str(), info_a["root"].as_str().unwrap());
    eventually("B follows the update", || {
        json_of(&ok(&b.path, &["--json", "collection", "info", "big"]))["root"] == new_root.as_str()
    });
    let moved = bitswap_total(&db, "bytes_received") - before;
    let size = bytes;
    eprintln!(
        "1% update: B fetched {moved} bytes of a {size}-byte collection ({:.2}%)",
        100.0 * moved / size
    );
    assert!(
        moved > 0.0 && moved <= 0.03 * size,
        "B fetched {moved} bytes for a 1% update of {size} bytes"
    );
    assert_eq!(search(&b.path), search(&a.path));
    da.stop();
}

/// Waits for `child` to exit (failing the test if it still runs after 20 s); its status.
fn exit_of(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} still runs 20 s after it was told to stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_daemon_stopped_mid_fetch_exits_cleanly_keeps_its_writes_and_resumes() {
    // A serves a collection of about 25 MB; B fetches it and holds a collection of its own.
    let Served {
        a: _a,
        mut da,
        info_a,
        id,
        addr_a,
        total,
        ..
    } = served_big_collection();

    let b = new_repo();
    let mut db = Daemon::start(&b.path, &[]);
    filled_collection(&b.path, "mine", 300);
    // B fetches through a link that stalls after 8 MB: once B has some blocks, its fetch
    // hangs, waiting for blocks that do not come.
    let (link, left) = stalling_link(&addr_a, 8 << 20);
    let mut fetch = fetch_in_background(&b.path, &id, &link);
    eventually("the link passes its 8 MB", || left.load(SeqCst) == 0);
    eventually("B receives blocks", || {
        bitswap_total(&db, "blocks_received") > 0.0
    });
    // Writes B acknowledges while its fetch hangs.
    let more = b.path.parent().unwrap().join("more.jsonl");
    std::fs::write(&more, points_jsonl(300..400)).unwrap();
    ok(&b.path, &["add", "mine", more.to_str().unwrap()]);
    assert!(
        fetch.try_wait().unwrap().is_none(),
        "the fetch ended before its link stalled; nothing was in flight"
    );

    // SIGTERM: B stops its fetch, commits and exits 0 without waiting for A.
    let before_term = bitswap_total(&db, "blocks_received");
    assert!(
        before_term < total,
        "B had every block; nothing was in flight"
    );
    let mut child = db.child.take().unwrap();
    signal("TERM", child.id());
    let status = exit_of(&mut child, "the daemon");
    assert!(status.success(), "the daemon exited with {status}");
    let fetched = exit_of(&mut fetch, "the fetch command");
    assert!(!fetched.success(), "the fetch cannot have completed");

    // Restarted, B has every acknowledged point, and fetching again completes, resuming:
    // the blocks fetched before the stop were kept.
    let mut db = Daemon::start(&b.path, &[]);
    let mine = json_of(&ok(&b.path, &["--json", "collection", "info", "mine"]));
    assert_eq!(mine["points"], 400);
    let fetched = json_of(&ok(&b.path, &["--json", "fetch", &id, "--from", &addr_a]));
    assert_eq!(fetched["root"], info_a["root"]);
    assert_eq!(fetched["points"], 6_000);
    // (B's own collection may share a block or two with A's: those are never fetched.)
    let second = bitswap_total(&db, "blocks_received");
    assert!(
        second > 0.0 && second + before_term <= total,
        "{before_term} blocks received before the stop and {second} after the restart, of a \
         DAG of {total}: the restarted fetch refetched what it had"
    );
    db.stop();
    da.stop();
}

#[test]
fn replication_works_over_quic() {
    let quic = ["--p2p-listen", "/ip4/127.0.0.1/udp/0/quic-v1"];
    let a = new_repo();
    filled_collection(&a.path, "q", 500);
    let _da = Daemon::start_with(&a.path, &[], &quic);
    let addresses = json_of(&ok(&a.path, &["--json", "id"]))["addresses"].clone();
    let quic_a = addresses
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .find(|a| a.contains("/udp/") && a.contains("/quic-v1/"))
        .unwrap_or_else(|| panic!("no QUIC address among {addresses}"))
        .to_string();
    let info = json_of(&ok(&a.path, &["--json", "collection", "info", "q"]));

    let b = new_repo();
    let _db = Daemon::start_with(&b.path, &[], &quic);
    let fetched = json_of(&ok(
        &b.path,
        &[
            "--json",
            "fetch",
            info["id"].as_str().unwrap(),
            "--from",
            &quic_a,
        ],
    ));
    assert_eq!(fetched["root"], info["root"]);
    assert_eq!(fetched["points"], 500);
    let peers = json_of(&ok(&b.path, &["--json", "peers"]));
    let to_a = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| quic_a.ends_with(p["peer_id"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("A is not among B's peers: {peers}"));
    assert!(
        to_a["address"].as_str().unwrap().contains("/quic-v1"),
        "B reached A over {}",
        to_a["address"]
    );
    assert!(to_a["blocks_received"].as_u64().unwrap() > 0, "{to_a}");
}

#[test]
fn with_ipfs_dht_on_roots_are_announced_to_ipfs_dht_peers() {
    use futures::StreamExt;
    use libp2p::{
        identity::Keypair,
        kad::{self, store::RecordStore},
        noise,
        swarm::SwarmEvent,
        tcp, yamux,
    };

    // A collection; its root is what IPFS nodes should find.
    let a = new_repo();
    filled_collection(&a.path, "pub", 50);
    let root: cid::Cid = json_of(&ok(&a.path, &["--json", "collection", "info", "pub"]))["root"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let peer_a: libp2p::PeerId = peer_of(&a.path).parse().unwrap();

    // An IPFS DHT peer: Kademlia on /ipfs/kad/1.0.0 in server mode (rust-libp2p's, not ours).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = Keypair::generate_ed25519();
    let dht_peer = key.public().to_peer_id();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| {
            let id = key.public().to_peer_id();
            let mut dht = kad::Behaviour::with_config(
                id,
                kad::store::MemoryStore::new(id),
                kad::Config::new(kad::PROTOCOL_NAME),
            );
            dht.set_mode(Some(kad::Mode::Server));
            dht
        })
        .unwrap()
        .build();
    let _guard = rt.enter();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let address = rt.block_on(async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        }
    });
    // Provider records on the IPFS DHT are keyed by the multihash.
    let record_key = kad::RecordKey::new(&root.hash().to_bytes());
    let (found_tx, found_rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = swarm.select_next_some() => {}
                _ = tick.tick() => {
                    let providers = swarm.behaviour_mut().store_mut().providers(&record_key);
                    if providers.iter().any(|p| p.provider == peer_a) {
                        let _ = found_tx.send(());
                    }
                }
            }
        }
    });

    let _da = Daemon::start(
        &a.path,
        &[
            ("IPVEC_P2P_IPFS_DHT", "true"),
            (
                "IPVEC_P2P_IPFS_BOOTSTRAP",
                &format!("{address}/p2p/{dht_peer}"),
            ),
        ],
    );
    found_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the daemon never announced its root to the IPFS DHT peer");
    let config = ok(&a.path, &["config", "show"]);
    assert!(config.contains("ipfs_dht = true"), "{config}");
}

/// The shard of point `n` in a collection of `shards` shards.
fn shard_of_point(n: u64, shards: u32) -> u32 {
    let key = ipvec_protocol::entry::EntryId::Int(n).to_key().unwrap();
    ipvec_protocol::manifest::shard_of(&key, shards)
}

/// A replica that holds 2 of 4 shards: it fetches only their trees, searches them and says
/// so in `coverage`, refuses points of the other shards by name, and follows new versions.
#[test]
fn a_partial_replica_holds_searches_and_follows_only_its_shards() {
    let WriterAndPeer {
        a,
        _da,
        info_a,
        id,
        addr_a,
        b,
        db: _db,
    } = writer_and_peer(&["--shards", "4"]);

    let bad = fails(
        &b.path,
        &["fetch", &id, "--from", &addr_a, "--shards", "1,4"],
    );
    assert!(bad.contains("there is no shard 4"), "{bad}");
    let fetched = json_of(&ok(
        &b.path,
        &["--json", "fetch", &id, "--from", &addr_a, "--shards", "3,1"],
    ));
    assert_eq!(
        fetched["points"], 2_000,
        "counts come from every shard root"
    );
    let info = json_of(&ok(&b.path, &["--json", "collection", "info", "films"]));
    assert_eq!(info["held_shards"], serde_json::json!([1, 3]));
    assert_eq!(info["root"], info_a["root"]);
    let held: Vec<bool> = info["shard_status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["held"].as_bool().unwrap())
        .collect();
    assert_eq!(held, [false, true, false, true]);
    let text = ok(&b.path, &["collection", "info", "films"]);
    assert!(text.contains("held:         shards 1, 3 of 4"), "{text}");

    // Only the held shards' trees were fetched: their shard roots are here, the others'
    // trees are not.
    let tree_of = |shard: usize| {
        let root = info["shard_status"][shard]["root"].as_str().unwrap();
        let block = json_of(&ok(&b.path, &["dag", "get", root]));
        block["tree"]["/"].as_str().unwrap().to_string()
    };
    ok(&b.path, &["block", "stat", &tree_of(1)]);
    let missing = fails(&b.path, &["block", "stat", &tree_of(0)]);
    assert!(!missing.is_empty());
    // Its version is pinned shallowly (a list of the manifest and every shard root), and
    // `pin ls` says so.
    let pins = json_of(&ok(&b.path, &["--json", "pin", "ls"]));
    let shallow: Vec<&serde_json::Value> = pins["pins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "shallow" && p["name"] == "collection:films")
        .collect();
    assert_eq!(shallow.len(), 1, "{pins}");
    let list = shallow[0]["cid"].as_str().unwrap();
    let named: Vec<Value> = json_of(&ok(&b.path, &["dag", "get", list]))
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["/"].clone())
        .collect();
    let mut want = vec![info["root"].clone()];
    want.extend(
        info["shard_status"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["root"].clone()),
    );
    assert_eq!(named, want);
    let text = ok(&b.path, &["pin", "ls"]);
    assert!(
        text.contains(&format!("{list} shallow (collection:films)")),
        "{text}"
    );

    // Searches cover shards 1 and 3, and give exactly their best points.
    let exact = |repo: &std::path::Path, k: &str| {
        json_of(&ok(
            repo,
            &[
                "--json", "search", "films", "--vector", "3,1,-2,5", "-k", k, "--exact",
            ],
        ))
    };
    let answer = exact(&b.path, "10");
    assert_eq!(
        answer["coverage"],
        serde_json::json!({"shards": 4, "searched": [1, 3], "complete": false})
    );
    let ids = |hits: &Value| -> Vec<u64> {
        hits.as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_u64().unwrap())
            .collect()
    };
    let all = exact(&a.path, "2000");
    assert_eq!(all["coverage"]["complete"], true);
    let want: Vec<u64> = ids(&all["hits"])
        .into_iter()
        .filter(|n| [1, 3].contains(&shard_of_point(*n, 4)))
        .take(10)
        .collect();
    assert_eq!(ids(&answer["hits"]), want);
    let text = ipvec(&b.path, &["search", "films", "--vector", "3,1,-2,5"], &[]);
    assert!(
        String::from_utf8_lossy(&text.stderr).contains("searched shards 1, 3 of 4"),
        "{text:?}"
    );

    // A point of a shard not held: refused by name, with what to do.
    let other = (0..2_000u64).find(|n| shard_of_point(*n, 4) == 0).unwrap();
    let err = fails(&b.path, &["get", "films", &other.to_string()]);
    assert!(
        err.contains("shard 0") && err.contains("does not hold") && err.contains("--shards"),
        "{err}"
    );
    let mine = (0..2_000u64).find(|n| shard_of_point(*n, 4) == 3).unwrap();
    ok(&b.path, &["get", "films", &mine.to_string()]);

    // A writes to every shard and commits: B follows the head and still holds 1 and 3.
    let more = a.path.parent().unwrap().join("more.jsonl");
    std::fs::write(&more, points_jsonl(2_000..2_040)).unwrap();
    ok(&a.path, &["add", "films", more.to_str().unwrap()]);
    let log = json_of(&ok(&a.path, &["--json", "collection", "log", "films"]));
    let new_root = log["versions"][0]["root"].as_str().unwrap().to_string();
    eventually("the partial replica follows the new head", || {
        json_of(&ok(&b.path, &["--json", "collection", "info", "films"]))["root"]
            == new_root.as_str()
    });
    let info = json_of(&ok(&b.path, &["--json", "collection", "info", "films"]));
    assert_eq!(
        (info["points"].as_u64(), info["held_shards"].clone()),
        (Some(2_040), serde_json::json!([1, 3]))
    );
    let answer = exact(&b.path, "10");
    let all = exact(&a.path, "2040");
    let want: Vec<u64> = ids(&all["hits"])
        .into_iter()
        .filter(|n| [1, 3].contains(&shard_of_point(*n, 4)))
        .take(10)
        .collect();
    assert_eq!(ids(&answer["hits"]), want);
}
