//! The peers denied at run time (`ipvec peers deny`), kept in the repository's
//! `denied_peers` file so a restart keeps refusing them: one peer id a line, `#` comments
//! and blank lines ignored. It is written whole and renamed into place, so a crash leaves
//! the old list or the new one. Peers denied in the config (`p2p.deny_peers`) are not in it.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use libp2p_identity::PeerId;

use super::{io_at, RepoError};

/// The file's name in the repository.
pub const DENIED_FILE: &str = "denied_peers";

/// The file of denied peers of the repository at `repo`.
pub fn path(repo: &Path) -> PathBuf {
    repo.join(DENIED_FILE)
}

/// The peers denied at run time in the repository at `repo` (none if the file is absent).
pub fn load(repo: &Path) -> Result<BTreeSet<PeerId>, RepoError> {
    let file = path(repo);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(io_at(&file)(e)),
    };
    parse(&text).map_err(|(line, text)| RepoError::Denied {
        path: file,
        line,
        text,
    })
}

/// The peer ids of a `denied_peers` text; the first bad line (numbered from 1) and its text.
pub fn parse(text: &str) -> Result<BTreeSet<PeerId>, (usize, String)> {
    let mut peers = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let peer = line.parse().map_err(|_| (n + 1, line.to_string()))?;
        peers.insert(peer);
    }
    Ok(peers)
}

/// Writes `peers` as the repository's run-time denied peers (whole, then renamed into place).
pub fn save(repo: &Path, peers: &BTreeSet<PeerId>) -> Result<(), RepoError> {
    use std::io::Write;
    let file = path(repo);
    let tmp = file.with_extension("tmp");
    let mut text = String::from("# Peers denied with `ipvec peers deny`, one peer id a line.\n");
    for peer in peers {
        text.push_str(&format!("{peer}\n"));
    }
    let mut out = std::fs::File::create(&tmp).map_err(io_at(&tmp))?;
    out.write_all(text.as_bytes()).map_err(io_at(&tmp))?;
    out.sync_all().map_err(io_at(&tmp))?;
    std::fs::rename(&tmp, &file).map_err(io_at(&file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_survives_a_save_and_a_load() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty(), "no file: no one");
        let peers: BTreeSet<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        save(dir.path(), &peers).unwrap();
        assert_eq!(load(dir.path()).unwrap(), peers);
        save(dir.path(), &BTreeSet::new()).unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_bad_line_is_named() {
        let peer = PeerId::random();
        let text = format!("# comment\n\n{peer}  # who\nnot-a-peer\n");
        assert_eq!(parse(&text), Err((4, "not-a-peer".to_string())));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), &text).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("line 4") && err.contains("not-a-peer") && err.contains(DENIED_FILE),
            "{err}"
        );
        assert_eq!(parse(&format!("{peer}\n")), Ok([peer].into()));
    }
}
