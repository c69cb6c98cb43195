//! Exact search: every query scans every vector.

use std::collections::HashMap;

use ipvec_protocol::manifest::Metric;

use super::{check_vector, score, top_k, Hit, IndexError, VectorIndex};

/// Vectors in one contiguous buffer, scanned in full per query.
#[derive(Debug, Clone)]
pub struct FlatIndex {
    dimension: usize,
    metric: Metric,
    keys: Vec<u64>,
    vectors: Vec<f32>,
    slots: HashMap<u64, usize>,
}

impl FlatIndex {
    /// An empty index.
    pub fn new(dimension: usize, metric: Metric) -> Self {
        Self {
            dimension,
            metric,
            keys: Vec::new(),
            vectors: Vec::new(),
            slots: HashMap::new(),
        }
    }

    /// The vector stored under `key`.
    pub fn vector(&self, key: u64) -> Option<&[f32]> {
        let slot = *self.slots.get(&key)?;
        Some(&self.vectors[slot * self.dimension..(slot + 1) * self.dimension])
    }
}

impl VectorIndex for FlatIndex {
    fn len(&self) -> usize {
        self.keys.len()
    }

    fn upsert(&mut self, key: u64, vector: &[f32]) -> Result<(), IndexError> {
        check_vector(vector, self.dimension)?;
        match self.slots.get(&key) {
            Some(&slot) => self.vectors[slot * self.dimension..(slot + 1) * self.dimension]
                .copy_from_slice(vector),
            None => {
                self.slots.insert(key, self.keys.len());
                self.keys.push(key);
                self.vectors.extend_from_slice(vector);
            }
        }
        Ok(())
    }

    fn remove(&mut self, key: u64) -> Result<bool, IndexError> {
        let Some(slot) = self.slots.remove(&key) else {
            return Ok(false);
        };
        // Move the last vector into the hole.
        let last = self.keys.len() - 1;
        if slot != last {
            let moved = self.keys[last];
            self.keys[slot] = moved;
            self.vectors.copy_within(
                last * self.dimension..(last + 1) * self.dimension,
                slot * self.dimension,
            );
            self.slots.insert(moved, slot);
        }
        self.keys.pop();
        self.vectors.truncate(last * self.dimension);
        Ok(true)
    }

    fn search(
        &self,
        query: &[f32],
        k: usize,
        _ef: Option<usize>,
        filter: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Result<Vec<Hit>, IndexError> {
        check_vector(query, self.dimension)?;
        let hits: Vec<Hit> = self
            .keys
            .iter()
            .enumerate()
            .filter(|(_, key)| filter.is_none_or(|f| f(**key)))
            .map(|(slot, key)| Hit {
                key: *key,
                score: score(
                    self.metric,
                    query,
                    &self.vectors[slot * self.dimension..(slot + 1) * self.dimension],
                ),
            })
            .collect();
        Ok(top_k(hits, k))
    }

    fn memory_bytes(&self) -> usize {
        self.vectors.len() * 4 + self.keys.len() * 8 + self.slots.len() * 24
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_nearest_and_honours_filters_and_removals() {
        let mut index = FlatIndex::new(2, Metric::L2);
        for (k, v) in [
            (1, [0.0, 0.0]),
            (2, [1.0, 0.0]),
            (3, [5.0, 5.0]),
            (4, [0.9, 0.1]),
        ] {
            index.upsert(k, &v).unwrap();
        }
        let hits = index.search(&[1.0, 0.0], 2, None, None).unwrap();
        assert_eq!(hits.iter().map(|h| h.key).collect::<Vec<_>>(), vec![2, 4]);
        assert_eq!(hits[0].score, 0.0);
        let odd = |k: u64| k % 2 == 1;
        let hits = index.search(&[1.0, 0.0], 2, None, Some(&odd)).unwrap();
        assert_eq!(hits.iter().map(|h| h.key).collect::<Vec<_>>(), vec![1, 3]);
        assert!(index.remove(2).unwrap());
        assert!(!index.remove(2).unwrap());
        index.upsert(4, &[5.0, 5.0]).unwrap();
        let hits = index.search(&[1.0, 0.0], 1, None, None).unwrap();
        assert_eq!(hits[0].key, 1);
        assert_eq!(index.vector(4).unwrap(), &[5.0, 5.0]);
        assert!(matches!(
            index.upsert(9, &[1.0]),
            Err(IndexError::Dimension { .. })
        ));
        assert!(matches!(
            index.upsert(9, &[1.0, f32::NAN]),
            Err(IndexError::NotFinite(1))
        ));
    }
}
