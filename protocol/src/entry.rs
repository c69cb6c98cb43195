//! Entries: the vectors a shard tree holds, keyed by id, stamped for last-writer-wins merges.

use std::{cmp::Ordering, fmt};

use ipld_core::ipld::Ipld;
use serde::{Deserialize, Serialize};

use crate::{dagcbor, hlc::Hlc, limits, ProtocolError};

/// Tag byte of an unsigned-integer id in its key form.
const KEY_TAG_INT: u8 = 0x00;
/// Tag byte of a string id in its key form.
const KEY_TAG_STR: u8 = 0x01;

/// A point id as users give it: an unsigned integer or a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryId {
    /// An unsigned integer id.
    Int(u64),
    /// A UTF-8 string id.
    Str(String),
}

impl EntryId {
    /// The key bytes the tree orders by: `0x00` + 8 big-endian bytes for integers, `0x01` +
    /// UTF-8 for strings. Integers sort numerically and before all strings.
    pub fn to_key(&self) -> Result<EntryKey, ProtocolError> {
        let bytes = match self {
            EntryId::Int(n) => {
                let mut k = Vec::with_capacity(9);
                k.push(KEY_TAG_INT);
                k.extend_from_slice(&n.to_be_bytes());
                k
            }
            EntryId::Str(s) => {
                if s.len() > limits::MAX_ID_BYTES {
                    return Err(ProtocolError::TooLarge {
                        what: "string id (UTF-8)",
                        actual: s.len(),
                        limit: limits::MAX_ID_BYTES,
                    });
                }
                let mut k = Vec::with_capacity(1 + s.len());
                k.push(KEY_TAG_STR);
                k.extend_from_slice(s.as_bytes());
                k
            }
        };
        EntryKey::new(bytes)
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryId::Int(n) => write!(f, "{n}"),
            EntryId::Str(s) => f.write_str(s),
        }
    }
}

/// The key form of an [`EntryId`]: the bytes the shard tree is ordered by (a DAG-CBOR byte
/// string on the wire).
///
/// Keys of up to [`INLINE_KEY_BYTES`] bytes (every integer id, and string ids of up to 21
/// bytes) are held inline: reading a key then costs no second memory access, which a search
/// does for each of its hits.
#[derive(Clone)]
pub struct EntryKey(KeyBytes);

/// The longest key held inline.
const INLINE_KEY_BYTES: usize = 22;

#[derive(Clone)]
enum KeyBytes {
    Inline {
        len: u8,
        bytes: [u8; INLINE_KEY_BYTES],
    },
    Heap(Box<[u8]>),
}

impl KeyBytes {
    fn new(bytes: Vec<u8>) -> Self {
        if bytes.len() > INLINE_KEY_BYTES {
            return KeyBytes::Heap(bytes.into_boxed_slice());
        }
        let mut inline = [0u8; INLINE_KEY_BYTES];
        inline[..bytes.len()].copy_from_slice(&bytes);
        KeyBytes::Inline {
            len: bytes.len() as u8,
            bytes: inline,
        }
    }
}

impl PartialEq for EntryKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for EntryKey {}

impl PartialOrd for EntryKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EntryKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::hash::Hash for EntryKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl Serialize for EntryKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.as_bytes())
    }
}

impl<'de> Deserialize<'de> for EntryKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
        Ok(Self(KeyBytes::new(bytes.into_vec())))
    }
}

impl EntryKey {
    /// Checks the key form: a known tag, valid UTF-8 for strings, and the length limit.
    pub fn new(bytes: Vec<u8>) -> Result<Self, ProtocolError> {
        if bytes.len() > limits::MAX_KEY_BYTES {
            return Err(ProtocolError::TooLarge {
                what: "entry id key",
                actual: bytes.len(),
                limit: limits::MAX_KEY_BYTES,
            });
        }
        match bytes.split_first() {
            Some((&KEY_TAG_INT, rest)) if rest.len() == 8 => {}
            Some((&KEY_TAG_STR, rest)) if !rest.is_empty() => {
                std::str::from_utf8(rest)
                    .map_err(|_| ProtocolError::invalid("entry id", "string id is not UTF-8"))?;
            }
            _ => {
                return Err(ProtocolError::invalid(
                    "entry id",
                    "key must be 0x00 + 8 bytes (integer) or 0x01 + UTF-8 (non-empty string)",
                ))
            }
        }
        Ok(Self(KeyBytes::new(bytes)))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            KeyBytes::Inline { len, bytes } => &bytes[..*len as usize],
            KeyBytes::Heap(bytes) => bytes,
        }
    }

    /// The id this key stands for.
    pub fn id(&self) -> EntryId {
        match self.as_bytes().split_first() {
            Some((&KEY_TAG_INT, rest)) if rest.len() == 8 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(rest);
                EntryId::Int(u64::from_be_bytes(n))
            }
            Some((_, rest)) => EntryId::Str(String::from_utf8_lossy(rest).into_owned()),
            None => EntryId::Str(String::new()),
        }
    }
}

impl fmt::Debug for EntryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryKey({})", self.id())
    }
}

/// One entry of a shard tree leaf: a vector with metadata, or a tombstone.
///
/// Encoded as a DAG-CBOR map `{id, hlc, vec, meta, writer, deleted}` (canonical key order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The id in key form.
    pub id: EntryKey,
    /// The vector, little-endian in the collection's storage quantization; empty for tombstones.
    #[serde(with = "serde_bytes")]
    pub vec: Vec<u8>,
    /// Metadata: a DAG-CBOR map, or null.
    pub meta: Option<Ipld>,
    /// When it was written (hybrid logical clock).
    pub hlc: u64,
    /// Who wrote it: a 32-byte ed25519 public key.
    #[serde(with = "serde_bytes")]
    pub writer: Vec<u8>,
    /// True for a tombstone: the id was deleted at `hlc`.
    pub deleted: bool,
}

impl Entry {
    /// A live entry.
    pub fn put(id: EntryKey, vec: Vec<u8>, meta: Option<Ipld>, hlc: Hlc, writer: [u8; 32]) -> Self {
        Self {
            id,
            vec,
            meta,
            hlc: hlc.0,
            writer: writer.to_vec(),
            deleted: false,
        }
    }

    /// A tombstone for `id`.
    pub fn tombstone(id: EntryKey, hlc: Hlc, writer: [u8; 32]) -> Self {
        Self {
            id,
            vec: Vec::new(),
            meta: None,
            hlc: hlc.0,
            writer: writer.to_vec(),
            deleted: true,
        }
    }

    /// Checks the schema rules and limits, and returns the entry's canonical encoding.
    pub fn encode_checked(&self) -> Result<Vec<u8>, ProtocolError> {
        if self.writer.len() != 32 {
            return Err(ProtocolError::invalid(
                "writer",
                "must be a 32-byte ed25519 public key",
            ));
        }
        if self.vec.len() > limits::MAX_VECTOR_BYTES {
            return Err(ProtocolError::TooLarge {
                what: "vector",
                actual: self.vec.len(),
                limit: limits::MAX_VECTOR_BYTES,
            });
        }
        if self.deleted && (!self.vec.is_empty() || self.meta.is_some()) {
            return Err(ProtocolError::invalid(
                "deleted",
                "a tombstone has no vector and no metadata",
            ));
        }
        if let Some(meta) = &self.meta {
            if !matches!(meta, Ipld::Map(_)) {
                return Err(ProtocolError::invalid(
                    "metadata",
                    "must be a map (JSON object)",
                ));
            }
            check_metadata_numbers(meta)?;
            let size = dagcbor::encode(meta)?.len();
            if size > limits::MAX_METADATA_BYTES {
                return Err(ProtocolError::TooLarge {
                    what: "metadata",
                    actual: size,
                    limit: limits::MAX_METADATA_BYTES,
                });
            }
        }
        let bytes = dagcbor::encode(self)?;
        if bytes.len() > limits::MAX_ENTRY_BYTES {
            return Err(ProtocolError::TooLarge {
                what: "entry",
                actual: bytes.len(),
                limit: limits::MAX_ENTRY_BYTES,
            });
        }
        Ok(bytes)
    }

    /// The last-writer-wins order between two versions of one id: later `hlc` wins, then the
    /// greater writer key, then a tombstone over a put, then the greater encoding. It is a total
    /// order, so merging by "keep the greater" is commutative, associative and idempotent.
    pub fn lww_cmp(&self, other: &Entry) -> Ordering {
        self.hlc
            .cmp(&other.hlc)
            .then_with(|| self.writer.cmp(&other.writer))
            .then_with(|| self.deleted.cmp(&other.deleted))
            .then_with(|| {
                let a = dagcbor::encode(self).unwrap_or_default();
                let b = dagcbor::encode(other).unwrap_or_default();
                a.cmp(&b)
            })
    }
}

/// Largest integer every IPLD implementation (JavaScript's included) holds exactly: 2^53.
const SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Whether a float must be written as an integer: it has no fractional part (negative zero
/// included) and is in the safe integer range. JavaScript cannot tell `1.0` from `1`, so a block holding the float `1.0`
/// would re-encode differently there, and its CID would not be reproducible.
fn float_is_integral(f: f64) -> bool {
    f.fract() == 0.0 && f.abs() <= SAFE_INTEGER
}

fn check_metadata_numbers(value: &Ipld) -> Result<(), ProtocolError> {
    match value {
        Ipld::Float(f) if float_is_integral(*f) => Err(ProtocolError::invalid(
            "metadata",
            format!(
                "the number {f} has no fractional part and must be stored as the integer {}",
                *f as i64
            ),
        )),
        Ipld::List(items) => items.iter().try_for_each(check_metadata_numbers),
        Ipld::Map(map) => map.values().try_for_each(check_metadata_numbers),
        _ => Ok(()),
    }
}

/// Rewrites metadata so it follows the format's number rule: floats with no fractional part
/// (within ±2^53) become integers. Apply it to metadata parsed from JSON, where `1.0` and `1`
/// are the same number anyway.
pub fn normalize_metadata(value: Ipld) -> Ipld {
    match value {
        Ipld::Float(f) if float_is_integral(f) => Ipld::Integer(f as i128),
        Ipld::List(items) => Ipld::List(items.into_iter().map(normalize_metadata).collect()),
        Ipld::Map(map) => Ipld::Map(
            map.into_iter()
                .map(|(k, v)| (k, normalize_metadata(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_keys_sort_numerically_and_before_strings() {
        let k = |id: EntryId| id.to_key().unwrap();
        assert!(k(EntryId::Int(2)) < k(EntryId::Int(10)));
        assert!(k(EntryId::Int(u64::MAX)) < k(EntryId::Str("0".into())));
        assert_eq!(k(EntryId::Int(42)).id(), EntryId::Int(42));
        assert_eq!(
            k(EntryId::Str("doc-7".into())).id(),
            EntryId::Str("doc-7".into())
        );
    }

    #[test]
    fn keys_held_inline_or_not_order_hash_and_encode_as_their_bytes() {
        use std::hash::BuildHasher;
        // Ids on both sides of the inline limit: 21 and 22 bytes of string (22 and 23 of key).
        let ids = [
            EntryId::Int(0),
            EntryId::Int(u64::MAX),
            EntryId::Str("a".into()),
            EntryId::Str("b".repeat(21)),
            EntryId::Str("b".repeat(22)),
            EntryId::Str(format!("{}c", "b".repeat(21))),
            EntryId::Str("é".repeat(64)),
        ];
        let keys: Vec<EntryKey> = ids.iter().map(|id| id.to_key().unwrap()).collect();
        let hasher = std::collections::hash_map::RandomState::new();
        for (id, key) in ids.iter().zip(&keys) {
            assert_eq!(&key.id(), id);
            // On the wire a key is its bytes, as a byte string.
            let wire = dagcbor::encode(key).unwrap();
            let bytes = key.as_bytes().to_vec();
            assert_eq!(
                wire,
                dagcbor::encode(&serde_bytes::ByteBuf::from(bytes.clone())).unwrap()
            );
            assert_eq!(&dagcbor::decode::<EntryKey>(&wire).unwrap(), key);
            assert_eq!(hasher.hash_one(key), hasher.hash_one(&bytes[..]));
            for other in &keys {
                assert_eq!(key.cmp(other), key.as_bytes().cmp(other.as_bytes()));
                assert_eq!(key == other, key.as_bytes() == other.as_bytes());
            }
        }
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(EntryId::Str("x".repeat(200)).to_key().is_err());
        // The documented limit is on the id itself: 128 bytes fit, 129 do not, and the error
        // counts the id's bytes, not its key's.
        let key = EntryId::Str("é".repeat(64)).to_key().unwrap();
        assert_eq!(EntryKey::new(key.as_bytes().to_vec()).unwrap(), key);
        let e = EntryId::Str("x".repeat(129))
            .to_key()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("129") && e.contains("128") && e.contains("string id"),
            "{e}"
        );
        assert!(EntryKey::new(vec![0x00, 1, 2]).is_err());
        assert!(EntryKey::new(vec![0x01, 0xff]).is_err());
        assert!(EntryKey::new(vec![0x07, 1]).is_err());
        assert!(EntryKey::new(vec![]).is_err());
    }

    #[test]
    fn entry_fields_are_encoded_in_canonical_order() {
        let e = Entry::put(
            EntryId::Int(1).to_key().unwrap(),
            vec![0; 4],
            None,
            Hlc(5),
            [9; 32],
        );
        let bytes = e.encode_checked().unwrap();
        assert!(dagcbor::check_canonical(&bytes).is_ok());
        let back: Entry = dagcbor::decode(&bytes).unwrap();
        assert_eq!(back, e);
        // Keys: id(2) hlc(3) vec(3) meta(4) writer(6) deleted(7).
        let text = String::from_utf8_lossy(&bytes);
        let pos = |k: &str| text.find(k).unwrap();
        assert!(pos("id") < pos("hlc") && pos("hlc") < pos("vec") && pos("vec") < pos("meta"));
        assert!(pos("meta") < pos("writer") && pos("writer") < pos("deleted"));
    }

    #[test]
    fn metadata_must_be_a_small_map() {
        let key = EntryId::Int(1).to_key().unwrap();
        let mut e = Entry::put(key, vec![], Some(Ipld::Integer(3)), Hlc(1), [0; 32]);
        assert!(e.encode_checked().is_err());
        let big = Ipld::Map([("x".to_string(), Ipld::Bytes(vec![0; 70_000]))].into());
        e.meta = Some(big);
        assert!(matches!(
            e.encode_checked(),
            Err(ProtocolError::TooLarge {
                what: "metadata",
                ..
            })
        ));
    }

    #[test]
    fn integral_floats_in_metadata_are_refused_and_normalized() {
        let key = EntryId::Int(1).to_key().unwrap();
        let meta = |v: Ipld| Some(Ipld::Map([("x".to_string(), Ipld::List(vec![v]))].into()));
        for bad in [1.0, 0.0, -0.0, -3.0, 1e15] {
            let e = Entry::put(key.clone(), vec![], meta(Ipld::Float(bad)), Hlc(1), [0; 32]);
            assert!(e.encode_checked().is_err(), "{bad} must be refused");
            let fixed = Entry {
                meta: meta(Ipld::Float(bad)).map(normalize_metadata),
                ..e
            };
            assert!(fixed.encode_checked().is_ok());
            assert_eq!(fixed.meta, meta(Ipld::Integer(bad as i128)));
        }
        for fine in [0.5, -1.25, 1e300] {
            let e = Entry::put(
                key.clone(),
                vec![],
                meta(Ipld::Float(fine)),
                Hlc(1),
                [0; 32],
            );
            assert!(
                e.encode_checked().is_ok(),
                "{fine} is a float in every implementation"
            );
        }
    }

    #[test]
    fn lww_prefers_later_then_writer_then_tombstone() {
        let key = EntryId::Int(1).to_key().unwrap();
        let a = Entry::put(key.clone(), vec![1], None, Hlc(10), [1; 32]);
        let b = Entry::put(key.clone(), vec![2], None, Hlc(11), [0; 32]);
        let c = Entry::tombstone(key.clone(), Hlc(10), [1; 32]);
        let d = Entry::put(key, vec![3], None, Hlc(10), [2; 32]);
        assert_eq!(a.lww_cmp(&b), Ordering::Less);
        assert_eq!(c.lww_cmp(&a), Ordering::Greater);
        assert_eq!(d.lww_cmp(&c), Ordering::Greater);
        assert_eq!(a.lww_cmp(&a), Ordering::Equal);
    }
}
