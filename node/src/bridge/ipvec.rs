//! This node's collections as a bridge end, through the operations (so a move works the same
//! on a daemon's API and on the repository opened directly).
//!
//! Reading pages through one version: the first page commits the log and names the version,
//! and every later page reads that version, so a collection written during an export is
//! exported as it was when the export began. Writing creates the collection (refusing a name
//! taken) and upserts batch by batch; a failed import drops it.

use futures::future::BoxFuture;
use ipvec_protocol::{
    api::{CreateCollection, PointIn},
    manifest::Metric,
};

use super::{BridgeError, BridgeOptions, Result, Shape, Sink, Source};
use crate::ops::{Error, Operations};

/// Reads collection `name`.
pub struct IpvecSource<'a> {
    ops: &'a dyn Operations,
    name: String,
    /// Where the next page starts; `None` before the first page.
    cursor: Option<String>,
    done: bool,
}

impl std::fmt::Debug for IpvecSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpvecSource")
            .field("name", &self.name)
            .field("cursor", &self.cursor)
            .finish()
    }
}

impl<'a> IpvecSource<'a> {
    /// Reads collection `name` through `ops`.
    pub fn new(ops: &'a dyn Operations, name: &str) -> Self {
        Self {
            ops,
            name: name.to_string(),
            cursor: None,
            done: false,
        }
    }
}

/// Reads a metric name as collections report it.
pub fn parse_metric(name: &str) -> Result<Metric> {
    match name {
        "cosine" => Ok(Metric::Cosine),
        "l2" => Ok(Metric::L2),
        "dot" => Ok(Metric::Dot),
        other => Err(BridgeError::invalid(format!(
            "unknown metric {other:?}: ipvec knows cosine, l2 and dot"
        ))),
    }
}

impl Source for IpvecSource<'_> {
    fn shape(&mut self) -> BoxFuture<'_, Result<Shape>> {
        Box::pin(async move {
            let info = self.ops.collection_info(&self.name).await?;
            if info
                .held_shards
                .as_ref()
                .is_some_and(|held| held.len() < info.shards)
            {
                return Err(BridgeError::invalid(format!(
                    "collection {} is a partial replica (shards {:?} of {}): fetch every \
                     shard (`ipvec fetch ID`) before exporting it",
                    self.name,
                    info.held_shards.unwrap_or_default(),
                    info.shards
                )));
            }
            Ok(Shape {
                dimension: info.dim,
                metric: parse_metric(&info.metric)?,
                count: Some(info.points),
            })
        })
    }

    fn next_batch(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<PointIn>>> {
        Box::pin(async move {
            if self.done {
                return Ok(Vec::new());
            }
            let page = self
                .ops
                .points_page(&self.name, self.cursor.clone(), max)
                .await?;
            self.done = page.next.is_none();
            self.cursor = page.next;
            Ok(page
                .points
                .into_iter()
                .map(|p| PointIn::vector(p.id, p.vector, p.metadata))
                .collect())
        })
    }

    fn cursor(&self) -> Option<String> {
        self.cursor.clone()
    }

    fn resume_at<'b>(&'b mut self, cursor: &'b str) -> BoxFuture<'b, Result<()>> {
        Box::pin(async move {
            self.cursor = Some(cursor.to_string());
            self.done = false;
            Ok(())
        })
    }
}

/// Writes collection `name`, creating it.
pub struct IpvecSink<'a> {
    ops: &'a dyn Operations,
    name: String,
    options: BridgeOptions,
    /// Whether this move created the collection (and so may drop it on failure).
    created: bool,
}

impl std::fmt::Debug for IpvecSink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpvecSink")
            .field("name", &self.name)
            .field("created", &self.created)
            .finish()
    }
}

impl<'a> IpvecSink<'a> {
    /// Writes collection `name` through `ops`.
    pub fn new(ops: &'a dyn Operations, name: &str, options: &BridgeOptions) -> Self {
        Self {
            ops,
            name: name.to_string(),
            options: options.clone(),
            created: false,
        }
    }
}

impl Sink for IpvecSink<'_> {
    fn begin<'b>(&'b mut self, shape: &'b Shape, resuming: bool) -> BoxFuture<'b, Result<()>> {
        Box::pin(async move {
            if resuming {
                let info = self.ops.collection_info(&self.name).await?;
                if info.dim != shape.dimension || parse_metric(&info.metric)? != shape.metric {
                    return Err(BridgeError::invalid(format!(
                        "collection {} has dimension {} and metric {}, the source {} and {}: \
                         it is not the target of the interrupted move",
                        self.name, info.dim, info.metric, shape.dimension, shape.metric
                    )));
                }
                return Ok(());
            }
            let metric = self.options.metric.unwrap_or(shape.metric);
            if metric != shape.metric {
                return Err(BridgeError::invalid(format!(
                    "the source's vectors are compared by {}, not {metric}: drop --metric, or \
                     name the metric the source was built with",
                    shape.metric
                )));
            }
            let request: CreateCollection = serde_json::from_value(serde_json::json!({
                "name": self.name,
                "dim": shape.dimension,
                "metric": metric.as_str(),
            }))
            .map_err(|e| BridgeError::invalid(format!("collection {}: {e}", self.name)))?;
            match self.ops.create_collection(request).await {
                Ok(_) => {
                    self.created = true;
                    Ok(())
                }
                Err(Error::Conflict(message)) => Err(BridgeError::invalid(format!(
                    "{message}; import into a new name, or drop it first (`ipvec collection \
                     drop {}`)",
                    self.name
                ))),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn write<'b>(&'b mut self, batch: &'b [PointIn]) -> BoxFuture<'b, Result<()>> {
        Box::pin(async move {
            self.ops.upsert(&self.name, batch.to_vec()).await?;
            Ok(())
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { Ok(()) })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.created {
                self.ops.drop_collection(&self.name).await?;
                self.created = false;
            }
            Ok(())
        })
    }

    fn resumable(&self) -> bool {
        true
    }
}
