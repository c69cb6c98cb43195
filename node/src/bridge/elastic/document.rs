//! Points as Elasticsearch documents: the `_id` spelling of ipvec ids, and the `_source` of
//! a point, written in one fixed form (so exporting the same points twice gives the same
//! bytes).
//!
//! # Ids
//! `_id` is always a string. An integer id is written in decimal (`42`). A string id is
//! written as it is, unless it would read back as something else: a string that is an
//! integer in canonical decimal (`"42"`), or that begins with a double quote, is written as a
//! JSON string literal (`"\"42\""`). Read back, an `_id` in canonical decimal that fits in 64
//! bits is an integer, one that is a JSON string literal is that string, and any other is
//! itself. So every ipvec id survives the round trip, and the `_id`s of an index made
//! elsewhere (`doc-7`, `007`, a UUID) come in as the strings they are.
//!
//! # Documents
//! `_source` is the metadata object with the vector added under the vector field. Keys are
//! written in byte order, numbers as `serde_json` writes them, and vector components in the
//! shortest form that reads back to the same `f32`.

use std::fmt::Write as _;

use ipvec_protocol::api::{PointId, PointIn};
use serde_json::{Map, Value};

use crate::bridge::{point_label, BridgeError, Result};

/// The `_id` of an ipvec id.
pub fn id_to_elastic(id: &PointId) -> String {
    match id {
        PointId::Int(n) => n.to_string(),
        PointId::Str(s) if is_canonical_integer(s) || s.starts_with('"') => {
            Value::String(s.clone()).to_string()
        }
        PointId::Str(s) => s.clone(),
    }
}

/// The ipvec id of an `_id`.
pub fn id_from_elastic(id: &str) -> PointId {
    if is_canonical_integer(id) {
        if let Ok(n) = id.parse::<u64>() {
            return PointId::Int(n);
        }
    }
    if id.starts_with('"') {
        if let Ok(Value::String(s)) = serde_json::from_str::<Value>(id) {
            return PointId::Str(s);
        }
    }
    PointId::Str(id.to_string())
}

/// Digits only, without a leading zero (unless it is `0`), at most 20 of them: the way
/// an unsigned integer is written.
fn is_canonical_integer(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 20
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
        && s.parse::<u64>().is_ok()
}

/// The `_source` of a point, as one line of JSON.
pub fn source_text(point: &PointIn, vector_field: &str, whence: &str) -> Result<String> {
    let empty = Map::new();
    let metadata = match &point.metadata {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(BridgeError::invalid(format!(
                "{whence}: point {}'s metadata {other} is not a JSON object, which a \
                 document's fields must be",
                point_label(point)
            )))
        }
    };
    if metadata.contains_key(vector_field) {
        return Err(BridgeError::invalid(format!(
            "{whence}: point {} has a metadata field {vector_field:?}, the name the vector is \
             stored under: choose another vector field name",
            point_label(point)
        )));
    }
    let mut keys: Vec<&str> = metadata.keys().map(String::as_str).collect();
    keys.push(vector_field);
    keys.sort_unstable();
    let mut text = String::from("{");
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&Value::String(key.to_string()).to_string());
        text.push(':');
        match metadata.get(key) {
            Some(value) => text.push_str(&sorted(value).to_string()),
            None => write_vector(&mut text, &point.vector),
        }
    }
    text.push('}');
    Ok(text)
}

/// `value` with the keys of every object in byte order.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// `[c0,c1,…]` with each component in its shortest exact form.
fn write_vector(text: &mut String, vector: &[f32]) {
    text.push('[');
    for (i, x) in vector.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        // `Debug` writes the shortest digits that read back to the same f32, in plain or
        // exponent form (`0.1`, `1e-7`, `-0.0`), all of them JSON numbers.
        let _ = write!(text, "{x:?}");
    }
    text.push(']');
}

/// The point a document holds: its vector from `vector_field`, every other field metadata.
pub fn point_from_source(
    id: &str,
    source: &Value,
    vector_field: &str,
    whence: &str,
) -> Result<PointIn> {
    let Value::Object(fields) = source else {
        return Err(BridgeError::remote(format!(
            "{whence}: document {id:?} has _source {}, not a JSON object",
            crate::bridge::retry::truncate(&source.to_string(), 100)
        )));
    };
    let mut metadata = fields.clone();
    let vector = metadata.remove(vector_field).ok_or_else(|| {
        BridgeError::invalid(format!(
            "{whence}: document {id:?} has no field {vector_field:?} (its fields are {:?}); \
             name the vector field, or leave out documents without vectors",
            fields.keys().collect::<Vec<_>>()
        ))
    })?;
    let vector: Vec<f32> = serde_json::from_value(vector).map_err(|e| {
        BridgeError::invalid(format!(
            "{whence}: document {id:?}'s field {vector_field:?} is not a list of numbers ({e})"
        ))
    })?;
    let metadata = if metadata.is_empty() {
        None
    } else {
        Some(Value::Object(metadata))
    };
    Ok(PointIn::vector(id_from_elastic(id), vector, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_survives_the_round_trip_and_foreign_ids_read_as_themselves() {
        for id in [
            PointId::Int(0),
            PointId::Int(42),
            PointId::Int(u64::MAX),
            PointId::Str("42".into()),
            PointId::Str("0".into()),
            PointId::Str("007".into()),
            PointId::Str("\"quoted\"".into()),
            PointId::Str("\"".into()),
            PointId::Str("doc-7".into()),
            PointId::Str("18446744073709551616".into()),
            PointId::Str(String::new()),
        ] {
            assert_eq!(id_from_elastic(&id_to_elastic(&id)), id, "{id:?}");
        }
        assert_eq!(id_to_elastic(&PointId::Str("42".into())), "\"42\"");
        assert_eq!(id_to_elastic(&PointId::Str("doc-7".into())), "doc-7");
        assert_eq!(id_from_elastic("007"), PointId::Str("007".into()));
    }

    #[test]
    fn a_document_is_written_in_one_form_and_read_back_exactly() {
        let point = PointIn::vector(
            PointId::Int(3),
            vec![0.1, -0.0, 1e-7, 3.0, f32::MAX],
            Some(serde_json::json!({"z": {"b": 1, "a": [2.5, "x"]}, "a": true})),
        );
        let text = source_text(&point, "vector", "f").unwrap();
        assert_eq!(
            text,
            r#"{"a":true,"vector":[0.1,-0.0,1e-7,3.0,3.4028235e38],"z":{"a":[2.5,"x"],"b":1}}"#
        );
        let back =
            point_from_source("3", &serde_json::from_str(&text).unwrap(), "vector", "f").unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back.vector), bits(&point.vector));
        assert_eq!(back.metadata, point.metadata);
        let clash = PointIn::vector(
            PointId::Int(1),
            vec![1.0],
            Some(serde_json::json!({"vector": 1})),
        );
        assert!(source_text(&clash, "vector", "f")
            .unwrap_err()
            .to_string()
            .contains("\"vector\""));
    }
}
