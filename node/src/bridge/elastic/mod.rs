//! Elasticsearch and OpenSearch indices as bridge ends, over their REST APIs, and their bulk
//! NDJSON files.
//!
//! - The vector field: Elasticsearch's `dense_vector` (`dims`, `similarity`), OpenSearch's
//!   `knn_vector` (`dimension`, `method.space_type`), found by `GET /{index}/_mapping` under
//!   the options' vector field name. Every other `_source` field is metadata.
//! - Reading ([`read`]): Elasticsearch through a point in time and `search_after` on
//!   `_shard_doc`; OpenSearch through a scroll. Both are closed at the end.
//! - Writing: `PUT /{index}` with the mapping (after `GET /{index}/_mapping` has shown there
//!   is no such index), `POST /_bulk` per batch with every item's result checked,
//!   `POST /{index}/_refresh` at the end, `DELETE /{index}` when a move that created it
//!   fails.
//! - Ids: see [`document`]. Auth: `Authorization: ApiKey …`. Retries: [`super::retry`].
//!
//! # Layout
//! - [`document`]: ids and documents, the same for servers and files.
//! - [`read`]: paging through an index.
//! - [`bulk`]: bulk NDJSON files.

pub mod bulk;
pub mod document;
pub mod read;

use std::path::Path;

use futures::future::BoxFuture;
use ipvec_protocol::{api::PointIn, manifest::Metric};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::{endpoint::Flavor, retry, BridgeError, BridgeOptions, Result, Shape, Sink, Source};

/// Opens index `index` of the server at `url` to be read.
pub fn source(
    url: &str,
    index: &str,
    flavor: Flavor,
    options: &BridgeOptions,
) -> Result<Box<dyn Source>> {
    Ok(Box::new(read::ElasticSource::new(ElasticServer::new(
        url, index, flavor, options,
    )?)))
}

/// Opens index `index` of the server at `url` to be written.
pub fn sink(
    url: &str,
    index: &str,
    flavor: Flavor,
    options: &BridgeOptions,
) -> Result<Box<dyn Sink>> {
    Ok(Box::new(ElasticSink {
        server: ElasticServer::new(url, index, flavor, options)?,
        created: false,
    }))
}

/// Opens a bulk NDJSON file to be read.
pub fn file_source(path: &Path, options: &BridgeOptions) -> Result<Box<dyn Source>> {
    bulk::file_source(path, options)
}

/// Opens a bulk NDJSON file to be written.
pub fn file_sink(path: &Path, options: &BridgeOptions) -> Result<Box<dyn Sink>> {
    bulk::file_sink(path, options)
}

/// The similarity (Elasticsearch) or space type (OpenSearch) of a metric.
pub fn similarity_name(flavor: Flavor, metric: Metric) -> &'static str {
    match (flavor, metric) {
        (Flavor::Elasticsearch, Metric::Cosine) => "cosine",
        (Flavor::Elasticsearch, Metric::L2) => "l2_norm",
        // `dot_product` would demand unit-length vectors; `max_inner_product` takes any.
        (Flavor::Elasticsearch, Metric::Dot) => "max_inner_product",
        (Flavor::OpenSearch, Metric::Cosine) => "cosinesimil",
        (Flavor::OpenSearch, Metric::L2) => "l2",
        (Flavor::OpenSearch, Metric::Dot) => "innerproduct",
    }
}

/// The metric of a similarity or space type.
pub fn parse_similarity(name: &str, whence: &str) -> Result<Metric> {
    match name {
        "cosine" | "cosinesimil" => Ok(Metric::Cosine),
        "l2_norm" | "l2" => Ok(Metric::L2),
        "dot_product" | "max_inner_product" | "innerproduct" => Ok(Metric::Dot),
        other => Err(BridgeError::invalid(format!(
            "{whence} compares vectors by {other:?}, which ipvec does not offer (it has \
             cosine, l2 and dot): such an index cannot be moved without changing what its \
             searches find"
        ))),
    }
}

/// One index of one server, with the key and the retry policy.
#[derive(Debug, Clone)]
pub struct ElasticServer {
    client: reqwest::Client,
    base: String,
    index: String,
    flavor: Flavor,
    vector_field: String,
    api_key: Option<String>,
    policy: crate::outbound::RetryPolicy,
}

impl ElasticServer {
    fn new(url: &str, index: &str, flavor: Flavor, options: &BridgeOptions) -> Result<Self> {
        Ok(Self {
            client: retry::client()?,
            base: url.trim_end_matches('/').to_string(),
            index: index.to_string(),
            flavor,
            vector_field: options.vector_field.clone(),
            api_key: options.api_key.clone(),
            policy: retry::policy(),
        })
    }

    /// `elasticsearch:URL/INDEX`, for messages.
    fn name(&self) -> String {
        let kind = match self.flavor {
            Flavor::Elasticsearch => "elasticsearch",
            Flavor::OpenSearch => "opensearch",
        };
        format!("{kind}:{}/{}", self.base, self.index)
    }

    /// Sends `method path` (a path from the server's root) with a JSON or NDJSON body,
    /// retried as the policy says.
    async fn send(&self, method: Method, path: &str, body: Body<'_>) -> Result<Response> {
        let what = format!("{} {method} {path}", self.name());
        retry::send(self.policy, &self.base, &what, || {
            let mut request = self
                .client
                .request(method.clone(), format!("{}{path}", self.base));
            if let Some(key) = &self.api_key {
                request = request.header(reqwest::header::AUTHORIZATION, format!("ApiKey {key}"));
            }
            match body {
                Body::None => request,
                Body::Json(value) => request.json(value),
                Body::Ndjson(text) => request
                    .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                    .body(text.to_string()),
            }
        })
        .await
    }

    /// Sends a request and returns the JSON of a successful answer; an error answer becomes
    /// a message with the server's own reason and `hint`.
    async fn call(&self, method: Method, path: &str, body: Body<'_>, hint: &str) -> Result<Value> {
        let response = self.send(method.clone(), path, body).await?;
        let what = format!("{} {method} {path}", self.name());
        answer(response, &what, hint).await
    }

    /// The vector field's dimension and metric from the index's mapping.
    fn vector_params(&self, mapping: &Value) -> Result<(u32, Metric)> {
        let whence = self.name();
        let properties = mapping
            .as_object()
            .and_then(|m| m.values().next())
            .and_then(|m| m.pointer("/mappings/properties"))
            .ok_or_else(|| {
                BridgeError::remote(format!(
                    "{whence}: the mapping has no mappings.properties: {}",
                    retry::truncate(&mapping.to_string(), 200)
                ))
            })?;
        let field = properties.get(&self.vector_field).ok_or_else(|| {
            let vectors: Vec<&String> = properties
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(_, f)| {
                            matches!(
                                f.get("type").and_then(Value::as_str),
                                Some("dense_vector" | "knn_vector")
                            )
                        })
                        .map(|(name, _)| name)
                        .collect()
                })
                .unwrap_or_default();
            BridgeError::invalid(format!(
                "{whence} has no field {:?}; its vector fields are {vectors:?}: name one as \
                 the vector field",
                self.vector_field
            ))
        })?;
        let kind = field.get("type").and_then(Value::as_str).unwrap_or("");
        let number = |key: &str| {
            field
                .get(key)
                .and_then(Value::as_u64)
                .and_then(|d| u32::try_from(d).ok())
                .filter(|&d| d > 0)
        };
        let (dimension, similarity) = match (self.flavor, kind) {
            (Flavor::Elasticsearch, "dense_vector") => (
                number("dims"),
                // Elasticsearch's default similarity for indexed vectors.
                field
                    .get("similarity")
                    .and_then(Value::as_str)
                    .unwrap_or("cosine"),
            ),
            (Flavor::OpenSearch, "knn_vector") => (
                number("dimension"),
                field
                    .pointer("/method/space_type")
                    .or_else(|| field.get("space_type"))
                    .and_then(Value::as_str)
                    // OpenSearch's default space type.
                    .unwrap_or("l2"),
            ),
            _ => {
                let wanted = match self.flavor {
                    Flavor::Elasticsearch => "dense_vector",
                    Flavor::OpenSearch => "knn_vector",
                };
                return Err(BridgeError::invalid(format!(
                    "{whence}: field {:?} has type {kind:?}, not {wanted} (is the server the \
                     other flavor? elasticsearch: reads dense_vector, opensearch: knn_vector)",
                    self.vector_field
                )));
            }
        };
        let dimension = dimension.ok_or_else(|| {
            BridgeError::invalid(format!(
                "{whence}: field {:?} has no dimension in its mapping ({field})",
                self.vector_field
            ))
        })?;
        let field_name = format!("{whence} field {:?}", self.vector_field);
        Ok((dimension, parse_similarity(similarity, &field_name)?))
    }
}

/// A request body.
#[derive(Debug, Clone, Copy)]
enum Body<'a> {
    None,
    Json(&'a Value),
    Ndjson(&'a str),
}

/// The JSON of a successful answer, or an error naming the request and the server's reason.
async fn answer(response: Response, what: &str, hint: &str) -> Result<Value> {
    let status = response.status();
    let text = response.text().await.map_err(|e| {
        BridgeError::remote(format!(
            "{what}: the answer broke off ({e}); run the move again"
        ))
    })?;
    let body: Option<Value> = serde_json::from_str(&text).ok();
    if status.is_success() {
        return body.ok_or_else(|| {
            BridgeError::remote(format!(
                "{what}: the answer is not JSON ({:?}); is this an Elasticsearch or OpenSearch \
                 server?",
                retry::truncate(&text, 200)
            ))
        });
    }
    let reason = match body.as_ref().and_then(|b| b.get("error")) {
        Some(Value::String(s)) => s.clone(),
        Some(error) => format!(
            "{}: {}",
            error.get("type").and_then(Value::as_str).unwrap_or("error"),
            error.get("reason").and_then(Value::as_str).unwrap_or("")
        ),
        None => retry::truncate(text.trim(), 300).to_string(),
    };
    let hint = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            "give an API key the server accepts for this index (--api-key)"
        }
        _ => hint,
    };
    Err(BridgeError::remote(format!(
        "{what} answered {status}: {reason}; {hint}"
    )))
}

/// Writes an index, creating it.
#[derive(Debug)]
struct ElasticSink {
    server: ElasticServer,
    /// Whether this move created the index (and so may delete it).
    created: bool,
}

impl ElasticSink {
    fn mapping(&self, shape: &Shape) -> Value {
        let similarity = similarity_name(self.server.flavor, shape.metric);
        let field = &self.server.vector_field;
        match self.server.flavor {
            Flavor::Elasticsearch => json!({
                "mappings": {"properties": {field: {
                    "type": "dense_vector",
                    "dims": shape.dimension,
                    "index": true,
                    "similarity": similarity,
                }}}
            }),
            Flavor::OpenSearch => json!({
                "settings": {"index": {"knn": true}},
                "mappings": {"properties": {field: {
                    "type": "knn_vector",
                    "dimension": shape.dimension,
                    "method": {"name": "hnsw", "space_type": similarity},
                }}}
            }),
        }
    }
}

impl Sink for ElasticSink {
    fn begin<'a>(&'a mut self, shape: &'a Shape, resuming: bool) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let whence = self.server.name();
            let path = format!("/{}/_mapping", self.server.index);
            let response = self.server.send(Method::GET, &path, Body::None).await?;
            if response.status() == StatusCode::NOT_FOUND {
                if resuming {
                    return Err(BridgeError::invalid(format!(
                        "{whence} does not exist, so the interrupted move cannot be continued \
                         there: delete the checkpoint and move again"
                    )));
                }
            } else {
                let what = format!("{whence} GET {path}");
                let mapping = answer(response, &what, "check the URL and the API key").await?;
                if !resuming {
                    return Err(BridgeError::invalid(format!(
                        "{whence} exists already: move into a new index, or delete it first \
                         (DELETE /{})",
                        self.server.index
                    )));
                }
                let (dimension, metric) = self.server.vector_params(&mapping)?;
                if dimension != shape.dimension || metric != shape.metric {
                    return Err(BridgeError::invalid(format!(
                        "{whence} has dimension {dimension} and metric {metric}, the source {} \
                         and {}: it is not the target of the interrupted move",
                        shape.dimension, shape.metric
                    )));
                }
                return Ok(());
            }
            let body = self.mapping(shape);
            self.server
                .call(
                    Method::PUT,
                    &format!("/{}", self.server.index),
                    Body::Json(&body),
                    "check the index name and the server's limits on vector dimensions",
                )
                .await?;
            self.created = true;
            Ok(())
        })
    }

    fn write<'a>(&'a mut self, batch: &'a [PointIn]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let whence = self.server.name();
            let mut pending: Vec<&PointIn> = batch.iter().collect();
            let mut backoff = crate::outbound::Backoff::new(self.server.policy, rand::random());
            loop {
                let mut text = String::new();
                for point in &pending {
                    let action = json!({"index": {
                        "_index": self.server.index,
                        "_id": document::id_to_elastic(&point.id),
                    }});
                    text.push_str(&action.to_string());
                    text.push('\n');
                    text.push_str(&document::source_text(
                        point,
                        &self.server.vector_field,
                        &whence,
                    )?);
                    text.push('\n');
                }
                let answer = self
                    .server
                    .call(
                        Method::POST,
                        "/_bulk",
                        Body::Ndjson(&text),
                        "the server refused the batch",
                    )
                    .await?;
                // Items the server turned away for load alone are sent again, after a wait.
                let Some(throttled) = throttled_items(&answer) else {
                    return check_bulk(&answer, &whence);
                };
                let Some(wait) = backoff.next_wait(crate::outbound::Failure::Throttled(None))
                else {
                    return check_bulk(&answer, &whence);
                };
                tracing::debug!(index = %whence, items = throttled.len(), ?wait, "bulk items throttled");
                tokio::time::sleep(wait).await;
                pending = throttled
                    .into_iter()
                    .filter_map(|i| pending.get(i).copied())
                    .collect();
            }
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.server
                .call(
                    Method::POST,
                    &format!("/{}/_refresh", self.server.index),
                    Body::None,
                    "the points are written but not yet searchable; refresh the index by hand",
                )
                .await?;
            Ok(())
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.created {
                self.server
                    .call(
                        Method::DELETE,
                        &format!("/{}", self.server.index),
                        Body::None,
                        "delete the index by hand",
                    )
                    .await?;
                self.created = false;
            }
            Ok(())
        })
    }

    fn resumable(&self) -> bool {
        true
    }
}

/// The positions of a `_bulk` answer's failed items when every failure is a 429 (the server
/// was too busy to take them), to be sent again; `None` when nothing failed or something
/// failed for another reason.
fn throttled_items(answer: &Value) -> Option<Vec<usize>> {
    if answer.get("errors").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    let mut throttled = Vec::new();
    for (i, item) in answer.get("items")?.as_array()?.iter().enumerate() {
        let result = item.as_object()?.values().next()?;
        if result.get("error").is_some() {
            if result.get("status").and_then(Value::as_u64) != Some(429) {
                return None;
            }
            throttled.push(i);
        }
    }
    Some(throttled).filter(|t| !t.is_empty())
}

/// Checks a `_bulk` answer: every item stored, or an error naming the first that was not.
fn check_bulk(answer: &Value, whence: &str) -> Result<()> {
    let Some(errors) = answer.get("errors").and_then(Value::as_bool) else {
        return Err(BridgeError::remote(format!(
            "{whence}: the _bulk answer has no \"errors\" flag: {}",
            retry::truncate(&answer.to_string(), 200)
        )));
    };
    if !errors {
        return Ok(());
    }
    let items = answer.get("items").and_then(Value::as_array);
    let failed = items.into_iter().flatten().find_map(|item| {
        let result = item.as_object()?.values().next()?;
        let error = result.get("error")?;
        Some((result.get("_id").cloned().unwrap_or(Value::Null), error))
    });
    Err(match failed {
        Some((id, error)) => {
            let id = id
                .as_str()
                .map(|s| {
                    crate::bridge::point_label(&PointIn::vector(
                        document::id_from_elastic(s),
                        Vec::new(),
                        None,
                    ))
                })
                .unwrap_or_else(|| id.to_string());
            BridgeError::remote(format!(
                "{whence}: the server refused point {id}: {}: {}; fix that point (or the \
                 index's mapping of its fields) and move again",
                error.get("type").and_then(Value::as_str).unwrap_or("error"),
                error.get("reason").and_then(Value::as_str).unwrap_or("")
            ))
        }
        None => BridgeError::remote(format!(
            "{whence}: the _bulk answer says some items failed but names none"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_map_both_ways_for_both_flavors() {
        for flavor in [Flavor::Elasticsearch, Flavor::OpenSearch] {
            for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
                let name = similarity_name(flavor, metric);
                assert_eq!(parse_similarity(name, "x").unwrap(), metric);
            }
        }
        assert_eq!(parse_similarity("dot_product", "x").unwrap(), Metric::Dot);
        assert!(parse_similarity("l1", "x")
            .unwrap_err()
            .to_string()
            .contains("\"l1\""));
    }

    #[test]
    fn a_failed_bulk_item_is_named_with_its_reason() {
        let answer = json!({"errors": true, "items": [
            {"index": {"_id": "1", "status": 201}},
            {"index": {"_id": "\"7\"", "status": 400, "error": {
                "type": "mapper_parsing_exception",
                "reason": "dims mismatch"
            }}}
        ]});
        let e = check_bulk(&answer, "es").unwrap_err().to_string();
        assert!(
            e.contains("point \"7\"") && e.contains("dims mismatch"),
            "{e}"
        );
        assert!(check_bulk(&json!({"errors": false, "items": []}), "es").is_ok());
        assert_eq!(
            throttled_items(&answer),
            None,
            "a mapping error is not retried"
        );
        let busy = json!({"errors": true, "items": [
            {"index": {"_id": "1", "status": 201}},
            {"index": {"_id": "2", "status": 429, "error": {
                "type": "es_rejected_execution_exception", "reason": "queue full"
            }}}
        ]});
        assert_eq!(throttled_items(&busy), Some(vec![1]));
    }
}
