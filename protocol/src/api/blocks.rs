//! Blocks and DAGs: storing and reading blocks, pins, gc, CAR imports, fetching from peers.

use serde::{Deserialize, Serialize};

/// `POST /v1/dag`: a stored block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DagPut {
    /// Its CID.
    pub cid: String,
    /// Whether it was pinned.
    pub pinned: bool,
}

/// `GET /v1/blocks/{cid}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlockStat {
    /// The CID.
    pub cid: String,
    /// Size in bytes.
    pub size: usize,
    /// Codec name (dag-cbor or raw).
    pub codec: String,
}

/// A named pin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pin {
    /// The pinned root.
    pub cid: String,
    /// Its name: the CID itself for `pin add`, `collection:<name>` for collections.
    pub name: String,
    /// What it keeps: `recursive`, the whole DAG under the root; `shallow`, the root block
    /// and the blocks it links to (a collection whose node holds some of its shards pins its
    /// version so: a list of the manifest and the shard roots, not the trees of the shards
    /// held elsewhere nor older versions).
    #[serde(default = "recursive")]
    pub kind: String,
}

fn recursive() -> String {
    "recursive".into()
}

/// `GET /v1/pins`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PinList {
    /// Every pin.
    pub pins: Vec<Pin>,
}

/// `POST /v1/gc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GcResult {
    /// Blocks removed.
    pub removed_blocks: u64,
    /// Bytes removed.
    pub removed_bytes: u64,
    /// Blocks kept because a pin reaches them.
    pub live_blocks: u64,
    /// Blocks pins link to that this repository lacks.
    pub missing_blocks: u64,
}

/// A CAR file read into the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CarImported {
    /// The CAR's roots (pinned).
    pub roots: Vec<String>,
    /// Blocks read.
    pub blocks: u64,
    /// Bytes read.
    pub bytes: u64,
}

/// `POST /v1/dag/fetch`: fetch a DAG from peers over Bitswap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DagFetch {
    /// The root CID.
    pub cid: String,
    /// Peers to ask (multiaddresses, dialed first); empty: every connected peer.
    #[serde(default)]
    pub from: Vec<String>,
}

/// A fetched DAG, now pinned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Fetched {
    /// The root CID.
    pub root: String,
    /// Blocks in the DAG.
    pub blocks: u64,
    /// Of those, fetched from peers (the rest were already stored).
    pub fetched: u64,
    /// Bytes fetched.
    pub bytes: u64,
}
