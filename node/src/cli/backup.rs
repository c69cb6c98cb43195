//! `ipvec backup`: create, verify, list and restore backups (docs/operations.md, "Backups").
//! `verify` and `list` read only the backup directory; `create` and `restore` work on the
//! repository, through the daemon when one runs.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use super::{backend::Backend, output::progress_bar, output::Output};
use crate::{
    backup::{self, BackupManifest, LinkKind},
    ops::backup::{BackupCreated, BackupRequest, BackupRestored, RestoreRequest},
};

/// `ipvec backup …`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back up every collection (or one) into DIR: a full CAR the first time, then only the
    /// blocks each collection added since its last backup.
    Create {
        /// The backup directory (created if missing).
        dir: PathBuf,
        /// Only this collection.
        #[arg(long)]
        collection: Option<String>,
        /// Start new chains with full CARs even where an incremental one would do.
        #[arg(long)]
        full: bool,
    },
    /// Check every block of every file in DIR against its CID, and that every chain is
    /// complete; exits non-zero naming the file and block of each problem.
    Verify {
        /// The backup directory.
        dir: PathBuf,
    },
    /// List the backed-up versions in DIR.
    List {
        /// The backup directory.
        dir: PathBuf,
    },
    /// Rebuild the collections (or one) in this repository at the newest backed-up version
    /// or at --at; every file is checked before anything is stored.
    Restore {
        /// The backup directory.
        dir: PathBuf,
        /// Only this collection.
        #[arg(long)]
        collection: Option<String>,
        /// The version to restore: a root `backup list` prints (head or version root).
        #[arg(long, value_name = "ROOT")]
        at: Option<String>,
    },
}

impl BackupCommand {
    /// Whether the command needs the repository.
    pub fn needs_repository(&self) -> bool {
        matches!(self, Self::Create { .. } | Self::Restore { .. })
    }
}

/// Runs `verify` and `list`, which need no repository.
pub fn run_offline(out: &Output, command: &BackupCommand) -> anyhow::Result<()> {
    match command {
        BackupCommand::Verify { dir } => verify(out, dir),
        BackupCommand::List { dir } => list(out, dir),
        _ => Ok(()),
    }
}

fn verify(out: &Output, dir: &Path) -> anyhow::Result<()> {
    let manifest = BackupManifest::load_existing(dir)?;
    let total: u64 = manifest
        .collections
        .values()
        .flat_map(|b| &b.chains)
        .flat_map(|c| &c.links)
        .map(|l| l.bytes)
        .sum();
    let bar = progress_bar(Some(total), "verifying");
    let report = backup::verify(dir, |t| bar.set_position(t.bytes));
    bar.finish_and_clear();
    let report = report?;
    for problem in &report.problems {
        eprintln!("{problem}");
    }
    let summary = format!(
        "{} collection(s), {} chain(s), {} file(s), {} blocks ({} bytes) checked",
        report.collections, report.chains, report.files, report.blocks, report.bytes
    );
    if report.problems.is_empty() {
        out.print(
            format!("{summary}: all good"),
            serde_json::to_value(&report)?,
        )?;
        Ok(())
    } else {
        if out.json {
            out.print("", serde_json::to_value(&report)?)?;
        }
        anyhow::bail!(
            "{summary}: {} problem(s) in {} (listed above)",
            report.problems.len(),
            dir.display()
        )
    }
}

fn list(out: &Output, dir: &Path) -> anyhow::Result<()> {
    let manifest = BackupManifest::load_existing(dir)?;
    let mut lines = Vec::new();
    for (name, backups) in &manifest.collections {
        for (c, chain) in backups.chains.iter().enumerate() {
            for link in &chain.links {
                let kind = match link.kind {
                    LinkKind::Full => "full",
                    LinkKind::Incremental => "incr",
                };
                lines.push(format!(
                    "{name}\tchain {c}\t{kind}\tversion {}\t{} points\t{}\t{} blocks\t{} bytes\t{}",
                    link.version,
                    link.points,
                    link.version_root,
                    link.blocks,
                    link.bytes,
                    link.file
                ));
            }
        }
    }
    out.print(lines.join("\n"), serde_json::to_value(&manifest)?)
}

/// Runs `create` and `restore` on `backend`.
pub async fn run(backend: &Backend, out: &Output, command: BackupCommand) -> anyhow::Result<()> {
    match command {
        BackupCommand::Create {
            dir,
            collection,
            full,
        } => {
            let created = create(backend, &dir, collection.as_deref(), full).await?;
            let mut lines = Vec::new();
            for c in &created.collections {
                match &c.link {
                    Some(link) => lines.push(format!(
                        "{}: {} backup of version {} ({} points): {} blocks, {} bytes in {}",
                        c.collection,
                        match link.kind {
                            LinkKind::Full => "full",
                            LinkKind::Incremental => "incremental",
                        },
                        link.version,
                        link.points,
                        link.blocks,
                        link.bytes,
                        link.file
                    )),
                    None => {
                        lines.push(format!("{}: unchanged since its last backup", c.collection))
                    }
                }
                for file in &c.pruned {
                    lines.push(format!("{}: pruned {file}", c.collection));
                }
            }
            out.print(lines.join("\n"), serde_json::to_value(&created)?)
        }
        BackupCommand::Restore {
            dir,
            collection,
            at,
        } => {
            let restored = restore(backend, &dir, collection.as_deref(), at.as_deref()).await?;
            let lines: Vec<String> = restored
                .collections
                .iter()
                .map(|r| {
                    format!(
                        "restored {} at version {} (root {}): {} points from {} file(s)",
                        r.collection, r.version, r.root, r.points, r.files
                    )
                })
                .collect();
            out.print(lines.join("\n"), serde_json::to_value(&restored)?)
        }
        command => run_offline(out, &command),
    }
}

async fn create(
    backend: &Backend,
    dir: &Path,
    collection: Option<&str>,
    full: bool,
) -> anyhow::Result<BackupCreated> {
    match backend {
        Backend::Local(node) => {
            let dir = absolute(dir)?;
            let bar = progress_bar(None, "backing up");
            let created = node
                .backup_create(&dir, collection, full, |name, t, _total| {
                    bar.set_message(format!("backing up {name}"));
                    bar.set_position(t.bytes);
                })
                .await;
            bar.finish_and_clear();
            Ok(created?)
        }
        Backend::Remote(_) => {
            let request = BackupRequest {
                dir: absolute(dir)?.display().to_string(),
                collection: collection.map(str::to_string),
                full,
            };
            Ok(backend.ops().backup_create(request).await?)
        }
    }
}

async fn restore(
    backend: &Backend,
    dir: &Path,
    collection: Option<&str>,
    at: Option<&str>,
) -> anyhow::Result<BackupRestored> {
    match backend {
        Backend::Local(node) => {
            let bar = progress_bar(None, "restoring");
            let restored = node
                .backup_restore(dir, collection, at, |name, t| {
                    bar.set_message(format!("restoring {name}"));
                    bar.set_position(t.bytes);
                })
                .await;
            bar.finish_and_clear();
            Ok(restored?)
        }
        Backend::Remote(_) => {
            let request = RestoreRequest {
                dir: absolute(dir)?.display().to_string(),
                collection: collection.map(str::to_string),
                at: at.map(str::to_string),
            };
            Ok(backend.ops().backup_restore(request).await?)
        }
    }
}

/// `dir` as an absolute path: a daemon resolves paths from its own working directory.
fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))
}
