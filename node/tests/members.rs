//! Community collections on real daemons over loopback: six members join a collection of
//! twelve shards, placement spreads them two holders each, the members serve federated
//! searches without the writer, two members killed one after the other are repaired by the
//! next ones, a new member takes its share without any shard dropping below two copies, and
//! a member that leaves hands its shards over first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::members::*;
use common::pair::filled_collection_with;
use common::*;
use ipvec_simulations::{
    scenario::{Identities, Scenario},
    World,
};
use libp2p::PeerId;
use serde_json::Value;

const LAYOUT: Layout = Layout {
    shards: 12,
    replication: 2,
};
const POINTS: u64 = 600;

fn placed(owner: &[u8], members: &[&Node]) -> Result<(), String> {
    common::members::placed(owner, LAYOUT, "films", members)
}

/// The asker's federated search of collection `id` for point `query`'s own vector.
fn search(asker: &std::path::Path, id: &str, query: u64) -> (Vec<u64>, Value) {
    federated_search(asker, id, &points_vector(query), 5)
}

/// The simulator's shared case (`simulations/scenarios/six.toml`), run with these daemons'
/// identities: the same members leave, and it must end with the same holders of each shard
/// as the daemons did, and cover every shard in every search, as the daemons' searches did.
fn the_simulator_agrees(id: &str, members: &[Node], survivors: &[usize]) {
    let path = workspace().join("simulations/scenarios/six.toml");
    let mut sc = Scenario::load(&path).unwrap();
    let killed: Vec<u32> = (0..6)
        .filter(|i| !survivors.contains(&(*i as usize)))
        .collect();
    assert_eq!(
        sc.kills.iter().map(|k| k.node).collect::<Vec<_>>(),
        killed,
        "six.toml kills the members this test kills"
    );
    sc.identities = Some(Identities {
        collection: id.to_string(),
        peers: members[..6].iter().map(|m| m.peer.to_string()).collect(),
    });
    let stats = World::new(sc.clone(), sc.seed)
        .unwrap_or_else(|e| panic!("{e}"))
        .run();
    assert!(stats.violations.is_empty(), "{:?}", stats.violations);
    assert_eq!(stats.nodes_end, survivors.len() as u32);
    let simulated: Vec<Vec<PeerId>> = stats
        .holders
        .iter()
        .map(|h| {
            let mut peers: Vec<PeerId> = h.iter().map(|n| members[*n as usize].peer).collect();
            peers.sort();
            peers
        })
        .collect();
    let mut real: Vec<Vec<PeerId>> = vec![Vec::new(); LAYOUT.shards as usize];
    for &i in survivors {
        for s in held_shards(members[i].path(), "films") {
            real[s as usize].push(members[i].peer);
        }
    }
    real.iter_mut().for_each(|h| h.sort());
    assert_eq!(
        simulated, real,
        "holders of each shard: simulated vs the daemons"
    );
    assert_eq!(
        stats.full_coverage, stats.searches,
        "every simulated search covers every shard, as the daemons' did"
    );
    assert!(stats.searches > 0 && stats.left == 2);
}

/// The vector `points_jsonl` gives point `i`, as `--vector` takes it.
fn points_vector(i: u64) -> String {
    let line = points_jsonl(i..i + 1);
    let point: Value = serde_json::from_str(line.trim()).unwrap();
    point["vector"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn members_serve_the_shards_placement_gives_them_and_repair_what_is_lost() {
    // The writer: 6 shards, 2 holders wanted each.
    let w = new_repo();
    filled_collection_with(
        &w.path,
        "films",
        POINTS,
        &["--shards", "12", "--replication", "2"],
    );
    let mut dw = Daemon::start_with(&w.path, ENV, &[]);
    let id = json_of(&ok(&w.path, &["--json", "collection", "info", "films"]))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let owner = ipvec_protocol::head::key_of_id(&id).unwrap();
    let addr_w = address_of(&w.path);

    // Six members join.
    let mut members: Vec<Node> = (0..6).map(|_| start_member(&addr_w)).collect();
    for m in &members {
        let joined = json_of(&ok(
            &m.repo.path,
            &["--json", "join", &id, "--from", &addr_w, "--capacity", "1G"],
        ));
        assert_eq!(joined["state"], "serving");
        assert_eq!(joined["capacity"], 1u64 << 30);
    }
    within(
        Duration::from_secs(120),
        "placement over six members",
        &members,
        || placed(&owner, &pick(&members, &[0, 1, 2, 3, 4, 5])),
    );
    // The writer hears the members without being one.
    let seen = json_of(&ok(&w.path, &["--json", "collection", "members", "films"]));
    assert_eq!(seen["state"], "observing");
    assert_eq!(seen["members"].as_array().unwrap().len(), 6);

    // What a whole copy answers, then the writer goes: the members alone serve.
    let queries = [0u64, 77, 301, 599];
    let asker = new_repo();
    let _da = Daemon::start_with(&asker.path, ENV, &["--bootstrap", &addr_w]);
    let expected: Vec<Vec<u64>> = queries
        .iter()
        .map(|&q| search(&w.path, "films", q).0)
        .collect();
    dw.stop();
    let addr_0 = address_of(&members[0].repo.path);
    ok(&asker.path, &["connect", &addr_0]);
    let complete = |what: &str| {
        for (q, want) in queries.iter().zip(&expected) {
            let (ids, coverage) = search(&asker.path, &id, *q);
            assert_eq!(coverage["complete"], true, "{what}, query {q}: {coverage}");
            assert_eq!(&ids, want, "{what}, query {q}");
        }
    };
    complete("six members, writer gone");

    // Two members killed, one after the other: each time the next members in each shard's
    // ranking fetch the dead one's shards from the other holders. (Both at once could take
    // both holders of a shard with the writer gone: replication 2 survives one loss at a
    // time.)
    kill(&mut members[1]);
    within(
        Duration::from_secs(120),
        "repair over five members",
        &members,
        || placed(&owner, &pick(&members, &[0, 2, 3, 4, 5])),
    );
    complete("one member killed and repaired");
    kill(&mut members[4]);
    within(
        Duration::from_secs(120),
        "repair over four members",
        &members,
        || placed(&owner, &pick(&members, &[0, 2, 3, 5])),
    );
    complete("two members killed and repaired");
    the_simulator_agrees(&id, &members, &[0, 2, 3, 5]);

    // A new member takes its share; no shard has fewer than two copies on the way.
    members.push(start_member(&addr_0));
    ok(
        &members[6].repo.path,
        &["join", &id, "--from", &addr_0, "--capacity", "1G"],
    );
    within(
        Duration::from_secs(120),
        "placement with a new member",
        &members,
        || {
            let now = pick(&members, &[0, 2, 3, 5, 6]);
            let count = copies(LAYOUT, "films", &now);
            assert!(
                count.iter().all(|&c| c >= LAYOUT.replication),
                "a shard fell below {} copies during the move: {count:?}",
                LAYOUT.replication
            );
            placed(&owner, &now)
        },
    );
    let gained = held_shards(members[6].path(), "films");
    assert!(!gained.is_empty(), "the new member got no shard");
    complete("a member added");

    // A member leaves: it hands its shards over, then drops the collection.
    let leaving = &members[0];
    let left = json_of(&ok(&leaving.repo.path, &["--json", "leave", &id]));
    assert_eq!(left["state"], "leaving");
    within(
        Duration::from_secs(120),
        "the leaver dropped it",
        &members,
        || {
            let out = ipvec(&leaving.repo.path, &["collection", "info", "films"], &[]);
            match out.status.success() {
                true => Err("still held".into()),
                false => Ok(()),
            }
        },
    );
    within(
        Duration::from_secs(120),
        "placement after a leave",
        &members,
        || placed(&owner, &pick(&members, &[2, 3, 5, 6])),
    );
    complete("a member left");
    let refused = fails(&members[2].repo.path, &["leave", "nonesuch"]);
    assert!(refused.contains("nonesuch"), "{refused}");
}
