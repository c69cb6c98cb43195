//! A link's CAR file: written beside its final name, fsynced and renamed into place; read
//! back with every block hashed against its CID.

use std::{
    collections::HashMap,
    io::{BufReader, Read},
    path::Path,
};

use cid::Cid;
use ipvec_protocol::{cid as pcid, dagcbor};
use tokio::io::AsyncWriteExt;

use super::{manifest::sync_dir, BackupError};
use crate::store::{car, dag, BlockStore, Digest};

/// Blocks and block bytes written or read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Blocks.
    pub blocks: u64,
    /// Block bytes (CIDs and framing excluded).
    pub bytes: u64,
}

/// Writes `blocks` (read from `store`) as a CAR v1 file with root `root` at `path`: into a
/// hidden temporary file first, fsynced, then renamed, so `path` is whole or absent.
pub async fn write<S: BlockStore>(
    store: &S,
    root: &Cid,
    blocks: &[Cid],
    path: &Path,
    mut progress: impl FnMut(Totals),
) -> Result<Totals, BackupError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("backup.car");
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = async {
        let file = tokio::fs::File::create(&tmp).await?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let header = dagcbor::encode(&CarHeader {
            roots: vec![*root],
            version: 1,
        })
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut frame = Vec::with_capacity(16);
        car::write_varint(&mut frame, header.len() as u64);
        out.write_all(&frame).await?;
        out.write_all(&header).await?;
        let mut totals = Totals::default();
        for cid in blocks {
            let bytes = store
                .require(cid)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let cid_bytes = cid.to_bytes();
            frame.clear();
            car::write_varint(&mut frame, (cid_bytes.len() + bytes.len()) as u64);
            out.write_all(&frame).await?;
            out.write_all(&cid_bytes).await?;
            out.write_all(&bytes).await?;
            totals.blocks += 1;
            totals.bytes += bytes.len() as u64;
            progress(totals);
        }
        out.flush().await?;
        let file = out.into_inner();
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&tmp, path).await?;
        sync_dir(dir)?;
        std::io::Result::Ok(totals)
    }
    .await;
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        BackupError::io(path, e)
    })
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CarHeader {
    roots: Vec<Cid>,
    version: u64,
}

/// What a CAR file held, every block checked.
#[derive(Debug, Default)]
pub struct Contents {
    /// The roots its header names.
    pub roots: Vec<Cid>,
    /// The links of each block, by digest.
    pub links: HashMap<Digest, Vec<Cid>>,
    /// Blocks and block bytes.
    pub totals: Totals,
}

/// A block whose bytes do not hash to its CID, or a file that is not a CAR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The block, when one is to blame.
    pub block: Option<String>,
    /// Byte offset of its section.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

/// Reads the CAR file at `path`, hashing every block against its CID, and calls `each` with
/// every block (CID and bytes) once it is checked. Stops at the first damage.
pub fn read(
    path: &Path,
    mut each: impl FnMut(&Cid, &[u8]) -> Result<(), BackupError>,
) -> Result<Result<Contents, Damage>, BackupError> {
    let file = std::fs::File::open(path).map_err(|e| BackupError::io(path, e))?;
    let mut reader = Sections {
        inner: BufReader::with_capacity(1 << 20, file),
        offset: 0,
    };
    let damage = |offset, block: Option<&Cid>, reason: String| Damage {
        block: block.map(|c| c.to_string()),
        offset,
        reason,
    };
    let header = match reader.next(car::MAX_HEADER_BYTES) {
        Ok(Some((_, bytes))) => bytes,
        Ok(None) => return Ok(Err(damage(0, None, "the file is empty".into()))),
        Err(reason) => return Ok(Err(damage(0, None, reason))),
    };
    let header: CarHeader = match dagcbor::decode(&header) {
        Ok(h) => h,
        Err(e) => return Ok(Err(damage(0, None, format!("bad CAR header: {e}")))),
    };
    let mut contents = Contents {
        roots: header.roots,
        ..Contents::default()
    };
    loop {
        let (offset, section) = match reader.next(car::MAX_SECTION_BYTES) {
            Ok(Some(s)) => s,
            Ok(None) => break,
            Err(reason) => return Ok(Err(damage(reader.offset, None, reason))),
        };
        let mut cursor = std::io::Cursor::new(section.as_slice());
        let cid = match Cid::read_bytes(&mut cursor) {
            Ok(cid) => cid,
            Err(e) => return Ok(Err(damage(offset, None, format!("bad CID: {e}")))),
        };
        let data = &section[cursor.position() as usize..];
        if let Err(e) = pcid::verify_block(&cid, data) {
            return Ok(Err(damage(offset, Some(&cid), e.to_string())));
        }
        let links = match dag::block_links(&cid, data) {
            Ok(links) => links,
            Err(e) => return Ok(Err(damage(offset, Some(&cid), e.to_string()))),
        };
        each(&cid, data)?;
        // verify_block checked the CID is supported, so it has a digest.
        if let Ok(digest) = pcid::digest(&cid) {
            contents.links.insert(digest, links);
        }
        contents.totals.blocks += 1;
        contents.totals.bytes += data.len() as u64;
    }
    Ok(Ok(contents))
}

struct Sections<R> {
    inner: R,
    offset: u64,
}

impl<R: Read> Sections<R> {
    /// The next length-prefixed section and its offset; `None` at a clean end.
    fn next(&mut self, max: usize) -> Result<Option<(u64, Vec<u8>)>, String> {
        let start = self.offset;
        let mut len = 0u64;
        for i in 0..10 {
            let mut byte = [0u8; 1];
            match self.inner.read(&mut byte) {
                Ok(0) if i == 0 => return Ok(None),
                Ok(0) => return Err("the file ends inside a length prefix".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
            self.offset += 1;
            len |= u64::from(byte[0] & 0x7f) << (7 * i);
            if byte[0] & 0x80 == 0 {
                if len == 0 || len as usize > max {
                    return Err(format!("a section of {len} bytes is out of range"));
                }
                let mut buf = vec![0u8; len as usize];
                self.inner.read_exact(&mut buf).map_err(|_| {
                    format!("the file is truncated inside a section ({len} bytes expected)")
                })?;
                self.offset += len;
                return Ok(Some((start, buf)));
            }
        }
        Err("a length prefix longer than 10 bytes".into())
    }
}
