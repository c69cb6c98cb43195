//! Fetching blocks and DAGs: the adapter that drives the sans-io cores of
//! [`crate::cluster`]. The [`WantLedger`] decides whom to ask for what and when, the
//! [`DagWalk`] which blocks of a DAG to get next; this file keeps the fetches waiting on each
//! want, sends the messages the ledger asks for, feeds it the blocks and DONT_HAVEs that
//! arrive, and polls its timers on tokio's clock (so `tokio::time::pause` drives it in tests).

use std::{collections::HashMap, sync::atomic::Ordering, time::Duration};

use bytes::Bytes;
use cid::Cid;
use futures::{stream::FuturesUnordered, StreamExt};
use libp2p::PeerId;
use tokio::sync::oneshot;

use super::{
    message::{self, Payload, WantType},
    Bitswap, FetchError, FetchTotals,
};
use crate::{
    cluster::{
        walk::DagWalk,
        wants::{Action, Input, Misconduct, WantLedger},
        Millis,
    },
    store::{dag, BlockStore},
};

/// A fetch waiting for a block.
type Waiter = oneshot::Sender<Result<Bytes, FetchError>>;

/// The want ledger, the fetches waiting on each of its wants, and the epoch of its clock.
pub(super) struct Wants {
    ledger: WantLedger<PeerId>,
    waiters: HashMap<Cid, Vec<Waiter>>,
    epoch: tokio::time::Instant,
}

impl Wants {
    /// An empty ledger whose clock starts now.
    pub fn new() -> Self {
        Self {
            ledger: WantLedger::default(),
            waiters: HashMap::new(),
            epoch: tokio::time::Instant::now(),
        }
    }

    fn now(&self) -> Millis {
        Millis::from_duration(self.epoch.elapsed())
    }

    fn instant(&self, at: Millis) -> tokio::time::Instant {
        self.epoch + Duration::from_millis(at.0)
    }
}

/// Abandons the want for a block when the fetch that waits for it is dropped (a client gone,
/// the network stopping) and no other fetch waits for it.
struct Abandon<'a, S: BlockStore + Clone + Send + Sync + 'static> {
    bitswap: &'a Bitswap<S>,
    cid: Cid,
}

impl<S: BlockStore + Clone + Send + Sync + 'static> Drop for Abandon<'_, S> {
    fn drop(&mut self) {
        let cid = self.cid;
        self.bitswap.step(|w, now| {
            let Some(waiting) = w.waiters.get_mut(&cid) else {
                return Vec::new();
            };
            waiting.retain(|waiter| !waiter.is_closed());
            if !waiting.is_empty() {
                return Vec::new();
            }
            w.waiters.remove(&cid);
            w.ledger.handle(Input::Abandon { cid }, now)
        });
    }
}

impl<S: BlockStore + Clone + Send + Sync + 'static> Bitswap<S> {
    /// One block from `peers`: from the store if it is there, else wanted through the
    /// ledger (asked of the first peer with a free slot, and of one more each time a peer
    /// lacks it or it does not come in time); the first good copy wins.
    pub async fn fetch_block(&self, cid: Cid, peers: &[PeerId]) -> Result<Bytes, FetchError> {
        if let Ok(Some(bytes)) = self.inner.store.get(&cid).await {
            return Ok(bytes);
        }
        // Blocks are checked by hashing them: a CID we cannot hash is never asked for, so any
        // block under such a prefix is a wrong one.
        ipvec_protocol::cid::check_supported(&cid)
            .map_err(|e| FetchError::Unsupported(cid, e.to_string()))?;
        if peers.is_empty() {
            return Err(FetchError::NoPeers);
        }
        // Declared before the receiver, so dropped after it: it sees this fetch gone.
        let _abandon = Abandon { bitswap: self, cid };
        let (tx, rx) = oneshot::channel();
        self.step(|w, now| {
            w.waiters.entry(cid).or_default().push(tx);
            let peers = peers.to_vec();
            w.ledger.handle(Input::Want { cid, peers }, now)
        });
        // Whatever it waits on, a stopping network ends it.
        let stop = self.inner.tasks.token().clone();
        tokio::select! {
            biased;
            _ = stop.cancelled() => Err(FetchError::Stopped),
            got = rx => got.unwrap_or(Err(FetchError::NotFound(cid))),
        }
    }

    /// Fetches every block of the DAG under `root` that the store lacks, from `peers`.
    /// Blocks already stored are read locally (so a fetch cut short resumes where it
    /// stopped); `progress` sees the totals after each block.
    pub async fn fetch_dag(
        &self,
        root: Cid,
        peers: &[PeerId],
        progress: impl FnMut(FetchTotals),
    ) -> Result<FetchTotals, FetchError> {
        self.fetch_dags([root], peers, progress).await
    }

    /// [`Bitswap::fetch_dag`] of the DAGs under `roots` together, each block once.
    pub async fn fetch_dags(
        &self,
        roots: impl IntoIterator<Item = Cid>,
        peers: &[PeerId],
        mut progress: impl FnMut(FetchTotals),
    ) -> Result<FetchTotals, FetchError> {
        let mut walk = DagWalk::of_roots(roots);
        let mut running = FuturesUnordered::new();
        loop {
            while let Some(cid) = walk.next_block() {
                let had = matches!(self.inner.store.has(&cid).await, Ok(true));
                let this = self.clone();
                let peers = peers.to_vec();
                running.push(async move {
                    let bytes = this.fetch_block(cid, &peers).await;
                    (cid, had, bytes)
                });
            }
            let Some((cid, had, bytes)) = running.next().await else {
                break;
            };
            let bytes = bytes?;
            let links =
                dag::block_links(&cid, &bytes).map_err(|e| FetchError::Store(e.to_string()))?;
            progress(walk.got(links, (!had).then_some(bytes.len() as u64)));
        }
        Ok(walk.totals())
    }

    /// Keeps the ledger's timers: polls it at its next deadline, woken when a step may have
    /// moved that deadline. Runs until the network's tasks stop.
    pub(super) async fn keep_time(self) {
        loop {
            let next = self
                .inner
                .wants
                .lock()
                .ok()
                .and_then(|w| w.ledger.next_deadline().map(|at| w.instant(at)));
            let woken = self.inner.timer.notified();
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {
                            self.step(|w, now| w.ledger.poll(now));
                        }
                        _ = woken => {}
                    }
                }
                None => woken.await,
            }
        }
    }

    /// A block arrived from `peer`: stored and handed to the fetches waiting for it if we
    /// asked for it, else counted and judged by the ledger.
    pub(super) async fn on_block(&self, peer: PeerId, payload: &Payload) {
        let cid = cid_of(payload);
        let input = Input::Block { from: peer, cid };
        let (Some(waiters), Some(cid)) = (self.step(|w, now| w.ledger.handle(input, now)), cid)
        else {
            return;
        };
        // `cid` was hashed from these bytes, and the ledger knows it as wanted: they are the
        // block, and go to the store without a second hash.
        let bytes = payload.data.clone();
        let stored = match ipvec_protocol::cid::digest(&cid) {
            Ok(digest) => self.inner.store.put_raw(digest, bytes.clone()).await,
            Err(e) => Err(e.into()),
        }
        .map_err(|e| FetchError::Store(e.to_string()));
        if stored.is_ok() {
            let stats = &self.inner.stats;
            stats.blocks_received.fetch_add(1, Ordering::Relaxed);
            stats
                .bytes_received
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            stats.count(peer, 0, 1);
        }
        for waiter in waiters {
            let _ = waiter.send(stored.clone().map(|_| bytes.clone()));
        }
    }

    /// `peer` said it does not have `cid`.
    pub(super) fn on_dont_have(&self, peer: PeerId, cid: Cid) {
        self.step(|w, now| w.ledger.handle(Input::DontHave { from: peer, cid }, now));
    }

    /// A want for `cid` could not be sent to `peer`.
    pub(super) fn on_unreachable(&self, peer: PeerId, cid: Cid) {
        self.step(|w, now| w.ledger.handle(Input::Unreachable { to: peer, cid }, now));
    }

    /// Runs `f` on the ledger at the current time and carries out the actions it answers:
    /// failed fetches are told, messages sent, misbehaving peers banned. Answers the fetches
    /// waiting for a block that was just delivered, if one was.
    fn step(
        &self,
        f: impl FnOnce(&mut Wants, Millis) -> Vec<Action<PeerId>>,
    ) -> Option<Vec<Waiter>> {
        let mut delivered = None;
        let mut failed = Vec::new();
        let actions = {
            let Ok(mut w) = self.inner.wants.lock() else {
                return None;
            };
            let now = w.now();
            let actions = f(&mut w, now);
            for action in &actions {
                match action {
                    Action::Deliver { cid } => {
                        delivered = Some(w.waiters.remove(cid).unwrap_or_default());
                    }
                    Action::Fail(e) => {
                        failed.push((w.waiters.remove(&e.cid()).unwrap_or_default(), e.clone()));
                    }
                    _ => {}
                }
            }
            actions
        };
        self.inner.timer.notify_one();
        for (waiters, e) in failed {
            tracing::debug!(error = %e, "a want ended without its block");
            let e = FetchError::from(e);
            for waiter in waiters {
                let _ = waiter.send(Err(e.clone()));
            }
        }
        self.carry_out(actions);
        delivered
    }

    /// Queues the wants and cancels of `actions` for their peers, counts and bans.
    fn carry_out(&self, actions: Vec<Action<PeerId>>) {
        let stats = &self.inner.stats;
        let mut messages: Vec<(PeerId, Vec<message::Want>)> = Vec::new();
        for action in actions {
            let (peer, cid, cancel) = match action {
                Action::Want { peer, cid } => (peer, cid, false),
                Action::Cancel { peer, cid } => (peer, cid, true),
                Action::Duplicate { .. } => {
                    stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Action::Refuse { peer } => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "refused a block nobody asked this peer for (or the wrong bytes)");
                    continue;
                }
                Action::Ban { peer, why } => {
                    if why == Misconduct::TooManyUnasked {
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::warn!(%peer, ?why, "a peer sent blocks nobody asked it for (or the wrong bytes); disconnecting it");
                    self.ban(peer);
                    continue;
                }
                Action::Deliver { .. } | Action::Fail(_) => continue,
            };
            let want = message::Want {
                cid,
                priority: 1,
                cancel,
                want_type: WantType::Block,
                send_dont_have: true,
            };
            match messages.iter_mut().find(|(p, _)| *p == peer) {
                Some((_, wants)) => wants.push(want),
                None => messages.push((peer, vec![want])),
            }
        }
        // A fetch dropped outside the runtime (at its shutdown) sends nothing.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        for (peer, wants) in messages {
            self.queue_wants(peer, wants);
        }
    }
}

/// The CID a received block would have under its prefix, if we can hash it (BLAKE3).
fn cid_of(payload: &Payload) -> Option<Cid> {
    let mut at = 0usize;
    let mut next = || -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *payload.prefix.get(at)?;
            at += 1;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    };
    let (version, codec, hash, len) = (next()?, next()?, next()?, next()?);
    if version != 1 || hash != ipvec_protocol::cid::BLAKE3_256 || len != 32 {
        return None;
    }
    Some(ipvec_protocol::cid::block_cid(codec, &payload.data))
}
