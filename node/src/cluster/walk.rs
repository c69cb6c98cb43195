//! The schedule of a DAG fetch: a breadth-first walk from a root that hands out the blocks
//! to get, at most [`PARALLEL_WANTS`] at once, each once, and counts what the fetch did.
//! The caller gets each block (from the store or from peers, see
//! [`wants`](super::wants)) and reports it with its links.

use std::collections::{HashSet, VecDeque};

use cid::Cid;

/// Blocks a DAG fetch gets at once.
pub const PARALLEL_WANTS: usize = 32;

/// What a DAG fetch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchTotals {
    /// Blocks in the DAG walked so far.
    pub blocks: u64,
    /// Blocks of the DAG discovered so far (walked, in flight or queued); equals `blocks`
    /// once the fetch ends.
    pub known: u64,
    /// Of those, fetched from peers.
    pub fetched: u64,
    /// Bytes fetched from peers.
    pub bytes: u64,
}

impl std::ops::Add for FetchTotals {
    type Output = Self;

    /// The totals of two fetches, one after the other.
    fn add(self, other: Self) -> Self {
        Self {
            blocks: self.blocks + other.blocks,
            known: self.known + other.known,
            fetched: self.fetched + other.fetched,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// A walk of the DAG under one root.
#[derive(Debug)]
pub struct DagWalk {
    seen: HashSet<Cid>,
    queue: VecDeque<Cid>,
    in_flight: usize,
    totals: FetchTotals,
}

impl DagWalk {
    /// A walk that starts at `root`.
    pub fn new(root: Cid) -> Self {
        Self::of_roots([root])
    }

    /// A walk of the DAGs under `roots` together, each block once however many of them
    /// link to it (the trees of one shard that several writers wrote share most of their
    /// nodes).
    pub fn of_roots(roots: impl IntoIterator<Item = Cid>) -> Self {
        let mut seen = HashSet::new();
        let queue: VecDeque<Cid> = roots.into_iter().filter(|r| seen.insert(*r)).collect();
        Self {
            totals: FetchTotals {
                known: seen.len() as u64,
                ..FetchTotals::default()
            },
            seen,
            queue,
            in_flight: 0,
        }
    }

    /// The next block to get, if one is queued and fewer than [`PARALLEL_WANTS`] are being
    /// got.
    pub fn next_block(&mut self) -> Option<Cid> {
        if self.in_flight >= PARALLEL_WANTS {
            return None;
        }
        let cid = self.queue.pop_front()?;
        self.in_flight += 1;
        Some(cid)
    }

    /// A block handed out was got, with its `links`; `fetched` is its size when it came
    /// from a peer (`None`: the store had it). Answers the totals so far.
    pub fn got(
        &mut self,
        links: impl IntoIterator<Item = Cid>,
        fetched: Option<u64>,
    ) -> FetchTotals {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.totals.blocks += 1;
        if let Some(bytes) = fetched {
            self.totals.fetched += 1;
            self.totals.bytes += bytes;
        }
        for link in links {
            if self.seen.insert(link) {
                self.queue.push_back(link);
            }
        }
        self.totals.known = self.seen.len() as u64;
        self.totals
    }

    /// Blocks handed out and not reported yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether every block discovered was got.
    pub fn is_done(&self) -> bool {
        self.in_flight == 0 && self.queue.is_empty()
    }

    /// The totals so far.
    pub fn totals(&self) -> FetchTotals {
        self.totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cid(n: u32) -> Cid {
        ipvec_protocol::cid::block_cid(ipvec_protocol::cid::RAW, &n.to_le_bytes())
    }

    proptest! {
        /// Over any DAG (node i links to some later nodes), reported in any order, every
        /// reachable block is handed out exactly once, never more than PARALLEL_WANTS at once.
        #[test]
        fn every_block_once_and_never_too_many_at_once(
            links in proptest::collection::vec(proptest::collection::vec(1u32..200, 0..6), 1..200),
            picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..400),
        ) {
            let n = links.len() as u32;
            let children = |i: u32| -> Vec<Cid> {
                links[i as usize].iter().map(|d| i + d).filter(|j| *j < n).map(cid).collect()
            };
            let index = |c: &Cid| (0..n).find(|i| cid(*i) == *c).unwrap();
            let mut walk = DagWalk::new(cid(0));
            let mut handed = HashSet::new();
            let mut flying: Vec<Cid> = Vec::new();
            let mut picks = picks.into_iter();
            loop {
                while let Some(c) = walk.next_block() {
                    prop_assert!(handed.insert(c), "handed out twice");
                    flying.push(c);
                }
                prop_assert!(flying.len() <= PARALLEL_WANTS);
                prop_assert_eq!(flying.len(), walk.in_flight());
                if flying.is_empty() {
                    break;
                }
                let at = picks.next().map_or(0, |p| p.index(flying.len()));
                let c = flying.swap_remove(at);
                walk.got(children(index(&c)), Some(1));
            }
            prop_assert!(walk.is_done());
            let mut reachable = HashSet::from([0u32]);
            for i in 0..n {
                if reachable.contains(&i) {
                    reachable.extend(children(i).iter().map(index));
                }
            }
            prop_assert_eq!(handed.len(), reachable.len());
            let t = walk.totals();
            prop_assert_eq!((t.blocks, t.known, t.fetched), (t.known, reachable.len() as u64, t.known));
        }
    }

    #[test]
    fn a_walk_of_several_roots_gets_their_shared_blocks_once() {
        // Roots 0 and 1 both link to 2; 2 links to 3; root 0 is given twice.
        let links = |c: &Cid| -> Vec<Cid> {
            match (0..4).find(|i| cid(*i) == *c) {
                Some(0) | Some(1) => vec![cid(2)],
                Some(2) => vec![cid(3)],
                _ => Vec::new(),
            }
        };
        let mut walk = DagWalk::of_roots([cid(0), cid(1), cid(0)]);
        assert_eq!(walk.totals().known, 2);
        let mut order = Vec::new();
        while !walk.is_done() {
            let Some(c) = walk.next_block() else {
                panic!("a walk with blocks queued hands one out");
            };
            order.push(c);
            walk.got(links(&c), Some(10));
        }
        assert_eq!(order, vec![cid(0), cid(1), cid(2), cid(3)]);
        let t = walk.totals();
        assert_eq!((t.blocks, t.known, t.bytes), (4, 4, 40));
    }
}
