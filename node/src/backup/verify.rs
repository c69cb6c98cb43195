//! Checking a backup directory without a repository: every block of every file hashed
//! against its CID, and every chain complete (each link's DAG is in its file or an earlier
//! link's).

use std::{collections::HashMap, path::Path};

use cid::Cid;
use ipvec_protocol::cid as pcid;
use serde::{Deserialize, Serialize};

use super::{
    carfile::{self, Totals},
    manifest::{BackupManifest, Link},
    BackupError,
};
use crate::store::Digest;

/// Something wrong with a backup file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The collection.
    pub collection: String,
    /// The file, relative to the backup directory.
    pub file: String,
    /// The block to blame, when there is one.
    pub block: Option<String>,
    /// What is wrong and what to do.
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.block {
            Some(block) => write!(f, "{}: block {block}: {}", self.file, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

/// What [`verify`] checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Collections checked.
    pub collections: usize,
    /// Chains checked.
    pub chains: usize,
    /// Files (links) checked.
    pub files: usize,
    /// Blocks hashed.
    pub blocks: u64,
    /// Block bytes hashed.
    pub bytes: u64,
    /// What is wrong; empty when the backup is good.
    pub problems: Vec<Problem>,
}

/// Checks the links of one chain in order, up to and including `links.last()`: every block
/// of every file, and each link's DAG complete. `each` sees every checked block with the
/// index of its link. Returns the problems found (none: the chain restores).
pub fn verify_chain(
    dir: &Path,
    collection: &str,
    links: &[Link],
    totals: &mut Totals,
    mut each: impl FnMut(usize, &Cid, &[u8]) -> Result<(), BackupError>,
) -> Result<Vec<Problem>, BackupError> {
    let mut problems = Vec::new();
    let mut known: HashMap<Digest, Vec<Cid>> = HashMap::new();
    for (i, link) in links.iter().enumerate() {
        let problem = |block: Option<String>, reason: String| Problem {
            collection: collection.to_string(),
            file: link.file.clone(),
            block,
            reason,
        };
        let path = dir.join(&link.file);
        if !path.exists() {
            problems.push(problem(
                None,
                "the file is missing; put it back from a copy of the backup directory, or take a new full backup (ipvec backup create --full)".into(),
            ));
            continue;
        }
        let contents = match carfile::read(&path, |cid, data| each(i, cid, data))? {
            Ok(contents) => contents,
            Err(damage) => {
                problems.push(problem(
                    damage.block,
                    format!(
                        "damaged at byte {}: {}; this link and the ones after it cannot be restored: put the file back from a copy, restore an earlier version (--at), or take a new full backup (ipvec backup create --full)",
                        damage.offset, damage.reason
                    ),
                ));
                continue;
            }
        };
        totals.blocks += contents.totals.blocks;
        totals.bytes += contents.totals.bytes;
        if contents.roots.len() != 1 || contents.roots[0].to_string() != link.root {
            problems.push(problem(
                None,
                format!(
                    "the file's root is not {}, the one the manifest names; the file was replaced: put the right file back",
                    link.root
                ),
            ));
            continue;
        }
        if (contents.totals.blocks, contents.totals.bytes) != (link.blocks, link.bytes) {
            problems.push(problem(
                None,
                format!(
                    "the file holds {} blocks ({} bytes), the manifest says {} ({}); the file was replaced: put the right file back",
                    contents.totals.blocks, contents.totals.bytes, link.blocks, link.bytes
                ),
            ));
        }
        known.extend(contents.links);
        if let Some(missing) = first_missing(&known, &contents.roots[0]) {
            problems.push(problem(
                Some(missing.to_string()),
                "is reachable from the file's root but is in neither this file nor an earlier link of its chain; the chain is broken here: restore an earlier version (--at) or take a new full backup (ipvec backup create --full)".into(),
            ));
        }
    }
    Ok(problems)
}

/// The first block under `root` that `known` lacks.
fn first_missing(known: &HashMap<Digest, Vec<Cid>>, root: &Cid) -> Option<Cid> {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![*root];
    while let Some(cid) = stack.pop() {
        let Ok(digest) = pcid::digest(&cid) else {
            return Some(cid);
        };
        if !seen.insert(digest) {
            continue;
        }
        match known.get(&digest) {
            Some(links) => stack.extend(links.iter().copied()),
            None => return Some(cid),
        }
    }
    None
}

/// Checks every chain of every collection in the backup directory `dir`.
pub fn verify(dir: &Path, mut progress: impl FnMut(Totals)) -> Result<VerifyReport, BackupError> {
    let manifest = BackupManifest::load_existing(dir)?;
    let mut report = VerifyReport::default();
    let mut totals = Totals::default();
    for (name, backups) in &manifest.collections {
        report.collections += 1;
        for chain in &backups.chains {
            report.chains += 1;
            report.files += chain.links.len();
            let before = totals;
            let mut seen = Totals::default();
            let problems = verify_chain(dir, name, &chain.links, &mut totals, |_, _, data| {
                seen.blocks += 1;
                seen.bytes += data.len() as u64;
                progress(Totals {
                    blocks: before.blocks + seen.blocks,
                    bytes: before.bytes + seen.bytes,
                });
                Ok(())
            })?;
            report.problems.extend(problems);
        }
    }
    report.blocks = totals.blocks;
    report.bytes = totals.bytes;
    Ok(report)
}
