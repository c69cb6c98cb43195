//! Backups: chains of CAR files in a directory, one chain a full CAR of a collection's
//! version followed by incremental CARs holding only the blocks each later version added.
//!
//! Everything here works on files and a block store; the node's operations
//! ([`Node::backup_create`](crate::ops::Node::backup_create),
//! [`Node::backup_restore`](crate::ops::Node::backup_restore)) add the collections, locks
//! and jobs, and `ipvec backup verify` needs no repository at all.
//!
//! # Layout
//! - [`manifest`]: `backup.json` (the chains, versioned), and the pure decisions: the next
//!   link, which chains pruning drops.
//! - [`diff`]: the blocks one DAG adds to another, walking both at once.
//! - [`carfile`]: writing a link's CAR file crash-safely, reading one back with every block
//!   hashed.
//! - [`verify`]: checking a whole backup directory.
//! - [`schedule`]: `backup.every` and `backup.keep`, parsed.

pub mod carfile;
pub mod diff;
pub mod manifest;
pub mod schedule;
pub mod verify;

use std::path::{Path, PathBuf};

pub use self::{
    manifest::{BackupManifest, Chain, Link, LinkKind},
    verify::{verify, Problem, VerifyReport},
};

/// Errors of backups.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The manifest is not one this build reads.
    #[error("{path}: {reason}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The directory has no manifest.
    #[error(
        "{0} holds no backup (no backup.json); give the directory `ipvec backup create` wrote into"
    )]
    NotABackup(PathBuf),
}

impl BackupError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Removes what a backup killed mid-way left in `dir`: its temporary files (hidden `*.tmp`),
/// and backup files `manifest` does not name — one written whose manifest was never saved,
/// or one pruned after the manifest that drops it was saved. Other files are left alone.
pub fn clean_leftovers(dir: &Path, manifest: &BackupManifest) -> Result<usize, BackupError> {
    let named: std::collections::HashSet<PathBuf> = manifest.files(dir).into_iter().collect();
    let mut removed = 0;
    let entries = std::fs::read_dir(dir).map_err(|e| BackupError::io(dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let temporary = name.starts_with('.') && name.ends_with(".tmp");
        let stray = manifest::is_backup_file_name(&name) && !named.contains(&entry.path());
        if temporary || stray {
            std::fs::remove_file(entry.path()).map_err(|e| BackupError::io(&entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}
