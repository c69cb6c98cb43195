//! The one error type of the API layer: an HTTP status, a stable code and a message that
//! says what to do. The daemon sends it as `{"error": {"code", "message"}}`; the CLI prints
//! its message, whichever path (daemon or direct) produced it.

use ipvec_protocol::ProtocolError;

use super::types::{BadPoint, ErrorBody, ErrorDetail};
use crate::{collection::CollectionError, index::IndexError, store::StoreError};

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
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            point: None,
        }
    }

    /// 400: the request is malformed or breaks a rule.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "bad_request", message)
    }

    /// 401: a token is required and was missing or wrong.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", message)
    }

    /// 403: the request came from a place the API does not answer (a browser page of
    /// another origin, a host name it does not serve).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "forbidden", message)
    }

    /// 404: no such collection, point, block or route.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }

    /// 409: the request clashes with the current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, "conflict", message)
    }

    /// 405: the route exists, the method does not.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "method_not_allowed", message)
    }

    /// 413: the body is over the limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, "payload_too_large", message)
    }

    /// 414: the URL is over the limit.
    pub fn uri_too_long(message: impl Into<String>) -> Self {
        Self::new(414, "uri_too_long", message)
    }

    /// 415: the body is not of a type the route takes.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "unsupported_media_type", message)
    }

    /// 503: too many requests of this kind are running; try again shortly.
    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(503, "busy", message)
    }

    /// 504: the operation ran past its deadline and was stopped.
    pub fn deadline_exceeded(message: impl Into<String>) -> Self {
        Self::new(504, "deadline_exceeded", message)
    }

    /// 503: the node is shutting down or not ready.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "unavailable", message)
    }

    /// 507: the store is at its configured size limit.
    pub fn insufficient_storage(message: impl Into<String>) -> Self {
        Self::new(507, "insufficient_storage", message)
    }

    /// 500: something failed inside the node.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal", message)
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

    /// Rebuilds an error the daemon sent.
    pub fn from_body(status: u16, body: ErrorBody) -> Self {
        let code = match body.error.code.as_str() {
            "bad_request" => "bad_request",
            "bad_point" => "bad_point",
            "unauthorized" => "unauthorized",
            "forbidden" => "forbidden",
            "not_found" => "not_found",
            "method_not_allowed" => "method_not_allowed",
            "uri_too_long" => "uri_too_long",
            "unsupported_media_type" => "unsupported_media_type",
            "busy" => "busy",
            "deadline_exceeded" => "deadline_exceeded",
            "conflict" => "conflict",
            "read_only" => "read_only",
            "payload_too_large" => "payload_too_large",
            "unavailable" => "unavailable",
            "insufficient_storage" => "insufficient_storage",
            _ => "internal",
        };
        Self {
            status,
            code,
            message: body.error.message,
            point: body.error.point,
        }
    }
}

impl From<CollectionError> for ApiError {
    fn from(e: CollectionError) -> Self {
        let message = e.to_string();
        match e {
            CollectionError::NotFound(_) => Self::not_found(message),
            CollectionError::Exists(_) => Self::conflict(message),
            CollectionError::ReadOnly(_) => Self::new(409, "read_only", message),
            CollectionError::Invalid(_) => Self::bad_request(message),
            CollectionError::BadPoint {
                position,
                id,
                reason,
            } => Self {
                point: Some(BadPoint {
                    position,
                    id,
                    reason,
                }),
                ..Self::new(400, "bad_point", message)
            },
            CollectionError::Index(e) => e.into(),
            CollectionError::Store(e) => e.into(),
            CollectionError::Protocol(e) => e.into(),
            _ => Self::internal(message),
        }
    }
}

impl From<IndexError> for ApiError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::Dimension { .. } | IndexError::NotFinite(_) | IndexError::Query(_) => {
                Self::bad_request(e.to_string())
            }
            _ => Self::internal(e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => Self::not_found(e.to_string()),
            StoreError::Protocol(e) => e.into(),
            StoreError::Car { .. } => Self::bad_request(e.to_string()),
            _ => Self::internal(e.to_string()),
        }
    }
}

impl From<ProtocolError> for ApiError {
    fn from(e: ProtocolError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl From<crate::net::NetError> for ApiError {
    fn from(e: crate::net::NetError) -> Self {
        match e {
            crate::net::NetError::Config(_) | crate::net::NetError::Dial { .. } => {
                Self::bad_request(e.to_string())
            }
            crate::net::NetError::Stopped => Self::unavailable(e.to_string()),
            _ => Self::internal(e.to_string()),
        }
    }
}

impl From<crate::repo::RepoError> for ApiError {
    fn from(e: crate::repo::RepoError) -> Self {
        Self::internal(e.to_string())
    }
}
