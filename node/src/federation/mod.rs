//! Federated search, sans-io: a node asks the peers that hold each shard of a collection to
//! search it, hedges slow answers, fails over from errors, merges the shards' top-k, and
//! reports which shards were covered, at which root, by whom, and why the others were not.
//!
//! Like the cores of [`crate::cluster`], this holds the decisions only, with no socket, task
//! or clock inside: the adapter (`ops/federation/ask.rs`) builds a [`Query`] from the DHT's provider
//! records and the shards held here, feeds a [`Planner`] what happened ([`Input`]) with the
//! time it happened, carries out the [`Action`]s it answers (a [`Send`](Action::Send) to a
//! peer is one `/ipvec/search/1.0.0` request, to [`Holder::Local`] a local search), calls
//! [`Planner::poll`] at [`Planner::next_deadline`], and ends with [`Planner::finish`] once
//! [`Planner::is_done`]. What the node learns of its peers across searches (latency, failures,
//! the circuit breaker, the hedging budget) lives in a [`PeerBook`] that every planner is
//! lent; the planner records each answer and failure in it itself. Time is a
//! [`Millis`](crate::cluster::Millis), peers a type parameter (the daemon's `libp2p::PeerId`,
//! a simulator's integers), so the simulator runs the very code the daemon runs.
//!
//! # The rules
//! - **Plan**: each shard is asked of one holder: [`Holder::Local`] when this node holds it,
//!   else the peer of least cost, `mean latency × (1 + recent failures) × (1 + shards in
//!   flight to it from this search)`, with [`peers::DEFAULT_LATENCY`] for a peer never
//!   heard from. Peers whose circuit breaker is open come after every other holder. The
//!   shards planned to one holder go in one request.
//! - **Hedge**: a request not answered by its holder's p95 latency (at least
//!   [`peers::MIN_HEDGE_DELAY`]) has its unanswered shards asked of their next holder
//!   (never an open peer), once per shard, if the [`PeerBook`]'s hedging budget allows:
//!   each request of a plan earns [`peers::HEDGE_EARN`] credit, a hedge request costs
//!   [`peers::HEDGE_COST`]. So a shard is asked of at most two holders, plus one more for
//!   each failover.
//! - **Failover**: a shard that fails (`not_held`, `busy`, `stale`, `internal`,
//!   `rate_limited` or an unknown code, a failed request, an answer that leaves it out) and
//!   has no other request out is asked of its next untried holder, without spending the
//!   budget. `bad_request` is not retried: the shard is missing with the peer's message.
//!   When no holder is left, it is missing with every holder's error.
//! - **Silence**: a request to a peer not answered within [`peers::SILENCE_FACTOR`] times
//!   its hedge delay (at least [`peers::MIN_SILENCE`]) counts as a failure of its peer, and the shards it alone still
//!   waits on are asked of their next untried holder where there is one, without spending the
//!   budget. It stays out: its answer, if it comes, still counts. A shard with no other
//!   holder waits for it.
//! - **Deadline**: nothing is sent at or after the query's deadline, and
//!   [`Planner::next_deadline`] never passes it. Polled at the deadline, the planner cancels
//!   what is still out and gives up the shards still waiting, as missing with reason
//!   `"deadline"` (a request out longer than its hedge delay counts as a failure of its peer).
//! - **Merge**: a shard keeps its first answer, unless a later one comes from a newer head
//!   (higher `seq`). Late answers count toward their peer's latency. An answer naming a
//!   shard its request did not ask for is a failure of its peer, and that part is ignored.
//!   The kept answers are merged with [`crate::collection::merge::merge`], in shard order,
//!   so the top-k and its ties are those a local search of the same shards gives.
//! - **Peers**: see [`peers`] for the latency estimate, the circuit breaker (open after
//!   [`peers::FAILURES_TO_OPEN`] failures in a row, for a back-off doubling from
//!   [`peers::FIRST_BACKOFF`] to [`peers::MAX_BACKOFF`], then one trial request) and the
//!   bounds on what is remembered.
//!
//! # Layout
//! - [`plan`]: the [`Planner`], one per search: planning, hedging, failover, the deadline.
//! - [`peers`]: the [`PeerBook`]: latency estimates, circuit breakers, the hedging budget.
//! - [`outcome`]: what a search ends with: the merged hits and the coverage report.

pub mod outcome;
pub mod peers;
pub mod plan;
#[cfg(test)]
mod tests;

pub use self::{
    outcome::{Answered, FederatedHit, Outcome, ShardReport},
    peers::{PeerBook, PeerReport},
    plan::{Action, Input, Planner, Query},
};

/// Who can answer for a shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Holder<P> {
    /// This node: the adapter searches its own copy of the shard.
    Local,
    /// A peer, asked over the network.
    Peer(P),
}

impl<P: std::fmt::Debug> Holder<P> {
    /// How reports name it: `local`, or the peer's debug form.
    pub fn describe(&self) -> String {
        match self {
            Holder::Local => "local".to_string(),
            Holder::Peer(p) => format!("{p:?}"),
        }
    }
}

/// Identifies one request the planner asked the adapter to send (unique within a planner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);
