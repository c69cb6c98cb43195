//! Carrying out a member's rebalancer actions: fetching a shard (only the blocks missing),
//! announcing it, dropping one handed over, reconciling with a co-holder, leaving.

use std::time::Duration;

use cid::Cid;
use ipvec_protocol::announce;
use libp2p::PeerId;

use super::super::{Error, Node};
use crate::cluster::rebalance::{Action, Input};

/// How long a shard fetch may take before it counts as failed (and is tried again later).
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// How long dialling a holder may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

impl Node {
    /// Carries out the rebalancer's actions for collection `id`, each on a task of its own.
    pub(super) fn carry_out_members(&self, id: &str, actions: Vec<Action<PeerId, Cid>>) {
        for action in actions {
            let node = self.clone();
            let id = id.to_string();
            let spawned = self.inner.tasks.spawn(async move {
                let next = node.carry_out_member(&id, action).await;
                node.carry_out_members(&id, next);
            });
            if !spawned {
                return;
            }
        }
    }

    async fn carry_out_member(
        &self,
        id: &str,
        action: Action<PeerId, Cid>,
    ) -> Vec<Action<PeerId, Cid>> {
        let Some(name) = self.name_of_id(id) else {
            return Vec::new();
        };
        // A fetch or drop ended: its shard is no longer under way, and its outcome (if any)
        // goes to the rebalancer at once, before a tick can judge the shard.
        let ended = |shard: u32, input: Option<Input<PeerId, Cid>>| {
            let now = self.now();
            self.inner
                .groups
                .with(id, |g| {
                    let own = g.own.as_mut()?;
                    own.ended(shard);
                    Some(input.map(|i| own.handle(i, now)).unwrap_or_default())
                })
                .flatten()
                .unwrap_or_default()
        };
        match action {
            // Bounded: a fetch that hangs would hold one of the member's fetch slots for good.
            Action::Fetch { shard, root } => {
                match tokio::time::timeout(FETCH_TIMEOUT, self.fetch_shard(&name, id, shard))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::unavailable(format!(
                            "the fetch took over {} s; trying again",
                            FETCH_TIMEOUT.as_secs()
                        )))
                    }) {
                    Ok(held) => ended(shard, Some(Input::Fetched { shard, root: held })),
                    Err(e) => {
                        tracing::warn!(collection = %name, shard, %root, error = %e, "cannot fetch a shard placement gives this node yet");
                        ended(shard, Some(Input::FetchFailed { shard }))
                    }
                }
            }
            Action::Announce { shard, root } => {
                let fresh = self
                    .inner
                    .groups
                    .with(id, |g| {
                        let own = g.own.as_mut()?;
                        let fresh = own.announced.insert(shard, root) != Some(root);
                        if fresh {
                            own.published = None;
                        }
                        Some(fresh)
                    })
                    .flatten()
                    .unwrap_or(false);
                // Provided again at each announcement: the record then reaches the peers
                // closest to the key now, not only those the DHT knew when it was first put.
                if let Ok(network) = self.network() {
                    let _ = network.provide(announce::shard_key(id, shard)).await;
                }
                if fresh {
                    self.publish_member(id).await;
                }
                Vec::new()
            }
            Action::Drop { shard } => {
                let released = self.release_shard(&name, shard).await;
                // Still held if it failed: the next tick tells the rebalancer so.
                ended(shard, None);
                if let Err(e) = released {
                    tracing::warn!(collection = %name, shard, error = %e, "cannot drop a shard handed over");
                    return Vec::new();
                }
                self.inner.groups.with(id, |g| {
                    if let Some(own) = g.own.as_mut() {
                        own.announced.remove(&shard);
                        own.published = None;
                    }
                });
                if let Ok(network) = self.network() {
                    let _ = network.stop_providing(announce::shard_key(id, shard)).await;
                }
                self.publish_member(id).await;
                Vec::new()
            }
            Action::Reconcile { peer, .. } => {
                self.poll_head(&name, id, peer).await;
                Vec::new()
            }
            Action::Left => {
                self.publish_member(id).await;
                self.inner.groups.with(id, |g| g.own = None);
                match self.drop_collection(&name).await {
                    Ok(_) => {
                        tracing::info!(collection = %name, "left the collection: its shards are held by their new holders")
                    }
                    Err(e) => {
                        tracing::warn!(collection = %name, error = %e, "left the collection but cannot drop it")
                    }
                }
                Vec::new()
            }
        }
    }

    /// Fetches the tree of shard `shard` of replica `name` at its version (only the blocks
    /// missing) and holds it; answers the shard root it holds.
    async fn fetch_shard(&self, name: &str, id: &str, shard: u32) -> Result<Cid, Error> {
        let network = self.network()?;
        // The members that say they hold it first (dialled if need be), then every peer
        // connected.
        let now = self.now();
        let holders: Vec<PeerId> = self
            .inner
            .groups
            .with(id, |g| {
                // Members only: a peer that dropped out may be gone for good.
                let members = g.members.members(now);
                g.holds
                    .iter()
                    .filter(|(peer, held)| {
                        held.contains_key(&shard) && members.iter().any(|m| m.peer == **peer)
                    })
                    .map(|(peer, _)| *peer)
                    .collect()
            })
            .unwrap_or_default();
        let mut peers = Vec::new();
        for peer in holders.into_iter().filter(|p| *p != network.peer_id()) {
            let dialled = tokio::time::timeout(DIAL_TIMEOUT, network.dial_peer(peer)).await;
            if matches!(dialled, Ok(Ok(_))) {
                peers.push(peer);
            }
        }
        for p in network.peers().await? {
            if !peers.contains(&p.peer_id) {
                peers.push(p.peer_id);
            }
        }
        let c = self.collection(name).await?;
        let _writing = self.inner.gc_lock.read().await;
        let (version, held) = {
            let c = c.read().await;
            (c.root(), c.held_shards())
        };
        if held.contains(&shard) {
            // Held already (a catch-up got there first).
            let c = c.read().await;
            if c.root() == version {
                return c
                    .manifest()
                    .shards
                    .get(shard as usize)
                    .copied()
                    .ok_or_else(|| Error::internal("a held shard is not in the manifest"));
            }
        }
        self.fetch_tracked(id, version, Some(&[shard]), false, &peers, |_| {})
            .await?;
        // The index over the new held set is built under the read lock, so searches go on
        // meanwhile; it is put in effect under the write lock unless another fetch or drop
        // changed the held set in between (then again, from what it is now).
        let c = loop {
            let prepared = {
                let c = c.read().await;
                if c.root() != version {
                    return Err(Error::unavailable(
                        "the collection moved to a new version during the fetch; fetching again",
                    ));
                }
                let mut held = c.held_shards();
                held.push(shard);
                c.prepare_held(&held).await?
            };
            let mut guard = c.write().await;
            if guard.finish_held(prepared).await? {
                break guard;
            }
        };
        c.manifest()
            .shards
            .get(shard as usize)
            .copied()
            .ok_or_else(|| Error::internal("a held shard is not in the manifest"))
    }

    /// Stops holding shard `shard` of replica `name`: no longer searched nor announced, and
    /// its blocks unpinned (the next gc removes them).
    async fn release_shard(&self, name: &str, shard: u32) -> Result<(), Error> {
        let c = self.collection(name).await?;
        let mut c = c.write().await;
        let held: Vec<u32> = c
            .held_shards()
            .into_iter()
            .filter(|&s| s != shard)
            .collect();
        c.set_held(&held).await?;
        Ok(())
    }
}
