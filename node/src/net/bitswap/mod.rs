//! Bitswap 1.2.0 (`/ipfs/bitswap/1.2.0`), the block exchange IPFS nodes speak, so Kubo and
//! Helia can fetch our blocks and we theirs.
//!
//! Every message travels on a stream of its own kind: a peer that wants blocks sends its
//! wantlist on a stream it opens; the answer (blocks, HAVE and DONT_HAVE presences) comes
//! back on a stream the other side opens. Messages are framed by an unsigned varint length.
//!
//! Serving: wants are answered from the block store. Fetching: [`Bitswap::fetch_dag`] walks a
//! DAG from its root, asking a session of peers for up to [`PARALLEL_WANTS`] blocks at once;
//! every received block is hashed and must match a CID we asked for before it is stored.
//! A peer that sends a block we did not ask for, or a malformed message, is counted and cut
//! off (its stream closed).
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
    time::Duration,
};

use bytes::Bytes;
use cid::Cid;
use futures::{stream::FuturesUnordered, AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use tokio::sync::oneshot;

use self::message::{prefix_of, Message, Payload, Presence, Want, WantType, MAX_MESSAGE_BYTES};
use crate::store::{dag, BlockStore};

/// The protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");
/// Blocks a DAG fetch asks for at once.
pub const PARALLEL_WANTS: usize = 32;
/// Times a message is sent again when its stream fails.
const SEND_ATTEMPTS: u32 = 4;
/// How long a want waits for an answer before it is sent again.
pub const REBROADCAST: Duration = Duration::from_secs(2);
/// How long a want waits for a block before the fetch gives up on it.
pub const WANT_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// The store failed.
    #[error("{0}")]
    Store(String),
}

#[derive(Default)]
struct Wanted {
    waiters: Vec<oneshot::Sender<Result<Bytes, FetchError>>>,
    asked: HashSet<PeerId>,
    dont_have: HashSet<PeerId>,
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
    wanted: Mutex<HashMap<Cid, Wanted>>,
    misbehaving: Misbehaving,
    stats: Stats,
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
    /// Starts serving `store` over the streams `control` hands us.
    /// `misbehaving` hears of peers that break the protocol.
    pub fn start(store: S, mut control: libp2p_stream::Control, misbehaving: Misbehaving) -> Self {
        let incoming = control.accept(PROTOCOL);
        let bitswap = Bitswap {
            inner: Arc::new(Inner {
                store,
                control: Mutex::new(control),
                outbound: Default::default(),
                turn: Default::default(),
                wanted: Mutex::new(HashMap::new()),
                misbehaving,
                stats: Stats::default(),
            }),
        };
        match incoming {
            Ok(mut incoming) => {
                let this = bitswap.clone();
                tokio::spawn(async move {
                    while let Some((peer, stream)) = incoming.next().await {
                        tokio::spawn(this.clone().on_stream(peer, stream));
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
        loop {
            match read_message(&mut stream).await {
                // Handled on its own task, so this stream is read on while answers are
                // written (two nodes fetching from each other never wait on each other).
                Ok(Some(message)) => {
                    let this = self.clone();
                    tokio::spawn(async move { this.on_message(peer, message).await });
                }
                Ok(None) => break,
                Err(ReadError::Io(e)) => {
                    tracing::debug!(%peer, error = %e, "bitswap stream ended");
                    break;
                }
                Err(ReadError::Violation(e)) => {
                    self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, error = %e, "a peer broke the Bitswap protocol; disconnecting it");
                    (self.inner.misbehaving)(peer);
                    break;
                }
            }
        }
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
        let mut answer = Message::default();
        for want in message.wants.iter().filter(|w| !w.cancel) {
            let store = &self.inner.store;
            match want.want_type {
                WantType::Have => match store.has(&want.cid).await {
                    Ok(true) => answer.presences.push(Presence {
                        cid: want.cid,
                        have: true,
                    }),
                    _ if want.send_dont_have => answer.presences.push(Presence {
                        cid: want.cid,
                        have: false,
                    }),
                    _ => {}
                },
                WantType::Block => match store.get(&want.cid).await {
                    Ok(Some(bytes)) => {
                        answer.payload.push(Payload {
                            prefix: prefix_of(&want.cid),
                            data: bytes.to_vec(),
                        });
                        self.inner.stats.blocks_sent.fetch_add(1, Ordering::Relaxed);
                        self.inner.stats.count(peer, 1, 0);
                    }
                    _ if want.send_dont_have => answer.presences.push(Presence {
                        cid: want.cid,
                        have: false,
                    }),
                    _ => {}
                },
            }
        }
        // Blocks go out in messages under the size cap.
        for part in split(answer) {
            if let Err(e) = self.send(peer, &part).await {
                tracing::debug!(%peer, error = %e, "cannot answer a bitswap want");
                return;
            }
        }
    }

    async fn on_block(&self, peer: PeerId, payload: &Payload) {
        let cid = cid_of(payload);
        let waiters = cid.and_then(|cid| {
            self.inner
                .wanted
                .lock()
                .ok()
                .and_then(|mut w| w.remove(&cid))
                .map(|w| (cid, w.waiters))
        });
        let Some((cid, waiters)) = waiters else {
            // Not something we asked for (or not hashable to it): a wrong or unsolicited block.
            self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
            // Bitswap blocks carry no CID, only a prefix: bytes that do not hash to what was
            // asked look like a block nobody asked for, and so does an honest late answer (to a
            // want given up, or sent before this node restarted). Refused, not punished.
            tracing::debug!(%peer, "refused a block nobody here asked for (or the wrong bytes)");
            return;
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
        let Ok(mut wanted) = self.inner.wanted.lock() else {
            return;
        };
        let all_said_no = match wanted.get_mut(&cid) {
            Some(w) => {
                w.dont_have.insert(peer);
                w.asked.is_subset(&w.dont_have)
            }
            None => false,
        };
        if all_said_no {
            if let Some(w) = wanted.remove(&cid) {
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

    /// One block from `peers`: from the store if it is there, else asked of every peer at
    /// once; the first good copy wins.
    pub async fn fetch_block(&self, cid: Cid, peers: &[PeerId]) -> Result<Bytes, FetchError> {
        if let Ok(Some(bytes)) = self.inner.store.get(&cid).await {
            return Ok(bytes);
        }
        if peers.is_empty() {
            return Err(FetchError::NoPeers);
        }
        let (tx, rx) = oneshot::channel();
        if let Ok(mut wanted) = self.inner.wanted.lock() {
            let w = wanted.entry(cid).or_default();
            w.waiters.push(tx);
            w.asked.extend(peers.iter().copied());
        }
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
        let mut rx = rx;
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
                    if let Ok(mut wanted) = self.inner.wanted.lock() {
                        wanted.remove(&cid);
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

/// Splits an answer into messages under the size cap.
fn split(message: Message) -> Vec<Message> {
    let mut out = Vec::new();
    let mut current = Message {
        presences: message.presences,
        ..Message::default()
    };
    let mut size = 0usize;
    for block in message.payload {
        let len = block.data.len() + block.prefix.len() + 16;
        if size + len > MAX_MESSAGE_BYTES - 1024 && !current.payload.is_empty() {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.payload.push(block);
    }
    if !current.payload.is_empty() || !current.presences.is_empty() {
        out.push(current);
    }
    out
}
