//! Where things are in a FAISS index file: the headers are read, every block the bridge does
//! not use is stepped over, and the result says where the vectors and the ids start.
//!
//! Every size read is checked against the bytes the file has left before anything is skipped
//! or allocated, so a truncated or corrupt file gives an error naming what does not add up.

use std::{
    fs::File,
    io::{BufReader, Read, Seek, SeekFrom},
    path::Path,
};

use ipvec_protocol::limits::MAX_DIMENSION;

use super::super::{BridgeError, Result};

/// `IndexFlatL2`.
pub const FLAT_L2: [u8; 4] = *b"IxF2";
/// `IndexFlatIP`.
pub const FLAT_IP: [u8; 4] = *b"IxFI";
/// `IndexFlat` with another metric.
pub const FLAT_OTHER: [u8; 4] = *b"IxFl";
/// `IndexIDMap`.
pub const ID_MAP: [u8; 4] = *b"IxMp";
/// `IndexIDMap2`.
pub const ID_MAP2: [u8; 4] = *b"IxM2";
/// `IndexHNSWFlat`.
pub const HNSW_FLAT: [u8; 4] = *b"IHNf";
/// The storage of an HNSW index written without it (`IO_FLAG_SKIP_STORAGE`).
pub const NO_STORAGE: [u8; 4] = *b"null";

/// FAISS's `METRIC_INNER_PRODUCT`.
pub const METRIC_INNER_PRODUCT: i32 = 0;
/// FAISS's `METRIC_L2`.
pub const METRIC_L2: i32 = 1;

/// Bytes of the common index header when the metric has no argument: `d` (i32), `ntotal`
/// (i64), two unused i64s, `is_trained` (u8), `metric_type` (i32).
pub const HEADER_BYTES: u64 = 4 + 8 + 8 + 8 + 1 + 4;
/// What FAISS writes in the two unused header fields.
pub const HEADER_DUMMY: i64 = 1 << 20;
/// Index wrappers nested deeper than this are refused (FAISS writes one or two).
const MAX_NESTING: usize = 4;

/// The common header every FAISS index starts with, after its four-byte type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Header {
    /// Vector dimension.
    pub d: u32,
    /// Number of vectors.
    pub ntotal: u64,
    /// FAISS's `MetricType` number (0 inner product, 1 L2, others unsupported).
    pub metric_type: i32,
}

/// What the bridge reads from a FAISS file.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// The outermost index's type, for messages.
    pub kind: String,
    /// Vector dimension.
    pub d: u32,
    /// Number of vectors.
    pub ntotal: u64,
    /// FAISS's metric number.
    pub metric_type: i32,
    /// Offset of the first vector (`ntotal × d` little-endian f32s follow, one vector after
    /// the other).
    pub vectors_at: u64,
    /// Offset of the id map (`ntotal` little-endian i64s), for an `IndexIDMap`.
    pub ids_at: Option<u64>,
}

/// Reads the structure of the FAISS file `path`.
pub fn read_layout(path: &Path) -> Result<Layout> {
    let file = File::open(path).map_err(|e| BridgeError::io(path, e))?;
    let len = file.metadata().map_err(|e| BridgeError::io(path, e))?.len();
    let mut reader = Cursor {
        inner: BufReader::new(file),
        path,
        at: 0,
        len,
    };
    let layout = reader.index(0)?;
    if reader.at != len {
        return Err(reader.corrupt(&format!(
            "the index ends at byte {} but the file has {len} bytes; it is not one FAISS \
             index as written by faiss.write_index",
            reader.at
        )));
    }
    Ok(layout)
}

/// A reader that knows its position and the file's length.
struct Cursor<'a, R> {
    inner: R,
    path: &'a Path,
    at: u64,
    len: u64,
}

impl<R: Read + Seek> Cursor<'_, R> {
    fn corrupt(&self, what: &str) -> BridgeError {
        BridgeError::invalid(format!("{}: {what}", self.path.display()))
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        if self.len - self.at < N as u64 {
            return Err(self.corrupt(&format!(
                "the file ends at byte {} inside {what}: it is truncated (copy it again, or \
                 write it again with faiss.write_index)",
                self.len
            )));
        }
        let mut buf = [0u8; N];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| BridgeError::io(self.path, e))?;
        self.at += N as u64;
        Ok(buf)
    }

    fn i32(&mut self, what: &str) -> Result<i32> {
        self.bytes::<4>(what).map(i32::from_le_bytes)
    }

    fn i64(&mut self, what: &str) -> Result<i64> {
        self.bytes::<8>(what).map(i64::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.bytes::<8>(what).map(u64::from_le_bytes)
    }

    /// Steps over `count` elements of `size` bytes, checking the file holds them.
    fn skip(&mut self, count: u64, size: u64, what: &str) -> Result<u64> {
        let start = self.at;
        let bytes = count
            .checked_mul(size)
            .filter(|bytes| *bytes <= self.len - self.at)
            .ok_or_else(|| {
                self.corrupt(&format!(
                    "{what} at byte {start} says it holds {count} elements of {size} bytes, \
                     more than the {} bytes left in the file: it is truncated or corrupt",
                    self.len - self.at
                ))
            })?;
        let offset = i64::try_from(bytes).map_err(|_| self.corrupt("absurd block size"))?;
        self.inner
            .seek_relative(offset)
            .map_err(|e| BridgeError::io(self.path, e))?;
        self.at += bytes;
        Ok(start)
    }

    /// Steps over a FAISS vector: its element count (u64), then the elements.
    fn skip_vector(&mut self, size: u64, what: &str) -> Result<u64> {
        let count = self.u64(what)?;
        self.skip(count, size, what)?;
        Ok(count)
    }

    fn header(&mut self, kind: &str) -> Result<Header> {
        let what = format!("the header of the {kind} index");
        let d = self.i32(&what)?;
        let ntotal = self.i64(&what)?;
        self.i64(&what)?;
        self.i64(&what)?;
        let trained = self.bytes::<1>(&what)?[0];
        let metric_type = self.i32(&what)?;
        if metric_type > METRIC_L2 {
            self.bytes::<4>(&what)?;
        }
        if d <= 0 || d as usize > MAX_DIMENSION {
            return Err(self.corrupt(&format!(
                "the {kind} index has dimension {d}; ipvec takes 1 to {MAX_DIMENSION} (is this \
                 a FAISS index file?)"
            )));
        }
        let ntotal = u64::try_from(ntotal).map_err(|_| {
            self.corrupt(&format!(
                "the {kind} index says it holds {ntotal} vectors; the file is corrupt"
            ))
        })?;
        if trained > 1 {
            return Err(self.corrupt(&format!(
                "the {kind} index's is_trained byte is {trained}, not 0 or 1; the file is \
                 corrupt"
            )));
        }
        Ok(Header {
            d: d as u32,
            ntotal,
            metric_type,
        })
    }

    fn index(&mut self, depth: usize) -> Result<Layout> {
        if depth > MAX_NESTING {
            return Err(self.corrupt(&format!(
                "indexes nested more than {MAX_NESTING} deep; the file is corrupt"
            )));
        }
        let at = self.at;
        let fourcc = self.bytes::<4>("the index type")?;
        let kind = String::from_utf8_lossy(&fourcc).into_owned();
        match fourcc {
            FLAT_L2 | FLAT_IP | FLAT_OTHER => {
                let header = self.header(&kind)?;
                let floats = self.u64("the vector block's size")?;
                let expected = header.ntotal.checked_mul(u64::from(header.d));
                if expected != Some(floats) {
                    return Err(self.corrupt(&format!(
                        "the {kind} index holds {} vectors of dimension {} but its vector \
                         block says {floats} floats; the file is corrupt",
                        header.ntotal, header.d
                    )));
                }
                let vectors_at = self.skip(floats, 4, &format!("the {kind} vector block"))?;
                Ok(Layout {
                    kind,
                    d: header.d,
                    ntotal: header.ntotal,
                    metric_type: header.metric_type,
                    vectors_at,
                    ids_at: None,
                })
            }
            ID_MAP | ID_MAP2 => {
                let header = self.header(&kind)?;
                let inner = self.index(depth + 1)?;
                if inner.ids_at.is_some() {
                    return Err(self.corrupt(&format!(
                        "the {kind} index wraps another id map ({}); ipvec reads one id map \
                         over a flat or HNSW index",
                        inner.kind
                    )));
                }
                check_same(self, &kind, &header, &inner)?;
                let count = self.u64("the id map's size")?;
                if count != header.ntotal {
                    return Err(self.corrupt(&format!(
                        "the {kind} index holds {} vectors but {count} ids; the file is corrupt",
                        header.ntotal
                    )));
                }
                let ids_at = self.skip(count, 8, "the id map")?;
                Ok(Layout {
                    kind,
                    ids_at: Some(ids_at),
                    ..inner
                })
            }
            HNSW_FLAT => {
                let header = self.header(&kind)?;
                self.skip_vector(8, "the HNSW level probabilities")?;
                self.skip_vector(4, "the HNSW neighbours per level")?;
                let levels = self.skip_vector(4, "the HNSW levels")?;
                if levels != header.ntotal {
                    return Err(self.corrupt(&format!(
                        "the {kind} index holds {} vectors but its graph has {levels} levels \
                         entries; the file is corrupt",
                        header.ntotal
                    )));
                }
                self.skip_vector(8, "the HNSW offsets")?;
                self.skip_vector(4, "the HNSW neighbours")?;
                // Entry point, max level, efConstruction, efSearch, and the unused upper beam.
                self.skip(5, 4, "the HNSW parameters")?;
                let storage_at = self.at;
                if self.bytes::<4>("the HNSW storage")? == NO_STORAGE {
                    return Err(self.corrupt(&format!(
                        "the {kind} index was written without its vectors (storage skipped); \
                         write it again with faiss.write_index and no IO_FLAG_SKIP_STORAGE"
                    )));
                }
                self.inner
                    .seek(SeekFrom::Start(storage_at))
                    .map_err(|e| BridgeError::io(self.path, e))?;
                self.at = storage_at;
                let storage = self.index(depth + 1)?;
                if !matches!(storage.kind.as_bytes(), b"IxF2" | b"IxFI" | b"IxFl") {
                    return Err(self.corrupt(&format!(
                        "the {kind} index stores its vectors in a {} index, not a flat one; \
                         the file is corrupt",
                        storage.kind
                    )));
                }
                check_same(self, &kind, &header, &storage)?;
                Ok(Layout { kind, ..storage })
            }
            _ => Err(self.corrupt(&format!(
                "byte {at} starts an index of type {kind:?} ({}), which ipvec does not read; \
                 ipvec reads IndexFlatL2 (IxF2), IndexFlatIP (IxFI), IndexIDMap/IndexIDMap2 \
                 (IxMp/IxM2) and IndexHNSWFlat (IHNf). Copy the vectors into one of those \
                 with faiss (index.reconstruct_n) and write that",
                hex(&fourcc)
            ))),
        }
    }
}

/// Checks that a wrapper and what it wraps agree on dimension, count and metric.
fn check_same<R: Read + Seek>(
    cursor: &Cursor<'_, R>,
    kind: &str,
    header: &Header,
    inner: &Layout,
) -> Result<()> {
    if header.d != inner.d
        || header.ntotal != inner.ntotal
        || header.metric_type != inner.metric_type
    {
        return Err(cursor.corrupt(&format!(
            "the {kind} index (dimension {}, {} vectors, metric {}) wraps a {} index \
             (dimension {}, {} vectors, metric {}) that disagrees with it; the file is corrupt",
            header.d,
            header.ntotal,
            header.metric_type,
            inner.kind,
            inner.d,
            inner.ntotal,
            inner.metric_type
        )));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The common header, as FAISS writes it for a metric without argument.
pub fn header_bytes(d: u32, ntotal: u64, metric_type: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES as usize);
    out.extend_from_slice(&(d as i32).to_le_bytes());
    out.extend_from_slice(&(ntotal as i64).to_le_bytes());
    out.extend_from_slice(&HEADER_DUMMY.to_le_bytes());
    out.extend_from_slice(&HEADER_DUMMY.to_le_bytes());
    out.push(1);
    out.extend_from_slice(&metric_type.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(kind: [u8; 4], d: u32, vectors: &[f32], metric: i32) -> Vec<u8> {
        let n = vectors.len().checked_div(d as usize).unwrap_or(0) as u64;
        let mut out = kind.to_vec();
        out.extend(header_bytes(d, n, metric));
        out.extend((vectors.len() as u64).to_le_bytes());
        out.extend(vectors.iter().flat_map(|x| x.to_le_bytes()));
        out
    }

    fn id_map(inner: Vec<u8>, d: u32, ids: &[i64], metric: i32) -> Vec<u8> {
        let mut out = ID_MAP2.to_vec();
        out.extend(header_bytes(d, ids.len() as u64, metric));
        out.extend(inner);
        out.extend((ids.len() as u64).to_le_bytes());
        out.extend(ids.iter().flat_map(|x| x.to_le_bytes()));
        out
    }

    fn hnsw(storage: Vec<u8>, d: u32, n: u64, metric: i32) -> Vec<u8> {
        let mut out = HNSW_FLAT.to_vec();
        out.extend(header_bytes(d, n, metric));
        let vector = |out: &mut Vec<u8>, count: u64, size: usize| {
            out.extend(count.to_le_bytes());
            out.extend(std::iter::repeat_n(7u8, count as usize * size));
        };
        vector(&mut out, 2, 8);
        vector(&mut out, 3, 4);
        vector(&mut out, n, 4);
        vector(&mut out, n + 1, 8);
        vector(&mut out, 5, 4);
        out.extend([0u8; 20]);
        out.extend(storage);
        out
    }

    fn layout_of(bytes: &[u8]) -> Result<Layout> {
        let dir = tempfile::tempdir().map_err(|e| BridgeError::io(Path::new("tmp"), e))?;
        let path = dir.path().join("x.index");
        std::fs::write(&path, bytes).map_err(|e| BridgeError::io(&path, e))?;
        read_layout(&path)
    }

    fn error_of(bytes: &[u8]) -> String {
        match layout_of(bytes) {
            Ok(layout) => panic!("read {layout:?} from a bad file"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_flat_index_says_where_its_vectors_are() {
        let bytes = flat(FLAT_L2, 2, &[1.0, 2.0, 3.0, 4.0], METRIC_L2);
        let layout = layout_of(&bytes).unwrap();
        assert_eq!(
            (layout.d, layout.ntotal, layout.metric_type),
            (2, 2, METRIC_L2)
        );
        assert_eq!(layout.vectors_at, 4 + HEADER_BYTES + 8);
        assert_eq!(layout.ids_at, None);
    }

    #[test]
    fn an_id_map_over_hnsw_gives_the_storage_vectors_and_the_ids() {
        let storage = flat(FLAT_IP, 3, &[0.5; 6], METRIC_INNER_PRODUCT);
        let graph = hnsw(storage.clone(), 3, 2, METRIC_INNER_PRODUCT);
        let bytes = id_map(graph.clone(), 3, &[10, 20], METRIC_INNER_PRODUCT);
        let layout = layout_of(&bytes).unwrap();
        assert_eq!(layout.kind, "IxM2");
        assert_eq!(layout.ntotal, 2);
        let storage_at = 4 + HEADER_BYTES + (graph.len() - storage.len()) as u64;
        assert_eq!(layout.vectors_at, storage_at + 4 + HEADER_BYTES + 8);
        assert_eq!(layout.ids_at, Some(bytes.len() as u64 - 16));
    }

    #[test]
    fn a_metric_with_an_argument_has_four_more_header_bytes() {
        let mut bytes = FLAT_OTHER.to_vec();
        bytes.extend(header_bytes(1, 1, 4));
        bytes.extend(3.0f32.to_le_bytes());
        bytes.extend(1u64.to_le_bytes());
        bytes.extend(9.0f32.to_le_bytes());
        let layout = layout_of(&bytes).unwrap();
        assert_eq!(
            (layout.metric_type, layout.vectors_at),
            (4, 4 + HEADER_BYTES + 4 + 8)
        );
    }

    #[test]
    fn truncated_and_corrupt_files_are_named_errors() {
        let good = id_map(
            flat(FLAT_L2, 2, &[1.0, 2.0, 3.0, 4.0], METRIC_L2),
            2,
            &[1, 2],
            METRIC_L2,
        );
        for cut in [0, 3, 10, 40, 90, good.len() - 1] {
            let message = error_of(&good[..cut]);
            assert!(message.contains("x.index"), "{message}");
            assert!(
                message.contains("truncated") || message.contains("corrupt"),
                "cut at {cut}: {message}"
            );
        }
        let mut wrong = good.clone();
        wrong[..4].copy_from_slice(b"IwPQ");
        assert!(error_of(&wrong).contains("\"IwPQ\""));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(error_of(&trailing).contains("ends at byte"));
        let zero_d = flat(FLAT_L2, 0, &[], METRIC_L2);
        assert!(error_of(&zero_d).contains("dimension 0"));
        // A vector block claiming 2^60 floats is refused without allocating.
        let mut huge = flat(FLAT_L2, 1, &[1.0], METRIC_L2);
        huge[4 + 4..4 + 12].copy_from_slice(&(1i64 << 60).to_le_bytes());
        let at = 4 + HEADER_BYTES as usize;
        huge[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(error_of(&huge).contains("more than"), "{}", error_of(&huge));
        // Vectors that do not fill ntotal × d.
        let mut short = flat(FLAT_L2, 2, &[1.0, 2.0, 3.0, 4.0], METRIC_L2);
        short[at..at + 8].copy_from_slice(&3u64.to_le_bytes());
        assert!(error_of(&short).contains("says 3 floats"));
        // A wrapper that disagrees with what it wraps.
        let mismatch = id_map(
            flat(FLAT_L2, 2, &[1.0; 4], METRIC_L2),
            2,
            &[1, 2],
            METRIC_INNER_PRODUCT,
        );
        assert!(error_of(&mismatch).contains("disagrees"));
        // HNSW written without its storage.
        let bare = hnsw(NO_STORAGE.to_vec(), 2, 2, METRIC_L2);
        assert!(error_of(&bare).contains("without its vectors"));
    }
}
