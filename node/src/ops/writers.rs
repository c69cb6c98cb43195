//! A collection's writers: the keys its manifest allows to publish versions. The owner's node
//! adds and removes them (each change a new signed version, gossiped to followers); any node
//! lists them.

use ipvec_protocol::{
    api::{WriterInfo, WriterList},
    head::{collection_id, key_of_id},
};

use super::{Error, Node};
use crate::collection::{writers::WriterChange, Collection};
use crate::store::IrohBlockStore;

/// The writer list of `c`, as the API shows it.
fn list_of(name: &str, c: &Collection<IrohBlockStore>, changed: bool) -> Result<WriterList, Error> {
    let owner = c.manifest().owner.clone();
    let writers = c
        .writers()
        .iter()
        .map(|key| {
            Ok(WriterInfo {
                id: collection_id(key)?,
                owner: key.as_slice() == owner.as_slice(),
            })
        })
        .collect::<Result<_, ipvec_protocol::ProtocolError>>()?;
    Ok(WriterList {
        name: name.to_string(),
        writers,
        version: c.head().seq,
        changed,
    })
}

impl Node {
    /// The keys collection `name` allows to publish versions, the owner's first.
    pub async fn writers(&self, name: &str) -> Result<WriterList, Error> {
        let c = self.collection(name).await?;
        let c = c.read().await;
        list_of(name, &c, false)
    }

    /// Allows (`allow`) or stops allowing the key `key` (a peer id, `12D3KooW…`) to publish
    /// versions of collection `name`: a new version signed by the owner, so only the owner's
    /// node can; followers hear of it at once.
    pub async fn change_writer(
        &self,
        name: &str,
        key: &str,
        allow: bool,
    ) -> Result<WriterList, Error> {
        let key = key_of_id(key).map_err(|e| Error::invalid(e.to_string()))?;
        let change = match allow {
            true => WriterChange::Add(key),
            false => WriterChange::Remove(key),
        };
        let shared = self.collection(name).await?;
        let list = {
            let _writing = self.inner.gc_lock.read().await;
            let mut c = shared.write().await;
            let changed = c.change_writers(change).await?;
            self.inner.ids.opened(name, &c);
            list_of(name, &c, changed)?
        };
        if list.changed {
            self.gossip_head(name).await?;
        }
        Ok(list)
    }
}
