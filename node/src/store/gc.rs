//! Garbage collection: keep what pins reach, remove the rest.

use super::{dag, BlockStore, StoreError, SweepStats};

/// What a garbage collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Blocks and bytes removed.
    pub removed: SweepStats,
    /// Blocks kept because a pin reaches them.
    pub live_blocks: u64,
    /// Blocks that pins link to but the store lacks (an incomplete pin).
    pub missing_blocks: u64,
}

/// Marks every block reachable from a recursive pin, and every block a shallow pin names or
/// that block links to, then sweeps every other block.
pub async fn collect_garbage<S: BlockStore>(store: &S) -> Result<GcReport, StoreError> {
    let pinned = |pins: Vec<(String, cid::Cid)>| pins.into_iter().map(|(_, root)| root).collect();
    let roots: Vec<_> = pinned(store.pins().await?);
    let mut walk = dag::reachable(store, &roots).await?;
    let shallow = dag::reachable_within(store, &pinned(store.shallow_pins().await?), 1).await?;
    walk.live.extend(shallow.live);
    walk.missing.extend(shallow.missing);
    walk.missing.sort();
    walk.missing.dedup();
    let removed = store.delete_unpinned(&walk.live).await?;
    tracing::info!(
        removed_blocks = removed.blocks,
        removed_bytes = removed.bytes,
        live = walk.live.len(),
        "gc done"
    );
    Ok(GcReport {
        removed,
        live_blocks: walk.live.len() as u64,
        missing_blocks: walk.missing.len() as u64,
    })
}
