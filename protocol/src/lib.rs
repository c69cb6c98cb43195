//! ipvec's vocabulary: everything two ipvec implementations must agree on byte for byte.
//!
//! Every block is a CIDv1 whose multihash is BLAKE3-256 (code `0x1e`); structure is canonical
//! DAG-CBOR (`0x71`) and packed payloads are raw (`0x55`). This crate holds the codecs, the
//! schemas of the blocks that make up a collection, signed head records and the documented
//! limits. It does no I/O: no tokio, no sockets, no files.
//!
//! # Layout
//! - [`cid`]: making and checking BLAKE3 CIDs.
//! - [`dagcbor`]: canonical DAG-CBOR encoding and strict decoding, link extraction.
//! - [`entry`]: entry ids, vector entries with hybrid logical clocks, writers and tombstones.
//! - [`node`]: the blocks of the history-independent shard tree (leaves and branches).
//! - [`manifest`]: collection manifests and shard roots.
//! - [`head`]: signed collection head records.
//! - [`hlc`]: the hybrid logical clock.
//! - [`limits`]: sizes every implementation must enforce.
//! - [`api`]: the JSON a node's HTTP API takes and answers (shared with the dashboard).
//! - [`announce`]: the DHT keys peers announce collections and shards under.
//! - [`search`]: the federated search protocol between peers (`/ipvec/search/1.0.0`).
//! - [`error`]: the one error type of this crate.

pub mod announce;
pub mod api;
pub mod cid;
pub mod dagcbor;
pub mod entry;
pub mod error;
pub mod head;
pub mod hlc;
pub mod limits;
pub mod manifest;
pub mod member;
pub mod node;
pub mod search;

pub use ::cid::Cid;
pub use error::ProtocolError;
pub use ipld_core::ipld::Ipld;
