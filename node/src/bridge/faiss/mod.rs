//! FAISS index files, read and written in FAISS's own on-disk format (as `faiss.write_index`
//! and `faiss.read_index` use it), without FAISS.
//!
//! Read: `IndexFlatL2` (`IxF2`), `IndexFlatIP` (`IxFI`), `IndexHNSWFlat` (`IHNf`, whose graph
//! is stepped over: ipvec builds its own) and `IndexIDMap`/`IndexIDMap2` (`IxMp`/`IxM2`)
//! around any of them. The vectors are read batch by batch from where the header says they
//! are; an id map is read once (8 bytes a point). Ids are the id map's, else the positions.
//!
//! Written: `IndexIDMap2` over `IndexFlatL2` (metric l2) or `IndexFlatIP` (metric dot). A
//! cosine collection has no FAISS counterpart: it is written as `IndexFlatIP` only when the
//! move says `--metric dot` (the vectors being normalised, inner product ranks as cosine does).
//!
//! Metadata travels in a side file of JSON lines (`--metadata FILE`), see [`side`].
//! `docs/bridges-faiss.md` describes the byte layout.
//!
//! # Layout
//! - [`layout`]: the headers and blocks of a file, and where the vectors and ids are.
//! - [`side`]: the metadata side file.

pub mod layout;
pub mod side;

use std::{
    fs::File,
    io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use futures::future::BoxFuture;
use ipvec_protocol::{
    api::{PointId, PointIn},
    manifest::Metric,
};

use self::{
    layout::{Layout, METRIC_INNER_PRODUCT, METRIC_L2},
    side::{SideFile, SideWriter},
};
use super::{
    check_vector, migrate::tmp_path, point_label, BridgeError, BridgeOptions, Result, Shape, Sink,
    Source,
};

/// Opens `path` to be read.
pub fn source(path: &Path, options: &BridgeOptions) -> Result<Box<dyn Source>> {
    Ok(Box::new(FaissSource {
        path: path.to_path_buf(),
        options: options.clone(),
        open: None,
    }))
}

/// Opens `path` to be written.
pub fn sink(path: &Path, options: &BridgeOptions) -> Result<Box<dyn Sink>> {
    Ok(Box::new(FaissSink {
        path: path.to_path_buf(),
        options: options.clone(),
        open: None,
    }))
}

/// The ipvec metric of a FAISS metric number; `asked` is the move's `--metric`.
pub fn metric_of(path: &Path, metric_type: i32, asked: Option<Metric>) -> Result<Metric> {
    let found = match metric_type {
        METRIC_L2 => Metric::L2,
        METRIC_INNER_PRODUCT => match asked {
            Some(Metric::Cosine) => Metric::Cosine,
            _ => Metric::Dot,
        },
        other => {
            return Err(BridgeError::invalid(format!(
                "{}: the index compares vectors with FAISS metric {other} ({}); ipvec reads \
                 L2 (1) and inner product (0) indexes",
                path.display(),
                faiss_metric_name(other)
            )))
        }
    };
    match asked {
        Some(asked) if asked != found => Err(BridgeError::invalid(format!(
            "{}: the index compares vectors by {}, not {asked}: drop --metric, or pass the \
             metric the index was built with{}",
            path.display(),
            if metric_type == METRIC_L2 {
                "L2"
            } else {
                "inner product"
            },
            if metric_type == METRIC_INNER_PRODUCT {
                " (dot, or cosine if its vectors are normalised)"
            } else {
                " (l2)"
            }
        ))),
        _ => Ok(found),
    }
}

fn faiss_metric_name(metric_type: i32) -> &'static str {
    match metric_type {
        2 => "L1",
        3 => "Linf",
        4 => "Lp",
        20 => "Canberra",
        21 => "BrayCurtis",
        22 => "JensenShannon",
        23 => "Jaccard",
        _ => "unknown",
    }
}

/// Reads a FAISS index file.
struct FaissSource {
    path: PathBuf,
    options: BridgeOptions,
    open: Option<OpenSource>,
}

/// A source after [`Source::shape`].
struct OpenSource {
    layout: Layout,
    reader: BufReader<File>,
    /// The id map, if the index has one.
    ids: Option<Vec<i64>>,
    /// The side file's metadata not handed out yet.
    side: Option<SideFile>,
    /// Position of the next point.
    next: u64,
}

impl FaissSource {
    fn open(&self) -> Result<OpenSource> {
        let path = &self.path;
        let layout = layout::read_layout(path)?;
        let mut reader = BufReader::with_capacity(
            1 << 20,
            File::open(path).map_err(|e| BridgeError::io(path, e))?,
        );
        let ids = match layout.ids_at {
            None => None,
            Some(at) => {
                reader
                    .seek(SeekFrom::Start(at))
                    .map_err(|e| BridgeError::io(path, e))?;
                let mut ids = Vec::with_capacity(layout.ntotal as usize);
                let mut buf = [0u8; 8];
                for position in 0..layout.ntotal {
                    reader
                        .read_exact(&mut buf)
                        .map_err(|e| BridgeError::io(path, e))?;
                    let id = i64::from_le_bytes(buf);
                    if id < 0 {
                        return Err(BridgeError::invalid(format!(
                            "{}: the point at position {position} has id {id}; FAISS ids \
                             must be ≥ 0 for ipvec (negative ids mark removed or unset \
                             entries): give it an id ≥ 0 in the id map and write the index \
                             again",
                            path.display()
                        )));
                    }
                    ids.push(id);
                }
                Some(ids)
            }
        };
        let side = match &self.options.metadata_file {
            None => None,
            Some(side_path) => {
                let side = side::read(side_path)?;
                match &ids {
                    None => side.check_known(side_path, path, |id| id < layout.ntotal)?,
                    Some(ids) => {
                        let known: std::collections::HashSet<u64> =
                            ids.iter().map(|id| *id as u64).collect();
                        side.check_known(side_path, path, |id| known.contains(&id))?;
                    }
                }
                Some(side)
            }
        };
        reader
            .seek(SeekFrom::Start(layout.vectors_at))
            .map_err(|e| BridgeError::io(path, e))?;
        Ok(OpenSource {
            layout,
            reader,
            ids,
            side,
            next: 0,
        })
    }
}

impl Source for FaissSource {
    fn shape(&mut self) -> BoxFuture<'_, Result<Shape>> {
        Box::pin(async move {
            let open = self.open()?;
            let shape = Shape {
                dimension: open.layout.d,
                metric: metric_of(&self.path, open.layout.metric_type, self.options.metric)?,
                count: Some(open.layout.ntotal),
            };
            self.open = Some(open);
            Ok(shape)
        })
    }

    fn next_batch(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<PointIn>>> {
        Box::pin(async move {
            let path = &self.path;
            let open = self.open.as_mut().ok_or_else(|| {
                BridgeError::invalid(format!("{}: read before its shape", path.display()))
            })?;
            let d = open.layout.d as usize;
            let count = (open.layout.ntotal - open.next).min(max as u64) as usize;
            let mut bytes = vec![0u8; count * d * 4];
            open.reader
                .read_exact(&mut bytes)
                .map_err(|e| BridgeError::io(path, e))?;
            let mut batch = Vec::with_capacity(count);
            for (k, raw) in bytes.chunks_exact(d * 4).enumerate() {
                let position = open.next + k as u64;
                let id = match &open.ids {
                    Some(ids) => ids[position as usize] as u64,
                    None => position,
                };
                let vector = raw
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                let metadata = open.side.as_mut().and_then(|side| side.take(id));
                batch.push(PointIn::vector(PointId::Int(id), vector, metadata));
            }
            open.next += count as u64;
            Ok(batch)
        })
    }
}

/// Writes a FAISS `IndexIDMap2` over a flat index.
struct FaissSink {
    path: PathBuf,
    options: BridgeOptions,
    open: Option<OpenSink>,
}

/// A sink after [`Sink::begin`].
struct OpenSink {
    d: u32,
    out: BufWriter<File>,
    /// The ids written, in order (they follow the vectors in the file).
    ids: Vec<i64>,
    side: Option<(SideWriter, PathBuf, PathBuf)>,
}

/// Offset of the wrapper's `ntotal` (after its type and `d`).
const OUTER_NTOTAL_AT: u64 = 4 + 4;
/// Offset of the flat index's `ntotal`.
const INNER_NTOTAL_AT: u64 = 4 + layout::HEADER_BYTES + 4 + 4;
/// Offset of the flat index's vector block size.
const FLOATS_AT: u64 = 4 + layout::HEADER_BYTES + 4 + layout::HEADER_BYTES;

impl FaissSink {
    /// The FAISS flat index type and metric number for vectors of `shape`.
    fn flat_for(&self, shape: &Shape) -> Result<([u8; 4], i32)> {
        let path = self.path.display();
        match (shape.metric, self.options.metric) {
            (Metric::L2, None | Some(Metric::L2)) => Ok((layout::FLAT_L2, METRIC_L2)),
            (Metric::Dot, None | Some(Metric::Dot)) => Ok((layout::FLAT_IP, METRIC_INNER_PRODUCT)),
            (Metric::Cosine, Some(Metric::Dot)) => Ok((layout::FLAT_IP, METRIC_INNER_PRODUCT)),
            (Metric::Cosine, _) => Err(BridgeError::invalid(format!(
                "{path}: the source compares vectors by cosine, which FAISS indexes do not \
                 record; pass --metric dot if its vectors are normalised (an inner-product \
                 index then ranks as cosine does), or export to Parquet"
            ))),
            (metric, Some(asked)) => Err(BridgeError::invalid(format!(
                "{path}: the source compares vectors by {metric}, not {asked}: drop --metric, \
                 or pass {metric}"
            ))),
        }
    }

    fn create(&self, shape: &Shape) -> Result<OpenSink> {
        let (flat, metric_type) = self.flat_for(shape)?;
        for path in std::iter::once(&self.path).chain(self.options.metadata_file.as_ref()) {
            if path.exists() {
                return Err(BridgeError::invalid(format!(
                    "{} exists: export to a new file, or remove it first",
                    path.display()
                )));
            }
        }
        let tmp = tmp_path(&self.path);
        let file = File::create(&tmp).map_err(|e| BridgeError::io(&tmp, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut head = Vec::with_capacity(FLOATS_AT as usize + 8);
        head.extend_from_slice(&layout::ID_MAP2);
        head.extend_from_slice(&layout::header_bytes(shape.dimension, 0, metric_type));
        head.extend_from_slice(&flat);
        head.extend_from_slice(&layout::header_bytes(shape.dimension, 0, metric_type));
        head.extend_from_slice(&0u64.to_le_bytes());
        out.write_all(&head).map_err(|e| BridgeError::io(&tmp, e))?;
        let side = match &self.options.metadata_file {
            None => None,
            Some(path) => {
                let side_tmp = tmp_path(path);
                Some((SideWriter::create(&side_tmp)?, side_tmp, path.clone()))
            }
        };
        Ok(OpenSink {
            d: shape.dimension,
            out,
            ids: Vec::with_capacity(shape.count.unwrap_or(0).min(1 << 24) as usize),
            side,
        })
    }

    fn write_batch(&mut self, batch: &[PointIn]) -> Result<()> {
        let tmp = tmp_path(&self.path);
        let open = self.open.as_mut().ok_or_else(|| {
            BridgeError::invalid(format!("{}: written before begin", self.path.display()))
        })?;
        let whence = self.path.display().to_string();
        for point in batch {
            let id = match &point.id {
                PointId::Int(n) => i64::try_from(*n).map_err(|_| {
                    BridgeError::invalid(format!(
                        "{whence}: point {n}'s id is above {}, the largest FAISS id (ids are \
                         signed 64-bit); export to Parquet to keep it",
                        i64::MAX
                    ))
                })?,
                PointId::Str(_) => {
                    return Err(BridgeError::invalid(format!(
                        "{whence}: point {} has a string id, and FAISS ids are integers; \
                         export to Parquet to keep string ids",
                        point_label(point)
                    )))
                }
            };
            check_vector(point, open.d, &whence)?;
            for x in &point.vector {
                open.out
                    .write_all(&x.to_le_bytes())
                    .map_err(|e| BridgeError::io(&tmp, e))?;
            }
            open.ids.push(id);
            if let Some((writer, side_tmp, _)) = &mut open.side {
                writer.write(side_tmp, id as u64, point.metadata.as_ref())?;
            }
        }
        Ok(())
    }

    fn complete(&mut self) -> Result<()> {
        let tmp = tmp_path(&self.path);
        let Some(open) = self.open.take() else {
            return Err(BridgeError::invalid(format!(
                "{}: finished before begin",
                self.path.display()
            )));
        };
        let OpenSink {
            d,
            mut out,
            ids,
            side,
        } = open;
        let io = |e| BridgeError::io(&tmp, e);
        let ntotal = ids.len() as u64;
        out.write_all(&ntotal.to_le_bytes()).map_err(io)?;
        for id in &ids {
            out.write_all(&id.to_le_bytes()).map_err(io)?;
        }
        let mut file = out.into_inner().map_err(|e| io(e.into_error()))?;
        let patches = [
            (OUTER_NTOTAL_AT, ntotal),
            (INNER_NTOTAL_AT, ntotal),
            (FLOATS_AT, ntotal * u64::from(d)),
        ];
        for (at, value) in patches {
            file.seek(SeekFrom::Start(at)).map_err(io)?;
            file.write_all(&value.to_le_bytes()).map_err(io)?;
        }
        file.sync_all().map_err(io)?;
        drop(file);
        if let Some((writer, side_tmp, side_path)) = side {
            writer.finish(&side_tmp)?;
            std::fs::rename(&side_tmp, &side_path).map_err(|e| BridgeError::io(&side_path, e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| BridgeError::io(&self.path, e))
    }
}

impl Sink for FaissSink {
    fn begin<'a>(&'a mut self, shape: &'a Shape, _resuming: bool) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.open = Some(self.create(shape)?);
            Ok(())
        })
    }

    fn write<'a>(&'a mut self, batch: &'a [PointIn]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.write_batch(batch) })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.complete() })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.open = None;
            let mut temps = vec![tmp_path(&self.path)];
            temps.extend(self.options.metadata_file.as_deref().map(tmp_path));
            for tmp in temps {
                match std::fs::remove_file(&tmp) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(BridgeError::io(&tmp, e)),
                }
            }
            Ok(())
        })
    }
}
