//! The collection's vectors: synthetic clusters (Gaussian points around uniform centres), split
//! into shards by the collection's own routing (`manifest::shard_of` over the id's key), and
//! the exact top-k of a query per shard, which is what an honest holder answers (the simulated
//! holder's search is exact: the recall a run reports is what coverage loses, not HNSW's).

use ipvec_protocol::{entry::EntryId, manifest::shard_of};

use crate::rng::Rng;

/// Spread of points around their centre (the centres are uniform in `[-1, 1]^dims`).
const SPREAD: f64 = 0.15;

/// The points of every shard.
#[derive(Debug, Clone)]
pub struct Dataset {
    dims: usize,
    centres: Vec<Vec<f32>>,
    /// Per shard: its point ids and their vectors, one after the other.
    shards: Vec<ShardPoints>,
}

#[derive(Debug, Clone, Default)]
struct ShardPoints {
    ids: Vec<u64>,
    vectors: Vec<f32>,
}

/// A hit: the point's id and its score (negative squared L2 distance: higher is better).
pub type Scored = (u64, f64);

impl Dataset {
    /// `points` points of `dims` dimensions around `clusters` centres, in `shards` shards.
    pub fn new(rng: &mut Rng, points: u32, dims: u32, clusters: u32, shards: u32) -> Self {
        let dims = dims as usize;
        let centres: Vec<Vec<f32>> = (0..clusters)
            .map(|_| (0..dims).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect())
            .collect();
        let mut split = vec![ShardPoints::default(); shards as usize];
        for id in 0..u64::from(points) {
            let centre = &centres[rng.below(centres.len() as u64) as usize];
            let shard = EntryId::Int(id)
                .to_key()
                .map(|key| shard_of(&key, shards))
                .unwrap_or(0);
            let s = &mut split[shard as usize];
            s.ids.push(id);
            s.vectors
                .extend(centre.iter().map(|c| c + (rng.normal() * SPREAD) as f32));
        }
        Self {
            dims,
            centres,
            shards: split,
        }
    }

    /// A query near a random centre.
    pub fn query(&self, rng: &mut Rng) -> Vec<f32> {
        let centre = &self.centres[rng.below(self.centres.len() as u64) as usize];
        centre
            .iter()
            .map(|c| c + (rng.normal() * SPREAD) as f32)
            .collect()
    }

    /// The number of shards.
    pub fn shards(&self) -> u32 {
        self.shards.len() as u32
    }

    /// Points in shard `s`.
    pub fn len(&self, s: u32) -> usize {
        self.shards[s as usize].ids.len()
    }

    /// The score `query` gives point `id` if it is in shard `s` (as an honest holder computes
    /// it), else `None`.
    pub fn score(&self, s: u32, id: u64, query: &[f32]) -> Option<f64> {
        let shard = self.shards.get(s as usize)?;
        // Ids were added in increasing order.
        let i = shard.ids.binary_search(&id).ok()?;
        let v = &shard.vectors[i * self.dims..(i + 1) * self.dims];
        Some(score(v, query))
    }

    /// The exact top `k` of shard `s` for `query`, best first (ties by id).
    pub fn top(&self, s: u32, query: &[f32], k: usize) -> Vec<Scored> {
        let shard = &self.shards[s as usize];
        let mut scored: Vec<Scored> = shard
            .ids
            .iter()
            .zip(shard.vectors.chunks_exact(self.dims))
            .map(|(id, v)| (*id, score(v, query)))
            .collect();
        sort_best_first(&mut scored);
        scored.truncate(k);
        scored
    }
}

/// Negative squared L2 distance, rounded to f32 as scores go over the wire and into the merge.
fn score(v: &[f32], query: &[f32]) -> f64 {
    let d: f64 = v
        .iter()
        .zip(query)
        .map(|(a, b)| f64::from(a - b) * f64::from(a - b))
        .sum();
    f64::from(-d as f32)
}

/// Orders hits best first, ties by id.
pub fn sort_best_first(hits: &mut [Scored]) {
    hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_route_to_shards_as_the_collection_does_and_top_is_exact() {
        let mut rng = Rng::new(5);
        let data = Dataset::new(&mut rng, 2_000, 8, 10, 8);
        let total: usize = (0..8).map(|s| data.len(s)).sum();
        assert_eq!(total, 2_000);
        assert!((0..8).all(|s| data.len(s) > 150), "shards are balanced");
        let q = data.query(&mut rng);
        let top = data.top(3, &q, 5);
        assert_eq!(top.len(), 5);
        assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
        // No point of the shard outside the top beats the fifth.
        let all = data.top(3, &q, usize::MAX);
        assert_eq!(&all[..5], &top[..]);
        assert!(all[5..].iter().all(|h| h.1 <= top[4].1));
        assert_eq!(data.score(3, top[0].0, &q), Some(top[0].1));
        assert_eq!(
            data.score(2, top[0].0, &q),
            None,
            "a point lives in one shard"
        );
    }
}
