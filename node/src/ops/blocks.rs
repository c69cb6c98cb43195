//! Blocks and DAGs: storing and reading blocks, pins, garbage collection, CAR files in and
//! out, registering an imported collection, and fetching a DAG from peers over Bitswap.
//! CAR export and import stream bytes, so they take a reader or writer instead of a body.

use bytes::Bytes;
use cid::Cid;
use ipvec_protocol::{
    api::*, cid as pcid, dagcbor, head::HeadRecord, limits, manifest::Manifest, Ipld,
};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{offload_background, parse_cid, Error, Node};
use crate::{
    collection::catalog,
    store::{car, dag, gc, BlockStore},
};

impl Node {
    /// Fetches the DAG under `cid` over Bitswap from the peers at `from` (dialed first), or
    /// from every connected peer, checking every block; pins it once complete. Blocks already
    /// stored are not fetched again, so an interrupted fetch resumes.
    pub async fn dag_fetch(&self, cid: &str, from: &[String]) -> Result<Fetched, Error> {
        self.observed("fetch", "", async {
            let root = parse_cid(cid)?;
            let network = self.network()?;
            let mut peers = self.dial_all(from).await?;
            if from.is_empty() {
                peers = network
                    .peers()
                    .await?
                    .into_iter()
                    .map(|p| p.peer_id)
                    .collect();
            }
            self.check_storage().await?;
            let _writing = self.inner.gc_lock.read().await;
            let job = self
                .inner
                .jobs
                .start("fetch", root.to_string(), "blocks", None);
            let totals = network
                .bitswap()
                .fetch_dag(root, &peers, |t| job.set(t.blocks))
                .await
                .map_err(|e| match e {
                    crate::net::bitswap::FetchError::NoPeers
                    | crate::net::bitswap::FetchError::Unsupported(..) => {
                        Error::invalid(e.to_string())
                    }
                    crate::net::bitswap::FetchError::NotFound(_) => Error::not_found(e.to_string()),
                    crate::net::bitswap::FetchError::Timeout(_)
                    | crate::net::bitswap::FetchError::Stopped => Error::unavailable(e.to_string()),
                    _ => Error::internal(e.to_string()),
                })?;
            // The fetch walked every block under the root (stored ones read back, the rest
            // fetched and hashed), so the DAG is complete: no second walk before the pin.
            self.store().pin(&root).await?;
            self.store().flush().await?;
            Ok(Fetched {
                root: root.to_string(),
                blocks: totals.blocks,
                fetched: totals.fetched,
                bytes: totals.bytes,
            })
        })
        .await
    }

    /// Stores a DAG-JSON value as one DAG-CBOR block, pinned if asked (its links must then
    /// all be stored).
    pub async fn dag_put(&self, dag_json: &[u8], pin: bool) -> Result<DagPut, Error> {
        self.observed("dag_put", "", async {
            let value: Ipld = serde_ipld_dagjson::from_slice(dag_json).map_err(|e| {
                Error::invalid(format!("the input is not valid DAG-JSON ({e}); write links as {{\"/\": \"<cid>\"}} and bytes as {{\"/\": {{\"bytes\": \"<base64>\"}}}}"))
            })?;
            let bytes = dagcbor::encode(&value)?;
            if bytes.len() > limits::MAX_BLOCK_BYTES {
                return Err(Error::invalid(format!(
                    "the block is {} bytes as DAG-CBOR, over the {}-byte limit; split it into linked blocks",
                    bytes.len(),
                    limits::MAX_BLOCK_BYTES
                )));
            }
            self.check_storage().await?;
            let _writing = self.inner.gc_lock.read().await;
            let cid = self.store().put(pcid::DAG_CBOR, Bytes::from(bytes)).await?;
            if pin {
                dag::check_complete(self.store(), &cid).await?;
                self.store().pin(&cid).await?;
            }
            self.store().flush().await?;
            Ok(DagPut {
                cid: cid.to_string(),
                pinned: pin,
            })
        })
        .await
    }

    /// A block as DAG-JSON (raw blocks as DAG-JSON bytes).
    pub async fn dag_get(&self, cid: &str) -> Result<Vec<u8>, Error> {
        let cid = parse_cid(cid)?;
        let bytes = self.store().require(&cid).await?;
        let value: Ipld = match cid.codec() {
            pcid::DAG_CBOR => dagcbor::decode_trusted(&bytes)?,
            _ => Ipld::Bytes(bytes.to_vec()),
        };
        serde_ipld_dagjson::to_vec(&value)
            .map_err(|e| Error::internal(format!("cannot write the block as DAG-JSON: {e}")))
    }

    /// A block's size and codec.
    pub async fn block_stat(&self, cid: &str) -> Result<BlockStat, Error> {
        let cid = parse_cid(cid)?;
        let bytes = self.store().require(&cid).await?;
        Ok(BlockStat {
            cid: cid.to_string(),
            size: bytes.len(),
            codec: pcid::codec_name(cid.codec()).to_string(),
        })
    }

    /// Every pin: the recursive ones, then the shallow ones.
    pub async fn pins(&self) -> Result<PinList, Error> {
        let store = self.store();
        let kinds = [
            ("recursive", store.pins().await?),
            ("shallow", store.shallow_pins().await?),
        ];
        let pins = kinds
            .into_iter()
            .flat_map(|(kind, pins)| {
                pins.into_iter().map(move |(name, cid)| Pin {
                    cid: cid.to_string(),
                    name,
                    kind: kind.to_string(),
                })
            })
            .collect();
        Ok(PinList { pins })
    }

    /// Pins the DAG under `cid` (all of it must be stored).
    pub async fn pin_add(&self, cid: &str) -> Result<Pin, Error> {
        let cid = parse_cid(cid)?;
        let _writing = self.inner.gc_lock.read().await;
        dag::check_complete(self.store(), &cid).await.map_err(|e| {
            Error::invalid(format!("cannot pin {cid}: its DAG is not complete in this repository; import it first (ipvec dag import): {e}"))
        })?;
        self.store().pin(&cid).await?;
        self.store().flush().await?;
        Ok(Pin {
            cid: cid.to_string(),
            name: cid.to_string(),
            kind: "recursive".into(),
        })
    }

    /// Removes a `pin add` pin.
    pub async fn pin_rm(&self, cid: &str) -> Result<Pin, Error> {
        let cid = parse_cid(cid)?;
        if !self.store().unpin(&cid).await? {
            return Err(Error::not_found(format!(
                "{cid} is not pinned; `ipvec pin ls` lists the pins"
            )));
        }
        self.store().flush().await?;
        Ok(Pin {
            cid: cid.to_string(),
            name: cid.to_string(),
            kind: "recursive".into(),
        })
    }

    /// Removes every block no pin reaches.
    pub async fn gc(&self) -> Result<GcResult, Error> {
        self.observed("gc", "", async {
            let _alone = self.inner.gc_lock.write().await;
            let _job = self.inner.jobs.start("gc", "", "blocks", None);
            let report = gc::collect_garbage(self.store()).await?;
            if let Ok(mut size) = self.inner.store_size.lock() {
                *size = None;
            }
            Ok(GcResult {
                removed_blocks: report.removed.blocks,
                removed_bytes: report.removed.bytes,
                live_blocks: report.live_blocks,
                missing_blocks: report.missing_blocks,
            })
        })
        .await
    }

    /// Stores the signed head of collection `name` as a block and returns its CID: the root
    /// of the collection's export (its acknowledged writes committed first).
    pub async fn collection_export_root(&self, name: &str) -> Result<Cid, Error> {
        self.commit(name).await?;
        let c = self.collection(name).await?;
        let c = c.read().await;
        let head = self
            .store()
            .put(pcid::DAG_CBOR, Bytes::from(dagcbor::encode(c.head())?))
            .await?;
        Ok(head)
    }

    /// Writes the DAG under `root` as a CAR v1 stream into `out`.
    pub async fn export_car<W: AsyncWrite + Unpin + Send>(
        &self,
        root: &Cid,
        out: W,
        progress: impl FnMut(car::CarProgress),
    ) -> Result<car::CarProgress, Error> {
        self.observed("export", "", async {
            let job = self
                .inner
                .jobs
                .start("export", root.to_string(), "bytes", None);
            let mut progress = progress;
            let totals = car::export(self.store(), root, out, |p| {
                job.set(p.bytes);
                progress(p)
            })
            .await?;
            Ok(totals)
        })
        .await
    }

    /// Reads a CAR v1 stream into the store, checking every block; pins its roots only if
    /// all of it is good.
    pub async fn import_car<R: AsyncRead + Unpin + Send>(
        &self,
        input: R,
        total: Option<u64>,
        progress: impl FnMut(car::CarProgress),
    ) -> Result<CarImported, Error> {
        self.observed("import", "", async {
            self.check_storage().await?;
            let _writing = self.inner.gc_lock.read().await;
            let job = self.inner.jobs.start("import", "car", "bytes", total);
            let mut progress = progress;
            let summary = car::import(self.store(), input, |p| {
                job.set(p.bytes);
                progress(p)
            })
            .await?;
            Ok(CarImported {
                roots: summary.roots.iter().map(|c| c.to_string()).collect(),
                blocks: summary.totals.blocks,
                bytes: summary.totals.bytes,
            })
        })
        .await
    }

    /// Registers a collection from an imported CAR (from `collection export`) whose root
    /// is its signed head, under `name` or its own name.
    pub async fn adopt_collection(
        &self,
        imported: &CarImported,
        name: Option<String>,
    ) -> Result<CollectionImported, Error> {
        let store = self.store();
        let [ref root] = imported.roots[..] else {
            return Err(Error::invalid(format!(
                "the CAR has {} roots; a collection export has exactly one (its signed head)",
                imported.roots.len()
            )));
        };
        let root = parse_cid(root.as_str())?;
        let adopted = async {
            let head: HeadRecord = dagcbor::decode(&store.require(&root).await?).map_err(|_| {
                Error::invalid(
                    "the CAR is not a collection export (its root is no signed head); \
                     use `ipvec dag import` for other DAGs",
                )
            })?;
            self.register(head, name, None).await
        }
        .await;
        // The collection's own pin (on its manifest) now keeps the DAG; the file's root pin goes.
        store.unpin(&root).await?;
        store.flush().await?;
        adopted
    }

    /// Registers the collection of `head` (whose DAG is in the store) under `name` or the
    /// manifest's own name, and announces it.
    pub(super) async fn register(
        &self,
        head: HeadRecord,
        name: Option<String>,
        held: Option<Vec<u32>>,
    ) -> Result<CollectionImported, Error> {
        let store = self.store();
        let manifest: Manifest = dagcbor::decode(&store.require(&head.manifest).await?)?;
        let name = name.unwrap_or(manifest.name);
        catalog::check_new_name(&name)?;
        let node = self.clone();
        // Offloaded: it runs to its end even if the caller goes away.
        offload_background(async move { node.register_in_turn(head, &name, held).await }).await
    }
}
