//! Canonical DAG-CBOR: one byte string per value, checked on the way in.
//!
//! Encoding sorts map keys (length first, then bytes), writes the shortest integers and 64-bit
//! floats, and refuses NaN and infinities. Decoding accepts a block only if re-encoding the
//! decoded value gives back the same bytes, so no two encodings of one value can both be valid.

use ::cid::Cid;
use ipld_core::ipld::Ipld;
use serde::{de::DeserializeOwned, Serialize};

use crate::ProtocolError;

/// Encodes `value` as canonical DAG-CBOR.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ProtocolError> {
    serde_ipld_dagcbor::to_vec(value).map_err(|e| ProtocolError::Encode(e.to_string()))
}

/// Decodes `bytes` into `T` without the canonical check; for bytes already known to be canonical
/// (for example blocks just verified against their CID and written by ipvec itself).
pub fn decode_trusted<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtocolError> {
    serde_ipld_dagcbor::from_slice(bytes).map_err(|e| ProtocolError::Decode(e.to_string()))
}

/// Decodes `bytes` into `T`, rejecting any encoding but the canonical one.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtocolError> {
    check_canonical(bytes)?;
    decode_trusted(bytes)
}

/// Decodes any DAG-CBOR block into the IPLD data model, rejecting non-canonical encodings.
pub fn decode_ipld(bytes: &[u8]) -> Result<Ipld, ProtocolError> {
    let value: Ipld = decode_trusted(bytes)?;
    let again = encode(&value)?;
    if again != bytes {
        return Err(ProtocolError::NotCanonical);
    }
    Ok(value)
}

/// Checks that `bytes` are one complete, canonical DAG-CBOR value.
pub fn check_canonical(bytes: &[u8]) -> Result<(), ProtocolError> {
    decode_ipld(bytes).map(|_| ())
}

/// Every link (CID) inside a decoded value, in document order.
pub fn links(value: &Ipld) -> Vec<Cid> {
    let mut out = Vec::new();
    collect_links(value, &mut out);
    out
}

fn collect_links(value: &Ipld, out: &mut Vec<Cid>) {
    match value {
        Ipld::Link(cid) => out.push(*cid),
        Ipld::List(items) => items.iter().for_each(|v| collect_links(v, out)),
        Ipld::Map(map) => map.values().for_each(|v| collect_links(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn map_keys_are_sorted_length_first() {
        let mut map = BTreeMap::new();
        map.insert("bb".to_string(), Ipld::Integer(1));
        map.insert("a".to_string(), Ipld::Integer(2));
        map.insert("ccc".to_string(), Ipld::Integer(3));
        let bytes = encode(&Ipld::Map(map)).unwrap();
        // a3 (map of 3) 61 'a' 02 62 'bb' 01 63 'ccc' 03
        assert_eq!(hex::encode(&bytes), "a3616102626262016363636303");
        assert!(check_canonical(&bytes).is_ok());
    }

    #[test]
    fn rejects_non_canonical_forms() {
        // {"bb": 1, "a": 2}: keys out of order.
        let unsorted = hex::decode("a262626201616102").unwrap();
        assert!(check_canonical(&unsorted).is_err());
        // 1 encoded as a two-byte integer (18 01) instead of 01.
        let long_int = hex::decode("1801").unwrap();
        assert!(check_canonical(&long_int).is_err());
        // A float NaN (f9 7e00) is not DAG-CBOR.
        assert!(check_canonical(&hex::decode("f97e00").unwrap()).is_err());
        // Trailing bytes after the value.
        assert!(check_canonical(&hex::decode("0101").unwrap()).is_err());
        // Truncated.
        assert!(check_canonical(&hex::decode("a26161").unwrap()).is_err());
    }

    #[test]
    fn refuses_to_encode_nan() {
        assert!(encode(&Ipld::Float(f64::NAN)).is_err());
        assert!(encode(&Ipld::Float(f64::INFINITY)).is_err());
    }
}
