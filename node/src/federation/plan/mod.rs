//! The planner of one federated search: a state machine that decides which holder each shard
//! is asked of, when a slow request is hedged, where a failed shard goes next, and when the
//! search gives up. It holds no socket or timer: the adapter feeds it [`Input`]s and the
//! time, carries out the [`Action`]s it answers, calls [`Planner::poll`] first and then at
//! every [`Planner::next_deadline`], and calls [`Planner::finish`] once
//! [`Planner::is_done`] (at the latest at the query's deadline, when polling makes it done).
//!
//! A shard is *open* until it is answered or given up (missing). A request is live from its
//! [`Send`](Action::Send) until it answers, fails, or is cancelled: when every shard it
//! asked for is settled, or at the deadline. Each request but a hedge has a hedge time, its
//! holder's hedge delay after it was sent (see [`super::peers`]), dropped when it falls at
//! or after the deadline; each request to a peer has a silence limit, likewise. The module
//! docs of [`super`] state the rules.
//!
//! Inputs for requests that are not live are late: a clean answer still counts toward its
//! peer's latency and may replace a shard's answer with one from a newer head; a failure of
//! a request we cancelled is not held against its peer (we may be why it failed).
//!
//! The planner's state and its timers are here; what it makes of answers and failures is in
//! `answers`, how it chooses holders in `choose`.

mod answers;
mod choose;

use std::{collections::BTreeMap, fmt::Debug, hash::Hash};

use ipvec_protocol::search::SearchAnswer;

use super::{
    outcome::{merge_hits, Kept, Outcome, ShardReport},
    Holder, PeerBook, RequestId,
};
use crate::cluster::Millis;

/// The reason a shard still open at the deadline is missing.
pub const DEADLINE: &str = "deadline";
/// The reason a shard with no holder is missing.
pub const NO_HOLDER: &str = "no holder known";

/// One federated search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<P> {
    /// The shards to cover, sorted and distinct (the planner sorts and dedups them anyway).
    pub shards: Vec<u32>,
    /// Who may answer for each shard (DHT provider records and this node), in no particular
    /// order; a shard with none is missing at once.
    pub holders: BTreeMap<u32, Vec<Holder<P>>>,
    /// Hits wanted in all.
    pub k: usize,
    /// When the search ends, at the latest (absolute).
    pub deadline: Millis,
}

/// What the planner asks its adapter to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<P> {
    /// Send one request to `to` for these shards (for [`Holder::Local`], search them here).
    Send {
        /// Names the request in the [`Input`] about it.
        request: RequestId,
        /// The holder asked.
        to: Holder<P>,
        /// The shards, increasing.
        shards: Vec<u32>,
        /// Whether it hedges a slow request (for logs and metrics).
        hedge: bool,
    },
    /// Nobody waits for this request's answer any more (the adapter may drop it).
    Cancel {
        /// The request.
        request: RequestId,
    },
}

/// What the planner is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The answer to a request: one [`ShardAnswer`] per shard, or a refusal of the whole
    /// request, decoded and size-checked by the adapter.
    ///
    /// [`ShardAnswer`]: ipvec_protocol::search::ShardAnswer
    Answered {
        /// The request.
        request: RequestId,
        /// Its answer.
        answer: SearchAnswer,
    },
    /// The request failed: could not connect, stream error, timeout, malformed answer.
    Failed {
        /// The request.
        request: RequestId,
        /// What happened, for the coverage report.
        reason: String,
    },
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Sent, nothing heard.
    Live,
    /// Sent, nothing heard, and the adapter told nobody waits for it.
    Cancelled,
    /// It answered or failed.
    Done,
}

/// Why a request is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Plan,
    Hedge,
    Failover,
}

#[derive(Debug)]
struct Request<P> {
    to: Holder<P>,
    shards: Vec<u32>,
    sent: Millis,
    /// When its shards still open are hedged (`None`: not any more, or past the deadline).
    hedge_at: Option<Millis>,
    /// When its silence counts as a failure of its peer (`None`: not any more, past the
    /// deadline, or asked of this node).
    silent_at: Option<Millis>,
    hedge: bool,
    state: State,
}

#[derive(Debug)]
struct Shard<P> {
    /// Candidates, without repeats.
    holders: Vec<Holder<P>>,
    /// Asked, in order; one request each.
    tried: Vec<Holder<P>>,
    /// Passed over for another because their circuit breaker was open (and not asked
    /// since).
    skipped: Vec<Holder<P>>,
    /// Its live requests.
    live: Vec<RequestId>,
    kept: Option<Kept<P>>,
    missing: Option<String>,
    /// Each failure, `holder: what`, for the report if every holder fails.
    errors: Vec<String>,
    hedged: bool,
    failovers: u32,
}

impl<P> Shard<P> {
    fn is_open(&self) -> bool {
        self.kept.is_none() && self.missing.is_none()
    }
}

/// The state of one federated search. Time must not go backwards from one call to the next.
#[derive(Debug)]
pub struct Planner<P> {
    k: usize,
    deadline: Millis,
    created: Millis,
    /// Ordered, so that every run plans, hedges and merges in the same order.
    shards: BTreeMap<u32, Shard<P>>,
    requests: BTreeMap<RequestId, Request<P>>,
    next_id: u64,
    planned: bool,
    hedges: u32,
    failovers: u32,
    sent: u32,
}

impl<P: Clone + Eq + Hash + Ord + Debug> Planner<P> {
    /// A search of `query`, created at `now`; nothing is sent before the first
    /// [`Planner::poll`].
    pub fn new(query: Query<P>, now: Millis) -> Self {
        let Query {
            shards,
            holders,
            k,
            deadline,
        } = query;
        let shards = shards
            .into_iter()
            .map(|s| {
                let mut candidates: Vec<Holder<P>> = Vec::new();
                for h in holders.get(&s).into_iter().flatten() {
                    if !candidates.contains(h) {
                        candidates.push(h.clone());
                    }
                }
                let shard = Shard {
                    holders: candidates,
                    tried: Vec::new(),
                    skipped: Vec::new(),
                    live: Vec::new(),
                    kept: None,
                    missing: None,
                    errors: Vec::new(),
                    hedged: false,
                    failovers: 0,
                };
                (s, shard)
            })
            .collect();
        Self {
            k,
            deadline,
            created: now,
            shards,
            requests: BTreeMap::new(),
            next_id: 0,
            planned: false,
            hedges: 0,
            failovers: 0,
            sent: 0,
        }
    }

    /// The timers due at `now`: the first call sends the plan; later ones hedge slow requests
    /// and, at the deadline, give up what is still out.
    pub fn poll(&mut self, book: &mut PeerBook<P>, now: Millis) -> Vec<Action<P>> {
        let mut out = Vec::new();
        if !self.planned {
            self.planned = true;
            self.plan(book, now, &mut out);
        } else if now < self.deadline {
            self.hedge_due(book, now, &mut out);
            self.silence_due(book, now, &mut out);
        }
        self.settle(book, now, &mut out);
        out
    }

    /// Takes in what happened at `now`; answers what to do.
    pub fn handle(&mut self, input: Input, book: &mut PeerBook<P>, now: Millis) -> Vec<Action<P>> {
        let mut out = Vec::new();
        match input {
            Input::Answered { request, answer } => {
                self.answered(request, answer, book, now, &mut out)
            }
            Input::Failed { request, reason } => self.failed(request, &reason, book, now, &mut out),
        }
        self.settle(book, now, &mut out);
        out
    }

    /// When [`Planner::poll`] must be called next: at once before the plan is sent, then
    /// the next hedge, the next silence limit or the deadline, whichever comes first; `None`
    /// once done.
    pub fn next_deadline(&self) -> Option<Millis> {
        if !self.planned {
            return Some(self.created.min(self.deadline));
        }
        if self.is_done() {
            return None;
        }
        let timer = self
            .requests
            .values()
            .filter(|r| r.state == State::Live)
            .flat_map(|r| [r.hedge_at, r.silent_at])
            .flatten()
            .min();
        Some(timer.map_or(self.deadline, |t| t.min(self.deadline)))
    }

    /// Whether every shard is answered or given up.
    pub fn is_done(&self) -> bool {
        self.planned && self.shards.values().all(|s| !s.is_open())
    }

    /// The query's deadline.
    pub fn deadline(&self) -> Millis {
        self.deadline
    }

    /// Ends the search at `now`: merges the answers kept; shards still open are missing, with
    /// reason [`DEADLINE`] (or, before the deadline, because the search was ended early).
    pub fn finish(self, now: Millis) -> Outcome<P> {
        let reason = if now >= self.deadline {
            DEADLINE
        } else {
            "the search ended before an answer came"
        };
        let hits = merge_hits(
            self.shards
                .iter()
                .filter_map(|(s, st)| st.kept.as_ref().map(|kept| (*s, kept))),
            self.k,
        );
        let coverage = self
            .shards
            .into_iter()
            .map(|(shard, st)| ShardReport {
                shard,
                missing: match st.kept {
                    Some(_) => None,
                    None => Some(st.missing.unwrap_or_else(|| reason.to_string())),
                },
                answered: st.kept.map(|kept| kept.answered),
                tried: st.tried,
                skipped: st.skipped,
                failovers: st.failovers,
            })
            .collect();
        Outcome {
            hits,
            coverage,
            hedges: self.hedges,
            failovers: self.failovers,
            requests: self.sent,
        }
    }

    /// Sends each shard with a holder to its best holder, one request per holder.
    fn plan(&mut self, book: &mut PeerBook<P>, now: Millis, out: &mut Vec<Action<P>>) {
        let mut wanted = Vec::new();
        for (s, st) in &mut self.shards {
            if st.holders.is_empty() {
                st.missing = Some(NO_HOLDER.to_string());
            } else {
                wanted.push(*s);
            }
        }
        if now >= self.deadline {
            return;
        }
        let (groups, _) = self.assign(&wanted, book, now, false);
        for (to, shards) in groups {
            self.send(to, shards, Why::Plan, book, now, out);
        }
    }

    /// The live requests whose timer (`timer` of each: its hedge time or its silence limit)
    /// has come at `now`, that timer cleared, each with the shards it alone still waits on.
    fn take_due(
        &mut self,
        now: Millis,
        timer: fn(&mut Request<P>) -> &mut Option<Millis>,
    ) -> Vec<(RequestId, Vec<u32>)> {
        let mut due = Vec::new();
        for (id, r) in &mut self.requests {
            if r.state != State::Live || !timer(r).is_some_and(|t| t <= now) {
                continue;
            }
            *timer(r) = None;
            let shards = r
                .shards
                .iter()
                .copied()
                .filter(|s| {
                    self.shards
                        .get(s)
                        .is_some_and(|st| st.is_open() && st.live == [*id])
                })
                .collect();
            due.push((*id, shards));
        }
        due
    }

    /// Hedges the requests whose hedge time has come.
    fn hedge_due(&mut self, book: &mut PeerBook<P>, now: Millis, out: &mut Vec<Action<P>>) {
        for (_, shards) in self.take_due(now, |r| &mut r.hedge_at) {
            // Those never hedged before.
            let shards: Vec<u32> = shards
                .into_iter()
                .filter(|s| self.shards.get(s).is_some_and(|st| !st.hedged))
                .collect();
            let (groups, _) = self.assign(&shards, book, now, true);
            for (to, shards) in groups {
                if !book.spend_hedge() {
                    break;
                }
                self.send(to, shards, Why::Hedge, book, now, out);
            }
        }
    }

    /// Moves on from the requests silent past their holder's limit
    /// (`PeerBook::silence_limit`): the shards such a request alone still waits on are
    /// asked of their next holder where there is one (a failover: no hedging credit is
    /// spent), and its peer counts a failure. The request stays out, and an answer from it
    /// still counts. Without this, a request that never gets through (a peer gone without
    /// its connection closing, a stream that never opens) holds its shards until the
    /// deadline whenever the hedging budget is spent.
    fn silence_due(&mut self, book: &mut PeerBook<P>, now: Millis, out: &mut Vec<Action<P>>) {
        for (id, shards) in self.take_due(now, |r| &mut r.silent_at) {
            let Some((to, sent)) = self.requests.get(&id).map(|r| (r.to.clone(), r.sent)) else {
                continue;
            };
            let (groups, _) = self.assign(&shards, book, now, false);
            if groups.is_empty() {
                continue;
            }
            if let Holder::Peer(p) = &to {
                book.failed(p, now);
            }
            let error = format!(
                "{}: no answer within {} ms",
                to.describe(),
                now.since(sent).as_millis()
            );
            for s in groups.iter().flat_map(|(_, shards)| shards) {
                if let Some(st) = self.shards.get_mut(s) {
                    st.errors.push(error.clone());
                }
            }
            for (next, shards) in groups {
                self.send(next, shards, Why::Failover, book, now, out);
            }
        }
    }

    /// Cancels the live requests nobody waits for; at or after the deadline, every live
    /// request, and gives up the shards still open.
    fn settle(&mut self, book: &mut PeerBook<P>, now: Millis, out: &mut Vec<Action<P>>) {
        let expired = now >= self.deadline;
        for (id, r) in &mut self.requests {
            if r.state != State::Live {
                continue;
            }
            let settled = r
                .shards
                .iter()
                .all(|s| self.shards.get(s).is_none_or(|st| !st.is_open()));
            if !settled && !expired {
                continue;
            }
            // Still needed at the deadline, and out longer than it should take: a timeout.
            if let (false, Holder::Peer(p)) = (settled, &r.to) {
                if now.since(r.sent) >= book.hedge_delay(&r.to) {
                    book.failed(p, now);
                }
            }
            r.state = State::Cancelled;
            r.hedge_at = None;
            r.silent_at = None;
            out.push(Action::Cancel { request: *id });
        }
        for st in self.shards.values_mut() {
            st.live
                .retain(|l| self.requests.get(l).is_some_and(|r| r.state == State::Live));
            if expired && st.is_open() {
                st.missing = Some(DEADLINE.to_string());
            }
        }
    }

    /// Sends `shards` to `to`.
    fn send(
        &mut self,
        to: Holder<P>,
        shards: Vec<u32>,
        why: Why,
        book: &mut PeerBook<P>,
        now: Millis,
        out: &mut Vec<Action<P>>,
    ) {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        for s in &shards {
            if let Some(st) = self.shards.get_mut(s) {
                st.tried.push(to.clone());
                st.skipped.retain(|h| *h != to);
                for h in &st.holders {
                    let open = matches!(h, Holder::Peer(p) if book.is_open(p, now));
                    if open && !st.tried.contains(h) && !st.skipped.contains(h) {
                        st.skipped.push(h.clone());
                    }
                }
                st.live.push(id);
                match why {
                    Why::Plan => {}
                    Why::Hedge => st.hedged = true,
                    Why::Failover => st.failovers += 1,
                }
            }
        }
        match why {
            Why::Plan => book.earn_hedge(),
            Why::Hedge => self.hedges += 1,
            Why::Failover => self.failovers += 1,
        }
        self.sent += 1;
        if let Holder::Peer(p) = &to {
            book.sent(p, now);
        }
        let hedge_at = now.after(book.hedge_delay(&to));
        let silent_at = now.after(book.silence_limit(&to));
        self.requests.insert(
            id,
            Request {
                to: to.clone(),
                shards: shards.clone(),
                sent: now,
                // A hedge's shards are hedged already.
                hedge_at: (why != Why::Hedge && hedge_at < self.deadline).then_some(hedge_at),
                silent_at: (matches!(to, Holder::Peer(_)) && silent_at < self.deadline)
                    .then_some(silent_at),
                hedge: why == Why::Hedge,
                state: State::Live,
            },
        );
        out.push(Action::Send {
            request: id,
            to,
            shards,
            hedge: why == Why::Hedge,
        });
    }
}
