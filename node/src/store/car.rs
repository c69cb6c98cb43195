//! CAR v1: export the DAG under a root as a stream, import a stream with every block checked.
//!
//! A CAR v1 file is `varint(len) header` then sections `varint(len) CID bytes block bytes`;
//! the header is the DAG-CBOR map `{"roots": [CID…], "version": 1}`. Export writes blocks in
//! depth-first pre-order, each once, reading one block at a time. Import rejects the file at
//! the first bad section and pins its roots only after every block is stored and each root's
//! DAG is complete, so a failed import leaves nothing pinned (its blocks are garbage).

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use cid::Cid;
use ipvec_protocol::{cid as pcid, dagcbor, limits};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{dag, BlockStore, Digest, StoreError};

/// Largest CAR header accepted.
pub const MAX_HEADER_BYTES: usize = 1 << 20;
/// Blocks an export reads at once.
const READ_AHEAD: usize = 4;
/// Largest section accepted: a foreign block plus its CID.
pub const MAX_SECTION_BYTES: usize = limits::MAX_FOREIGN_BLOCK_BYTES + 128;

#[derive(Debug, Serialize, Deserialize)]
struct CarHeader {
    roots: Vec<Cid>,
    version: u64,
}

/// Running totals, reported after each block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CarProgress {
    /// Blocks written or read so far.
    pub blocks: u64,
    /// Block bytes written or read so far (CIDs and framing excluded).
    pub bytes: u64,
}

/// What an import stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// The roots named in the header, now pinned.
    pub roots: Vec<Cid>,
    /// Blocks and bytes read.
    pub totals: CarProgress,
}

/// Appends `n` as an unsigned LEB128 varint, the length prefix of CAR sections.
pub fn write_varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Writes the DAG under `root` to `out` as a CAR v1 file; returns the totals.
pub async fn export<S, W>(
    store: &S,
    root: &Cid,
    out: W,
    mut progress: impl FnMut(CarProgress),
) -> Result<CarProgress, StoreError>
where
    S: BlockStore,
    W: AsyncWrite + Unpin,
{
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, out);
    let header = dagcbor::encode(&CarHeader {
        roots: vec![*root],
        version: 1,
    })?;
    let mut frame = Vec::with_capacity(16);
    write_varint(&mut frame, header.len() as u64);
    out.write_all(&frame).await?;
    out.write_all(&header).await?;

    let mut totals = CarProgress::default();
    let mut seen: HashSet<Digest> = HashSet::new();
    let mut stack = vec![*root];
    // Blocks read ahead of the walk: at most READ_AHEAD - 1, so memory stays bounded.
    let mut ahead: HashMap<Digest, Bytes> = HashMap::new();
    while let Some(cid) = stack.pop() {
        let digest = pcid::digest(&cid)?;
        if !seen.insert(digest) {
            continue;
        }
        let bytes = match ahead.remove(&digest) {
            Some(bytes) => bytes,
            None => {
                // Read this block together with the next ones the walk will visit (the top
                // of the stack), so the store serves several reads at once.
                let mut batch = vec![cid];
                for next in stack.iter().rev() {
                    if batch.len() == READ_AHEAD {
                        break;
                    }
                    let d = pcid::digest(next)?;
                    if !seen.contains(&d) && !ahead.contains_key(&d) && !batch.contains(next) {
                        batch.push(*next);
                    }
                }
                let mut blocks =
                    futures::future::try_join_all(batch.iter().map(|c| store.require(c))).await?;
                for (c, b) in batch.iter().skip(1).zip(blocks.drain(1..)) {
                    ahead.insert(pcid::digest(c)?, b);
                }
                blocks.swap_remove(0)
            }
        };
        let cid_bytes = cid.to_bytes();
        frame.clear();
        write_varint(&mut frame, (cid_bytes.len() + bytes.len()) as u64);
        out.write_all(&frame).await?;
        out.write_all(&cid_bytes).await?;
        out.write_all(&bytes).await?;
        totals.blocks += 1;
        totals.bytes += bytes.len() as u64;
        progress(totals);
        let links = dag::block_links(&cid, &bytes)?;
        stack.extend(links.into_iter().rev());
    }
    out.flush().await?;
    Ok(totals)
}

struct Reader<R> {
    inner: R,
    offset: u64,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn error(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Car {
            offset: self.offset,
            reason: reason.into(),
        }
    }

    /// Reads a varint; `None` at a clean end of file.
    async fn varint(&mut self) -> Result<Option<u64>, StoreError> {
        let mut value = 0u64;
        for i in 0..10 {
            let mut byte = [0u8; 1];
            let n = self.inner.read(&mut byte).await?;
            if n == 0 {
                return if i == 0 {
                    Ok(None)
                } else {
                    Err(self.error("file ends inside a length prefix"))
                };
            }
            self.offset += 1;
            value |= u64::from(byte[0] & 0x7f) << (7 * i);
            if byte[0] & 0x80 == 0 {
                return Ok(Some(value));
            }
        }
        Err(self.error("length prefix longer than 10 bytes"))
    }

    async fn exact(&mut self, len: usize, what: &str) -> Result<Vec<u8>, StoreError> {
        let mut buf = vec![0u8; len];
        match self.inner.read_exact(&mut buf).await {
            Ok(_) => {
                self.offset += len as u64;
                Ok(buf)
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(self.error(format!(
                "file is truncated inside {what} ({len} bytes expected)"
            ))),
            Err(e) => Err(e.into()),
        }
    }
}

/// Reads and checks a CAR v1 header.
async fn read_header<R: AsyncRead + Unpin>(
    reader: &mut Reader<R>,
) -> Result<CarHeader, StoreError> {
    let header_len = reader
        .varint()
        .await?
        .ok_or_else(|| reader.error("empty file: no CAR header"))?;
    if header_len == 0 || header_len as usize > MAX_HEADER_BYTES {
        return Err(reader.error(format!("header length {header_len} is out of range")));
    }
    let header_bytes = reader.exact(header_len as usize, "the header").await?;
    let header: CarHeader = dagcbor::decode(&header_bytes).map_err(|e| StoreError::Car {
        offset: 0,
        reason: format!("bad header: {e}"),
    })?;
    if header.version != 1 {
        return Err(StoreError::Car {
            offset: 0,
            reason: format!(
                "CAR version {} is not supported; export it as CAR v1",
                header.version
            ),
        });
    }
    if header.roots.is_empty() {
        return Err(StoreError::Car {
            offset: 0,
            reason: "the header names no roots".into(),
        });
    }
    Ok(header)
}

/// Reads a CAR v1 stream's framing without checking its blocks: its roots and how many blocks
/// (and block bytes) it holds. For reporting on a CAR that someone else verified.
pub async fn scan<R: AsyncRead + Unpin>(input: R) -> Result<ImportSummary, StoreError> {
    let mut reader = Reader {
        inner: tokio::io::BufReader::with_capacity(1 << 20, input),
        offset: 0,
    };
    let header = read_header(&mut reader).await?;
    let mut totals = CarProgress::default();
    while let Some(len) = reader.varint().await? {
        if len as usize > MAX_SECTION_BYTES || len == 0 {
            return Err(reader.error(format!(
                "section of {len} bytes is over the {MAX_SECTION_BYTES}-byte limit"
            )));
        }
        let section = reader.exact(len as usize, "a block section").await?;
        let mut cursor = std::io::Cursor::new(section.as_slice());
        Cid::read_bytes(&mut cursor)
            .map_err(|e| reader.error(format!("bad CID in section: {e}")))?;
        totals.blocks += 1;
        totals.bytes += section.len() as u64 - cursor.position();
    }
    Ok(ImportSummary {
        roots: header.roots,
        totals,
    })
}

/// Reads a CAR v1 stream into `store`, checking every block, then pins its roots.
pub async fn import<S, R>(
    store: &S,
    input: R,
    mut progress: impl FnMut(CarProgress),
) -> Result<ImportSummary, StoreError>
where
    S: BlockStore,
    R: AsyncRead + Unpin,
{
    let mut reader = Reader {
        inner: tokio::io::BufReader::with_capacity(1 << 20, input),
        offset: 0,
    };
    let header = read_header(&mut reader).await?;
    for root in &header.roots {
        pcid::check_supported(root)?;
    }

    let mut totals = CarProgress::default();
    // Links of the blocks read, to check the roots' DAGs are complete without reading them back.
    let mut links: HashMap<Digest, Vec<Cid>> = HashMap::new();
    loop {
        let section_start = reader.offset;
        let Some(len) = reader.varint().await? else {
            break;
        };
        if len as usize > MAX_SECTION_BYTES || len == 0 {
            return Err(reader.error(format!(
                "section of {len} bytes is over the {MAX_SECTION_BYTES}-byte limit"
            )));
        }
        let section = reader.exact(len as usize, "a block section").await?;
        let mut cursor = std::io::Cursor::new(section.as_slice());
        let cid = Cid::read_bytes(&mut cursor).map_err(|e| StoreError::Car {
            offset: section_start,
            reason: format!("bad CID in section: {e}"),
        })?;
        let data = &section[cursor.position() as usize..];
        let located = |e: &dyn std::fmt::Display| StoreError::Car {
            offset: section_start,
            reason: format!("block {cid}: {e}"),
        };
        pcid::verify_block(&cid, data).map_err(|e| located(&e))?;
        if cid.codec() == pcid::DAG_CBOR {
            let value = dagcbor::decode_ipld(data).map_err(|e| located(&e))?;
            links.insert(pcid::digest(&cid)?, dagcbor::links(&value));
        } else {
            links.insert(pcid::digest(&cid)?, Vec::new());
        }
        store
            .put_raw(pcid::digest(&cid)?, Bytes::copy_from_slice(data))
            .await?;
        totals.blocks += 1;
        totals.bytes += data.len() as u64;
        progress(totals);
    }

    // Every root's DAG must be whole: blocks from this file or already stored.
    let mut seen: HashSet<Digest> = HashSet::new();
    let mut stack: Vec<Cid> = header.roots.clone();
    while let Some(cid) = stack.pop() {
        let digest = pcid::digest(&cid)?;
        if !seen.insert(digest) {
            continue;
        }
        match links.get(&digest) {
            Some(children) => stack.extend(children.iter().copied()),
            None => {
                let bytes = store.get(&cid).await?.ok_or_else(|| StoreError::Car {
                    offset: reader.offset,
                    reason: format!(
                        "block {cid} under a root is neither in the file nor in the store"
                    ),
                })?;
                stack.extend(dag::block_links(&cid, &bytes)?);
            }
        }
    }
    store.flush().await?;
    for root in &header.roots {
        store.pin(root).await?;
    }
    store.flush().await?;
    Ok(ImportSummary {
        roots: header.roots,
        totals,
    })
}
