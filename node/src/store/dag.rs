//! Walking DAGs in a block store.

use std::collections::HashSet;

use cid::Cid;
use ipvec_protocol::{cid as pcid, dagcbor};

use super::{BlockStore, Digest, StoreError};

/// The links inside a block, in the order they appear: none for raw blocks, every CID for
/// dag-cbor (found by scanning the encoding, without decoding the value).
pub fn block_links(cid: &Cid, bytes: &[u8]) -> Result<Vec<Cid>, StoreError> {
    match cid.codec() {
        pcid::DAG_CBOR => Ok(dagcbor::scan_links(bytes)?),
        _ => Ok(Vec::new()),
    }
}

/// What a walk from some roots found.
#[derive(Debug, Default)]
pub struct Reachable {
    /// Digests of every stored block reachable from the roots.
    pub live: HashSet<Digest>,
    /// Linked blocks that are not in the store.
    pub missing: Vec<Cid>,
}

/// Every block reachable from `roots`, and the linked blocks that are missing.
pub async fn reachable<S: BlockStore>(store: &S, roots: &[Cid]) -> Result<Reachable, StoreError> {
    let mut out = Reachable::default();
    let mut seen: HashSet<Digest> = HashSet::new();
    let mut stack: Vec<Cid> = roots.to_vec();
    while let Some(cid) = stack.pop() {
        let digest = pcid::digest(&cid)?;
        if !seen.insert(digest) {
            continue;
        }
        match store.get(&cid).await? {
            Some(bytes) => {
                out.live.insert(digest);
                stack.extend(block_links(&cid, &bytes)?);
            }
            None => out.missing.push(cid),
        }
    }
    Ok(out)
}

/// Checks that every block under `root` is stored.
pub async fn check_complete<S: BlockStore>(store: &S, root: &Cid) -> Result<(), StoreError> {
    let walk = reachable(store, std::slice::from_ref(root)).await?;
    match walk.missing.first() {
        None => Ok(()),
        Some(cid) => Err(StoreError::NotFound(*cid)),
    }
}
