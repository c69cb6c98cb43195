//! The collections folder of a repository: one folder per collection.
//!
//! ```text
//! collections/<name>/owner.key     the collection's owner key (libp2p protobuf, mode 0600)
//! collections/<name>/head          the signed head record (DAG-CBOR): the current manifest
//! collections/<name>/index.*       the saved index and key map (derived, may be deleted)
//! ```

use std::{
    io::Write,
    path::{Path, PathBuf},
};

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
        if entry.path().join("head").exists() {
            names.push(entry.file_name().to_string_lossy().into_owned());
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
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_at(parent))?;
    }
    Ok(())
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
}
