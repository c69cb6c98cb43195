//! The node's HTTP/JSON API, as JSON: what a node's API takes and answers. The node (its
//! daemon, its CLI on either path) and the terminal dashboard read and write these same types.
//! Answers are read tolerantly: fields a node may not send (older or newer daemons) have
//! defaults, so a client keeps working across versions. Requests are strict: an unknown field
//! is refused, never ignored.
//!
//! With the `openapi` feature, every type also derives `utoipa::ToSchema` for the node's
//! OpenAPI document.
//!
//! # Layout
//! - this module: [`PointId`] and the error body every failed request carries.
//! - [`collections`]: creating, describing, listing, dropping, importing and fetching collections.
//! - [`points`]: writing, deleting, reading and searching points.
//! - [`batch`]: searching many vectors in one request.
//! - [`vectors`]: vectors in compact form (`vector_b64`: base64 of little-endian f32).
//! - [`blocks`]: blocks, DAGs, pins, gc and CAR files.
//! - [`node`]: the node itself: facts, jobs, log events, its peers and the DHT.

pub mod batch;
pub mod blocks;
pub mod collections;
pub mod node;
pub mod points;
pub mod vectors;

pub use batch::*;
pub use blocks::*;
pub use collections::*;
pub use node::*;
pub use points::*;
pub use vectors::VectorError;

use serde::{Deserialize, Serialize};

use crate::entry::EntryId;

/// A point id: an unsigned integer or a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum PointId {
    /// An unsigned integer id.
    Int(u64),
    /// A string id (1 to 128 bytes of UTF-8).
    Str(String),
}

/// Reads an id, with an error that says what an id is (serde's own for untagged enums names
/// the Rust type).
impl<'de> Deserialize<'de> for PointId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Id;
        const WHAT: &str =
            "an id: an unsigned integer (0 to 18446744073709551615) or a string of 1 to 128 bytes";
        impl serde::de::Visitor<'_> for Id {
            type Value = PointId;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(WHAT)
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<PointId, E> {
                Ok(PointId::Int(n))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<PointId, E> {
                u64::try_from(n)
                    .map(PointId::Int)
                    .map_err(|_| E::custom(format!("id {n} is negative; expected {WHAT}")))
            }

            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<PointId, E> {
                Err(E::custom(format!(
                    "id {n} is not a whole number in range; expected {WHAT}"
                )))
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<PointId, E> {
                Ok(PointId::Str(s.to_string()))
            }

            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<PointId, E> {
                Ok(PointId::Str(s))
            }
        }
        deserializer.deserialize_any(Id)
    }
}

impl From<&EntryId> for PointId {
    fn from(id: &EntryId) -> Self {
        match id {
            EntryId::Int(n) => PointId::Int(*n),
            EntryId::Str(s) => PointId::Str(s.clone()),
        }
    }
}

impl From<PointId> for EntryId {
    fn from(id: PointId) -> Self {
        match id {
            PointId::Int(n) => EntryId::Int(n),
            PointId::Str(s) => EntryId::Str(s),
        }
    }
}

impl From<u64> for PointId {
    fn from(n: u64) -> Self {
        PointId::Int(n)
    }
}

impl From<&str> for PointId {
    fn from(s: &str) -> Self {
        PointId::Str(s.to_string())
    }
}

impl std::fmt::Display for PointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PointId::Int(n) => write!(f, "{n}"),
            PointId::Str(s) => f.write_str(s),
        }
    }
}

impl PointId {
    /// The id of a text given without one: `t` and the first 16 hex digits of the BLAKE3
    /// hash of the text, so that adding the same text again replaces its point.
    pub fn of_text(text: &str) -> Self {
        let hash = blake3::hash(text.as_bytes()).to_hex();
        Self::Str(format!("t{}", &hash[..16]))
    }

    /// The id as URL paths and the CLI spell it (read back by
    /// the node's `parse_point_id`): a string id that would read as an
    /// integer, or that starts with `"`, is written as a JSON string literal (`"42"`).
    pub fn spelled(&self) -> String {
        match self {
            PointId::Int(n) => n.to_string(),
            PointId::Str(s) => {
                let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                if digits || s.starts_with('"') {
                    serde_json::Value::String(s.clone()).to_string()
                } else {
                    s.clone()
                }
            }
        }
    }
}

/// The error object every failed request returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// A stable code: bad_request, bad_point, not_found, conflict, read_only, payload_too_large,
    /// unauthorized, unavailable, insufficient_storage, internal.
    pub code: String,
    /// What happened and what to do.
    pub message: String,
    /// For bad_point: which point of the batch was refused, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<BadPoint>,
}

/// The point that made a batch fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BadPoint {
    /// Its position in the batch, from 0.
    pub position: usize,
    /// Its id.
    pub id: String,
    /// What is wrong with it.
    pub reason: String,
}
