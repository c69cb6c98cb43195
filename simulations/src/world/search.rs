//! Federated searches: a random live node finds each shard's holders in the DHT (provider
//! records not yet expired, dead holders' included, as in the daemon), plans with the node's
//! own `federation::Planner` and `PeerBook`, and the world carries its requests over links.
//!
//! A request to a dead or unreachable node fails after the dial timeout, one whose holder
//! died on the way fails after a link's latency (the connection resets); a live holder
//! answers after its service time per shard (times its slowness) and a link's latency each
//! way (with retransmissions for lost packets). A holder
//! answers each shard it holds with the exact top-k at the version it has, `not_held` for the
//! others; a forging node answers its shards' *worst* points with perfect scores, a
//! withholding node `not_held` for all. The asker then checks every hit as the daemon's
//! verification does (the id is in that shard and its score is what the vector gives), drops
//! forged ones and penalises their peer in its book.

use std::collections::{BTreeMap, HashSet};

use ipvec_node::{
    cluster::Millis,
    federation::{Action, Holder, Input, Outcome, Planner, Query, RequestId},
};
use ipvec_protocol::{
    entry::EntryId,
    search::{ErrorCode, Hit, SearchAnswer, ShardAnswer, ShardError},
};

use super::{Event, Fault, Held, NodeId, World};
use crate::data::{sort_best_first, Scored};

/// One search in flight.
#[derive(Debug)]
pub(super) struct SearchRun {
    asker: NodeId,
    started: Millis,
    query: Vec<f32>,
    planner: Planner<NodeId>,
    holders: BTreeMap<u32, Vec<Holder<NodeId>>>,
    /// When a poll is scheduled.
    poll_at: Option<Millis>,
}

fn wire(hits: &[Scored]) -> Vec<Hit> {
    hits.iter()
        .filter_map(|(id, score)| {
            Some(Hit {
                id: EntryId::Int(*id).to_key().ok()?,
                score: *score,
                leaf: None,
                meta: None,
            })
        })
        .collect()
}

impl World {
    /// Schedules the searches of the whole run at Poisson times.
    pub(super) fn schedule_searches(&mut self) {
        let count = self.sc.search.count;
        if count == 0 {
            return;
        }
        let mean = self.end.0 as f64 / f64::from(count);
        let mut t = 0.0;
        for _ in 0..count {
            t += self.rng.exponential(mean);
            if t as u64 >= self.end.0 {
                break;
            }
            self.schedule(Millis(t as u64), Event::SearchStart);
        }
    }

    pub(super) fn search_start(&mut self) {
        let live = self.live();
        if live.is_empty() {
            return;
        }
        let asker = live[self.rng.below(live.len() as u64) as usize];
        let query = self.data.query(&mut self.rng);
        // Finding the holders: sequential DHT hops, counted against the deadline.
        let lookup: f64 = (0..self.sc.dht.lookup_hops)
            .map(|_| 2.0 * self.latency())
            .sum();
        let planned = Millis(self.now.0 + lookup.round() as u64);
        let mut holders = BTreeMap::new();
        for s in 0..self.sc.shards {
            let mut list: Vec<Holder<NodeId>> = Vec::new();
            if self.nodes[asker as usize].holds.contains_key(&s) {
                list.push(Holder::Local);
            }
            for (node, expires) in &self.providers[s as usize] {
                if *expires > self.now && *node != asker {
                    list.push(Holder::Peer(*node));
                }
            }
            holders.insert(s, list);
        }
        let query_spec = Query {
            shards: (0..self.sc.shards).collect(),
            holders: holders.clone(),
            k: self.sc.data.k as usize,
            deadline: Millis(self.now.0 + self.sc.search.deadline_ms),
        };
        let id = self.next_search;
        self.next_search += 1;
        self.searches.insert(
            id,
            SearchRun {
                asker,
                started: self.now,
                query,
                planner: Planner::new(query_spec, planned),
                holders,
                poll_at: None,
            },
        );
        self.schedule(planned, Event::SearchPoll { search: id });
        if let Some(run) = self.searches.get_mut(&id) {
            run.poll_at = Some(planned);
        }
    }

    pub(super) fn search_poll(&mut self, search: u64) {
        let Some(run) = self.searches.get_mut(&search) else {
            return;
        };
        if run.poll_at == Some(self.now) {
            run.poll_at = None;
        }
        let asker = &self.nodes[run.asker as usize];
        if !asker.alive || asker.up_since > run.started {
            // The asker crashed: its search died with it.
            self.searches.remove(&search);
            return;
        }
        if run.planner.next_deadline().is_some_and(|t| t > self.now) {
            return self.search_next(search);
        }
        let book = &mut self.nodes[run.asker as usize].book;
        let actions = run.planner.poll(book, self.now);
        self.search_act(search, actions);
    }

    pub(super) fn search_reply(&mut self, search: u64, input: Input) {
        let Some(run) = self.searches.get_mut(&search) else {
            return;
        };
        let node = &mut self.nodes[run.asker as usize];
        if !node.alive || node.up_since > run.started {
            // The asker crashed: its search died with it.
            self.searches.remove(&search);
            return;
        }
        let actions = run.planner.handle(input, &mut node.book, self.now);
        self.search_act(search, actions);
    }

    /// Carries out a planner's actions, then finishes the search or schedules its next poll.
    fn search_act(&mut self, search: u64, actions: Vec<Action<NodeId>>) {
        let Some(asker) = self.searches.get(&search).map(|r| r.asker) else {
            return;
        };
        for action in actions {
            let Action::Send {
                request,
                to,
                shards,
                ..
            } = action
            else {
                // A cancelled request's answer may be on its way; the planner takes it late.
                continue;
            };
            match to {
                Holder::Local => {
                    let answer = self.answer(search, asker, &shards);
                    let slow = self.nodes[asker as usize].slow;
                    let ms = self.sc.search.service_ms * shards.len() as f64 * slow;
                    let input = Input::Answered { request, answer };
                    self.after(ms, Event::SearchReply { search, input });
                }
                Holder::Peer(to) => {
                    if !self.reachable(asker, to) {
                        let input = Input::Failed {
                            request,
                            reason: "could not connect".into(),
                        };
                        let ms = self.sc.links.dial_timeout_ms as f64;
                        self.after(ms, Event::SearchReply { search, input });
                    } else {
                        let ms = self.latency();
                        let arrive = Event::SearchArrive {
                            search,
                            request,
                            to,
                            shards,
                        };
                        self.after(ms, arrive);
                    }
                }
            }
        }
        self.search_next(search);
    }

    /// Finishes `search` when its planner is done, else makes sure a poll is scheduled at its
    /// next deadline.
    fn search_next(&mut self, search: u64) {
        let Some(run) = self.searches.get_mut(&search) else {
            return;
        };
        if run.planner.is_done() {
            if let Some(run) = self.searches.remove(&search) {
                self.search_finish(run);
            }
            return;
        }
        if let Some(t) = run.planner.next_deadline() {
            if run.poll_at.is_none_or(|p| t < p) {
                run.poll_at = Some(t);
                self.schedule(t, Event::SearchPoll { search });
            }
        }
    }

    pub(super) fn search_arrive(
        &mut self,
        search: u64,
        request: RequestId,
        to: NodeId,
        shards: Vec<u32>,
    ) {
        let Some(asker) = self.searches.get(&search).map(|r| r.asker) else {
            return;
        };
        if !self.reachable(asker, to) {
            // It died (or a partition fell) while the request was on its way.
            let input = Input::Failed {
                request,
                reason: "connection reset".into(),
            };
            let ms = self.latency();
            return self.after(ms, Event::SearchReply { search, input });
        }
        let answer = self.answer(search, to, &shards);
        let slow = self.nodes[to as usize].slow;
        let ms = self.sc.search.service_ms * shards.len() as f64 * slow + self.latency();
        let input = Input::Answered { request, answer };
        self.after(ms, Event::SearchReply { search, input });
    }

    /// What `node` answers for `shards` of `search`'s query.
    fn answer(&self, search: u64, node: NodeId, shards: &[u32]) -> SearchAnswer {
        let Some(run) = self.searches.get(&search) else {
            return SearchAnswer::refused(ShardError::new(ErrorCode::Internal, "no search"));
        };
        let n = &self.nodes[node as usize];
        let k = self.sc.data.k as usize;
        let parts = shards
            .iter()
            .map(|s| match (n.holds.get(s), n.fault) {
                (Some(Held { root, seen, .. }), Fault::Honest | Fault::Forging) => {
                    let mut hits = self.data.top(*s, &run.query, k);
                    if n.fault == Fault::Forging && node != run.asker {
                        // Its worst points, claimed to be exact matches.
                        hits = self.data.top(*s, &run.query, usize::MAX);
                        hits.reverse();
                        hits.truncate(k);
                        hits.iter_mut().for_each(|h| h.1 = 0.0);
                    }
                    ShardAnswer {
                        shard: *s,
                        root: Some(*root),
                        // The heads its root merges, counted (newer roots merge more).
                        seq: Some(seen.iter().sum()),
                        hits: wire(&hits),
                        error: None,
                    }
                }
                _ => ShardAnswer::failed(*s, ShardError::new(ErrorCode::NotHeld, "not held")),
            })
            .collect();
        SearchAnswer {
            shards: parts,
            refused: None,
        }
    }

    /// Verifies, scores and records a finished search, and checks the coverage invariant.
    fn search_finish(&mut self, run: SearchRun) {
        let mut outcome: Outcome<NodeId> = run.planner.finish(self.now);
        let k = self.sc.data.k as usize;
        // The asker's verification: each hit's score recomputed from its shard's vectors.
        let mut forged_peers = Vec::new();
        outcome.hits.retain(|hit| {
            let EntryId::Int(id) = hit.hit.id else {
                return false;
            };
            let honest = self.data.score(hit.shard, id, &run.query).is_some_and(|s| {
                (s as f32 - hit.hit.score).abs() <= 1e-3 * s.abs().max(1.0) as f32
            });
            if !honest {
                if let Holder::Peer(p) = hit.from {
                    forged_peers.push(p);
                }
            }
            honest
        });
        self.stats.forged_hits += forged_peers.len() as u64;
        let book = &mut self.nodes[run.asker as usize].book;
        for p in forged_peers {
            book.penalise(&p, self.now);
        }
        // Recall against the exact top-k of the whole collection.
        let mut truth: Vec<Scored> = (0..self.sc.shards)
            .flat_map(|s| self.data.top(s, &run.query, k))
            .collect();
        sort_best_first(&mut truth);
        truth.truncate(k);
        let truth: HashSet<u64> = truth.iter().map(|h| h.0).collect();
        let found = outcome
            .hits
            .iter()
            .filter(|h| matches!(h.hit.id, EntryId::Int(id) if truth.contains(&id)))
            .count();
        let covered = outcome
            .coverage
            .iter()
            .filter(|r| r.answered.is_some())
            .count();
        self.stats.record_search(
            self.now.since(run.started).as_millis() as u64,
            covered as u32,
            self.sc.shards,
            found as f64 / truth.len().max(1) as f64,
            &outcome,
        );
        // Invariant: a shard given up for any reason but the deadline had no holder that was
        // up the whole search, reachable, honest and holding it among those asked.
        for report in &outcome.coverage {
            if report.answered.is_some() || report.missing.as_deref() == Some("deadline") {
                continue;
            }
            let could = run.holders[&report.shard].iter().any(|h| match h {
                Holder::Local => true,
                Holder::Peer(p) => {
                    let n = &self.nodes[*p as usize];
                    self.reachable(run.asker, *p)
                        && n.up_since <= run.started
                        && n.fault == Fault::Honest
                        && n.holds
                            .get(&report.shard)
                            .is_some_and(|h| h.since <= run.started)
                }
            });
            if could {
                self.violate("a shard with a live honest holder went uncovered");
            }
        }
    }
}
