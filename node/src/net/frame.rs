//! The framing of ipvec's own stream protocols (`/ipvec/head/…`, `/ipvec/search/…`): an
//! unsigned LEB128 length, then that many bytes. A frame over its protocol's limit is refused
//! from its length alone, before any of it is read.

use futures::{AsyncReadExt, AsyncWriteExt};

/// Why a frame was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Its length is over the protocol's limit (a peer that sends one breaks the protocol).
    #[error("a frame of {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// The length announced.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The stream ended or broke before the first byte of the frame: the peer closed it
    /// unanswered (or the connection went).
    #[error("the stream closed before a frame began: {0}")]
    Closed(String),
    /// The stream ended or failed, or the length prefix is malformed.
    #[error("{0}")]
    Stream(String),
}

/// Reads one frame of at most `max` bytes.
pub async fn read(stream: &mut libp2p::Stream, max: usize) -> Result<Vec<u8>, FrameError> {
    let broken = |e: std::io::Error| FrameError::Stream(e.to_string());
    let mut len = 0u64;
    for i in 0..10 {
        let mut byte = [0u8; 1];
        match stream.read_exact(&mut byte).await {
            Err(e) if i == 0 => return Err(FrameError::Closed(e.to_string())),
            read => read.map_err(broken)?,
        }
        len |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            if len > max as u64 {
                return Err(FrameError::TooLarge { len, max });
            }
            let mut buffer = vec![0u8; len as usize];
            stream.read_exact(&mut buffer).await.map_err(broken)?;
            return Ok(buffer);
        }
    }
    Err(FrameError::Stream(
        "length prefix longer than 10 bytes".into(),
    ))
}

/// Writes one frame and flushes it (the stream stays open for the answer).
pub async fn write(stream: &mut libp2p::Stream, bytes: &[u8]) -> Result<(), String> {
    let mut framed = Vec::with_capacity(bytes.len() + 5);
    crate::store::car::write_varint(&mut framed, bytes.len() as u64);
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())
}

/// Writes the last frame of a stream and closes it.
pub async fn write_last(stream: &mut libp2p::Stream, bytes: &[u8]) -> Result<(), String> {
    write(stream, bytes).await?;
    stream.close().await.map_err(|e| e.to_string())
}

/// Why `peer` gave no answer to a `what` request, from the error reading it, saying what to do.
pub fn unanswered(peer: libp2p::PeerId, what: &str, e: FrameError) -> String {
    match e {
        FrameError::Closed(cause) => format!(
            "{peer} closed the {what} request unanswered ({cause}): it is busy, or this node \
             is over its rate there; try again shortly or ask another peer"
        ),
        FrameError::TooLarge { .. } => {
            format!("{peer} answered the {what} request with {e}: it breaks the protocol")
        }
        FrameError::Stream(_) => format!("{peer} did not answer the {what} request: {e}"),
    }
}
