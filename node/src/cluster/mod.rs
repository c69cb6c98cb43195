//! Sans-io cores of the cluster: the decisions of replication and block exchange, with no
//! socket, task or clock inside.
//!
//! Each core is a state machine in the shape of libp2p-kad's `ClosestPeersIter`: the caller
//! feeds it what happened, with the time it happened, and carries out the actions it answers
//! — `handle(input, now) -> Vec<Action>`, plus `poll(now)` and `next_deadline()` for the
//! timers it keeps. Time is a [`Millis`] since an epoch of the caller's choosing: the daemon
//! counts from its start on tokio's clock, a simulator from zero on a virtual one, so a
//! simulation of thousands of nodes runs the very code the daemon runs, and property tests
//! step time forward instead of sleeping. Peers are a type parameter (the daemon's
//! `libp2p::PeerId`, a simulator's integers).
//!
//! The daemon's adapters are thin: `net::bitswap` drives [`wants`] and [`walk`] over libp2p
//! streams and the block store; the node's replication drives [`follow`] from gossip.
//!
//! # Layout
//! - [`wants`]: the Bitswap want ledger: whom each block is asked of, when it is asked again,
//!   when a want gives up, and what a block that arrives is to us.
//! - [`walk`]: the schedule of a DAG fetch: which blocks to get next, at most
//!   [`walk::PARALLEL_WANTS`] at once.
//! - [`follow`]: following collections: judging gossiped heads, catch-ups, replication state
//!   and provider counts.
//! - [`members`]: a collection's membership, learnt from announcements that expire.
//! - [`placement`]: which members hold each shard of a collection: weighted rendezvous
//!   hashing over the membership, and what moves when it changes.
//! - [`rebalance`]: repair and rebalancing of a collection on one member: which shards it
//!   fetches, announces, keeps until handed over, drops and reconciles.

pub mod follow;
pub mod members;
pub mod placement;
pub mod rebalance;
pub mod walk;
pub mod wants;

use std::time::Duration;

/// A point in time: milliseconds since an epoch the caller chooses (a daemon's start, a
/// simulation's zero). Only differences matter to the cores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

impl Millis {
    /// This time plus `d` (saturating).
    pub fn after(self, d: Duration) -> Self {
        Millis(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// How long after `earlier` this is (zero if it is not after it).
    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// The time `d` after the epoch.
    pub fn from_duration(d: Duration) -> Self {
        Millis(0).after(d)
    }
}
