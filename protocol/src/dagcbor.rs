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

/// Appends the canonical DAG-CBOR of `value` to `out`.
pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    serde_ipld_dagcbor::to_writer(out, value).map_err(|e| ProtocolError::Encode(e.to_string()))
}

/// CBOR major types, for [`write_head`].
pub mod major {
    /// An unsigned integer.
    pub const UNSIGNED: u8 = 0;
    /// An array of items.
    pub const ARRAY: u8 = 4;
    /// A map of pairs.
    pub const MAP: u8 = 5;
}

/// Appends the shortest CBOR head of major type `major` with argument `n`: an unsigned
/// integer's value, or the length of an array or map whose items the caller then writes one
/// by one.
pub fn write_head(major: u8, n: u64, out: &mut Vec<u8>) {
    let major = major << 5;
    match n {
        0..=23 => out.push(major | n as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, n as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// The length of the head [`write_head`] writes for `n`.
pub fn head_len(n: u64) -> usize {
    match n {
        0..=23 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
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

/// Every link (CID) inside a decoded value, in the order they appear in its canonical encoding.
pub fn links(value: &Ipld) -> Vec<Cid> {
    let mut out = Vec::new();
    collect_links(value, &mut out);
    out
}

fn collect_links(value: &Ipld, out: &mut Vec<Cid>) {
    match value {
        Ipld::Link(cid) => out.push(*cid),
        Ipld::List(items) => items.iter().for_each(|v| collect_links(v, out)),
        Ipld::Map(map) => {
            // Canonical order: keys by length, then bytes; the order the links have in the block.
            let mut entries: Vec<(&String, &Ipld)> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            entries.into_iter().for_each(|(_, v)| collect_links(v, out));
        }
        _ => {}
    }
}

/// Deepest nesting [`scan_links`] follows before refusing the block.
const MAX_SCAN_DEPTH: usize = 128;

/// Every link (CID) in a DAG-CBOR block, in document order, found by walking the encoding
/// without building the value: no allocation but the result. Use it where only the links
/// matter (DAG walks, exports, garbage collection); it checks the structure it walks but not
/// canonical form.
pub fn scan_links(bytes: &[u8]) -> Result<Vec<Cid>, ProtocolError> {
    let mut links = Vec::new();
    let end = scan_item(bytes, 0, 0, &mut links)?;
    if end != bytes.len() {
        return Err(ProtocolError::Decode(format!(
            "{} bytes after the value",
            bytes.len() - end
        )));
    }
    Ok(links)
}

fn truncated() -> ProtocolError {
    ProtocolError::Decode("block ends inside a value".into())
}

/// Reads the head of the item at `pos`: (major type, argument, position after the head).
fn read_head(bytes: &[u8], pos: usize) -> Result<(u8, u64, usize), ProtocolError> {
    let first = *bytes.get(pos).ok_or_else(truncated)?;
    let (major, info) = (first >> 5, first & 0x1f);
    let width = match info {
        0..=23 => return Ok((major, u64::from(info), pos + 1)),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => {
            return Err(ProtocolError::Decode(
                "indefinite lengths and reserved values are not DAG-CBOR".into(),
            ))
        }
    };
    let arg = bytes.get(pos + 1..pos + 1 + width).ok_or_else(truncated)?;
    let value = arg.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    Ok((major, value, pos + 1 + width))
}

/// Skips the item at `pos`, collecting links; returns the position after it.
fn scan_item(
    bytes: &[u8],
    pos: usize,
    depth: usize,
    links: &mut Vec<Cid>,
) -> Result<usize, ProtocolError> {
    if depth > MAX_SCAN_DEPTH {
        return Err(ProtocolError::Decode("nesting too deep".into()));
    }
    let (major, arg, mut at) = read_head(bytes, pos)?;
    let len = |n: u64| usize::try_from(n).map_err(|_| truncated());
    match major {
        0 | 1 | 7 => Ok(at), // integers; simple values and floats (their bytes are the argument)
        2 | 3 => {
            let end = at
                .checked_add(len(arg)?)
                .filter(|e| *e <= bytes.len())
                .ok_or_else(truncated)?;
            Ok(end)
        }
        4 | 5 => {
            let items = if major == 5 {
                arg.checked_mul(2).ok_or_else(truncated)?
            } else {
                arg
            };
            for _ in 0..items {
                at = scan_item(bytes, at, depth + 1, links)?;
            }
            Ok(at)
        }
        6 if arg == 42 => {
            let (inner, n, start) = read_head(bytes, at)?;
            let end = start
                .checked_add(len(n)?)
                .filter(|e| *e <= bytes.len())
                .ok_or_else(truncated)?;
            match (inner, bytes.get(start..end)) {
                (2, Some([0x00, cid @ ..])) => {
                    links.push(
                        Cid::try_from(cid)
                            .map_err(|e| ProtocolError::Decode(format!("bad link: {e}")))?,
                    );
                    Ok(end)
                }
                _ => Err(ProtocolError::Decode(
                    "tag 42 must wrap a byte string starting with 0x00".into(),
                )),
            }
        }
        _ => Err(ProtocolError::Decode(format!(
            "tag {arg} is not allowed in DAG-CBOR"
        ))),
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

    fn arb_ipld() -> impl proptest::strategy::Strategy<Value = Ipld> {
        use proptest::prelude::*;
        let cid = any::<[u8; 8]>().prop_map(|b| crate::cid::block_cid(crate::cid::RAW, &b));
        let leaf = prop_oneof![
            Just(Ipld::Null),
            any::<bool>().prop_map(Ipld::Bool),
            any::<i64>().prop_map(|i| Ipld::Integer(i.into())),
            (-1e6f64..1e6).prop_map(Ipld::Float),
            ".{0,30}".prop_map(Ipld::String),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Ipld::Bytes),
            cid.prop_map(Ipld::Link),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Ipld::List),
                proptest::collection::btree_map(".{0,8}", inner, 0..8).prop_map(Ipld::Map),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn scanning_finds_the_links_decoding_finds(value in arb_ipld()) {
            let bytes = encode(&value).unwrap();
            proptest::prop_assert_eq!(scan_links(&bytes).unwrap(), links(&value));
            // Every truncation is refused, never a panic.
            for cut in 0..bytes.len() {
                proptest::prop_assert!(scan_links(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn scanning_refuses_what_is_not_dag_cbor() {
        assert!(
            scan_links(&hex::decode("9f01ff").unwrap()).is_err(),
            "indefinite list"
        );
        assert!(
            scan_links(&hex::decode("c11a00000001").unwrap()).is_err(),
            "tag 1"
        );
        assert!(
            scan_links(&hex::decode("d82a4101").unwrap()).is_err(),
            "tag 42 without the 0x00 prefix"
        );
        assert!(
            scan_links(&hex::decode("0101").unwrap()).is_err(),
            "trailing bytes"
        );
        let deep = [vec![0x81u8; 200], vec![0x01]].concat();
        assert!(scan_links(&deep).is_err(), "nesting limit");
    }

    #[test]
    fn heads_written_by_hand_match_the_encoder() {
        for n in [0u64, 1, 23, 24, 255, 256, 65_535, 65_536, 1 << 32, u64::MAX] {
            // A list of n nulls would be too long to build for the largest n: compare the
            // head of a list with the head of an integer, which differ only in major type.
            let mut head = Vec::new();
            write_head(major::ARRAY, n, &mut head);
            let int = encode(&n).unwrap();
            assert_eq!(head.len(), int.len(), "{n}");
            assert_eq!(head.len(), head_len(n), "{n}");
            assert_eq!(head[0] >> 5, major::ARRAY);
            assert_eq!(
                (head[0] & 0x1f, &head[1..]),
                (int[0] & 0x1f, &int[1..]),
                "{n}"
            );
        }
        let list: Vec<u8> = (0..300u16).map(|i| i as u8).collect::<Vec<_>>();
        let mut by_hand = Vec::new();
        write_head(major::ARRAY, list.len() as u64, &mut by_hand);
        for item in &list {
            encode_into(item, &mut by_hand).unwrap();
        }
        assert_eq!(by_hand, encode(&list).unwrap());
    }

    #[test]
    fn refuses_to_encode_nan() {
        assert!(encode(&Ipld::Float(f64::NAN)).is_err());
        assert!(encode(&Ipld::Float(f64::INFINITY)).is_err());
    }
}
