//! Paging through an index.
//!
//! - Elasticsearch: a point in time (`POST /{index}/_pit?keep_alive=1m`), then
//!   `POST /_search` with the `pit`, `sort: [{"_shard_doc": "asc"}]` and the previous page's
//!   last `sort` values as `search_after`; `DELETE /_pit` at the end. Every page reads the
//!   index as it was when the point in time was opened.
//! - OpenSearch: a scroll (`POST /{index}/_search?scroll=1m` sorted by `_doc`, then
//!   `POST /_search/scroll`); `DELETE /_search/scroll` at the end. OpenSearch has a point in
//!   time API as well, but only from 2.4 on; scrolls work on every version.
//!
//! Neither cursor outlives its keep-alive, so an interrupted move from an index resumes by
//! reading again and skipping the points it had moved (the order is the same on each read
//! of an unchanged index).

use std::collections::VecDeque;

use futures::future::BoxFuture;
use ipvec_protocol::api::PointIn;
use reqwest::Method;
use serde_json::{json, Value};

use super::{document::point_from_source, Body, ElasticServer};
use crate::bridge::{endpoint::Flavor, retry, BridgeError, Result, Shape, Source};

/// How long the server keeps a point in time or a scroll between two pages.
const KEEP_ALIVE: &str = "1m";

/// Where a read is.
#[derive(Debug)]
enum Scan {
    NotStarted,
    /// An Elasticsearch point in time, and the sort values of the last hit read.
    Pit {
        id: String,
        after: Option<Value>,
    },
    /// An OpenSearch scroll.
    Scroll {
        id: String,
    },
    Done,
}

/// Reads an index page by page.
#[derive(Debug)]
pub struct ElasticSource {
    server: ElasticServer,
    buffer: VecDeque<PointIn>,
    scan: Scan,
}

impl ElasticSource {
    /// Reads the index `server` names.
    pub(super) fn new(server: ElasticServer) -> Self {
        Self {
            server,
            buffer: VecDeque::new(),
            scan: Scan::NotStarted,
        }
    }

    /// Reads the next page into the buffer (closing the cursor after the last).
    async fn fetch(&mut self, size: usize) -> Result<()> {
        let index = self.server.index.clone();
        let (answer, scan) = match (&self.scan, self.server.flavor) {
            (Scan::Done, _) => return Ok(()),
            (Scan::NotStarted, Flavor::Elasticsearch) => {
                let opened = self
                    .server
                    .call(
                        Method::POST,
                        &format!("/{index}/_pit?keep_alive={KEEP_ALIVE}"),
                        Body::None,
                        "check the index name (Elasticsearch 7.10 or later is needed)",
                    )
                    .await?;
                let id = string_field(&opened, "id", &self.server.name())?;
                self.scan = Scan::Pit { id, after: None };
                return Box::pin(self.fetch(size)).await;
            }
            (Scan::Pit { id, after }, _) => {
                let mut body = json!({
                    "size": size,
                    "pit": {"id": id, "keep_alive": KEEP_ALIVE},
                    "sort": [{"_shard_doc": "asc"}],
                    "track_total_hits": false,
                });
                if let Some(after) = after {
                    body["search_after"] = after.clone();
                }
                let answer = self
                    .server
                    .call(
                        Method::POST,
                        "/_search",
                        Body::Json(&body),
                        "the point in time may have expired: run the move again",
                    )
                    .await?;
                let id = answer
                    .get("pit_id")
                    .and_then(Value::as_str)
                    .map_or_else(|| id.clone(), str::to_string);
                let after = last_sort(&answer);
                (answer, Scan::Pit { id, after })
            }
            (Scan::NotStarted, Flavor::OpenSearch) => {
                let body = json!({"size": size, "sort": ["_doc"]});
                let answer = self
                    .server
                    .call(
                        Method::POST,
                        &format!("/{index}/_search?scroll={KEEP_ALIVE}"),
                        Body::Json(&body),
                        "check the index name",
                    )
                    .await?;
                let id = string_field(&answer, "_scroll_id", &self.server.name())?;
                (answer, Scan::Scroll { id })
            }
            (Scan::Scroll { id }, _) => {
                let body = json!({"scroll": KEEP_ALIVE, "scroll_id": id});
                let answer = self
                    .server
                    .call(
                        Method::POST,
                        "/_search/scroll",
                        Body::Json(&body),
                        "the scroll may have expired: run the move again",
                    )
                    .await?;
                let id = answer
                    .get("_scroll_id")
                    .and_then(Value::as_str)
                    .map_or_else(|| id.clone(), str::to_string);
                (answer, Scan::Scroll { id })
            }
        };
        let whence = self.server.name();
        let hits = answer
            .pointer("/hits/hits")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                BridgeError::remote(format!(
                    "{whence}: a search answer has no hits.hits: {}",
                    retry::truncate(&answer.to_string(), 200)
                ))
            })?;
        for hit in hits {
            let id = hit.get("_id").and_then(Value::as_str).ok_or_else(|| {
                BridgeError::remote(format!(
                    "{whence}: a hit has no string _id: {}",
                    retry::truncate(&hit.to_string(), 200)
                ))
            })?;
            let source = hit.get("_source").unwrap_or(&Value::Null);
            self.buffer.push_back(point_from_source(
                id,
                source,
                &self.server.vector_field,
                &whence,
            )?);
        }
        if hits.is_empty() {
            self.close(scan).await;
            self.scan = Scan::Done;
        } else {
            if matches!(&scan, Scan::Pit { after: None, .. }) {
                return Err(BridgeError::remote(format!(
                    "{whence}: a search answer's hits carry no sort values to continue after"
                )));
            }
            self.scan = scan;
        }
        Ok(())
    }

    /// Releases a point in time or a scroll; a failure only costs the server memory until
    /// the keep-alive ends, so it is logged.
    async fn close(&self, scan: Scan) {
        let (path, body) = match scan {
            Scan::Pit { id, .. } => ("/_pit", json!({"id": id})),
            Scan::Scroll { id } => ("/_search/scroll", json!({"scroll_id": [id]})),
            Scan::NotStarted | Scan::Done => return,
        };
        if let Err(e) = self
            .server
            .call(Method::DELETE, path, Body::Json(&body), "")
            .await
        {
            tracing::warn!(index = %self.server.name(), error = %e, "could not close the read");
        }
    }
}

/// A string field of an answer.
fn string_field(answer: &Value, key: &str, whence: &str) -> Result<String> {
    answer
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            BridgeError::remote(format!(
                "{whence}: the answer has no {key:?}: {}",
                retry::truncate(&answer.to_string(), 200)
            ))
        })
}

/// The sort values of a page's last hit.
fn last_sort(answer: &Value) -> Option<Value> {
    answer
        .pointer("/hits/hits")?
        .as_array()?
        .last()?
        .get("sort")
        .cloned()
}

impl Source for ElasticSource {
    fn shape(&mut self) -> BoxFuture<'_, Result<Shape>> {
        Box::pin(async move {
            let index = self.server.index.clone();
            let mapping = self
                .server
                .call(
                    Method::GET,
                    &format!("/{index}/_mapping"),
                    Body::None,
                    "check the URL and the index name",
                )
                .await?;
            let (dimension, metric) = self.server.vector_params(&mapping)?;
            let count = self
                .server
                .call(
                    Method::GET,
                    &format!("/{index}/_count"),
                    Body::None,
                    "check the index name",
                )
                .await?
                .get("count")
                .and_then(Value::as_u64);
            Ok(Shape {
                dimension,
                metric,
                count,
            })
        })
    }

    fn next_batch(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<PointIn>>> {
        Box::pin(async move {
            let max = max.max(1);
            if self.buffer.is_empty() {
                self.fetch(max).await?;
            }
            let take = max.min(self.buffer.len());
            Ok(self.buffer.drain(..take).collect())
        })
    }
}
