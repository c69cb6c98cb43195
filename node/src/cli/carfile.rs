//! CAR files on disk, with progress bars: the one place the CLI reads and writes them.

use std::path::Path;

use anyhow::Context;
use cid::Cid;

use super::output::progress_bar;
use crate::store::{car, BlockStore};

/// Exports the DAG under `root` to `path`, writing beside it and renaming at the end so a
/// failed export leaves no half-written file.
pub async fn export_to_file<S: BlockStore>(
    store: &S,
    root: &Cid,
    path: &Path,
) -> anyhow::Result<car::CarProgress> {
    let tmp = path.with_extension("car.tmp");
    let file = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("creating {}", tmp.display()))?;
    let bar = progress_bar(None, "exporting");
    let result = car::export(store, root, file, |p| bar.set_position(p.bytes)).await;
    bar.finish_and_clear();
    match result {
        Ok(totals) => {
            tokio::fs::rename(&tmp, path)
                .await
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(totals)
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e.into())
        }
    }
}

/// Imports a CAR file (every block checked; roots pinned only if all of it is good).
pub async fn import_file<S: BlockStore>(
    store: &S,
    path: &Path,
) -> anyhow::Result<car::ImportSummary> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let size = file.metadata().await.map(|m| m.len()).ok();
    let bar = progress_bar(size, "importing");
    let summary = car::import(store, file, |p| bar.set_position(p.bytes))
        .await
        .with_context(|| format!("importing {}", path.display()));
    bar.finish_and_clear();
    summary
}
