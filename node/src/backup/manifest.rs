//! The backup directory's manifest (`backup.json`): every collection's chains of CAR files,
//! and the pure decisions made on it: what the next link is, which chains pruning drops.
//!
//! A chain is a full CAR followed by incremental CARs, each holding only the blocks its
//! version added to the one before. Restoring link `k` reads links `0..=k`, so a chain is
//! only ever dropped whole, oldest chain first.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::BackupError;

/// The manifest's file name inside a backup directory.
pub const MANIFEST_FILE: &str = "backup.json";
/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

/// Whether a link holds its whole DAG or only what changed since the link before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    /// Every block reachable from the root: the start of a chain.
    Full,
    /// The blocks reachable from the root and not from the previous link's root.
    Incremental,
}

/// One backed-up version: one CAR file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Link {
    /// Full or incremental.
    pub kind: LinkKind,
    /// The CAR's root: the collection's signed head record at this version.
    pub root: String,
    /// The collection's id (its owner's key), the same in every link of a chain.
    pub id: String,
    /// The version's root (the collection manifest CID `collection info` prints).
    pub version_root: String,
    /// The version number.
    pub version: u64,
    /// Points in the version.
    pub points: u64,
    /// The CAR file, relative to the backup directory.
    pub file: String,
    /// Blocks in the file.
    pub blocks: u64,
    /// Block bytes in the file (CIDs and framing excluded).
    pub bytes: u64,
    /// When the backup was taken, in seconds since the Unix epoch (UTC).
    pub created: u64,
}

/// A full link and the incremental links that follow it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// Oldest first; the first is full.
    pub links: Vec<Link>,
}

/// One collection's backups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionBackups {
    /// Oldest first.
    pub chains: Vec<Chain>,
}

/// The manifest: `backup.json` in the backup directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// The format version ([`FORMAT`]).
    pub format: u32,
    /// Number of the next CAR file (file names are unique within the directory).
    pub next_file: u64,
    /// By collection name.
    pub collections: BTreeMap<String, CollectionBackups>,
}

impl Default for BackupManifest {
    fn default() -> Self {
        Self {
            format: FORMAT,
            next_file: 1,
            collections: BTreeMap::new(),
        }
    }
}

/// What the next backup of a collection writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextLink {
    /// The version is the last link's: nothing to write.
    Unchanged,
    /// A new chain.
    Full,
    /// The blocks not reachable from `base` (the last link's root).
    Incremental {
        /// The previous link's root.
        base: String,
    },
}

/// Decides the next link of a collection whose current version has root `root` and id `id`:
/// a new full chain when there is none, when the last chain belongs to another collection
/// of the same name, or when it already has `max_links` links (0: no limit).
pub fn next_link(
    backups: Option<&CollectionBackups>,
    root: &str,
    id: &str,
    max_links: usize,
) -> NextLink {
    let Some(chain) = backups.and_then(|b| b.chains.last()) else {
        return NextLink::Full;
    };
    let Some(last) = chain.links.last() else {
        return NextLink::Full;
    };
    if last.id != id {
        return NextLink::Full;
    }
    if last.root == root {
        return NextLink::Unchanged;
    }
    if max_links > 0 && chain.links.len() >= max_links {
        return NextLink::Full;
    }
    NextLink::Incremental {
        base: last.root.clone(),
    }
}

/// How many of the oldest chains pruning drops so that at least `keep` links (restorable
/// versions) stay, counting from the newest (0: keep everything). Whole chains only: the
/// newest chain always stays, and a chain stays if dropping it would leave fewer than
/// `keep` links.
pub fn chains_to_drop(chains: &[Chain], keep: usize) -> usize {
    if keep == 0 {
        return 0;
    }
    let mut remaining: usize = chains.iter().map(|c| c.links.len()).sum();
    let mut dropped = 0;
    for chain in &chains[..chains.len().saturating_sub(1)] {
        if remaining - chain.links.len() < keep {
            break;
        }
        remaining -= chain.links.len();
        dropped += 1;
    }
    dropped
}

impl BackupManifest {
    /// The manifest of `dir`, or an empty one if the directory holds none yet.
    pub fn load(dir: &Path) -> Result<Self, BackupError> {
        let path = dir.join(MANIFEST_FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(BackupError::io(&path, e)),
        };
        let manifest: Self = serde_json::from_slice(&text).map_err(|e| BackupError::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if manifest.format != FORMAT {
            return Err(BackupError::Manifest {
                path,
                reason: format!(
                    "format {} is not format {FORMAT}, the one this ipvec reads; use the ipvec version that wrote it",
                    manifest.format
                ),
            });
        }
        Ok(manifest)
    }

    /// The manifest of `dir`, which must have one (verify, restore).
    pub fn load_existing(dir: &Path) -> Result<Self, BackupError> {
        if !dir.join(MANIFEST_FILE).exists() {
            return Err(BackupError::NotABackup(dir.to_path_buf()));
        }
        Self::load(dir)
    }

    /// Writes the manifest into `dir` atomically: a temporary file, fsynced, renamed over
    /// the old one, then the directory fsynced.
    pub fn save(&self, dir: &Path) -> Result<(), BackupError> {
        let path = dir.join(MANIFEST_FILE);
        let tmp = dir.join(format!(".{MANIFEST_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self).map_err(|e| BackupError::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&text)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            sync_dir(dir)
        })();
        written.map_err(|e| BackupError::io(&path, e))
    }

    /// The name of the next CAR file for `collection` and `kind`, and counts it.
    pub fn take_file_name(&mut self, collection: &str, kind: LinkKind) -> String {
        let n = self.next_file;
        self.next_file += 1;
        let kind = match kind {
            LinkKind::Full => "full",
            LinkKind::Incremental => "incr",
        };
        format!("{collection}.{n:06}.{kind}.car")
    }

    /// Every file a link names, with its path.
    pub fn files(&self, dir: &Path) -> Vec<PathBuf> {
        self.collections
            .values()
            .flat_map(|b| &b.chains)
            .flat_map(|c| &c.links)
            .map(|l| dir.join(&l.file))
            .collect()
    }
}

/// Whether `name` is spelled as [`BackupManifest::take_file_name`] spells backup files:
/// `COLLECTION.NNNNNN.full.car` or `COLLECTION.NNNNNN.incr.car`.
pub fn is_backup_file_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    matches!(
        parts.as_slice(),
        [collection, n, "full" | "incr", "car"]
            if !collection.is_empty()
                && n.len() == 6
                && n.bytes().all(|b| b.is_ascii_digit())
    )
}

/// Fsyncs a directory, so a rename inside it survives a power loss.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(kind: LinkKind, root: &str) -> Link {
        Link {
            kind,
            root: root.into(),
            id: "c1".into(),
            version_root: format!("v-{root}"),
            version: 1,
            points: 1,
            file: format!("{root}.car"),
            blocks: 1,
            bytes: 1,
            created: 0,
        }
    }

    fn chain(len: usize, tag: &str) -> Chain {
        let mut links = vec![link(LinkKind::Full, &format!("{tag}0"))];
        for i in 1..len {
            links.push(link(LinkKind::Incremental, &format!("{tag}{i}")));
        }
        Chain { links }
    }

    #[test]
    fn next_link_starts_chains_continues_them_and_skips_unchanged_versions() {
        assert_eq!(next_link(None, "r", "c1", 3), NextLink::Full);
        let backups = CollectionBackups {
            chains: vec![chain(2, "a")],
        };
        assert_eq!(
            next_link(Some(&backups), "new", "c1", 3),
            NextLink::Incremental { base: "a1".into() }
        );
        assert_eq!(
            next_link(Some(&backups), "a1", "c1", 3),
            NextLink::Unchanged
        );
        // Another collection under the same name: its blocks have nothing to do with these.
        assert_eq!(next_link(Some(&backups), "new", "c2", 3), NextLink::Full);
        // A chain at its length limit ends; unlimited chains go on.
        assert_eq!(next_link(Some(&backups), "new", "c1", 2), NextLink::Full);
        assert_eq!(
            next_link(Some(&backups), "new", "c1", 0),
            NextLink::Incremental { base: "a1".into() }
        );
    }

    #[test]
    fn pruning_drops_whole_old_chains_and_keeps_at_least_keep_links() {
        let chains = vec![chain(3, "a"), chain(3, "b"), chain(1, "c")];
        assert_eq!(chains_to_drop(&chains, 0), 0);
        // Keeping 4 links: dropping chain a leaves 4.
        assert_eq!(chains_to_drop(&chains, 4), 1);
        assert_eq!(chains_to_drop(&chains, 5), 0);
        // Keeping 1: only the newest chain stays.
        assert_eq!(chains_to_drop(&chains, 1), 2);
        // The newest chain stays even if it alone holds more than asked.
        assert_eq!(chains_to_drop(&[chain(5, "a")], 1), 0);
    }

    /// Every keep value, every shape of chains: what stays is a suffix of whole chains, each
    /// starting with its full link, holding at least `keep` links (or all there were).
    #[test]
    fn no_kept_link_ever_lacks_its_ancestors() {
        let shapes: Vec<Vec<usize>> = vec![
            vec![1],
            vec![4],
            vec![1, 1, 1],
            vec![3, 1, 4],
            vec![2, 5, 2, 1],
            vec![6, 6, 6],
        ];
        for shape in shapes {
            let chains: Vec<Chain> = shape
                .iter()
                .enumerate()
                .map(|(i, len)| chain(*len, &format!("k{i}-")))
                .collect();
            let total: usize = shape.iter().sum();
            for keep in 0..=total + 2 {
                let dropped = chains_to_drop(&chains, keep);
                let kept = &chains[dropped..];
                assert!(
                    !kept.is_empty(),
                    "{shape:?} keep {keep}: the newest chain stays"
                );
                for c in kept {
                    assert_eq!(c.links[0].kind, LinkKind::Full);
                    assert!(c.links[1..].iter().all(|l| l.kind == LinkKind::Incremental));
                }
                let kept_links: usize = kept.iter().map(|c| c.links.len()).sum();
                if keep == 0 || keep >= total {
                    assert_eq!(dropped, 0, "{shape:?} keep {keep}");
                } else {
                    assert!(
                        kept_links >= keep,
                        "{shape:?} keep {keep}: {kept_links} kept"
                    );
                    // Dropping one more chain would have kept too few.
                    if dropped + 1 < chains.len() {
                        assert!(kept_links - kept[0].links.len() < keep);
                    }
                }
            }
        }
    }

    #[test]
    fn manifest_saves_atomically_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            BackupManifest::load(dir.path()).unwrap(),
            BackupManifest::default()
        );
        let mut m = BackupManifest::default();
        let file = m.take_file_name("docs", LinkKind::Full);
        assert_eq!(file, "docs.000001.full.car");
        m.collections.insert(
            "docs".into(),
            CollectionBackups {
                chains: vec![chain(2, "a")],
            },
        );
        m.save(dir.path()).unwrap();
        assert_eq!(BackupManifest::load(dir.path()).unwrap(), m);
        assert!(!dir.path().join(".backup.json.tmp").exists());
        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            b"{\"format\": 9, \"next_file\": 1, \"collections\": {}}",
        )
        .unwrap();
        let err = BackupManifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("format 9"), "{err}");
    }

    #[test]
    fn leftovers_are_temporaries_and_backup_files_the_manifest_does_not_name() {
        assert!(is_backup_file_name("docs.000007.full.car"));
        assert!(is_backup_file_name("my-docs_2.000123.incr.car"));
        for other in [
            "docs.7.full.car",
            "docs.000007.full.car.bak",
            "notes.car",
            ".docs.000007.full.car.tmp",
            "backup.json",
        ] {
            assert!(!is_backup_file_name(other), "{other}");
        }
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = BackupManifest::default();
        let named = manifest.take_file_name("c", LinkKind::Full);
        let mut kept = link(LinkKind::Full, "r");
        kept.file = named.clone();
        manifest.collections.insert(
            "c".into(),
            CollectionBackups {
                chains: vec![Chain { links: vec![kept] }],
            },
        );
        // Pruned after the manifest was saved, written before a manifest that never came, a
        // half-written one, and a file of the user's.
        let stray_pruned = "c.000000.full.car";
        let stray_unsaved = manifest.take_file_name("c", LinkKind::Incremental);
        let temporary = format!(".{stray_unsaved}.tmp");
        for file in [
            &named,
            stray_pruned,
            &stray_unsaved,
            &temporary,
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(file), b"x").unwrap();
        }
        assert_eq!(
            crate::backup::clean_leftovers(dir.path(), &manifest).unwrap(),
            3
        );
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [named, "notes.txt".to_string()]);
    }
}
