//! The collections folder of a repository: one folder per collection.
//!
//! ```text
//! collections/<name>/owner.key     the collection's owner key (libp2p protobuf, mode 0600)
//! collections/<name>/head          the signed head record (DAG-CBOR): the current manifest
//! collections/<name>/shards        the shards held, when only some are (DAG-CBOR list)
//! collections/<name>/merge         with several writers: each one's newest head merged here,
//!                                   and the merge's own manifest when no head names it
//! collections/<name>/index/held.{usearch,keys}
//!                                   the saved index of the held shards and its key map,
//!                                   tagged with their roots (derived, may be deleted)
//! collections/.creating-<name>.*   a collection being created, renamed to `<name>` once whole
//! collections/.dropped-<name>.*    a dropped collection being removed
//! ```
//!
//! A collection name has no dot, so the catalog never lists the last two. Creating and
//! dropping each end or begin with one rename, so a crash leaves the collection whole or
//! gone, plus perhaps a leftover folder that [`sweep`] removes when a node next opens the
//! repository.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use cid::Cid;
use ipvec_protocol::{dagcbor, head::HeadRecord};
use libp2p_identity::Keypair;
use serde::{Deserialize, Serialize};

use super::{io_at, CollectionError};

/// Checks a collection name: 1 to 64 letters, digits, `-` or `_`.
pub fn check_name(name: &str) -> Result<(), CollectionError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(CollectionError::Invalid(format!(
            "collection name {name:?} is invalid: use 1 to 64 letters, digits, '-' or '_'"
        )))
    }
}

/// Names a new collection may not take: they are words of the API's paths
/// (`/v1/collections/import`, `/v1/collections/fetch`).
pub const RESERVED_NAMES: &[&str] = &["import", "fetch"];

/// Checks the name of a collection about to be created or registered: a valid name
/// ([`check_name`]) that is not one of the [`RESERVED_NAMES`].
pub fn check_new_name(name: &str) -> Result<(), CollectionError> {
    check_name(name)?;
    if RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(CollectionError::Invalid(format!(
            "collection name {name:?} is reserved (the API uses it in its paths: {}); choose another name",
            RESERVED_NAMES.join(", ")
        )));
    }
    Ok(())
}

/// The folder of collection `name` under `root`.
pub fn dir_of(root: &Path, name: &str) -> Result<PathBuf, CollectionError> {
    check_name(name)?;
    Ok(root.join(name))
}

/// Marks the folder of a collection being created.
const CREATING: &str = ".creating-";
/// Marks the folder of a dropped collection being removed.
const DROPPED: &str = ".dropped-";

/// Whether `dir` holds a whole collection (its head is written last).
pub fn exists(dir: &Path) -> bool {
    dir.join("head").exists()
}

/// A folder name under `root` the catalog never lists, unique in this process and marked
/// with `mark` (and the collection name, for whoever looks at the folder).
fn hidden_dir(root: &Path, mark: &str, name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    root.join(format!("{mark}{name}.{}-{n}", std::process::id()))
}

/// A fresh folder, out of the catalog's sight, to create collection `name` in; [`publish`]
/// then puts it in place.
pub fn staging_dir(root: &Path, name: &str) -> Result<PathBuf, CollectionError> {
    check_name(name)?;
    std::fs::create_dir_all(root).map_err(io_at(root))?;
    Ok(hidden_dir(root, CREATING, name))
}

/// Puts a collection created in `staged` in place at `dir` with one rename (a headless
/// folder a crash left at `dir` is removed first).
pub fn publish(staged: &Path, dir: &Path) -> Result<(), CollectionError> {
    if dir.exists() && !exists(dir) {
        std::fs::remove_dir_all(dir).map_err(io_at(dir))?;
    }
    std::fs::rename(staged, dir).map_err(io_at(dir))?;
    sync_parent(dir)
}

/// Takes collection `name` out of the catalog with one rename, to a folder the catalog never
/// lists; returns that folder, which the caller removes.
pub fn bury(root: &Path, name: &str) -> Result<PathBuf, CollectionError> {
    let dir = dir_of(root, name)?;
    if !exists(&dir) {
        return Err(CollectionError::NotFound(name.to_string()));
    }
    let grave = hidden_dir(root, DROPPED, name);
    std::fs::rename(&dir, &grave).map_err(io_at(&dir))?;
    sync_parent(&grave)?;
    Ok(grave)
}

/// Removes the folders of creates and drops that a crash cut short; returns how many went.
/// Run it before the node serves requests (it would remove a create in progress).
pub fn sweep(root: &Path) -> Result<usize, CollectionError> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_at(root)(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(io_at(root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(CREATING) || name.starts_with(DROPPED) {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(io_at(&path))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Makes a rename or removal in `path`'s parent folder durable.
fn sync_parent(path: &Path) -> Result<(), CollectionError> {
    match path.parent() {
        Some(parent) => std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_at(parent)),
        None => Ok(()),
    }
}

/// Names of the collections under `root`, sorted.
pub fn list(root: &Path) -> Result<Vec<String>, CollectionError> {
    let mut names = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(io_at(root)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_at(root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if check_name(&name).is_ok() && exists(&entry.path()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CollectionError> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&tmp).map_err(io_at(&tmp))?;
        file.write_all(bytes).map_err(io_at(&tmp))?;
        file.sync_all().map_err(io_at(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io_at(path))?;
    sync_parent(path)
}

/// Creates a collection's folder with its owner key (none for an imported, read-only
/// collection) and first head.
pub(crate) fn write_new(
    dir: &Path,
    owner: Option<&Keypair>,
    head: &HeadRecord,
) -> Result<(), CollectionError> {
    if dir.join("head").exists() {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Err(CollectionError::Exists(name));
    }
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    let Some(owner) = owner else {
        return write_head(dir, head, 0);
    };
    let key_path = dir.join("owner.key");
    let key = owner
        .to_protobuf_encoding()
        .map_err(|e| CollectionError::Invalid(format!("cannot encode the owner key: {e}")))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&key_path).map_err(io_at(&key_path))?;
    file.write_all(&key).map_err(io_at(&key_path))?;
    file.sync_all().map_err(io_at(&key_path))?;
    // The head goes last: its presence marks a complete collection.
    write_head(dir, head, 0)
}

/// Creates the folder of a collection registered without its owner key, holding the shards
/// `held` only (all when `None`).
pub(crate) fn write_new_partial(
    dir: &Path,
    head: &HeadRecord,
    held: Option<&[u32]>,
) -> Result<(), CollectionError> {
    if let Some(held) = held {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        write_held(dir, held)?;
    }
    write_new(dir, None, head)
}

/// Records that the collection holds the shards `held` only.
pub(crate) fn write_held(dir: &Path, held: &[u32]) -> Result<(), CollectionError> {
    write_atomic(&dir.join("shards"), &dagcbor::encode(&held)?)
}

/// The shards a collection's folder holds, when only some (`None`: all of them).
pub(crate) fn read_held(dir: &Path) -> Result<Option<Vec<u32>>, CollectionError> {
    let path = dir.join("shards");
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(dagcbor::decode(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_at(&path)(e)),
    }
}

/// Removes the one-file index cache of older versions (each shard has its own now).
pub(crate) fn remove_legacy_index(dir: &Path) {
    for name in ["index.usearch", "index.keys"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
}

/// The merge file of a collection with several writers: the newest head of each writer whose
/// version is merged here, and the manifest of the merge when no head names it (a replica's
/// merge of several writers' versions). Absent while one writer's versions are all there is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MergeFile {
    /// The manifest the collection is at, when it is a merge no head names.
    pub(crate) manifest: Option<Cid>,
    /// The newest head of each writer merged here.
    pub(crate) heads: Vec<HeadRecord>,
}

/// Writes the merge file.
pub(crate) fn write_merge(dir: &Path, merge: &MergeFile) -> Result<(), CollectionError> {
    write_atomic(&dir.join("merge"), &dagcbor::encode(merge)?)
}

/// Reads the merge file, if the collection has one.
pub(crate) fn read_merge(dir: &Path) -> Result<Option<MergeFile>, CollectionError> {
    let path = dir.join("merge");
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(dagcbor::decode(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_at(&path)(e)),
    }
}

/// The head file: the signed head, and the last write-ahead log record its trees hold.
#[derive(Serialize, Deserialize)]
struct HeadFile {
    head: HeadRecord,
    wal: u64,
}

/// Replaces the head file.
pub(crate) fn write_head(dir: &Path, head: &HeadRecord, wal: u64) -> Result<(), CollectionError> {
    write_atomic(
        &dir.join("head"),
        &dagcbor::encode(&HeadFile {
            head: head.clone(),
            wal,
        })?,
    )
}

/// Reads a collection's owner key (absent for an imported collection), head, and the last log
/// record the head's trees hold.
pub(crate) fn read(dir: &Path) -> Result<(Option<Keypair>, HeadRecord, u64), CollectionError> {
    let head_path = dir.join("head");
    let bytes = match std::fs::read(&head_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Err(CollectionError::NotFound(name));
        }
        Err(e) => return Err(io_at(&head_path)(e)),
    };
    let HeadFile { head, wal } = dagcbor::decode(&bytes)?;
    let key_path = dir.join("owner.key");
    let key_bytes = match std::fs::read(&key_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, head, wal)),
        Err(e) => return Err(io_at(&key_path)(e)),
    };
    let owner = Keypair::from_protobuf_encoding(&key_bytes).map_err(|e| {
        CollectionError::Invalid(format!(
            "owner key {} is unreadable: {e}",
            key_path.display()
        ))
    })?;
    Ok((Some(owner), head, wal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["docs", "fashion-mnist", "a_1", &"x".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "../etc", "a b", "é", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
            assert!(check_new_name(bad).is_err(), "{bad}");
        }
        for reserved in ["import", "fetch", "Import"] {
            assert!(
                check_name(reserved).is_ok(),
                "existing folders stay reachable"
            );
            let e = check_new_name(reserved).unwrap_err().to_string();
            assert!(e.contains("reserved"), "{e}");
        }
    }

    /// A folder with a head file, as the catalog sees a whole collection.
    fn fake_collection(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("head"), b"head").unwrap();
        std::fs::write(dir.join("wal"), b"").unwrap();
    }

    fn folders(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_buried_collection_leaves_the_list_and_the_sweep_removes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("collections");
        fake_collection(&root.join("a"));
        fake_collection(&root.join("b"));
        let grave = bury(&root, "a").unwrap();
        assert!(
            grave.join("head").exists(),
            "the rename moves the folder whole"
        );
        assert_eq!(list(&root).unwrap(), ["b"]);
        assert!(matches!(bury(&root, "a"), Err(CollectionError::NotFound(n)) if n == "a"));
        // A crash before the removal: the next sweep finishes it.
        assert_eq!(sweep(&root).unwrap(), 1);
        assert_eq!(folders(&root), ["b"]);
        assert_eq!(sweep(&root).unwrap(), 0);
    }

    #[test]
    fn the_sweep_removes_cut_short_creates_and_keeps_collections() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("collections");
        assert_eq!(sweep(&root).unwrap(), 0, "no collections folder yet");
        fake_collection(&root.join("kept"));
        // A create cut short before and after its head was written.
        std::fs::create_dir_all(staging_dir(&root, "x").unwrap()).unwrap();
        fake_collection(&staging_dir(&root, "x").unwrap());
        assert_eq!(
            list(&root).unwrap(),
            ["kept"],
            "staged folders are not listed"
        );
        assert_eq!(sweep(&root).unwrap(), 2);
        assert_eq!(folders(&root), ["kept"]);
        assert_eq!(list(&root).unwrap(), ["kept"]);
    }

    #[test]
    fn publish_puts_a_staged_collection_in_place_over_a_headless_leftover() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("collections");
        let staged = staging_dir(&root, "c").unwrap();
        assert_ne!(
            staged,
            staging_dir(&root, "c").unwrap(),
            "each create has its own"
        );
        fake_collection(&staged);
        // Left by a crash of an older version mid-create: a folder without a head.
        std::fs::create_dir_all(root.join("c")).unwrap();
        std::fs::write(root.join("c").join("owner.key"), b"old").unwrap();
        publish(&staged, &root.join("c")).unwrap();
        assert_eq!(list(&root).unwrap(), ["c"]);
        assert_eq!(folders(&root), ["c"]);
        assert!(!root.join("c").join("owner.key").exists());
        assert!(staging_dir(&root, "../c").is_err(), "names are checked");
    }
}
