//! Deterministic discrete-event simulations of ipvec networks.
//!
//! A run builds a [`world::World`] of nodes from a [`scenario::Scenario`] and a seed, and
//! drives, on a virtual clock, the node's own sans-io cores — the federated search planner
//! and peer book (`ipvec_node::federation`), placement, membership, repair, head following
//! and the fetch scheduler (`ipvec_node::cluster`), the writers' edits and the nodes' merges
//! of shard trees (`ipvec_node::tree`) — never copies of them. The world supplies only what
//! the daemon's sockets, DHT and disks would: links with latency, loss and bandwidth,
//! provider records with expiry, crashes, partitions, and shard data to search. One seed
//! names one run: the same seed gives the same trace hash, on any machine.
//!
//! See `docs/simulations.md` for the model, its simplifications and results.

pub mod data;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod sweep;
pub mod world;

use std::time::Instant;

pub use self::{
    report::Stats,
    scenario::{Scenario, ScenarioError},
    world::World,
};

/// Runs `scenario` with `seed` to its end, or to its first broken invariant; an error if
/// the scenario does not pass [`Scenario::check`].
pub fn run(scenario: &Scenario, seed: u64) -> Result<(Stats, f64), ScenarioError> {
    let started = Instant::now();
    let stats = World::new(scenario.clone(), seed)?.run();
    Ok((stats, started.elapsed().as_secs_f64()))
}
