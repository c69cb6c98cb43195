//! CAR files on disk, with progress bars: the one place the CLI reads and writes them, on
//! either backend (streamed to or from a daemon, or through the repository directly).

use std::path::Path;

use anyhow::Context;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use super::{backend::Backend, output::progress_bar};
use crate::{
    api::{
        types::{CarImported, CollectionImported},
        ExportTarget,
    },
    ops::parse_cid,
    store::car,
};

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// The CAR's root.
    pub root: String,
    /// Blocks written.
    pub blocks: u64,
    /// Block bytes written (framing and CIDs excluded).
    pub bytes: u64,
}

/// Exports `what` to `path`, writing beside it and renaming at the end so a failed export
/// leaves no half-written file.
pub async fn export_to_file(
    backend: &Backend,
    what: ExportTarget<'_>,
    path: &Path,
) -> anyhow::Result<Exported> {
    let tmp = path.with_extension("car.tmp");
    let file = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("creating {}", tmp.display()))?;
    let result = export_to(backend, what, file).await;
    let result = match result {
        Ok(Some(exported)) => Ok(exported),
        // The daemon streamed it: count what arrived.
        Ok(None) => scan(&tmp).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(exported) => {
            tokio::fs::rename(&tmp, path)
                .await
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(exported)
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

/// Writes the CAR of `what` into `out`; the totals when the repository is local, `None` when a
/// daemon streamed it.
pub async fn export_to<W>(
    backend: &Backend,
    what: ExportTarget<'_>,
    mut out: W,
) -> anyhow::Result<Option<Exported>>
where
    W: tokio::io::AsyncWrite + Unpin + Send,
{
    let bar = progress_bar(None, "exporting");
    let result = async {
        match backend {
            Backend::Local(node) => {
                let root = match what {
                    ExportTarget::Collection(name) => node.collection_export_root(name).await?,
                    ExportTarget::Dag(cid) => parse_cid(cid)?,
                };
                let totals = node
                    .export_car(&root, &mut out, |p| bar.set_position(p.bytes))
                    .await?;
                out.flush().await?;
                Ok(Some(Exported {
                    root: root.to_string(),
                    blocks: totals.blocks,
                    bytes: totals.bytes,
                }))
            }
            Backend::Remote(client) => {
                let mut stream = client.export(what).await?;
                let mut written = 0u64;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.context("the daemon's CAR stream broke off")?;
                    out.write_all(&chunk).await?;
                    written += chunk.len() as u64;
                    bar.set_position(written);
                }
                out.flush().await?;
                Ok(None)
            }
        }
    }
    .await;
    bar.finish_and_clear();
    result
}

async fn scan(path: &Path) -> anyhow::Result<Exported> {
    let file = tokio::fs::File::open(path).await?;
    let summary = car::scan(file)
        .await
        .with_context(|| format!("reading back {}", path.display()))?;
    Ok(Exported {
        root: summary
            .roots
            .first()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        blocks: summary.totals.blocks,
        bytes: summary.totals.bytes,
    })
}

/// What to do with an imported CAR.
#[derive(Debug, Clone)]
pub enum ImportAs {
    /// Pin its roots.
    Dag,
    /// Register the collection it holds, under this name or its own.
    Collection(Option<String>),
}

/// What an import did.
#[derive(Debug, Clone)]
pub enum Imported {
    /// A DAG, its roots pinned.
    Dag(CarImported),
    /// A collection.
    Collection(CollectionImported),
}

/// Imports a CAR file (every block checked; roots pinned only if all of it is good).
pub async fn import_file(
    backend: &Backend,
    path: &Path,
    how: ImportAs,
) -> anyhow::Result<Imported> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let size = file.metadata().await.map(|m| m.len()).ok();
    let bar = progress_bar(size, "importing");
    let result = async {
        match backend {
            Backend::Local(node) => {
                let imported = node
                    .import_car(file, size, |p| bar.set_position(p.bytes))
                    .await?;
                Ok(match how {
                    ImportAs::Dag => Imported::Dag(imported),
                    ImportAs::Collection(name) => {
                        Imported::Collection(node.adopt_collection(&imported, name).await?)
                    }
                })
            }
            Backend::Remote(client) => {
                let progress = bar.clone();
                let mut sent = 0u64;
                let stream = ReaderStream::with_capacity(file, 1 << 20).inspect(move |chunk| {
                    if let Ok(chunk) = chunk {
                        sent += chunk.len() as u64;
                        progress.set_position(sent);
                    }
                });
                let body = reqwest::Body::wrap_stream(stream);
                anyhow::Ok(match how {
                    ImportAs::Dag => Imported::Dag(client.import_car(body, size).await?),
                    ImportAs::Collection(name) => Imported::Collection(
                        client
                            .import_collection(body, size, name.as_deref())
                            .await?,
                    ),
                })
            }
        }
    }
    .await
    .with_context(|| format!("importing {}", path.display()));
    bar.finish_and_clear();
    result
}
