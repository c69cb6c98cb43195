//! Backups of the repository's collections into a directory, and restores from one (the
//! files and decisions are in [`crate::backup`]).
//!
//! A backup is taken at a version: each collection's logged writes are committed first,
//! then its signed head is read once, under the collection's lock; the DAG under that head
//! never changes, and garbage collection waits until the backup ends. A restore reads and
//! checks every file it needs before it stores a block.

use std::{
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use cid::Cid;
use ipvec_protocol::{cid as pcid, dagcbor, head::HeadRecord};
use serde::{Deserialize, Serialize};

use super::{parse_cid, Error, Node};
use crate::{
    backup::{
        carfile::{self, Totals},
        clean_leftovers, diff,
        manifest::{chains_to_drop, next_link, sync_dir, Chain, CollectionBackups, NextLink},
        schedule::wait_before_next,
        verify::verify_chain,
        BackupError, BackupManifest, Link, LinkKind,
    },
    store::{car, BlockStore},
};

/// One backup at a time in a process, whatever starts it (the schedule, a request).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `POST /v1/backup`: what to back up, and where (a directory on the daemon's machine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// The backup directory on the node's machine (created if missing): absolute, or relative
    /// to `backup.dir`; empty for `backup.dir` itself. Only the admin token may name one
    /// outside `backup.dir`.
    pub dir: String,
    /// Only this collection (default: every one).
    #[serde(default)]
    pub collection: Option<String>,
    /// Start new chains with full CARs.
    #[serde(default)]
    pub full: bool,
}

/// `POST /v1/backup/restore`: what to restore, from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The backup directory on the node's machine: absolute, or relative to `backup.dir`;
    /// empty for `backup.dir` itself. Only the admin token may name one outside `backup.dir`.
    pub dir: String,
    /// Only this collection (default: every one in the backup).
    #[serde(default)]
    pub collection: Option<String>,
    /// The version: a head or version root `backup list` prints (default: the newest).
    #[serde(default)]
    pub at: Option<String>,
}

/// What `backup create` did for one collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackedUp {
    /// The collection.
    pub collection: String,
    /// The link written, or `None` when the version was already backed up.
    pub link: Option<Link>,
    /// Files of older chains removed by pruning.
    pub pruned: Vec<String>,
}

/// What `backup create` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupCreated {
    /// The backup directory.
    pub dir: String,
    /// Each collection backed up.
    pub collections: Vec<BackedUp>,
}

/// A restored collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Restored {
    /// Its name.
    pub collection: String,
    /// The version's root (as `collection info` prints it).
    pub root: String,
    /// Its version number.
    pub version: u64,
    /// Its points.
    pub points: u64,
    /// Files read.
    pub files: usize,
    /// Blocks read.
    pub blocks: u64,
}

/// What `backup restore` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupRestored {
    /// Each collection restored.
    pub collections: Vec<Restored>,
}

impl From<BackupError> for Error {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::Io { .. } => Error::internal(e.to_string()),
            _ => Error::invalid(e.to_string()),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A version read once: its head, stored as a block.
struct Version {
    head: Cid,
    manifest: Cid,
    id: String,
    seq: u64,
    points: u64,
}

/// The folder a request names for backups, as a path on the node's machine. `backup_dir` is
/// `backup.dir`: an empty name means it, and a relative name lies under it. An absolute
/// name is taken as given when `anywhere` (the admin token, or the node's own process);
/// other callers may only name folders under `backup.dir`, so a token cannot make the daemon
/// write or read files elsewhere on its machine.
pub fn backup_folder(backup_dir: &str, asked: &str, anywhere: bool) -> Result<PathBuf, Error> {
    let root = (!backup_dir.is_empty()).then(|| PathBuf::from(backup_dir));
    let path = Path::new(asked);
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(Error::invalid(format!(
            "backup folder {asked:?} climbs out with `..`: name the folder itself"
        )));
    }
    let path = match (&root, asked.is_empty(), path.is_absolute()) {
        (Some(root), true, _) => return Ok(root.clone()),
        (None, true, _) => {
            return Err(Error::invalid(
                "no backup folder named: give the folder backups go into (e.g. \
                 /var/backups/ipvec), or set backup.dir",
            ))
        }
        (Some(root), false, false) => root.join(path),
        (None, false, false) => {
            return Err(Error::invalid(format!(
                "backup folder {asked:?} is relative: give an absolute path, or set backup.dir \
                 for relative names to lie under"
            )))
        }
        (_, false, true) => path.to_path_buf(),
    };
    if anywhere {
        return Ok(path);
    }
    match &root {
        Some(root) if resolved(&path).starts_with(resolved(root)) => Ok(path),
        Some(root) => Err(Error::forbidden(format!(
            "backup folder {asked:?} is outside backup.dir ({}): name a folder under it, or \
             send the admin token (keys/api.token) to back up elsewhere",
            root.display()
        ))),
        None => Err(Error::forbidden(format!(
            "only the admin token (keys/api.token) may name a backup folder ({asked:?}) while \
             backup.dir is unset: set backup.dir to let other tokens back up under it"
        ))),
    }
}

/// `path` with its longest existing beginning resolved (symbolic links followed), so a link
/// under `backup.dir` to a folder elsewhere is seen for where it leads.
fn resolved(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut at = path;
    loop {
        if let Ok(real) = at.canonicalize() {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                at = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

impl Node {
    /// `POST /v1/backup`: [`Node::backup_create`] into the folder `request` names (see
    /// [`backup_folder`] for `anywhere`).
    pub async fn backup_requested(
        &self,
        request: BackupRequest,
        anywhere: bool,
    ) -> Result<BackupCreated, Error> {
        let dir = backup_folder(&self.config().backup.dir, &request.dir, anywhere)?;
        self.backup_create(
            &dir,
            request.collection.as_deref(),
            request.full,
            |_, _, _| {},
        )
        .await
    }

    /// `POST /v1/backup/restore`: [`Node::backup_restore`] from the folder `request` names
    /// (see [`backup_folder`] for `anywhere`).
    pub async fn restore_requested(
        &self,
        request: RestoreRequest,
        anywhere: bool,
    ) -> Result<BackupRestored, Error> {
        let dir = backup_folder(&self.config().backup.dir, &request.dir, anywhere)?;
        self.backup_restore(
            &dir,
            request.collection.as_deref(),
            request.at.as_deref(),
            |_, _| {},
        )
        .await
    }

    /// Backs up collection `collection`, or every collection, into `dir`: a full CAR the
    /// first time (or with `full`), else the blocks added since the last backup; then drops
    /// whole chains beyond `backup.keep`. `progress` sees the blocks written.
    pub async fn backup_create(
        &self,
        dir: &Path,
        collection: Option<&str>,
        full: bool,
        mut progress: impl FnMut(&str, Totals, u64),
    ) -> Result<BackupCreated, Error> {
        let _alone = ONE_AT_A_TIME.lock().await;
        std::fs::create_dir_all(dir).map_err(|e| BackupError::io(dir, e))?;
        let mut manifest = BackupManifest::load(dir)?;
        clean_leftovers(dir, &manifest)?;
        let names = match collection {
            Some(name) => vec![name.to_string()],
            None => self
                .list_collections()
                .await?
                .collections
                .into_iter()
                .map(|c| c.name)
                .collect(),
        };
        let keep = self.config().backup.keep as usize;
        let mut created = BackupCreated {
            dir: dir.display().to_string(),
            collections: Vec::new(),
        };
        for name in names {
            let done = self
                .backup_one(dir, &mut manifest, &name, full, keep, &mut progress)
                .await?;
            created.collections.push(done);
        }
        Ok(created)
    }

    async fn backup_one(
        &self,
        dir: &Path,
        manifest: &mut BackupManifest,
        name: &str,
        full: bool,
        keep: usize,
        progress: &mut impl FnMut(&str, Totals, u64),
    ) -> Result<BackedUp, Error> {
        // Consistent: the log committed, then one read of the head.
        self.commit(name).await?;
        let _writing = self.inner.gc_lock.read().await;
        let version = self.read_version(name).await?;
        let backups = manifest.collections.get(name);
        let next = match next_link(backups, &version.head.to_string(), &version.id, keep) {
            NextLink::Incremental { .. } if full => NextLink::Full,
            next => next,
        };
        let mut base = Vec::new();
        let kind = match next {
            NextLink::Unchanged => {
                return Ok(BackedUp {
                    collection: name.to_string(),
                    link: None,
                    pruned: Vec::new(),
                })
            }
            NextLink::Full => LinkKind::Full,
            NextLink::Incremental { base: head } => {
                // The last link's head and its manifest: the head block is not pinned, the
                // manifest is (by the collection's history).
                base.push(parse_cid(&head)?);
                if let Some(last) = backups.and_then(|b| b.chains.last()?.links.last()) {
                    base.push(parse_cid(&last.version_root)?);
                }
                LinkKind::Incremental
            }
        };
        let blocks = diff::added_blocks(self.store(), &version.head, &base).await?;
        let file = manifest.take_file_name(name, kind);
        let job = self.inner.jobs.start(
            "backup",
            name.to_string(),
            "blocks",
            Some(blocks.len() as u64),
        );
        let total = blocks.len() as u64;
        let totals = carfile::write(
            self.store(),
            &version.head,
            &blocks,
            &dir.join(&file),
            |t| {
                job.set(t.blocks);
                progress(name, t, total);
            },
        )
        .await?;
        let link = Link {
            kind,
            root: version.head.to_string(),
            id: version.id,
            version_root: version.manifest.to_string(),
            version: version.seq,
            points: version.points,
            file,
            blocks: totals.blocks,
            bytes: totals.bytes,
            created: now_secs(),
        };
        let entry = manifest.collections.entry(name.to_string()).or_default();
        match kind {
            LinkKind::Full => entry.chains.push(Chain {
                links: vec![link.clone()],
            }),
            LinkKind::Incremental => match entry.chains.last_mut() {
                Some(chain) => chain.links.push(link.clone()),
                None => entry.chains.push(Chain {
                    links: vec![link.clone()],
                }),
            },
        }
        let dropped = chains_to_drop(&entry.chains, keep);
        let pruned: Vec<Chain> = entry.chains.drain(..dropped).collect();
        // The manifest first: a crash before the files go leaves unnamed files, never a
        // chain that names a missing one.
        manifest.save(dir)?;
        let mut removed = Vec::new();
        for link in pruned.iter().flat_map(|c| &c.links) {
            let path = dir.join(&link.file);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "could not remove a pruned backup file; remove it by hand");
            }
            removed.push(link.file.clone());
        }
        if !removed.is_empty() {
            sync_dir(dir).map_err(|e| BackupError::io(dir, e))?;
        }
        tracing::info!(collection = %name, file = %link.file, kind = ?link.kind, blocks = link.blocks, bytes = link.bytes, "backed up");
        Ok(BackedUp {
            collection: name.to_string(),
            link: Some(link),
            pruned: removed,
        })
    }

    /// Takes a backup of every collection into `dir` every `every` (`backup.every`), the
    /// first one `every` after the newest in the directory, until the task is stopped.
    pub async fn backup_schedule(&self, dir: PathBuf, every: std::time::Duration) {
        while !self.is_ready() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let mut last = BackupManifest::load(&dir).ok().and_then(|m| {
            m.collections
                .values()
                .flat_map(|b| &b.chains)
                .flat_map(|c| &c.links)
                .map(|l| l.created)
                .max()
        });
        loop {
            tokio::time::sleep(wait_before_next(last, every, now_secs())).await;
            last = Some(now_secs());
            match self.backup_create(&dir, None, false, |_, _, _| {}).await {
                Ok(created) => {
                    let written = created
                        .collections
                        .iter()
                        .filter(|c| c.link.is_some())
                        .count();
                    tracing::info!(dir = %dir.display(), written, "scheduled backup done");
                }
                Err(e) => {
                    tracing::error!(dir = %dir.display(), error = %e, "scheduled backup failed; the chains stay as they were, the next one is tried after backup.every");
                }
            }
        }
    }

    /// Collection `name`'s current version, read once under its lock, its head stored.
    async fn read_version(&self, name: &str) -> Result<Version, Error> {
        let shared = self.collection(name).await?;
        let (head, id, points) = {
            let c = shared.read().await;
            (c.head().clone(), c.id()?, c.manifest().points)
        };
        let head_cid = self
            .store()
            .put(pcid::DAG_CBOR, Bytes::from(dagcbor::encode(&head)?))
            .await?;
        Ok(Version {
            head: head_cid,
            manifest: head.manifest,
            id,
            seq: head.seq,
            points,
        })
    }

    /// Restores from `dir` collection `collection` (or every collection) at the newest
    /// backed-up version, or at `at` (a link's head or version root). Every file needed is
    /// read and checked before anything is stored; a collection of the same name must not
    /// exist.
    pub async fn backup_restore(
        &self,
        dir: &Path,
        collection: Option<&str>,
        at: Option<&str>,
        mut progress: impl FnMut(&str, Totals),
    ) -> Result<BackupRestored, Error> {
        let manifest = BackupManifest::load_existing(dir)?;
        let plans = restore_plans(&manifest, collection, at)?;
        let existing = self.list_collections().await?.collections;
        for (name, _) in &plans {
            if existing.iter().any(|c| &c.name == name) {
                return Err(Error::conflict(format!(
                    "collection {name} exists in this repository; drop it first (ipvec collection drop {name}) or restore into another repository (--repo)"
                )));
            }
        }
        // Check everything first (file reads and hashing, off the async workers).
        let checked = {
            let dir = dir.to_path_buf();
            let plans = plans.clone();
            tokio::task::spawn_blocking(move || {
                let mut found = Vec::new();
                for (name, links) in &plans {
                    let mut totals = Totals::default();
                    let problems = verify_chain(&dir, name, links, &mut totals, |_, _, _| Ok(()))?;
                    if !problems.is_empty() {
                        found.push((name.clone(), problems));
                    }
                }
                Ok::<_, BackupError>(found)
            })
            .await
            .map_err(|e| Error::internal(format!("checking the backup stopped: {e}")))??
        };
        if let Some((name, problems)) = checked.first() {
            return Err(Error::invalid(format!(
                "refusing to restore {name}: {} ({} problem(s); `ipvec backup verify {}` lists them all); nothing was stored",
                problems[0],
                problems.len(),
                dir.display()
            )));
        }
        let mut restored = BackupRestored {
            collections: Vec::new(),
        };
        for (name, links) in plans {
            restored
                .collections
                .push(self.restore_one(dir, &name, &links, &mut progress).await?);
        }
        Ok(restored)
    }

    async fn restore_one(
        &self,
        dir: &Path,
        name: &str,
        links: &[Link],
        progress: &mut impl FnMut(&str, Totals),
    ) -> Result<Restored, Error> {
        self.check_storage().await?;
        let _writing = self.inner.gc_lock.read().await;
        let total: u64 = links.iter().map(|l| l.blocks).sum();
        let job = self
            .inner
            .jobs
            .start("restore", name.to_string(), "blocks", Some(total));
        let mut read = Totals::default();
        for link in links {
            let path: PathBuf = dir.join(&link.file);
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| BackupError::io(&path, e))?;
            // Checked above; hashed again as it is stored, in case the file changed since.
            let before = read;
            let summary = car::import(self.store(), file, |p| {
                read = Totals {
                    blocks: before.blocks + p.blocks,
                    bytes: before.bytes + p.bytes,
                };
                job.set(read.blocks);
                progress(name, read);
            })
            .await
            .map_err(|e| {
                Error::invalid(format!(
                    "{}: changed while restoring ({e}); nothing of {name} is registered",
                    link.file
                ))
            })?;
            // The collection's own pin keeps the DAG once registered.
            for root in &summary.roots {
                self.store().unpin(root).await?;
            }
        }
        self.store().flush().await?;
        let last = links
            .last()
            .ok_or_else(|| Error::internal("a restore plan without links"))?;
        let head_cid = parse_cid(&last.root)?;
        let head: HeadRecord = dagcbor::decode(&self.store().require(&head_cid).await?)?;
        let imported = self.register(head, Some(name.to_string()), None).await?;
        Ok(Restored {
            collection: imported.name,
            root: imported.root,
            version: last.version,
            points: imported.points,
            files: links.len(),
            blocks: read.blocks,
        })
    }
}

/// For each collection to restore, the links to read: its chain up to the chosen link.
fn restore_plans(
    manifest: &BackupManifest,
    collection: Option<&str>,
    at: Option<&str>,
) -> Result<Vec<(String, Vec<Link>)>, Error> {
    let chosen: Vec<(&String, &CollectionBackups)> = match collection {
        Some(name) => match manifest.collections.get_key_value(name) {
            Some(found) => vec![found],
            None => {
                return Err(Error::not_found(format!(
                    "the backup holds no collection {name}; it holds: {}",
                    manifest
                        .collections
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        },
        None => manifest.collections.iter().collect(),
    };
    let mut plans = Vec::new();
    for (name, backups) in chosen {
        let mut found = None;
        for chain in &backups.chains {
            for (i, link) in chain.links.iter().enumerate() {
                let wanted = match at {
                    Some(at) => link.root == at || link.version_root == at,
                    None => true,
                };
                if wanted {
                    found = Some(chain.links[..=i].to_vec());
                }
            }
        }
        match found {
            Some(links) => plans.push((name.clone(), links)),
            None if at.is_some() && collection.is_none() => {}
            None => {
                return Err(Error::not_found(format!(
                    "the backup of {name} has no version {}; `ipvec backup list` shows the backed-up roots",
                    at.unwrap_or("at all")
                )))
            }
        }
    }
    if plans.is_empty() {
        return Err(Error::not_found(format!(
            "no backed-up collection has version {}; `ipvec backup list` shows the backed-up roots",
            at.unwrap_or("")
        )));
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn refused(result: Result<PathBuf, Error>) -> (&'static str, String) {
        let e = result.unwrap_err();
        (e.code(), e.to_string())
    }

    #[test]
    fn a_request_names_folders_under_backup_dir_unless_it_holds_the_admin_token() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("backups");
        std::fs::create_dir_all(&dir).unwrap();
        let backup_dir = dir.to_str().unwrap();
        assert_eq!(backup_folder(backup_dir, "", false).unwrap(), dir);
        assert_eq!(
            backup_folder(backup_dir, "daily/a", false).unwrap(),
            dir.join("daily/a")
        );
        let inside = dir.join("x");
        assert_eq!(
            backup_folder(backup_dir, inside.to_str().unwrap(), false).unwrap(),
            inside
        );
        // Outside, by an absolute path, by `..`, or through a link.
        let outside = root.path().join("other");
        std::fs::create_dir_all(&outside).unwrap();
        let (code, message) = refused(backup_folder(backup_dir, outside.to_str().unwrap(), false));
        assert_eq!(code, "forbidden");
        assert!(message.contains("outside backup.dir"), "{message}");
        assert_eq!(
            backup_folder(backup_dir, outside.to_str().unwrap(), true).unwrap(),
            outside
        );
        let (code, message) = refused(backup_folder(backup_dir, "a/../../other", true));
        assert_eq!(code, "bad_request");
        assert!(message.contains(".."), "{message}");
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();
        let (code, _) = refused(backup_folder(backup_dir, "link/deeper", false));
        assert_eq!(code, "forbidden");
        // Without backup.dir: absolute names for the admin only, nothing else.
        let (code, message) = refused(backup_folder("", "", true));
        assert_eq!(code, "bad_request");
        assert!(message.contains("set backup.dir"), "{message}");
        let (code, message) = refused(backup_folder("", "relative", true));
        assert_eq!(code, "bad_request");
        assert!(message.contains("relative"), "{message}");
        let (code, message) = refused(backup_folder("", outside.to_str().unwrap(), false));
        assert_eq!(code, "forbidden");
        assert!(message.contains("backup.dir is unset"), "{message}");
        assert_eq!(
            backup_folder("", outside.to_str().unwrap(), true).unwrap(),
            outside
        );
    }
}
