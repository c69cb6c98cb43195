//! The points a filter allows, as a dense bitset over index keys, and a small cache of them.
//!
//! A filter does not depend on the query vector, so its set is evaluated once and reused until
//! the key map changes (any upsert or delete); the HNSW walk and the exact fallback both read
//! the bitset.

use std::sync::{Arc, Mutex, MutexGuard};

use super::{cache::KeyMap, CompiledFilter};

/// How many filters' sets are kept (the most recently used). Each takes one bit per key.
pub const CACHED_FILTERS: usize = 8;

/// A set of index keys: one bit per key below a limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    words: Vec<u64>,
    len: usize,
}

impl KeySet {
    /// An empty set for keys below `limit`.
    pub fn with_limit(limit: u64) -> Self {
        Self {
            words: vec![0; limit.div_ceil(64) as usize],
            len: 0,
        }
    }

    /// Adds a key below the limit (keys at or above it are ignored).
    pub fn insert(&mut self, key: u64) {
        if let Some(word) = self.words.get_mut((key / 64) as usize) {
            let bit = 1u64 << (key % 64);
            if *word & bit == 0 {
                *word |= bit;
                self.len += 1;
            }
        }
    }

    /// Whether `key` is in the set.
    pub fn contains(&self, key: u64) -> bool {
        self.words
            .get((key / 64) as usize)
            .is_some_and(|word| word & (1u64 << (key % 64)) != 0)
    }

    /// Number of keys in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The keys in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(i, word)| {
            let mut rest = *word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros();
                rest &= rest - 1;
                Some(i as u64 * 64 + u64::from(bit))
            })
        })
    }
}

/// The live keys `filter` accepts.
pub fn evaluate(filter: &CompiledFilter, keys: &KeyMap) -> KeySet {
    let mut set = KeySet::with_limit(keys.key_limit());
    for (key, id, metadata) in keys.iter() {
        if filter.test(id, metadata) {
            set.insert(key);
        }
    }
    set
}

/// The sets of the most recently used filters, each for the key-map version it was evaluated
/// at.
#[derive(Debug, Default)]
pub struct AllowedCache {
    /// Most recently used first; all of one key-map version.
    entries: Mutex<Vec<(CompiledFilter, u64, Arc<KeySet>)>>,
}

impl AllowedCache {
    /// The keys `filter` accepts in `keys`, from the cache when it was evaluated at this
    /// version of the key map.
    pub fn get(&self, filter: &CompiledFilter, keys: &KeyMap) -> Arc<KeySet> {
        let version = keys.version();
        {
            let mut entries = self.lock();
            entries.retain(|(_, at, _)| *at == version);
            if let Some(i) = entries.iter().position(|(f, _, _)| f.same_as(filter)) {
                let entry = entries.remove(i);
                let set = entry.2.clone();
                entries.insert(0, entry);
                return set;
            }
        }
        // Evaluated without the lock: concurrent searches with other filters go on meanwhile.
        let set = Arc::new(evaluate(filter, keys));
        let mut entries = self.lock();
        entries.retain(|(f, at, _)| *at == version && !f.same_as(filter));
        entries.insert(0, (filter.clone(), version, set.clone()));
        entries.truncate(CACHED_FILTERS);
        set
    }

    // The list is consistent after any panic (each change is one Vec call): poisoning is
    // ignored.
    fn lock(&self) -> MutexGuard<'_, Vec<(CompiledFilter, u64, Arc<KeySet>)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use ipvec_protocol::entry::EntryId;

    use super::*;
    use crate::collection::{points::json_to_ipld, Filter};

    #[test]
    fn key_set_inserts_tests_counts_and_lists_in_order() {
        let mut set = KeySet::with_limit(130);
        for key in [129, 0, 64, 63, 64, 500] {
            set.insert(key);
        }
        assert_eq!(
            set.len(),
            4,
            "a repeat and a key beyond the limit do not count"
        );
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![0, 63, 64, 129]);
        assert!(set.contains(63) && !set.contains(62) && !set.contains(500));
        assert!(KeySet::with_limit(0).is_empty());
    }

    #[test]
    fn cached_sets_follow_the_key_map_version() {
        let mut keys = KeyMap::default();
        for n in 0..10u64 {
            let key = keys.assign(&EntryId::Int(n).to_key().unwrap());
            keys.set_metadata(
                key,
                Some(json_to_ipld(serde_json::json!({"even": n % 2 == 0}))),
            );
        }
        let even = Filter::parse(r#"{"must": [{"key": "even", "match": true}]}"#)
            .unwrap()
            .compile()
            .unwrap();
        let cache = AllowedCache::default();
        let first = cache.get(&even, &keys);
        assert_eq!(first.iter().collect::<Vec<_>>(), vec![0, 2, 4, 6, 8]);
        assert!(
            Arc::ptr_eq(&first, &cache.get(&even, &keys)),
            "served from the cache"
        );
        keys.set_metadata(3, Some(json_to_ipld(serde_json::json!({"even": true}))));
        assert_eq!(
            cache.get(&even, &keys).iter().collect::<Vec<_>>(),
            vec![0, 2, 3, 4, 6, 8]
        );
        for n in 0..(CACHED_FILTERS as u64 + 2) {
            let f = Filter::parse(&format!(r#"{{"must": [{{"ids": [{n}]}}]}}"#))
                .unwrap()
                .compile()
                .unwrap();
            assert_eq!(cache.get(&f, &keys).iter().collect::<Vec<_>>(), vec![n]);
        }
        assert_eq!(cache.lock().len(), CACHED_FILTERS);
    }
}
