//! One process at a time per repository: an advisory lock on `repo.lock`, held for as long
//! as the repository is open. The file names the process holding it, so a second opener can
//! say who is in the way.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, Write},
    path::{Path, PathBuf},
};

use super::RepoError;

/// The lock file's name in the repository folder.
pub const LOCK_FILE: &str = "repo.lock";

/// A held repository lock; dropping it releases the lock.
#[derive(Debug)]
pub struct RepoLock {
    _file: File,
}

impl RepoLock {
    /// Takes the lock on the repository at `repo`, or says which process holds it.
    pub fn acquire(repo: &Path) -> Result<RepoLock, RepoError> {
        let path = repo.join(LOCK_FILE);
        let io = |source| RepoError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(RepoError::Locked {
                    path: repo.to_path_buf(),
                    holder: holder.trim().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let command: Vec<String> = std::env::args().collect();
        let holder = format!("pid {} ({})\n", std::process::id(), command.join(" "));
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(holder.as_bytes()).map_err(io)?;
        Ok(RepoLock { _file: file })
    }
}

/// The path of the lock file of the repository at `repo`.
pub fn lock_path(repo: &Path) -> PathBuf {
    repo.join(LOCK_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = RepoLock::acquire(dir.path()).unwrap();
        match RepoLock::acquire(dir.path()) {
            Err(RepoError::Locked { holder, .. }) => {
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                )
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        RepoLock::acquire(dir.path()).unwrap();
        assert!(lock_path(dir.path()).exists());
    }
}
