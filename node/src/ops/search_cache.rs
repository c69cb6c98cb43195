//! The search cache: answers of searches of the collections held here, kept by everything
//! that decides them — the collection's name and search state (its root, and the generation
//! of what searches see there, acknowledged writes still in the log included:
//! [`Collection::search_state`](crate::collection::Collection::search_state)), the query
//! vector's bytes, and the options that change an answer (`k`, `ef`, `exact`, `filter`,
//! `at`). A write or a new version changes the state, so an answer kept for the old state is
//! never found again: nothing is invalidated, and old answers leave as the least recently
//! used once the cache is full (`search.cache_entries`, `search.cache_bytes`).
//!
//! [`SearchCache`] is the cache alone, with no clock, lock or I/O: the node keeps it behind a
//! mutex and reads its counts for the metrics. A text search is cached as the search of its
//! question's vector, once embedded.

use std::collections::{BTreeMap, HashMap};

use cid::Cid;
use ipvec_protocol::api::{SearchRequest, SearchResponse};

/// What decides a search's answer, hashed (BLAKE3): see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueryKey([u8; 32]);

/// The part of a [`QueryKey`] that the queries of one batch share: everything but the vector.
#[derive(Debug, Clone)]
pub struct KeyPrefix(blake3::Hasher);

impl KeyPrefix {
    /// The searches of collection `collection` (its name here) at `state` with `options`.
    pub fn new(collection: &str, state: (Cid, u64), options: &SearchRequest) -> Self {
        let mut h = blake3::Hasher::new();
        // Each field is tagged and variable-length ones are length-prefixed, so no two
        // different searches write the same bytes.
        let mut field = |tag: u8, bytes: &[u8]| {
            h.update(&[tag]);
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(b'n', collection.as_bytes());
        field(b'r', &state.0.to_bytes());
        field(b'g', &state.1.to_le_bytes());
        field(b'k', &(options.k as u64).to_le_bytes());
        match options.ef {
            Some(ef) => field(b'e', &(ef as u64).to_le_bytes()),
            None => field(b'E', &[]),
        }
        field(b'x', &[u8::from(options.exact)]);
        match &options.filter {
            // Two spellings of one filter (keys in another order) are two keys: a miss, never
            // a wrong answer.
            Some(filter) => field(b'f', filter.to_string().as_bytes()),
            None => field(b'F', &[]),
        }
        match &options.at {
            Some(at) => field(b'a', at.as_bytes()),
            None => field(b'A', &[]),
        }
        Self(h)
    }

    /// The key of the search of `vector` (its exact bits: `-0.0` and `0.0` are two keys).
    pub fn key(&self, vector: &[f32]) -> QueryKey {
        let mut h = self.0.clone();
        h.update(b"v");
        h.update(&(vector.len() as u64).to_le_bytes());
        for x in vector {
            h.update(&x.to_le_bytes());
        }
        QueryKey(*h.finalize().as_bytes())
    }
}

/// The cache's counts since the node started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Searches answered from the cache.
    pub hits: u64,
    /// Searches looked up and not found (then searched, and kept).
    pub misses: u64,
    /// Answers dropped to make room.
    pub evictions: u64,
    /// Answers held now.
    pub entries: u64,
    /// Bytes the answers held now take (an estimate: see [`answer_bytes`]).
    pub bytes: u64,
}

/// One kept answer.
#[derive(Debug)]
struct Kept {
    answer: SearchResponse,
    bytes: u64,
    /// The tick it was last used at (its place in `by_use`).
    used: u64,
}

/// Answers by [`QueryKey`], holding at most a number of them and of bytes, dropping the
/// least recently used first. A cache of 0 entries or 0 bytes keeps nothing.
#[derive(Debug)]
pub struct SearchCache {
    max_entries: usize,
    max_bytes: u64,
    kept: HashMap<QueryKey, Kept>,
    /// Keys by last use, oldest first.
    by_use: BTreeMap<u64, QueryKey>,
    tick: u64,
    stats: CacheStats,
}

impl SearchCache {
    /// An empty cache of at most `max_entries` answers and `max_bytes` bytes.
    pub fn new(max_entries: u64, max_bytes: u64) -> Self {
        Self {
            max_entries: usize::try_from(max_entries).unwrap_or(usize::MAX),
            max_bytes,
            kept: HashMap::new(),
            by_use: BTreeMap::new(),
            tick: 0,
            stats: CacheStats::default(),
        }
    }

    /// Whether the cache keeps anything (it is not sized 0).
    pub fn enabled(&self) -> bool {
        self.max_entries > 0 && self.max_bytes > 0
    }

    /// The answer kept under `key`, marked as answered from the cache; counts a hit or a miss.
    pub fn get(&mut self, key: &QueryKey) -> Option<SearchResponse> {
        self.tick += 1;
        let Some(kept) = self.kept.get_mut(key) else {
            self.stats.misses += 1;
            return None;
        };
        self.by_use.remove(&kept.used);
        kept.used = self.tick;
        self.by_use.insert(self.tick, *key);
        self.stats.hits += 1;
        Some(SearchResponse {
            cached: true,
            ..kept.answer.clone()
        })
    }

    /// Keeps `answer` under `key`, dropping the least recently used answers while the cache
    /// would hold too many or too many bytes. An answer larger than the whole cache is not
    /// kept.
    pub fn insert(&mut self, key: QueryKey, answer: SearchResponse) {
        let bytes = answer_bytes(&answer);
        if !self.enabled() || bytes > self.max_bytes {
            return;
        }
        self.tick += 1;
        if let Some(old) = self.kept.remove(&key) {
            self.by_use.remove(&old.used);
            self.stats.bytes -= old.bytes;
        }
        while self.kept.len() >= self.max_entries || self.stats.bytes + bytes > self.max_bytes {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some(dropped) = self.kept.remove(&oldest) {
                self.stats.bytes -= dropped.bytes;
                self.stats.evictions += 1;
            }
        }
        self.by_use.insert(self.tick, key);
        self.kept.insert(
            key,
            Kept {
                answer,
                bytes,
                used: self.tick,
            },
        );
        self.stats.bytes += bytes;
    }

    /// The counts, with the entries held now.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.kept.len() as u64,
            ..self.stats
        }
    }
}

/// About how many bytes of memory `answer` takes kept: the structures, the ids, leaf CIDs
/// and coverage, and each hit's metadata as its JSON length.
pub fn answer_bytes(answer: &SearchResponse) -> u64 {
    let hits: usize = answer
        .hits
        .iter()
        .map(|h| {
            std::mem::size_of_val(h)
                + h.id_text().len()
                + h.cid.as_ref().map_or(0, String::len)
                + h.metadata.as_ref().map_or(0, |m| m.to_string().len())
        })
        .sum();
    let coverage = answer.coverage.as_ref().map_or(0, |c| {
        std::mem::size_of_val(c) + 4 * c.searched.len() + 64 * c.report.len()
    });
    // The key, the map slot and the use order's entry.
    let bookkeeping = 3 * std::mem::size_of::<QueryKey>() + 32;
    (std::mem::size_of::<SearchResponse>() + hits + coverage + bookkeeping) as u64
}

impl super::Node {
    fn search_cache(&self) -> std::sync::MutexGuard<'_, SearchCache> {
        self.inner
            .search_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The cache keys of the searches of `vectors` with `options` in collection `name` at
    /// `state`; none when the cache is off or the request opts out (`cache: false`).
    pub(super) fn cache_keys(
        &self,
        name: &str,
        state: (Cid, u64),
        options: &SearchRequest,
        vectors: &[Vec<f32>],
    ) -> Option<Vec<QueryKey>> {
        if !options.cache || !self.search_cache().enabled() {
            return None;
        }
        let prefix = KeyPrefix::new(name, state, options);
        Some(vectors.iter().map(|v| prefix.key(v)).collect())
    }

    /// The kept answer of each of `total` searches with these `keys` (all missing without
    /// keys, and then not counted as misses).
    pub(super) fn cached_answers(
        &self,
        keys: Option<&[QueryKey]>,
        total: usize,
    ) -> Vec<Option<SearchResponse>> {
        match keys {
            Some(keys) => {
                let mut cache = self.search_cache();
                keys.iter().map(|key| cache.get(key)).collect()
            }
            None => vec![None; total],
        }
    }

    /// Keeps the answers `found` (each with the position of its key in `keys`).
    pub(super) fn keep_answers(
        &self,
        keys: Option<&[QueryKey]>,
        found: &[(usize, SearchResponse)],
    ) {
        let Some(keys) = keys else {
            return;
        };
        let mut cache = self.search_cache();
        for (i, answer) in found {
            if let Some(key) = keys.get(*i) {
                cache.insert(*key, answer.clone());
            }
        }
    }

    /// The search cache's counts.
    pub fn search_cache_stats(&self) -> CacheStats {
        self.search_cache().stats()
    }
}

#[cfg(test)]
mod tests {
    use ipvec_protocol::api::{Hit, PointId, PointIn};
    use serde_json::json;

    use super::*;

    fn answer(id: u64) -> SearchResponse {
        SearchResponse {
            hits: vec![Hit {
                id: PointId::Int(id),
                score: 1.0,
                cid: None,
                metadata: Some(json!({"label": id})),
            }],
            ..SearchResponse::default()
        }
    }

    fn key(i: u64) -> QueryKey {
        let root = ipvec_protocol::cid::block_cid(0x71, b"root");
        KeyPrefix::new("c", (root, 1), &SearchRequest::new(Vec::new())).key(&[i as f32])
    }

    #[test]
    fn every_field_that_changes_an_answer_changes_the_key() {
        let root = ipvec_protocol::cid::block_cid(0x71, b"root");
        let other_root = ipvec_protocol::cid::block_cid(0x71, b"other");
        let plain = SearchRequest::new(Vec::new());
        let of = |name: &str, state: (Cid, u64), options: &SearchRequest, v: &[f32]| {
            KeyPrefix::new(name, state, options).key(v)
        };
        let base = of("c", (root, 1), &plain, &[1.0, 2.0]);
        assert_eq!(base, of("c", (root, 1), &plain, &[1.0, 2.0]));
        let with = |change: fn(&mut SearchRequest)| {
            let mut options = plain.clone();
            change(&mut options);
            of("c", (root, 1), &options, &[1.0, 2.0])
        };
        let others = [
            of("d", (root, 1), &plain, &[1.0, 2.0]),
            of("c", (other_root, 1), &plain, &[1.0, 2.0]),
            of("c", (root, 2), &plain, &[1.0, 2.0]),
            of("c", (root, 1), &plain, &[1.0, 2.5]),
            of("c", (root, 1), &plain, &[1.0, 2.0, 0.0]),
            of("c", (root, 1), &plain, &[-0.0, 2.0]),
            with(|o| o.k = 11),
            with(|o| o.ef = Some(10)),
            with(|o| o.exact = true),
            with(|o| o.filter = Some(json!({"must": []}))),
            with(|o| o.at = Some("bafy".into())),
        ];
        for (i, other) in others.iter().enumerate() {
            assert_ne!(*other, base, "change {i} kept the key");
        }
        // What does not change an answer does not change the key.
        let same = with(|o| {
            o.deadline_ms = Some(5);
            o.min_coverage = Some(0.5);
            o.cache = false;
        });
        assert_eq!(same, base);
    }

    #[test]
    fn the_least_recently_used_answer_leaves_first_at_the_size() {
        let mut cache = SearchCache::new(3, u64::MAX);
        for i in 0..3 {
            cache.insert(key(i), answer(i));
        }
        // Answer 0 is used, so 1 is the least recently used when 3 comes.
        assert_eq!(cache.get(&key(0)).map(|a| a.hits), Some(answer(0).hits));
        cache.insert(key(3), answer(3));
        assert!(cache.get(&key(1)).is_none());
        for i in [0, 2, 3] {
            let got = cache.get(&key(i)).unwrap();
            assert!(got.cached);
            assert_eq!(got.hits, answer(i).hits);
        }
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 4,
                misses: 1,
                evictions: 1,
                entries: 3,
                bytes: 3 * answer_bytes(&answer(0)),
            }
        );
        // Keeping an answer again replaces it and drops nothing.
        cache.insert(key(3), answer(3));
        assert_eq!((cache.stats().entries, cache.stats().evictions), (3, 1));
    }

    #[test]
    fn the_byte_size_bounds_the_cache_too_and_zero_turns_it_off() {
        let one = answer_bytes(&answer(0));
        let mut cache = SearchCache::new(100, 2 * one + one / 2);
        for i in 0..5 {
            cache.insert(key(i), answer(i));
        }
        let stats = cache.stats();
        assert_eq!(
            (stats.entries, stats.evictions, stats.bytes),
            (2, 3, 2 * one)
        );
        assert!(cache.get(&key(4)).is_some() && cache.get(&key(3)).is_some());
        assert!(cache.get(&key(2)).is_none());
        let mut tiny = SearchCache::new(100, one - 1);
        tiny.insert(key(0), answer(0));
        assert_eq!(tiny.stats().entries, 0, "larger than the whole cache");

        for mut off in [SearchCache::new(0, 1 << 20), SearchCache::new(10, 0)] {
            assert!(!off.enabled());
            off.insert(key(0), answer(0));
            assert!(off.get(&key(0)).is_none());
            assert_eq!(off.stats().entries, 0);
        }
    }

    /// A node with collection `c`: 50 points of 4 dimensions (l2) on a line.
    async fn node_with_points(dir: &std::path::Path) -> crate::ops::Node {
        let repo = crate::repo::Repo::init(&dir.join("repo")).await.unwrap();
        let config = repo.config().clone();
        let node = crate::ops::Node::new(repo, config);
        let create = serde_json::from_value(json!({"name": "c", "dim": 4, "metric": "l2"}));
        node.create_collection(create.unwrap()).await.unwrap();
        let points = (0..50)
            .map(|i| PointIn::vector(PointId::Int(i), vec![i as f32, 1.0, 0.0, 0.0], None))
            .collect();
        node.upsert("c", points).await.unwrap();
        node
    }

    fn ids(answer: &SearchResponse) -> Vec<PointId> {
        answer.hits.iter().map(|h| h.id.clone()).collect()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_write_is_seen_by_the_next_search_before_and_after_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let node = node_with_points(dir.path()).await;
        let query = vec![100.0, 1.0, 0.0, 0.0];
        let search = || {
            node.search(
                "c",
                SearchRequest {
                    k: 3,
                    ..SearchRequest::new(query.clone())
                },
            )
        };
        let first = search().await.unwrap();
        let again = search().await.unwrap();
        assert!(!first.cached && again.cached);
        assert_eq!(
            (&again.hits, &again.coverage),
            (&first.hits, &first.coverage)
        );
        assert_eq!(ids(&first), [49, 48, 47].map(PointId::Int));

        // A write still only in the log is seen at once, and its answer is cached in turn.
        let at_query = PointIn::vector(PointId::Int(100), query.clone(), None);
        node.upsert("c", vec![at_query]).await.unwrap();
        let written = search().await.unwrap();
        assert!(!written.cached);
        assert_eq!(ids(&written), [100, 49, 48].map(PointId::Int));
        assert_eq!(written.hits[0].cid, None, "in the log, not in a leaf yet");
        assert_eq!(search().await.unwrap().hits, written.hits);

        // Committed into a new root: the same points, now each in its leaf.
        node.commit("c").await.unwrap();
        let committed = search().await.unwrap();
        assert!(!committed.cached);
        assert_eq!(ids(&committed), ids(&written));
        assert!(committed.hits.iter().all(|h| h.cid.is_some()));
        assert!(search().await.unwrap().cached);

        // A delete, in the log and then committed.
        node.delete("c", vec![PointId::Int(100)]).await.unwrap();
        let deleted = search().await.unwrap();
        assert!(!deleted.cached);
        assert_eq!(ids(&deleted), ids(&first));
        node.commit("c").await.unwrap();
        let gone = search().await.unwrap();
        assert!(!gone.cached);
        assert_eq!(ids(&gone), ids(&first));
        assert_eq!(node.search_cache_stats().evictions, 0);
        node.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_search_that_opts_out_neither_reads_nor_fills_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let node = node_with_points(dir.path()).await;
        let request = |cache: bool| SearchRequest {
            cache,
            ..SearchRequest::new(vec![3.0, 1.0, 0.0, 0.0])
        };
        let before = node.search_cache_stats();
        let out = node.search("c", request(false)).await.unwrap();
        assert!(!out.cached);
        assert_eq!(node.search_cache_stats(), before, "not looked up, not kept");
        let kept = node.search("c", request(true)).await.unwrap();
        let after_kept = node.search_cache_stats();
        assert_eq!((after_kept.misses, after_kept.entries), (1, 1));
        let out = node.search("c", request(false)).await.unwrap();
        assert!(!out.cached);
        assert_eq!(out.hits, kept.hits);
        assert_eq!(
            node.search_cache_stats(),
            after_kept,
            "the kept answer was not used"
        );
        assert!(node.search("c", request(true)).await.unwrap().cached);
        node.close().await.unwrap();
    }
}
