//! Replication: following the writers' heads of the collections held here, and answering
//! peers that ask for the heads of ours. Fetching a collection by its id, and the blocks of a
//! version, is [`super::fetch`]: only blocks the store lacks move, so a second fetch moves
//! just what changed.
//!
//! Following: one task reads the gossiped heads (the open collections by id, never waiting
//! on a collection's lock) and hands them to the follow core ([`crate::cluster::follow`]),
//! which gives each its verdict and decides the catch-ups: at most [`MAX_CATCH_UPS`] at
//! once, a newer head that comes meanwhile waiting its turn. This file carries those out: a
//! verdict to gossipsub, a catch-up task that reports its end to the core. Both are the
//! node's tasks, stopped by [`Node::stop_tasks`].

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use ipvec_protocol::{dagcbor, head::HeadRecord};
use libp2p::PeerId;

use super::{
    status::{FollowAction, FollowInput},
    Error, Inner, Node,
};
pub use crate::cluster::follow::MAX_CATCH_UPS;

/// How often a node asks its connected peers for the heads of the collections it holds
/// ([`Node::poll_heads`]).
pub const HEAD_POLL: Duration = Duration::from_secs(5);
/// Peers asked for each collection's head at each poll.
pub const POLLED_PEERS: usize = 8;
use crate::cluster::follow::{Action, Input, Local};

impl Node {
    /// Answers `/ipvec/head/1.0.0` from this node's collections (a weak handle, so the
    /// network does not keep the node alive).
    pub(super) fn serve_heads(&self, network: &crate::net::Network) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        network.serve_heads(Arc::new(move |id: String| {
            let weak = weak.clone();
            Box::pin(async move {
                let node = Node {
                    inner: weak.upgrade()?,
                };
                node.head_of(&id).await
            })
        }));
    }

    /// The open collection whose id is `id`, by name (no collection's lock taken).
    pub(super) fn name_of_id(&self, id: &str) -> Option<String> {
        self.inner.ids.get(id).map(|k| k.name)
    }

    /// Stops the node's background tasks and its network: in-flight fetches end at once
    /// (the network first), then the node's own tasks get up to `bound` to finish.
    pub async fn stop_tasks(&self, bound: Duration) {
        if let Some(network) = self.inner.network.get() {
            network.shutdown(bound).await;
        }
        let stopped = self.inner.tasks.shutdown(bound).await;
        tracing::debug!(
            ended = stopped.ended,
            aborted = stopped.aborted,
            "node tasks stopped"
        );
    }

    /// The DAG-CBOR signed head of collection `id`, if this node holds it.
    async fn head_of(&self, id: &str) -> Option<Vec<u8>> {
        let name = self.name_of_id(id)?;
        let c = self.collection(&name).await.ok()?;
        let c = c.read().await;
        dagcbor::encode(c.head()).ok()
    }

    /// Joins collection `name`'s heads topic; its writer also publishes its current head.
    pub(super) async fn gossip_head(&self, name: &str) -> Result<(), Error> {
        let Ok(network) = self.network() else {
            return Ok(());
        };
        let c = self.collection(name).await?;
        let (id, head, writable, root, whole) = {
            let c = c.read().await;
            let head = dagcbor::encode(c.head())?;
            (c.id()?, head, c.writable(), c.root(), c.holds_all())
        };
        // IPFS nodes can find the version's blocks here (when the node runs the IPFS DHT and
        // holds them all).
        if whole {
            network.provide_on_ipfs(root).await?;
        }
        let topic = crate::net::heads_topic(&id);
        network.subscribe(topic.clone()).await?;
        self.observe_members(name).await?;
        if writable {
            network.publish(topic, head).await?;
        }
        Ok(())
    }

    /// Judges the heads that arrive over gossipsub, forwarding only valid news, and moves
    /// replicas to them (fetching only the blocks they lack). Runs until the network stops.
    pub fn follow(&self) {
        let Ok(network) = self.network() else { return };
        let Some(mut gossip) = network.take_gossip() else {
            return;
        };
        let node = self.clone();
        self.inner.tasks.spawn(async move {
            let poller = node.clone();
            node.inner.tasks.spawn(async move {
                let mut every = tokio::time::interval(HEAD_POLL);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    poller.poll_heads().await;
                }
            });
            while let Some(message) = gossip.recv().await {
                if message
                    .topic
                    .starts_with(&super::members::members_topic(""))
                {
                    let verdict = node.judge_member(&message);
                    let Ok(network) = node.network() else { return };
                    let _ = network.judge(message, verdict).await;
                    continue;
                }
                let input = node.judge(&message).await;
                for action in node.inner.replication.handle(input) {
                    match action {
                        Action::Verdict { verdict, .. } => {
                            node.inner.metrics.head(match verdict {
                                crate::net::Verdict::Accept => "accepted",
                                crate::net::Verdict::Ignore => "ignored",
                                crate::net::Verdict::Reject => "rejected",
                            });
                            let Ok(network) = node.network() else { return };
                            let _ = network.judge(message.clone(), verdict).await;
                        }
                        other => node.carry_out(other),
                    }
                }
            }
        });
    }

    /// Anti-entropy: asks up to [`POLLED_PEERS`] connected peers for their head of each
    /// collection held here and follows the newer ones as if gossiped. Gossip reaches only
    /// the peers connected when a head is published: a node cut off meanwhile (a partition,
    /// a restart, a denial lifted) learns the heads it missed this way, and writers merge
    /// each other's versions again after a partition heals.
    async fn poll_heads(&self) {
        let Ok(network) = self.network() else { return };
        let Ok(peers) = network.peers().await else {
            return;
        };
        for (name, shared) in self.open_collections().await {
            let Ok(id) = shared.read().await.id() else {
                continue;
            };
            for peer in peers.iter().take(POLLED_PEERS) {
                self.poll_head(&name, &id, peer.peer_id).await;
            }
        }
    }

    /// Asks `peer` for its head of collection `id` (here `name`) and follows it if newer.
    pub(super) async fn poll_head(&self, name: &str, id: &str, peer: PeerId) {
        let Ok(network) = self.network() else { return };
        let Ok(Some(bytes)) = network.ask_head(peer, id).await else {
            return;
        };
        let input = self.judge_head(id, &bytes, peer).await;
        for action in self.inner.replication.handle(input) {
            // Nothing to tell gossipsub of a head asked for.
            if let Action::Verdict { verdict, .. } = action {
                // Counted with the gossiped ones when refused: a head signed by an unknown or
                // removed writer is refused however it comes.
                if verdict == crate::net::Verdict::Reject {
                    self.inner.metrics.head("rejected");
                    tracing::debug!(collection = %name, %peer, "a peer answered a head not signed by an allowed writer");
                }
                continue;
            }
            self.carry_out(action);
        }
    }

    /// Carries out an action of the follow core: a catch-up on a task of its own, which
    /// tells the core when it ends (and carries out what that starts).
    fn carry_out(&self, action: FollowAction) {
        let Action::CatchUp { id, head, from, .. } = action else {
            return;
        };
        let follower = self.clone();
        // Left to finish: a stopped network ends its fetch, and a replica is never left half
        // advanced.
        let spawned = self.inner.tasks.spawn_finishing(async move {
            let moved = match follower.name_of_id(collection_of_stream(&id)) {
                Some(name) => match follower.catch_up(&name, head, from).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(collection = %name, error = %e, "cannot follow the new head yet");
                        false
                    }
                },
                None => false,
            };
            let ended = Input::CatchUpEnded { id, moved };
            for next in follower.inner.replication.handle(ended) {
                follower.carry_out(next);
            }
        });
        if !spawned {
            tracing::debug!("the node is stopping: no catch-up");
        }
    }

    /// A gossiped head as the follow core takes it: its collection and sequence, whether an
    /// allowed writer signed it, and what this node holds of the collection.
    async fn judge(&self, message: &crate::net::Gossip) -> FollowInput {
        match message.topic.strip_prefix(&crate::net::heads_topic("")) {
            Some(id) => self.judge_head(id, &message.data, message.from).await,
            None => Input::Malformed { from: message.from },
        }
    }

    /// A head of collection `id` (DAG-CBOR bytes, gossiped or answered by `from`) as the
    /// follow core takes it.
    async fn judge_head(&self, id: &str, bytes: &[u8], from: PeerId) -> FollowInput {
        let malformed = Input::Malformed { from };
        let Ok(head) = dagcbor::decode::<HeadRecord>(bytes) else {
            return malformed;
        };
        if ipvec_protocol::head::collection_id(&head.collection)
            .ok()
            .as_deref()
            != Some(id)
        {
            return malformed;
        }
        let (id, seq) = (id.to_string(), head.seq);
        // Read without the collection's lock: a long write must not hold up gossip.
        let known = self.inner.ids.get(&id);
        let stream = stream_of(&id, &head);
        let (signed, local) = match known {
            // Not held here: the core ignores it.
            None => (false, None),
            Some(known) => {
                let writers: Vec<&[u8]> = known.writers.iter().map(|w| w.as_slice()).collect();
                let signed = head.verify(&writers).is_ok();
                if !signed {
                    tracing::warn!(collection = %known.name, %from, "rejected a head not signed by an allowed writer");
                }
                // Exact when the collection is idle; while a write holds it, as last
                // recorded here.
                let open = self
                    .inner
                    .collections
                    .lock()
                    .await
                    .get(&known.name)
                    .and_then(|slot| slot.open());
                let merged_seq = |heads: Vec<HeadRecord>| {
                    heads
                        .into_iter()
                        .find(|h| h.writer == head.writer)
                        .map_or(0, |h| h.seq)
                };
                let held = open
                    .as_ref()
                    .and_then(|c| c.try_read().ok().map(|c| merged_seq(c.writer_heads())))
                    .unwrap_or_else(|| known.seqs.get(&head.writer).copied().unwrap_or(0));
                // A writer follows the other writers' heads, not its own.
                let local = Local {
                    seq: held,
                    writable: known.signer.as_deref() == Some(head.writer.as_slice()),
                };
                (signed, Some(local))
            }
        };
        Input::Head {
            id: stream,
            seq,
            from,
            signed,
            local,
            head,
        }
    }

    /// Fetches the DAG of `head` from `from` and the connected peers, then moves replica
    /// `name` to it.
    async fn catch_up(&self, name: &str, head: HeadRecord, from: PeerId) -> Result<(), Error> {
        let network = self.network()?;
        let mut peers = vec![from];
        peers.extend(
            network
                .peers()
                .await?
                .into_iter()
                .map(|p| p.peer_id)
                .filter(|p| *p != from),
        );
        let held = self.partial_holding(name).await?;
        let (moved, imported) = {
            let writing = self.inner.gc_lock.read().await;
            let id = ipvec_protocol::head::collection_id(&head.collection)?;
            self.fetch_tracked(&id, head.manifest, held.as_deref(), false, &peers, |_| {})
                .await?;
            self.move_replica(name, head, &writing).await?
        };
        self.after_move(name, moved, &imported).await?;
        tracing::info!(collection = %name, root = %imported.root, points = imported.points, "followed a new head");
        Ok(())
    }
}

/// The follow core tracks the heads of each collection and writer as a stream of their own:
/// the owner's under the collection id (which collection info's replication state reads),
/// another writer's under `id/writer id`, so that one writer's newer head never displaces
/// another writer's waiting one. (`/` is not in the base58 alphabet of ids.)
pub(super) fn stream_of(id: &str, head: &HeadRecord) -> String {
    if head.writer == head.collection {
        return id.to_string();
    }
    let writer = ipvec_protocol::head::collection_id(&head.writer).unwrap_or_default();
    format!("{id}/{writer}")
}

/// The collection id of a follow stream (see [`stream_of`]).
fn collection_of_stream(stream: &str) -> &str {
    stream.split('/').next().unwrap_or(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Verdict;

    #[tokio::test]
    async fn a_gossiped_head_is_judged_while_its_collection_is_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let repo = crate::repo::Repo::init(&dir.path().join("repo"))
            .await
            .unwrap();
        let config = repo.config().clone();
        let node = Node::new(repo, config);
        let create = serde_json::json!({"name": "c", "dim": 4});
        node.create_collection(serde_json::from_value(create).unwrap())
            .await
            .unwrap();
        let c = node.collection("c").await.unwrap();
        let (id, head) = {
            let c = c.read().await;
            (c.id().unwrap(), dagcbor::encode(c.head()).unwrap())
        };
        let gossip = |topic: String| crate::net::Gossip {
            topic,
            data: head.clone(),
            from: PeerId::random(),
            id: libp2p::gossipsub::MessageId::new(b"1"),
        };
        {
            // A long write holds the collection: judging its heads does not wait for it.
            let _writing = c.write().await;
            let node = &node;
            let judge = |message| async move {
                let input = tokio::time::timeout(Duration::from_secs(10), node.judge(&message))
                    .await
                    .expect("judging a head waited for the collection's write");
                node.inner.replication.handle(input)
            };
            let verdict_of = |actions: Vec<FollowAction>| match actions.as_slice() {
                [Action::Verdict { verdict, .. }] => *verdict,
                other => panic!("{other:?}"),
            };
            let actions = judge(gossip(crate::net::heads_topic(&id))).await;
            assert_eq!(
                verdict_of(actions),
                Verdict::Ignore,
                "its own current head is no news, and starts no catch-up"
            );
            // On another collection's topic, the head is refused.
            let other = crate::net::heads_topic("k51other");
            assert_eq!(verdict_of(judge(gossip(other)).await), Verdict::Reject);
        }
        assert_eq!(node.name_of_id(&id).as_deref(), Some("c"));
        node.drop_collection("c").await.unwrap();
        assert_eq!(
            node.name_of_id(&id),
            None,
            "a dropped collection is forgotten"
        );
        node.close().await.unwrap();
    }
}
