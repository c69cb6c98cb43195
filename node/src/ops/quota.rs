//! Quotas on writes ([`limits::quota`](crate::limits::quota)): a collection's
//! (`limits.collection_max_*`) and, for writes by a token of `ipvec token create`, the
//! token's over the collections it created (`limits.token_max_*`). Checked before anything
//! of a write is logged, so a refused batch leaves nothing behind. Two writes racing past
//! the check together may end a batch over the quota; the next write is refused.

use std::collections::BTreeSet;

use crate::{
    collection::Point,
    limits::{
        quota::{Quota, Usage},
        tokens,
    },
};

use super::{Error, Node};
use ipvec_protocol::api::CollectionQuota;
use std::path::Path;

/// Where the node's quotas are set.
const IN_CONFIG: &str = "in the daemon's config";

/// The file in a collection's folder that holds its own quota, when it has one.
const QUOTA_FILE: &str = "quota.json";

/// Writes `quota` into collection folder `dir` (whole, then renamed into place), or removes
/// the file when `quota` sets nothing.
pub(super) fn save_quota(dir: &Path, quota: CollectionQuota) -> std::io::Result<()> {
    let path = dir.join(QUOTA_FILE);
    if quota.is_none() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let tmp = dir.join(format!("{QUOTA_FILE}.tmp"));
    let text = serde_json::to_vec_pretty(&quota).map_err(std::io::Error::other)?;
    {
        let mut file = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut file, &text)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &path)
}

/// Guards the read-change-write of the owners file within this process.
static OWNERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Node {
    fn collection_quota(&self) -> Quota {
        let limits = &self.inner.config.limits;
        Quota {
            max_points: limits.collection_max_points,
            max_bytes: limits.collection_max_bytes,
            points_key: "limits.collection_max_points",
            bytes_key: "limits.collection_max_bytes",
            set_where: IN_CONFIG,
        }
    }

    fn token_quota(&self) -> Quota {
        let limits = &self.inner.config.limits;
        Quota {
            max_points: limits.token_max_points,
            max_bytes: limits.token_max_bytes,
            points_key: "limits.token_max_points",
            bytes_key: "limits.token_max_bytes",
            set_where: IN_CONFIG,
        }
    }

    /// Collection `name`'s own quota (none when it has no file).
    pub(super) fn own_quota(&self, name: &str) -> Result<CollectionQuota, Error> {
        let path =
            crate::collection::catalog::dir_of(&self.collections_root(), name)?.join(QUOTA_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::internal(format!(
                    "{} does not parse ({e}); set the quota again with `ipvec collection quota {name}`",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CollectionQuota::default()),
            Err(e) => Err(Error::internal(format!("reading {}: {e}", path.display()))),
        }
    }

    /// Sets collection `name`'s own quota (0: none); the node's `limits.collection_max_*`
    /// hold as well. Points it holds beyond a lowered quota stay; new ones are refused.
    pub async fn set_quota(
        &self,
        name: &str,
        quota: CollectionQuota,
    ) -> Result<CollectionQuota, Error> {
        let shared = self.collection(name).await?;
        // Held so a drop cannot move the folder while the file is written.
        let _c = shared.write().await;
        let dir = crate::collection::catalog::dir_of(&self.collections_root(), name)?;
        save_quota(&dir, quota)
            .map_err(|e| Error::internal(format!("saving the quota of {name}: {e}")))?;
        Ok(quota)
    }

    /// Which token created each collection.
    fn owners(&self) -> Result<tokens::Owners, Error> {
        tokens::load_owners(self.repo().path()).map_err(|e| Error::internal(e.to_string()))
    }

    /// What collection `name` holds now, and the vector bytes of one point.
    async fn usage_of(&self, name: &str) -> Result<(Usage, u64), Error> {
        let shared = self.collection(name).await?;
        let c = shared.read().await;
        let manifest = c.manifest();
        let per_point =
            u64::from(manifest.dimension) * manifest.quantization.bytes_per_component() as u64;
        let points = c.points();
        Ok((
            Usage {
                points,
                bytes: points * per_point,
            },
            per_point,
        ))
    }

    /// Refuses `points` into collection `name` when they would pass its quota, or (written
    /// by `token`) the token's. Points whose ids the collection holds already are not new:
    /// they are looked up only when counting every point as new would pass a quota.
    pub(super) async fn check_quotas(
        &self,
        name: &str,
        points: &[Point],
        token: Option<&str>,
    ) -> Result<(), Error> {
        let collection_quota = self.collection_quota();
        let own = self.own_quota(name)?;
        let own_quota = Quota {
            max_points: own.max_points,
            max_bytes: own.max_bytes,
            points_key: "its max_points",
            bytes_key: "its max_bytes",
            set_where: "with `ipvec collection quota` (PUT /v1/collections/NAME/quota)",
        };
        let token_quota = self.token_quota();
        let token = token.filter(|_| !token_quota.is_unlimited());
        if collection_quota.is_unlimited() && own_quota.is_unlimited() && token.is_none() {
            return Ok(());
        }
        let (now, per_point) = self.usage_of(name).await?;
        let mut token_now = Usage::default();
        if let Some(token) = token {
            for (other, owner) in self.owners()? {
                if owner != token {
                    continue;
                }
                let usage = match other == name {
                    true => now,
                    false => match self.usage_of(&other).await {
                        Ok((usage, _)) => usage,
                        // Dropped meanwhile, or not openable: holds nothing countable.
                        Err(_) => continue,
                    },
                };
                token_now = token_now.plus(usage);
            }
        }
        let holder = format!("collection {name:?}");
        let token_holder = format!("token {:?}", token.unwrap_or_default());
        let check = |adding: Usage| -> Result<(), String> {
            collection_quota.check(&holder, now, adding)?;
            own_quota.check(&holder, now, adding)?;
            match token {
                Some(_) => token_quota.check(&token_holder, token_now, adding),
                None => Ok(()),
            }
        };
        let all_new = points.len() as u64;
        let adding = |n: u64| Usage {
            points: n,
            bytes: n * per_point,
        };
        if check(adding(all_new)).is_ok() {
            return Ok(());
        }
        let shared = self.collection(name).await?;
        let c = shared.read().await;
        let mut seen = BTreeSet::new();
        let mut new = 0u64;
        for point in points {
            if seen.insert(&point.id) && c.get(&point.id).await?.is_none() {
                new += 1;
            }
        }
        check(adding(new)).map_err(Error::QuotaExceeded)
    }

    /// Refuses a collection `token` would create past `limits.token_max_collections`.
    pub(super) async fn check_collection_quota(&self, token: &str) -> Result<(), Error> {
        let max = self.inner.config.limits.token_max_collections;
        if max == 0 {
            return Ok(());
        }
        let existing: BTreeSet<String> = self
            .list_collections()
            .await?
            .collections
            .into_iter()
            .map(|c| c.name)
            .collect();
        let owned = self
            .owners()?
            .into_iter()
            .filter(|(name, owner)| owner == token && existing.contains(name))
            .count() as u64;
        if owned >= max {
            return Err(Error::QuotaExceeded(format!(
                "token {token:?} has created {owned} collections, its quota \
                 (limits.token_max_collections = {max}); drop one or raise \
                 limits.token_max_collections in the daemon's config"
            )));
        }
        Ok(())
    }

    /// Records that `token` (or no token of `ipvec token create`: `None`) created `name`.
    pub(super) fn record_owner(&self, name: &str, token: Option<&str>) -> Result<(), Error> {
        let _turn = OWNERS.lock().unwrap_or_else(|p| p.into_inner());
        let mut owners = self.owners()?;
        let changed = match token {
            Some(token) => {
                owners
                    .insert(name.to_string(), token.to_string())
                    .as_deref()
                    != Some(token)
            }
            None => owners.remove(name).is_some(),
        };
        if changed {
            tokens::save_owners(self.repo().path(), &owners)
                .map_err(|e| Error::internal(e.to_string()))?;
        }
        Ok(())
    }
}
