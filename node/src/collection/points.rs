//! Points as users give them, checked as a whole batch before anything is written.

use std::collections::HashMap;

use ipvec_protocol::{
    entry::{normalize_metadata, EntryId, EntryKey},
    Ipld,
};

use super::CollectionError;
use crate::index::{check_vector, IndexError};

/// A point to write: an id, a vector and optional metadata (a map).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The id: an unsigned integer or a string.
    pub id: EntryId,
    /// The vector.
    pub vector: Vec<f32>,
    /// Metadata: a map (a JSON object), or none.
    pub metadata: Option<Ipld>,
}

/// A checked point.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub key: EntryKey,
    pub vector: Vec<f32>,
    pub metadata: Option<Ipld>,
}

/// Checks every point of a batch: id, dimension, finite components, metadata shape, and no id
/// twice. The first problem is reported with the point's position in the batch.
pub(crate) fn prepare(
    points: Vec<Point>,
    dimension: usize,
) -> Result<Vec<Prepared>, CollectionError> {
    let mut seen: HashMap<EntryKey, usize> = HashMap::new();
    let mut out = Vec::with_capacity(points.len());
    for (position, point) in points.into_iter().enumerate() {
        let bad = |reason: String| CollectionError::BadPoint {
            position,
            id: point.id.to_string(),
            reason,
        };
        let key = point.id.to_key().map_err(|e| bad(e.to_string()))?;
        if let Some(first) = seen.insert(key.clone(), position) {
            return Err(bad(format!(
                "the id appears twice in this batch (first at point {first})"
            )));
        }
        check_vector(&point.vector, dimension).map_err(|e| match e {
            IndexError::NotFinite(i) => bad(format!("vector component {i} is NaN or infinite")),
            other => bad(other.to_string()),
        })?;
        let metadata = match point.metadata {
            None | Some(Ipld::Null) => None,
            Some(map @ Ipld::Map(_)) => Some(normalize_metadata(map)),
            Some(_) => return Err(bad("metadata must be a JSON object".into())),
        };
        out.push(Prepared {
            key,
            vector: point.vector,
            metadata,
        });
    }
    Ok(out)
}
