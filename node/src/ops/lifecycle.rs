//! The lifecycle of a collection name: opening, creating, registering and dropping one name
//! take turns, while other names go on.
//!
//! The node's map holds a [`Slot`] per name. The map's mutex is held only to find or add a
//! slot; a slot's turn is held while its collection opens, is created or is dropped. A request
//! for an open collection takes neither the turn nor the collection's lock here: it gets the
//! shared collection, or a clean conflict while the name is being dropped.
//!
//! A drop marks the slot dropping (new requests get a conflict), waits for the requests in flight
//! on the collection, takes its folder out of the catalog with one rename, retires it (a
//! request that still holds it cannot write to it or bring part of it back), then frees what
//! it held: its announcements, its pin, the renamed folder. A create builds the collection in
//! a staging folder and renames it in place when whole. A crash thus leaves each collection
//! whole or gone; [`catalog::sweep`] removes the leftover folders when a node next opens the
//! repository.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use tokio::sync::RwLock;

use super::{Error, Node, SharedCollection};
use crate::{
    collection::{catalog, pin_name, Collection, CollectionError, CollectionSpec},
    store::{BlockStore, IrohBlockStore},
};
use ipvec_protocol::api::*;

/// One collection name in the node's map.
#[derive(Debug, Default)]
pub(super) struct Slot {
    /// Held while the name's collection opens, is created, registered or dropped.
    turn: tokio::sync::Mutex<()>,
    /// Where the name stands; never held across an await.
    state: Mutex<State>,
}

/// Where a collection name stands.
#[derive(Debug, Clone, Default)]
enum State {
    /// Not open: on disk, or nowhere.
    #[default]
    Closed,
    /// Open and shared by requests.
    Open(SharedCollection),
    /// A drop is waiting for the requests in flight or removing the collection.
    Dropping,
}

impl Slot {
    fn state(&self) -> State {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, state: State) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// The open collection, if the name has one.
    pub(super) fn open(&self) -> Option<SharedCollection> {
        match self.state() {
            State::Open(c) => Some(c),
            State::Closed | State::Dropping => None,
        }
    }
}

fn being_dropped(name: &str) -> Error {
    Error::conflict(format!(
        "collection {name:?} is being dropped; create it again once the drop has answered"
    ))
}

/// A failed file operation on a collection's folder, told as what could not be done.
fn folder_error(action: &str, name: &str, e: CollectionError) -> Error {
    match e {
        CollectionError::Io { path, source } => Error::internal(format!(
            "cannot {action} collection {name:?}: a file operation on {} failed ({source}); \
             check that the repository's collections folder is writable and its disk has space",
            path.display()
        )),
        other => other.into(),
    }
}

impl Node {
    /// The slot of `name`, added to the map if it has none.
    pub(super) async fn slot(&self, name: &str) -> Arc<Slot> {
        let mut slots = self.inner.collections.lock().await;
        slots.entry(name.to_string()).or_default().clone()
    }

    /// Takes `name`'s slot out of the map when it holds no collection and nobody else uses
    /// it, so names dropped or never there do not pile up.
    pub(super) async fn release(&self, name: &str, slot: Arc<Slot>) {
        let mut slots = self.inner.collections.lock().await;
        // The map's own reference and `slot`: nobody waits for its turn.
        let idle = matches!(slot.state(), State::Closed)
            && Arc::strong_count(&slot) == 2
            && slots.get(name).is_some_and(|s| Arc::ptr_eq(s, &slot));
        if idle {
            slots.remove(name);
        }
    }

    /// The collection of `slot`, opened from `dir` if it is closed (waiting for the name's
    /// turn); a name being dropped is refused at once.
    pub(super) async fn open_in(
        &self,
        name: &str,
        slot: &Slot,
        dir: &Path,
    ) -> Result<SharedCollection, Error> {
        match slot.state() {
            State::Open(c) => return Ok(c),
            State::Dropping => return Err(being_dropped(name)),
            State::Closed => {}
        }
        let _turn = slot.turn.lock().await;
        self.open_in_turn(name, slot, dir).await
    }

    /// [`Node::open_in`] with the name's turn held.
    async fn open_in_turn(
        &self,
        name: &str,
        slot: &Slot,
        dir: &Path,
    ) -> Result<SharedCollection, Error> {
        match slot.state() {
            State::Open(c) => Ok(c),
            State::Dropping => Err(being_dropped(name)),
            State::Closed if !catalog::exists(dir) => {
                Err(CollectionError::NotFound(name.to_string()).into())
            }
            State::Closed => {
                let c = Collection::open(self.store().clone(), dir)
                    .await
                    .map_err(|e| folder_error("open", name, e))?;
                self.inner.ids.opened(name, &c);
                let c = Arc::new(RwLock::new(c));
                slot.set(State::Open(c.clone()));
                Ok(c)
            }
        }
    }

    /// Opens collection `name` (if it still exists) and announces it, in the name's turn so
    /// that a drop cannot come between; `Ok(None)` if it was dropped meanwhile.
    pub(super) async fn open_and_announce(
        &self,
        name: &str,
    ) -> Result<Option<SharedCollection>, Error> {
        let dir = catalog::dir_of(&self.collections_root(), name)?;
        let slot = self.slot(name).await;
        let opened = async {
            let _turn = slot.turn.lock().await;
            let c = self.open_in_turn(name, &slot, &dir).await?;
            self.announce(name).await?;
            Ok(c)
        }
        .await;
        self.release(name, slot).await;
        match opened {
            Err(_) if !catalog::exists(&dir) => Ok(None),
            other => other.map(Some),
        }
    }

    /// Creates collection `spec.name`, in the name's turn.
    pub(super) async fn create_in_turn(
        &self,
        spec: CollectionSpec,
    ) -> Result<CollectionInfo, Error> {
        spec.validate()?;
        let name = spec.name.clone();
        let root = self.collections_root();
        let dir = catalog::dir_of(&root, &name)?;
        let slot = self.slot(&name).await;
        let created = async {
            let _turn = slot.turn.lock().await;
            if !matches!(slot.state(), State::Closed) || catalog::exists(&dir) {
                return Err(CollectionError::Exists(name.clone()).into());
            }
            let c = self.build(&spec, &root, &dir).await?;
            let info = self.info_of(&name, &c)?;
            self.inner.ids.opened(&name, &c);
            slot.set(State::Open(Arc::new(RwLock::new(c))));
            // Announced before a drop can withdraw it.
            self.announce(&name).await?;
            Ok(info)
        }
        .await;
        self.release(&name, slot).await;
        created
    }

    /// Creates a collection in a staging folder under `root`, then puts it in place at `dir`
    /// with one rename; a failure leaves nothing behind (no folder, no pin).
    async fn build(
        &self,
        spec: &CollectionSpec,
        root: &Path,
        dir: &Path,
    ) -> Result<Collection<IrohBlockStore>, Error> {
        let staged = catalog::staging_dir(root, &spec.name)
            .map_err(|e| folder_error("create", &spec.name, e))?;
        let built = async {
            // Its blocks are written before they are pinned: gc waits.
            let _writing = self.inner.gc_lock.read().await;
            Collection::create(self.store().clone(), &staged, spec)
                .await?
                .close()
                .await?;
            catalog::publish(&staged, dir)
        }
        .await;
        if let Err(e) = built {
            if staged.exists() {
                if let Err(e) = std::fs::remove_dir_all(&staged) {
                    tracing::warn!(path = %staged.display(), error = %e, "cannot remove a failed create's folder; the next start removes it");
                }
            }
            // No collection of this name exists (its turn is held), so the pin is the failed one's.
            let _ = self.store().unpin_name(&pin_name(&spec.name)).await;
            return Err(folder_error("create", &spec.name, e));
        }
        Collection::open(self.store().clone(), dir)
            .await
            .map_err(|e| folder_error("open", &spec.name, e))
    }

    /// Registers the collection of `head` (whose DAG is in the store) under `name`, in the
    /// name's turn; a failure leaves nothing behind.
    pub(super) async fn register_in_turn(
        &self,
        head: ipvec_protocol::head::HeadRecord,
        name: &str,
    ) -> Result<CollectionImported, Error> {
        let dir = catalog::dir_of(&self.collections_root(), name)?;
        let slot = self.slot(name).await;
        let registered = async {
            let _turn = slot.turn.lock().await;
            if !matches!(slot.state(), State::Closed) || catalog::exists(&dir) {
                return Err(CollectionError::Exists(name.to_string()).into());
            }
            let c = match Collection::adopt(self.store().clone(), &dir, head).await {
                Ok(c) => c,
                Err(e) => {
                    if dir.exists() {
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                    let _ = self.store().unpin_name(&pin_name(name)).await;
                    return Err(folder_error("register", name, e));
                }
            };
            let imported = CollectionImported {
                name: name.to_string(),
                id: c.id()?,
                root: c.root().to_string(),
                points: c.points(),
                writable: c.writable(),
            };
            self.inner.ids.opened(name, &c);
            slot.set(State::Open(Arc::new(RwLock::new(c))));
            self.announce(name).await?;
            Ok(imported)
        }
        .await;
        self.release(name, slot).await;
        registered
    }

    /// Drops collection `name`, in the name's turn.
    pub(super) async fn drop_in_turn(&self, name: &str) -> Result<Dropped, Error> {
        let root = self.collections_root();
        let dir = catalog::dir_of(&root, name)?;
        let slot = self.slot(name).await;
        let dropped = async {
            let _turn = slot.turn.lock().await;
            let shared = self.open_in_turn(name, &slot, &dir).await?;
            slot.set(State::Dropping);
            // Requests in flight on it finish first; new ones get a conflict meanwhile.
            let mut c = shared.write().await;
            let gone = c.id().map_err(Error::from).and_then(|id| {
                let grave = catalog::bury(&root, name).map_err(|e| folder_error("drop", name, e))?;
                Ok((id, grave))
            });
            let (id, grave) = match gone {
                Ok(gone) => gone,
                Err(e) => {
                    slot.set(State::Open(shared.clone()));
                    return Err(e);
                }
            };
            // Out of the catalog: the collection is dropped. The rest frees what it held.
            c.retire();
            slot.set(State::Closed);
            self.inner.ids.removed(&id);
            let collection_root = c.root();
            let shards = c.manifest().shards.len() as u32;
            drop(c);
            self.withdraw(&id, shards).await;
            if let Some(network) = self.inner.network.get() {
                let _ = network.stop_providing_on_ipfs(collection_root).await;
            }
            let unpinned = async {
                self.store().unpin_name(&pin_name(name)).await?;
                self.store().flush().await
            };
            if let Err(e) = unpinned.await {
                tracing::warn!(collection = %name, error = %e, "cannot remove a dropped collection's pin; its blocks stay until a collection of that name is created again");
            }
            if let Err(e) = std::fs::remove_dir_all(&grave) {
                tracing::warn!(path = %grave.display(), error = %e, "cannot remove a dropped collection's folder; the next start removes it");
            }
            Ok(Dropped {
                dropped: name.to_string(),
                root: collection_root.to_string(),
            })
        }
        .await;
        self.release(name, slot).await;
        dropped
    }

    /// Removes the pins of collections whose drop a crash cut short after their folder went
    /// (pins named for a collection that has no folder), each in its name's turn.
    pub(super) async fn unpin_dropped(&self) -> Result<(), Error> {
        let root = self.collections_root();
        let marker = pin_name("");
        let mut unpinned = 0;
        for (pin, _) in self.store().pins().await? {
            let Some(name) = pin.strip_prefix(&marker) else {
                continue;
            };
            let Ok(dir) = catalog::dir_of(&root, name) else {
                continue;
            };
            let slot = self.slot(name).await;
            let dropped = async {
                let _turn = slot.turn.lock().await;
                if matches!(slot.state(), State::Closed) && !catalog::exists(&dir) {
                    return self.store().unpin_name(&pin).await;
                }
                Ok(false)
            }
            .await;
            self.release(name, slot).await;
            unpinned += usize::from(dropped?);
        }
        if unpinned > 0 {
            self.store().flush().await?;
            tracing::info!(
                unpinned,
                "removed the pins of collections a crash dropped half way"
            );
        }
        Ok(())
    }
}
