//! Bulk NDJSON files: the bodies of Elasticsearch's and OpenSearch's `_bulk` API, one action
//! line and one document line per point:
//!
//! ```text
//! {"index":{"_id":"42"}}
//! {"group":3,"vector":[0.1,-0.5,2.0]}
//! ```
//!
//! Read: `index` and `create` actions (a `delete` or `update` is refused, naming its line),
//! `_id` required and mapped as [`super::document`] says, the dimension from the first
//! document, the metric from the options (a file records none), an `_index` ignored.
//! Written: beside the final name, renamed into place by `finish`; without `_index`, so the
//! file loads into any index (`POST /{index}/_bulk`) and the same points give the same bytes
//! whatever they are called; key order and number formatting are fixed.

use std::{
    fs::File,
    io::{BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
};

use futures::future::BoxFuture;
use ipvec_protocol::api::PointIn;
use serde_json::Value;

use super::document::{id_to_elastic, point_from_source, source_text};
use crate::bridge::{migrate::tmp_path, BridgeError, BridgeOptions, Result, Shape, Sink, Source};

/// Opens a bulk NDJSON file to be read.
pub fn file_source(path: &Path, options: &BridgeOptions) -> Result<Box<dyn Source>> {
    Ok(Box::new(BulkSource {
        path: path.to_path_buf(),
        vector_field: options.vector_field.clone(),
        metric: options.metric,
        lines: None,
        line: 0,
        first: None,
    }))
}

/// Opens a bulk NDJSON file to be written.
pub fn file_sink(path: &Path, options: &BridgeOptions) -> Result<Box<dyn Sink>> {
    Ok(Box::new(BulkSink {
        path: path.to_path_buf(),
        tmp: tmp_path(path),
        vector_field: options.vector_field.clone(),
        out: None,
    }))
}

struct BulkSource {
    path: PathBuf,
    vector_field: String,
    metric: Option<ipvec_protocol::manifest::Metric>,
    lines: Option<std::io::Lines<BufReader<File>>>,
    /// The number of the last line read (1-based).
    line: usize,
    /// The first point, read by `shape` for the dimension.
    first: Option<PointIn>,
}

impl BulkSource {
    fn whence(&self) -> String {
        format!("{} line {}", self.path.display(), self.line)
    }

    /// The next line that is not blank, or `None` at the end.
    fn next_line(&mut self) -> Result<Option<String>> {
        let Some(lines) = self.lines.as_mut() else {
            return Ok(None);
        };
        for next in lines.by_ref() {
            self.line += 1;
            let text = next.map_err(|e| BridgeError::io(&self.path, e))?;
            if !text.trim().is_empty() {
                return Ok(Some(text));
            }
        }
        Ok(None)
    }

    /// The next action and document, as a point.
    fn next_point(&mut self) -> Result<Option<PointIn>> {
        let Some(action) = self.next_line()? else {
            return Ok(None);
        };
        let action: Value = serde_json::from_str(&action).map_err(|e| {
            BridgeError::invalid(format!(
                "{}: not a JSON action line ({e}); a bulk file holds an action line and a \
                 document line per point",
                self.whence()
            ))
        })?;
        let (verb, target) = match action.as_object().filter(|m| m.len() == 1) {
            Some(map) => map.iter().next().map(|(k, v)| (k.clone(), v.clone())),
            None => None,
        }
        .ok_or_else(|| {
            BridgeError::invalid(format!(
                "{}: the action line {action} does not hold exactly one action",
                self.whence()
            ))
        })?;
        if verb != "index" && verb != "create" {
            return Err(BridgeError::invalid(format!(
                "{}: the action is {verb:?}; only \"index\" and \"create\" actions carry \
                 whole documents to import",
                self.whence()
            )));
        }
        let id = target
            .get("_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                BridgeError::invalid(format!(
                    "{}: the action has no string \"_id\"; every point needs an id",
                    self.whence()
                ))
            })?;
        let action_line = self.line;
        let Some(document) = self.next_line()? else {
            return Err(BridgeError::invalid(format!(
                "{} line {action_line}: the action has no document line after it; the file \
                 ends early",
                self.path.display()
            )));
        };
        let source: Value = serde_json::from_str(&document).map_err(|e| {
            BridgeError::invalid(format!("{}: not a JSON document ({e})", self.whence()))
        })?;
        point_from_source(&id, &source, &self.vector_field, &self.whence()).map(Some)
    }
}

impl Source for BulkSource {
    fn shape(&mut self) -> BoxFuture<'_, Result<Shape>> {
        Box::pin(async move {
            let metric = self.metric.ok_or_else(|| {
                BridgeError::invalid(format!(
                    "{} does not record how its vectors are compared: name the metric \
                     (--metric cosine, l2 or dot)",
                    self.path.display()
                ))
            })?;
            let file = File::open(&self.path).map_err(|e| BridgeError::io(&self.path, e))?;
            self.lines = Some(BufReader::new(file).lines());
            self.line = 0;
            self.first = self.next_point()?;
            let dimension = match &self.first {
                Some(point) => point.vector.len(),
                None => {
                    return Err(BridgeError::invalid(format!(
                        "{} holds no documents, so it has no dimension to make a collection \
                         with",
                        self.path.display()
                    )))
                }
            };
            let dimension = u32::try_from(dimension)
                .ok()
                .filter(|&d| d > 0)
                .ok_or_else(|| {
                    BridgeError::invalid(format!(
                        "{}: the first document's vector has {dimension} components",
                        self.path.display()
                    ))
                })?;
            Ok(Shape {
                dimension,
                metric,
                count: None,
            })
        })
    }

    fn next_batch(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<PointIn>>> {
        Box::pin(async move {
            let mut batch = Vec::with_capacity(max.min(4096));
            if let Some(first) = self.first.take() {
                batch.push(first);
            }
            while batch.len() < max.max(1) {
                match self.next_point()? {
                    Some(point) => batch.push(point),
                    None => break,
                }
            }
            Ok(batch)
        })
    }
}

struct BulkSink {
    path: PathBuf,
    tmp: PathBuf,
    vector_field: String,
    out: Option<BufWriter<File>>,
}

impl Sink for BulkSink {
    fn begin<'a>(&'a mut self, _shape: &'a Shape, _resuming: bool) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let file = File::create(&self.tmp).map_err(|e| BridgeError::io(&self.tmp, e))?;
            self.out = Some(BufWriter::new(file));
            Ok(())
        })
    }

    fn write<'a>(&'a mut self, batch: &'a [PointIn]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let whence = self.path.display().to_string();
            let mut text = String::new();
            for point in batch {
                let action = serde_json::json!({"index": {"_id": id_to_elastic(&point.id)}});
                text.push_str(&action.to_string());
                text.push('\n');
                text.push_str(&source_text(point, &self.vector_field, &whence)?);
                text.push('\n');
            }
            let out = self.out.as_mut().ok_or_else(|| {
                BridgeError::invalid(format!("{whence}: written before it was begun"))
            })?;
            out.write_all(text.as_bytes())
                .map_err(|e| BridgeError::io(&self.tmp, e))
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if let Some(out) = self.out.take() {
                let file = out
                    .into_inner()
                    .map_err(|e| BridgeError::io(&self.tmp, e.into_error()))?;
                file.sync_all().map_err(|e| BridgeError::io(&self.tmp, e))?;
            }
            std::fs::rename(&self.tmp, &self.path).map_err(|e| BridgeError::io(&self.path, e))
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.out = None;
            match std::fs::remove_file(&self.tmp) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(BridgeError::io(&self.tmp, e)),
            }
        })
    }
}
