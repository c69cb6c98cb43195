//! What an operation fails with, by meaning: [`Error`]. Each variant's message says what
//! happened and what to do; [`Error::code`] is the stable code front ends show (the HTTP API
//! sends it in its error body and maps each variant to a status, in
//! [`api::error`](crate::api::error)). The HTTP client turns the daemon's answers back into
//! this type, so a caller sees the same errors in process and over HTTP.

use ipvec_protocol::{
    api::{BadPoint, VectorError},
    ProtocolError,
};

use crate::{
    collection::CollectionError, index::IndexError, net::NetError, repo::RepoError,
    store::StoreError,
};

/// A failed operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed or breaks a rule (`bad_request`).
    #[error("{0}")]
    Invalid(String),
    /// One point of a batch was refused, and nothing of the batch was stored (`bad_point`).
    #[error("{message}")]
    BadPoint {
        /// What happened and what to do.
        message: String,
        /// Which point, and why.
        point: BadPoint,
    },
    /// No such collection, point, block or pin (`not_found`).
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with the current state, e.g. a name taken or being dropped
    /// (`conflict`).
    #[error("{0}")]
    Conflict(String),
    /// The collection is a replica: this node does not hold its owner key (`read_only`).
    #[error("{0}")]
    ReadOnly(String),
    /// The request is over a size limit (`payload_too_large`).
    #[error("{0}")]
    TooLarge(String),
    /// Too many requests of this kind run; try again shortly (`busy`).
    #[error("{0}")]
    Busy(String),
    /// The node cannot do it now: shutting down, not ready, no peer-to-peer layer, peers
    /// unreachable (`unavailable`).
    #[error("{0}")]
    Unavailable(String),
    /// The operation ran past its deadline and was stopped (`deadline_exceeded`).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The store is at its configured size limit (`insufficient_storage`).
    #[error("{0}")]
    InsufficientStorage(String),
    /// A write would pass a quota (a collection's or a token's); nothing of it was stored
    /// (`quota_exceeded`).
    #[error("{0}")]
    QuotaExceeded(String),
    /// Something failed inside the node (`internal`).
    #[error("{0}")]
    Internal(String),
    /// A front end refused the request before any operation ran (a missing token, a page of
    /// another origin, a route or method it does not have): its stable code and message.
    #[error("{message}")]
    Refused {
        /// The front end's code (`unauthorized`, `forbidden`, …).
        code: &'static str,
        /// What happened and what to do.
        message: String,
    },
}

/// An operation's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::embed::EmbedError> for Error {
    fn from(e: crate::embed::EmbedError) -> Self {
        use crate::embed::EmbedError as E;
        match e {
            // The node's model or its server is not there or not set up: nothing the request
            // can change, and it may work later.
            E::ModelDirUnset
            | E::ModelFileMissing { .. }
            | E::ModelLoad { .. }
            | E::Config { .. }
            | E::Status { .. }
            | E::Unreachable { .. }
            | E::BadResponse { .. } => Self::Unavailable(e.to_string()),
            _ => Self::Internal(e.to_string()),
        }
    }
}

impl Error {
    /// [`Error::Invalid`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    /// [`Error::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    /// [`Error::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }

    /// [`Error::TooLarge`].
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::TooLarge(message.into())
    }

    /// [`Error::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(message.into())
    }

    /// [`Error::DeadlineExceeded`].
    pub fn deadline_exceeded(message: impl Into<String>) -> Self {
        Self::DeadlineExceeded(message.into())
    }

    /// [`Error::InsufficientStorage`].
    pub fn insufficient_storage(message: impl Into<String>) -> Self {
        Self::InsufficientStorage(message.into())
    }

    /// A refusal for who is asking (`forbidden`, HTTP 403).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::refused("forbidden", message.into())
    }

    /// [`Error::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    /// The stable machine-readable code (`not_found`, `bad_point`, …).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "bad_request",
            Self::BadPoint { .. } => "bad_point",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::ReadOnly(_) => "read_only",
            Self::TooLarge(_) => "payload_too_large",
            Self::Busy(_) => "busy",
            Self::Unavailable(_) => "unavailable",
            Self::DeadlineExceeded(_) => "deadline_exceeded",
            Self::InsufficientStorage(_) => "insufficient_storage",
            Self::QuotaExceeded(_) => "quota_exceeded",
            Self::Internal(_) => "internal",
            Self::Refused { code, .. } => code,
        }
    }

    /// The error rebuilt from its code and message (a front end's answer); an unknown code
    /// is [`Error::Internal`].
    pub fn from_code(code: &str, message: String, point: Option<BadPoint>) -> Self {
        match (code, point) {
            ("bad_point", Some(point)) => Self::BadPoint { message, point },
            ("bad_request" | "bad_point", _) => Self::Invalid(message),
            ("not_found", _) => Self::NotFound(message),
            ("conflict", _) => Self::Conflict(message),
            ("read_only", _) => Self::ReadOnly(message),
            ("payload_too_large", _) => Self::TooLarge(message),
            ("busy", _) => Self::Busy(message),
            ("unavailable", _) => Self::Unavailable(message),
            ("deadline_exceeded", _) => Self::DeadlineExceeded(message),
            ("insufficient_storage", _) => Self::InsufficientStorage(message),
            ("quota_exceeded", _) => Self::QuotaExceeded(message),
            ("rate_limited", _) => Self::refused("rate_limited", message),
            ("unauthorized", _) => Self::refused("unauthorized", message),
            ("forbidden", _) => Self::refused("forbidden", message),
            ("method_not_allowed", _) => Self::refused("method_not_allowed", message),
            ("uri_too_long", _) => Self::refused("uri_too_long", message),
            ("unsupported_media_type", _) => Self::refused("unsupported_media_type", message),
            _ => Self::Internal(message),
        }
    }

    fn refused(code: &'static str, message: String) -> Self {
        Self::Refused { code, message }
    }

    /// For [`Error::BadPoint`]: the refused point.
    pub fn point(&self) -> Option<&BadPoint> {
        match self {
            Self::BadPoint { point, .. } => Some(point),
            _ => None,
        }
    }
}

impl From<CollectionError> for Error {
    fn from(e: CollectionError) -> Self {
        let message = e.to_string();
        match e {
            CollectionError::NotFound(_) | CollectionError::ShardNotHeld { .. } => {
                Self::NotFound(message)
            }
            CollectionError::Exists(_) => Self::Conflict(message),
            CollectionError::ReadOnly(_) => Self::ReadOnly(message),
            CollectionError::Invalid(_) => Self::Invalid(message),
            CollectionError::BadPoint {
                position,
                id,
                reason,
            } => Self::BadPoint {
                message,
                point: BadPoint {
                    position,
                    id,
                    reason,
                },
            },
            CollectionError::Index(e) => e.into(),
            CollectionError::Store(e) => e.into(),
            CollectionError::Protocol(e) => e.into(),
            _ => Self::Internal(message),
        }
    }
}

impl From<IndexError> for Error {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::Dimension { .. } | IndexError::NotFinite(_) | IndexError::Query(_) => {
                Self::Invalid(e.to_string())
            }
            _ => Self::Internal(e.to_string()),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => Self::NotFound(e.to_string()),
            StoreError::Protocol(e) => e.into(),
            StoreError::Car { .. } => Self::Invalid(e.to_string()),
            _ => Self::Internal(e.to_string()),
        }
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Self::Invalid(e.to_string())
    }
}

impl From<VectorError> for Error {
    fn from(e: VectorError) -> Self {
        Self::Invalid(e.to_string())
    }
}

impl From<NetError> for Error {
    fn from(e: NetError) -> Self {
        match e {
            NetError::Config(_) | NetError::Dial { .. } => Self::Invalid(e.to_string()),
            NetError::Stopped | NetError::Ask { .. } => Self::Unavailable(e.to_string()),
            _ => Self::Internal(e.to_string()),
        }
    }
}

impl From<RepoError> for Error {
    fn from(e: RepoError) -> Self {
        Self::Internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_as_its_variant() {
        let point = BadPoint {
            position: 2,
            id: "7".into(),
            reason: "dimension".into(),
        };
        let errors = [
            Error::invalid("m"),
            Error::BadPoint {
                message: "m".into(),
                point: point.clone(),
            },
            Error::not_found("m"),
            Error::conflict("m"),
            Error::ReadOnly("m".into()),
            Error::too_large("m"),
            Error::Busy("m".into()),
            Error::unavailable("m"),
            Error::deadline_exceeded("m"),
            Error::insufficient_storage("m"),
            Error::QuotaExceeded("m".into()),
            Error::refused("rate_limited", "m".into()),
            Error::internal("m"),
            Error::refused("unauthorized", "m".into()),
        ];
        for e in errors {
            let back = Error::from_code(e.code(), e.to_string(), e.point().cloned());
            assert_eq!(back, e);
        }
        assert_eq!(
            Error::from_code("something_new", "m".into(), None),
            Error::internal("m")
        );
    }
}
