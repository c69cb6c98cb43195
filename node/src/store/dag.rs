//! Walking DAGs in a block store.

use std::collections::{HashMap, HashSet};

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
    reachable_within(store, roots, usize::MAX).await
}

/// [`reachable`], following at most `depth` links from a root (0: the roots alone).
pub async fn reachable_within<S: BlockStore>(
    store: &S,
    roots: &[Cid],
    depth: usize,
) -> Result<Reachable, StoreError> {
    let mut out = Reachable::default();
    // The fewest links each block was reached by: with a bound, one reached deeper first is
    // walked again when a shorter path reaches it.
    let mut seen: HashMap<Digest, usize> = HashMap::new();
    let mut stack: Vec<(Cid, usize)> = roots.iter().map(|r| (*r, 0)).collect();
    while let Some((cid, links)) = stack.pop() {
        let digest = pcid::digest(&cid)?;
        match seen.get(&digest) {
            Some(&before) if before <= links || depth == usize::MAX => continue,
            _ => seen.insert(digest, links),
        };
        match store.get(&cid).await? {
            Some(bytes) => {
                out.live.insert(digest);
                if links < depth {
                    let next = block_links(&cid, &bytes)?;
                    stack.extend(next.into_iter().map(|l| (l, links + 1)));
                }
            }
            None => out.missing.push(cid),
        }
    }
    out.missing.sort();
    out.missing.dedup();
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
