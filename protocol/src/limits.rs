//! Limits every ipvec implementation enforces. Blocks over these are rejected, never truncated.

/// Largest block ipvec writes or accepts from its own protocols (1 MiB).
pub const MAX_BLOCK_BYTES: usize = 1 << 20;
/// Largest block accepted from Bitswap peers, which may hold blocks written by others (2 MiB).
pub const MAX_FOREIGN_BLOCK_BYTES: usize = 2 << 20;
/// Target encoded size of a tree leaf; leaf boundaries average out near it.
pub const LEAF_TARGET_BYTES: usize = 256 << 10;
/// Target encoded size of a tree branch (interior node).
pub const BRANCH_TARGET_BYTES: usize = 32 << 10;
/// Longest string id, in UTF-8 bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Longest key form of an id: the one-byte type tag and up to [`MAX_ID_BYTES`].
pub const MAX_KEY_BYTES: usize = MAX_ID_BYTES + 1;
/// Largest encoded metadata map of one entry.
pub const MAX_METADATA_BYTES: usize = 64 << 10;
/// Largest vector dimension.
pub const MAX_DIMENSION: usize = 16_384;
/// Largest vector payload of one entry (MAX_DIMENSION little-endian f32s).
pub const MAX_VECTOR_BYTES: usize = MAX_DIMENSION * 4;
/// Largest encoded entry. Leaves are cut before they pass [`MAX_BLOCK_BYTES`], so any entry
/// within this limit always fits in a leaf with room to spare.
pub const MAX_ENTRY_BYTES: usize = MAX_VECTOR_BYTES + MAX_METADATA_BYTES + 1024;
/// Tree levels at or above this one close nodes only by size, which bounds the height.
pub const MAX_HASHED_LEVEL: u32 = 16;
