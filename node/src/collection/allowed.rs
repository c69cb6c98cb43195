//! The points a search may return — those a filter allows, in the shards it searches — as a
//! dense bitset over index keys, and a small cache of them.
//!
//! A restriction does not depend on the query vector, so its set is evaluated once and reused
//! until the key map changes (any upsert or delete); the HNSW walk and the exact fallback both
//! read the bitset.

use std::sync::{Arc, Mutex, MutexGuard};

use super::{cache::KeyMap, CompiledFilter};

/// How many restrictions' sets are kept (the most recently used). Each takes one bit per key.
pub const CACHED_FILTERS: usize = 8;

/// How many keys of a set a filtered graph walk starts from ([`KeySet::seeds`]).
pub const SEEDS: usize = 64;

/// A set of index keys: one bit per key below a limit.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    words: Vec<u64>,
    len: usize,
    /// [`KeySet::seeds`], once asked for.
    seeds: std::sync::OnceLock<Vec<u64>>,
    /// [`KeySet::linked_share`], once asked for.
    linked: std::sync::OnceLock<f64>,
}

impl KeySet {
    /// An empty set for keys below `limit`.
    pub fn with_limit(limit: u64) -> Self {
        Self {
            words: vec![0; limit.div_ceil(64) as usize],
            len: 0,
            seeds: std::sync::OnceLock::new(),
            linked: std::sync::OnceLock::new(),
        }
    }

    /// Adds a key below the limit (keys at or above it are ignored).
    pub fn insert(&mut self, key: u64) {
        if let Some(word) = self.words.get_mut((key / 64) as usize) {
            let bit = 1u64 << (key % 64);
            if *word & bit == 0 {
                *word |= bit;
                self.len += 1;
                self.seeds.take();
                self.linked.take();
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

    /// Up to [`SEEDS`] keys of the set, evenly spaced in key order (every `len / SEEDS`-th),
    /// where a filtered graph walk starts: computed once for the set.
    pub fn seeds(&self) -> &[u64] {
        self.seeds.get_or_init(|| {
            let every = self.len.div_ceil(SEEDS).max(1);
            self.iter().step_by(every).collect()
        })
    }

    /// The share of its seeds' graph links that lead into the set, `measure`d once for the
    /// set: about the set's share of all points when it does not follow the graph, near 1 when
    /// it does (a filter on a field that follows the vectors).
    pub fn linked_share(&self, measure: impl FnOnce(&[u64]) -> f64) -> f64 {
        *self.linked.get_or_init(|| measure(self.seeds()))
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

/// Which points a search may return: those `filter` accepts (all when `None`) in the shards
/// `shards` (sorted; every shard when `None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Restriction<'a> {
    /// The filter, if any.
    pub filter: Option<&'a CompiledFilter>,
    /// The shards searched, in order, if not every one held.
    pub shards: Option<&'a [u32]>,
}

impl Restriction<'_> {
    /// Whether it lets every point through.
    pub fn is_none(&self) -> bool {
        self.filter.is_none() && self.shards.is_none()
    }

    fn same_as(&self, filter: &Option<CompiledFilter>, shards: &Option<Vec<u32>>) -> bool {
        let same_filter = match (self.filter, filter) {
            (Some(a), Some(b)) => a.same_as(b),
            (None, None) => true,
            _ => false,
        };
        same_filter && self.shards == shards.as_deref()
    }
}

/// The live keys `restriction` lets through.
pub fn evaluate(restriction: Restriction<'_>, keys: &KeyMap) -> KeySet {
    let mut set = KeySet::with_limit(keys.key_limit());
    for (key, id, shard, metadata) in keys.iter() {
        let in_shards = restriction
            .shards
            .is_none_or(|shards| shards.binary_search(&shard).is_ok());
        let passes = |f: &CompiledFilter| f.test(id, metadata.map(|m| m.unpack()).as_ref());
        if in_shards && restriction.filter.is_none_or(passes) {
            set.insert(key);
        }
    }
    set
}

/// A cached set: the filter and shards it is for, the key-map version, the keys.
type Entry = (Option<CompiledFilter>, Option<Vec<u32>>, u64, Arc<KeySet>);

/// The sets of the most recently used restrictions, each for the key-map version it was
/// evaluated at.
#[derive(Debug, Default)]
pub struct AllowedCache {
    /// Most recently used first; all of one key-map version.
    entries: Mutex<Vec<Entry>>,
}

impl AllowedCache {
    /// The keys `restriction` lets through in `keys`, from the cache when it was evaluated at
    /// this version of the key map.
    pub fn get(&self, restriction: Restriction<'_>, keys: &KeyMap) -> Arc<KeySet> {
        let version = keys.version();
        {
            let mut entries = self.lock();
            entries.retain(|(_, _, at, _)| *at == version);
            if let Some(i) = entries
                .iter()
                .position(|(f, s, _, _)| restriction.same_as(f, s))
            {
                let entry = entries.remove(i);
                let set = entry.3.clone();
                entries.insert(0, entry);
                return set;
            }
        }
        // Evaluated without the lock: concurrent searches with other filters go on meanwhile.
        let set = Arc::new(evaluate(restriction, keys));
        let mut entries = self.lock();
        entries.retain(|(f, s, at, _)| *at == version && !restriction.same_as(f, s));
        entries.insert(
            0,
            (
                restriction.filter.cloned(),
                restriction.shards.map(<[u32]>::to_vec),
                version,
                set.clone(),
            ),
        );
        entries.truncate(CACHED_FILTERS);
        set
    }

    // The list is consistent after any panic (each change is one Vec call): poisoning is
    // ignored.
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use ipvec_protocol::entry::EntryId;

    use super::*;
    use crate::collection::{cache::PackedMetadata, points::json_to_ipld, Filter};

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
            let key = keys.assign(&EntryId::Int(n).to_key().unwrap(), (n % 3) as u32);
            let metadata = json_to_ipld(serde_json::json!({"even": n % 2 == 0}));
            keys.set_metadata(key, Some(PackedMetadata::pack(&metadata).unwrap()));
        }
        let even = Filter::parse(r#"{"must": [{"key": "even", "match": true}]}"#)
            .unwrap()
            .compile()
            .unwrap();
        fn only(filter: &CompiledFilter) -> Restriction<'_> {
            Restriction {
                filter: Some(filter),
                shards: None,
            }
        }
        let cache = AllowedCache::default();
        let first = cache.get(only(&even), &keys);
        assert_eq!(first.iter().collect::<Vec<_>>(), vec![0, 2, 4, 6, 8]);
        assert!(
            Arc::ptr_eq(&first, &cache.get(only(&even), &keys)),
            "served from the cache"
        );
        // Points n of shard n % 3: even ones of shards 0 and 1, and all of shard 2.
        let in_shards = Restriction {
            filter: Some(&even),
            shards: Some(&[0, 1]),
        };
        assert_eq!(
            cache.get(in_shards, &keys).iter().collect::<Vec<_>>(),
            vec![0, 4, 6]
        );
        let shard_2 = Restriction {
            filter: None,
            shards: Some(&[2]),
        };
        assert_eq!(
            cache.get(shard_2, &keys).iter().collect::<Vec<_>>(),
            vec![2, 5, 8]
        );
        let now_even = json_to_ipld(serde_json::json!({"even": true}));
        keys.set_metadata(3, Some(PackedMetadata::pack(&now_even).unwrap()));
        assert_eq!(
            cache.get(only(&even), &keys).iter().collect::<Vec<_>>(),
            vec![0, 2, 3, 4, 6, 8]
        );
        for n in 0..(CACHED_FILTERS as u64 + 2) {
            let f = Filter::parse(&format!(r#"{{"must": [{{"ids": [{n}]}}]}}"#))
                .unwrap()
                .compile()
                .unwrap();
            assert_eq!(
                cache.get(only(&f), &keys).iter().collect::<Vec<_>>(),
                vec![n]
            );
        }
        assert_eq!(cache.lock().len(), CACHED_FILTERS);
    }
}
