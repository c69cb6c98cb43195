//! A filtered search that walks only the points its filter lets through.
//!
//! usearch's filtered search walks the graph as an unfiltered one would and keeps the points
//! that fail out of its results only: it scores and queues every point it meets until `ef`
//! passing ones are found. When the passing points lie away from the query — a filter on a
//! field that follows the data, such as one class of images, asked with a query of another
//! class — that walk first covers the query's whole neighbourhood, all of it rejected, and
//! runs ten times slower than at the same selectivity spread evenly.
//!
//! This walk of the base layer starts from passing points spread over the allowed set (the
//! `seeds`), and scores and queues passing points alone. Where some of a point's neighbours
//! fail, it steps over them to their neighbours, until the point has as many passing
//! neighbours as links, so that the passing points stay connected when the filter is sparse.
//! Scores are exact against the stored vectors (the f32 vectors beside the codes, or the
//! vector usearch stores), as the exact search of the allowed points scores them.
//!
//! What it gives up: a passing point that lies among failing ones, linked to them and not to
//! the rest of its set, can stay out of reach. On a filter by class (Fashion-MNIST) its recall
//! stops at 0.95–0.97 whatever the `ef` (docs/benchmarks.md).

use std::{cmp::Ordering, collections::BinaryHeap};

use super::{Hit, HnswIndex, IndexError};
use crate::index::score;

/// A scored slot, ordered by score (then by slot, for a deterministic walk).
#[derive(Debug, Clone, Copy)]
struct Scored {
    score: f32,
    slot: u64,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.slot.cmp(&self.slot))
    }
}

/// Slots met by one walk: a bitset over the slots below [`Seen::DENSE`], a hash set above
/// (the temporary keys of a writer's prepared inserts).
#[derive(Default)]
struct Seen {
    words: Vec<u64>,
    sparse: std::collections::HashSet<u64>,
}

impl Seen {
    /// Slots below this go in the bitset (at most 8 MiB of it).
    const DENSE: u64 = 1 << 26;

    /// Marks `slot`; whether it was not marked before.
    fn insert(&mut self, slot: u64) -> bool {
        if slot >= Self::DENSE {
            return self.sparse.insert(slot);
        }
        let word = (slot / 64) as usize;
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let bit = 1u64 << (slot % 64);
        let fresh = self.words[word] & bit == 0;
        self.words[word] |= bit;
        fresh
    }
}

/// The walk's two queues: the points still to step from, best first, and the `ef` best met,
/// worst on top. A point enters both when it is among the `ef` best met so far.
struct Beam {
    next: BinaryHeap<Scored>,
    best: BinaryHeap<std::cmp::Reverse<Scored>>,
    ef: usize,
}

impl Beam {
    fn new(ef: usize) -> Self {
        Self {
            next: BinaryHeap::new(),
            best: BinaryHeap::with_capacity(ef + 1),
            ef,
        }
    }

    fn offer(&mut self, point: Scored) {
        let full = self.best.len() >= self.ef;
        if full && self.best.peek().is_some_and(|worst| point <= worst.0) {
            return;
        }
        self.next.push(point);
        self.best.push(std::cmp::Reverse(point));
        if self.best.len() > self.ef {
            self.best.pop();
        }
    }

    /// The best point to step from, until none can improve the `ef` best.
    fn next(&mut self) -> Option<Scored> {
        let point = self.next.pop()?;
        let full = self.best.len() >= self.ef;
        match full && self.best.peek().is_some_and(|worst| point < worst.0) {
            true => None,
            false => Some(point),
        }
    }
}

impl HnswIndex {
    /// Of the base-layer links of the points `keys`, the share that `filter` lets through
    /// (0 when they have none).
    pub fn passing_share(
        &self,
        keys: impl IntoIterator<Item = u64>,
        filter: &(dyn Fn(u64) -> bool + Sync),
    ) -> f64 {
        let (mut links, mut passing, mut total) = (Vec::new(), 0usize, 0usize);
        for key in keys {
            self.links(self.slot(key), &mut links);
            total += links.len();
            passing += links
                .iter()
                .filter(|slot| self.slot_passes(filter, **slot))
                .count();
        }
        match total {
            0 => 0.0,
            _ => passing as f64 / total as f64,
        }
    }

    /// The `k` best points for `query` among those `filter` accepts, by a walk of the graph's
    /// base layer that steps on accepted points only (see the [module](self)), keeping the
    /// `ef` best it has met. `seeds`: points `filter` accepts, spread over them, where the walk
    /// starts (a few dozen; the best of them lead).
    pub fn search_passing(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: &(dyn Fn(u64) -> bool + Sync),
        seeds: impl IntoIterator<Item = u64>,
    ) -> Result<Vec<Hit>, IndexError> {
        self.check_query(query)?;
        if k == 0 || self.index.size() == 0 {
            return Ok(Vec::new());
        }
        let ef = ef.unwrap_or(self.spec.hnsw.ef_search as usize).max(k);
        let passes = |slot: u64| self.slot_passes(filter, slot);
        let rows = self.codes.as_ref().map(|codes| codes.rows());
        let mut buffer = vec![0f32; self.spec.dimension];
        let mut measure = |slot: u64| -> Option<f32> {
            let stored = match &rows {
                Some(rows) => rows.get(slot)?,
                None => match self.index.get(slot, &mut buffer) {
                    Ok(n) if n > 0 => &buffer,
                    _ => return None,
                },
            };
            Some(score(self.spec.metric, query, stored)).filter(|s| s.is_finite())
        };

        let mut seen = Seen::default();
        let mut beam = Beam::new(ef);
        for slot in seeds.into_iter().map(|key| self.slot(key)) {
            if seen.insert(slot) {
                if let Some(score) = measure(slot) {
                    beam.offer(Scored { score, slot });
                }
            }
        }
        let (mut links, mut further, mut found) = (Vec::new(), Vec::new(), Vec::new());
        while let Some(at) = beam.next() {
            self.links(at.slot, &mut links);
            found.clear();
            let mut passing = 0;
            for &slot in &links {
                if passes(slot) {
                    passing += 1;
                    if seen.insert(slot) {
                        found.push(slot);
                    }
                }
            }
            // Some of this point's neighbours fail: look past them (each at most once a walk)
            // until it has as many passing neighbours as links.
            for &over in &links {
                if passing >= links.len() {
                    break;
                }
                if passes(over) || !seen.insert(over) {
                    continue;
                }
                self.links(over, &mut further);
                for &slot in &further {
                    if passes(slot) && seen.insert(slot) {
                        found.push(slot);
                        passing += 1;
                    }
                }
            }
            for &slot in &found {
                if let Some(score) = measure(slot) {
                    beam.offer(Scored { score, slot });
                }
            }
        }
        drop(rows);
        let slots = beam
            .best
            .into_iter()
            .map(|std::cmp::Reverse(s)| Hit {
                key: s.slot,
                score: s.score,
            })
            .collect();
        Ok(self.expand(slots, k, Some(filter)))
    }
}
