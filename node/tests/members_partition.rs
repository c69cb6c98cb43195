//! A community collection split in two by the deny list: four members and two writers on real
//! daemons over loopback. Each side loses the other side's members, repairs onto its own and
//! takes its own writer's writes; once the split heals, every node shows one merged root,
//! the members hold what placement over all four gives them (gc frees what they dropped), and
//! every acknowledged write is there, found by federated searches the members answer alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::members::*;
use common::pair::filled_collection_with;
use common::*;
use serde_json::Value;

const LAYOUT: Layout = Layout {
    shards: 6,
    replication: 2,
};

fn info(repo: &Path) -> Value {
    json_of(&ok(repo, &["--json", "collection", "info", "films"]))
}

/// Writes ids `first..first + 25` as writer `who` and commits them: the vector and metadata
/// name the writer. Returns the ids, acknowledged once both commands succeeded.
fn write_batch(repo: &Path, who: u64, first: u64) -> Vec<u64> {
    let ids: Vec<u64> = (first..first + 25).collect();
    let lines: String = ids
        .iter()
        .map(|&i| {
            let v = vector_of(who, i);
            serde_json::json!({ "id": i, "vector": v, "metadata": { "by": who } }).to_string()
                + "\n"
        })
        .collect();
    let file = repo.parent().unwrap().join(format!("batch-{first}.jsonl"));
    std::fs::write(&file, lines).unwrap();
    ok(repo, &["add", "films", file.to_str().unwrap()]);
    ok(repo, &["collection", "log", "films"]);
    ids
}

/// Far from the collection's first points (whose coordinates stay below 30), one place per
/// id.
fn vector_of(who: u64, i: u64) -> [f32; 4] {
    [1_000.0 + i as f32, 100.0 * who as f32, (i % 7) as f32, 1.0]
}

/// Denies (or, with `allow`, allows again) every peer of one side on every node of the other.
fn cut(sides: [&[&Path]; 2], allow: bool) {
    let verb = if allow { "allow" } else { "deny" };
    for (mine, theirs) in [(sides[0], sides[1]), (sides[1], sides[0])] {
        for me in mine {
            for them in theirs {
                ok(me, &["peers", verb, &peer_of(them)]);
            }
        }
    }
}

#[test]
fn a_split_membership_repairs_on_both_sides_and_converges_with_every_write() {
    // Writer A owns the collection; writer B holds a whole copy and is allowed to write.
    let a = new_repo();
    filled_collection_with(
        &a.path,
        "films",
        300,
        &["--shards", "6", "--replication", "2"],
    );
    let _da = Daemon::start_with(&a.path, ENV, &[]);
    let id = info(&a.path)["id"].as_str().unwrap().to_string();
    let owner = ipvec_protocol::head::key_of_id(&id).unwrap();
    let addr_a = address_of(&a.path);
    let b = new_repo();
    let _db = Daemon::start_with(&b.path, ENV, &["--bootstrap", &addr_a]);
    ok(&b.path, &["fetch", &id, "--from", &addr_a]);
    ok(
        &a.path,
        &["collection", "writers", "add", "films", &peer_of(&b.path)],
    );
    eventually("B writes", || info(&b.path)["writable"] == true);

    // Four members join.
    let members: Vec<Node> = (0..4).map(|_| start_member(&addr_a)).collect();
    for m in &members {
        ok(
            m.path(),
            &["join", &id, "--from", &addr_a, "--capacity", "1G"],
        );
    }
    let all = pick(&members, &[0, 1, 2, 3]);
    within(
        Duration::from_secs(120),
        "placement over four members",
        &members,
        || placed(&owner, LAYOUT, "films", &all),
    );

    // Two sides, {A, m0, m1} and {B, m2, m3}, each connected within itself, then cut apart.
    let left: Vec<&Path> = vec![&a.path, members[0].path(), members[1].path()];
    let right: Vec<&Path> = vec![&b.path, members[2].path(), members[3].path()];
    for side in [&left, &right] {
        for (i, me) in side.iter().enumerate() {
            for them in &side[i + 1..] {
                ok(me, &["connect", &address_of(them)]);
            }
        }
    }
    cut([&left, &right], false);

    // Both writers write while the sides repair: acknowledged writes on either side.
    let mut written: Vec<(u64, u64)> = Vec::new();
    for (repo, who, first) in [(&a.path, 1, 10_000), (&b.path, 2, 20_000)] {
        written.extend(write_batch(repo, who, first).into_iter().map(|i| (i, who)));
    }
    // Each side drops the other's members when their records expire, and its two members
    // take every shard (replication 2), at its own writer's versions.
    for (side, which) in [(&left, [0, 1]), (&right, [2, 3])] {
        let half = pick(&members, &which);
        within(
            Duration::from_secs(120),
            "each side holds every shard on its own members",
            &members,
            || placed(&owner, LAYOUT, "films", &half),
        );
        let roots: Vec<Value> = side
            .iter()
            .map(|r| info(r)["merged_root"].clone())
            .collect();
        assert!(roots.iter().all(|r| *r == roots[0]), "{roots:?}");
    }
    assert_ne!(
        info(&a.path)["merged_root"],
        info(&b.path)["merged_root"],
        "the sides took different writes"
    );
    for (repo, who, first) in [(&a.path, 1, 10_100), (&b.path, 2, 20_100)] {
        written.extend(write_batch(repo, who, first).into_iter().map(|i| (i, who)));
    }

    // Heal: every node again hears the other side, and the four members share the shards.
    cut([&left, &right], true);
    for me in &right {
        for them in &left {
            ok(me, &["connect", &address_of(them)]);
        }
    }
    within(
        Duration::from_secs(180),
        "one merged root on every node and placement over four members",
        &members,
        || {
            let roots: Vec<Value> = left
                .iter()
                .chain(&right)
                .map(|r| info(r)["merged_root"].clone())
                .collect();
            if roots.iter().any(|r| *r != roots[0]) {
                return Err(format!("merged roots differ: {roots:?}"));
            }
            placed(&owner, LAYOUT, "films", &all)
        },
    );
    let count = copies(LAYOUT, "films", &all);
    assert!(count.iter().all(|&c| c == LAYOUT.replication), "{count:?}");

    // Every acknowledged write is on both writers, as its writer wrote it…
    for repo in [&a.path, &b.path] {
        assert_eq!(info(repo)["points"], 300 + written.len() as u64);
        for &(i, who) in &written {
            let p = json_of(&ok(repo, &["--json", "get", "films", &i.to_string()]));
            assert_eq!(p["metadata"]["by"], who, "id {i} on {}", repo.display());
        }
    }
    // Each member held every shard while the sides were apart and holds half of them now:
    // gc frees what it dropped, and leaves it nothing missing.
    for m in &all {
        let before = held_shards(m.path(), "films");
        let report = json_of(&ok(m.path(), &["--json", "gc"]));
        assert!(report["removed_blocks"].as_u64().unwrap() > 0, "{report}");
        assert_eq!(report["missing_blocks"], 0, "{report}");
        assert_eq!(held_shards(m.path(), "films"), before);
    }
    // …and the members alone find each write: a node that holds nothing asks them.
    drop((_da, _db));
    let asker = new_repo();
    let _dq = Daemon::start_with(
        &asker.path,
        ENV,
        &["--bootstrap", &address_of(all[0].path())],
    );
    for &(i, who) in written.iter().step_by(5) {
        let v = vector_of(who, i).map(|x| x.to_string()).join(",");
        let (ids, coverage) = federated_search(&asker.path, &id, &v, 1);
        assert_eq!(coverage["complete"], true, "id {i}: {coverage}");
        assert_eq!(ids, vec![i], "id {i}");
    }
}
