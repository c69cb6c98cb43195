//! What this node knows of each collection's replication: when it last announced it, the
//! newest head it has seen from the network, a fetch in progress, and how many peers the DHT
//! names as providers of each shard (counted in the background, at most every
//! [`COUNT_EVERY`]). The decisions are the follow core's ([`crate::cluster::follow`]); this
//! is its adapter: the core behind a lock, on a clock that starts with the node. Collection
//! info reads it; nothing here blocks a request on the network.

use std::{collections::HashSet, sync::Mutex, time::Instant};

use ipvec_protocol::head::HeadRecord;
use libp2p::PeerId;

use super::{Error, Node};
pub use crate::cluster::follow::COUNT_EVERY;
use crate::{
    cluster::{
        follow::{Action, Follow, Input},
        Millis,
    },
    collection::Collection,
    store::IrohBlockStore,
};
use ipvec_protocol::api::{Holder, MemberShard, ShardHolders, ShardInfo, ShardMap};
// Peers are named in `moving` as the TUI shows them.
use ipvec_tui::ui::format::id_tail;

/// An input of the follow core as the node feeds it.
pub(super) type FollowInput = Input<String, PeerId, HeadRecord>;
/// An action of the follow core as the node carries it out.
pub(super) type FollowAction = Action<String, PeerId, HeadRecord>;

/// Replication facts per collection id: the follow core, on the node's clock.
#[derive(Debug)]
pub(super) struct Tracker {
    core: Mutex<Follow<String, PeerId, HeadRecord>>,
    epoch: Instant,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            core: Mutex::default(),
            epoch: Instant::now(),
        }
    }
}

/// The replication part of a collection's info.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Replication {
    /// writer, syncing, following or caught up.
    pub state: &'static str,
    /// Of a fetch in progress, the share of the blocks discovered so far that arrived.
    pub sync_percent: Option<f64>,
    /// Versions behind the newest head seen from peers.
    pub lag: u64,
    /// Seconds since the last DHT announcement.
    pub announced_secs_ago: Option<u64>,
    /// Providers of each shard, once counted.
    pub providers: Option<Vec<u32>>,
}

impl Tracker {
    fn now(&self) -> Millis {
        Millis::from_duration(self.epoch.elapsed())
    }

    fn core(&self) -> std::sync::MutexGuard<'_, Follow<String, PeerId, HeadRecord>> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Feeds the follow core `input` now; the actions to carry out.
    pub fn handle(&self, input: FollowInput) -> Vec<FollowAction> {
        let now = self.now();
        self.core().handle(input, now)
    }

    /// The collection was just announced.
    pub fn announced(&self, id: &str) {
        self.handle(Input::Announced { id: id.to_string() });
    }

    /// Whether this node announced collection `id` since it started.
    pub fn was_announced(&self, id: &str) -> bool {
        self.core().was_announced(&id.to_string())
    }

    /// A valid head with sequence `seq` was seen from the network.
    pub fn seen(&self, id: &str, seq: u64) {
        self.handle(Input::Seen {
            id: id.to_string(),
            seq,
        });
    }

    /// A fetch walked `done` of the `known` blocks discovered so far; `None` when it ended.
    pub fn syncing(&self, id: &str, progress: Option<(u64, u64)>) {
        self.handle(Input::Syncing {
            id: id.to_string(),
            progress,
        });
    }

    /// Marks collection `id` as syncing until the returned guard is dropped.
    pub fn start_sync<'a>(&'a self, id: &'a str) -> Syncing<'a> {
        self.syncing(id, Some((0, 1)));
        Syncing { tracker: self, id }
    }

    /// Forgets a dropped collection.
    pub fn forget(&self, id: &str) {
        self.handle(Input::Forget { id: id.to_string() });
    }

    /// The replication state of collection `id`, whose local copy is at `seq`.
    pub fn of(&self, id: &str, seq: u64, writable: bool) -> Replication {
        let now = self.now();
        let status = self.core().status(&id.to_string(), seq, writable, now);
        Replication {
            state: status.state.as_str(),
            sync_percent: status.sync_percent,
            lag: status.lag,
            announced_secs_ago: status.announced_ago.map(|d| d.as_secs()),
            providers: status.providers,
        }
    }

    /// Claims the next provider count of `id` if the last one is older than [`COUNT_EVERY`].
    fn claim_count(&self, id: &str) -> bool {
        !self.handle(Input::Read { id: id.to_string() }).is_empty()
    }

    fn counted(&self, id: &str, counts: Option<Vec<u32>>) {
        self.handle(Input::Counted {
            id: id.to_string(),
            counts,
        });
    }
}

/// A fetch in progress; the collection stops syncing when it is dropped.
pub(super) struct Syncing<'a> {
    tracker: &'a Tracker,
    id: &'a str,
}

impl Syncing<'_> {
    /// Blocks walked and blocks discovered so far.
    pub fn progress(&self, done: u64, known: u64) {
        self.tracker.syncing(self.id, Some((done, known)));
    }
}

impl Drop for Syncing<'_> {
    fn drop(&mut self) {
        self.tracker.syncing(self.id, None);
    }
}

impl Node {
    /// The shards of `c` with their points and, once counted, their providers; starts a new
    /// count in the background when the last one is stale.
    pub(super) fn shard_status(
        &self,
        id: &str,
        c: &Collection<IrohBlockStore>,
        providers: Option<&[u32]>,
    ) -> Vec<ShardInfo> {
        self.count_providers(id, c.manifest().shards.len() as u32);
        let points = c.shard_points();
        c.manifest()
            .shards
            .iter()
            .enumerate()
            .map(|(i, root)| ShardInfo {
                shard: i as u32,
                root: root.to_string(),
                points: points.get(i).copied().unwrap_or(0),
                held: Some(c.shard(i as u32).is_some()),
                replicas: providers.and_then(|p| p.get(i).copied()),
            })
            .collect()
    }

    /// Counts, in the background, the distinct peers the DHT names as providers of each shard
    /// of collection `id` (this node included when it announced them), unless the last count
    /// is fresh ([`COUNT_EVERY`]) or one is running.
    pub(super) fn count_providers(&self, id: &str, shards: u32) {
        let Some(network) = self.inner.network.get().cloned() else {
            return;
        };
        if !self.inner.replication.claim_count(id) {
            return;
        }
        let node = self.clone();
        let id = id.to_string();
        self.inner.tasks.spawn(async move {
            let me_too = node.inner.replication.was_announced(&id);
            let mut counts = Vec::with_capacity(shards as usize);
            for shard in 0..shards {
                let key = ipvec_protocol::announce::shard_key(&id, shard);
                let Ok(found) = network.providers(key).await else {
                    node.inner.replication.counted(&id, None);
                    return;
                };
                let mut peers: HashSet<_> = found.into_iter().map(|p| p.peer_id).collect();
                if me_too {
                    peers.insert(network.peer_id());
                }
                counts.push(peers.len() as u32);
            }
            node.inner.replication.counted(&id, Some(counts));
        });
    }
}

impl Node {
    /// Who holds each shard of collection `name`: the peers the DHT names as its providers
    /// (this node among them when it holds the shard), which of them are alive, against the
    /// replication the manifest asks for. Without the network, this node alone.
    pub async fn shard_map(&self, name: &str) -> Result<ShardMap, Error> {
        let c = self.collection(name).await?;
        let (id, replication, shards) = {
            let c = c.read().await;
            let points = c.shard_points();
            let shards: Vec<(u32, String, u64, bool)> = (0..c.manifest().shards.len() as u32)
                .map(|n| {
                    let root = c
                        .shard_root(n)
                        .map(|r| r.tree.to_string())
                        .unwrap_or_default();
                    let points = points.get(n as usize).copied().unwrap_or(0);
                    (n, root, points, c.shard(n).is_some())
                })
                .collect();
            (c.id()?, c.manifest().replication, shards)
        };
        let network = self.inner.network.get().cloned();
        let me = network.as_ref().map(|n| n.peer_id());
        let connected: HashSet<PeerId> = match &network {
            Some(n) => n.peers().await?.into_iter().map(|p| p.peer_id).collect(),
            None => HashSet::new(),
        };
        let placed = self.placement_of(&id, shards.len() as u32, replication);
        let membership = self.membership_of(&id);
        // This node's moves as a member, and what the other members' records say they hold.
        let (moves, reported) = match membership {
            Some(m) => (
                m.shards,
                m.members
                    .into_iter()
                    .filter(|x| !x.here)
                    .map(|x| (x.peer_id, x.holds))
                    .collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let mut out = Vec::with_capacity(shards.len());
        for (shard, root, points, held) in shards {
            let mut peers: Vec<PeerId> = match &network {
                Some(n) => n
                    .providers(ipvec_protocol::announce::shard_key(&id, shard))
                    .await?
                    .into_iter()
                    .map(|p| p.peer_id)
                    .collect(),
                None => Vec::new(),
            };
            if let (true, Some(me)) = (held, me) {
                peers.push(me);
            }
            peers.sort_unstable();
            peers.dedup();
            let holders: Vec<Holder> = peers
                .into_iter()
                .map(|p| Holder {
                    peer_id: p.to_string(),
                    here: Some(p) == me,
                    alive: Some(p) == me || connected.contains(&p),
                })
                .collect();
            let holders = match (network.is_some(), held) {
                // Without the network: this node, when it holds the shard.
                (false, true) => vec![Holder {
                    peer_id: "this node".into(),
                    here: true,
                    alive: true,
                }],
                _ => holders,
            };
            let placed: Vec<String> = placed
                .as_ref()
                .and_then(|p| p.get(shard as usize))
                .map(|peers| peers.iter().map(|p| p.to_string()).collect())
                .unwrap_or_default();
            let moving = moving(shard, &placed, moves.get(shard as usize), &reported);
            out.push(ShardHolders {
                shard,
                root,
                points,
                live: holders.iter().filter(|h| h.alive).count() as u32,
                holders,
                placed,
                moving,
            });
        }
        Ok(ShardMap {
            name: name.to_string(),
            id,
            replication,
            shards: out,
        })
    }
}

/// The moves of `shard` under way, as the shard map shows them: this node's (`here`, as a
/// member) and those of the other members by what their records say they hold
/// (`reported`: peer id and shards), against the members placement gives it (`placed`).
fn moving(
    shard: u32,
    placed: &[String],
    here: Option<&MemberShard>,
    reported: &[(String, Vec<u32>)],
) -> Option<String> {
    let here = here.and_then(|s| {
        if s.fetching {
            Some("fetching here".to_string())
        } else if s.held && !s.placed {
            Some("handing over here".to_string())
        } else {
            None
        }
    });
    let elsewhere = reported.iter().filter_map(|(peer, holds)| {
        match (placed.contains(peer), holds.contains(&shard)) {
            (true, false) => Some(format!("fetching on {}", id_tail(peer))),
            (false, true) => Some(format!("handing over on {}", id_tail(peer))),
            _ => None,
        }
    });
    let all: Vec<String> = here.into_iter().chain(elsewhere).collect();
    (!all.is_empty()).then(|| all.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_what_was_seen() {
        let t = Tracker::default();
        assert_eq!(t.of("c", 3, true).state, "writer");
        assert_eq!(t.of("c", 3, false).state, "caught up");
        t.seen("c", 5);
        let r = t.of("c", 3, false);
        assert_eq!((r.state, r.lag), ("following", 2));
        {
            let sync = t.start_sync("c");
            sync.progress(30, 120);
            let r = t.of("c", 3, false);
            assert_eq!((r.state, r.sync_percent), ("syncing", Some(25.0)));
        }
        // The fetch ended (or was dropped): back to following until the head is applied.
        assert_eq!(t.of("c", 3, false).state, "following");
        assert_eq!(t.of("c", 5, false).state, "caught up");
        // An older head seen later does not lower the newest.
        t.seen("c", 4);
        assert_eq!(t.of("c", 3, false).lag, 2);
        assert_eq!(t.of("c", 3, false).announced_secs_ago, None);
        t.announced("c");
        assert_eq!(t.of("c", 3, false).announced_secs_ago, Some(0));
        assert!(t.was_announced("c"));
        // One provider count at a time (the core's tests cover COUNT_EVERY).
        assert!(t.claim_count("c"));
        assert!(!t.claim_count("c"), "a count is already running");
        t.counted("c", Some(vec![2, 1]));
        assert_eq!(t.of("c", 0, true).providers, Some(vec![2, 1]));
        t.forget("c");
        assert_eq!(t.of("c", 3, false).lag, 0);
    }

    #[test]
    fn moves_are_this_nodes_and_what_other_members_records_say() {
        let placed = vec![
            "12D3KooWaaaaaaAAAAAA".to_string(),
            "12D3KooWbbbbbbBBBBBB".to_string(),
        ];
        let reported = vec![
            // Placed, holds it: no move.
            ("12D3KooWaaaaaaAAAAAA".to_string(), vec![0, 3]),
            // Placed, does not hold it yet.
            ("12D3KooWbbbbbbBBBBBB".to_string(), vec![1]),
            // Holds it, placed elsewhere.
            ("12D3KooWccccccCCCCCC".to_string(), vec![3]),
        ];
        assert_eq!(
            moving(3, &placed, None, &reported).as_deref(),
            Some("fetching on …BBBBBB, handing over on …CCCCCC")
        );
        let fetching = MemberShard {
            shard: 3,
            placed: true,
            fetching: true,
            ..MemberShard::default()
        };
        assert_eq!(
            moving(3, &placed, Some(&fetching), &reported[..1]).as_deref(),
            Some("fetching here")
        );
        let handing = MemberShard {
            shard: 3,
            held: true,
            ..MemberShard::default()
        };
        assert_eq!(
            moving(3, &placed, Some(&handing), &[]).as_deref(),
            Some("handing over here")
        );
        // Nothing under way: every placed member holds it, nobody else does.
        assert_eq!(moving(0, &placed[..1], None, &reported), None);
    }
}
