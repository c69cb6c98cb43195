//! A Qdrant collection as a bridge end, over Qdrant's REST API.
//!
//! - Reading: `GET /collections/{c}` gives the vector size and distance (of the unnamed
//!   vector, or of the one named by `vector_name`); `POST /collections/{c}/points/scroll`
//!   pages through the points in id order, each page starting at the previous answer's
//!   `next_page_offset`, which is also the cursor an interrupted move resumes at.
//! - Writing: `PUT /collections/{c}` creates the collection (after a `GET` has shown it is
//!   not there), `PUT /collections/{c}/points?wait=true` upserts each batch, and a failed
//!   move's `DELETE /collections/{c}` removes a collection this move created.
//! - Ids: Qdrant's are unsigned integers or UUIDs. Integer ids map to themselves; string ids
//!   must be UUIDs written the way Qdrant writes them back (lowercase, hyphenated), so the
//!   round trip is exact; any other string id is refused.
//! - Payloads are metadata, both ways; a point without metadata has an empty payload.
//! - `api-key` header from the options; retries as [`super::retry`] decides.

use futures::future::BoxFuture;
use ipvec_protocol::{
    api::{PointId, PointIn},
    manifest::Metric,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use super::{point_label, retry, BridgeError, BridgeOptions, Result, Shape, Sink, Source};

/// Opens collection `collection` of the Qdrant server at `url` to be read.
pub fn source(url: &str, collection: &str, options: &BridgeOptions) -> Result<Box<dyn Source>> {
    Ok(Box::new(QdrantSource {
        server: QdrantServer::new(url, collection, options)?,
        vector_name: options.vector_name.clone(),
        offset: None,
        done: false,
    }))
}

/// Opens collection `collection` of the Qdrant server at `url` to be written.
pub fn sink(url: &str, collection: &str, options: &BridgeOptions) -> Result<Box<dyn Sink>> {
    Ok(Box::new(QdrantSink {
        server: QdrantServer::new(url, collection, options)?,
        vector_name: options.vector_name.clone(),
        created: false,
    }))
}

/// Qdrant's name of a metric.
pub fn distance_name(metric: Metric) -> &'static str {
    match metric {
        Metric::Cosine => "Cosine",
        Metric::L2 => "Euclid",
        Metric::Dot => "Dot",
    }
}

/// The metric of a Qdrant distance.
pub fn parse_distance(name: &str, whence: &str) -> Result<Metric> {
    match name {
        "Cosine" => Ok(Metric::Cosine),
        "Euclid" => Ok(Metric::L2),
        "Dot" => Ok(Metric::Dot),
        "Manhattan" => Err(BridgeError::invalid(format!(
            "{whence} compares vectors by Manhattan distance, which ipvec does not offer \
             (it has cosine, l2 and dot): such a collection cannot be moved without changing \
             what its searches find"
        ))),
        other => Err(BridgeError::invalid(format!(
            "{whence} has distance {other:?}, which this bridge does not know (Qdrant's are \
             Cosine, Euclid, Dot and Manhattan)"
        ))),
    }
}

/// Whether `s` is a UUID as Qdrant writes one: 8-4-4-4-12 lowercase hex digits.
pub fn is_canonical_uuid(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// The id Qdrant is sent for an ipvec id.
fn id_to_qdrant(point: &PointIn, whence: &str) -> Result<Value> {
    match &point.id {
        PointId::Int(n) => Ok(json!(n)),
        PointId::Str(s) if is_canonical_uuid(s) => Ok(json!(s)),
        PointId::Str(s) => Err(BridgeError::invalid(format!(
            "{whence}: point {s:?} has a string id that is not a UUID; Qdrant accepts only \
             unsigned integers and UUIDs (write UUIDs lowercase with hyphens, as Qdrant \
             returns them): give the points such ids, or move them to a store that keeps \
             any string"
        ))),
    }
}

/// The ipvec id of a Qdrant id.
fn id_from_qdrant(id: &Value, whence: &str) -> Result<PointId> {
    match id {
        Value::Number(n) => n.as_u64().map(PointId::Int).ok_or_else(|| {
            BridgeError::remote(format!(
                "{whence}: a point has id {n}, which is not an unsigned integer"
            ))
        }),
        Value::String(s) => Ok(PointId::Str(s.clone())),
        other => Err(BridgeError::remote(format!(
            "{whence}: a point has id {other}, neither an unsigned integer nor a UUID"
        ))),
    }
}

/// One collection of one server, with the key and the retry policy.
#[derive(Debug, Clone)]
struct QdrantServer {
    client: reqwest::Client,
    base: String,
    collection: String,
    api_key: Option<String>,
    policy: crate::outbound::RetryPolicy,
}

impl QdrantServer {
    fn new(url: &str, collection: &str, options: &BridgeOptions) -> Result<Self> {
        Ok(Self {
            client: retry::client()?,
            base: url.trim_end_matches('/').to_string(),
            collection: collection.to_string(),
            api_key: options.api_key.clone(),
            policy: retry::policy(),
        })
    }

    /// `qdrant:URL/COLLECTION`, for messages.
    fn name(&self) -> String {
        format!("qdrant:{}/{}", self.base, self.collection)
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = format!("{}/collections/{}{path}", self.base, self.collection);
        let request = self.client.request(method, url);
        match &self.api_key {
            Some(key) => request.header("api-key", key),
            None => request,
        }
    }

    /// Sends a request (retried as the policy says) and returns the answer.
    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Response> {
        let what = format!(
            "{} {method} /collections/{}{path}",
            self.name(),
            self.collection
        );
        retry::send(self.policy, &self.base, &what, || {
            let request = self.request(method.clone(), path);
            match body {
                Some(body) => request.json(body),
                None => request,
            }
        })
        .await
    }

    /// Sends a request and returns the `result` of a successful answer; an error answer
    /// becomes a message with Qdrant's own words and `hint`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        hint: &str,
    ) -> Result<Value> {
        let response = self.send(method.clone(), path, body).await?;
        let what = format!(
            "{} {method} /collections/{}{path}",
            self.name(),
            self.collection
        );
        answer(response, &what, hint).await
    }
}

/// The `result` of a successful answer, or an error naming the request and Qdrant's reason.
async fn answer(response: Response, what: &str, hint: &str) -> Result<Value> {
    let status = response.status();
    let text = response.text().await.map_err(|e| {
        BridgeError::remote(format!(
            "{what}: the answer broke off ({e}); run the move again"
        ))
    })?;
    let body: Option<Value> = serde_json::from_str(&text).ok();
    if status.is_success() {
        let mut body = body.ok_or_else(|| {
            BridgeError::remote(format!(
                "{what}: the answer is not JSON ({:?}); is this a Qdrant server?",
                retry::truncate(&text, 200)
            ))
        })?;
        return match body.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(BridgeError::remote(format!(
                "{what}: the answer has no \"result\" ({}); is this a Qdrant server?",
                retry::truncate(&text, 200)
            ))),
        };
    }
    let reason = body
        .as_ref()
        .and_then(|b| b.pointer("/status/error"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| retry::truncate(text.trim(), 300).to_string());
    let hint = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "give the server's API key (--api-key)",
        _ => hint,
    };
    Err(BridgeError::remote(format!(
        "{what} answered {status}: {reason}; {hint}"
    )))
}

/// The vector size and distance of a collection's description, for the vector named `name`.
fn vector_params(info: &Value, name: Option<&str>, whence: &str) -> Result<(u32, Metric)> {
    let vectors = info.pointer("/config/params/vectors").ok_or_else(|| {
        BridgeError::remote(format!(
            "{whence}: the collection's description has no config.params.vectors"
        ))
    })?;
    let params = if vectors.get("size").is_some() {
        if let Some(name) = name {
            return Err(BridgeError::invalid(format!(
                "{whence} has one unnamed vector, not one named {name:?}: drop the vector name"
            )));
        }
        vectors
    } else {
        let names: Vec<&str> = vectors
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        match name.and_then(|n| vectors.get(n)) {
            Some(params) => params,
            None => {
                let asked = match name {
                    Some(n) => format!("has no vector named {n:?}"),
                    None => "has named vectors".to_string(),
                };
                return Err(BridgeError::invalid(format!(
                    "{whence} {asked}: name one of {names:?} with the vector name option"
                )));
            }
        }
    };
    let size = params
        .get("size")
        .and_then(Value::as_u64)
        .and_then(|s| u32::try_from(s).ok())
        .filter(|&s| s > 0)
        .ok_or_else(|| {
            BridgeError::remote(format!(
                "{whence}: the vector parameters {params} have no valid size"
            ))
        })?;
    let distance = params
        .get("distance")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            BridgeError::remote(format!(
                "{whence}: the vector parameters {params} have no distance"
            ))
        })?;
    Ok((size, parse_distance(distance, whence)?))
}

/// Reads a collection page by page.
#[derive(Debug)]
struct QdrantSource {
    server: QdrantServer,
    vector_name: Option<String>,
    /// Where the next page starts (`None`: at the beginning).
    offset: Option<Value>,
    done: bool,
}

impl QdrantSource {
    fn point(&self, raw: &Value) -> Result<PointIn> {
        let whence = self.server.name();
        let id = id_from_qdrant(raw.get("id").unwrap_or(&Value::Null), &whence)?;
        let label = match &id {
            PointId::Int(n) => n.to_string(),
            PointId::Str(s) => format!("{s:?}"),
        };
        let vector = match (&self.vector_name, raw.get("vector")) {
            (None, Some(v)) => v,
            (Some(name), Some(v)) => v.get(name).unwrap_or(&Value::Null),
            (_, None) => &Value::Null,
        };
        let vector: Vec<f32> = serde_json::from_value(vector.clone()).map_err(|e| {
            BridgeError::remote(format!(
                "{whence}: point {label} came without a dense vector of numbers ({e})"
            ))
        })?;
        let metadata = match raw.get("payload") {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) if map.is_empty() => None,
            Some(payload @ Value::Object(_)) => Some(payload.clone()),
            Some(other) => {
                return Err(BridgeError::remote(format!(
                    "{whence}: point {label} has payload {other}, not a JSON object"
                )))
            }
        };
        Ok(PointIn::vector(id, vector, metadata))
    }
}

impl Source for QdrantSource {
    fn shape(&mut self) -> BoxFuture<'_, Result<Shape>> {
        Box::pin(async move {
            let whence = self.server.name();
            let info = self
                .server
                .call(
                    Method::GET,
                    "",
                    None,
                    "check the URL and the collection's name",
                )
                .await?;
            let (dimension, metric) = vector_params(&info, self.vector_name.as_deref(), &whence)?;
            Ok(Shape {
                dimension,
                metric,
                count: info.get("points_count").and_then(Value::as_u64),
            })
        })
    }

    fn next_batch(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<PointIn>>> {
        Box::pin(async move {
            if self.done {
                return Ok(Vec::new());
            }
            let with_vector = match &self.vector_name {
                Some(name) => json!([name]),
                None => json!(true),
            };
            let mut body = json!({
                "limit": max.max(1),
                "with_payload": true,
                "with_vector": with_vector,
            });
            if let Some(offset) = &self.offset {
                body["offset"] = offset.clone();
            }
            let result = self
                .server
                .call(
                    Method::POST,
                    "/points/scroll",
                    Some(&body),
                    "check the collection's name",
                )
                .await?;
            let whence = self.server.name();
            let raw = result
                .get("points")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    BridgeError::remote(format!(
                        "{whence}: a scroll answer has no list of points: {}",
                        retry::truncate(&result.to_string(), 200)
                    ))
                })?;
            let points = raw
                .iter()
                .map(|p| self.point(p))
                .collect::<Result<Vec<_>>>()?;
            match result.get("next_page_offset") {
                None | Some(Value::Null) => self.done = true,
                Some(next) => {
                    if points.is_empty() {
                        return Err(BridgeError::remote(format!(
                            "{whence}: a scroll answer has no points but a next page at \
                             {next}; the server is not paging as Qdrant does"
                        )));
                    }
                    self.offset = Some(next.clone());
                }
            }
            Ok(points)
        })
    }

    fn cursor(&self) -> Option<String> {
        // `null` once the last page was read, so a resumed move reads nothing more.
        match (&self.offset, self.done) {
            (_, true) => Some("null".to_string()),
            (Some(offset), false) => Some(offset.to_string()),
            (None, false) => None,
        }
    }

    fn resume_at<'a>(&'a mut self, cursor: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let offset: Value = serde_json::from_str(cursor).map_err(|e| {
                BridgeError::invalid(format!(
                    "{}: the checkpoint's cursor {cursor:?} is not a Qdrant page offset ({e}); \
                     delete the checkpoint and move again",
                    self.server.name()
                ))
            })?;
            self.done = offset.is_null();
            self.offset = Some(offset).filter(|o| !o.is_null());
            Ok(())
        })
    }
}

/// Writes a collection, creating it.
#[derive(Debug)]
struct QdrantSink {
    server: QdrantServer,
    vector_name: Option<String>,
    /// Whether this move created the collection (and so may delete it).
    created: bool,
}

impl Sink for QdrantSink {
    fn begin<'a>(&'a mut self, shape: &'a Shape, resuming: bool) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let whence = self.server.name();
            let response = self.server.send(Method::GET, "", None).await?;
            let what = format!("{whence} GET");
            if response.status() == StatusCode::NOT_FOUND {
                if resuming {
                    return Err(BridgeError::invalid(format!(
                        "{whence} does not exist, so the interrupted move cannot be continued \
                         there: delete the checkpoint and move again"
                    )));
                }
            } else {
                let info = answer(response, &what, "check the URL and the API key").await?;
                if !resuming {
                    return Err(BridgeError::invalid(format!(
                        "{whence} exists already: move into a new collection, or delete it \
                         first (DELETE /collections/{})",
                        self.server.collection
                    )));
                }
                let (size, metric) = vector_params(&info, self.vector_name.as_deref(), &whence)?;
                if size != shape.dimension || metric != shape.metric {
                    return Err(BridgeError::invalid(format!(
                        "{whence} has size {size} and distance {}, the source {} and {}: it \
                         is not the target of the interrupted move",
                        distance_name(metric),
                        shape.dimension,
                        distance_name(shape.metric)
                    )));
                }
                return Ok(());
            }
            let params = json!({
                "size": shape.dimension,
                "distance": distance_name(shape.metric),
            });
            let vectors = match &self.vector_name {
                Some(name) => json!({ name: params }),
                None => params,
            };
            self.server
                .call(
                    Method::PUT,
                    "",
                    Some(&json!({ "vectors": vectors })),
                    "check the collection's name and the server's limits",
                )
                .await?;
            self.created = true;
            Ok(())
        })
    }

    fn write<'a>(&'a mut self, batch: &'a [PointIn]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let whence = self.server.name();
            let mut points = Vec::with_capacity(batch.len());
            for point in batch {
                let id = id_to_qdrant(point, &whence)?;
                let payload = match &point.metadata {
                    None | Some(Value::Null) => json!({}),
                    Some(map @ Value::Object(_)) => map.clone(),
                    Some(other) => {
                        return Err(BridgeError::invalid(format!(
                            "{whence}: point {}'s metadata {other} is not a JSON object, \
                             which a Qdrant payload must be",
                            point_label(point)
                        )))
                    }
                };
                let vector = match &self.vector_name {
                    Some(name) => json!({ name: point.vector }),
                    None => json!(point.vector),
                };
                points.push(json!({ "id": id, "vector": vector, "payload": payload }));
            }
            self.server
                .call(
                    Method::PUT,
                    "/points?wait=true",
                    Some(&json!({ "points": points })),
                    "the server refused the batch: check the points it names",
                )
                .await?;
            Ok(())
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        // Every batch was written with `wait=true`: it is stored and searchable already.
        Box::pin(async move { Ok(()) })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.created {
                self.server
                    .call(Method::DELETE, "", None, "delete the collection by hand")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_uuids_pass_as_string_ids() {
        assert!(is_canonical_uuid("a3bb189e-8bf9-3888-9912-ace4e6543002"));
        assert!(!is_canonical_uuid("A3BB189E-8BF9-3888-9912-ACE4E6543002"));
        assert!(!is_canonical_uuid("a3bb189e8bf938889912ace4e6543002"));
        assert!(!is_canonical_uuid("doc-7"));
        let p = PointIn::vector(PointId::Str("doc-7".into()), vec![1.0], None);
        let e = id_to_qdrant(&p, "qdrant:x").unwrap_err().to_string();
        assert!(e.contains("\"doc-7\"") && e.contains("UUID"), "{e}");
    }

    #[test]
    fn named_vectors_must_be_chosen_by_name() {
        let info = json!({"config": {"params": {"vectors": {
            "image": {"size": 4, "distance": "Dot"},
            "text": {"size": 8, "distance": "Manhattan"}
        }}}});
        assert_eq!(
            vector_params(&info, Some("image"), "c").unwrap(),
            (4, Metric::Dot)
        );
        let e = vector_params(&info, None, "c").unwrap_err().to_string();
        assert!(e.contains("\"image\"") && e.contains("\"text\""), "{e}");
        let e = vector_params(&info, Some("text"), "c")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Manhattan"), "{e}");
    }
}
