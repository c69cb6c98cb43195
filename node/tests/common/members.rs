//! Members of a community collection as real daemons, and the checks the member tests share:
//! each member holds exactly what placement over the live members gives it, at the current
//! version.

use std::time::{Duration, Instant};

use ipvec_node::cluster::placement::{place, Member};
use libp2p::PeerId;
use serde_json::Value;

use super::*;

/// Member records hold 15 s (renewed every 5 s): a killed or cut-off member drops out that
/// long after its last one.
pub const ENV: &[(&str, &str)] = &[("IPVEC_P2P_MEMBER_TTL_SECS", "15")];

/// How a collection is laid out: its shards and the holders wanted for each.
#[derive(Clone, Copy)]
pub struct Layout {
    pub shards: u32,
    pub replication: usize,
}

/// A member daemon and what the test knows of it.
pub struct Node {
    pub repo: TestRepo,
    pub daemon: Option<Daemon>,
    pub peer: PeerId,
}

impl Node {
    pub fn path(&self) -> &Path {
        &self.repo.path
    }
}

/// A daemon that knows `bootstrap`, once it is connected to it.
pub fn start_member(bootstrap: &str) -> Node {
    let repo = new_repo();
    let daemon = Daemon::start_with(&repo.path, ENV, &["--bootstrap", bootstrap]);
    eventually("member connected", || !peers_of(&repo.path).is_empty());
    let peer = peer_of(&repo.path).parse().unwrap();
    Node {
        repo,
        daemon: Some(daemon),
        peer,
    }
}

/// Kills a member's daemon (SIGKILL) and reaps it.
pub fn kill(node: &mut Node) {
    let mut d = node.daemon.take().unwrap();
    signal("KILL", d.pid());
    d.child.take().unwrap().wait().unwrap();
}

pub fn pick<'a>(members: &'a [Node], which: &[usize]) -> Vec<&'a Node> {
    which.iter().map(|&i| &members[i]).collect()
}

/// Polls `check` every second for up to `bound`; on a timeout, fails with the warnings in the
/// logs of `members`.
pub fn within(
    bound: Duration,
    what: &str,
    members: &[Node],
    mut check: impl FnMut() -> Result<(), String>,
) {
    let started = Instant::now();
    loop {
        match check() {
            Ok(()) => return,
            Err(why) if started.elapsed() > bound => {
                let logs: Vec<String> = members
                    .iter()
                    .map(|m| {
                        let log = std::fs::read_to_string(
                            m.repo.path.parent().unwrap().join("daemon.log"),
                        )
                        .unwrap_or_default();
                        let warnings: Vec<&str> = log
                            .lines()
                            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                            .collect();
                        format!("{}:\n{}", m.peer, warnings.join("\n"))
                    })
                    .collect();
                panic!(
                    "timed out after {bound:?} waiting for {what}: {why}\n{}",
                    logs.join("\n")
                )
            }
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// The shards the replica in `repo` holds and searches (`collection info`'s `held_shards`).
pub fn held_shards(repo: &Path, name: &str) -> Vec<u32> {
    json_of(&ok(repo, &["--json", "collection", "info", name]))["held_shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap() as u32)
        .collect()
}

/// How many of `members` hold each shard, by what each replica searches.
pub fn copies(layout: Layout, name: &str, members: &[&Node]) -> Vec<usize> {
    let mut count = vec![0; layout.shards as usize];
    for m in members {
        for s in held_shards(m.path(), name) {
            count[s as usize] += 1;
        }
    }
    count
}

/// Whether every one of `members` knows exactly those members, and holds exactly the shards
/// placement over them gives it, each at the collection's current version.
pub fn placed(owner: &[u8], layout: Layout, name: &str, members: &[&Node]) -> Result<(), String> {
    let list: Vec<Member<PeerId>> = members
        .iter()
        .map(|m| Member {
            peer: m.peer,
            capacity: 1 << 30,
        })
        .collect();
    let placement = place(owner, layout.shards, &list, layout.replication);
    for m in members {
        let out = ipvec(m.path(), &["--json", "collection", "members", name], &[]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let info: Value = serde_json::from_slice(&out.stdout).unwrap();
        let known = info["members"].as_array().unwrap().len();
        if known != members.len() {
            return Err(format!(
                "{} knows {known} members: {}",
                m.peer, info["members"]
            ));
        }
        let held: Vec<u32> = info["shards"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["held"] == true)
            .map(|s| s["shard"].as_u64().unwrap() as u32)
            .collect();
        let want = placement.shards_of(&m.peer);
        // What the replica itself holds and searches, not only what the member believes.
        let searched = held_shards(m.path(), name);
        if searched != held {
            return Err(format!(
                "{} holds {searched:?} but believes {held:?}",
                m.peer
            ));
        }
        if held != want {
            return Err(format!(
                "{} holds {held:?}, placement gives {want:?}; its shards: {}",
                m.peer, info["shards"]
            ));
        }
        let stale: Vec<&Value> = info["shards"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["held"] == true && s["current"] != true)
            .collect();
        if !stale.is_empty() {
            return Err(format!("{} holds stale shards: {stale:?}", m.peer));
        }
    }
    Ok(())
}

/// The asker's federated search of collection `id` for `vector` (as `--vector` takes it):
/// its hits' ids and the coverage report.
pub fn federated_search(asker: &Path, id: &str, vector: &str, k: usize) -> (Vec<u64>, Value) {
    let k = k.to_string();
    let answer = json_of(&ok(
        asker,
        &[
            "--json",
            "search",
            id,
            "--vector",
            vector,
            "-k",
            &k,
            "--exact",
            // Coverage is under test here, not latency: room for slow DHT lookups on a
            // loaded machine.
            "--deadline-ms",
            "30000",
        ],
    ));
    let ids = answer["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_u64().unwrap())
        .collect();
    (ids, answer["coverage"].clone())
}
