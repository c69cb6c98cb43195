//! A collection's writer list on real daemons: the owner adds and removes keys with
//! `ipvec collection writers`, each change a signed version its replicas follow; a replica
//! cannot change the list, and a key that is not a peer id is refused with what to give.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{pair::*, *};
use serde_json::Value;

fn writers_of(repo: &std::path::Path) -> Vec<(String, bool)> {
    let list = json_of(&ok(
        repo,
        &["--json", "collection", "writers", "ls", "films"],
    ));
    list["writers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["id"].as_str().unwrap().to_string(), w["owner"] == true))
        .collect()
}

fn version_of(repo: &std::path::Path) -> u64 {
    let info: Value = json_of(&ok(repo, &["--json", "collection", "info", "films"]));
    info["version"].as_u64().unwrap()
}

#[test]
fn the_owner_adds_and_removes_writers_and_replicas_follow() {
    let WriterAndPeer {
        a,
        _da,
        id,
        addr_a,
        b,
        db: _db,
        ..
    } = writer_and_peer(&[]);
    ok(&b.path, &["fetch", &id, "--from", &addr_a]);
    let key_b = peer_of(&b.path);
    assert_eq!(writers_of(&a.path), vec![(id.clone(), true)]);
    assert_eq!(writers_of(&b.path), vec![(id.clone(), true)]);
    let before = version_of(&a.path);

    // The owner allows B's key: a new version, which B follows.
    let said = ok(&a.path, &["collection", "writers", "add", "films", &key_b]);
    assert!(
        said.contains(&format!("{key_b}: now allowed to write collection films")),
        "{said}"
    );
    assert!(said.contains(&format!("{key_b}\twriter")), "{said}");
    assert_eq!(version_of(&a.path), before + 1);
    let both = vec![(id.clone(), true), (key_b.clone(), false)];
    assert_eq!(writers_of(&a.path), both);
    eventually("B follows the new writer list", || {
        writers_of(&b.path) == both
    });
    // B's key being listed, B writes the collection from now on.
    eventually("B writes", || info(&b.path)["writable"] == true);
    let info_b = info(&b.path);
    assert_eq!(info_b["writers"], serde_json::json!([id, key_b]));
    let text = ok(&b.path, &["collection", "info", "films"]);
    assert!(text.contains("writers:      2"), "{text}");
    // Again: nothing changes.
    let said = ok(&a.path, &["collection", "writers", "add", "films", &key_b]);
    assert!(said.contains("already allowed"), "{said}");
    assert_eq!(version_of(&a.path), before + 1);

    // Only the owner's node changes the list (not another writer's, nor a replica's); bad
    // keys are refused with what to give.
    let refused = fails(&b.path, &["collection", "writers", "rm", "films", &key_b]);
    assert!(refused.contains("only the owner's node"), "{refused}");
    for bad in ["nobody", "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"] {
        let refused = fails(&a.path, &["collection", "writers", "add", "films", bad]);
        assert!(refused.contains("is not a key id"), "{refused}");
        assert!(refused.contains("ipvec id"), "{refused}");
    }
    let refused = fails(&a.path, &["collection", "writers", "rm", "films", &id]);
    assert!(refused.contains("cannot be removed"), "{refused}");
    assert_eq!(version_of(&a.path), before + 1, "refusals make no version");

    // Removing B's key: a version B follows too.
    let said = ok(&a.path, &["collection", "writers", "rm", "films", &key_b]);
    assert!(said.contains("no longer allowed"), "{said}");
    assert_eq!(version_of(&a.path), before + 2);
    eventually("B follows the removal", || {
        writers_of(&b.path) == vec![(id.clone(), true)]
    });
    // B is read-only again: its writes are refused with what it is.
    assert_eq!(info(&b.path)["writable"], false);
    let file = b.path.parent().unwrap().join("late.jsonl");
    std::fs::write(&file, points_jsonl(5_000..5_001)).unwrap();
    let refused = fails(&b.path, &["add", "films", file.to_str().unwrap()]);
    assert!(refused.contains("read-only"), "{refused}");
    // The points are untouched by either change.
    assert_eq!(info(&b.path)["points"], 2_000);
}

/// Points `ids` as one writer writes them: the vector names the writer (`who`), so the
/// version of an id each node holds says whose write won.
fn writes_of(who: u64, ids: impl Iterator<Item = u64>) -> String {
    ids.map(|i| {
        let v = [i as f32, who as f32, (i % 7) as f32, 1.0];
        serde_json::json!({ "id": i, "vector": v, "metadata": { "by": who } }).to_string() + "\n"
    })
    .collect()
}

/// A point as a node holds it: its writer (as key bytes, which the rule compares), clock stamp
/// and vector.
fn version_on(repo: &std::path::Path, id: u64) -> (u64, Vec<u8>, Value) {
    let p = json_of(&ok(repo, &["--json", "get", "films", &id.to_string()]));
    let writer = ipvec_protocol::head::key_of_id(p["writer"].as_str().unwrap()).unwrap();
    (
        p["hlc"].as_u64().unwrap(),
        writer.to_vec(),
        p["vector"].clone(),
    )
}

fn info(repo: &std::path::Path) -> Value {
    json_of(&ok(repo, &["--json", "collection", "info", "films"]))
}

/// Three writers (the owner and two keys it adds) write different and overlapping ids at the
/// same time; once they stop, every writer and a replica that only follows hold the same
/// merged root and the same points, and each overlapping id holds the version the rule names:
/// the highest (hlc, writer) of those written.
#[test]
fn three_writers_write_at_once_and_every_node_converges() {
    // Commits only when asked (`collection log` commits first), so each writer's own
    // versions can be read before any is gossiped.
    let slow = [("IPVEC_STORAGE_COMMIT_INTERVAL_MS", "3600000")];
    let a = new_repo();
    filled_collection(&a.path, "films", 500);
    let _da = Daemon::start(&a.path, &slow);
    let id = info(&a.path)["id"].as_str().unwrap().to_string();
    let addr_a = address_of(&a.path);
    let others: Vec<TestRepo> = (0..3).map(|_| new_repo()).collect();
    let _daemons: Vec<Daemon> = others
        .iter()
        .map(|r| Daemon::start_with(&r.path, &slow, &["--bootstrap", &addr_a]))
        .collect();
    for r in &others {
        ok(&r.path, &["fetch", &id, "--from", &addr_a]);
    }
    let (b, c, d) = (&others[0].path, &others[1].path, &others[2].path);
    for writer in [b, c] {
        ok(
            &a.path,
            &["collection", "writers", "add", "films", &peer_of(writer)],
        );
    }
    eventually("B and C write the collection", || {
        info(b)["writable"] == true && info(c)["writable"] == true
    });
    assert_eq!(info(d)["writable"], false, "D is not listed: a replica");

    // At once: A writes ids 0..50 and 10000..10100, B 25..75 and 20000..20100, C 40..60 and
    // 30000..30100.
    let plans: [(&std::path::Path, u64, Vec<u64>); 3] = [
        (&a.path, 1, (0..50).chain(10_000..10_100).collect()),
        (b, 2, (25..75).chain(20_000..20_100).collect()),
        (c, 3, (40..60).chain(30_000..30_100).collect()),
    ];
    std::thread::scope(|s| {
        for (repo, who, ids) in &plans {
            s.spawn(move || {
                let file = repo.parent().unwrap().join("writes.jsonl");
                std::fs::write(&file, writes_of(*who, ids.iter().copied())).unwrap();
                ok(repo, &["add", "films", file.to_str().unwrap()]);
            });
        }
    });
    // Each writer's own version of every overlapping id, before anything is committed.
    let overlapping: Vec<u64> = (25..60).collect();
    let mut expected = Vec::new();
    for id in &overlapping {
        let versions: Vec<_> = plans
            .iter()
            .filter(|(_, _, ids)| ids.contains(id))
            .map(|(repo, _, _)| version_on(repo, *id))
            .collect();
        assert!(
            versions.len() >= 2,
            "id {id} is written by two writers or three"
        );
        // Last writer wins: the highest clock stamp, then the highest writer key.
        let winner = versions
            .into_iter()
            .max_by(|x, y| (x.0, &x.1).cmp(&(y.0, &y.1)))
            .unwrap();
        expected.push(winner);
    }

    // The writers commit (each a signed version, gossiped), merge each other's and sign
    // their merges; the replica merges them all.
    std::thread::scope(|s| {
        for (repo, _, _) in &plans {
            s.spawn(move || ok(repo, &["collection", "log", "films"]));
        }
    });
    let nodes = [&a.path, b, c, d];
    eventually(
        "every node holds the same merged root and every point",
        || {
            let infos: Vec<Value> = nodes.iter().map(|r| info(r)).collect();
            infos.iter().all(|i| i["points"] == 500 + 300)
                && infos
                    .iter()
                    .all(|i| i["merged_root"] == infos[0]["merged_root"])
        },
    );
    for node in nodes {
        for (id, winner) in overlapping.iter().zip(&expected) {
            assert_eq!(
                &version_on(node, *id),
                winner,
                "id {id} on {}",
                node.display()
            );
        }
        for id in [0, 10_050, 20_050, 30_099, 499] {
            version_on(node, id);
        }
        // Info shows the newest head merged from each writer.
        let heads = info(node)["writer_heads"].as_array().unwrap().len();
        assert_eq!(heads, 3, "{}", node.display());
        let text = ok(node, &["collection", "info", "films"]);
        assert!(text.contains("merged root:"), "{text}");
    }
}

/// Writers on both sides of a partition (made with the deny list) write; once it heals, every
/// node converges on one merged root holding every acknowledged write, with no new write to
/// carry the news: nodes ask their peers for heads now and then (anti-entropy).
#[test]
fn a_healed_partition_converges_with_every_acknowledged_write() {
    let a = new_repo();
    filled_collection(&a.path, "films", 500);
    let _da = Daemon::start(&a.path, &[]);
    let id = info(&a.path)["id"].as_str().unwrap().to_string();
    let addr_a = address_of(&a.path);
    let others: Vec<TestRepo> = (0..3).map(|_| new_repo()).collect();
    let _daemons: Vec<Daemon> = others
        .iter()
        .map(|r| Daemon::start_with(&r.path, &[], &["--bootstrap", &addr_a]))
        .collect();
    let (b, c, d) = (&others[0].path, &others[1].path, &others[2].path);
    for r in [b, c, d] {
        ok(r, &["fetch", &id, "--from", &addr_a]);
    }
    ok(c, &["connect", &address_of(d)]);
    for writer in [b, c] {
        ok(
            &a.path,
            &["collection", "writers", "add", "films", &peer_of(writer)],
        );
    }
    eventually("B and C write", || {
        info(b)["writable"] == true && info(c)["writable"] == true
    });

    // Two sides: {A, B} and {C, D}.
    let peers: Vec<String> = [&a.path, b, c, d].iter().map(|r| peer_of(r)).collect();
    let sides = [[0usize, 1], [2, 3]];
    let nodes = [&a.path, b, c, d];
    for (side, other) in [(sides[0], sides[1]), (sides[1], sides[0])] {
        for me in side {
            for them in other {
                ok(nodes[me], &["peers", "deny", &peers[them]]);
            }
        }
    }
    let writes = [(&a.path, 1, 1_000u64), (b, 2, 2_000), (c, 3, 3_000)];
    for (repo, who, first) in writes {
        let file = repo.parent().unwrap().join("side.jsonl");
        std::fs::write(&file, writes_of(who, first..first + 50)).unwrap();
        ok(repo, &["add", "films", file.to_str().unwrap()]);
        ok(repo, &["collection", "log", "films"]);
    }
    eventually("each side merges its own writers", || {
        let i: Vec<Value> = nodes.iter().map(|r| info(r)).collect();
        i[0]["points"] == 600
            && i[1]["merged_root"] == i[0]["merged_root"]
            && i[2]["points"] == 550
            && i[3]["merged_root"] == i[2]["merged_root"]
    });
    assert_ne!(info(&a.path)["merged_root"], info(c)["merged_root"]);

    // Heal: lift the denials and reconnect the sides.
    for (me, node) in nodes.iter().enumerate() {
        for (them, peer) in peers.iter().enumerate() {
            if sides[0].contains(&me) != sides[0].contains(&them) {
                ok(node, &["peers", "allow", peer]);
            }
        }
    }
    for r in [c, d] {
        ok(r, &["connect", &addr_a]);
    }
    eventually("every node holds one merged root and every write", || {
        let i: Vec<Value> = nodes.iter().map(|r| info(r)).collect();
        i.iter()
            .all(|x| x["points"] == 650 && x["merged_root"] == i[0]["merged_root"])
    });
    for node in nodes {
        for (_, who, first) in writes {
            for id in [first, first + 49] {
                let p = json_of(&ok(node, &["--json", "get", "films", &id.to_string()]));
                assert_eq!(p["metadata"]["by"], who, "id {id} on {}", node.display());
            }
        }
    }
}

#[test]
fn a_removed_writers_new_heads_are_refused_and_change_nothing() {
    let WriterAndPeer {
        a,
        _da: da,
        id,
        addr_a,
        b,
        db: _db,
        ..
    } = writer_and_peer(&[]);
    // C: a replica that follows A.
    let c = new_repo();
    let dc = Daemon::start_with(&c.path, &[], &["--bootstrap", &addr_a]);
    for r in [&b.path, &c.path] {
        ok(r, &["fetch", &id, "--from", &addr_a]);
    }
    let key_b = peer_of(&b.path);
    ok(&a.path, &["collection", "writers", "add", "films", &key_b]);
    eventually("B writes", || info(&b.path)["writable"] == true);

    // B is cut off, and removed while it is: it does not know and writes on.
    let nodes = [&a.path, &c.path];
    let peer_a_c = [peer_of(&a.path), peer_of(&c.path)];
    for (node, peer) in nodes.iter().zip(&peer_a_c) {
        ok(node, &["peers", "deny", &key_b]);
        ok(&b.path, &["peers", "deny", peer]);
    }
    ok(&a.path, &["collection", "writers", "rm", "films", &key_b]);
    eventually("C follows the removal", || {
        writers_of(&c.path) == vec![(id.clone(), true)]
    });
    // Three versions: B's head then outnumbers A's removal, so B keeps answering its own.
    let file = b.path.parent().unwrap().join("late.jsonl");
    for first in [9_000, 9_100, 9_200] {
        std::fs::write(&file, writes_of(2, first..first + 20)).unwrap();
        ok(&b.path, &["add", "films", file.to_str().unwrap()]);
        ok(&b.path, &["collection", "log", "films"]);
    }
    let roots: Vec<Value> = nodes
        .iter()
        .map(|r| info(r)["merged_root"].clone())
        .collect();
    assert_eq!(roots[0], roots[1]);
    let rejected = |d: &Daemon| {
        let metrics = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(d.metrics());
        sample(&metrics, "ipvec_gossip_heads", &[("verdict", "rejected")])
    };
    let before = [rejected(&da), rejected(&dc)];

    // Healed: A and C hear B's new head, refuse it and count it; nothing of it enters.
    for (node, peer) in nodes.iter().zip(&peer_a_c) {
        ok(node, &["peers", "allow", &key_b]);
        ok(&b.path, &["peers", "allow", peer]);
    }
    ok(&b.path, &["connect", &addr_a]);
    ok(&b.path, &["connect", &address_of(&c.path)]);
    eventually("A and C refuse B's head", || {
        rejected(&da) > before[0] && rejected(&dc) > before[1]
    });
    for (node, root) in nodes.iter().zip(&roots) {
        let now = info(node);
        assert_eq!(&now["merged_root"], root, "the root did not change");
        assert_eq!(now["points"], 2_000);
        let refused = ipvec(node, &["get", "films", "9000"], &[]);
        assert!(!refused.status.success(), "B's late write entered");
    }
}
