//! Where a command runs, Kubo style: through the API of the daemon that holds the repository
//! when one runs, else on the repository opened directly. Both answer with the same types, so
//! a command prints the same either way.

use std::{path::Path, time::Duration};

use crate::{
    api::{types::*, Client},
    ops::{Error, Node},
    repo::{self, Config, Repo},
};

/// A running daemon's API, or the repository itself.
#[derive(Debug)]
pub enum Backend {
    /// The repository, opened (and locked) by this process.
    Local(Node),
    /// A daemon's HTTP API.
    Remote(Client),
}

/// Runs the same operation on either backend.
macro_rules! either {
    ($self:ident, $op:ident ( $($arg:expr),* )) => {
        match $self {
            Backend::Local(node) => node.$op($($arg),*).await,
            Backend::Remote(client) => client.$op($($arg),*).await,
        }
    };
}

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
        if let Ok(url) = std::fs::read_to_string(repo::api_file(path)) {
            let client = Client::new(url.trim(), token)?;
            if client.alive(Duration::from_secs(3)).await {
                return Ok(Backend::Remote(client));
            }
            // A stale file from a daemon that did not shut down cleanly: if it somehow still
            // holds the repository, opening it below says which process does.
        }
        let repo = Repo::open(path).await?;
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

    pub async fn node_info(&self) -> Result<NodeInfo, Error> {
        either!(self, node_info())
    }

    pub async fn config(&self) -> Result<Config, Error> {
        match self {
            Backend::Local(node) => Ok(node.config().clone()),
            Backend::Remote(client) => client.config().await,
        }
    }

    pub async fn create_collection(
        &self,
        request: CreateCollection,
    ) -> Result<CollectionInfo, Error> {
        match self {
            Backend::Local(node) => node.create_collection(request).await,
            Backend::Remote(client) => client.create_collection(&request).await,
        }
    }

    pub async fn id(&self) -> Result<IdInfo, Error> {
        either!(self, id())
    }

    pub async fn fetch_collection(
        &self,
        id: &str,
        name: Option<String>,
        from: &[String],
    ) -> Result<CollectionImported, Error> {
        either!(self, fetch_collection(id, name, from))
    }

    pub async fn dag_fetch(&self, cid: &str, from: &[String]) -> Result<Fetched, Error> {
        either!(self, dag_fetch(cid, from))
    }

    pub async fn peers(&self) -> Result<PeerList, Error> {
        either!(self, peers())
    }

    pub async fn connect_peer(&self, address: &str) -> Result<Connected, Error> {
        either!(self, connect(address))
    }

    pub async fn providers(&self, cid: &str) -> Result<ProviderList, Error> {
        either!(self, providers(cid))
    }

    pub async fn list_collections(&self) -> Result<CollectionList, Error> {
        either!(self, list_collections())
    }

    pub async fn collection_info(&self, name: &str) -> Result<CollectionInfo, Error> {
        either!(self, collection_info(name))
    }

    /// Collection `name` after this process commits its logged writes into a version, where
    /// it can (the repository opened here); a daemon commits on its own, every
    /// `storage.commit_interval_ms`.
    pub async fn committed_info(&self, name: &str) -> Result<CollectionInfo, Error> {
        if let Backend::Local(node) = self {
            node.commit(name).await?;
        }
        self.collection_info(name).await
    }

    pub async fn collection_log(&self, name: &str) -> Result<VersionList, Error> {
        either!(self, collection_log(name))
    }

    pub async fn drop_collection(&self, name: &str) -> Result<Dropped, Error> {
        either!(self, drop_collection(name))
    }

    pub async fn upsert(&self, name: &str, points: Vec<PointIn>) -> Result<WriteResult, Error> {
        either!(self, upsert(name, points))
    }

    pub async fn delete(&self, name: &str, ids: Vec<PointId>) -> Result<WriteResult, Error> {
        either!(self, delete(name, ids))
    }

    pub async fn get_point(&self, name: &str, id: PointId) -> Result<PointOut, Error> {
        match self {
            Backend::Local(node) => node.get_point(name, id).await,
            Backend::Remote(client) => client.get_point(name, &id).await,
        }
    }

    pub async fn search(
        &self,
        name: &str,
        request: SearchRequest,
    ) -> Result<SearchResponse, Error> {
        match self {
            Backend::Local(node) => node.search(name, request).await,
            Backend::Remote(client) => client.search(name, &request).await,
        }
    }

    pub async fn dag_put(&self, dag_json: Vec<u8>, pin: bool) -> Result<DagPut, Error> {
        match self {
            Backend::Local(node) => node.dag_put(&dag_json, pin).await,
            Backend::Remote(client) => client.dag_put(dag_json, pin).await,
        }
    }

    pub async fn dag_get(&self, cid: &str) -> Result<Vec<u8>, Error> {
        either!(self, dag_get(cid))
    }

    pub async fn block_stat(&self, cid: &str) -> Result<BlockStat, Error> {
        either!(self, block_stat(cid))
    }

    pub async fn pins(&self) -> Result<PinList, Error> {
        either!(self, pins())
    }

    pub async fn pin_add(&self, cid: &str) -> Result<Pin, Error> {
        either!(self, pin_add(cid))
    }

    pub async fn pin_rm(&self, cid: &str) -> Result<Pin, Error> {
        either!(self, pin_rm(cid))
    }

    pub async fn gc(&self) -> Result<GcResult, Error> {
        either!(self, gc())
    }
}
