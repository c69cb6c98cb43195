//! Fetching a collection: its newest signed head from its providers (or the peers named),
//! then its DAG over Bitswap, with its progress shown as the collection's `syncing` state; a
//! new replica also gets the index snapshot its version names. Registering or moving the
//! replica follows. Following gossiped heads, which calls these, is in [`super::replicate`].

use std::time::Duration;

use ipvec_protocol::{
    announce,
    api::CollectionImported,
    dagcbor,
    head::HeadRecord,
    manifest::{Manifest, ShardRoot},
};
use libp2p::PeerId;

use crate::{
    cluster::walk::FetchTotals,
    collection::{check_held, read_roots, snapshot},
    store::BlockStore,
};

use super::{replicate::stream_of, Error, Node};

/// How many times a fetch asks a peer for a head again when the request fails.
const HEAD_RETRIES: usize = 2;

impl Node {
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
    pub(super) async fn move_replica(
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
    pub(super) async fn after_move(
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
    pub(super) async fn partial_holding(&self, name: &str) -> Result<Option<Vec<u32>>, Error> {
        let c = self.collection(name).await?;
        let c = c.read().await;
        Ok((!c.holds_all()).then(|| c.held_shards()))
    }

    pub(super) async fn peers_for(&self, id: &str, from: &[String]) -> Result<Vec<PeerId>, Error> {
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
