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
    let info = json_of(&ok(&b.path, &["--json", "collection", "info", "films"]));
    assert_eq!(info["writers"], serde_json::json!([id, key_b]));
    let text = ok(&b.path, &["collection", "info", "films"]);
    assert!(text.contains("writers:      2"), "{text}");
    // Again: nothing changes.
    let said = ok(&a.path, &["collection", "writers", "add", "films", &key_b]);
    assert!(said.contains("already allowed"), "{said}");
    assert_eq!(version_of(&a.path), before + 1);

    // Only the owner's node changes the list; bad keys are refused with what to give.
    let refused = fails(&b.path, &["collection", "writers", "rm", "films", &key_b]);
    assert!(refused.contains("read-only"), "{refused}");
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
    // The points are untouched by either change.
    let info = json_of(&ok(&b.path, &["--json", "collection", "info", "films"]));
    assert_eq!(info["points"], 2_000);
}
