//! Searches of the held index: which path a restricted search takes (exact scoring, a walk of
//! the matching points, or usearch's filtered walk), and answers sound beside a writer.

use super::{
    super::allowed::{KeySet, Restriction},
    HeldIndex, MAX_PREPARED, PREPARED_KEYS,
};
use crate::{
    collection::{CollectionError, SearchOptions},
    index::{Hit, IndexError, VectorIndex},
};

/// A filtered search's set is broad from this share of the points on: when it is also spread
/// over the graph, usearch's filtered walk is the faster one (on Fashion-MNIST, 50% of the
/// points by id: 4,666 against 3,403 QPS at ef 16; 10%: 1,847 against 4,030).
const BROAD_SET: f64 = 0.3;

/// A set follows the graph when its points' links lead into it at least this many times more
/// often than its share of the points (Fashion-MNIST's class filters: 0.94 of the links at a
/// 50% share, 0.82 at 10%; filters by id: 0.53 at 50%, 0.10 at 10%).
const FOLLOWS_GRAPH: f64 = 1.5;

/// A set spread over the graph is scored exactly only up to the exact fallback's thresholds
/// divided by this: the walk of its points keeps its recall (on Fashion-MNIST, 6,000 points by
/// id: recall 0.975 at ef 16 and 4,076 QPS, against 621 QPS exact).
const SPREAD_SET_EXACT: usize = 10;

/// How a filtered search runs ([`Collection::filter_plan`](super::Collection::filter_plan)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterPath {
    /// The matching points are scored exactly: few match, or the search asks for it.
    Exact,
    /// A walk of the graph that steps on matching points only.
    MatchingPoints,
    /// usearch's walk of the whole graph, which keeps failing points out of its results.
    FilteredWalk,
}

/// How a filtered search runs, and what chose it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FilterPlan {
    /// The path.
    pub path: FilterPath,
    /// Points the filter lets through.
    pub matching: usize,
    /// Of the graph links of points spread over the matching ones, the share that lead to
    /// matching points: near the matching share of all points when the filter is spread over
    /// the graph, higher when it follows the vectors.
    pub linked_share: f64,
}

impl HeldIndex {
    /// The index's best keys for `query` among the points `restriction` lets through.
    pub(in crate::collection) fn hits(
        &self,
        query: &[f32],
        options: SearchOptions,
        restriction: Restriction<'_>,
    ) -> Result<Vec<Hit>, CollectionError> {
        let k = options.k;
        if restriction.is_none() {
            // While a writer has inserts in the graph, the walk lets only points through, so
            // that it needs no second walk when one of them is among the nearest.
            let busy = !self.prepared_keys().is_empty();
            let placed = |key: u64| key < PREPARED_KEYS;
            let exact = |k: usize| self.index.exact(query, k);
            let walk = |k: usize| match (options.exact, busy) {
                (true, _) => exact(k),
                (false, true) => self.index.search(query, k, options.ef, Some(&placed)),
                (false, false) => self.index.search(query, k, options.ef, None),
            };
            let first = walk(k)?;
            return self.beside_writer(first, k, self.keys.len(), walk, exact);
        }
        let (allowed, plan) = self.plan(restriction, options.exact);
        let exact = |k: usize| self.index.exact_among(query, k, allowed.iter());
        let test = |key: u64| allowed.contains(key);
        let seeds = allowed.seeds();
        let walk = |k: usize| match plan.path {
            FilterPath::Exact => exact(k),
            FilterPath::MatchingPoints => {
                let seeds = seeds.iter().copied();
                self.index
                    .search_passing(query, k, options.ef, &test, seeds)
            }
            FilterPath::FilteredWalk => self.index.search(query, k, options.ef, Some(&test)),
        };
        let first = walk(k)?;
        if plan.path == FilterPath::Exact {
            // Only points pass: prepared inserts are none of them.
            return Ok(first);
        }
        self.beside_writer(first, k, allowed.len(), walk, exact)
    }

    /// The points `restriction` lets through, and how a search among them runs (`exact`: the
    /// search asks for exact scores).
    ///
    /// The set is evaluated over every point, and kept for later searches with an equal
    /// restriction until the next write. Few points are scored exactly. Otherwise the graph is
    /// walked, one of two ways. usearch's filtered walk goes as if unfiltered and keeps failing
    /// points out of its results only: its cost follows the set's share when the set is spread
    /// over the graph, and it is the faster one for a broad such set. A set that follows the
    /// graph (its points link to each other far more often than its share), or a narrower
    /// one, is walked on its own points. A set spread over the graph keeps its recall on that
    /// walk, and is scored exactly only below a tenth of the fallback's thresholds.
    pub(in crate::collection) fn plan(
        &self,
        restriction: Restriction<'_>,
        exact: bool,
    ) -> (std::sync::Arc<KeySet>, FilterPlan) {
        let allowed = self.allowed.get(restriction, &self.keys);
        let test = |key: u64| allowed.contains(key);
        let share = allowed.len() as f64 / self.keys.len().max(1) as f64;
        let linked_share =
            allowed.linked_share(|seeds| self.index.passing_share(seeds.iter().copied(), &test));
        let follows_graph = linked_share >= FOLLOWS_GRAPH * share;
        let (mut points, mut fraction) = self.exact_fallback;
        if !follows_graph {
            (points, fraction) = (
                points / SPREAD_SET_EXACT,
                fraction / SPREAD_SET_EXACT as f64,
            );
        }
        let small = allowed.len() <= points || share <= fraction;
        let path = match (exact || small, share < BROAD_SET || follows_graph) {
            (true, _) => FilterPath::Exact,
            (false, true) => FilterPath::MatchingPoints,
            (false, false) => FilterPath::FilteredWalk,
        };
        let plan = FilterPlan {
            path,
            matching: allowed.len(),
            linked_share,
        };
        (allowed, plan)
    }

    /// `hits`, or a sound answer in their place when a writer's graph inserts ran beside the
    /// search ([`HeldIndex::prepare`]). Two things can go wrong then: an insert not yet placed
    /// is no point yet, so the `k` best points come from `k` + [`MAX_PREPARED`] hits; and a
    /// walk that steps into an insert whose links are still being made (usearch links a new
    /// node top level first) can end at it, short of `k`. Such an answer is walked again, and
    /// scored exactly (`exact`) if still short. `live`: the points the search may return.
    fn beside_writer(
        &self,
        hits: Vec<Hit>,
        k: usize,
        live: usize,
        walk: impl Fn(usize) -> Result<Vec<Hit>, IndexError>,
        exact: impl Fn(usize) -> Result<Vec<Hit>, IndexError>,
    ) -> Result<Vec<Hit>, CollectionError> {
        let wanted = k.min(live);
        let placed = |hits: &[Hit]| hits.iter().all(|hit| hit.key < PREPARED_KEYS);
        if placed(&hits) && (hits.len() >= wanted || self.prepared_keys().is_empty()) {
            return Ok(hits);
        }
        const WALKS: usize = 2;
        let mut attempt = 0;
        loop {
            let mut again = match attempt < WALKS {
                true => walk(k + MAX_PREPARED)?,
                false => exact(k + MAX_PREPARED)?,
            };
            again.retain(|hit| hit.key < PREPARED_KEYS);
            again.truncate(k);
            if again.len() >= wanted || attempt == WALKS {
                return Ok(again);
            }
            attempt += 1;
        }
    }
}
