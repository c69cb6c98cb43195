//! A search loop of ipvec's own over a graph on codes.
//!
//! usearch walks its graph through a metric called by pointer for every distance, keeps the
//! points it has met in a hash set, and reads each neighbour's codes only when it scores it,
//! so every neighbour's first cache line is a miss the walk waits for. Once a graph on codes
//! has served searches for a while without changing, this module lays it out for a walk of
//! its own: every level's links as 32-bit keys, the codes of every point in one buffer by
//! key, the points met marked by a stamp per key in a buffer reused between searches. The
//! walk is HNSW's search (a greedy descent through the upper levels from the highest point,
//! then a beam of `ef` on the base layer), and it asks the memory for the codes of a point's
//! neighbours not met yet before it scores the first of them.
//!
//! The layout is read again after the graph changes, once as many searches as one for every
//! [`SEARCHES_PER_READ`] points have run on the old one; until then searches take usearch's
//! walk. Reading costs about what that many searches take, so a collection written and
//! searched by turns pays at most about twice, and one searched without writes gains from
//! then on.

use std::{
    cell::RefCell,
    cmp::Reverse,
    collections::HashMap,
    sync::{
        atomic::{self, AtomicU64},
        Arc, RwLock,
    },
};

use super::{
    codes::Coder,
    walk::{Beam, Scored},
    HnswIndex, PREPARED_KEYS,
};
use crate::index::kernel;

/// Searches on a changed graph, one per this many points, before its layout is read again.
pub(super) const SEARCHES_PER_READ: u64 = 128;

/// Keys laid out by key only while they are no sparser than this many per point.
const SPARSEST: u64 = 8;

/// A graph on codes laid out for [`CodeGraph::search`].
pub(super) struct CodeGraph {
    dimension: usize,
    /// Base-layer links of key `k`: `links[offsets[k]..offsets[k + 1]]`.
    offsets: Vec<u32>,
    links: Vec<u32>,
    /// Links of the points above the base layer, level 1 first.
    upper: HashMap<u32, Vec<Vec<u32>>>,
    /// The highest point and its level; `None` for an empty graph.
    entry: Option<(u32, usize)>,
    /// The codes of key `k` at `codes[k * dimension..]` (zeros for a key with no point).
    codes: Vec<u8>,
    distance: fn(&[u8], &[u8]) -> f32,
}

impl CodeGraph {
    /// Lays out the graph of `index` and the codes of its points. `None` when the keys are
    /// too sparse to lay out by key or do not fit in 32 bits, or the index is not on codes.
    fn read(index: &HnswIndex) -> Option<Self> {
        let codes = index.codes.as_ref()?;
        let coder = codes.fitted()?;
        let rows = codes.rows();
        let mut keys: Vec<u32> = rows
            .keys()
            .filter(|key| *key < PREPARED_KEYS)
            .map(u32::try_from)
            .collect::<Result<_, _>>()
            .ok()?;
        keys.sort_unstable();
        let top = keys.last().map_or(0, |k| u64::from(*k) + 1);
        if top > SPARSEST * keys.len() as u64 + 1024 {
            return None;
        }
        let dimension = index.spec.dimension;
        let (mut offsets, mut links) = (vec![0u32; top as usize + 1], Vec::new());
        let mut upper = HashMap::new();
        let mut entry: Option<(u32, usize)> = None;
        let mut codes = vec![0u8; top as usize * dimension];
        let mut present = vec![false; top as usize];
        keys.iter().for_each(|key| present[*key as usize] = true);
        let (mut read, mut at) = (Vec::new(), 0usize);
        // Only points with a vector are walked: not prepared inserts, nor removed points.
        let laid = |read: &[u64], out: &mut Vec<u32>| {
            out.extend(
                read.iter()
                    .filter(|next| **next < top && present[**next as usize])
                    .map(|next| *next as u32),
            );
        };
        for &key in &keys {
            while at <= key as usize {
                offsets[at] = links.len() as u32;
                at += 1;
            }
            index.links(u64::from(key), &mut read);
            laid(&read, &mut links);
            let level = index.index.level_of_key(u64::from(key));
            if level > 0 {
                let mut levels = Vec::with_capacity(level);
                for l in 1..=level {
                    index.links_at(u64::from(key), l, &mut read);
                    let mut out = Vec::new();
                    laid(&read, &mut out);
                    levels.push(out);
                }
                upper.insert(key, levels);
            }
            if entry.is_none_or(|(_, l)| level > l) {
                entry = Some((key, level));
            }
            if let Some(row) = rows.get(u64::from(key)) {
                let start = key as usize * dimension;
                codes[start..start + dimension].copy_from_slice(&coder.encode(row));
            }
        }
        while at <= top as usize {
            offsets[at] = u32::try_from(links.len()).ok()?;
            at += 1;
        }
        Some(Self {
            dimension,
            offsets,
            links,
            upper,
            entry,
            codes,
            distance: kernel::codes::distance(matches!(coder, Coder::Unit)),
        })
    }

    /// Heap bytes held.
    fn bytes(&self) -> usize {
        self.offsets.len() * 4
            + self.links.len() * 4
            + self.codes.len()
            + self
                .upper
                .values()
                .map(|levels| 48 + levels.iter().map(|l| 24 + l.len() * 4).sum::<usize>())
                .sum::<usize>()
    }

    fn code(&self, key: u32) -> &[u8] {
        let start = key as usize * self.dimension;
        &self.codes[start..start + self.dimension]
    }

    fn base(&self, key: u32) -> &[u32] {
        let key = key as usize;
        &self.links[self.offsets[key] as usize..self.offsets[key + 1] as usize]
    }

    /// Asks the memory for the codes of `key`, which the walk scores soon.
    #[inline]
    fn prefetch(&self, key: u32) {
        kernel::codes::prefetch(self.code(key));
    }

    /// The `ef` points nearest `query` (codes of the graph's kind) that HNSW's search finds,
    /// as keys with their distance on the codes, in no order.
    pub(super) fn search(&self, query: &[u8], ef: usize) -> Vec<(u64, f32)> {
        let Some((mut at, top)) = self.entry else {
            return Vec::new();
        };
        let distance = |key: u32| (self.distance)(query, self.code(key));
        let mut nearest = distance(at);
        for level in (1..=top).rev() {
            let mut moved = true;
            while moved {
                moved = false;
                let Some(links) = self.upper.get(&at).and_then(|l| l.get(level - 1)) else {
                    break;
                };
                for &next in links {
                    let d = distance(next);
                    if d < nearest {
                        (nearest, at, moved) = (d, next, true);
                    }
                }
            }
        }
        MET.with(|met| {
            let mut met = met.borrow_mut();
            met.start(self.offsets.len());
            met.insert(at);
            // Scores are negated distances: the beam keeps the highest.
            let mut beam = Beam::new(ef);
            beam.offer(Scored {
                score: -nearest,
                slot: u64::from(at),
            });
            let mut fresh = Vec::new();
            while let Some(from) = beam.next() {
                fresh.clear();
                fresh.extend(
                    self.base(from.slot as u32)
                        .iter()
                        .filter(|n| met.insert(**n)),
                );
                if let Some(first) = fresh.first() {
                    self.prefetch(*first);
                }
                for (i, &n) in fresh.iter().enumerate() {
                    if let Some(after) = fresh.get(i + 1) {
                        self.prefetch(*after);
                    }
                    beam.offer(Scored {
                        score: -distance(n),
                        slot: u64::from(n),
                    });
                }
            }
            beam.best
                .into_iter()
                .map(|Reverse(s)| (s.slot, -s.score))
                .collect()
        })
    }
}

/// The keys one search has met: a stamp per key, the search's own stamp marking them, so
/// that the next search on the thread starts by taking a new stamp instead of clearing.
#[derive(Default)]
struct Met {
    stamps: Vec<u32>,
    stamp: u32,
}

impl Met {
    fn start(&mut self, keys: usize) {
        if self.stamps.len() < keys {
            self.stamps.resize(keys, 0);
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.stamps.fill(0);
            self.stamp = 1;
        }
    }

    /// Marks `key`; whether it was not marked before.
    #[inline]
    fn insert(&mut self, key: u32) -> bool {
        let slot = &mut self.stamps[key as usize];
        let fresh = *slot != self.stamp;
        *slot = self.stamp;
        fresh
    }
}

thread_local! {
    static MET: RefCell<Met> = RefCell::new(Met::default());
}

/// The [`CodeGraph`] of an index on codes, read again once a changed graph has served its
/// share of searches (see the [module](self)).
#[derive(Default)]
pub(super) struct CodeGraphCache {
    /// The count of graph changes the last search saw, and the searches since it changed.
    change: AtomicU64,
    searches: AtomicU64,
    /// The layout and the count of graph changes it was read at.
    read: RwLock<Option<(u64, Option<Arc<CodeGraph>>)>>,
}

impl CodeGraphCache {
    /// Heap bytes held.
    pub(super) fn bytes(&self) -> usize {
        let cached = self.read.read().unwrap_or_else(|p| p.into_inner());
        cached
            .as_ref()
            .and_then(|(_, graph)| graph.as_ref())
            .map_or(0, |graph| graph.bytes())
    }

    /// The layout of the graph as it is at change `now`, if it was read at it or is due to
    /// be read again (then read here, searches meanwhile waiting for it); `None` sends the
    /// search to usearch's walk.
    pub(super) fn get(&self, index: &HnswIndex, now: u64) -> Option<Arc<CodeGraph>> {
        // The cached value is whole or absent after any panic: poisoning is ignored.
        let fresh = |cached: &Option<(u64, Option<Arc<CodeGraph>>)>| match cached {
            Some((at, graph)) if *at == now => Some(graph.clone()),
            _ => None,
        };
        if let Some(graph) = fresh(&self.read.read().unwrap_or_else(|p| p.into_inner())) {
            return graph;
        }
        if self.change.swap(now, atomic::Ordering::AcqRel) != now {
            self.searches.store(0, atomic::Ordering::Release);
        }
        let searches = self.searches.fetch_add(1, atomic::Ordering::AcqRel) + 1;
        if searches * SEARCHES_PER_READ < index.index.size() as u64 {
            return None;
        }
        let mut cached = self.read.write().unwrap_or_else(|p| p.into_inner());
        if let Some(graph) = fresh(&cached) {
            return graph;
        }
        let started = std::time::Instant::now();
        let graph = CodeGraph::read(index).map(Arc::new);
        tracing::debug!(
            bytes = graph.as_ref().map(|g| g.bytes()),
            secs = started.elapsed().as_secs_f64(),
            "laid out the graph on codes for searches"
        );
        *cached = Some((now, graph.clone()));
        graph
    }
}
