//! The driver of every move: a [`Source`] streamed into a [`Sink`] in batches, a checkpoint
//! after each batch the target has stored, and a verification that reads the target back.
//!
//! - **All or nothing.** A failed move aborts the sink, which removes what it made (a
//!   half-written file, a collection or index it created), unless the move keeps a checkpoint
//!   and the sink can continue: then what was written stays, and `--resume` carries on.
//! - **Resume.** The checkpoint (JSON, replaced whole after each batch) records both ends,
//!   the points done and, for sources that page with a cursor, the cursor. A resumed move
//!   starts the source there, or re-reads and skips the points done (every source reads in
//!   the same order each time).
//! - **Verification.** The target is opened as a source and read whole: its count and
//!   [`ContentDigest`] must equal the source's, and a sample of points (kept while moving,
//!   chosen by a seeded reservoir) must come back with the same vector, bit for bit, and the
//!   same metadata.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Instant,
};

use ipvec_protocol::{
    api::{PointId, PointIn},
    manifest::Metric,
};
use serde::{Deserialize, Serialize};

use super::{
    digest::{canonical_metadata, ContentDigest},
    point_label, BridgeError, BridgeOptions, Endpoint, Result, Shape, Sink, Source,
};
use crate::ops::Operations;

/// Points per batch unless asked otherwise.
pub const DEFAULT_BATCH: usize = 1_000;
/// Points compared one by one at the end unless asked otherwise.
pub const DEFAULT_SAMPLE: usize = 100;
/// Differences listed in a failed verification's message.
const SHOWN_DIFFERENCES: usize = 5;

/// A move from one store to another.
#[derive(Debug, Clone)]
pub struct Migration {
    /// Where the points are read.
    pub from: Endpoint,
    /// Where they are written.
    pub to: Endpoint,
    /// How to read and write stores that do not describe themselves.
    pub options: BridgeOptions,
    /// Points per batch.
    pub batch: usize,
    /// Where progress is kept after each batch, so that an interrupted move can continue.
    /// Without one, a failed move removes what it wrote.
    pub checkpoint: Option<PathBuf>,
    /// Continue from the checkpoint.
    pub resume: bool,
    /// Read the target back at the end and compare (default on).
    pub verify: bool,
    /// How many points the verification compares one by one.
    pub sample: usize,
}

impl Migration {
    /// A move with the defaults: batches of [`DEFAULT_BATCH`], no checkpoint, verified with a
    /// sample of [`DEFAULT_SAMPLE`].
    pub fn new(from: Endpoint, to: Endpoint) -> Self {
        Self {
            from,
            to,
            options: BridgeOptions::default(),
            batch: DEFAULT_BATCH,
            checkpoint: None,
            resume: false,
            verify: true,
            sample: DEFAULT_SAMPLE,
        }
    }
}

/// What a move is doing, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Points moved so far, of how many if known.
    Moving {
        /// Points done (including those of an earlier, interrupted run).
        done: u64,
        /// Points in the source, if it says.
        total: Option<u64>,
    },
    /// Points of the target read back so far.
    Verifying {
        /// Points read.
        done: u64,
        /// Points expected.
        total: u64,
    },
}

/// What a finished move did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrationReport {
    /// The source, as written on the command line.
    pub from: String,
    /// The target.
    pub to: String,
    /// Vector dimension.
    pub dimension: u32,
    /// Metric name.
    pub metric: String,
    /// Points in the target when the move ended (this run's and an earlier run's).
    pub points: u64,
    /// Points an earlier, interrupted run had moved (0 for a fresh move).
    pub resumed_after: u64,
    /// Seconds this run took, verification included.
    pub seconds: f64,
    /// The verification, unless it was turned off.
    pub verified: Option<Verification>,
}

/// What the verification compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    /// Points read back from the target.
    pub points: u64,
    /// Points compared one by one (vector bits and metadata).
    pub sampled: usize,
    /// The target's content digest, equal to the source's.
    pub digest: String,
    /// Whether the source's digest was known to compare with: not when an earlier run's
    /// points were skipped by cursor rather than read again.
    pub digest_compared: bool,
}

/// The checkpoint file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Checkpoint {
    from: String,
    to: String,
    dimension: u32,
    metric: Metric,
    done: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
}

/// Runs `migration`, calling `progress` as it goes. `ops` reaches this node's collections
/// (for `ipvec:` endpoints).
pub async fn migrate(
    migration: &Migration,
    ops: &dyn Operations,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<MigrationReport> {
    let started = Instant::now();
    if migration.from == migration.to {
        return Err(BridgeError::invalid(format!(
            "{} is both the source and the target: name two different stores",
            migration.from
        )));
    }
    let batch = migration.batch.max(1);
    let mut source = migration.from.source(ops, &migration.options)?;
    let shape = source.shape().await?;
    let checkpoint = if migration.resume {
        Some(read_checkpoint(migration, &shape)?)
    } else {
        if let Some(path) = &migration.checkpoint {
            if path.exists() {
                return Err(BridgeError::invalid(format!(
                    "{} holds the checkpoint of an earlier move that did not finish: continue \
                     it with --resume, or delete the file to start again",
                    path.display()
                )));
            }
        }
        None
    };
    let mut sink = migration.to.sink(ops, &migration.options)?;
    if checkpoint.is_some() && !sink.resumable() {
        return Err(BridgeError::invalid(format!(
            "a move into {} cannot be continued (a file is written whole); run it again \
             without --resume",
            migration.to
        )));
    }
    let keep_on_failure = migration.checkpoint.is_some() && sink.resumable();

    let moved = run(
        migration,
        &shape,
        source.as_mut(),
        sink.as_mut(),
        checkpoint.as_ref(),
        batch,
        progress,
    )
    .await;
    let moved = match moved {
        Ok(moved) => moved,
        Err(e) => {
            if !keep_on_failure {
                if let Err(cleanup) = sink.abort().await {
                    tracing::warn!(target = %migration.to, error = %cleanup, "could not remove a failed move's target");
                }
            }
            return Err(e);
        }
    };
    if let Some(path) = &migration.checkpoint {
        if let Err(e) = std::fs::remove_file(path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(BridgeError::io(path, e));
            }
        }
    }
    let verified = if migration.verify {
        Some(verify(migration, ops, &shape, &moved, progress).await?)
    } else {
        None
    };
    Ok(MigrationReport {
        from: migration.from.to_string(),
        to: migration.to.to_string(),
        dimension: shape.dimension,
        metric: shape.metric.as_str().to_string(),
        points: moved.done,
        resumed_after: checkpoint.map_or(0, |c| c.done),
        seconds: started.elapsed().as_secs_f64(),
        verified,
    })
}

/// What the move itself saw of the source.
struct Moved {
    done: u64,
    /// The digest of every source point, when all were read in this run.
    digest: Option<ContentDigest>,
    sample: Vec<PointIn>,
}

async fn run(
    migration: &Migration,
    shape: &Shape,
    source: &mut (dyn Source + '_),
    sink: &mut (dyn Sink + '_),
    checkpoint: Option<&Checkpoint>,
    batch: usize,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Moved> {
    sink.begin(shape, checkpoint.is_some()).await?;
    let keeps_checkpoint = migration.checkpoint.is_some() && sink.resumable();
    let save = |done: u64, cursor: Option<String>| -> Result<()> {
        if !keeps_checkpoint {
            return Ok(());
        }
        write_checkpoint(
            migration,
            &Checkpoint {
                from: migration.from.to_string(),
                to: migration.to.to_string(),
                dimension: shape.dimension,
                metric: shape.metric,
                done,
                cursor,
            },
        )
    };
    if checkpoint.is_none() {
        // The target exists from here on: a move that fails before its first batch must
        // still be one `--resume` can continue.
        save(0, source.cursor())?;
    }
    let mut digest = Some(ContentDigest::new());
    let mut reservoir = Reservoir::new(migration.sample);
    let mut done = 0u64;
    if let Some((checkpoint, path)) = checkpoint.zip(migration.checkpoint.as_deref()) {
        match &checkpoint.cursor {
            Some(cursor) => {
                source.resume_at(cursor).await?;
                digest = None;
                done = checkpoint.done;
            }
            None => {
                // Read again what the earlier run moved, without writing it.
                while done < checkpoint.done {
                    let want = batch.min((checkpoint.done - done) as usize);
                    let points = source.next_batch(want).await?;
                    if points.is_empty() {
                        return Err(BridgeError::invalid(format!(
                            "{} now holds {done} points, fewer than the {} the interrupted \
                             move had done: it changed since; delete {} and move again",
                            migration.from,
                            checkpoint.done,
                            path.display()
                        )));
                    }
                    observe(&points, shape, migration, &mut digest, &mut reservoir)?;
                    done += points.len() as u64;
                }
            }
        }
    }
    progress(Progress::Moving {
        done,
        total: shape.count,
    });
    loop {
        let points = source.next_batch(batch).await?;
        if points.is_empty() {
            break;
        }
        observe(&points, shape, migration, &mut digest, &mut reservoir)?;
        sink.write(&points).await?;
        done += points.len() as u64;
        save(done, source.cursor())?;
        progress(Progress::Moving {
            done,
            total: shape.count,
        });
    }
    sink.finish().await?;
    Ok(Moved {
        done,
        digest,
        sample: reservoir.points,
    })
}

/// Checks a batch from the source and adds it to the digest and the sample.
fn observe(
    points: &[PointIn],
    shape: &Shape,
    migration: &Migration,
    digest: &mut Option<ContentDigest>,
    reservoir: &mut Reservoir,
) -> Result<()> {
    for point in points {
        super::check_vector(point, shape.dimension, &migration.from.to_string())?;
        if let Some(d) = digest.as_mut() {
            d.add(point);
        }
        reservoir.offer(point);
    }
    Ok(())
}

async fn verify(
    migration: &Migration,
    ops: &dyn Operations,
    shape: &Shape,
    moved: &Moved,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Verification> {
    let mut target = migration.to.source(ops, &migration.options)?;
    let target_shape = target.shape().await?;
    let mut differences = Vec::new();
    if target_shape.dimension != shape.dimension {
        differences.push(format!(
            "the target's dimension is {} where the source's is {}",
            target_shape.dimension, shape.dimension
        ));
    }
    let mut wanted: HashMap<IdKey, &PointIn> =
        moved.sample.iter().map(|p| (IdKey::of(&p.id), p)).collect();
    let sampled = wanted.len();
    let mut digest = ContentDigest::new();
    loop {
        let points = target.next_batch(migration.batch.max(1)).await?;
        if points.is_empty() {
            break;
        }
        for point in &points {
            digest.add(point);
            if let Some(expected) = wanted.remove(&IdKey::of(&point.id)) {
                if let Some(d) = compare(expected, point) {
                    differences.push(d);
                }
            }
        }
        progress(Progress::Verifying {
            done: digest.count(),
            total: moved.done,
        });
    }
    if digest.count() != moved.done {
        differences.push(format!(
            "the target holds {} points where {} were moved (ids given twice in the source \
             are stored once)",
            digest.count(),
            moved.done
        ));
    }
    for missing in wanted.values().take(SHOWN_DIFFERENCES) {
        differences.push(format!(
            "point {} is missing from the target",
            point_label(missing)
        ));
    }
    let digest_compared = match &moved.digest {
        Some(source) => {
            if *source != digest && differences.is_empty() {
                differences.push(format!(
                    "the target's content digest {digest} differs from the source's {source}: \
                     some point outside the sample changed"
                ));
            }
            true
        }
        None => false,
    };
    if !differences.is_empty() {
        let shown: Vec<_> = differences
            .iter()
            .take(SHOWN_DIFFERENCES)
            .cloned()
            .collect();
        return Err(BridgeError::invalid(format!(
            "the move finished but {} does not hold what {} held: {}; the target is kept as \
             written: inspect it, or remove it and move again",
            migration.to,
            migration.from,
            shown.join("; ")
        )));
    }
    Ok(Verification {
        points: digest.count(),
        sampled,
        digest: digest.to_string(),
        digest_compared,
    })
}

/// What differs between a point as read from the source and as read back, if anything.
fn compare(expected: &PointIn, found: &PointIn) -> Option<String> {
    let label = point_label(expected);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    if bits(&expected.vector) != bits(&found.vector) {
        let at = expected
            .vector
            .iter()
            .zip(&found.vector)
            .position(|(a, b)| a.to_bits() != b.to_bits())
            .unwrap_or(expected.vector.len().min(found.vector.len()));
        return Some(format!(
            "point {label}'s vector differs at component {at} ({:?} became {:?})",
            expected.vector.get(at),
            found.vector.get(at)
        ));
    }
    if canonical_metadata(expected.metadata.as_ref()) != canonical_metadata(found.metadata.as_ref())
    {
        return Some(format!(
            "point {label}'s metadata differs: {} became {}",
            expected.metadata.clone().unwrap_or_default(),
            found.metadata.clone().unwrap_or_default()
        ));
    }
    None
}

/// An id as a map key (integers and strings never collide).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum IdKey {
    Int(u64),
    Str(String),
}

impl IdKey {
    fn of(id: &PointId) -> Self {
        match id {
            PointId::Int(n) => IdKey::Int(*n),
            PointId::Str(s) => IdKey::Str(s.clone()),
        }
    }
}

/// A uniform sample of the points seen (reservoir sampling with a fixed seed, so a run is
/// repeatable).
struct Reservoir {
    capacity: usize,
    seen: u64,
    state: u64,
    points: Vec<PointIn>,
}

impl Reservoir {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: 0,
            state: 0x9e37_79b9_7f4a_7c15,
            points: Vec::new(),
        }
    }

    /// SplitMix64.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn offer(&mut self, point: &PointIn) {
        self.seen += 1;
        if self.points.len() < self.capacity {
            self.points.push(point.clone());
        } else if self.capacity > 0 {
            let slot = self.next() % self.seen;
            if (slot as usize) < self.capacity {
                self.points[slot as usize] = point.clone();
            }
        }
    }
}

fn read_checkpoint(migration: &Migration, shape: &Shape) -> Result<Checkpoint> {
    let path = migration.checkpoint.as_deref().ok_or_else(|| {
        BridgeError::invalid("--resume needs the checkpoint file of the interrupted move")
    })?;
    let bytes = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            BridgeError::invalid(format!(
                "no checkpoint at {}: nothing to resume (the move finished, or never started); \
                 run it without --resume",
                path.display()
            ))
        } else {
            BridgeError::io(path, e)
        }
    })?;
    let checkpoint: Checkpoint = serde_json::from_slice(&bytes).map_err(|e| {
        BridgeError::invalid(format!(
            "{} is not a checkpoint of ipvec migrate ({e}); delete it and move again",
            path.display()
        ))
    })?;
    let (from, to) = (migration.from.to_string(), migration.to.to_string());
    if checkpoint.from != from || checkpoint.to != to {
        return Err(BridgeError::invalid(format!(
            "{} is the checkpoint of a move from {} to {}, not from {from} to {to}",
            path.display(),
            checkpoint.from,
            checkpoint.to
        )));
    }
    if checkpoint.dimension != shape.dimension || checkpoint.metric != shape.metric {
        return Err(BridgeError::invalid(format!(
            "{} now has dimension {} and metric {}, but the interrupted move had {} and {}: \
             it changed; delete {} and move again",
            migration.from,
            shape.dimension,
            shape.metric,
            checkpoint.dimension,
            checkpoint.metric,
            path.display()
        )));
    }
    Ok(checkpoint)
}

fn write_checkpoint(migration: &Migration, checkpoint: &Checkpoint) -> Result<()> {
    let Some(path) = migration.checkpoint.as_deref() else {
        return Ok(());
    };
    let tmp = tmp_path(path);
    let bytes = serde_json::to_vec_pretty(checkpoint)
        .map_err(|e| BridgeError::invalid(format!("encoding the checkpoint: {e}")))?;
    std::fs::write(&tmp, bytes).map_err(|e| BridgeError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| BridgeError::io(path, e))
}

/// `PATH.tmp`, beside `path`: where a file is written before it is renamed into place.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reservoir_keeps_a_spread_sample_of_its_size() {
        let mut r = Reservoir::new(10);
        for i in 0..1_000u64 {
            r.offer(&PointIn::vector(PointId::Int(i), vec![0.0], None));
        }
        assert_eq!(r.points.len(), 10);
        let late = r
            .points
            .iter()
            .filter(|p| matches!(p.id, PointId::Int(n) if n >= 500))
            .count();
        assert!(late > 0 && late < 10, "{late} of 10 from the second half");
    }

    #[test]
    fn points_that_differ_are_named_with_what_differs() {
        let a = PointIn::vector(
            PointId::Int(7),
            vec![1.0, 2.0],
            Some(serde_json::json!({"a": 1})),
        );
        assert_eq!(compare(&a, &a), None);
        let mut b = a.clone();
        b.vector[1] = 2.5;
        assert!(compare(&a, &b).unwrap().contains("component 1"));
        let mut c = a.clone();
        c.metadata = None;
        assert!(compare(&a, &c).unwrap().contains("metadata"));
    }
}
