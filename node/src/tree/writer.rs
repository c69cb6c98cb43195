//! Writing an operation's nodes behind it.
//!
//! A node's CID is the hash of its bytes, known before the store holds them. So an operation
//! takes the CID at once and goes on encoding the next nodes while the store files the last
//! ones on tasks of their own (iroh-blobs hashes each block again into its own tree and writes
//! a file per block: work for the other core). The operation waits for every write before it
//! hands out a root ([`NodeWriter::finish`]), so a root is only ever seen whole.

use std::collections::VecDeque;

use bytes::Bytes;
use cid::Cid;
use ipvec_protocol::cid::{self as pcid, DAG_CBOR};
use tokio::task::JoinHandle;

use super::{TreeError, WriteStats};
use crate::store::{BlockStore, StoreError};

/// Writes in flight at most. Eight leaves of the 256 KiB target keep the store busy and hold
/// about 2 MiB of nodes not yet stored.
const IN_FLIGHT: usize = 8;

/// Writes the nodes of one tree operation.
#[derive(Debug)]
pub(crate) struct NodeWriter<S> {
    store: S,
    /// Writes on tasks of their own, oldest first. Outside a tokio runtime (the simulations
    /// drive trees from their own executor) each write is awaited in turn instead. Inside one,
    /// the operation must be driven by that runtime: another executor blocking the only thread
    /// of a current-thread runtime would wait for writes that thread never runs.
    in_flight: VecDeque<JoinHandle<Result<(), StoreError>>>,
    /// What was written (including nodes the store already had).
    pub stats: WriteStats,
}

impl<S: BlockStore> NodeWriter<S> {
    pub fn new(store: &S) -> Self {
        Self {
            store: store.clone(),
            in_flight: VecDeque::new(),
            stats: WriteStats::default(),
        }
    }

    /// Writes a node; its CID.
    pub async fn write(&mut self, bytes: Vec<u8>) -> Result<Cid, TreeError> {
        self.stats.blocks += 1;
        self.stats.bytes += bytes.len() as u64;
        let cid = pcid::block_cid(DAG_CBOR, &bytes);
        let digest = pcid::digest(&cid)?;
        let bytes = Bytes::from(bytes);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                if self.in_flight.len() >= IN_FLIGHT {
                    self.wait_oldest().await?;
                }
                let store = self.store.clone();
                let write = runtime.spawn(async move { store.put_raw(digest, bytes).await });
                self.in_flight.push_back(write);
            }
            Err(_) => self.store.put_raw(digest, bytes).await?,
        }
        Ok(cid)
    }

    /// Waits until every node written so far is stored.
    pub async fn finish(&mut self) -> Result<(), TreeError> {
        while !self.in_flight.is_empty() {
            self.wait_oldest().await?;
        }
        Ok(())
    }

    async fn wait_oldest(&mut self) -> Result<(), TreeError> {
        let Some(write) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match write.await {
            Ok(stored) => Ok(stored?),
            // The runtime shut down or the store panicked: nothing points to the nodes yet.
            Err(e) => Err(StoreError::Backend(format!(
                "writing a tree node did not finish ({e}); nothing was committed: run the \
                 operation again once the node is running"
            ))
            .into()),
        }
    }
}
