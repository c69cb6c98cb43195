//! A loopback Elasticsearch or OpenSearch server: the part of their REST APIs the bridge
//! uses, written from the vendors' documentation (no such server can be installed where the
//! tests run).
//!
//! In memory, it enforces what the documentation says: index creation with a `dense_vector`
//! (`dims` 1..=4096, a known `similarity`) or, for OpenSearch, a `knn_vector` (`dimension`,
//! `method.space_type`) in an index with `settings.index.knn: true`; `resource_already_exists`
//! for an index that exists; `_bulk` as NDJSON ending in a newline, with per-item results
//! (vector dimension checked against the mapping, dynamic field types fixed by the first
//! document that has them); documents searchable only after `_refresh`; Elasticsearch points
//! in time (`_pit`, then `/_search` with `pit`, `_shard_doc` sort values and `search_after`)
//! and OpenSearch scrolls; `{"error": {"type", "reason"}, "status"}` bodies; 404
//! `index_not_found_exception`; 401 without `Authorization: ApiKey …` when a key is set.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Router,
};
use ipvec_node::bridge::endpoint::Flavor;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Default)]
pub struct Index {
    /// `mappings.properties`, with dynamically added fields.
    pub properties: Map<String, Value>,
    /// Searchable documents by `_id`.
    pub docs: BTreeMap<String, Value>,
    /// Written but not yet refreshed.
    pub pending: BTreeMap<String, Value>,
}

#[derive(Debug)]
pub struct ElasticState {
    pub flavor: Flavor,
    pub api_key: Option<String>,
    pub indices: BTreeMap<String, Index>,
    /// Open points in time and scrolls.
    pub cursors: HashMap<String, Cursor>,
    next_cursor: u64,
    pub throttle_next_bulk: bool,
    /// Turn away every other item of the next bulk request with an item status 429.
    pub throttle_items_next_bulk: bool,
    pub throttled_items: usize,
    pub fail_bulks_after: Option<usize>,
    pub bulks: usize,
    pub throttled: usize,
    pub log: Vec<String>,
}

/// A point in time or a scroll: what the index held when it was opened.
#[derive(Debug)]
pub struct Cursor {
    /// `(_id, _source)` in `_shard_doc` order.
    snapshot: Vec<(String, Value)>,
    /// Scrolls: the next hit's position, and the page size.
    position: usize,
    size: usize,
}

pub struct ElasticServer {
    pub url: String,
    pub state: Arc<Mutex<ElasticState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ElasticServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ElasticServer {
    pub async fn start(flavor: Flavor, api_key: Option<&str>) -> ElasticServer {
        let state = Arc::new(Mutex::new(ElasticState {
            flavor,
            api_key: api_key.map(str::to_string),
            indices: BTreeMap::new(),
            cursors: HashMap::new(),
            next_cursor: 1,
            throttle_next_bulk: false,
            throttle_items_next_bulk: false,
            throttled_items: 0,
            fail_bulks_after: None,
            bulks: 0,
            throttled: 0,
            log: Vec::new(),
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        ElasticServer { url, state, task }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut ElasticState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn error(status: StatusCode, kind: &str, reason: impl Into<String>) -> Response {
    let reason = reason.into();
    (
        status,
        axum::Json(json!({
            "error": {
                "root_cause": [{"type": kind, "reason": reason}],
                "type": kind,
                "reason": reason,
            },
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

fn no_index(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "index_not_found_exception",
        format!("no such index [{name}]"),
    )
}

async fn handle(
    State(state): State<Arc<Mutex<ElasticState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = state.lock().unwrap();
    let response = route(&mut state, &method, &uri, &headers, &body);
    let line = format!("{method} {} {}", uri.path(), response.status().as_u16());
    state.log.push(line);
    response
}

fn route(
    state: &mut ElasticState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    if let Some(key) = &state.api_key {
        let given = headers.get("authorization").and_then(|v| v.to_str().ok());
        if given != Some(format!("ApiKey {key}").as_str()) {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "security_exception",
                format!(
                    "missing authentication credentials for REST request [{}]",
                    uri.path()
                ),
            );
            response
                .headers_mut()
                .insert("www-authenticate", "ApiKey".parse().unwrap());
            return response;
        }
    }
    let query = uri.query().unwrap_or("");
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let json_body = || -> Result<Value, Response> {
        if body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(body).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "parse_exception",
                format!("request body is not valid JSON: {e}"),
            )
        })
    };
    macro_rules! body_or_return {
        () => {
            match json_body() {
                Ok(b) => b,
                Err(r) => return r,
            }
        };
    }
    match (method.clone(), segments.as_slice()) {
        (Method::PUT, [index]) => {
            let body = body_or_return!();
            create_index(state, index, &body)
        }
        (Method::DELETE, [index]) if !index.starts_with('_') => {
            match state.indices.remove(*index) {
                Some(_) => ok(json!({"acknowledged": true})),
                None => no_index(index),
            }
        }
        (Method::GET, [index, "_mapping"]) => match state.indices.get(*index) {
            Some(i) => ok(json!({*index: {"mappings": {"properties": i.properties}}})),
            None => no_index(index),
        },
        (Method::GET, [index, "_count"]) => match state.indices.get(*index) {
            Some(i) => ok(json!({"count": i.docs.len(), "_shards": {"total": 1}})),
            None => no_index(index),
        },
        (Method::POST, [index, "_refresh"]) => match state.indices.get_mut(*index) {
            Some(i) => {
                let pending = std::mem::take(&mut i.pending);
                i.docs.extend(pending);
                ok(json!({"_shards": {"total": 1, "successful": 1, "failed": 0}}))
            }
            None => no_index(index),
        },
        (Method::POST, ["_bulk"]) => {
            if state.throttle_next_bulk {
                state.throttle_next_bulk = false;
                state.throttled += 1;
                let mut response = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "es_rejected_execution_exception",
                    "rejected execution: the write queue is full",
                );
                response
                    .headers_mut()
                    .insert("retry-after", "2".parse().unwrap());
                return response;
            }
            if state.fail_bulks_after.is_some_and(|n| state.bulks >= n) {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "exception",
                    "the test server was told to fail",
                );
            }
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !content_type.starts_with("application/x-ndjson") {
                return error(
                    StatusCode::NOT_ACCEPTABLE,
                    "illegal_argument_exception",
                    format!("Content-Type header [{content_type}] is not supported"),
                );
            }
            let response = bulk(state, body);
            if response.status().is_success() {
                state.bulks += 1;
            }
            response
        }
        (Method::POST, [index, "_pit"]) if state.flavor == Flavor::Elasticsearch => {
            if !query.contains("keep_alive=") {
                return error(
                    StatusCode::BAD_REQUEST,
                    "action_request_validation_exception",
                    "Validation Failed: 1: [keep_alive] is not specified;",
                );
            }
            let Some(i) = state.indices.get(*index) else {
                return no_index(index);
            };
            let snapshot: Vec<_> = i.docs.clone().into_iter().collect();
            let id = open_cursor(state, snapshot, 0);
            ok(json!({"id": id}))
        }
        (Method::DELETE, ["_pit"]) if state.flavor == Flavor::Elasticsearch => {
            let body = body_or_return!();
            let id = body.get("id").and_then(Value::as_str).unwrap_or("");
            let freed = state.cursors.remove(id).is_some();
            ok(json!({"succeeded": true, "num_freed": usize::from(freed)}))
        }
        (Method::POST, ["_search"]) if state.flavor == Flavor::Elasticsearch => {
            let body = body_or_return!();
            pit_search(state, &body)
        }
        (Method::POST, [index, "_search"]) if query.contains("scroll=") => {
            let body = body_or_return!();
            let Some(i) = state.indices.get(*index) else {
                return no_index(index);
            };
            let size = body.get("size").and_then(Value::as_u64).unwrap_or(10) as usize;
            let snapshot: Vec<_> = i.docs.clone().into_iter().collect();
            let id = open_cursor(state, snapshot, size);
            scroll_page(state, &id)
        }
        (Method::POST, ["_search", "scroll"]) => {
            let body = body_or_return!();
            let id = body.get("scroll_id").and_then(Value::as_str).unwrap_or("");
            if !state.cursors.contains_key(id) {
                return error(
                    StatusCode::NOT_FOUND,
                    "search_context_missing_exception",
                    format!("No search context found for id [{id}]"),
                );
            }
            scroll_page(state, id)
        }
        (Method::DELETE, ["_search", "scroll"]) => {
            let body = body_or_return!();
            let ids = body.get("scroll_id").and_then(Value::as_array).cloned();
            let mut freed = 0;
            for id in ids.into_iter().flatten() {
                if let Some(id) = id.as_str() {
                    freed += usize::from(state.cursors.remove(id).is_some());
                }
            }
            ok(json!({"succeeded": true, "num_freed": freed}))
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            format!(
                "no handler found for uri [{}] and method [{method}]",
                uri.path()
            ),
        ),
    }
}

fn create_index(state: &mut ElasticState, name: &str, body: &Value) -> Response {
    if state.indices.contains_key(name) {
        return error(
            StatusCode::BAD_REQUEST,
            "resource_already_exists_exception",
            format!("index [{name}] already exists"),
        );
    }
    let properties = body
        .pointer("/mappings/properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let knn = body.pointer("/settings/index/knn") == Some(&json!(true));
    for (field, mapping) in &properties {
        let bad = |reason: String| {
            error(
                StatusCode::BAD_REQUEST,
                "mapper_parsing_exception",
                format!("Failed to parse mapping: field [{field}]: {reason}"),
            )
        };
        match (state.flavor, mapping.get("type").and_then(Value::as_str)) {
            (Flavor::Elasticsearch, Some("dense_vector")) => {
                let dims = mapping.get("dims").and_then(Value::as_u64).unwrap_or(0);
                if !(1..=4096).contains(&dims) {
                    return bad(format!("The number of dimensions should be in the range [1, 4096] but was [{dims}]"));
                }
                let similarity = mapping.get("similarity").and_then(Value::as_str);
                if !matches!(
                    similarity,
                    None | Some("l2_norm" | "dot_product" | "cosine" | "max_inner_product")
                ) {
                    return bad(format!(
                        "Unknown value [{similarity:?}] for field [similarity]"
                    ));
                }
            }
            (Flavor::OpenSearch, Some("knn_vector")) => {
                if !knn {
                    return bad("knn_vector needs the index setting index.knn: true".into());
                }
                let dims = mapping
                    .get("dimension")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if !(1..=16000).contains(&dims) {
                    return bad(format!(
                        "Dimension value must be in [1, 16000] but was [{dims}]"
                    ));
                }
                let space = mapping
                    .pointer("/method/space_type")
                    .and_then(Value::as_str);
                if !matches!(
                    space,
                    None | Some("l2" | "innerproduct" | "cosinesimil" | "l1" | "linf")
                ) {
                    return bad(format!("Unsupported space type [{space:?}]"));
                }
            }
            (_, Some(kind)) => {
                return bad(format!(
                    "No handler for type [{kind}] declared on field [{field}]"
                ))
            }
            (_, None) => return bad("No type specified".into()),
        }
    }
    state.indices.insert(
        name.to_string(),
        Index {
            properties,
            ..Index::default()
        },
    );
    ok(json!({"acknowledged": true, "shards_acknowledged": true, "index": name}))
}

/// The dynamic mapping type of a JSON value.
fn dynamic_type(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "long",
        Value::Number(_) => "float",
        Value::String(_) => "text",
        Value::Object(_) => "object",
        _ => "null",
    }
}

/// Checks a document against the index's mapping (adding dynamic fields); the error reason.
fn index_document(
    index: &mut Index,
    flavor: Flavor,
    id: &str,
    source: &Value,
) -> Result<(), String> {
    let fields = source.as_object().ok_or("the document is not an object")?;
    for (field, value) in fields {
        match index.properties.get(field) {
            Some(mapping) => {
                let kind = mapping.get("type").and_then(Value::as_str).unwrap_or("");
                let dims = match (flavor, kind) {
                    (Flavor::Elasticsearch, "dense_vector") => mapping.get("dims"),
                    (Flavor::OpenSearch, "knn_vector") => mapping.get("dimension"),
                    _ => None,
                };
                if let Some(dims) = dims.and_then(Value::as_u64) {
                    let given = value.as_array().map_or(0, Vec::len) as u64;
                    if given != dims {
                        return Err(format!(
                            "The [{kind}] field [{field}] in doc [document with id '{id}'] has a \
                             different number of dimensions [{given}] than defined in the \
                             mapping [{dims}]"
                        ));
                    }
                } else if value.is_null() {
                } else {
                    let given = dynamic_type(value);
                    // Numbers go into either numeric type (Elasticsearch coerces them).
                    let numeric = |k: &str| k == "long" || k == "float";
                    let fits = given == kind || (numeric(kind) && numeric(given));
                    if !fits {
                        return Err(format!(
                            "failed to parse field [{field}] of type [{kind}] in document with \
                             id '{id}'. Preview of field's value: '{value}'"
                        ));
                    }
                }
            }
            None => {
                if !value.is_null() {
                    index
                        .properties
                        .insert(field.clone(), json!({"type": dynamic_type(value)}));
                }
            }
        }
    }
    index.pending.insert(id.to_string(), source.clone());
    Ok(())
}

fn bulk(state: &mut ElasticState, body: &[u8]) -> Response {
    let text = String::from_utf8_lossy(body);
    if !text.ends_with('\n') {
        return error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]",
        );
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut items = Vec::new();
    let mut errors = false;
    let throttle_items = std::mem::take(&mut state.throttle_items_next_bulk);
    for pair in lines.chunks(2) {
        let action: Value = match serde_json::from_str(pair[0]) {
            Ok(v) => v,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "x_content_parse_exception",
                    format!("Malformed action/metadata line: {e}"),
                )
            }
        };
        let Some(meta) = action.get("index") else {
            return error(
                StatusCode::BAD_REQUEST,
                "illegal_argument_exception",
                format!("Malformed action/metadata line [{}]", pair[0]),
            );
        };
        let index = meta
            .get("_index")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let id = meta
            .get("_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let Some(source) = pair
            .get(1)
            .and_then(|l| serde_json::from_str::<Value>(l).ok())
        else {
            return error(
                StatusCode::BAD_REQUEST,
                "illegal_argument_exception",
                "The bulk request has an action without a valid source line",
            );
        };
        let flavor = state.flavor;
        if throttle_items && items.len() % 2 == 1 {
            state.throttled_items += 1;
            errors = true;
            items.push(json!({"index": {
                "_index": index, "_id": id, "status": 429,
                "error": {"type": "es_rejected_execution_exception",
                          "reason": "rejected execution: the write queue is full"}
            }}));
            continue;
        }
        let outcome = match state.indices.get_mut(&index) {
            None => Err((
                "index_not_found_exception",
                format!("no such index [{index}]"),
                404,
            )),
            Some(i) => index_document(i, flavor, &id, &source)
                .map_err(|r| ("document_parsing_exception", r, 400)),
        };
        items.push(match outcome {
            Ok(()) => json!({"index": {
                "_index": index, "_id": id, "_version": 1, "result": "created", "status": 201
            }}),
            Err((kind, reason, status)) => {
                errors = true;
                json!({"index": {
                    "_index": index, "_id": id, "status": status,
                    "error": {"type": kind, "reason": reason}
                }})
            }
        });
    }
    ok(json!({"took": 1, "errors": errors, "items": items}))
}

fn open_cursor(state: &mut ElasticState, snapshot: Vec<(String, Value)>, size: usize) -> String {
    let id = format!("cursor-{}", state.next_cursor);
    state.next_cursor += 1;
    state.cursors.insert(
        id.clone(),
        Cursor {
            snapshot,
            position: 0,
            size,
        },
    );
    id
}

fn hit(index: &str, id: &str, source: &Value, position: usize) -> Value {
    json!({"_index": index, "_id": id, "_score": null, "_source": source, "sort": [position]})
}

fn pit_search(state: &mut ElasticState, body: &Value) -> Response {
    let Some(id) = body.pointer("/pit/id").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            "the test server reads /_search only with a point in time",
        );
    };
    let Some(Cursor { snapshot, .. }) = state.cursors.get(id) else {
        return error(
            StatusCode::NOT_FOUND,
            "search_context_missing_exception",
            format!("No search context found for id [{id}]"),
        );
    };
    if body.get("sort") != Some(&json!([{"_shard_doc": "asc"}])) {
        return error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            "the test server sorts only by [{\"_shard_doc\": \"asc\"}]",
        );
    }
    let size = body.get("size").and_then(Value::as_u64).unwrap_or(10) as usize;
    let start = match body.get("search_after") {
        None => 0,
        Some(after) => match after.get(0).and_then(Value::as_u64) {
            Some(p) => p as usize + 1,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "illegal_argument_exception",
                    format!("search_after {after} does not match the sort [_shard_doc]"),
                )
            }
        },
    };
    let hits: Vec<Value> = snapshot
        .iter()
        .enumerate()
        .skip(start)
        .take(size)
        .map(|(position, (doc, source))| hit("index", doc, source, position))
        .collect();
    ok(json!({"pit_id": id, "took": 1, "timed_out": false, "hits": {"hits": hits}}))
}

fn scroll_page(state: &mut ElasticState, id: &str) -> Response {
    let Some(Cursor {
        snapshot,
        position,
        size,
    }) = state.cursors.get_mut(id)
    else {
        return error(
            StatusCode::NOT_FOUND,
            "search_context_missing_exception",
            id.to_string(),
        );
    };
    let hits: Vec<Value> = snapshot
        .iter()
        .enumerate()
        .skip(*position)
        .take(*size)
        .map(|(p, (doc, source))| hit("index", doc, source, p))
        .collect();
    *position += hits.len();
    ok(json!({"_scroll_id": id, "took": 1, "timed_out": false, "hits": {"hits": hits}}))
}
