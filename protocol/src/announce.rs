//! The DHT keys under which peers announce what they serve.
//!
//! A peer hosting a collection announces a provider record under the collection key; a peer
//! hosting one of its shards also under that shard's key. Both are CIDv1 (raw, BLAKE3-256) of
//! a fixed ASCII text, so any implementation derives the same key from the collection id:
//!
//! ```text
//! collection key = CID(raw, BLAKE3("ipvec-collection-v1\0" ‖ collection id))
//! shard key      = CID(raw, BLAKE3("ipvec-shard-v1\0" ‖ collection id ‖ "\0" ‖ decimal shard))
//! ```
//!
//! The collection id is the owner's peer id in its usual base58 text form (`12D3KooW…`).

use cid::Cid;

use crate::cid::{block_cid, RAW};

/// Prefix of the collection key's preimage.
pub const COLLECTION_KEY_PREFIX: &str = "ipvec-collection-v1\0";
/// Prefix of a shard key's preimage.
pub const SHARD_KEY_PREFIX: &str = "ipvec-shard-v1\0";

/// The key peers hosting collection `collection_id` are announced under.
pub fn collection_key(collection_id: &str) -> Cid {
    block_cid(
        RAW,
        format!("{COLLECTION_KEY_PREFIX}{collection_id}").as_bytes(),
    )
}

/// The key peers hosting shard `shard` of collection `collection_id` are announced under.
pub fn shard_key(collection_id: &str, shard: u32) -> Cid {
    block_cid(
        RAW,
        format!("{SHARD_KEY_PREFIX}{collection_id}\0{shard}").as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_stable() {
        let id = "12D3KooWAPmaSRLPd63XuTnFn88X4CESYWGEvoeQ9LN5SRoHw9VP";
        assert_eq!(collection_key(id), collection_key(id));
        assert_ne!(collection_key(id), shard_key(id, 0));
        assert_ne!(shard_key(id, 0), shard_key(id, 1));
        assert_ne!(collection_key(id), collection_key("12D3KooWother"));
        // The preimage is exactly the documented text.
        let expected = block_cid(RAW, b"ipvec-shard-v1\0abc\x007");
        assert_eq!(shard_key("abc", 7), expected);
        assert_eq!(collection_key(id).codec(), RAW);
    }
}
