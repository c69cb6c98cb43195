//! API tokens besides the admin token (keys/api.token): each has a name and a role, and only
//! its BLAKE3 hash is stored, in the repository's `keys/tokens.json` (mode 0600, written whole
//! and renamed into place). `ipvec token create/list/revoke` edit the file; the daemon reads
//! it again when it changes, so a new token works and a revoked one stops at once.
//!
//! The daemon records which token created each collection in `keys/token_owners.json` (only
//! the daemon writes that file), for the per-token quotas.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::SystemTime,
};

use serde::{Deserialize, Serialize};

/// The tokens file's name under `keys/`.
pub const TOKENS_FILE: &str = "tokens.json";
/// The owners file's name under `keys/`.
pub const OWNERS_FILE: &str = "token_owners.json";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads and searches only.
    Read,
    /// Reads and writes.
    Write,
}

impl Role {
    /// Its name, as `--role` takes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" | "read-only" | "ro" => Ok(Role::Read),
            "write" | "read-write" | "rw" => Ok(Role::Write),
            other => Err(format!("unknown role {other:?}: use read or write")),
        }
    }
}

/// One token as stored: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Unique name, shown in lists and error messages.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// BLAKE3 of the token, hex.
    pub hash: String,
    /// When it was made, seconds since 1970.
    pub created: u64,
}

/// The tokens file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    /// Every token, in the order made.
    pub tokens: Vec<TokenRecord>,
}

/// A failure reading or changing the token files.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not what this version writes.
    #[error("{path} is not a valid token file ({reason}); fix or remove it (removing it revokes every token it lists)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A name that is taken, empty or not plain.
    #[error("{0}")]
    Name(String),
}

/// The tokens file of the repository at `repo`.
pub fn tokens_path(repo: &Path) -> PathBuf {
    repo.join("keys").join(TOKENS_FILE)
}

/// The owners file of the repository at `repo`.
pub fn owners_path(repo: &Path) -> PathBuf {
    repo.join("keys").join(OWNERS_FILE)
}

/// The BLAKE3 hash of `token`, hex.
pub fn hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

fn read_json<T: Default + for<'de> Deserialize<'de>>(path: &Path) -> Result<T, TokenError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| TokenError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(source) => Err(TokenError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `value` to `path` whole, then renames it into place (mode 0600).
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), TokenError> {
    use std::io::Write;
    let io = |source| TokenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| io(std::io::Error::other(e)))?;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The tokens of the repository at `repo` (none if the file is absent).
pub fn load(repo: &Path) -> Result<TokenFile, TokenError> {
    read_json(&tokens_path(repo))
}

/// Makes a token named `name` with `role`; the token itself, shown once and never stored.
pub fn create(repo: &Path, name: &str, role: Role) -> Result<String, TokenError> {
    let name = name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(TokenError::Name(format!(
            "token name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
        )));
    }
    let mut file = load(repo)?;
    if name == "admin" || file.tokens.iter().any(|t| t.name == name) {
        return Err(TokenError::Name(format!(
            "a token named {name:?} exists already; pick another name or revoke it first"
        )));
    }
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let token = format!("ipvec_{}", hex::encode(bytes));
    let created = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    file.tokens.push(TokenRecord {
        name: name.to_string(),
        role,
        hash: hash(&token),
        created,
    });
    write_json(&tokens_path(repo), &file)?;
    Ok(token)
}

/// Revokes the token named `name`; whether there was one.
pub fn revoke(repo: &Path, name: &str) -> Result<bool, TokenError> {
    let mut file = load(repo)?;
    let before = file.tokens.len();
    file.tokens.retain(|t| t.name != name.trim());
    if file.tokens.len() == before {
        return Ok(false);
    }
    write_json(&tokens_path(repo), &file)?;
    Ok(true)
}

/// Which token created each collection: collection name → token name.
pub type Owners = BTreeMap<String, String>;

/// The owners of the repository at `repo`.
pub fn load_owners(repo: &Path) -> Result<Owners, TokenError> {
    read_json(&owners_path(repo))
}

/// Records `owners` for the repository at `repo`.
pub fn save_owners(repo: &Path, owners: &Owners) -> Result<(), TokenError> {
    write_json(&owners_path(repo), owners)
}

/// A token the daemon knows: its name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// Its name.
    pub name: Arc<str>,
    /// Its role.
    pub role: Role,
}

#[derive(Debug, Default)]
struct Loaded {
    by_hash: HashMap<String, Known>,
    /// The file's modification time and length when read (`None`: absent).
    stamp: Option<(SystemTime, u64)>,
}

/// The daemon's view of the tokens file, read again whenever the file changes.
#[derive(Debug, Clone)]
pub struct TokenTable {
    path: Option<PathBuf>,
    loaded: Arc<RwLock<Loaded>>,
}

impl TokenTable {
    /// The tokens of the repository at `repo`.
    pub fn of_repo(repo: &Path) -> Self {
        let table = Self {
            path: Some(tokens_path(repo)),
            loaded: Default::default(),
        };
        table.refresh();
        table
    }

    /// No tokens besides the admin token (a router built without a repository).
    pub fn none() -> Self {
        Self {
            path: None,
            loaded: Default::default(),
        }
    }

    /// The token whose hash is `token`'s, if any (the file is read again first if it
    /// changed since).
    pub fn find(&self, token: &str) -> Option<Known> {
        self.refresh();
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        loaded.by_hash.get(&hash(token)).cloned()
    }

    /// Reads the file again if its time or length changed. A file that cannot be read or
    /// parsed leaves no token valid (logged), so a damaged file never widens access.
    fn refresh(&self) {
        let Some(path) = &self.path else { return };
        let stamp = std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        {
            let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
            if loaded.stamp == stamp && (stamp.is_some() || loaded.by_hash.is_empty()) {
                return;
            }
        }
        let by_hash = match read_json::<TokenFile>(path) {
            Ok(file) => file
                .tokens
                .into_iter()
                .map(|t| {
                    let known = Known {
                        name: Arc::from(t.name.as_str()),
                        role: t.role,
                    };
                    (t.hash, known)
                })
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "the API token file cannot be read; only keys/api.token is accepted");
                HashMap::new()
            }
        };
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        *loaded = Loaded { by_hash, stamp };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_tokens_are_found_by_value_and_revoked_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        let table = TokenTable::of_repo(dir.path());
        assert_eq!(table.find("anything"), None);
        let reader = create(dir.path(), "reader", Role::Read).unwrap();
        let writer = create(dir.path(), "writer", Role::Write).unwrap();
        assert!(matches!(
            create(dir.path(), "reader", Role::Write),
            Err(TokenError::Name(_))
        ));
        assert!(matches!(
            create(dir.path(), "no spaces", Role::Read),
            Err(TokenError::Name(_))
        ));
        let text = std::fs::read_to_string(tokens_path(dir.path())).unwrap();
        assert!(!text.contains(&reader), "only hashes are stored");
        assert_eq!(table.find(&reader).map(|k| k.role), Some(Role::Read));
        assert_eq!(table.find(&writer).map(|k| k.role), Some(Role::Write));
        assert!(revoke(dir.path(), "reader").unwrap());
        assert!(!revoke(dir.path(), "reader").unwrap());
        assert_eq!(table.find(&reader), None);
        assert_eq!(
            table.find(&writer).map(|k| k.name.to_string()).as_deref(),
            Some("writer")
        );
    }

    #[test]
    fn a_damaged_file_accepts_no_token() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        let token = create(dir.path(), "w", Role::Write).unwrap();
        let table = TokenTable::of_repo(dir.path());
        assert!(table.find(&token).is_some());
        std::fs::write(tokens_path(dir.path()), b"{ not json, and longer").unwrap();
        assert_eq!(table.find(&token), None);
        assert!(matches!(load(dir.path()), Err(TokenError::Corrupt { .. })));
    }
}
