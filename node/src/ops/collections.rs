//! Collections as a whole: creating, listing, describing, committing, versions and dropping.

use ipvec_protocol::api::*;

use super::{metrics::CollectionLabels, offload_background, Error, Node};
use crate::{
    collection::{self, catalog, Collection, CollectionSpec},
    store::IrohBlockStore,
};

impl Node {
    /// Creates a collection: whole, or (on failure) nothing of it.
    pub async fn create_collection(
        &self,
        request: CreateCollection,
    ) -> Result<CollectionInfo, Error> {
        self.create_collection_by(request, None).await
    }

    /// [`Node::create_collection`] by the API token named `token` (one of `ipvec token
    /// create`): refused past its `limits.token_max_collections`, and recorded as its creator.
    pub async fn create_collection_by(
        &self,
        request: CreateCollection,
        token: Option<&str>,
    ) -> Result<CollectionInfo, Error> {
        if let Some(token) = token {
            self.check_collection_quota(token).await?;
        }
        let name = request.name.clone();
        let created = self.create_collection_as(request).await?;
        self.record_owner(&name, token)?;
        Ok(created)
    }

    async fn create_collection_as(
        &self,
        request: CreateCollection,
    ) -> Result<CollectionInfo, Error> {
        let (embedding, dimension) = match request.embedding.as_deref() {
            None => (None, request.dim),
            Some(choice) => self.text_dimension(choice, request.dim).await?,
        };
        let spec = CollectionSpec {
            name: request.name.clone(),
            dimension,
            embedding,
            metric: request.metric,
            quantization: request.quantization,
            hnsw: ipvec_protocol::manifest::HnswParams {
                m: request.m,
                ef_construction: request.ef_construction,
                ef_search: request.ef_search,
                codes: request.codes,
            },
            shards: request.shards,
            replication: request.replication,
        };
        let node = self.clone();
        // Offloaded: it runs to its end even if the caller goes away.
        let quota = CollectionQuota {
            max_points: request.max_points,
            max_bytes: request.max_bytes,
        };
        let created = offload_background(async move { node.create_in_turn(spec, quota).await });
        self.observed("create", &request.name, created).await
    }

    /// The model a new text collection's `embedding` setting names, and its dimension,
    /// which `dim` (when not 0) must match.
    async fn text_dimension(
        &self,
        choice: &str,
        dim: u32,
    ) -> Result<(Option<ipvec_protocol::manifest::EmbeddingModel>, u32), Error> {
        let (model, dimension) = self
            .inner
            .models
            .choose(choice)
            .await
            .map_err(|e| match e {
                // A name no provider has is the request's to fix.
                crate::embed::EmbedError::Config { ref key, .. } if key == "embedding" => {
                    Error::invalid(e.to_string())
                }
                e => e.into(),
            })?;
        let dimension = u32::try_from(dimension).unwrap_or(u32::MAX);
        if dim != 0 && dim != dimension {
            return Err(Error::invalid(format!(
                "model {} gives {dimension}-dimensional vectors, not {dim}: leave out the \
                 dimension (it is taken from the model) or give {dimension}",
                model.id()
            )));
        }
        Ok((Some(model), dimension))
    }

    /// Every collection.
    pub async fn list_collections(&self) -> Result<CollectionList, Error> {
        let root = self.collections_root();
        let mut collections = Vec::new();
        for name in catalog::list(&root)? {
            match self.collection_info(&name).await {
                Ok(info) => collections.push(info),
                // Dropped since the folder was listed, being dropped, or still opening (its
                // info answers once it is open).
                Err(e)
                    if matches!(e, Error::Conflict(_) | Error::Unavailable(_))
                        || !catalog::exists(&root.join(&name)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(CollectionList { collections })
    }

    /// One collection's settings and counts.
    pub async fn collection_info(&self, name: &str) -> Result<CollectionInfo, Error> {
        let c = self.collection(name).await?;
        let c = c.read().await;
        self.info_of(name, &c)
    }

    pub(super) fn info_of(
        &self,
        name: &str,
        c: &Collection<IrohBlockStore>,
    ) -> Result<CollectionInfo, Error> {
        let m = c.manifest();
        let id = c.id()?;
        let replication = self.inner.replication.of(&id, c.head().seq, c.writable());
        let shard_status = self.shard_status(&id, c, replication.providers.as_deref());
        Ok(CollectionInfo {
            name: name.to_string(),
            dim: m.dimension,
            metric: m.metric.to_string(),
            quantization: m.quantization.to_string(),
            hnsw: HnswInfo {
                m: m.hnsw.m,
                ef_construction: m.hnsw.ef_construction,
                ef_search: m.hnsw.ef_search,
                codes: m.hnsw.codes,
            },
            shards: m.shards.len(),
            held_shards: Some(c.held_shards()),
            points: c.points(),
            root: c.root().to_string(),
            version: c.head().seq,
            index_memory_bytes: c.index_memory() as u64,
            wal_bytes: c.wal_bytes(),
            index_source: Some(c.index_source().to_string()),
            index_snapshot: c.published_snapshot().map(|cid| cid.to_string()),
            index_snapshot_lag: c.snapshot_lag(),
            writable: c.writable(),
            state: Some(replication.state.to_string()),
            sync_percent: replication.sync_percent,
            lag: Some(replication.lag),
            replication_factor: Some(m.replication),
            replicas: replication.providers.and_then(|p| p.into_iter().min()),
            announced_secs_ago: replication.announced_secs_ago,
            shard_status,
            embedding: m.embedding.clone(),
            quota: self.own_quota(name)?,
            writers: c
                .writers()
                .iter()
                .map(|key| ipvec_protocol::head::collection_id(key))
                .collect::<Result<_, _>>()?,
            writer_heads: c
                .writer_heads()
                .iter()
                .map(|h| {
                    Ok(WriterHead {
                        writer: ipvec_protocol::head::collection_id(&h.writer)?,
                        seq: h.seq,
                        root: h.manifest.to_string(),
                    })
                })
                .collect::<Result<_, ipvec_protocol::ProtocolError>>()?,
            merged_root: Some(c.merged_root()?.to_string()),
            // Shown once there is something to show: this node joined, or hears members.
            membership: self
                .membership_of(&id)
                .filter(|m| m.state != "observing" || !m.members.is_empty()),
            id,
        })
    }

    /// A collection's versions, newest first (its acknowledged writes committed first).
    pub async fn collection_log(&self, name: &str) -> Result<VersionList, Error> {
        self.commit(name).await?;
        let c = self.collection(name).await?;
        let c = c.read().await;
        let versions = c
            .versions()
            .await?
            .into_iter()
            .map(|(cid, m)| VersionInfo {
                root: cid.to_string(),
                points: m.points,
                updated: m.updated,
            })
            .collect();
        Ok(VersionList { versions })
    }

    /// Drops a collection: its folder goes now, its blocks at the next gc. Requests in flight
    /// on it finish first; requests that come meanwhile get a conflict.
    pub async fn drop_collection(&self, name: &str) -> Result<Dropped, Error> {
        self.observed("drop", name, async {
            let node = self.clone();
            let owned = name.to_string();
            // Offloaded: it runs to its end even if the caller goes away.
            let dropped =
                offload_background(async move { node.drop_in_turn(&owned).await }).await?;
            self.record_owner(name, None)?;
            for family in [
                &self.inner.metrics.points,
                &self.inner.metrics.index_memory,
                &self.inner.metrics.index_duplicate_points,
                &self.inner.metrics.index_duplicate_bytes_saved,
                &self.inner.metrics.wal_bytes,
            ] {
                family.remove(&CollectionLabels {
                    collection: name.to_string(),
                });
            }
            Ok(dropped)
        })
        .await
    }

    /// Commits collection `name`'s acknowledged writes into its tree (a new version), if it
    /// has any.
    pub async fn commit(&self, name: &str) -> Result<(), Error> {
        let shared = self.collection(name).await?;
        if shared.read().await.wal_bytes() == 0 {
            return self.publish_when_quiet(name, shared).await;
        }
        let node = self.clone();
        self.observed("commit", name, async move {
            offload_background(async move {
                let _writing = node.inner.gc_lock.read().await;
                collection::shared::checkpoint(&shared).await?;
                Ok(())
            })
            .await
        })
        .await?;
        // A new version: tell the followers.
        self.gossip_head(name).await
    }

    /// Publishes a new index snapshot of collection `name` in a version of its own when
    /// writes stopped since the last call and enough changed since its last snapshot
    /// (`storage.index_snapshot_min_points`).
    async fn publish_when_quiet(
        &self,
        name: &str,
        shared: crate::ops::SharedCollection,
    ) -> Result<(), Error> {
        let due = {
            let c = shared.read().await;
            c.quiet_since_asked() && c.snapshot_due()
        };
        if !due {
            return Ok(());
        }
        let node = self.clone();
        let published = self
            .observed("publish_index", name, async move {
                offload_background(async move {
                    let _writing = node.inner.gc_lock.read().await;
                    Ok(collection::shared::publish_snapshot(&shared).await?)
                })
                .await
            })
            .await?;
        if !published {
            return Ok(());
        }
        self.gossip_head(name).await
    }

    /// Commits every open collection's acknowledged writes (the daemon does this every
    /// `storage.commit_interval_ms`, so leaf CIDs and versions follow writes closely).
    pub async fn commit_all(&self) {
        for (name, _) in self.open_collections().await {
            if let Err(e) = self.commit(&name).await {
                tracing::warn!(collection = %name, error = %e, "committing the log failed; it stays in the log and is retried");
            }
        }
    }
}
