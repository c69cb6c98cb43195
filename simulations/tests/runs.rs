//! Whole runs of the standard small scenarios: determinism, the invariants, what each
//! scenario is there to show, and a broken component that the checks must catch.

use std::path::Path;

use cid::Cid;
use futures::executor::block_on;
use ipvec_node::{
    cluster::placement::place,
    store::MemBlockStore,
    tree::{self, Edit, Shape, TreeError},
};
use ipvec_simulations::{Scenario, Stats, World};

fn scenario(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"));
    Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn run(sc: &Scenario, seed: u64) -> Stats {
    World::new(sc.clone(), seed)
        .unwrap_or_else(|e| panic!("{e}"))
        .run()
}

fn assert_clean(stats: &Stats) {
    assert!(
        stats.violations.is_empty(),
        "invariants broken: {:?}",
        stats.violations
    );
}

#[test]
fn one_seed_replays_the_same_run_and_another_seed_does_not() {
    let sc = scenario("small");
    let a = run(&sc, 21);
    let b = run(&sc, 21);
    let c = run(&sc, 22);
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.events, b.events);
    assert_eq!(a.latencies, b.latencies);
    assert_ne!(a.trace, c.trace);
}

#[test]
fn heavy_churn_keeps_the_invariants_and_repairs_every_shard() {
    let sc = scenario("small");
    let stats = run(&sc, sc.seed);
    assert_clean(&stats);
    assert!(
        stats.crashes > 5,
        "the scenario churns: {} crashes",
        stats.crashes
    );
    assert!(stats.searches > 500);
    assert!(
        stats.fetches > 0 && stats.bytes_moved > 0,
        "repair moved shards"
    );
    assert!(
        !stats.repair_times.is_empty(),
        "some shard fell short and came back"
    );
    let s = stats.summary();
    assert!(s.mean_coverage > 0.9, "mean coverage {}", s.mean_coverage);
}

#[test]
fn a_quiet_network_covers_every_shard_with_exact_recall() {
    let mut sc = scenario("six");
    sc.links.loss = 0.0;
    sc.kills.clear();
    let stats = run(&sc, sc.seed);
    assert_clean(&stats);
    let s = stats.summary();
    assert_eq!(s.full_coverage_rate, 1.0);
    assert_eq!(
        s.recall, 1.0,
        "the merge of every shard's exact top-k is exact"
    );
    assert_eq!(stats.fetches, 0, "nothing moves when nothing changes");
}

/// A catch-up walks the trees of the new heads and fetches only the blocks that changed: the
/// leaves the commit rewrote and the branches above them, never the whole shard again.
#[test]
fn catch_ups_fetch_only_the_changed_blocks() {
    let mut sc = scenario("six");
    sc.kills.clear();
    sc.writes.per_hour = 240.0;
    let stats = run(&sc, sc.seed);
    assert_clean(&stats);
    assert!(stats.commits > 10, "{} commits", stats.commits);
    assert_eq!(stats.bytes_moved, 0, "no member fetched a whole shard");
    // A commit rewrites `delta_bytes` of neighbouring entries: a leaf or two of about
    // `block_bytes` (leaf boundaries depend on the entries), and the branches above them.
    // Each holder fetches those; an eighth of the shard is far more than that, and far less
    // than the whole shard a fetch without the walk would move.
    let per_catch_up = stats.bytes_catch_up / (stats.commits * u64::from(sc.replication));
    assert!(
        stats.bytes_catch_up > 0 && per_catch_up <= sc.repair.shard_bytes / 8,
        "{per_catch_up} bytes a catch-up, of {} commits; a shard is {} bytes",
        stats.commits,
        sc.repair.shard_bytes
    );
}

#[test]
fn fetches_ban_peers_that_send_wrong_blocks_and_complete_from_the_others() {
    let sc = scenario("hostile");
    let stats = run(&sc, sc.seed);
    assert_clean(&stats);
    assert!(stats.fetches > 0, "the scenario churns and writes");
    assert!(
        stats.blocks_refused > 0 && stats.bans > 0,
        "{} wrong blocks refused, {} bans",
        stats.blocks_refused,
        stats.bans
    );
    assert_eq!(
        stats.fetch_failures, 0,
        "an honest holder or the writer sent each block"
    );
    assert!(
        !stats.repair_times.is_empty(),
        "shards fell short and came back"
    );
}

/// The case `node/tests/members.rs` also runs on real daemons: two of six members leave, one
/// after the other; every shard is back on two of the four left, and no search misses one.
#[test]
fn two_members_leaving_one_after_the_other_are_repaired_onto_the_rest() {
    let sc = scenario("six");
    let stats = run(&sc, sc.seed);
    assert_clean(&stats);
    assert_eq!((stats.left, stats.nodes_end), (2, 4));
    assert_eq!(stats.holders.len(), 12);
    for (shard, holders) in stats.holders.iter().enumerate() {
        assert_eq!(holders.len(), 2, "shard {shard}: {holders:?}");
        assert!(
            holders.iter().all(|n| ![1, 4].contains(n)),
            "shard {shard} on a member that left: {holders:?}"
        );
    }
    assert!(stats.fetches > 0, "the leavers' shards were fetched again");
    assert_eq!(stats.full_coverage, stats.searches);
}

#[test]
fn a_partition_heals_and_every_node_converges() {
    let sc = scenario("partition");
    let stats = run(&sc, sc.seed);
    assert_clean(&stats);
    assert_eq!(stats.partitions, 1);
    assert_eq!(
        stats.converged_after_heal.len(),
        1,
        "converged after the heal"
    );
    assert!(stats.commits > 0);
}

#[test]
fn forged_hits_are_caught_and_the_forgers_avoided() {
    let sc = scenario("hostile");
    let stats = run(&sc, sc.seed);
    assert_clean(&stats);
    assert!(stats.forged_hits > 0, "forgers were asked and caught");
    // Each asker is fooled by a forger once, then bans it: with a breaker that an answer
    // closes (the book before bans), forgers came back every minute and recall was 0.83.
    let s = stats.summary();
    assert!(s.recall > 0.95, "recall {}", s.recall);
    let forgers = (sc.faults.forging_fraction * f64::from(sc.nodes)).round() as u64;
    let once_each = u64::from(sc.nodes) * forgers * u64::from(sc.data.k);
    assert!(
        stats.forged_hits <= once_each,
        "{} forged hits: more than each asker caught once by each forger",
        stats.forged_hits
    );
}

#[test]
fn a_broken_placement_is_caught() {
    let sc = scenario("small");
    let mut world = World::new(sc.clone(), sc.seed).unwrap_or_else(|e| panic!("{e}"));
    // A placement over another collection's hashes: not what the node's own would place.
    world.replace_placement(|_, shards, members, r| {
        place(b"another collection", shards, members, r)
    });
    let stats = world.run();
    let first = stats
        .violations
        .first()
        .expect("the check caught the broken placement");
    assert!(first.invariant.contains("placement"), "{first:?}");
}

/// The writers scenario with commits that overwrite each other often: a quarter of a
/// shard's ids per commit, on four shards.
fn conflicting_writers() -> Scenario {
    let mut sc = scenario("writers");
    sc.shards = 4;
    sc.writes.delta_bytes = sc.repair.shard_bytes / 4;
    sc
}

#[test]
fn nodes_that_took_the_same_writers_heads_hold_the_same_roots() {
    let sc = conflicting_writers();
    for seed in [sc.seed, 8] {
        let stats = run(&sc, seed);
        assert_clean(&stats);
        assert_eq!(stats.writers, 3);
        assert!(stats.commits > 200, "{} commits", stats.commits);
        assert!(
            stats.merges > stats.commits * 20,
            "every node merges every head: {} merges of {} commits",
            stats.merges,
            stats.commits
        );
        assert_eq!(
            stats.converged_after_heal.len(),
            1,
            "the nodes took every head after the heal"
        );
        assert_eq!(stats.shards_lost, 0);
        // A fetch copies a root a provider holds rather than insisting on the writers' own
        // trees, which nobody but the writers has once holders merged: no fetch stalls on
        // them and throws away the blocks it had in flight.
        assert_eq!(stats.bytes_duplicate, 0, "blocks received twice");
    }
}

/// A merge where the incoming tree always wins (not last-writer-wins) depends on the order
/// heads come in: nodes that took the same heads in another order end with other roots.
fn theirs_win(
    store: &MemBlockStore,
    shape: Shape,
    ours: Cid,
    theirs: Cid,
) -> Result<Cid, TreeError> {
    block_on(async {
        let mut changes = tree::diff(store, ours, theirs);
        let mut edits = Vec::new();
        while let Some(change) = changes.next().await? {
            if let Some(entry) = change.new {
                edits.push(Edit::Put(entry));
            }
        }
        let (root, _) = tree::apply_with_shape(store, shape, ours, edits).await?;
        Ok(root)
    })
}

#[test]
fn a_merge_that_depends_on_the_order_of_heads_is_caught() {
    let sc = conflicting_writers();
    let mut world = World::new(sc.clone(), sc.seed).unwrap_or_else(|e| panic!("{e}"));
    world.replace_merge(theirs_win);
    let stats = world.run();
    let first = stats
        .violations
        .first()
        .expect("the check caught the broken merge");
    assert!(first.invariant.contains("same heads"), "{first:?}");
    // And the node's own merge, given the same seed, passes.
    world_check_passes(&sc);
}

fn world_check_passes(sc: &Scenario) {
    let mut world = World::new(sc.clone(), sc.seed).unwrap_or_else(|e| panic!("{e}"));
    world.replace_merge(ipvec_simulations::world::merge);
    assert_clean(&world.run());
}

#[test]
fn a_sweep_writes_its_csv_and_plots() {
    let mut sc = scenario("small");
    sc.duration_s = 600;
    sc.search.count = 100;
    let dir = tempfile::tempdir().unwrap();
    let grid = ipvec_simulations::sweep::Grid {
        churn: vec![0.0, 1.0],
        replication: vec![1, 2],
        deadline_ms: vec![2_000],
    };
    let runs = ipvec_simulations::sweep::run_grid(&sc, &grid, 4, dir.path()).unwrap();
    assert_eq!(runs, 4);
    let csv = std::fs::read_to_string(dir.path().join("sweep.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "a header and a row per run: {csv}");
    assert!(lines[0].starts_with("churn_per_hour,replication,deadline_ms,searches"));
    assert!(lines[1].starts_with("0,1,2000,"), "{}", lines[1]);
    for plot in ["coverage.png", "latency.png"] {
        let bytes = std::fs::read(dir.path().join(plot)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{plot} is a PNG");
        assert!(bytes.len() > 10_000, "{plot} has something drawn");
    }
}

#[test]
fn a_replay_keeps_the_last_events_before_the_first_broken_invariant() {
    let sc = scenario("small");
    let mut world = World::new(sc.clone(), sc.seed).unwrap_or_else(|e| panic!("{e}"));
    world.replace_placement(|_, shards, members, r| {
        place(b"another collection", shards, members, r)
    });
    world.record_events(16);
    let (stats, events) = world.run_recorded();
    let first = stats.violations.first().expect("broken on purpose");
    assert_eq!(events.len(), 16);
    // The last event kept is the one that broke it, named by its order.
    let last = events.last().unwrap();
    assert!(
        last.contains(&format!("event {:>9}", first.event)),
        "{last}"
    );
    assert!(last.contains("Sample"), "{last}");
}

/// A scenario built in code is checked as a file is: one whose identities do not parse is
/// refused with the field to fix, not run with made-up identities.
#[test]
fn a_world_refuses_a_scenario_that_does_not_check() {
    let mut sc = scenario("six");
    sc.identities = Some(ipvec_simulations::scenario::Identities {
        collection: "not a collection id".into(),
        peers: vec!["not a peer id".into(); sc.nodes as usize],
    });
    let e = World::new(sc, 1).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("identities"), "{e}");
    let mut sc = scenario("six");
    sc.repair.block_bytes = 0;
    let e = World::new(sc, 1).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("repair.block_bytes"), "{e}");
}
