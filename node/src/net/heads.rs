//! `/ipvec/head/1.0.0`: ask a peer for the latest signed head it holds of a collection.
//!
//! On a stream the asker opens: request = varint length ‖ collection id (UTF-8, at most
//! [`MAX_ID_BYTES`]); answer = varint length ‖ the head record as DAG-CBOR (at most
//! [`MAX_HEAD_BYTES`]), or length 0 when the peer does not hold the collection. The asker
//! checks the signature; the answer is only a hint of where to start fetching.
//!
//! Each peer may ask `limits.peer_head_rate` a second (bursts of twice as many); a request
//! beyond that is closed unanswered, as one beyond [`MAX_SERVING`] is.

use std::{future::Future, pin::Pin, sync::Arc};

use futures::StreamExt;
use libp2p::{PeerId, StreamProtocol};

use super::frame;
use crate::{limits::peers::PeerRate, tasks::Tasks};

/// The protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/ipvec/head/1.0.0");
/// Longest collection id asked for.
pub const MAX_ID_BYTES: usize = 128;
/// Largest head record answered.
pub const MAX_HEAD_BYTES: usize = 4096;
/// Head requests answered at once; a stream that comes while this many are being answered
/// is closed unanswered (the asker tries another peer or again later).
pub const MAX_SERVING: usize = 64;
/// How long one head request may take (reading the id, looking it up, writing the answer).
pub const SERVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Looks up the DAG-CBOR head record of a collection id, if this node holds it.
pub type HeadSource =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send>> + Send + Sync>;

/// Answers head requests from `source` on the streams peers open to us through `streams`, at
/// most [`MAX_SERVING`] at once, each within [`SERVE_TIMEOUT`] and within its peer's `rate`,
/// on tasks of `tasks`.
pub fn serve(
    streams: &super::streams::Streams,
    source: HeadSource,
    rate: Arc<PeerRate>,
    tasks: &Arc<Tasks>,
) {
    let Ok(mut incoming) = streams.accept(PROTOCOL) else {
        tracing::error!("cannot accept head requests");
        return;
    };
    let owner = tasks.clone();
    tasks.spawn(async move {
        let serving = Arc::new(tokio::sync::Semaphore::new(MAX_SERVING));
        while let Some((peer, mut stream)) = incoming.next().await {
            if rate.admit(peer, 1, std::time::Instant::now()) == 0 {
                tracing::debug!(%peer, "a peer over its head request rate (limits.peer_head_rate); refused one");
                continue;
            }
            let Ok(permit) = serving.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "too many head requests at once; refused one");
                continue;
            };
            let source = source.clone();
            owner.spawn(async move {
                let answer = async {
                    let id = frame::read(&mut stream, MAX_ID_BYTES)
                        .await
                        .map_err(|e| e.to_string())?;
                    let id =
                        String::from_utf8(id).map_err(|_| "a collection id that is not UTF-8")?;
                    let head = source(id).await.unwrap_or_default();
                    frame::write_last(&mut stream, &head).await
                };
                let answered = tokio::time::timeout(SERVE_TIMEOUT, answer)
                    .await
                    .unwrap_or_else(|_| Err("the request took too long".to_string()));
                if let Err(e) = answered {
                    tracing::debug!(%peer, error = %e, "head request refused");
                }
                drop(permit);
            });
        }
    });
}

/// Asks `peer` for its head of `collection`: the DAG-CBOR bytes, or `None` if it has none.
pub async fn ask(
    mut streams: super::streams::Streams,
    peer: PeerId,
    collection: &str,
) -> Result<Option<Vec<u8>>, super::NetError> {
    let mut stream = streams.open(peer, PROTOCOL).await?;
    let failed = |reason: String| super::NetError::Ask {
        peer,
        protocol: PROTOCOL,
        reason,
    };
    frame::write(&mut stream, collection.as_bytes())
        .await
        .map_err(|e| {
            failed(frame::unanswered(
                peer,
                "head",
                frame::FrameError::Closed(e),
            ))
        })?;
    let head = frame::read(&mut stream, MAX_HEAD_BYTES)
        .await
        .map_err(|e| failed(frame::unanswered(peer, "head", e)))?;
    Ok((!head.is_empty()).then_some(head))
}
