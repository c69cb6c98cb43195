//! Old versions: listing them, and searching one read-only by scanning its trees.

use std::{cmp::Ordering, collections::BinaryHeap, ops::Bound};

use cid::Cid;
use ipvec_protocol::{
    dagcbor,
    entry::{Entry, EntryKey},
    manifest::{Manifest, ShardRoot},
    Ipld,
};

use super::{quantize, CollectionError, CompiledFilter, PackedMetadata, SearchHit};
use crate::{
    index::{check_scorable, check_vector, score, IndexError},
    store::BlockStore,
    tree,
};

/// The versions from `root` back to the first, newest first; stops at a version not stored.
pub async fn versions<S: BlockStore>(
    store: &S,
    root: Cid,
) -> Result<Vec<(Cid, Manifest)>, CollectionError> {
    let mut out = Vec::new();
    let mut cursor = Some(root);
    while let Some(cid) = cursor {
        let Some(bytes) = store.get(&cid).await? else {
            break;
        };
        let manifest: Manifest = dagcbor::decode_trusted(&bytes)?;
        cursor = manifest.prev;
        out.push((cid, manifest));
    }
    Ok(out)
}

/// A hit kept while the scan runs, with its metadata as the entry held it: only the `k`
/// kept to the end are packed into [`SearchHit`]s.
struct Ranked(f32, SearchHit, Option<Ipld>);

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    // Reversed, so the heap's top is the worst hit kept.
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0)
    }
}

/// Exact top-`k` search of the version `at` of the collection owned by `owner`, among the
/// points `filter` accepts.
pub async fn search_at<S: BlockStore>(
    store: &S,
    owner: &[u8],
    at: &Cid,
    query: &[f32],
    k: usize,
    filter: Option<&CompiledFilter>,
) -> Result<Vec<SearchHit>, CollectionError> {
    let manifest = version(store, owner, at).await.map_err(|e| match e {
        CollectionError::Invalid(m) if m.contains("is not in this repository") => {
            CollectionError::Invalid(format!(
                "version {at} is not in this repository; `ipvec collection log NAME` lists the \
                 versions"
            ))
        }
        other => other,
    })?;
    check_vector(query, manifest.dimension as usize)?;
    check_scorable(manifest.metric, manifest.quantization, query).map_err(IndexError::Query)?;
    let mut heap: BinaryHeap<Ranked> = BinaryHeap::new();
    for shard_cid in &manifest.shards {
        let shard: ShardRoot = dagcbor::decode_trusted(&store.require(shard_cid).await?)?;
        let mut scan = tree::range(store, shard.tree, Bound::Unbounded, Bound::Unbounded);
        while let Some((entry, leaf)) = scan.next().await? {
            if entry.deleted || filter.is_some_and(|f| !f.test(&entry.id, entry.meta.as_ref())) {
                continue;
            }
            let s = score(
                manifest.metric,
                query,
                &quantize::decode(manifest.quantization, &entry.vec),
            );
            // A vector stored before scores were checked may overflow: it ranks nowhere.
            if !s.is_finite() {
                tracing::warn!(id = %entry.id.id(), "skipping a point whose score is not a finite number");
                continue;
            }
            if heap.len() < k || heap.peek().is_some_and(|worst| s > worst.0) {
                heap.push(Ranked(
                    s,
                    SearchHit {
                        id: entry.id.id(),
                        score: s,
                        metadata: None,
                        leaf: Some(leaf),
                    },
                    entry.meta,
                ));
                if heap.len() > k {
                    heap.pop();
                }
            }
        }
    }
    let mut hits = Vec::with_capacity(heap.len());
    for Ranked(_, mut hit, meta) in heap {
        hit.metadata = meta.as_ref().map(PackedMetadata::pack).transpose()?;
        hits.push(hit);
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(hits)
}

/// Where a page of a version's points starts: after key `after` of shard `shard` (or at the
/// shard's first key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageStart {
    /// The shard to read from.
    pub shard: u32,
    /// The last key already read in it, if any.
    pub after: Option<EntryKey>,
}

/// Up to `limit` live entries of version `at`, from `start`, each with its leaf's CID, and
/// where the next page starts (`None` after the last entry).
pub async fn page_at<S: BlockStore>(
    store: &S,
    owner: &[u8],
    at: &Cid,
    start: PageStart,
    limit: usize,
) -> Result<(Vec<(Entry, Cid)>, Option<PageStart>), CollectionError> {
    let manifest = version(store, owner, at).await?;
    let mut out = Vec::new();
    let mut shard = start.shard;
    let mut after = start.after;
    while (shard as usize) < manifest.shards.len() {
        let root: ShardRoot =
            dagcbor::decode_trusted(&store.require(&manifest.shards[shard as usize]).await?)?;
        let from = match after.take() {
            Some(key) => Bound::Excluded(key),
            None => Bound::Unbounded,
        };
        let mut scan = tree::range(store, root.tree, from, Bound::Unbounded);
        while let Some((entry, leaf)) = scan.next().await? {
            if entry.deleted {
                continue;
            }
            let key = entry.id.clone();
            out.push((entry, leaf));
            if out.len() >= limit {
                return Ok((
                    out,
                    Some(PageStart {
                        shard,
                        after: Some(key),
                    }),
                ));
            }
        }
        shard += 1;
    }
    Ok((out, None))
}

/// The manifest of version `at` of the collection owned by `owner`.
async fn version<S: BlockStore>(
    store: &S,
    owner: &[u8],
    at: &Cid,
) -> Result<Manifest, CollectionError> {
    let bytes = store.get(at).await?.ok_or_else(|| {
        CollectionError::Invalid(format!(
            "version {at} is not in this repository (it was collected after newer versions \
             replaced it); start again from the current version"
        ))
    })?;
    let manifest: Manifest = dagcbor::decode_trusted(&bytes)
        .map_err(|_| CollectionError::Invalid(format!("{at} is not a collection manifest")))?;
    if manifest.owner != owner {
        return Err(CollectionError::Invalid(format!(
            "{at} is a version of another collection"
        )));
    }
    Ok(manifest)
}
