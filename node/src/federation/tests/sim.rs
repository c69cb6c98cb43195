//! Property tests over a small simulated network: random shards, holders and points, peers
//! with random latencies that fail, answer errors or never answer, all driven by the planner
//! on a virtual clock that steps from event to event. Several searches in a row share one
//! peer book, so breakers and the budget carry over as they do in a node.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::federation::{
    peers::{HEDGE_COST, HEDGE_CREDIT_START, HEDGE_EARN},
    plan::NO_HOLDER,
};

const PEERS: u8 = 6;
const CODES: [ErrorCode; 6] = [
    ErrorCode::NotHeld,
    ErrorCode::Busy,
    ErrorCode::Stale,
    ErrorCode::BadRequest,
    ErrorCode::RateLimited,
    ErrorCode::Internal,
];

/// How a peer behaves: per request, percent chances to say nothing, to fail, and per shard to
/// answer an error.
#[derive(Debug, Clone)]
struct PeerSpec {
    latency: u64,
    silent: u64,
    fail: u64,
    error: u64,
}

#[derive(Debug, Clone)]
struct ShardSpec {
    holders: Vec<u8>,
    local: bool,
    /// Raw scores of its points.
    points: Vec<i32>,
}

#[derive(Debug, Clone)]
struct World {
    peers: Vec<PeerSpec>,
    shards: Vec<ShardSpec>,
    k: usize,
    deadline: u64,
    seed: u64,
}

fn peer_spec(healthy: bool) -> impl Strategy<Value = PeerSpec> {
    let chance = move || {
        if healthy {
            Just(0u64).boxed()
        } else {
            prop_oneof![Just(0u64), 0u64..40].boxed()
        }
    };
    (1u64..200, chance(), chance(), chance()).prop_map(|(latency, silent, fail, error)| PeerSpec {
        latency,
        silent,
        fail,
        error,
    })
}

fn world() -> impl Strategy<Value = World> {
    let shard = (
        proptest::sample::subsequence((0..PEERS).collect::<Vec<_>>(), 0..=3),
        proptest::bool::weighted(0.25),
        proptest::collection::vec(-1000i32..1000, 0..12),
    )
        .prop_map(|(holders, local, points)| ShardSpec {
            holders,
            local,
            points,
        });
    any::<bool>()
        .prop_flat_map(move |healthy| {
            (
                proptest::collection::vec(peer_spec(healthy), PEERS as usize),
                proptest::collection::vec(shard.clone(), 1..=16),
                1usize..10,
                prop_oneof![10u64..100, 100u64..1_000],
                any::<u64>(),
            )
        })
        .prop_map(|(peers, shards, k, deadline, seed)| World {
            peers,
            shards,
            k,
            deadline,
            seed,
        })
}

/// splitmix64: every random choice of a run comes from the world's seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A point's id and its score, unique across the world (exact in f32).
fn points(world: &World, shard: usize) -> Vec<(u64, f64)> {
    let first: usize = world.shards[..shard].iter().map(|s| s.points.len()).sum();
    world.shards[shard]
        .points
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let n = (first + i) as u64;
            (n, f64::from(*raw) * 256.0 + n as f64)
        })
        .collect()
}

/// The best `k` of `points`, best first.
fn top(mut points: Vec<(u64, f64)>, k: usize) -> Vec<(u64, f64)> {
    points.sort_by(|a, b| b.1.total_cmp(&a.1));
    points.truncate(k);
    points
}

/// What the world answers to a request for `shards` sent to `to`, and after how long; `None`
/// for silence.
fn respond(
    world: &World,
    rng: &mut Rng,
    request: RequestId,
    to: &Holder<Peer>,
    shards: &[u32],
) -> Option<(u64, Input)> {
    let (spec, seq) = match to {
        Holder::Local => {
            let parts = shards.iter().map(|s| exact(world, *s, 100)).collect();
            return Some((1 + rng.below(5), answer(request, parts)));
        }
        Holder::Peer(p) => (&world.peers[usize::from(*p)], 10 + u64::from(*p)),
    };
    let latency = spec.latency + rng.below(spec.latency / 2 + 1);
    let roll = rng.below(100);
    if roll < spec.silent {
        return None;
    }
    if roll < spec.silent + spec.fail {
        return Some((latency, failed(request, "stream reset")));
    }
    if spec.error > 0 && rng.below(20) == 0 {
        let code = CODES[rng.below(CODES.len() as u64) as usize];
        let answer = SearchAnswer::refused(ShardError::new(code, "whole request"));
        return Some((latency, Input::Answered { request, answer }));
    }
    let parts = shards
        .iter()
        .map(|s| {
            if rng.below(100) < spec.error {
                refused(*s, CODES[rng.below(CODES.len() as u64) as usize])
            } else {
                exact(world, *s, seq)
            }
        })
        .collect();
    Some((latency, answer(request, parts)))
}

/// Shard `s` answered with the exact top-k of its points.
fn exact(world: &World, s: u32, seq: u64) -> ShardAnswer {
    let hits = top(points(world, s as usize), world.k);
    found(s, seq, &hits)
}

/// What the searches of a run add up to.
#[derive(Default)]
struct Totals {
    planned: u32,
    hedges: u32,
}

/// Runs one search of the whole world from `start`, checks it, and adds to `totals`.
fn search(
    world: &World,
    book: &mut PeerBook<Peer>,
    rng: &mut Rng,
    start: Millis,
    totals: &mut Totals,
) -> Result<Outcome<Peer>, TestCaseError> {
    let n = world.shards.len() as u32;
    let mut holders = BTreeMap::new();
    for (s, spec) in world.shards.iter().enumerate() {
        let mut list: Vec<Holder<Peer>> = spec.holders.iter().map(|p| peer(*p)).collect();
        if spec.local {
            list.push(Holder::Local);
        }
        holders.insert(s as u32, list);
    }
    let deadline = start.after(ms(world.deadline));
    let mut planner = Planner::new(
        Query {
            shards: (0..n).collect(),
            holders: holders.clone(),
            k: world.k,
            deadline,
        },
        start,
    );
    // Events by (time, order of scheduling).
    let mut events: BTreeMap<(Millis, u64), Input> = BTreeMap::new();
    let mut pending: HashMap<RequestId, (Millis, u64)> = HashMap::new();
    let mut order = 0u64;
    let mut now = start;
    let mut hedge_sends = 0u32;
    for _ in 0..10_000 {
        if planner.is_done() {
            break;
        }
        let next_event = events.first_key_value().map(|(key, _)| key.0);
        let actions = match (next_event, planner.next_deadline()) {
            (None, None) => break,
            (Some(e), poll) if poll.is_none_or(|p| e < p) => {
                let Some((_, input)) = events.pop_first() else {
                    break;
                };
                prop_assert!(e >= now);
                now = e;
                planner.handle(input, book, now)
            }
            (_, Some(p)) => {
                prop_assert!(p >= now, "next_deadline {p:?} before {now:?}");
                prop_assert!(p <= deadline, "next_deadline {p:?} past the deadline");
                now = p;
                planner.poll(book, now)
            }
            (Some(_), None) => unreachable!(),
        };
        for action in actions {
            match action {
                Action::Send {
                    request,
                    to,
                    shards,
                    hedge,
                } => {
                    prop_assert!(now < deadline, "a send at {now:?}, deadline {deadline:?}");
                    prop_assert!(!shards.is_empty());
                    prop_assert!(shards.windows(2).all(|w| w[0] < w[1]));
                    for s in &shards {
                        prop_assert!(holders[s].contains(&to));
                    }
                    hedge_sends += u32::from(hedge);
                    if let Some((after, input)) = respond(world, rng, request, &to, &shards) {
                        order += 1;
                        let key = (now.after(ms(after)), order);
                        events.insert(key, input);
                        pending.insert(request, key);
                    }
                }
                Action::Cancel { request } => {
                    // The adapter may drop it, or its answer may be on the way already.
                    if let Some(key) = pending.get(&request) {
                        if rng.below(2) == 0 {
                            events.remove(key);
                        }
                    }
                }
            }
        }
    }
    prop_assert!(planner.is_done(), "not done at {now:?}");
    prop_assert!(now <= deadline, "ended at {now:?}, deadline {deadline:?}");
    let outcome = planner.finish(now);

    // Coverage: every shard once, in order, answered or missing.
    let shards: Vec<u32> = outcome.coverage.iter().map(|r| r.shard).collect();
    prop_assert_eq!(shards, (0..n).collect::<Vec<_>>());
    let mut answered_points = Vec::new();
    for report in &outcome.coverage {
        prop_assert!(report.answered.is_some() != report.missing.is_some());
        prop_assert!(report.tried.len() as u32 <= 2 + report.failovers);
        if holders[&report.shard].is_empty() {
            prop_assert_eq!(report.missing.as_deref(), Some(NO_HOLDER));
        }
        if let Some(a) = &report.answered {
            prop_assert!(report.tried.contains(&a.by));
            answered_points.extend(points(world, report.shard as usize));
        }
        // Each holder asked once; this node first when it holds the shard.
        let mut tried = report.tried.clone();
        tried.sort();
        tried.dedup();
        prop_assert_eq!(tried.len(), report.tried.len());
        if holders[&report.shard].contains(&Holder::Local) {
            prop_assert_eq!(report.tried.first(), Some(&Holder::Local));
        }
    }
    // The merged hits are the exact top-k of every answered shard's points.
    let got: Vec<(u64, f32)> = outcome
        .hits
        .iter()
        .map(|h| match h.hit.id {
            EntryId::Int(id) => (id, h.hit.score),
            EntryId::Str(_) => (u64::MAX, h.hit.score),
        })
        .collect();
    let want: Vec<(u64, f32)> = top(answered_points, world.k)
        .into_iter()
        .map(|(id, score)| (id, score as f32))
        .collect();
    prop_assert_eq!(got, want);

    prop_assert_eq!(outcome.hedges, hedge_sends);
    totals.hedges += outcome.hedges;
    totals.planned += outcome.requests - outcome.hedges - outcome.failovers;
    prop_assert!(
        totals.hedges * HEDGE_COST <= HEDGE_CREDIT_START + totals.planned * HEDGE_EARN,
        "{} hedges for {} planned requests",
        totals.hedges,
        totals.planned
    );
    Ok(outcome)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Searches over a random network: coverage complete and exclusive, at most two requests
    /// per shard plus failovers, nothing sent at or after the deadline, the merge exact,
    /// hedges within the budget.
    #[test]
    fn searches_over_a_random_network_keep_their_promises(world in world()) {
        let mut book = PeerBook::new();
        let mut rng = Rng(world.seed);
        let mut totals = Totals::default();
        for round in 0..4u64 {
            let start = T0.after(ms(round * 700));
            search(&world, &mut book, &mut rng, start, &mut totals)?;
        }
    }

    /// With healthy peers and time enough, every shard with a holder is answered.
    #[test]
    fn healthy_peers_answer_every_shard_with_a_holder(mut world in world()) {
        for spec in &mut world.peers {
            (spec.silent, spec.fail, spec.error) = (0, 0, 0);
        }
        world.deadline = 1_000;
        let mut book = PeerBook::new();
        let mut rng = Rng(world.seed);
        let outcome = search(&world, &mut book, &mut rng, T0, &mut Totals::default())?;
        for (report, spec) in outcome.coverage.iter().zip(&world.shards) {
            let held = spec.local || !spec.holders.is_empty();
            prop_assert_eq!(report.answered.is_some(), held, "{:?}", report);
        }
    }
}
