//! The open collections by id, with what judging a gossiped head needs of each (its writers,
//! and the newest head merged from each), readable
//! without taking any collection's lock: a long write on one collection never holds up
//! gossip. Filled when a collection is opened, created or registered, refreshed when a
//! replica advances, emptied of a collection when it is dropped; so it holds at most one
//! entry per open collection.

use std::{collections::HashMap, sync::Mutex};

use crate::{collection::Collection, store::IrohBlockStore};

/// What gossip validation knows of an open collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Known {
    /// Its name on this node.
    pub(super) name: String,
    /// The keys allowed to sign its heads.
    pub(super) writers: Vec<Vec<u8>>,
    /// The key this node writes it with, if it does (its own heads are not followed).
    pub(super) signer: Option<Vec<u8>>,
    /// The sequence of the newest head merged here from each writer, when last seen here.
    pub(super) seqs: std::collections::BTreeMap<Vec<u8>, u64>,
}

/// The open collections by id.
#[derive(Debug, Default)]
pub(super) struct CollectionIds(Mutex<HashMap<String, Known>>);

impl CollectionIds {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records collection `c`, open under `name` (again, after it advanced).
    pub(super) fn opened(&self, name: &str, c: &Collection<IrohBlockStore>) {
        match c.id() {
            Ok(id) => {
                let known = Known {
                    name: name.to_string(),
                    writers: c.manifest().writers.iter().map(|w| w.to_vec()).collect(),
                    signer: c.signer_key().map(|k| k.to_vec()),
                    seqs: c
                        .writer_heads()
                        .into_iter()
                        .map(|h| (h.writer, h.seq))
                        .collect(),
                };
                self.map().insert(id, known);
            }
            Err(e) => {
                tracing::warn!(collection = %name, error = %e, "a collection without an id; gossip about it is ignored");
            }
        }
    }

    /// Forgets collection `id` (dropped).
    pub(super) fn removed(&self, id: &str) {
        self.map().remove(id);
    }

    /// Forgets every collection (the node closed them).
    pub(super) fn clear(&self) {
        self.map().clear();
    }

    /// What is known of collection `id`, if it is open here.
    pub(super) fn get(&self, id: &str) -> Option<Known> {
        self.map().get(id).cloned()
    }
}
