//! Replication: fetching another node's collection by its id, and answering peers that ask
//! for the heads of ours. The tree, manifests and history move over Bitswap; only blocks the
//! store lacks are fetched, so a second fetch moves just what changed.
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

use ipvec_protocol::{
    announce, dagcbor,
    head::HeadRecord,
    manifest::{Manifest, ShardRoot},
};
use libp2p::PeerId;

use crate::{
    cluster::walk::FetchTotals,
    collection::{check_held, read_roots, snapshot},
    store::BlockStore,
};

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
/// How many times a fetch asks a peer for a head again when the request fails.
const HEAD_RETRIES: usize = 2;
use crate::cluster::follow::{Action, Input, Local};
use ipvec_protocol::api::CollectionImported;

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

    /// Fetches collection `id` from the peers at `from` (dialed first), or from the peers the
    /// DHT names as its providers: the newest signed head any of them holds, then its whole
    /// DAG over Bitswap (every block checked), registered as a read-only replica under `name`
    /// (default: its own). Fetching a collection already replicated here moves it to the
    /// newest head, fetching only the blocks it lacks.
    pub async fn fetch_collection(
        &self,
        id: &str,
        name: Option<String>,
        from: &[String],
        shards: Option<Vec<u32>>,
    ) -> Result<CollectionImported, Error> {
        if shards.as_ref().is_some_and(|s| s.is_empty()) {
            return Err(Error::invalid(
                "name at least one shard to hold (`--shards 0,3`), or none to fetch them all",
            ));
        }
        self.fetch_holding(id, name, from, shards).await
    }

    /// [`Node::fetch_collection`], holding the shards `shards` when new here (none: a
    /// member that placement has given nothing yet).
    pub(super) async fn fetch_holding(
        &self,
        id: &str,
        name: Option<String>,
        from: &[String],
        shards: Option<Vec<u32>>,
    ) -> Result<CollectionImported, Error> {
        self.observed("fetch", "", async {
            let peers = self.peers_for(id, from).await?;
            let head = self.newest_head(id, &peers).await?;
            self.inner.replication.seen(&stream_of(id, &head), head.seq);
            let job = self
                .inner
                .jobs
                .start("fetch", id.to_string(), "blocks", None);
            // A replica already here keeps the shards it holds.
            let existing = self.name_of_id(id);
            let held = match &existing {
                Some(name) => self.partial_holding(name).await?,
                None => shards,
            };
            // gc's lock is held from the fetch until the new version is pinned.
            let writing = self.inner.gc_lock.read().await;
            // A new replica fetches the index snapshot too, to load instead of building.
            let new = existing.is_none();
            self.fetch_tracked(id, head.manifest, held.as_deref(), new, &peers, |t| {
                job.set(t.blocks)
            })
            .await?;
            self.store()
                .put(
                    ipvec_protocol::cid::DAG_CBOR,
                    bytes::Bytes::from(dagcbor::encode(&head)?),
                )
                .await?;
            match existing {
                Some(existing) => {
                    let (moved, imported) = self.move_replica(&existing, head, &writing).await?;
                    drop(writing);
                    self.after_move(&existing, moved, &imported).await?;
                    Ok(imported)
                }
                None => {
                    // Registering takes the name's turn, which a create holds while it waits
                    // for gc's lock: taken in the other order here, the two could deadlock
                    // behind a waiting gc. A gc in between may collect blocks just fetched;
                    // the replica's open then finds them missing and says so.
                    drop(writing);
                    self.register(head, name, held).await
                }
            }
        })
        .await
    }

    /// The newest head of collection `id` among `peers`' answers, its signature checked.
    pub(super) async fn newest_head(
        &self,
        id: &str,
        peers: &[PeerId],
    ) -> Result<HeadRecord, Error> {
        let network = self.network()?;
        let mut best: Option<HeadRecord> = None;
        // Peers whose circuit breaker is open are asked last.
        for peer in &self.open_peers_last(peers) {
            // A peer busy accepting other streams (head polls among them) may drop ours:
            // asked again twice, a moment later, before it counts as failed.
            let mut answer = network.ask_head(*peer, id).await;
            for _ in 0..HEAD_RETRIES {
                if answer.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                answer = network.ask_head(*peer, id).await;
            }
            match &answer {
                Ok(_) => self.peer_reached(peer),
                Err(_) => self.peer_failed(peer),
            }
            let Ok(Some(bytes)) = answer else {
                continue;
            };
            let Ok(head) = dagcbor::decode::<HeadRecord>(&bytes) else {
                tracing::debug!(%peer, "a peer answered a malformed head");
                continue;
            };
            let owner_ok =
                ipvec_protocol::head::collection_id(&head.collection).is_ok_and(|c| c == id);
            if !owner_ok || head.verify(&[head.writer.as_slice()]).is_err() {
                tracing::warn!(%peer, "a peer answered a head that is not of this collection or badly signed");
                continue;
            }
            if best.as_ref().is_none_or(|b| head.seq > b.seq) {
                best = Some(head);
            }
        }
        best.ok_or_else(|| {
            Error::not_found(format!(
                "none of the {} peers found holds collection {id}",
                peers.len()
            ))
        })
    }

    /// Moves replica `name` to `head`, whose DAG was stored under the hold `_writing` of
    /// gc's lock: held until the new version is pinned, so that gc cannot collect the blocks
    /// in between. Whether the replica moved, and what it is now.
    async fn move_replica(
        &self,
        name: &str,
        head: HeadRecord,
        _writing: &tokio::sync::RwLockReadGuard<'_, ()>,
    ) -> Result<(bool, CollectionImported), Error> {
        let shared = self.collection(name).await?;
        let mut guard = shared.write().await;
        // An older head, or this node's own, changes nothing; a writer signs the merge.
        let moved = guard.advance(head).await?;
        // The owner may just have listed this node's key as a writer.
        guard.take_writer_key(self.inner.repo.key())?;
        self.inner.ids.opened(name, &guard);
        if let (Ok(network), true, true) = (self.network(), moved, guard.holds_all()) {
            network.provide_on_ipfs(guard.root()).await?;
        }
        let imported = CollectionImported {
            name: name.to_string(),
            id: guard.id()?,
            root: guard.root().to_string(),
            points: guard.points(),
            writable: guard.writable(),
        };
        Ok((moved, imported))
    }

    /// A writer's merge is its next version: its followers hear of it.
    async fn after_move(
        &self,
        name: &str,
        moved: bool,
        imported: &CollectionImported,
    ) -> Result<(), Error> {
        if moved && imported.writable {
            self.gossip_head(name).await?;
        }
        Ok(())
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

    /// Fetches version `root` (a manifest) of collection `id` over Bitswap, its progress shown
    /// as the collection's `syncing` state: the whole DAG, or with `held` the manifest, every
    /// shard root and the trees of the shards held. With `snapshot`, a whole version's fetch
    /// also gets the index snapshot the version names, if the peers have it (a node that has
    /// no index of the collection yet then loads it instead of building one).
    pub(super) async fn fetch_tracked(
        &self,
        id: &str,
        root: cid::Cid,
        held: Option<&[u32]>,
        snapshot: bool,
        peers: &[PeerId],
        mut progress: impl FnMut(FetchTotals),
    ) -> Result<(), Error> {
        let network = self.network()?;
        let bitswap = network.bitswap();
        // Peers whose circuit breaker is open last: the others are asked first.
        let ordered = self.open_peers_last(peers);
        let peers = ordered.as_slice();
        let unavailable = |e: crate::net::bitswap::FetchError| Error::unavailable(e.to_string());
        // Back to not syncing when the fetch ends, fails or is dropped (a client gone).
        let sync = self.inner.replication.start_sync(id);
        let Some(held) = held else {
            let totals = bitswap
                .fetch_dag(root, peers, |t| {
                    sync.progress(t.blocks, t.known);
                    progress(t);
                })
                .await
                .map_err(unavailable)?;
            if snapshot {
                // The trees are the truth and the index can always be built from them: a
                // snapshot that does not come is noted, not an error.
                let store = self.store();
                let manifest: Manifest = dagcbor::decode(&store.require(&root).await?)?;
                let roots = read_roots(store, &manifest).await?;
                if let Some(listing) = snapshot::named(&roots) {
                    match snapshot::chunks(store, &listing).await {
                        Ok(chunks) => {
                            let started = std::time::Instant::now();
                            let count = chunks.len();
                            let got = bitswap
                                .fetch_dags(chunks, peers, |t| {
                                    let sum = totals + t;
                                    sync.progress(sum.blocks, sum.known);
                                    progress(sum);
                                })
                                .await;
                            match got {
                                Ok(t) => {
                                    tracing::info!(%listing, chunks = count, bytes = t.bytes, secs = started.elapsed().as_secs_f64(), "fetched the index snapshot")
                                }
                                Err(e) => {
                                    tracing::info!(%listing, error = %e, "the index snapshot did not come; the index will be built from the trees")
                                }
                            }
                        }
                        Err(reason) => {
                            tracing::info!(%listing, reason, "the index snapshot is not usable; the index will be built from the trees")
                        }
                    }
                }
            }
            return Ok(());
        };
        // Part of the collection: the manifest and every shard root (small, and they give
        // every shard's count), then the trees of the shards held only. No older versions.
        let manifest: Manifest = dagcbor::decode(
            &bitswap
                .fetch_block(root, peers)
                .await
                .map_err(unavailable)?,
        )?;
        manifest.validate()?;
        let held = check_held(held, manifest.shards.len() as u32)?;
        let mut trees = Vec::with_capacity(held.len());
        for (number, cid) in manifest.shards.iter().enumerate() {
            let bytes = bitswap
                .fetch_block(*cid, peers)
                .await
                .map_err(unavailable)?;
            if held.contains(&(number as u32)) {
                trees.push(dagcbor::decode::<ShardRoot>(&bytes)?.tree);
            }
        }
        let mut before = FetchTotals {
            blocks: 1 + manifest.shards.len() as u64,
            known: 1 + manifest.shards.len() as u64,
            ..FetchTotals::default()
        };
        for tree in trees {
            let totals = bitswap
                .fetch_dag(tree, peers, |t| {
                    let sum = before + t;
                    sync.progress(sum.blocks, sum.known);
                    progress(sum);
                })
                .await
                .map_err(unavailable)?;
            before = before + totals;
        }
        Ok(())
    }

    /// The shards replica `name` holds when it holds only some (`None`: all of them).
    async fn partial_holding(&self, name: &str) -> Result<Option<Vec<u32>>, Error> {
        let c = self.collection(name).await?;
        let c = c.read().await;
        Ok((!c.holds_all()).then(|| c.held_shards()))
    }

    async fn peers_for(&self, id: &str, from: &[String]) -> Result<Vec<PeerId>, Error> {
        let network = self.network()?;
        let mut peers = self.dial_all(from).await?;
        if from.is_empty() {
            let me = network.peer_id();
            let providers: Vec<PeerId> = network
                .providers(announce::collection_key(id))
                .await?
                .into_iter()
                .map(|p| p.peer_id)
                .filter(|p| *p != me)
                .collect();
            // Providers whose circuit breaker is open are dialed only when no other one
            // could be.
            let (closed, open): (Vec<PeerId>, Vec<PeerId>) =
                providers.into_iter().partition(|p| !self.peer_refused(p));
            for batch in [closed, open] {
                if !peers.is_empty() {
                    break;
                }
                for provider in batch {
                    match network.dial_peer(provider).await {
                        Ok(peer) => {
                            self.peer_reached(&peer);
                            peers.push(peer);
                        }
                        Err(e) => {
                            self.peer_failed(&provider);
                            tracing::debug!(peer = %provider, error = %e, "provider unreachable")
                        }
                    }
                }
            }
        }
        if peers.is_empty() {
            return Err(Error::not_found(format!(
                "no reachable peer provides collection {id}; check that its node runs and \
                 that this one is connected to the network (ipvec peers), or pass --from ADDR"
            )));
        }
        Ok(peers)
    }
}

/// The follow core tracks the heads of each collection and writer as a stream of their own:
/// the owner's under the collection id (which collection info's replication state reads),
/// another writer's under `id/writer id`, so that one writer's newer head never displaces
/// another writer's waiting one. (`/` is not in the base58 alphabet of ids.)
fn stream_of(id: &str, head: &HeadRecord) -> String {
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
