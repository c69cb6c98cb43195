//! A bounded in-memory cache of embeddings keyed by (model, BLAKE3 of the text), and a
//! provider wrapper that asks its provider only for the texts the cache lacks.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
};

use futures::future::BoxFuture;

use super::{EmbedError, Embedder, ModelInfo};

/// A cache key: the model's id (`provider/model`) and the BLAKE3 hash of the text.
type Key = (String, [u8; 32]);

/// Embeddings by (model, text), holding at most a fixed number and dropping the least
/// recently used first.
#[derive(Debug)]
pub struct EmbeddingCache {
    capacity: usize,
    /// Each entry's vector and the tick it was last used at.
    entries: HashMap<Key, (Vec<f32>, u64)>,
    /// Entries by last use, oldest first.
    by_use: BTreeMap<u64, Key>,
    tick: u64,
    hits: u64,
    misses: u64,
}

impl EmbeddingCache {
    /// An empty cache of at most `capacity` vectors.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
            tick: 0,
            hits: 0,
            misses: 0,
        }
    }

    fn key(model: &str, text: &str) -> Key {
        (model.to_string(), *blake3::hash(text.as_bytes()).as_bytes())
    }

    /// The vector of `text` under `model`, counting a hit or a miss.
    pub fn get(&mut self, model: &str, text: &str) -> Option<Vec<f32>> {
        let key = Self::key(model, text);
        self.tick += 1;
        let tick = self.tick;
        match self.entries.get_mut(&key) {
            Some((vector, used)) => {
                self.by_use.remove(used);
                *used = tick;
                self.by_use.insert(tick, key);
                self.hits += 1;
                Some(vector.clone())
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Keeps the vector of `text` under `model`, dropping the least recently used entry if
    /// the cache is full.
    pub fn insert(&mut self, model: &str, text: &str, vector: Vec<f32>) {
        if self.capacity == 0 {
            return;
        }
        let key = Self::key(model, text);
        self.tick += 1;
        if let Some((_, used)) = self.entries.remove(&key) {
            self.by_use.remove(&used);
        }
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        self.by_use.insert(self.tick, key.clone());
        self.entries.insert(key, (vector, self.tick));
    }

    /// Vectors held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Lookups the cache could not answer.
    pub fn misses(&self) -> u64 {
        self.misses
    }
}

/// A provider behind an [`EmbeddingCache`]: each call sends the provider only the texts
/// the cache lacks, each once.
#[derive(Debug)]
pub struct CachedEmbedder {
    inner: Arc<dyn Embedder>,
    cache: Mutex<EmbeddingCache>,
}

impl CachedEmbedder {
    /// `inner` behind `cache`.
    pub fn new(inner: Arc<dyn Embedder>, cache: EmbeddingCache) -> Self {
        Self {
            inner,
            cache: Mutex::new(cache),
        }
    }

    /// Lookups answered from the cache so far.
    pub fn hits(&self) -> u64 {
        self.lock().hits()
    }

    /// Lookups the cache could not answer so far.
    pub fn misses(&self) -> u64 {
        self.lock().misses()
    }

    fn lock(&self) -> MutexGuard<'_, EmbeddingCache> {
        // A panic while holding the lock leaves a consistent cache: each method finishes
        // its edit before anything can panic.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Embedder for CachedEmbedder {
    fn model(&self) -> ModelInfo {
        self.inner.model()
    }

    fn batch_size(&self) -> usize {
        self.inner.batch_size()
    }

    fn embed_batch<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            let model = self.inner.model().id();
            let mut found: Vec<Option<Vec<f32>>> = Vec::with_capacity(texts.len());
            let mut missing: Vec<String> = Vec::new();
            // Where each missing text went in `missing`, so a text repeated in one call is
            // sent once.
            let mut slot_of: HashMap<&str, usize> = HashMap::new();
            {
                let mut cache = self.lock();
                for text in texts {
                    let hit = cache.get(&model, text);
                    if hit.is_none() && !slot_of.contains_key(text.as_str()) {
                        slot_of.insert(text, missing.len());
                        missing.push(text.clone());
                    }
                    found.push(hit);
                }
            }
            let fresh = if missing.is_empty() {
                Vec::new()
            } else {
                self.inner.embed(&missing).await?
            };
            if fresh.len() != missing.len() {
                return Err(EmbedError::Count {
                    model,
                    sent: missing.len(),
                    got: fresh.len(),
                });
            }
            {
                let mut cache = self.lock();
                for (text, vector) in missing.iter().zip(&fresh) {
                    cache.insert(&model, text, vector.clone());
                }
            }
            Ok(texts
                .iter()
                .zip(found)
                .map(|(text, hit)| match hit {
                    Some(vector) => vector,
                    None => fresh[slot_of[text.as_str()]].clone(),
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_first() {
        let mut cache = EmbeddingCache::new(2);
        cache.insert("m", "a", vec![1.0]);
        cache.insert("m", "b", vec![2.0]);
        assert_eq!(cache.get("m", "a"), Some(vec![1.0]), "a is now the newest");
        cache.insert("m", "c", vec![3.0]);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("m", "b"), None, "b was the least recently used");
        assert_eq!(cache.get("m", "a"), Some(vec![1.0]));
        assert_eq!(cache.get("m", "c"), Some(vec![3.0]));
        assert_eq!(cache.get("other", "a"), None, "keys include the model");
        assert_eq!((cache.hits(), cache.misses()), (3, 2));
        cache.insert("m", "c", vec![4.0]);
        assert_eq!((cache.len(), cache.get("m", "c")), (2, Some(vec![4.0])));
    }

    #[test]
    fn a_zero_capacity_cache_holds_nothing() {
        let mut cache = EmbeddingCache::new(0);
        cache.insert("m", "a", vec![1.0]);
        assert!(cache.is_empty());
    }
}
