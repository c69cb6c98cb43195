//! Writes and checkpoints on a collection shared behind a read/write lock, in steps that keep
//! the exclusive lock short: searches (which hold the lock shared) answer while a write waits
//! for its fsync and while a checkpoint builds trees.
//!
//! | step                              | lock      |
//! |-----------------------------------|-----------|
//! | write: validate, stamp, append    | shared    |
//! | write: fsync (group commit)       | none      |
//! | write: insert into the HNSW graph | shared, one writer at a time ([`Collection::applier`]) |
//! | write: place inserts, key map     | exclusive, [`APPLY_SLICE`] entries at a time |
//! | checkpoint: plan                  | shared    |
//! | checkpoint: build trees, blocks   | shared, a run of entries at a time, to read vectors |
//! | checkpoint: pin, head, swap       | exclusive |

use ipvec_protocol::entry::EntryId;
use tokio::sync::RwLock;

use super::{Collection, CollectionError, Point, Staged, WriteReport};
use crate::store::BlockStore;

/// Entries a write inserts into the graph beside searches before it takes the lock alone to
/// place them (a rename and a key-map update each, microseconds); searches may meet this many
/// inserts not yet placed, and look that many hits further to leave them out.
pub const APPLY_SLICE: usize = 64;

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
    let applier = shared.read().await.applier();
    let (written, due) = loop {
        // One writer inserts at a time, and places its inserts before the next one begins.
        let _turn = applier.lock().await;
        let prepared = {
            let c = shared.read().await;
            match c.is_applied(&staged) {
                true => None,
                false => c.prepare_slice(APPLY_SLICE),
            }
        };
        let mut c = shared.write().await;
        let progressed = match prepared {
            Some(prepared) => c.apply_prepared(prepared),
            None => false,
        };
        // Writers apply the durable records in log order, whoever's they are.
        if c.is_applied(&staged) || !progressed {
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

/// Publishes a version of the shared collection that changes no point and names a new index
/// snapshot, if one is due ([`Collection::plan_snapshot`]); whether it did. A write that
/// comes in meanwhile wins: nothing is published, and a later checkpoint or quiet spell does.
pub async fn publish_snapshot<S: BlockStore>(
    shared: &RwLock<Collection<S>>,
) -> Result<bool, CollectionError> {
    let turn = shared.read().await.checkpoint_turn();
    let _turn = turn.lock().await;
    let plan = shared.read().await.plan_snapshot()?;
    let Some(plan) = plan else {
        return Ok(false);
    };
    let built = plan.build(shared).await?;
    shared.write().await.finish_snapshot(built).await
}
