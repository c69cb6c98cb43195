//! `ipvec collection shards`: who holds each shard of a collection, on real daemons with
//! partial replicas; a holder that goes away stays listed (its provider record has not
//! expired) but no longer counts as live.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{pair::*, *};
use serde_json::Value;

/// Each shard's holders as (peer id, alive), sorted, and its live count.
fn holders(map: &Value, shard: usize) -> (Vec<(String, bool)>, u64) {
    let s = &map["shards"][shard];
    let mut h: Vec<(String, bool)> = s["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["peer_id"].as_str().unwrap().to_string(),
                h["alive"] == true,
            )
        })
        .collect();
    h.sort();
    (h, s["live"].as_u64().unwrap())
}

#[test]
fn the_shard_map_names_each_shards_holders_and_who_is_alive() {
    let a = new_repo();
    filled_collection_with(
        &a.path,
        "films",
        400,
        &["--shards", "4", "--replication", "2"],
    );
    let _da = Daemon::start(&a.path, &[]);
    let addr_a = address_of(&a.path);
    let id = json_of(&ok(&a.path, &["--json", "collection", "info", "films"]))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (b, c) = (new_repo(), new_repo());
    let _db = Daemon::start_with(&b.path, &[], &["--bootstrap", &addr_a]);
    let mut dc = Daemon::start_with(&c.path, &[], &["--bootstrap", &addr_a]);
    ok(
        &b.path,
        &["fetch", &id, "--from", &addr_a, "--shards", "0,1"],
    );
    ok(
        &c.path,
        &["fetch", &id, "--from", &addr_a, "--shards", "1,2"],
    );
    let (pa, pb, pc) = (peer_of(&a.path), peer_of(&b.path), peer_of(&c.path));
    let alive = |ps: &[&String]| {
        let mut v: Vec<(String, bool)> = ps.iter().map(|p| (p.to_string(), true)).collect();
        v.sort();
        v
    };
    let map_of =
        |r: &std::path::Path| json_of(&ok(r, &["--json", "collection", "shards", "films"]));
    eventually("A's map names every holder", || {
        let map = map_of(&a.path);
        holders(&map, 0) == (alive(&[&pa, &pb]), 2)
            && holders(&map, 1) == (alive(&[&pa, &pb, &pc]), 3)
            && holders(&map, 2) == (alive(&[&pa, &pc]), 2)
            && holders(&map, 3) == (alive(&[&pa]), 1)
    });
    let map = map_of(&a.path);
    assert_eq!(map["replication"], 2);
    assert_eq!(map["id"], id.as_str());
    let info = json_of(&ok(&a.path, &["--json", "collection", "info", "films"]));
    for s in 0..4 {
        assert_eq!(
            map["shards"][s]["points"],
            info["shard_status"][s]["points"]
        );
    }
    let text = ok(&a.path, &["collection", "shards", "films"]);
    assert!(text.contains("shard 3: "), "{text}");
    assert!(text.contains("1 of 2 live  UNDER-REPLICATED"), "{text}");
    assert!(text.contains(&format!("{pa}  this node")), "{text}");

    // C goes away: still named by its record, no longer live.
    dc.stop();
    eventually("A sees C gone", || {
        let map = map_of(&a.path);
        let mut want = vec![(pa.clone(), true), (pc.clone(), false)];
        want.sort();
        holders(&map, 2) == (want, 1)
    });
}
