//! Writes and checkpoints on a collection shared behind a read/write lock, in steps that keep
//! the exclusive lock short: searches (which hold the lock shared) answer while a write waits
//! for its fsync and while a checkpoint builds trees.
//!
//! | step                              | lock      |
//! |-----------------------------------|-----------|
//! | write: validate, stamp, append    | shared    |
//! | write: fsync (group commit)       | none      |
//! | write: apply to index, pending    | exclusive, [`APPLY_SLICE`] entries at a time |
//! | checkpoint: plan                  | shared    |
//! | checkpoint: build trees, blocks   | shared, a run of entries at a time, to read vectors |
//! | checkpoint: pin, head, swap       | exclusive |

use ipvec_protocol::entry::EntryId;
use tokio::sync::RwLock;

use super::{Collection, CollectionError, Point, Staged, WriteReport};
use crate::store::BlockStore;

/// Entries a write applies to the index per exclusive hold of the lock: a search waits for
/// this many HNSW inserts at most. One (a fraction of a millisecond at 784 dimensions) gave
/// the best search p99 under a stream of upserts (`benches/write_stalls.rs`): p99 5.3 ms
/// against 8.8 ms with four, idle 1 ms; a lock handoff per entry costs far less than an insert.
pub const APPLY_SLICE: usize = 1;

/// A write's report and the collection's root right after it.
#[derive(Debug, Clone)]
pub struct Written {
    /// Counts.
    pub report: WriteReport,
    /// The current manifest CID.
    pub root: cid::Cid,
}

/// Upserts `points` into the shared collection: returns once they are durable and searchable.
/// Runs a checkpoint afterwards when enough is pending.
pub async fn upsert<S: BlockStore>(
    shared: &RwLock<Collection<S>>,
    points: Vec<Point>,
) -> Result<Written, CollectionError> {
    let staged = shared.read().await.stage_upsert(points)?;
    finish_write(shared, staged).await
}

/// Deletes `ids` from the shared collection (see [`Collection::delete`]).
pub async fn delete<S: BlockStore>(
    shared: &RwLock<Collection<S>>,
    ids: &[EntryId],
) -> Result<Written, CollectionError> {
    let staged = shared.read().await.stage_delete(ids)?;
    finish_write(shared, staged).await
}

async fn finish_write<S: BlockStore>(
    shared: &RwLock<Collection<S>>,
    staged: Staged,
) -> Result<Written, CollectionError> {
    staged.sync()?;
    let (written, due) = loop {
        let mut c = shared.write().await;
        // Writers apply the durable records in log order, whoever's they are, a slice per hold.
        if c.is_applied(&staged) || !c.apply_some(APPLY_SLICE) {
            let report = c.report(&staged)?;
            let written = Written {
                report,
                root: c.root(),
            };
            break (written, c.needs_checkpoint());
        }
    };
    if due {
        checkpoint(shared).await?;
    }
    Ok(written)
}

/// Commits the shared collection's pending writes to its trees (a new version).
pub async fn checkpoint<S: BlockStore>(
    shared: &RwLock<Collection<S>>,
) -> Result<(), CollectionError> {
    let turn = shared.read().await.checkpoint_turn();
    let _turn = turn.lock().await;
    let plan = shared.read().await.plan_checkpoint()?;
    if let Some(plan) = plan {
        let built = plan.build(shared).await?;
        shared.write().await.finish_checkpoint(built).await?;
    }
    Ok(())
}
