//! Sending: messages to a peer go out on a few long-lived outbound streams (opened on first
//! use; Bitswap peers read message after message from a stream), several at once. The wants
//! and cancels the ledger asks for go out in the order it asked, through one sender task
//! per peer (a cancel never overtakes its want).

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use futures::AsyncWriteExt;
use libp2p::PeerId;

use super::{
    message::{self, Message},
    Bitswap, MAX_PEERS_KEPT, PROTOCOL,
};
use crate::store::BlockStore;

/// Times a message is sent again when its stream fails.
const SEND_ATTEMPTS: u32 = 4;
/// Outbound streams kept open per peer; messages to a peer go out on several at once.
const STREAMS_PER_PEER: usize = 4;

/// One outbound stream to a peer, opened when first needed.
type OutboundSlot = Arc<tokio::sync::Mutex<Option<libp2p::Stream>>>;

/// The outbound streams of each peer, and whose turn is next when all are busy.
#[derive(Default)]
pub(super) struct Outbound {
    slots: tokio::sync::Mutex<HashMap<PeerId, Vec<OutboundSlot>>>,
    turn: std::sync::atomic::AtomicUsize,
}

/// Wants and cancels waiting to go out, per peer, in order; a peer is in the map while its
/// sender task runs. Bounded by the ledger: at most a want and a cancel per block asked of
/// the peer.
#[derive(Default)]
pub(super) struct Outbox(Mutex<HashMap<PeerId, Vec<message::Want>>>);

impl<S: BlockStore + Clone + Send + Sync + 'static> Bitswap<S> {
    /// Queues `wants` (and cancels) for `peer` after those queued before, starting its
    /// sender task if none runs.
    pub(super) fn queue_wants(&self, peer: PeerId, wants: Vec<message::Want>) {
        let start = {
            let Ok(mut outbox) = self.inner.outbox.0.lock() else {
                return;
            };
            match outbox.get_mut(&peer) {
                Some(queued) => {
                    for want in wants {
                        // A want asked again while its last entry still waits goes once.
                        if queued.iter().rev().find(|q| q.cid == want.cid) != Some(&want) {
                            queued.push(want);
                        }
                    }
                    false
                }
                None => {
                    outbox.insert(peer, wants);
                    true
                }
            }
        };
        if start && !self.inner.tasks.spawn(self.clone().send_queued(peer)) {
            if let Ok(mut outbox) = self.inner.outbox.0.lock() {
                outbox.remove(&peer);
            }
        }
    }

    /// Sends `peer`'s queued wants, all that wait in one message, until none is left; a
    /// want that cannot be sent is reported to the ledger as unreachable.
    async fn send_queued(self, peer: PeerId) {
        loop {
            let wants = {
                let Ok(mut outbox) = self.inner.outbox.0.lock() else {
                    return;
                };
                match outbox.get_mut(&peer) {
                    Some(queued) if !queued.is_empty() => std::mem::take(queued),
                    _ => {
                        outbox.remove(&peer);
                        return;
                    }
                }
            };
            let message = Message {
                wants,
                ..Message::default()
            };
            let Err(e) = self.send(peer, &message).await else {
                continue;
            };
            tracing::debug!(%peer, error = %e, "cannot send wants");
            for want in message.wants.iter().filter(|w| !w.cancel) {
                self.on_unreachable(peer, want.cid);
            }
        }
    }

    /// Sends one message to `peer` on one of its outbound streams, trying again on a fresh
    /// stream a few times when a stream cannot be opened or written.
    pub(super) async fn send(&self, peer: PeerId, message: &Message) -> Result<(), String> {
        // The length prefix and the body go out as two writes, so the body is not copied
        // behind the prefix.
        let body = message.encode();
        let mut prefix = Vec::with_capacity(10);
        crate::store::car::write_varint(&mut prefix, body.len() as u64);
        let mut delay = Duration::from_millis(20);
        let mut attempt = 0;
        loop {
            let slot = self.outbound_slot(peer).await;
            let mut slot = slot.lock().await;
            let sent = async {
                if slot.is_none() {
                    let mut streams = match self.inner.streams.lock() {
                        Ok(s) => s.clone(),
                        Err(_) => return Err("bitswap is shutting down".to_string()),
                    };
                    *slot = Some(
                        streams
                            .open(peer, PROTOCOL)
                            .await
                            .map_err(|e| e.to_string())?,
                    );
                }
                let stream = slot.as_mut().ok_or("no stream")?;
                stream.write_all(&prefix).await.map_err(|e| e.to_string())?;
                stream.write_all(&body).await.map_err(|e| e.to_string())?;
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
        let outbound = &self.inner.outbound;
        let slots = {
            let mut by_peer = outbound.slots.lock().await;
            if by_peer.len() >= MAX_PEERS_KEPT && !by_peer.contains_key(&peer) {
                // Streams no message is being sent on are closed; they open again when needed.
                by_peer.retain(|_, slots| {
                    slots
                        .iter()
                        .any(|s| Arc::strong_count(s) > 1 || s.try_lock().is_err())
                });
            }
            by_peer
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
        let turn = outbound.turn.fetch_add(1, Ordering::Relaxed);
        slots[turn % slots.len()].clone()
    }
}
