//! A loopback Qdrant server: the part of Qdrant's REST API the bridge uses, written from
//! Qdrant's API documentation (no Qdrant server can be installed where the tests run).
//!
//! It keeps collections in memory and enforces what the documentation says: the vectors
//! configuration (`size`, `distance`, or named vectors), ids (unsigned integers or UUIDs,
//! UUIDs stored in their hyphenated lowercase form), vector dimensions, Cosine vectors
//! normalized when stored, scrolling in id order from an inclusive `offset` with
//! `next_page_offset`, `{"status": {"error": …}}` error bodies, 404 for an unknown
//! collection, and 401 without the `api-key` when one is configured. Knobs make it throttle
//! (429 with `Retry-After`), fail (500) after a number of requests, or answer garbage.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Router,
};
use serde_json::{json, Map, Value};

/// A point's id, ordered as Qdrant scrolls: integers, then UUIDs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Id {
    Int(u64),
    Uuid(String),
}

impl Id {
    fn json(&self) -> Value {
        match self {
            Id::Int(n) => json!(n),
            Id::Uuid(s) => json!(s),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoredPoint {
    /// Vectors by name ("" for the unnamed one).
    pub vectors: BTreeMap<String, Vec<f32>>,
    pub payload: Map<String, Value>,
}

#[derive(Debug, Clone)]
pub struct Collection {
    /// `vectors` as created: `{"size", "distance"}` or named.
    pub vectors: Value,
    pub points: BTreeMap<Id, StoredPoint>,
}

#[derive(Debug, Default)]
pub struct QdrantState {
    pub api_key: Option<String>,
    pub collections: BTreeMap<String, Collection>,
    /// Answer the next upsert with 429 and `Retry-After: 2`.
    pub throttle_next_upsert: bool,
    /// Upserts accepted before every later one fails with 500.
    pub fail_upserts_after: Option<usize>,
    /// Scrolls answered before every later one fails with 500.
    pub fail_scrolls_after: Option<usize>,
    /// Answer scrolls with something that is not JSON.
    pub garbage_scrolls: bool,
    pub upserts: usize,
    pub scrolls: usize,
    pub throttled: usize,
    /// Every request, as `METHOD path status`.
    pub log: Vec<String>,
}

pub struct QdrantServer {
    pub url: String,
    pub state: Arc<Mutex<QdrantState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for QdrantServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl QdrantServer {
    pub async fn start(api_key: Option<&str>) -> QdrantServer {
        let state = Arc::new(Mutex::new(QdrantState {
            api_key: api_key.map(str::to_string),
            ..QdrantState::default()
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        QdrantServer { url, state, task }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut QdrantState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

fn ok(result: Value) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({"result": result, "status": "ok", "time": 0.001})),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"status": {"error": message.into()}, "time": 0.0})),
    )
        .into_response()
}

fn not_found(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("Not found: Collection `{name}` doesn't exist!"),
    )
}

async fn handle(
    State(state): State<Arc<Mutex<QdrantState>>>,
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
    state: &mut QdrantState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    if let Some(key) = &state.api_key {
        let given = headers.get("api-key").and_then(|v| v.to_str().ok());
        if given != Some(key.as_str()) {
            return (
                StatusCode::UNAUTHORIZED,
                "Must provide an API key or an Authorization bearer token",
            )
                .into_response();
        }
    }
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let json_body = || -> Result<Value, Response> {
        serde_json::from_slice(body).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("Json deserialize error: {e}"),
            )
        })
    };
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["collections", name]) => match state.collections.get(*name) {
            Some(c) => ok(json!({
                "status": "green",
                "optimizer_status": "ok",
                "points_count": c.points.len(),
                "segments_count": 1,
                "config": {"params": {"vectors": c.vectors}},
                "payload_schema": {},
            })),
            None => not_found(name),
        },
        (Method::PUT, ["collections", name]) => {
            let body = match json_body() {
                Ok(b) => b,
                Err(r) => return r,
            };
            if state.collections.contains_key(*name) {
                return error(
                    StatusCode::CONFLICT,
                    format!("Wrong input: Collection `{name}` already exists!"),
                );
            }
            let Some(vectors) = body.get("vectors") else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Json deserialize error: missing field `vectors`",
                );
            };
            let check = |params: &Value| -> Result<(), String> {
                let size = params.get("size").and_then(Value::as_u64).unwrap_or(0);
                if size == 0 || size > 65536 {
                    return Err(format!(
                        "Validation error: size: {size} is out of 1..=65536"
                    ));
                }
                match params.get("distance").and_then(Value::as_str) {
                    Some("Cosine" | "Euclid" | "Dot" | "Manhattan") => Ok(()),
                    other => Err(format!(
                        "Json deserialize error: unknown variant {other:?}, expected one of \
                         `Cosine`, `Euclid`, `Dot`, `Manhattan`"
                    )),
                }
            };
            let checked = if vectors.get("size").is_some() {
                check(vectors)
            } else {
                match vectors.as_object() {
                    Some(named) if !named.is_empty() => named.values().try_for_each(check),
                    _ => Err("Json deserialize error: vectors must be params or a map".into()),
                }
            };
            if let Err(message) = checked {
                return error(StatusCode::UNPROCESSABLE_ENTITY, message);
            }
            state.collections.insert(
                name.to_string(),
                Collection {
                    vectors: vectors.clone(),
                    points: BTreeMap::new(),
                },
            );
            ok(json!(true))
        }
        (Method::DELETE, ["collections", name]) => {
            let existed = state.collections.remove(*name).is_some();
            ok(json!(existed))
        }
        (Method::PUT, ["collections", name, "points"]) => {
            if state.throttle_next_upsert {
                state.throttle_next_upsert = false;
                state.throttled += 1;
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "2")],
                    axum::Json(json!({"status": {"error": "Too many requests"}})),
                )
                    .into_response();
            }
            if state.fail_upserts_after.is_some_and(|n| state.upserts >= n) {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Service internal error: the test server was told to fail",
                );
            }
            let body = match json_body() {
                Ok(b) => b,
                Err(r) => return r,
            };
            let Some(collection) = state.collections.get_mut(*name) else {
                return not_found(name);
            };
            match upsert(collection, &body) {
                Ok(()) => {
                    state.upserts += 1;
                    ok(json!({"operation_id": state.upserts, "status": "completed"}))
                }
                Err(message) => error(StatusCode::BAD_REQUEST, message),
            }
        }
        (Method::POST, ["collections", name, "points", "scroll"]) => {
            if state.fail_scrolls_after.is_some_and(|n| state.scrolls >= n) {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Service internal error: the test server was told to fail",
                );
            }
            if state.garbage_scrolls {
                return (StatusCode::OK, "<html>upstream proxy says hello</html>").into_response();
            }
            let body = if body.is_empty() {
                json!({})
            } else {
                match json_body() {
                    Ok(b) => b,
                    Err(r) => return r,
                }
            };
            let Some(collection) = state.collections.get(*name) else {
                return not_found(name);
            };
            let page = scroll(collection, &body);
            if page.is_ok() {
                state.scrolls += 1;
            }
            match page {
                Ok(page) => ok(page),
                Err(message) => error(StatusCode::BAD_REQUEST, message),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!("the test server has no {method} {}", uri.path()),
        ),
    }
}

/// Parses an id as Qdrant accepts it: an unsigned integer, or a UUID (stored lowercase).
fn parse_id(id: &Value) -> Result<Id, String> {
    match id {
        Value::Number(n) => n
            .as_u64()
            .map(Id::Int)
            .ok_or_else(|| format!("Format error in JSON body: {n} is not a valid point ID")),
        Value::String(s) => {
            let lower = s.to_ascii_lowercase();
            let hex: String = lower.chars().filter(|c| *c != '-').collect();
            let hyphens_ok = lower.len() == 32
                || (lower.len() == 36
                    && [8, 13, 18, 23].iter().all(|&i| lower.as_bytes()[i] == b'-'));
            if hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()) && hyphens_ok {
                Ok(Id::Uuid(format!(
                    "{}-{}-{}-{}-{}",
                    &hex[0..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..32]
                )))
            } else {
                Err(format!(
                    "Format error in JSON body: value {s} is not a valid point ID, valid \
                     values are either an unsigned integer or a UUID"
                ))
            }
        }
        other => Err(format!(
            "Format error in JSON body: {other} is not a valid point ID"
        )),
    }
}

fn upsert(collection: &mut Collection, body: &Value) -> Result<(), String> {
    let points = body
        .get("points")
        .and_then(Value::as_array)
        .ok_or("Json deserialize error: missing field `points`")?;
    let named = collection.vectors.get("size").is_none();
    let mut staged = Vec::new();
    for point in points {
        let id = parse_id(point.get("id").unwrap_or(&Value::Null))?;
        let given = point
            .get("vector")
            .ok_or("Json deserialize error: missing field `vector`")?;
        let mut vectors = BTreeMap::new();
        let wanted: Vec<(String, &Value)> = if named {
            collection
                .vectors
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v))
                .collect()
        } else {
            vec![(String::new(), &collection.vectors)]
        };
        for (name, params) in wanted {
            let raw = if named {
                match given.get(&name) {
                    Some(v) => v,
                    None => continue,
                }
            } else {
                given
            };
            let mut vector: Vec<f32> = serde_json::from_value(raw.clone())
                .map_err(|e| format!("Json deserialize error: vector: {e}"))?;
            let size = params["size"].as_u64().unwrap_or(0) as usize;
            if vector.len() != size {
                return Err(format!(
                    "Wrong input: Vector dimension error: expected dim: {size}, got {}",
                    vector.len()
                ));
            }
            if params["distance"] == "Cosine" {
                let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    vector.iter_mut().for_each(|x| *x /= norm);
                }
            }
            vectors.insert(name, vector);
        }
        if named {
            if let Some(unknown) = given
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
                .find(|k| collection.vectors.get(k.as_str()).is_none())
            {
                return Err(format!(
                    "Wrong input: Not existing vector name error: {unknown}"
                ));
            }
        }
        let payload = match point.get("payload") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err("Json deserialize error: payload must be an object".into()),
        };
        staged.push((id, StoredPoint { vectors, payload }));
    }
    collection.points.extend(staged);
    Ok(())
}

fn scroll(collection: &Collection, body: &Value) -> Result<Value, String> {
    let limit = body.get("limit").and_then(Value::as_u64).unwrap_or(10) as usize;
    if limit == 0 {
        return Err("Validation error: limit: value 0 invalid, must be 1 or larger".into());
    }
    let start = match body.get("offset") {
        None | Some(Value::Null) => None,
        Some(id) => Some(parse_id(id)?),
    };
    let with_payload = body
        .get("with_payload")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let with_vector = body.get("with_vector").cloned().unwrap_or(json!(false));
    let named = collection.vectors.get("size").is_none();
    let mut rest = collection
        .points
        .iter()
        .filter(|(id, _)| start.as_ref().is_none_or(|s| *id >= s));
    let mut points = Vec::new();
    for (id, point) in rest.by_ref().take(limit) {
        let mut out = json!({"id": id.json()});
        if with_payload {
            out["payload"] = Value::Object(point.payload.clone());
        }
        let vector = match (&with_vector, named) {
            (Value::Bool(true), false) => Some(json!(point.vectors[""])),
            (Value::Bool(true), true) => Some(json!(point.vectors)),
            (Value::Array(names), true) => Some(Value::Object(
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(|n| Some((n.to_string(), json!(point.vectors.get(n)?))))
                    .collect(),
            )),
            _ => None,
        };
        if let Some(vector) = vector {
            out["vector"] = vector;
        }
        points.push(out);
    }
    let next = rest.next().map(|(id, _)| id.json()).unwrap_or(Value::Null);
    Ok(json!({"points": points, "next_page_offset": next}))
}
