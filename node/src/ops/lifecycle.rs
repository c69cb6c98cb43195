//! The lifecycle of a collection name: opening, creating, registering and dropping one name
//! take turns, while other names go on.
//!
//! The node's map holds a [`Slot`] per name. The map's mutex is held only to find or add a
//! slot; a slot's turn is held while its collection opens, is created or is dropped. A request
//! for an open collection takes neither the turn nor the collection's lock here: it gets the
//! shared collection, or a clean conflict while the name is being dropped.
//!
//! While a collection opens (loading or rebuilding its index, which can take minutes), its
//! slot says how far the opening has come. In a node that opens its collections in the
//! background (a daemon, once [`Node::open_all`] runs), every opening runs in a task of the
//! node's own and a request waits for it at most [`OPEN_WAIT`]: then the request is refused as
//! unavailable, told how much of the index is built, and the opening goes on. Without
//! background opening (the CLI working on the repository directly) a request waits for the
//! opening to end.
//!
//! A drop marks the slot dropping (new requests get a conflict), waits for the requests in flight
//! on the collection, takes its folder out of the catalog with one rename, retires it (a
//! request that still holds it cannot write to it or bring part of it back), then frees what
//! it held: its announcements, its pin, the renamed folder. A create builds the collection in
//! a staging folder and renames it in place when whole. A crash thus leaves each collection
//! whole or gone; [`catalog::sweep`] removes the leftover folders when a node next opens the
//! repository.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{oneshot, Notify, RwLock};

use super::{Error, Node, SharedCollection};
use crate::{
    collection::{
        self, catalog, pin_name, Collection, CollectionError, CollectionSpec, OpenProgress,
    },
    store::{BlockStore, IrohBlockStore},
};
use ipvec_protocol::api::*;

/// How long a request waits for its collection to finish opening in a node that opens its
/// collections in the background, before it is refused with how far the opening has come.
pub(super) const OPEN_WAIT: Duration = Duration::from_secs(1);

/// One collection name in the node's map.
#[derive(Debug, Default)]
pub(super) struct Slot {
    /// Held while the name's collection opens, is created, registered or dropped.
    turn: tokio::sync::Mutex<()>,
    /// Where the name stands; never held across an await.
    state: Mutex<State>,
    /// Wakes those waiting for the state to change.
    changed: Notify,
}

/// Where a collection name stands.
#[derive(Debug, Clone, Default)]
enum State {
    /// Not open: on disk, or nowhere.
    #[default]
    Closed,
    /// Opening, in the name's turn: loading or rebuilding its index, then replaying its log.
    Opening(OpenProgress),
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
        self.changed.notify_waiters();
    }

    /// The open collection, if the name has one.
    pub(super) fn open(&self) -> Option<SharedCollection> {
        match self.state() {
            State::Open(c) => Some(c),
            State::Closed | State::Opening(_) | State::Dropping => None,
        }
    }

    /// The state once no opening is under way (waiting for one to end).
    async fn settled(&self) -> State {
        loop {
            // Registered before the state is read: a change in between still wakes it.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.state() {
                State::Opening(_) => changed.await,
                settled => return settled,
            }
        }
    }
}

/// Puts a slot back to closed if the opening it marks ends without setting its outcome (its
/// future was dropped: a shutdown, a request that went away).
struct OpeningMark<'a>(&'a Slot);

impl Drop for OpeningMark<'_> {
    fn drop(&mut self) {
        if matches!(self.0.state(), State::Opening(_)) {
            self.0.set(State::Closed);
        }
    }
}

fn being_dropped(name: &str) -> Error {
    Error::conflict(format!(
        "collection {name:?} is being dropped; create it again once the drop has answered"
    ))
}

/// `n` with a comma between each group of three digits.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// Why a request for `name` is refused after waiting [`OPEN_WAIT`] while the name is in
/// `state`: how far its opening has come, or who holds its turn.
fn not_open_yet(name: &str, state: &State) -> Error {
    match state {
        State::Opening(progress) => match progress.get() {
            (_, 0) => Error::unavailable(format!(
                "collection {name:?} is opening: reading its shards; retry in a few seconds"
            )),
            (done, total) if done >= total => Error::unavailable(format!(
                "collection {name:?} is opening: its index is built ({} points) and its log \
                 is being replayed; retry in a moment",
                grouped(total)
            )),
            (done, total) => Error::unavailable(format!(
                "collection {name:?} is opening: {}% of its index built ({} of {} points); \
                 retry in a few seconds",
                progress.percent(),
                grouped(done),
                grouped(total)
            )),
        },
        State::Open(_) | State::Closed | State::Dropping => Error::unavailable(format!(
            "collection {name:?} is busy: it is being created, imported or dropped, or another \
             collection change holds it; retry in a few seconds"
        )),
    }
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
    /// Gives a collection opened here the storage settings it runs with.
    fn configure(&self, c: &mut Collection<IrohBlockStore>) {
        let storage = &self.config().storage;
        c.set_publishing(storage.publishing());
        c.set_write_threads(storage.write_threads());
    }

    /// The slot of `name`, added to the map if it has none.
    pub(super) async fn slot(&self, name: &str) -> Arc<Slot> {
        let mut slots = self.inner.collections.lock().await;
        slots.entry(name.to_string()).or_default().clone()
    }

    /// The names whose collection is open, and those opening with the percent of their index
    /// built.
    pub(super) async fn open_and_opening(&self) -> (Vec<String>, Vec<(String, u64)>) {
        let slots = self.inner.collections.lock().await;
        let (mut open, mut opening) = (Vec::new(), Vec::new());
        for (name, slot) in slots.iter() {
            match slot.state() {
                State::Open(_) => open.push(name.clone()),
                State::Opening(progress) => opening.push((name.clone(), progress.percent())),
                State::Closed | State::Dropping => {}
            }
        }
        open.sort();
        opening.sort();
        (open, opening)
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

    /// The collection of `slot`, opened from `dir` if it is closed (in the name's turn); a
    /// name being dropped is refused at once. In a node that opens its collections in the
    /// background, a collection that is not open within [`OPEN_WAIT`] is refused as
    /// unavailable, with how far its opening has come, and goes on opening.
    pub(super) async fn open_in(
        &self,
        name: &str,
        slot: &Arc<Slot>,
        dir: &Path,
    ) -> Result<SharedCollection, Error> {
        match slot.state() {
            State::Open(c) => return Ok(c),
            State::Dropping => return Err(being_dropped(name)),
            State::Closed | State::Opening(_) => {}
        }
        if !self.opens_in_background() {
            let _turn = slot.turn.lock().await;
            return self.open_in_turn(name, slot, dir).await;
        }
        match tokio::time::timeout(OPEN_WAIT, self.open_in_task(name, slot, dir)).await {
            Ok(opened) => opened,
            Err(_) => Err(not_open_yet(name, &slot.state())),
        }
    }

    /// Waits for an opening of `slot` under way to end; if it is still closed then, opens it
    /// in a task of the node's own, so that the opening goes on if the caller stops waiting.
    async fn open_in_task(
        &self,
        name: &str,
        slot: &Arc<Slot>,
        dir: &Path,
    ) -> Result<SharedCollection, Error> {
        match slot.settled().await {
            State::Open(c) => return Ok(c),
            State::Dropping => return Err(being_dropped(name)),
            State::Closed | State::Opening(_) => {}
        }
        let (tx, rx) = oneshot::channel();
        let task = {
            let (node, slot, name, dir) = (
                self.clone(),
                slot.clone(),
                name.to_string(),
                PathBuf::from(dir),
            );
            async move {
                let opened = {
                    let _turn = slot.turn.lock().await;
                    node.open_in_turn(&name, &slot, &dir).await
                };
                // Let go of the slot before answering, so the caller can release it.
                drop(slot);
                let _ = tx.send(opened);
            }
        };
        let stopped = || {
            Error::unavailable(format!(
                "collection {name:?} cannot be opened: the node is shutting down"
            ))
        };
        if !self.tasks().spawn(task) {
            return Err(stopped());
        }
        rx.await.unwrap_or_else(|_| Err(stopped()))
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
            // An opening marks its slot only in its turn, and unmarks it before letting go:
            // one found here was cut short.
            State::Closed | State::Opening(_) if !catalog::exists(dir) => {
                Err(CollectionError::NotFound(name.to_string()).into())
            }
            State::Closed | State::Opening(_) => {
                let progress = OpenProgress::default();
                slot.set(State::Opening(progress.clone()));
                let _mark = OpeningMark(slot);
                let threads = self.config().storage.index_build_threads();
                let mut c = Collection::open_with(self.store().clone(), dir, &progress, threads)
                    .await
                    .map_err(|e| folder_error("open", name, e))?;
                self.configure(&mut c);
                // A collection whose manifest lists this node's key is written here with it.
                c.take_writer_key(self.inner.repo.key())
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
        quota: CollectionQuota,
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
            let c = self.build(&spec, quota, &root, &dir).await?;
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
        quota: CollectionQuota,
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
            super::quota::save_quota(&staged, quota).map_err(crate::collection::io_at(&staged))?;
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
            let _ = collection::unpin(self.store(), &spec.name).await;
            return Err(folder_error("create", &spec.name, e));
        }
        let mut c = Collection::open(self.store().clone(), dir)
            .await
            .map_err(|e| folder_error("open", &spec.name, e))?;
        self.configure(&mut c);
        Ok(c)
    }

    /// Registers the collection of `head` (whose DAG is in the store) under `name`, in the
    /// name's turn; a failure leaves nothing behind.
    pub(super) async fn register_in_turn(
        &self,
        head: ipvec_protocol::head::HeadRecord,
        name: &str,
        held: Option<Vec<u32>>,
    ) -> Result<CollectionImported, Error> {
        let dir = catalog::dir_of(&self.collections_root(), name)?;
        let slot = self.slot(name).await;
        let registered = async {
            let _turn = slot.turn.lock().await;
            if !matches!(slot.state(), State::Closed) || catalog::exists(&dir) {
                return Err(CollectionError::Exists(name.to_string()).into());
            }
            let mut c = match Collection::adopt_shards(self.store().clone(), &dir, head, held).await
            {
                Ok(c) => c,
                Err(e) => {
                    if dir.exists() {
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                    let _ = collection::unpin(self.store(), name).await;
                    return Err(folder_error("register", name, e));
                }
            };
            self.configure(&mut c);
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
                collection::unpin(self.store(), name).await?;
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
        let mut names: Vec<String> = self
            .store()
            .pins()
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.extend(
            self.store()
                .shallow_pins()
                .await?
                .into_iter()
                .map(|(n, _)| n),
        );
        names.sort();
        names.dedup();
        for pin in names {
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
                    return collection::unpin(self.store(), name).await;
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::repo::Repo;

    /// A node on a new repository that opens its collections in the background (as a daemon
    /// does once `open_all` runs), with collection `c`.
    async fn serving_node() -> (tempfile::TempDir, Node) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init(&dir.path().join("repo")).await.unwrap();
        let config = repo.config().clone();
        let node = Node::new(repo, config);
        let create = serde_json::json!({"name": "c", "dim": 2, "metric": "l2"});
        node.create_collection(serde_json::from_value(create).unwrap())
            .await
            .unwrap();
        node.inner
            .opens_in_background
            .store(true, Ordering::Release);
        (dir, node)
    }

    /// A collection created here, and one opened again by a new node, writes from the
    /// threads `storage.write_threads` names (0: one per core).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn collections_write_from_the_threads_the_config_names() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for (setting, threads) in [(3, 3), (0, cores), (1, 1)] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("repo");
            let repo = Repo::init(&path).await.unwrap();
            let mut config = repo.config().clone();
            config.storage.write_threads = setting;
            let node = Node::new(repo, config.clone());
            let create = serde_json::json!({"name": "c", "dim": 2, "metric": "l2"});
            node.create_collection(serde_json::from_value(create).unwrap())
                .await
                .unwrap();
            let created = node.collection("c").await.unwrap();
            assert_eq!(created.read().await.write_threads(), threads, "{setting}");
            drop(created);
            node.close().await.unwrap();
            drop(node);
            let node = Node::new(Repo::open(&path).await.unwrap(), config);
            let opened = node.collection("c").await.unwrap();
            assert_eq!(opened.read().await.write_threads(), threads, "{setting}");
            drop(opened);
            node.close().await.unwrap();
        }
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        let cases = [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (1_234_567, "1,234,567"),
        ];
        for (n, text) in cases {
            assert_eq!(grouped(n), text);
        }
    }

    #[tokio::test]
    async fn a_request_for_a_collection_still_opening_is_refused_after_a_moment() {
        let (_dir, node) = serving_node().await;
        // Another opening of `a` holds its turn (its count not known yet).
        let slot = node.slot("a").await;
        slot.set(State::Opening(OpenProgress::default()));
        tokio::time::pause();
        let started = tokio::time::Instant::now();
        let refused = node.collection("a").await.unwrap_err();
        let waited = started.elapsed();
        assert!(OPEN_WAIT <= waited && waited < 2 * OPEN_WAIT, "{waited:?}");
        assert_eq!(
            refused,
            Error::unavailable(
                "collection \"a\" is opening: reading its shards; retry in a few seconds"
            )
        );
        // Other names are not held up meanwhile.
        assert!(node.collection("c").await.is_ok());
        assert_eq!(started.elapsed(), waited);
    }

    #[tokio::test]
    async fn a_request_waiting_for_an_opening_gets_the_collection_when_it_ends() {
        let (_dir, node) = serving_node().await;
        let c = node.collection("c").await.unwrap();
        let slot = node.slot("c").await;
        slot.set(State::Opening(OpenProgress::default()));
        tokio::time::pause();
        let waiting = tokio::spawn({
            let node = node.clone();
            async move { node.collection("c").await }
        });
        tokio::time::sleep(OPEN_WAIT / 2).await;
        assert!(!waiting.is_finished(), "it waits for the opening");
        slot.set(State::Open(c.clone()));
        let got = waiting.await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&got, &c));
    }

    #[tokio::test]
    async fn an_opening_cut_short_leaves_its_name_closed() {
        let (_dir, node) = serving_node().await;
        let slot = node.slot("c").await;
        slot.set(State::Closed);
        {
            let _mark = OpeningMark(&slot);
            slot.set(State::Opening(OpenProgress::default()));
        }
        assert!(matches!(slot.state(), State::Closed));
        // The next request opens it again.
        assert!(node.collection("c").await.is_ok());
        assert!(slot.open().is_some());
    }
}
