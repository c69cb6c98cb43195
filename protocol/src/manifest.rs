//! Collection manifests and shard roots.
//!
//! A collection version is one manifest block. It names the collection's settings, the writers
//! allowed to change it, one [`ShardRoot`] per shard and the previous version.

use ::cid::Cid;
use serde::{Deserialize, Serialize};

use crate::{entry::EntryKey, limits, ProtocolError};

/// How vectors are compared. Scores are always "higher is better".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine similarity, in [-1, 1].
    Cosine,
    /// Negated squared Euclidean distance.
    L2,
    /// Inner product.
    Dot,
}

/// How vector components are stored in leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// 32-bit IEEE floats, little-endian.
    F32,
    /// 16-bit IEEE floats, little-endian.
    F16,
    /// Signed bytes.
    I8,
}

impl Metric {
    /// The name as written in manifests and on the command line: `cosine`, `l2`, `dot`.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
            Metric::Dot => "dot",
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Quantization {
    /// The name as written in manifests and on the command line: `f32`, `f16`, `i8`.
    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::F32 => "f32",
            Quantization::F16 => "f16",
            Quantization::I8 => "i8",
        }
    }

    /// Bytes one component takes.
    pub fn bytes_per_component(self) -> usize {
        match self {
            Quantization::F32 => 4,
            Quantization::F16 => 2,
            Quantization::I8 => 1,
        }
    }
}

impl std::fmt::Display for Quantization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// HNSW build and search parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    /// Links per node.
    pub m: u32,
    /// Candidate list size while building.
    pub ef_construction: u32,
    /// Default candidate list size while searching.
    pub ef_search: u32,
    /// Whether the graph holds one-byte codes of the vectors, and searches score the
    /// candidates their walk found again on the f32 vectors (for f32 vectors under the l2 or
    /// cosine metric; others ignore it). Absent when false, so manifests without it keep
    /// their bytes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub codes: bool,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 128,
            ef_search: 64,
            codes: false,
        }
    }
}

/// The model that turns a text collection's texts into vectors, recorded so that every
/// writer, query and replica uses the same one. Its vectors have the manifest's dimension.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EmbeddingModel {
    /// Who runs the model: `local` (on the node's CPU), `openai` or `ollama` (over HTTP).
    pub provider: String,
    /// The model's name, e.g. `sentence-transformers/all-MiniLM-L6-v2`.
    pub model: String,
    /// Whether every vector the model gives has length 1.
    pub normalized: bool,
}

impl EmbeddingModel {
    /// The longest provider or model name a manifest may carry.
    pub const MAX_NAME: usize = 256;

    /// `provider/model`, as error messages and caches name it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.provider, self.model)
    }
}

/// One collection version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of this schema: 1.
    pub format: u32,
    /// Human-readable name.
    pub name: String,
    /// The owner's 32-byte ed25519 public key; the collection id is derived from it.
    #[serde(with = "serde_bytes")]
    pub owner: Vec<u8>,
    /// Vector dimension.
    pub dimension: u32,
    /// Similarity metric.
    pub metric: Metric,
    /// Storage quantization of vectors in leaves.
    pub quantization: Quantization,
    /// HNSW parameters for derived indexes.
    pub hnsw: HnswParams,
    /// Replicas each shard should have.
    pub replication: u32,
    /// Keys allowed to publish new versions (32-byte ed25519 public keys).
    pub writers: Vec<serde_bytes::ByteBuf>,
    /// One shard root per hash-range shard, in shard order.
    pub shards: Vec<Cid>,
    /// The previous version, if any.
    pub prev: Option<Cid>,
    /// Creation time of the collection, ms since the Unix epoch.
    pub created: u64,
    /// Time of this version, ms since the Unix epoch.
    pub updated: u64,
    /// Live points (tombstones excluded) across all shards.
    pub points: u64,
    /// For a text collection, the model its vectors come from. Absent (not written at all)
    /// for a collection of vectors, so manifests without it encode as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingModel>,
}

/// The root of one shard at one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRoot {
    /// Shard number.
    pub shard: u32,
    /// Inclusive range `[first, last]` of the 64-bit id hashes this shard holds.
    pub range: (u64, u64),
    /// Live points in the shard.
    pub points: u64,
    /// Root node of the shard's tree.
    pub tree: Cid,
    /// A published index snapshot blob, if any.
    pub index: Option<Cid>,
}

/// The 64-bit hash that places an id: the first 8 bytes of BLAKE3(key), big-endian.
pub fn id_hash(key: &EntryKey) -> u64 {
    let h = blake3::hash(key.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_be_bytes(b)
}

/// The shard (of `shards` equal hash ranges) that holds `key`.
pub fn shard_of(key: &EntryKey, shards: u32) -> u32 {
    ((u128::from(id_hash(key)) * u128::from(shards.max(1))) >> 64) as u32
}

/// The inclusive hash range of shard `shard` of `shards`.
pub fn shard_range(shard: u32, shards: u32) -> (u64, u64) {
    let n = u128::from(shards.max(1));
    let start = |s: u128| ((s << 64).div_ceil(n)) as u64;
    let first = start(u128::from(shard));
    let last = if u128::from(shard) + 1 >= n {
        u64::MAX
    } else {
        start(u128::from(shard) + 1) - 1
    };
    (first, last)
}

impl Manifest {
    /// Checks the settings every reader relies on.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if self.format != 1 {
            return Err(ProtocolError::invalid(
                "format",
                format!("unknown manifest format {}", self.format),
            ));
        }
        if self.dimension == 0 || self.dimension as usize > limits::MAX_DIMENSION {
            return Err(ProtocolError::invalid(
                "dimension",
                format!("must be between 1 and {}", limits::MAX_DIMENSION),
            ));
        }
        if self.owner.len() != 32 || self.writers.iter().any(|w| w.len() != 32) {
            return Err(ProtocolError::invalid(
                "writers",
                "keys must be 32-byte ed25519 public keys",
            ));
        }
        if self.shards.is_empty() {
            return Err(ProtocolError::invalid(
                "shards",
                "a collection has at least one shard",
            ));
        }
        if let Some(model) = &self.embedding {
            let bad = |s: &str| s.is_empty() || s.len() > EmbeddingModel::MAX_NAME;
            if bad(&model.provider) || bad(&model.model) {
                return Err(ProtocolError::invalid(
                    "embedding",
                    format!(
                        "provider and model must be 1 to {} bytes",
                        EmbeddingModel::MAX_NAME
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::EntryId;

    #[test]
    fn shard_ranges_tile_the_hash_space() {
        for n in [1u32, 2, 3, 7, 64] {
            let mut next = 0u64;
            for s in 0..n {
                let (first, last) = shard_range(s, n);
                assert_eq!(first, next);
                assert!(last >= first);
                next = last.wrapping_add(1);
            }
            assert_eq!(next, 0, "ranges of {n} shards end at u64::MAX");
            for id in 0..200u64 {
                let key = EntryId::Int(id).to_key().unwrap();
                let s = shard_of(&key, n);
                let (first, last) = shard_range(s, n);
                let h = id_hash(&key);
                assert!(first <= h && h <= last);
            }
        }
    }

    fn manifest(embedding: Option<EmbeddingModel>) -> Manifest {
        let cid = crate::cid::block_cid(crate::cid::DAG_CBOR, b"shard");
        Manifest {
            format: 1,
            name: "texts".into(),
            owner: vec![7; 32],
            dimension: 384,
            metric: Metric::Cosine,
            quantization: Quantization::F32,
            hnsw: HnswParams::default(),
            replication: 1,
            writers: vec![serde_bytes::ByteBuf::from(vec![7; 32])],
            shards: vec![cid],
            prev: None,
            created: 1,
            updated: 2,
            points: 0,
            embedding,
        }
    }

    #[test]
    fn the_embedding_model_is_written_only_for_text_collections() {
        let plain = manifest(None);
        let bytes = crate::dagcbor::encode(&plain).unwrap();
        let map: std::collections::BTreeMap<String, ipld_core::ipld::Ipld> =
            crate::dagcbor::decode(&bytes).unwrap();
        assert!(
            !map.contains_key("embedding"),
            "no key, so older manifests keep their CIDs"
        );
        assert_eq!(map.len(), 14);
        assert_eq!(crate::dagcbor::decode::<Manifest>(&bytes).unwrap(), plain);

        let model = EmbeddingModel {
            provider: "local".into(),
            model: "sentence-transformers/all-MiniLM-L6-v2".into(),
            normalized: true,
        };
        let text = manifest(Some(model.clone()));
        text.validate().unwrap();
        let bytes = crate::dagcbor::encode(&text).unwrap();
        let back: Manifest = crate::dagcbor::decode(&bytes).unwrap();
        assert_eq!(back.embedding, Some(model));

        let mut nameless = text;
        nameless.embedding.as_mut().unwrap().model.clear();
        assert!(nameless
            .validate()
            .unwrap_err()
            .to_string()
            .contains("embedding"));
    }
}
