//! Serving: reading the messages a peer sends on the streams it opens, and answering their
//! wants from the block store; blocks and DONT_HAVEs in them go to the fetching side.

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc, Mutex},
};

use futures::{AsyncReadExt, StreamExt};
use libp2p::PeerId;
use tokio::sync::Semaphore;

use super::{
    message::{prefix_of, Message, Payload, Presence, WantType, MAX_MESSAGE_BYTES},
    Bitswap, MAX_PEERS_KEPT, SERVING_PER_PEER,
};
use crate::store::BlockStore;

/// Per-peer limits: a semaphore for each peer, made on first use and dropped once idle.
#[derive(Default)]
pub(super) struct PeerLimits(Mutex<HashMap<PeerId, Arc<Semaphore>>>);

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
            return Message::decode_shared(&buffer.into())
                .map(Some)
                .map_err(|e| ReadError::Violation(e.to_string()));
        }
    }
    Err(ReadError::Violation(
        "length prefix longer than 10 bytes".into(),
    ))
}

impl<S: BlockStore + Clone + Send + Sync + 'static> Bitswap<S> {
    /// Takes the streams peers open, each read on a task of its own.
    pub(super) async fn accept(self, mut incoming: crate::net::raw::Incoming) {
        while let Some((peer, stream)) = incoming.next().await {
            self.inner.tasks.spawn(self.clone().on_stream(peer, stream));
        }
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
        let wants: Vec<_> = message.wants.iter().filter(|w| !w.cancel).collect();
        // Wants over the peer's rate (limits.peer_want_rate) are answered DONT_HAVE, when
        // asked for, as if this node had not the block: the peer looks elsewhere or later.
        let admitted = self.inner.want_rate.admit(
            peer,
            u32::try_from(wants.len()).unwrap_or(u32::MAX),
            std::time::Instant::now(),
        ) as usize;
        for want in wants.iter().skip(admitted).filter(|w| w.send_dont_have) {
            answer.presences.push(Presence {
                cid: want.cid,
                have: false,
            });
        }
        if admitted < wants.len() {
            tracing::debug!(%peer, refused = wants.len() - admitted, "wants over the peer's rate (limits.peer_want_rate)");
        }
        for want in wants.into_iter().take(admitted) {
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
                            data: bytes,
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
}
