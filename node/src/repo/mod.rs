//! The on-disk repository: a folder holding the config, the node key and the block store.
//!
//! ```text
//! ~/.ipvec/              (or --repo DIR, or $IPVEC_PATH)
//!   config.toml          every option, documented
//!   keys/node.key        the node's ed25519 key (libp2p protobuf encoding, mode 0600)
//!   keys/api.token       the bearer token the HTTP API asks for off loopback (mode 0600)
//!   blocks/              the iroh-blobs store
//!   collections/         one folder a collection: owner key, head, write-ahead log, index cache
//!   repo.lock            held by the process that has the repository open
//!   api                  while a daemon runs: the URL of its HTTP API
//!   denied_peers         peers denied at run time (`ipvec peers deny`), one peer id a line
//!   version              repository format version
//! ```

mod backup;
mod config;
pub mod denied;
mod embedding;
mod limits;
mod lock;
mod outbound;

use std::path::{Path, PathBuf};

use libp2p_identity::{Keypair, PeerId};

pub use config::{
    ApiConfig, BackupConfig, Config, ConfigError, EmbeddingConfig, LimitsConfig, LogConfig,
    P2pConfig, SearchConfig, StorageConfig,
};
pub use lock::{lock_path, RepoLock};
pub use outbound::OutboundConfig;

use crate::store::{IrohBlockStore, StoreError};

/// Format version of the repository layout.
pub const REPO_VERSION: u32 = 1;

/// Errors opening or creating a repository.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// There is no repository at the path.
    #[error(
        "no ipvec repository at {0}: run `ipvec init` first (or pass --repo DIR / set IPVEC_PATH)"
    )]
    NotInitialised(PathBuf),
    /// `init` found a repository already there.
    #[error("an ipvec repository already exists at {0}; use it, or pick another --repo")]
    AlreadyInitialised(PathBuf),
    /// The repository was written by a newer or older ipvec.
    #[error(
        "repository at {path} has format version {found}, this ipvec reads version {REPO_VERSION}"
    )]
    Version { path: PathBuf, found: String },
    /// The node key is unreadable.
    #[error("node key {path} is unreadable ({reason}); restore it from a backup")]
    Key { path: PathBuf, reason: String },
    /// Another process has the repository open.
    #[error("the repository at {path} is in use by {holder}; stop that process, or use the daemon's API (a running `ipvec daemon` is found through {path}/api)")]
    Locked { path: PathBuf, holder: String },
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The block store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The file of denied peers holds a line that is not a peer id.
    #[error("{path}, line {line}: {text:?} is not a peer id; fix or remove the line (`ipvec peers allow` rewrites the file)")]
    Denied {
        path: PathBuf,
        line: usize,
        text: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
    move |source| RepoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An open repository.
#[derive(Debug)]
pub struct Repo {
    path: PathBuf,
    config: Config,
    key: Keypair,
    store: IrohBlockStore,
    _lock: RepoLock,
}

/// The folder of the repository's block store (an iroh-blobs `FsStore`).
pub fn store_dir(repo: &Path) -> PathBuf {
    repo.join("blocks")
}

/// The file a running daemon writes its API URL into.
pub fn api_file(repo: &Path) -> PathBuf {
    repo.join("api")
}

/// The API token of the repository at `repo`, if `ipvec init` (or a daemon) has made one.
pub fn read_api_token(repo: &Path) -> Option<String> {
    std::fs::read_to_string(repo.join("keys").join("api.token"))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

impl Repo {
    /// The default repository path: `$IPVEC_PATH`, else `~/.ipvec`.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("IPVEC_PATH") {
            return PathBuf::from(p);
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".ipvec")
    }

    /// Creates a repository at `path`: config, a fresh node key, an empty store.
    pub async fn init(path: &Path) -> Result<Repo, RepoError> {
        if path.join("version").exists() {
            return Err(RepoError::AlreadyInitialised(path.to_path_buf()));
        }
        std::fs::create_dir_all(path.join("keys")).map_err(io_at(path))?;
        let key = Keypair::generate_ed25519();
        let key_path = path.join("keys").join("node.key");
        let encoded = key.to_protobuf_encoding().map_err(|e| RepoError::Key {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        write_private(&key_path, &encoded)?;
        new_api_token(path)?;
        let config_path = path.join("config.toml");
        std::fs::write(&config_path, Config::default().to_documented_toml())
            .map_err(io_at(&config_path))?;
        // The version file goes last: its presence marks a complete repository.
        let version_path = path.join("version");
        std::fs::write(&version_path, format!("{REPO_VERSION}\n")).map_err(io_at(&version_path))?;
        Self::open(path).await
    }

    /// Opens the repository at `path`.
    pub async fn open(path: &Path) -> Result<Repo, RepoError> {
        let version_path = path.join("version");
        let version = match std::fs::read_to_string(&version_path) {
            Ok(v) => v,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RepoError::NotInitialised(path.to_path_buf()))
            }
            Err(e) => return Err(io_at(&version_path)(e)),
        };
        if version.trim() != REPO_VERSION.to_string() {
            return Err(RepoError::Version {
                path: path.to_path_buf(),
                found: version.trim().to_string(),
            });
        }
        let lock = RepoLock::acquire(path)?;
        let config = Config::load(&path.join("config.toml"))?.with_env()?;
        let key_path = path.join("keys").join("node.key");
        let key_bytes = std::fs::read(&key_path).map_err(io_at(&key_path))?;
        let key = Keypair::from_protobuf_encoding(&key_bytes).map_err(|e| RepoError::Key {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        let store = IrohBlockStore::open(&store_dir(path)).await?;
        Ok(Repo {
            path: path.to_path_buf(),
            config,
            key,
            store,
            _lock: lock,
        })
    }

    /// The API token, made now if this repository predates tokens.
    pub fn api_token(&self) -> Result<String, RepoError> {
        match read_api_token(&self.path) {
            Some(token) => Ok(token),
            None => new_api_token(&self.path),
        }
    }

    /// The repository folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration read at open.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The node's key.
    pub fn key(&self) -> &Keypair {
        &self.key
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.key.public().to_peer_id()
    }

    /// The block store.
    pub fn store(&self) -> &IrohBlockStore {
        &self.store
    }

    /// Flushes the store and closes the repository.
    pub async fn close(self) -> Result<(), RepoError> {
        self.store.shutdown().await?;
        Ok(())
    }
}

fn new_api_token(repo: &Path) -> Result<String, RepoError> {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let token = hex::encode(bytes);
    let path = repo.join("keys").join("api.token");
    write_private(&path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io_at(path))?;
    file.write_all(bytes).map_err(io_at(path))?;
    file.sync_all().map_err(io_at(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn init_then_open_keeps_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repo");
        assert!(matches!(
            Repo::open(&path).await,
            Err(RepoError::NotInitialised(_))
        ));
        let repo = Repo::init(&path).await.unwrap();
        let id = repo.peer_id();
        repo.close().await.unwrap();
        assert!(matches!(
            Repo::init(&path).await,
            Err(RepoError::AlreadyInitialised(_))
        ));
        let again = Repo::open(&path).await.unwrap();
        assert_eq!(again.peer_id(), id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path.join("keys/node.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        again.close().await.unwrap();
    }
}
