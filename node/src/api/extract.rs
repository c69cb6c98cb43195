//! What a request's parts become before a handler runs: its JSON or raw body, path parameters
//! and query string, each refused as an [`ApiError`] (the JSON error body, with what to do)
//! instead of axum's plain-text rejections.

use axum::{
    extract::{FromRequest, FromRequestParts, Path, Query, Request},
    http::{request::Parts, StatusCode},
    Json,
};
use serde::de::DeserializeOwned;

use super::{
    error::ApiError,
    types::{PointIn, UpsertPoints},
};
use crate::ops::points::points_of;

/// A JSON body whose rejections are [`ApiError`]s.
pub(super) struct ApiJson<T>(pub(super) T);

fn rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(
            "the request body is over the daemon's limit (api.max_body_bytes); send smaller batches",
        )
    } else {
        ApiError::bad_request(format!(
            "{text}; /openapi.json describes every request body"
        ))
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(e) => Err(rejection(e.status(), e.body_text())),
        }
    }
}

/// The points of a `PUT …/points` body (megabytes of vectors, as numbers or `vector_b64`),
/// parsed and their vectors decoded on the [`background`](crate::background) pool so that
/// the runtime's threads stay free for searches. Its media type was checked by the route's
/// guard; a body that does not parse is refused as [`ApiJson`]'s, a vector that cannot be
/// read as a bad point.
pub(super) struct PointsJson(pub(super) Vec<PointIn>);

impl<S: Send + Sync> FromRequest<S> for PointsJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ApiBytes(body) = ApiBytes::from_request(req, state).await?;
        let parsed = crate::background::run(move || {
            let request = parse::<UpsertPoints>(&body)?;
            Ok(points_of(request)?)
        })
        .await;
        match parsed {
            Ok(points) => points.map(PointsJson),
            Err(e) => Err(ApiError::internal(format!("parsing the body stopped: {e}"))),
        }
    }
}

/// A JSON body of many searches (a batch of query vectors: megabytes of numbers), parsed on
/// tokio's blocking pool, where searches run: at their priority, not at the background
/// pool's, which yields the CPU to them. Rejections as [`ApiJson`]'s.
pub(super) struct SearchJson<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned + Send + 'static> FromRequest<S> for SearchJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ApiBytes(body) = ApiBytes::from_request(req, state).await?;
        match tokio::task::spawn_blocking(move || parse::<T>(&body)).await {
            Ok(value) => value.map(SearchJson),
            Err(e) => Err(ApiError::internal(format!("parsing the body stopped: {e}"))),
        }
    }
}

/// A whole JSON body, parsed as axum's `Json` parses it (its messages name the field).
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    match Json::<T>::from_bytes(body) {
        Ok(Json(value)) => Ok(value),
        Err(e) => Err(rejection(e.status(), e.body_text())),
    }
}

/// A whole (limited) body whose rejections are [`ApiError`]s.
pub(super) struct ApiBytes(pub(super) bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match bytes::Bytes::from_request(req, state).await {
            Ok(b) => Ok(ApiBytes(b)),
            Err(e) => Err(rejection(e.status(), e.body_text())),
        }
    }
}

/// A path parameter whose rejections are [`ApiError`]s (axum's are plain text).
pub(super) struct ApiPath<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(e) => Err(ApiError::bad_request(format!(
                "{}; path segments are percent-encoded UTF-8",
                e.body_text()
            ))),
        }
    }
}

/// A query string whose rejections are [`ApiError`]s.
pub(super) struct ApiQuery<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(e) => Err(ApiError::bad_request(format!(
                "{}; /openapi.json describes each route's query parameters",
                e.body_text()
            ))),
        }
    }
}
