//! Bridges: moving collections between ipvec and other vector stores, both ways.
//!
//! Every store is reached through an [`Endpoint`] (`faiss:PATH`, `parquet:PATH`,
//! `bulk:PATH`, `qdrant:URL/COLLECTION`, `elasticsearch:URL/INDEX`, `opensearch:URL/INDEX`,
//! `ipvec:NAME`), opened as a [`Source`] that yields points in batches or a [`Sink`] that
//! takes them. [`migrate`] streams one into the other with progress, a checkpoint after each
//! batch, and a verification at the end that reads the target back. Points travel as
//! [`PointIn`]: an id, a vector and a JSON metadata object, the shape every bridge can carry.
//!
//! # Layout
//! - [`endpoint`]: the `KIND:WHERE` names of stores, and the options bridges take.
//! - [`migrate`]: the driver: batches, checkpoint and resume, verification.
//! - [`digest`]: the content digest of a set of points, equal on both sides of a faithful
//!   move.
//! - [`ipvec`]: this node's collections, through the operations.
//! - [`faiss`]: FAISS index files, read and written from FAISS's own format.
//! - [`parquet`]: Parquet tables with an id column, a vector column and metadata columns.
//! - [`qdrant`]: a Qdrant server over its REST API.
//! - [`elastic`]: Elasticsearch and OpenSearch servers, and their bulk NDJSON files.
//! - [`retry`]: when a request to a server is tried again, and how long to wait.

pub mod digest;
pub mod elastic;
pub mod endpoint;
pub mod faiss;
pub mod ipvec;
pub mod migrate;
pub mod parquet;
pub mod qdrant;
pub mod retry;

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use ipvec_protocol::{api::PointIn, manifest::Metric};

pub use endpoint::{BridgeOptions, Endpoint};
pub use migrate::{migrate, Migration, MigrationReport, Progress};

/// What a source holds, known before its points are read.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Vector dimension.
    pub dimension: u32,
    /// How its vectors are compared.
    pub metric: Metric,
    /// How many points it holds, when the source can tell without reading them all.
    pub count: Option<u64>,
}

/// A failed bridge step. Messages name the file, the item or the answer at fault and what to
/// do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The input breaks its format or the protocol, or the request cannot be carried out as
    /// asked (a wrong dimension, a metric with no counterpart, an unknown endpoint).
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The other system could not be reached, or answered with an error.
    #[error("{0}")]
    Remote(String),
    /// This node refused (an unknown collection, a name taken, a bad point).
    #[error(transparent)]
    Node(#[from] crate::ops::Error),
}

impl BridgeError {
    /// An [`Invalid`](BridgeError::Invalid) error.
    pub fn invalid(message: impl Into<String>) -> Self {
        BridgeError::Invalid(message.into())
    }

    /// A [`Remote`](BridgeError::Remote) error.
    pub fn remote(message: impl Into<String>) -> Self {
        BridgeError::Remote(message.into())
    }

    /// An [`Io`](BridgeError::Io) error for `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        BridgeError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A bridge's result.
pub type Result<T, E = BridgeError> = std::result::Result<T, E>;

/// Points read from a store, a batch at a time, in an order that is the same on every read
/// (so an interrupted move can skip what it already moved).
pub trait Source: Send {
    /// Dimension, metric and, if known, count. Called once, before any batch.
    fn shape(&mut self) -> BoxFuture<'_, Result<Shape>>;

    /// Up to `max` next points; an empty batch at the end.
    fn next_batch(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<PointIn>>>;

    /// Where the next batch starts, for a source that can continue from there without
    /// reading what comes before (a server's paging cursor); `None` when the source is
    /// resumed by skipping points instead.
    fn cursor(&self) -> Option<String> {
        None
    }

    /// Continues from a [`cursor`](Source::cursor) saved earlier.
    fn resume_at<'a>(&'a mut self, cursor: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            Err(BridgeError::invalid(format!(
                "this source cannot continue from cursor {cursor}"
            )))
        })
    }
}

/// A store that points are written into. Nothing is visible as the target's content until
/// [`finish`](Sink::finish): a file is written beside its final name and renamed; a
/// collection or index made by [`begin`](Sink::begin) is removed by [`abort`](Sink::abort).
pub trait Sink: Send {
    /// Prepares the target for points of `shape`: refuses a target that exists, unless
    /// `resuming` (then checks it has the same dimension and metric).
    fn begin<'a>(&'a mut self, shape: &'a Shape, resuming: bool) -> BoxFuture<'a, Result<()>>;

    /// Writes a batch: all of it, or an error.
    fn write<'a>(&'a mut self, batch: &'a [PointIn]) -> BoxFuture<'a, Result<()>>;

    /// Makes everything written durable and visible.
    fn finish(&mut self) -> BoxFuture<'_, Result<()>>;

    /// Removes what [`begin`](Sink::begin) and [`write`](Sink::write) made.
    fn abort(&mut self) -> BoxFuture<'_, Result<()>>;

    /// Whether a move into this target can be continued after an interruption (the points
    /// written so far survive it). A file target is written whole again instead.
    fn resumable(&self) -> bool {
        false
    }
}

/// Checks that a point read from a store has the store's dimension and finite components,
/// naming the point otherwise.
pub fn check_vector(point: &PointIn, dimension: u32, whence: &str) -> Result<()> {
    if point.vector.len() != dimension as usize {
        return Err(BridgeError::invalid(format!(
            "{whence}: point {} has {} components where the store's dimension is {dimension}; \
             every vector of a collection must have the same dimension",
            point_label(point),
            point.vector.len()
        )));
    }
    if let Some((at, x)) = point
        .vector
        .iter()
        .enumerate()
        .find(|(_, x)| !x.is_finite())
    {
        return Err(BridgeError::invalid(format!(
            "{whence}: point {} has {x} as component {at}; a vector's components must be \
             finite numbers: fix or drop that point at the source",
            point_label(point)
        )));
    }
    Ok(())
}

/// A point's id as messages print it.
pub fn point_label(point: &PointIn) -> String {
    match &point.id {
        ipvec_protocol::api::PointId::Int(n) => n.to_string(),
        ipvec_protocol::api::PointId::Str(s) => format!("{s:?}"),
    }
}
