//! The HTTP API's error: an HTTP status, a stable code and a message that says what to do,
//! sent as `{"error": {"code", "message"}}`. An operation's [`ops::Error`] becomes one here
//! (the only place its kinds meet HTTP statuses); the guard's refusals (token, origin, body
//! type, a free slot) are made of the same kinds, so every status comes from one table.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};

use super::types::{BadPoint, ErrorBody, ErrorDetail};
use crate::ops;

/// A failed operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// Stable machine-readable code (see [`ErrorDetail::code`]).
    pub code: &'static str,
    /// What happened and what to do.
    pub message: String,
    /// For `bad_point`: the rejected point.
    pub point: Option<BadPoint>,
}

impl ApiError {
    /// A front end's refusal (the guard's, the router's) under `code`.
    fn refused(code: &'static str, message: impl Into<String>) -> Self {
        ops::Error::Refused {
            code,
            message: message.into(),
        }
        .into()
    }

    /// 400: the request is malformed or breaks a rule.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ops::Error::invalid(message).into()
    }

    /// 401: a token is required and was missing or wrong.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::refused("unauthorized", message)
    }

    /// 403: the request came from a place the API does not answer (a browser page of
    /// another origin, a host name it does not serve).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::refused("forbidden", message)
    }

    /// 404: no such collection, point, block or route.
    pub fn not_found(message: impl Into<String>) -> Self {
        ops::Error::not_found(message).into()
    }

    /// 405: the route exists, the method does not.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::refused("method_not_allowed", message)
    }

    /// 413: the body is over the limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        ops::Error::too_large(message).into()
    }

    /// 414: the URL is over the limit.
    pub fn uri_too_long(message: impl Into<String>) -> Self {
        Self::refused("uri_too_long", message)
    }

    /// 415: the body is not of a type the route takes.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::refused("unsupported_media_type", message)
    }

    /// 429: the caller is over its rate (the guard adds `Retry-After`).
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::refused("rate_limited", message)
    }

    /// 503: too many requests of this kind are running; try again shortly.
    pub fn busy(message: impl Into<String>) -> Self {
        ops::Error::Busy(message.into()).into()
    }

    /// 503: the node is shutting down or not ready.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ops::Error::unavailable(message).into()
    }

    /// 500: something failed inside the node.
    pub fn internal(message: impl Into<String>) -> Self {
        ops::Error::internal(message).into()
    }

    /// The JSON body the daemon sends.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
                point: self.point.clone(),
            },
        }
    }
}

impl From<ops::Error> for ApiError {
    /// The HTTP status of each kind of failure; the code and message stay the operation's.
    fn from(e: ops::Error) -> Self {
        use ops::Error as E;
        let status = match &e {
            E::Invalid(_) | E::BadPoint { .. } => 400,
            E::NotFound(_) => 404,
            E::Conflict(_) | E::ReadOnly(_) => 409,
            E::TooLarge(_) => 413,
            E::Busy(_) | E::Unavailable(_) => 503,
            E::DeadlineExceeded(_) => 504,
            E::InsufficientStorage(_) | E::QuotaExceeded(_) => 507,
            E::Refused { code, .. } => match *code {
                "unauthorized" => 401,
                "forbidden" => 403,
                "method_not_allowed" => 405,
                "uri_too_long" => 414,
                "unsupported_media_type" => 415,
                "rate_limited" => 429,
                _ => 400,
            },
            _ => 500,
        };
        Self {
            status,
            code: e.code(),
            point: e.point().cloned(),
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body())).into_response();
        // Whatever is unavailable now (a collection opening, a peer unreachable) may be there
        // soon: say when to ask again.
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("2"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 503 (a collection still opening, a peer unreachable) says when to ask again; other
    /// refusals do not.
    #[test]
    fn unavailable_answers_say_when_to_retry() {
        let opening = ApiError::unavailable("collection \"a\" is opening").into_response();
        assert_eq!(opening.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(opening.headers()[axum::http::header::RETRY_AFTER], "2");
        let missing = ApiError::not_found("no collection named \"a\"").into_response();
        assert!(missing
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .is_none());
    }
}
