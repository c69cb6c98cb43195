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
//!
//! The walk reads the links from an [`Adjacency`] of its own, read from usearch's graph by
//! the first walk after a change: usearch's neighbour cursor finds each point by a hash
//! lookup and turns each neighbour's slot into its key by reading that neighbour's node, a
//! quarter of the walk's time when it read the graph through it.

use std::{
    cmp::Ordering,
    collections::BinaryHeap,
    sync::{
        atomic::{self, AtomicU64},
        Arc, Mutex,
    },
};

use super::{Hit, HnswIndex, IndexError, PREPARED_KEYS};
use crate::index::score;

/// The base layer's links of the points a walk can reach, laid out by key.
pub(super) struct Adjacency {
    /// `links[offsets[k]..offsets[k + 1]]` are the links of key `k`.
    offsets: Vec<usize>,
    links: Vec<u32>,
    /// The keys whose links were read (a key with none has an empty range too).
    read: Seen,
}

impl Adjacency {
    /// Reads the links of every point reachable from `from` through the base layer. `None`
    /// when the keys are too sparse to lay out by key (the keys of points are dense: the
    /// collection numbers its points in order), or do not fit in 32 bits.
    fn read(index: &HnswIndex, from: &[u64]) -> Option<Self> {
        let mut read = Seen::default();
        let mut stack: Vec<u64> = from.iter().map(|&key| index.slot(key)).collect();
        let mut found: Vec<(u32, usize, usize)> = Vec::new();
        let (mut links, mut out, mut top) = (Vec::new(), Vec::<u32>::new(), 0u64);
        while let Some(key) = stack.pop() {
            let short = u32::try_from(key).ok()?;
            if !read.insert(key) {
                continue;
            }
            top = top.max(key);
            index.links(key, &mut links);
            let start = out.len();
            // Prepared inserts pass no filter and are dropped from hits: not walked.
            for &next in links.iter().filter(|&&next| next < PREPARED_KEYS) {
                out.push(u32::try_from(next).ok()?);
                stack.push(next);
            }
            found.push((short, start, out.len()));
        }
        if top > 8 * found.len() as u64 + 1024 {
            return None;
        }
        // Each key's range, in key order (a key not read has an empty one).
        found.sort_unstable_by_key(|(key, ..)| *key);
        let (mut offsets, mut ordered) = (Vec::with_capacity(top as usize + 2), Vec::new());
        ordered.reserve_exact(out.len());
        let mut next = found.iter().peekable();
        for key in 0..=top as u32 {
            offsets.push(ordered.len());
            if let Some((_, start, end)) = next.next_if(|(k, ..)| *k == key) {
                ordered.extend_from_slice(&out[*start..*end]);
            }
        }
        offsets.push(ordered.len());
        Some(Self {
            offsets,
            links: ordered,
            read,
        })
    }

    /// The links of `key` into `out`; false (leaving `out` alone) when they were not read.
    fn links(&self, key: u64, out: &mut Vec<u64>) -> bool {
        if !self.read.contains(key) {
            return false;
        }
        let key = key as usize;
        out.clear();
        out.extend(
            self.links[self.offsets[key]..self.offsets[key + 1]]
                .iter()
                .map(|&k| u64::from(k)),
        );
        true
    }

    /// Heap bytes held.
    fn bytes(&self) -> usize {
        self.offsets.len() * size_of::<usize>() + self.links.len() * 4 + self.read.words.len() * 8
    }
}

/// The walk's [`Adjacency`] (`None` where the keys could not be laid out) and the count of
/// graph changes it was read at: a change (an insert, a removal, a prepared insert placed)
/// counts after it is made, so an adjacency read meanwhile is read again by the next walk.
#[derive(Default)]
pub(super) struct AdjacencyCache {
    changes: AtomicU64,
    read: Mutex<Option<(u64, Option<Arc<Adjacency>>)>>,
}

impl AdjacencyCache {
    /// Counts a change made to the graph.
    pub(super) fn changed(&self) {
        self.changes.fetch_add(1, atomic::Ordering::AcqRel);
    }

    /// The count of changes made to the graph.
    pub(super) fn changes(&self) -> u64 {
        self.changes.load(atomic::Ordering::Acquire)
    }

    /// Heap bytes of the adjacency held (the last one read, until the next walk reads again).
    pub(super) fn bytes(&self) -> usize {
        let cached = self.read.lock().unwrap_or_else(|p| p.into_inner());
        cached
            .as_ref()
            .and_then(|(_, adjacency)| adjacency.as_ref())
            .map_or(0, |adjacency| adjacency.bytes())
    }

    /// The adjacency of the graph as it is, read from `from` if the graph changed since the
    /// last read (walks meanwhile wait for it, and take it).
    fn get(&self, index: &HnswIndex, from: &[u64]) -> Option<Arc<Adjacency>> {
        // The cached value is whole or absent after any panic: poisoning is ignored.
        let mut cached = self.read.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.changes.load(atomic::Ordering::Acquire);
        if let Some((at, adjacency)) = cached.as_ref() {
            if *at == now {
                return adjacency.clone();
            }
        }
        let started = std::time::Instant::now();
        let adjacency = Adjacency::read(index, from).map(Arc::new);
        tracing::debug!(
            bytes = adjacency.as_ref().map(|a| a.bytes()),
            secs = started.elapsed().as_secs_f64(),
            "read the graph's links for filtered walks"
        );
        *cached = Some((now, adjacency.clone()));
        adjacency
    }
}

/// A scored slot, ordered by score (then by slot, for a deterministic walk).
#[derive(Debug, Clone, Copy)]
pub(super) struct Scored {
    pub(super) score: f32,
    pub(super) slot: u64,
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

    /// Whether `slot` is marked.
    fn contains(&self, slot: u64) -> bool {
        if slot >= Self::DENSE {
            return self.sparse.contains(&slot);
        }
        self.words
            .get((slot / 64) as usize)
            .is_some_and(|word| word & (1u64 << (slot % 64)) != 0)
    }
}

/// The walk's two queues: the points still to step from, best first, and the `ef` best met,
/// worst on top. A point enters both when it is among the `ef` best met so far.
pub(super) struct Beam {
    next: BinaryHeap<Scored>,
    pub(super) best: BinaryHeap<std::cmp::Reverse<Scored>>,
    ef: usize,
}

impl Beam {
    pub(super) fn new(ef: usize) -> Self {
        Self {
            next: BinaryHeap::new(),
            best: BinaryHeap::with_capacity(ef + 1),
            ef,
        }
    }

    pub(super) fn offer(&mut self, point: Scored) {
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
    pub(super) fn next(&mut self) -> Option<Scored> {
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

        let seeds: Vec<u64> = seeds.into_iter().collect();
        let adjacency = self.adjacency.get(self, &seeds);
        // A point the adjacency did not reach (none, where the keys are sparse) is read from
        // usearch's graph.
        let read_links = |key: u64, out: &mut Vec<u64>| {
            if !adjacency.as_ref().is_some_and(|a| a.links(key, out)) {
                self.links(key, out);
            }
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
            read_links(at.slot, &mut links);
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
                read_links(over, &mut further);
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
