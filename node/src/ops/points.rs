//! Points: writing a batch, deleting by id, reading one, and how ids are spelled.

use cid::Cid;
use ipvec_protocol::{api::*, entry::EntryKey};

use super::{offload_background, Error, Node};
use crate::collection::{
    self,
    history::PageStart,
    points::{ipld_to_json, json_to_ipld},
    CollectionError, Point,
};

/// A point id as URL paths and the CLI spell it: text that starts with `"` is a JSON string
/// literal (`"42"` is the string id 42), digits alone are an integer id, anything else is a
/// string id. [`PointId::spelled`] writes ids this way.
pub fn parse_point_id(text: &str) -> Result<PointId, Error> {
    if text.starts_with('"') {
        return serde_json::from_str::<String>(text)
            .map(PointId::Str)
            .map_err(|e| {
                Error::invalid(format!(
                    "point id {text} starts with a quote but is not a JSON string ({e}); write a string id that looks like a number as \"42\" (in a URL %2242%22), or leave the quotes off"
                ))
            });
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().map(PointId::Int).map_err(|_| {
            Error::invalid(format!(
                "point id {text} is over the largest integer id, {}; write it as \"{text}\" (in a URL %22{text}%22) for a string id",
                u64::MAX
            ))
        });
    }
    Ok(PointId::Str(text.to_string()))
}

/// The points of a `PUT …/points` body, each vector read from whichever form it came in
/// (numbers or `vector_b64`). The first that cannot be read refuses the batch as a bad point
/// (`400 bad_point`, naming its position), as a wrong dimension does.
pub fn points_of(body: UpsertPoints) -> Result<Vec<PointIn>, Error> {
    body.into_points().map_err(|bad| {
        CollectionError::BadPoint {
            position: bad.position,
            id: bad.id,
            reason: bad.reason,
        }
        .into()
    })
}

/// Turns request points into engine points; metadata must be an object.
fn to_points(points: Vec<PointIn>) -> Result<Vec<Point>, Error> {
    points
        .into_iter()
        .enumerate()
        .map(|(position, p)| {
            let metadata = match p.metadata {
                None | Some(serde_json::Value::Null) => None,
                Some(m @ serde_json::Value::Object(_)) => Some(json_to_ipld(m)),
                Some(_) => {
                    return Err(CollectionError::BadPoint {
                        position,
                        id: p.id.to_string(),
                        reason: "metadata must be a JSON object".into(),
                    }
                    .into())
                }
            };
            Ok(Point {
                id: p.id.into(),
                vector: p.vector,
                metadata,
            })
        })
        .collect()
}

fn write_result(written: collection::shared::Written) -> WriteResult {
    WriteResult {
        changed: written.report.changed,
        points: written.report.points,
        root: written.root.to_string(),
    }
}

impl Node {
    /// Upserts a batch: stored whole once durable, or not at all.
    /// Points that give a `text` instead of a vector (text collections) are embedded first.
    pub async fn upsert(&self, name: &str, points: Vec<PointIn>) -> Result<WriteResult, Error> {
        self.upsert_by(name, points, None).await
    }

    /// [`Node::upsert`] by the API token named `token` (one of `ipvec token create`), whose
    /// quotas it must fit as well as the collection's.
    pub async fn upsert_by(
        &self,
        name: &str,
        points: Vec<PointIn>,
        token: Option<&str>,
    ) -> Result<WriteResult, Error> {
        let n = points.len() as u64;
        self.observed("upsert", name, async {
            self.check_batch("points", points.len())?;
            let mut points = points;
            self.embed_points(name, &mut points).await?;
            let points = to_points(points)?;
            self.check_quotas(name, &points, token).await?;
            self.check_storage().await?;
            let shared = self.collection(name).await?;
            let node = self.clone();
            let job = self.inner.jobs.start("upsert", name, "points", Some(n));
            let result = offload_background(async move {
                let _writing = node.inner.gc_lock.read().await;
                let written = collection::shared::upsert(&shared, points).await?;
                Ok(write_result(written))
            })
            .await?;
            job.set(n);
            self.inner.metrics.written(name, result.changed);
            Ok(result)
        })
        .await
    }

    /// Deletes points by id.
    pub async fn delete(&self, name: &str, ids: Vec<PointId>) -> Result<WriteResult, Error> {
        self.observed("delete", name, async {
            self.check_batch("ids", ids.len())?;
            let shared = self.collection(name).await?;
            let node = self.clone();
            let ids: Vec<_> = ids.into_iter().map(Into::into).collect();
            let result = offload_background(async move {
                let _writing = node.inner.gc_lock.read().await;
                let written = collection::shared::delete(&shared, &ids).await?;
                Ok(write_result(written))
            })
            .await?;
            self.inner.metrics.written(name, result.changed);
            Ok(result)
        })
        .await
    }

    /// One point.
    pub async fn get_point(&self, name: &str, id: PointId) -> Result<PointOut, Error> {
        self.observed("get", name, async {
            let c = self.collection(name).await?;
            let c = c.read().await;
            let entry_id = id.clone().into();
            let Some((entry, leaf)) = c.get(&entry_id).await? else {
                return Err(Error::not_found(format!(
                    "collection {name} has no point {id}"
                )));
            };
            Ok(PointOut {
                id,
                vector: c.vector_of(&entry),
                metadata: entry.meta.as_ref().map(ipld_to_json),
                cid: leaf.map(|c| c.to_string()),
                writer: ipvec_protocol::head::collection_id(&entry.writer).ok(),
                hlc: Some(entry.hlc),
            })
        })
        .await
    }

    /// A page of a collection's points: from the current version (committed first) when
    /// `cursor` is `None`, else from where the page before stopped, in the version it read.
    pub async fn points_page(
        &self,
        name: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<PointPage, Error> {
        self.observed("page", name, async {
            if limit == 0 {
                return Err(Error::invalid("limit must be at least 1"));
            }
            self.check_batch("points", limit)?;
            let (at, start) = match cursor {
                Some(text) => parse_cursor(&text)?,
                None => {
                    self.commit(name).await?;
                    let root = self.collection(name).await?.read().await.root();
                    (
                        root,
                        PageStart {
                            shard: 0,
                            after: None,
                        },
                    )
                }
            };
            let c = self.collection(name).await?;
            let c = c.read().await;
            let (entries, next) = c.page_at(&at, start, limit).await?;
            let points = entries
                .into_iter()
                .map(|(entry, leaf)| PointOut {
                    id: PointId::from(&entry.id.id()),
                    vector: c.vector_of(&entry),
                    metadata: entry.meta.as_ref().map(ipld_to_json),
                    cid: Some(leaf.to_string()),
                    writer: ipvec_protocol::head::collection_id(&entry.writer).ok(),
                    hlc: Some(entry.hlc),
                })
                .collect();
            Ok(PointPage {
                points,
                next: next.map(|n| format_cursor(&at, &n)),
                version: at.to_string(),
            })
        })
        .await
    }
}

/// A page cursor: `VERSION.SHARD.KEY` (the key in hex; empty for a shard's start).
fn format_cursor(at: &Cid, start: &PageStart) -> String {
    let key = start
        .after
        .as_ref()
        .map(|k| hex::encode(k.as_bytes()))
        .unwrap_or_default();
    format!("{at}.{}.{key}", start.shard)
}

fn parse_cursor(text: &str) -> Result<(Cid, PageStart), Error> {
    let bad = || {
        Error::invalid(format!(
            "cursor {text:?} is not one this node gave: pass the `next` of the page before, or \
             no cursor to start at the first page"
        ))
    };
    let mut parts = text.splitn(3, '.');
    let (Some(at), Some(shard), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let at = Cid::try_from(at).map_err(|_| bad())?;
    let shard = shard.parse().map_err(|_| bad())?;
    let after = if key.is_empty() {
        None
    } else {
        Some(EntryKey::new(hex::decode(key).map_err(|_| bad())?).map_err(|_| bad())?)
    };
    Ok((at, PageStart { shard, after }))
}
