//! Bitswap 1.2.0 (`/ipfs/bitswap/1.2.0`), the block exchange IPFS nodes speak, so Kubo and
//! Helia can fetch our blocks and we theirs.
//!
//! Every message travels on a stream of its own kind: a peer that wants blocks sends its
//! wantlist on a stream it opens; the answer (blocks, HAVE and DONT_HAVE presences) comes
//! back on a stream the other side opens. Messages are framed by an unsigned varint length.
//!
//! Serving: wants are answered from the block store, at most [`SERVING_PER_PEER`] messages of
//! a peer at a time (its stream is not read further meanwhile) and answers written as they
//! fill a message, so a long wantlist never sits in memory whole.
//!
//! Fetching: [`Bitswap::fetch_dag`] walks a DAG from its root, asking a session of peers for
//! up to [`PARALLEL_WANTS`] blocks at once and no peer for more than [`WANTS_PER_PEER`] at once
//! (across sessions); a block no peer had, or that did not come in time, is asked of the
//! session's other peers. Every received block is hashed under its prefix and stored only if
//! the CID that gives is one we asked for.
//!
//! Tasks: the accept loop, one task per inbound stream, one per message being answered and
//! one per block waiting out [`GRACE`] all belong to the network's task set; they stop when
//! its token is cancelled, and so does every fetch in flight ([`FetchError::Stopped`]).
//! Maps kept per peer are bounded: outbound streams and limits of idle peers are forgotten
//! past [`MAX_PEERS_KEPT`] peers, and so are the block counters of the peers that exchanged
//! the fewest blocks.
//!
//! Misbehaviour: a malformed or oversized message gets its sender disconnected and refused
//! for a while at once. So does a wrong block — one whose CID we never asked that peer for —
//! but only after [`GRACE`]: Bitswap blocks carry a prefix, not a CID, so bytes that do not
//! hash to what was asked look exactly like an honest answer to a want this node sent before
//! it restarted; those are asked again within seconds of the restart, which forgives them.
//! Late copies of blocks asked of several peers are counted as duplicates, never held against
//! anyone.
//!
//! # Layout
//! - [`message`]: the protobuf messages and their limits.

pub mod message;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use cid::Cid;
use futures::{stream::FuturesUnordered, AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use self::message::{prefix_of, Message, Payload, Presence, Want, WantType, MAX_MESSAGE_BYTES};
use crate::{
    store::{dag, BlockStore},
    tasks::Tasks,
};

/// The protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");
/// Blocks a DAG fetch asks for at once.
pub const PARALLEL_WANTS: usize = 32;
/// Times a message is sent again when its stream fails.
const SEND_ATTEMPTS: u32 = 4;
/// How long a want waits for an answer before it is sent again.
pub const REBROADCAST: Duration = Duration::from_secs(2);
/// How long a want waits for a block before the fetch gives up on it (or asks other peers).
pub const WANT_TIMEOUT: Duration = Duration::from_secs(30);
/// Blocks asked of one peer at once, across every fetch.
pub const WANTS_PER_PEER: usize = 64;
/// Messages of one peer handled at once; its streams wait meanwhile.
pub const SERVING_PER_PEER: usize = 8;
/// How long a block nobody asked for may wait to be asked for (a late answer to a want sent
/// before this node restarted) before its sender is held to have sent a wrong block.
pub const GRACE: Duration = Duration::from_secs(10);
/// Blocks nobody asked for that one peer may have waiting out [`GRACE`]; one more and it is
/// disconnected at once.
const MAX_SUSPECT_BLOCKS: usize = 2 * PARALLEL_WANTS;
/// Peers whose idle outbound streams, limits and counters are kept; past this many, idle
/// peers are forgotten.
pub const MAX_PEERS_KEPT: usize = 1024;
/// How long the peers a block was asked of are remembered after it came: copies they send
/// later are duplicates, not wrong blocks.
const REMEMBER_ASKED: Duration = Duration::from_secs(120);

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Blocks we sent.
    pub blocks_sent: AtomicU64,
    /// Blocks we received and stored.
    pub blocks_received: AtomicU64,
    /// Bytes of blocks we received and stored.
    pub bytes_received: AtomicU64,
    /// Messages or blocks refused (malformed, unsolicited, wrong hash).
    pub refused: AtomicU64,
    /// Late or second copies of blocks asked of several peers, dropped.
    pub duplicates: AtomicU64,
    /// Peers disconnected and refused for a while for breaking the protocol or sending
    /// wrong blocks.
    pub peers_banned: AtomicU64,
    /// Blocks sent to and received from each peer.
    by_peer: Mutex<HashMap<PeerId, PeerBlocks>>,
}

/// Blocks exchanged with one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerBlocks {
    /// Blocks we sent it.
    pub sent: u64,
    /// Blocks it sent us that we asked for and stored.
    pub received: u64,
}

impl Stats {
    /// Blocks exchanged with `peer` so far.
    pub fn of_peer(&self, peer: &PeerId) -> PeerBlocks {
        self.by_peer
            .lock()
            .map(|m| m.get(peer).copied().unwrap_or_default())
            .unwrap_or_default()
    }

    fn count(&self, peer: PeerId, sent: u64, received: u64) {
        if let Ok(mut m) = self.by_peer.lock() {
            if m.len() >= MAX_PEERS_KEPT && !m.contains_key(&peer) {
                // The peer that exchanged the fewest blocks makes room.
                if let Some(least) = m
                    .iter()
                    .min_by_key(|(_, b)| b.sent + b.received)
                    .map(|(p, _)| *p)
                {
                    m.remove(&least);
                }
            }
            let blocks = m.entry(peer).or_default();
            blocks.sent += sent;
            blocks.received += received;
        }
    }
}

/// What a DAG fetch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchTotals {
    /// Blocks in the DAG walked so far.
    pub blocks: u64,
    /// Blocks of the DAG discovered so far (walked, in flight or queued); equals `blocks`
    /// once the fetch ends.
    pub known: u64,
    /// Of those, fetched from peers.
    pub fetched: u64,
    /// Bytes fetched from peers.
    pub bytes: u64,
}

/// A fetch failure.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No peer had the block.
    #[error("no peer in the session has block {0}")]
    NotFound(Cid),
    /// Waiting for the block timed out.
    #[error("timed out waiting for block {0}")]
    Timeout(Cid),
    /// There is no peer to ask.
    #[error("no peers to fetch from; connect to one first (ipvec connect) or pass --from")]
    NoPeers,
    /// The CID is not one whose blocks can be checked (ipvec verifies BLAKE3 only).
    #[error("cannot fetch {0}: {1}")]
    Unsupported(Cid, String),
    /// The store failed.
    #[error("{0}")]
    Store(String),
    /// The node is shutting down.
    #[error("the peer-to-peer layer stopped (the node is shutting down); fetch again once it runs: blocks already fetched are kept")]
    Stopped,
}

#[derive(Default)]
struct Wanted {
    waiters: Vec<oneshot::Sender<Result<Bytes, FetchError>>>,
    asked: HashSet<PeerId>,
    dont_have: HashSet<PeerId>,
}

/// The wants in flight, the peers recently asked for blocks that have come, and blocks
/// nobody asked for that wait out [`GRACE`]; one lock over all three, so a block is always
/// found in one of them while it moves between them.
#[derive(Default)]
struct Wants {
    open: HashMap<Cid, Wanted>,
    /// Peers a block was asked of, for [`REMEMBER_ASKED`] after the want ended.
    recent: HashMap<Cid, HashSet<PeerId>>,
    recent_order: VecDeque<(Instant, Cid)>,
    /// Who sent a block nobody asked for, by its CID (`None`: bytes under a prefix we cannot
    /// hash, which we never ask for).
    suspects: HashMap<Option<Cid>, HashSet<PeerId>>,
    suspect_count: HashMap<PeerId, usize>,
}

/// What a block that arrived is to us.
enum Arrival {
    /// Asked for: these fetches wait for it.
    Wanted(Cid, Vec<oneshot::Sender<Result<Bytes, FetchError>>>),
    /// A second copy of a block asked of this peer and others.
    Duplicate,
    /// Not asked of this peer: from now on waiting out [`GRACE`].
    Suspect,
    /// Not asked of this peer, and already waiting out [`GRACE`].
    StillSuspect,
    /// Not asked of this peer, which has [`MAX_SUSPECT_BLOCKS`] such blocks waiting already.
    TooMany,
}

impl Wants {
    /// Ends the want for `cid`, remembering whom it was asked of.
    fn retire(&mut self, cid: Cid) -> Option<Wanted> {
        let wanted = self.open.remove(&cid)?;
        let now = Instant::now();
        while let Some((at, old)) = self.recent_order.front() {
            if now.duration_since(*at) < REMEMBER_ASKED {
                break;
            }
            self.recent.remove(old);
            self.recent_order.pop_front();
        }
        self.recent
            .entry(cid)
            .or_default()
            .extend(wanted.asked.iter().copied());
        self.recent_order.push_back((now, cid));
        Some(wanted)
    }

    /// Opens (or joins) the want for `cid` asked of `peers`; a block of it that came unasked
    /// is forgiven: it was a late answer.
    fn open(&mut self, cid: Cid, peers: &[PeerId]) -> oneshot::Receiver<Result<Bytes, FetchError>> {
        let (tx, rx) = oneshot::channel();
        let w = self.open.entry(cid).or_default();
        w.waiters.push(tx);
        w.asked.extend(peers.iter().copied());
        for peer in self.suspects.remove(&Some(cid)).unwrap_or_default() {
            self.unsuspect(peer);
        }
        rx
    }

    fn arrived(&mut self, peer: PeerId, cid: Option<Cid>) -> Arrival {
        if let Some(cid) = cid {
            if let Some(w) = self.retire(cid) {
                return Arrival::Wanted(cid, w.waiters);
            }
            if self.recent.get(&cid).is_some_and(|p| p.contains(&peer)) {
                return Arrival::Duplicate;
            }
        }
        if self.suspects.get(&cid).is_some_and(|p| p.contains(&peer)) {
            return Arrival::StillSuspect;
        }
        let count = self.suspect_count.entry(peer).or_default();
        if *count >= MAX_SUSPECT_BLOCKS {
            return Arrival::TooMany;
        }
        *count += 1;
        self.suspects.entry(cid).or_default().insert(peer);
        Arrival::Suspect
    }

    /// Whether `peer` still stands suspected for the block `cid` (and no longer does).
    fn convict(&mut self, peer: PeerId, cid: Option<Cid>) -> bool {
        let Some(senders) = self.suspects.get_mut(&cid) else {
            return false;
        };
        let was = senders.remove(&peer);
        if senders.is_empty() {
            self.suspects.remove(&cid);
        }
        if was {
            self.unsuspect(peer);
        }
        was
    }

    fn unsuspect(&mut self, peer: PeerId) {
        if let Some(n) = self.suspect_count.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.suspect_count.remove(&peer);
            }
        }
    }
}

/// Per-peer limits: a semaphore for each peer, made on first use and dropped once idle.
#[derive(Default)]
struct PeerLimits(Mutex<HashMap<PeerId, Arc<Semaphore>>>);

impl PeerLimits {
    fn of(&self, peer: PeerId, permits: usize) -> Arc<Semaphore> {
        let Ok(mut map) = self.0.lock() else {
            return Arc::new(Semaphore::new(permits));
        };
        if map.len() > MAX_PEERS_KEPT {
            // Peers nobody is waiting on, with every permit back: nothing to remember.
            map.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < permits);
        }
        map.entry(peer)
            .or_insert_with(|| Arc::new(Semaphore::new(permits)))
            .clone()
    }
}

/// Called with a peer that broke the protocol (an oversized or undecodable message): the
/// network disconnects it and refuses it for a while.
pub type Misbehaving = Arc<dyn Fn(PeerId) + Send + Sync>;

/// Outbound streams kept open per peer; messages to a peer go out on several at once.
const STREAMS_PER_PEER: usize = 4;

/// One outbound stream to a peer, opened when first needed.
type OutboundSlot = Arc<tokio::sync::Mutex<Option<libp2p::Stream>>>;

struct Inner<S> {
    store: S,
    control: Mutex<libp2p_stream::Control>,
    outbound: tokio::sync::Mutex<HashMap<PeerId, Vec<OutboundSlot>>>,
    turn: std::sync::atomic::AtomicUsize,
    wants: Mutex<Wants>,
    /// Wants in flight to each peer ([`WANTS_PER_PEER`]).
    asking: PeerLimits,
    /// Messages of each peer being answered ([`SERVING_PER_PEER`]).
    serving: PeerLimits,
    misbehaving: Misbehaving,
    stats: Stats,
    /// The network's tasks; its token stops serving and fetching.
    tasks: Arc<Tasks>,
}

/// The Bitswap engine: a cloneable handle.
pub struct Bitswap<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Bitswap<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Bitswap<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bitswap")
            .field("stats", &self.inner.stats)
            .finish()
    }
}

/// Why a message could not be read.
enum ReadError {
    /// The stream failed (a peer gone, a reset): nobody's fault.
    Io(String),
    /// The bytes break the protocol (over the size limit, not a Bitswap protobuf).
    Violation(String),
}

async fn read_message(stream: &mut libp2p::Stream) -> Result<Option<Message>, ReadError> {
    let mut len = 0u64;
    for i in 0..10 {
        let mut byte = [0u8; 1];
        match stream.read(&mut byte).await {
            Ok(0) if i == 0 => return Ok(None),
            Ok(0) => return Err(ReadError::Io("stream ended inside a length prefix".into())),
            Ok(_) => {}
            Err(e) => return Err(ReadError::Io(e.to_string())),
        }
        len |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            if len as usize > MAX_MESSAGE_BYTES {
                return Err(ReadError::Violation(format!(
                    "a message of {len} bytes, over the {MAX_MESSAGE_BYTES}-byte limit"
                )));
            }
            let mut buffer = vec![0u8; len as usize];
            stream
                .read_exact(&mut buffer)
                .await
                .map_err(|e| ReadError::Io(e.to_string()))?;
            return Message::decode(&buffer)
                .map(Some)
                .map_err(|e| ReadError::Violation(e.to_string()));
        }
    }
    Err(ReadError::Violation(
        "length prefix longer than 10 bytes".into(),
    ))
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

impl<S: BlockStore + Clone + Send + Sync + 'static> Bitswap<S> {
    /// Starts serving `store` over the streams `control` hands us, on tasks of `tasks`
    /// (which stop, and stop every fetch, when its token is cancelled). `misbehaving` hears of
    /// peers that break the protocol.
    pub fn start(
        store: S,
        mut control: libp2p_stream::Control,
        misbehaving: Misbehaving,
        tasks: Arc<Tasks>,
    ) -> Self {
        let incoming = control.accept(PROTOCOL);
        let bitswap = Bitswap {
            inner: Arc::new(Inner {
                store,
                control: Mutex::new(control),
                outbound: Default::default(),
                turn: Default::default(),
                wants: Default::default(),
                asking: Default::default(),
                serving: Default::default(),
                misbehaving,
                stats: Stats::default(),
                tasks,
            }),
        };
        match incoming {
            Ok(mut incoming) => {
                let this = bitswap.clone();
                bitswap.inner.tasks.spawn(async move {
                    while let Some((peer, stream)) = incoming.next().await {
                        this.inner.tasks.spawn(this.clone().on_stream(peer, stream));
                    }
                });
            }
            Err(e) => tracing::error!(error = %e, "cannot accept bitswap streams"),
        }
        bitswap
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    async fn on_stream(self, peer: PeerId, mut stream: libp2p::Stream) {
        let serving = self.inner.serving.of(peer, SERVING_PER_PEER);
        loop {
            match read_message(&mut stream).await {
                // Handled on its own task, so this stream is read on while answers are
                // written (two nodes fetching from each other never wait on each other), but
                // no more than SERVING_PER_PEER of a peer's messages at once.
                Ok(Some(message)) => {
                    let Ok(permit) = serving.clone().acquire_owned().await else {
                        break;
                    };
                    let this = self.clone();
                    self.inner.tasks.spawn(async move {
                        this.on_message(peer, message).await;
                        drop(permit);
                    });
                }
                Ok(None) => break,
                Err(ReadError::Io(e)) => {
                    tracing::debug!(%peer, error = %e, "bitswap stream ended");
                    break;
                }
                Err(ReadError::Violation(e)) => {
                    self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, error = %e, "a peer broke the Bitswap protocol; disconnecting it");
                    self.ban(peer);
                    break;
                }
            }
        }
    }

    /// Disconnects `peer` and refuses it for a while.
    fn ban(&self, peer: PeerId) {
        self.inner
            .stats
            .peers_banned
            .fetch_add(1, Ordering::Relaxed);
        (self.inner.misbehaving)(peer);
    }

    async fn on_message(&self, peer: PeerId, message: Message) {
        for payload in &message.payload {
            self.on_block(peer, payload).await;
        }
        for presence in &message.presences {
            if !presence.have {
                self.on_dont_have(peer, presence.cid);
            }
        }
        // Answers go out as they fill a message, so a long wantlist is never read whole
        // into memory.
        let mut answer = Message::default();
        let mut size = 0usize;
        for want in message.wants.iter().filter(|w| !w.cancel) {
            let store = &self.inner.store;
            let dont_have = Presence {
                cid: want.cid,
                have: false,
            };
            match want.want_type {
                WantType::Have => match store.has(&want.cid).await {
                    Ok(true) => answer.presences.push(Presence {
                        cid: want.cid,
                        have: true,
                    }),
                    _ if want.send_dont_have => answer.presences.push(dont_have),
                    _ => {}
                },
                WantType::Block => match store.get(&want.cid).await {
                    Ok(Some(bytes)) => {
                        let block = Payload {
                            prefix: prefix_of(&want.cid),
                            data: bytes.to_vec(),
                        };
                        let len = block.data.len() + block.prefix.len() + 16;
                        if size + len > MAX_MESSAGE_BYTES - 1024 && !answer.payload.is_empty() {
                            let full = std::mem::take(&mut answer);
                            size = 0;
                            if !self.answer(peer, &full).await {
                                return;
                            }
                        }
                        size += len;
                        answer.payload.push(block);
                    }
                    _ if want.send_dont_have => answer.presences.push(dont_have),
                    _ => {}
                },
            }
        }
        if !answer.payload.is_empty() || !answer.presences.is_empty() {
            self.answer(peer, &answer).await;
        }
    }

    /// Sends an answer to `peer`, counting its blocks; whether it went out.
    async fn answer(&self, peer: PeerId, answer: &Message) -> bool {
        match self.send(peer, answer).await {
            Ok(()) => {
                let blocks = answer.payload.len() as u64;
                self.inner
                    .stats
                    .blocks_sent
                    .fetch_add(blocks, Ordering::Relaxed);
                self.inner.stats.count(peer, blocks, 0);
                true
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cannot answer a bitswap want");
                false
            }
        }
    }

    async fn on_block(&self, peer: PeerId, payload: &Payload) {
        let cid = cid_of(payload);
        let arrival = match self.inner.wants.lock() {
            Ok(mut wants) => wants.arrived(peer, cid),
            Err(_) => return,
        };
        let (cid, waiters) = match arrival {
            Arrival::Wanted(cid, waiters) => (cid, waiters),
            Arrival::Duplicate => {
                self.inner.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Arrival::StillSuspect => {
                self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Arrival::TooMany => {
                self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, "a peer sent too many blocks nobody asked it for; disconnecting it");
                self.ban(peer);
                return;
            }
            Arrival::Suspect => {
                self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "refused a block nobody asked this peer for (or the wrong bytes)");
                let this = self.clone();
                self.inner.tasks.spawn(async move {
                    tokio::time::sleep(GRACE).await;
                    let guilty = this
                        .inner
                        .wants
                        .lock()
                        .is_ok_and(|mut w| w.convict(peer, cid));
                    if guilty {
                        tracing::warn!(%peer, "a peer sent a block nobody asked it for (or the wrong bytes); disconnecting it");
                        this.ban(peer);
                    }
                });
                return;
            }
        };
        let bytes = Bytes::from(payload.data.clone());
        let stored = self
            .inner
            .store
            .put_verified(&cid, bytes.clone())
            .await
            .map_err(|e| FetchError::Store(e.to_string()));
        if stored.is_ok() {
            self.inner
                .stats
                .blocks_received
                .fetch_add(1, Ordering::Relaxed);
            self.inner
                .stats
                .bytes_received
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            self.inner.stats.count(peer, 0, 1);
        }
        for waiter in waiters {
            let _ = waiter.send(stored.clone().map(|_| bytes.clone()));
        }
    }

    fn on_dont_have(&self, peer: PeerId, cid: Cid) {
        let Ok(mut wants) = self.inner.wants.lock() else {
            return;
        };
        let all_said_no = match wants.open.get_mut(&cid) {
            Some(w) => {
                w.dont_have.insert(peer);
                w.asked.is_subset(&w.dont_have)
            }
            None => false,
        };
        if all_said_no {
            if let Some(w) = wants.retire(cid) {
                for waiter in w.waiters {
                    let _ = waiter.send(Err(FetchError::NotFound(cid)));
                }
            }
        }
    }

    /// Sends one message to `peer` on one of its long-lived outbound streams (opened on first
    /// use; Bitswap peers read message after message from a stream), trying again on a fresh
    /// stream a few times when a stream cannot be opened or written.
    async fn send(&self, peer: PeerId, message: &Message) -> Result<(), String> {
        let body = message.encode();
        let mut framed = Vec::with_capacity(body.len() + 5);
        crate::store::car::write_varint(&mut framed, body.len() as u64);
        framed.extend_from_slice(&body);
        let mut delay = Duration::from_millis(20);
        let mut attempt = 0;
        loop {
            let slot = self.outbound_slot(peer).await;
            let mut slot = slot.lock().await;
            let sent = async {
                if slot.is_none() {
                    let mut control = match self.inner.control.lock() {
                        Ok(c) => c.clone(),
                        Err(_) => return Err("bitswap is shutting down".to_string()),
                    };
                    *slot = Some(
                        control
                            .open_stream(peer, PROTOCOL)
                            .await
                            .map_err(|e| e.to_string())?,
                    );
                }
                let stream = slot.as_mut().ok_or("no stream")?;
                stream.write_all(&framed).await.map_err(|e| e.to_string())?;
                stream.flush().await.map_err(|e| e.to_string())
            };
            match sent.await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    // A broken stream is not used again.
                    *slot = None;
                    if attempt >= SEND_ATTEMPTS {
                        return Err(e);
                    }
                    tracing::debug!(%peer, error = %e, attempt, "bitswap send failed; trying again");
                    attempt += 1;
                    drop(slot);
                    tokio::time::sleep(delay).await;
                    delay *= 3;
                }
            }
        }
    }

    /// A free outbound stream slot of `peer` if there is one, else the next in turn.
    async fn outbound_slot(&self, peer: PeerId) -> OutboundSlot {
        let slots = {
            let mut outbound = self.inner.outbound.lock().await;
            if outbound.len() >= MAX_PEERS_KEPT && !outbound.contains_key(&peer) {
                // Streams no message is being sent on are closed; they open again when needed.
                outbound.retain(|_, slots| {
                    slots
                        .iter()
                        .any(|s| Arc::strong_count(s) > 1 || s.try_lock().is_err())
                });
            }
            outbound
                .entry(peer)
                .or_insert_with(|| {
                    (0..STREAMS_PER_PEER)
                        .map(|_| Arc::new(tokio::sync::Mutex::new(None)))
                        .collect()
                })
                .clone()
        };
        if let Some(free) = slots.iter().find(|s| s.try_lock().is_ok()) {
            return free.clone();
        }
        let turn = self.inner.turn.fetch_add(1, Ordering::Relaxed);
        slots[turn % slots.len()].clone()
    }

    /// One block from `peers`: from the store if it is there, else asked of every peer with
    /// a free slot (or, when all are busy, of the first to free one); the first good copy
    /// wins. A block those peers lack or do not send in time is asked of the others.
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
        // Whatever it waits on (a free slot, a stream, an answer), a stopping network ends it.
        let stop = self.inner.tasks.token().clone();
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                if let Ok(mut wants) = self.inner.wants.lock() {
                    wants.retire(cid);
                }
                Err(FetchError::Stopped)
            }
            fetched = self.fetch_from(cid, peers) => fetched,
        }
    }

    /// [`Bitswap::fetch_block`] once the block is known to be missing.
    async fn fetch_from(&self, cid: Cid, peers: &[PeerId]) -> Result<Bytes, FetchError> {
        let mut untried = peers.to_vec();
        let mut failure = FetchError::NotFound(cid);
        while !untried.is_empty() {
            let (asking, _slots) = self.free_slots(&mut untried).await;
            match self.ask(cid, &asking).await {
                Ok(bytes) => return Ok(bytes),
                Err(e @ (FetchError::NotFound(_) | FetchError::Timeout(_))) => {
                    if !untried.is_empty() {
                        tracing::debug!(%cid, error = %e, "asking the session's other peers");
                    }
                    failure = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(failure)
    }

    /// Takes from `untried` the peers with a free want slot, with the slots; if none has
    /// one, waits for the first to free one.
    async fn free_slots(
        &self,
        untried: &mut Vec<PeerId>,
    ) -> (Vec<PeerId>, Vec<OwnedSemaphorePermit>) {
        let mut asking = Vec::new();
        let mut slots = Vec::new();
        untried.retain(|peer| {
            match self
                .inner
                .asking
                .of(*peer, WANTS_PER_PEER)
                .try_acquire_owned()
            {
                Ok(slot) => {
                    asking.push(*peer);
                    slots.push(slot);
                    false
                }
                Err(_) => true,
            }
        });
        if asking.is_empty() {
            let waits = untried.iter().map(|peer| {
                let limit = self.inner.asking.of(*peer, WANTS_PER_PEER);
                Box::pin(async move { limit.acquire_owned().await })
            });
            let (slot, at, _) = futures::future::select_all(waits).await;
            if let Ok(slot) = slot {
                slots.push(slot);
            }
            asking.push(untried.remove(at));
        }
        (asking, slots)
    }

    /// Asks `peers` for `cid` and waits for the first good copy, asking again every
    /// [`REBROADCAST`] until [`WANT_TIMEOUT`].
    async fn ask(&self, cid: Cid, peers: &[PeerId]) -> Result<Bytes, FetchError> {
        let mut rx = match self.inner.wants.lock() {
            Ok(mut wants) => wants.open(cid, peers),
            Err(_) => return Err(FetchError::Store("bitswap is shutting down".into())),
        };
        let want = Message {
            wants: vec![Want {
                cid,
                priority: 1,
                cancel: false,
                want_type: WantType::Block,
                send_dont_have: true,
            }],
            ..Message::default()
        };
        let mut reached = 0;
        for peer in peers {
            match self.send(*peer, &want).await {
                Ok(()) => reached += 1,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "cannot send a want");
                    self.on_dont_have(*peer, cid);
                }
            }
        }
        // Ask again now and then: a busy peer may have dropped the want's stream.
        let started = tokio::time::Instant::now();
        let result = loop {
            match tokio::time::timeout(REBROADCAST, &mut rx).await {
                Ok(Ok(result)) => break result,
                Ok(Err(_)) => break Err(FetchError::NotFound(cid)),
                Err(_) if started.elapsed() < WANT_TIMEOUT => {
                    tracing::debug!(%cid, "no answer yet; asking again");
                    for peer in peers {
                        let _ = self.send(*peer, &want).await;
                    }
                }
                Err(_) => {
                    if let Ok(mut wants) = self.inner.wants.lock() {
                        wants.retire(cid);
                    }
                    break Err(FetchError::Timeout(cid));
                }
            }
        };
        if reached > 1 {
            let cancel = Message {
                wants: vec![Want {
                    cancel: true,
                    ..want.wants[0]
                }],
                ..Message::default()
            };
            for peer in peers {
                let _ = self.send(*peer, &cancel).await;
            }
        }
        result
    }

    /// Fetches every block of the DAG under `root` that the store lacks, from `peers`.
    /// Blocks already stored are read locally (so a fetch cut short resumes where it
    /// stopped); `progress` sees the totals after each block.
    pub async fn fetch_dag(
        &self,
        root: Cid,
        peers: &[PeerId],
        mut progress: impl FnMut(FetchTotals),
    ) -> Result<FetchTotals, FetchError> {
        let mut totals = FetchTotals::default();
        let mut seen: HashSet<Cid> = HashSet::from([root]);
        let mut queue: VecDeque<Cid> = VecDeque::from([root]);
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < PARALLEL_WANTS {
                let Some(cid) = queue.pop_front() else { break };
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
            totals.blocks += 1;
            if !had {
                totals.fetched += 1;
                totals.bytes += bytes.len() as u64;
            }
            let links =
                dag::block_links(&cid, &bytes).map_err(|e| FetchError::Store(e.to_string()))?;
            for link in links {
                if seen.insert(link) {
                    queue.push_back(link);
                }
            }
            totals.known = seen.len() as u64;
            progress(totals);
        }
        Ok(totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(n: u8) -> Cid {
        ipvec_protocol::cid::block_cid(ipvec_protocol::cid::RAW, &[n])
    }

    #[test]
    fn an_asked_block_is_wanted_once_and_a_late_copy_is_a_duplicate() {
        let (p, q) = (PeerId::random(), PeerId::random());
        let mut wants = Wants::default();
        let _rx = wants.open(cid(1), &[p, q]);
        assert!(
            matches!(wants.arrived(p, Some(cid(1))), Arrival::Wanted(c, w) if c == cid(1) && w.len() == 1)
        );
        // q was asked too: its copy coming late is no fault of its own.
        assert!(matches!(wants.arrived(q, Some(cid(1))), Arrival::Duplicate));
        // A peer never asked for it is suspected, whatever others were asked.
        let stranger = PeerId::random();
        assert!(matches!(
            wants.arrived(stranger, Some(cid(1))),
            Arrival::Suspect
        ));
        assert!(matches!(
            wants.arrived(stranger, Some(cid(1))),
            Arrival::StillSuspect
        ));
        assert!(wants.convict(stranger, Some(cid(1))));
        assert!(!wants.convict(stranger, Some(cid(1))), "convicted once");
        assert!(wants.suspect_count.is_empty() && wants.suspects.is_empty());
    }

    #[test]
    fn a_block_asked_for_within_the_grace_is_forgiven() {
        // A restarted node asks again for what it wanted before it died: the answers to its
        // old wants that came first are forgiven.
        let peer = PeerId::random();
        let mut wants = Wants::default();
        assert!(matches!(
            wants.arrived(peer, Some(cid(2))),
            Arrival::Suspect
        ));
        let _rx = wants.open(cid(2), &[peer]);
        assert!(!wants.convict(peer, Some(cid(2))));
        assert!(wants.suspect_count.is_empty());
        // Bytes under a prefix we cannot hash are never asked for, so never forgiven.
        assert!(matches!(wants.arrived(peer, None), Arrival::Suspect));
        assert!(wants.convict(peer, None));
    }

    #[test]
    fn too_many_unasked_blocks_from_one_peer_are_not_waited_out() {
        let (peer, other) = (PeerId::random(), PeerId::random());
        let mut wants = Wants::default();
        for n in 0..MAX_SUSPECT_BLOCKS {
            let c = ipvec_protocol::cid::block_cid(ipvec_protocol::cid::RAW, &n.to_le_bytes());
            assert!(matches!(wants.arrived(peer, Some(c)), Arrival::Suspect));
        }
        assert!(matches!(
            wants.arrived(peer, Some(cid(3))),
            Arrival::TooMany
        ));
        assert!(matches!(
            wants.arrived(other, Some(cid(3))),
            Arrival::Suspect
        ));
    }

    #[test]
    fn peers_asked_are_remembered_for_a_while_only() {
        let peer = PeerId::random();
        let mut wants = Wants::default();
        let _rx = wants.open(cid(4), &[peer]);
        assert!(wants.retire(cid(4)).is_some());
        // Pretend the want ended long ago; the next retirement forgets it.
        wants.recent_order[0].0 = Instant::now() - REMEMBER_ASKED;
        let _rx = wants.open(cid(5), &[peer]);
        wants.retire(cid(5));
        assert!(!wants.recent.contains_key(&cid(4)));
        assert!(matches!(
            wants.arrived(peer, Some(cid(4))),
            Arrival::Suspect
        ));
        assert!(matches!(
            wants.arrived(peer, Some(cid(5))),
            Arrival::Duplicate
        ));
    }
}
