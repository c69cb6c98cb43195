//! The blocks one DAG adds to another: every block reachable from `new` and not from `base`.
//!
//! Both DAGs are walked level by level at once. A block met on both sides is shared: its
//! whole subtree is reachable from `base`, so neither side descends into it. Shared subtrees
//! are the bulk of two versions of a collection (history-independent trees rewrite only the
//! paths to what changed), so the walk reads the blocks that differ, not both DAGs. A block
//! the `new` side descended into before the `base` side met it is removed at the end with
//! everything under it, which makes the answer exact, not just small.

use std::collections::{HashMap, HashSet};

use cid::Cid;
use ipvec_protocol::cid as pcid;

use crate::store::{dag, BlockStore, Digest, StoreError};

/// The blocks reachable from `new` and not from any of `base`, in depth-first pre-order from
/// `new` (the order a CAR export writes). With no `base`, every block reachable from `new`.
/// A `base` block missing from the store is not descended into: blocks under it may then be
/// listed too, which only makes the increment larger, never incomplete.
pub async fn added_blocks<S: BlockStore>(
    store: &S,
    new: &Cid,
    base: &[Cid],
) -> Result<Vec<Cid>, StoreError> {
    let mut new_seen: HashSet<Digest> = HashSet::new();
    let mut base_seen: HashSet<Digest> = HashSet::new();
    // The links of every block the new side read.
    let mut new_links: HashMap<Digest, Vec<Cid>> = HashMap::new();
    let mut new_level = vec![*new];
    let mut base_level: Vec<Cid> = base.to_vec();
    while !new_level.is_empty() || !base_level.is_empty() {
        new_level.retain(|c| pcid::digest(c).is_ok_and(|d| new_seen.insert(d)));
        base_level.retain(|c| pcid::digest(c).is_ok_and(|d| base_seen.insert(d)));
        let mut next_new = Vec::new();
        for cid in &new_level {
            let digest = pcid::digest(cid)?;
            if base_seen.contains(&digest) || cid.codec() != pcid::DAG_CBOR {
                continue;
            }
            let links = dag::block_links(cid, &store.require(cid).await?)?;
            next_new.extend(links.iter().copied());
            new_links.insert(digest, links);
        }
        let mut next_base = Vec::new();
        for cid in &base_level {
            if new_seen.contains(&pcid::digest(cid)?) || cid.codec() != pcid::DAG_CBOR {
                continue;
            }
            if let Some(bytes) = store.get(cid).await? {
                next_base.extend(dag::block_links(cid, &bytes)?);
            }
        }
        new_level = next_new;
        base_level = next_base;
    }

    // Everything under a shared block is reachable from `base`.
    let mut old: HashSet<Digest> = HashSet::new();
    let mut stack: Vec<Digest> = new_seen.intersection(&base_seen).copied().collect();
    while let Some(digest) = stack.pop() {
        if !old.insert(digest) {
            continue;
        }
        if let Some(links) = new_links.get(&digest) {
            for link in links {
                stack.push(pcid::digest(link)?);
            }
        }
    }

    let mut out = Vec::new();
    let mut written: HashSet<Digest> = HashSet::new();
    let mut stack = vec![*new];
    while let Some(cid) = stack.pop() {
        let digest = pcid::digest(&cid)?;
        if old.contains(&digest) || !written.insert(digest) {
            continue;
        }
        out.push(cid);
        if let Some(links) = new_links.get(&digest) {
            stack.extend(links.iter().rev().copied());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use ipvec_protocol::{dagcbor, Ipld};

    use super::*;
    use crate::store::MemBlockStore;

    async fn raw(store: &MemBlockStore, text: &str) -> Cid {
        store
            .put(pcid::RAW, Bytes::from(text.as_bytes().to_vec()))
            .await
            .unwrap()
    }

    async fn node(store: &MemBlockStore, tag: &str, links: &[Cid]) -> Cid {
        let value = Ipld::Map(
            [
                ("tag".to_string(), Ipld::String(tag.into())),
                (
                    "links".to_string(),
                    Ipld::List(links.iter().map(|c| Ipld::Link(*c)).collect()),
                ),
            ]
            .into_iter()
            .collect(),
        );
        store
            .put(
                pcid::DAG_CBOR,
                Bytes::from(dagcbor::encode(&value).unwrap()),
            )
            .await
            .unwrap()
    }

    /// The set difference, computed by walking both DAGs whole.
    async fn expected(store: &MemBlockStore, new: &Cid, base: &Cid) -> HashSet<Digest> {
        let a = dag::reachable(store, &[*new]).await.unwrap().live;
        let b = dag::reachable(store, &[*base]).await.unwrap().live;
        a.difference(&b).copied().collect()
    }

    fn digests(cids: &[Cid]) -> HashSet<Digest> {
        cids.iter().map(|c| pcid::digest(c).unwrap()).collect()
    }

    #[tokio::test]
    async fn the_increment_is_exactly_the_set_difference() {
        let store = MemBlockStore::new();
        let leaves: Vec<Cid> = futures::future::join_all((0..8).map(|i| {
            let store = &store;
            async move { raw(store, &format!("leaf {i}")).await }
        }))
        .await;
        let left = node(&store, "left", &leaves[..4]).await;
        let right = node(&store, "right", &leaves[4..]).await;
        let base = node(&store, "root", &[left, right]).await;

        // One leaf changed: a new leaf, a new right node, a new root.
        let changed = raw(&store, "leaf 7 changed").await;
        let mut right_leaves = leaves[4..7].to_vec();
        right_leaves.push(changed);
        let right2 = node(&store, "right", &right_leaves).await;
        let new = node(&store, "root", &[left, right2]).await;
        let added = added_blocks(&store, &new, &[base]).await.unwrap();
        assert_eq!(digests(&added), expected(&store, &new, &base).await);
        assert_eq!(added.len(), 3);
        assert_eq!(added[0], new, "pre-order: the root first");

        // A subtree of base reappears deeper in new (levels do not line up): still exact.
        let deeper = node(&store, "wrapper", &[left]).await;
        let new2 = node(&store, "root", &[deeper, right2, leaves[0]]).await;
        let added = added_blocks(&store, &new2, &[base]).await.unwrap();
        assert_eq!(digests(&added), expected(&store, &new2, &base).await);

        // The base holds a subtree deeper than new does: the new side descends first, and the
        // shared blocks under it are removed at the end.
        let base3 = node(&store, "old", &[deeper]).await;
        let new3 = node(&store, "new", &[left, changed]).await;
        let added = added_blocks(&store, &new3, &[base3]).await.unwrap();
        assert_eq!(digests(&added), expected(&store, &new3, &base3).await);
        assert_eq!(added.len(), 2);

        // No base: everything.
        let all = added_blocks(&store, &new, &[]).await.unwrap();
        let every = dag::reachable(&store, &[new]).await.unwrap().live;
        assert_eq!(digests(&all), every);
        // Same root: nothing.
        assert!(added_blocks(&store, &new, &[new]).await.unwrap().is_empty());
    }
}
