//! Where a command runs, Kubo style: through the API of the daemon that holds the repository
//! when one runs, else on the repository opened directly. Both implement
//! [`Operations`], answering with the same types and errors, so a command prints the same
//! either way.

use std::{path::Path, time::Duration};

use crate::{
    api::{types::CollectionInfo, Client},
    ops::{Error, Node, Operations},
    repo::{self, Config, Repo, RepoError},
};

/// A running daemon's API, or the repository itself.
#[derive(Debug)]
pub enum Backend {
    /// The repository, opened (and locked) by this process.
    Local(Node),
    /// A daemon's HTTP API.
    Remote(Client),
}

/// How long the CLI waits for the repository's daemon to answer `/health`.
const HEALTH_BOUND: Duration = Duration::from_secs(3);

impl Backend {
    /// Finds the daemon of the repository at `path` (its `api` file, answering `/health`),
    /// or opens the repository. `api` forces a daemon URL; `token` is sent to the daemon;
    /// `adjust` applies command-line flags to the configuration of a directly opened
    /// repository.
    pub async fn connect(
        path: &Path,
        api: Option<&str>,
        token: Option<String>,
        adjust: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Backend> {
        if let Some(url) = api {
            return Ok(Backend::Remote(Client::new(url, token)?));
        }
        let mut silent = None;
        if let Ok(url) = std::fs::read_to_string(repo::api_file(path)) {
            let client = Client::new(url.trim(), token)?;
            if client.alive(HEALTH_BOUND).await {
                return Ok(Backend::Remote(client));
            }
            // A stale file from a daemon that did not shut down cleanly, or a daemon too busy
            // to answer: opening the repository below tells them apart.
            silent = Some(url.trim().to_string());
        }
        let repo = match (Repo::open(path).await, silent) {
            (Err(RepoError::Locked { holder, .. }), Some(url)) => anyhow::bail!(
                "the daemon at {url} did not answer /health within {} s, and {holder} holds \
                 the repository: the daemon is busy or stuck. Try again; if it keeps \
                 happening, read its log, or stop it and start it again",
                HEALTH_BOUND.as_secs()
            ),
            (opened, _) => opened?,
        };
        let mut config = repo.config().clone();
        adjust(&mut config);
        config.validate()?;
        Ok(Backend::Local(Node::new(repo, config)))
    }

    /// Whether a daemon serves this command.
    pub fn is_remote(&self) -> bool {
        matches!(self, Backend::Remote(_))
    }

    /// Finishes: a directly opened repository commits its logs and closes.
    pub async fn close(self) -> Result<(), Error> {
        match self {
            Backend::Local(node) => node.close().await,
            Backend::Remote(_) => Ok(()),
        }
    }

    /// The operations, on whichever backend this is.
    pub fn ops(&self) -> &dyn Operations {
        match self {
            Backend::Local(node) => node,
            Backend::Remote(client) => client,
        }
    }

    /// Collection `name` after this process commits its logged writes into a version, where
    /// it can (the repository opened here); a daemon commits on its own, every
    /// `storage.commit_interval_ms`.
    pub async fn committed_info(&self, name: &str) -> Result<CollectionInfo, Error> {
        if let Backend::Local(node) = self {
            node.commit(name).await?;
        }
        self.ops().collection_info(name).await
    }
}
