//! Points as users give them, checked as a whole batch before anything is written.

use std::collections::HashMap;

use ipvec_protocol::{
    entry::{normalize_metadata, EntryId, EntryKey},
    manifest::{Metric, Quantization},
    Ipld,
};

use super::CollectionError;
use crate::index::{check_scorable, check_vector, IndexError};

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
/// Metadata arrives as JSON and is printed as JSON; these convert it.
/// Converts JSON to IPLD (integers stay integers; objects become maps).
pub fn json_to_ipld(value: serde_json::Value) -> Ipld {
    use serde_json::Value;
    match value {
        Value::Null => Ipld::Null,
        Value::Bool(b) => Ipld::Bool(b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Ipld::Integer(i128::from(i)),
            (_, Some(u)) => Ipld::Integer(i128::from(u)),
            _ => Ipld::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Ipld::String(s),
        Value::Array(items) => Ipld::List(items.into_iter().map(json_to_ipld).collect()),
        Value::Object(map) => {
            Ipld::Map(map.into_iter().map(|(k, v)| (k, json_to_ipld(v))).collect())
        }
    }
}

/// Converts IPLD metadata to JSON for printing.
pub fn ipld_to_json(value: &Ipld) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Ipld::Null => Value::Null,
        Ipld::Bool(b) => Value::Bool(*b),
        Ipld::Integer(i) => i64::try_from(*i)
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(i.to_string())),
        Ipld::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Ipld::String(s) => Value::String(s.clone()),
        Ipld::Bytes(b) => serde_json::json!({ "/": { "bytes": hex::encode(b) } }),
        Ipld::List(items) => Value::Array(items.iter().map(ipld_to_json).collect()),
        Ipld::Map(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), ipld_to_json(v)))
                .collect(),
        ),
        Ipld::Link(cid) => serde_json::json!({ "/": cid.to_string() }),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub key: EntryKey,
    pub vector: Vec<f32>,
    pub metadata: Option<Ipld>,
}

/// Checks every point of a batch: id, dimension, finite components and scores (see
/// [`check_scorable`]), metadata shape, and no id twice. The first problem is reported with
/// the point's position in the batch.
pub(crate) fn prepare(
    points: Vec<Point>,
    dimension: usize,
    metric: Metric,
    quantization: Quantization,
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
        check_scorable(metric, quantization, &point.vector)
            .map_err(|problem| bad(format!("the vector {problem}")))?;
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
