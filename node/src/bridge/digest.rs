//! The content digest of a set of points: what two stores must agree on when a move lost
//! nothing. A collection's version root cannot serve: every entry also records when and by
//! whom it was written, which no other store carries, so a collection brought back in has the
//! same points under a new root. The digest covers exactly what bridges carry — ids, vectors
//! (bit for bit) and metadata (after the format's number rule) — and does not depend on the
//! order points arrive in: it is the sum, modulo 2^256, of one BLAKE3 hash per point, the
//! hash of the point's DAG-CBOR encoding `[id, vector bytes (f32 LE), metadata or null]`.

use std::fmt;

use ipld_core::ipld::Ipld;
use ipvec_protocol::{
    api::{PointId, PointIn},
    dagcbor,
    entry::normalize_metadata,
};

use crate::collection::points::json_to_ipld;

/// An order-independent digest of points, with their count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContentDigest {
    /// Little-endian 64-bit limbs of the running sum.
    sum: [u64; 4],
    count: u64,
}

impl ContentDigest {
    /// The digest of no points.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one point.
    pub fn add(&mut self, point: &PointIn) {
        let hash = point_hash(point);
        let mut carry = 0u128;
        for (i, limb) in self.sum.iter_mut().enumerate() {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&hash[i * 8..i * 8 + 8]);
            let total = u128::from(*limb) + u128::from(u64::from_le_bytes(bytes)) + carry;
            *limb = total as u64;
            carry = total >> 64;
        }
        self.count += 1;
    }

    /// Adds every point of a batch.
    pub fn add_all(&mut self, points: &[PointIn]) {
        for point in points {
            self.add(point);
        }
    }

    /// How many points were added.
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl fmt::Display for ContentDigest {
    /// `blake3-sum:` and 64 hex digits, most significant first.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("blake3-sum:")?;
        for limb in self.sum.iter().rev() {
            write!(f, "{limb:016x}")?;
        }
        Ok(())
    }
}

/// The metadata a store of ours would keep: a map after the number rule, or nothing. An
/// empty map and no metadata are the same to every bridge.
pub fn canonical_metadata(metadata: Option<&serde_json::Value>) -> Option<Ipld> {
    match metadata {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Object(map)) if map.is_empty() => None,
        Some(value) => Some(normalize_metadata(json_to_ipld(value.clone()))),
    }
}

fn point_hash(point: &PointIn) -> [u8; 32] {
    let id = match &point.id {
        PointId::Int(n) => Ipld::Integer(i128::from(*n)),
        PointId::Str(s) => Ipld::String(s.clone()),
    };
    let vector: Vec<u8> = point.vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    let metadata = canonical_metadata(point.metadata.as_ref()).unwrap_or(Ipld::Null);
    let value = Ipld::List(vec![id, Ipld::Bytes(vector), metadata]);
    // DAG-CBOR refuses only non-finite floats, which metadata made from JSON never holds (and
    // the vector is bytes, its components checked finite by `check_vector`); were one to
    // appear, the value's debug form is hashed, which still differs from every encodable point.
    let bytes = dagcbor::encode(&value).unwrap_or_else(|_| format!("{value:?}").into_bytes());
    *blake3::hash(&bytes).as_bytes()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn point(id: u64, v: &[f32], meta: Option<serde_json::Value>) -> PointIn {
        PointIn::vector(PointId::Int(id), v.to_vec(), meta)
    }

    #[test]
    fn order_does_not_matter_and_every_field_does() {
        let a = point(1, &[1.0, 2.0], Some(json!({"tag": "x", "n": 2.0})));
        let b = point(2, &[3.0, 4.0], None);
        let mut ab = ContentDigest::new();
        ab.add_all(&[a.clone(), b.clone()]);
        let mut ba = ContentDigest::new();
        ba.add_all(&[b.clone(), a.clone()]);
        assert_eq!(ab, ba);
        assert_eq!(ab.count(), 2);

        // 2.0 and 2 are one number; an empty map is no metadata.
        let same = point(1, &[1.0, 2.0], Some(json!({"n": 2, "tag": "x"})));
        let empty = point(2, &[3.0, 4.0], Some(json!({})));
        let mut again = ContentDigest::new();
        again.add_all(&[same, empty]);
        assert_eq!(again, ab);

        for changed in [
            point(3, &[1.0, 2.0], a.metadata.clone()),
            PointIn::vector(PointId::Str("1".into()), vec![1.0, 2.0], a.metadata.clone()),
            point(1, &[1.0, 2.000001], a.metadata.clone()),
            point(1, &[1.0, 2.0], Some(json!({"tag": "y", "n": 2}))),
            point(1, &[1.0, 2.0], None),
        ] {
            let mut d = ContentDigest::new();
            d.add_all(&[changed, b.clone()]);
            assert_ne!(d, ab);
        }
        assert!(ab.to_string().starts_with("blake3-sum:"));
        assert_eq!(ab.to_string().len(), "blake3-sum:".len() + 64);
    }
}
