//! Choosing holders: this node first, then the peer of least cost, with the load this search
//! already puts on each peer; peers whose breaker is open last, and never for a hedge.

use std::{collections::HashMap, fmt::Debug, hash::Hash};

use super::{Planner, State};
use crate::{
    cluster::Millis,
    federation::{Holder, PeerBook},
};

/// Shards grouped by the holder to ask, in order of first use.
pub(super) type Groups<P> = Vec<(Holder<P>, Vec<u32>)>;

impl<P: Clone + Eq + Hash + Ord + Debug> Planner<P> {
    /// The next holder of each of `shards`, grouped, and the shards with none (`hedge`: open
    /// peers are no candidates).
    pub(super) fn assign(
        &self,
        shards: &[u32],
        book: &PeerBook<P>,
        now: Millis,
        hedge: bool,
    ) -> (Groups<P>, Vec<u32>) {
        // Open shards in flight to each peer from this search, plus those assigned here.
        let mut load: HashMap<P, usize> = HashMap::new();
        for r in self.requests.values().filter(|r| r.state == State::Live) {
            if let Holder::Peer(p) = &r.to {
                let open = r
                    .shards
                    .iter()
                    .filter(|s| self.shards.get(s).is_some_and(|st| st.is_open()))
                    .count();
                *load.entry(p.clone()).or_default() += open;
            }
        }
        let mut groups: Groups<P> = Vec::new();
        let mut none = Vec::new();
        for s in shards {
            let Some(to) = self.pick(*s, &load, book, now, hedge) else {
                none.push(*s);
                continue;
            };
            if let Holder::Peer(p) = &to {
                *load.entry(p.clone()).or_default() += 1;
            }
            match groups.iter_mut().find(|(h, _)| *h == to) {
                Some((_, group)) => group.push(*s),
                None => groups.push((to, vec![*s])),
            }
        }
        (groups, none)
    }

    /// The best untried holder of shard `s`: this node, else the closed peer of least
    /// cost × (1 + load), else (not for a hedge) the open peer of least such cost.
    fn pick(
        &self,
        s: u32,
        load: &HashMap<P, usize>,
        book: &PeerBook<P>,
        now: Millis,
        hedge: bool,
    ) -> Option<Holder<P>> {
        let st = self.shards.get(&s)?;
        let mut best: Option<(bool, f64, &P)> = None;
        for h in st.holders.iter().filter(|h| !st.tried.contains(h)) {
            let p = match h {
                Holder::Local => return Some(Holder::Local),
                Holder::Peer(p) => p,
            };
            let open = book.is_open(p, now);
            if open && hedge {
                continue;
            }
            let cost = book.cost(p, now) * (1 + load.get(p).copied().unwrap_or(0)) as f64;
            // Least (open, cost, peer); costs compared by their total order.
            let better = best.is_none_or(|(b_open, b_cost, b_peer)| {
                open.cmp(&b_open)
                    .then(cost.total_cmp(&b_cost))
                    .then(p.cmp(b_peer))
                    .is_lt()
            });
            if better {
                best = Some((open, cost, p));
            }
        }
        best.map(|(_, _, p)| Holder::Peer(p.clone()))
    }
}
