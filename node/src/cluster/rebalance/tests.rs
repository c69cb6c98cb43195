//! The rebalancer's examples, and a small world of rebalancers wired together whose copies
//! never fall below the replication factor, on a virtual clock with small integer peers.

use std::{collections::BTreeSet, time::Duration};

use super::*;
use crate::cluster::placement::{holders, ranking};

mod world;

type Rb = Rebalancer<u32, u64>;

const COLLECTION: &[u8] = b"rebalance tests";
const SHARDS: u32 = 16;
const T0: Millis = Millis(1_000);

fn config(replication: usize, max_fetches: usize) -> Config {
    Config {
        replication,
        max_fetches,
        report_ttl: Duration::from_secs(10),
        announce_every: Duration::from_secs(4),
        reconcile_every: Duration::from_secs(5),
        retry_after: Duration::from_secs(2),
    }
}

fn members(ids: &[u32]) -> Vec<Member<u32>> {
    ids.iter()
        .map(|&peer| Member { peer, capacity: 1 })
        .collect()
}

fn root(shard: u32) -> u64 {
    100 + u64::from(shard)
}

fn roots() -> Input<u32, u64> {
    Input::Roots((0..SHARDS).map(root).collect())
}

fn holds(peer: u32, shard: u32, root: u64) -> Input<u32, u64> {
    Input::Holds { peer, shard, root }
}

/// A rebalancer of `me` among `ids`, holding at the current roots the shards placed on it.
fn settled(me: u32, ids: &[u32], replication: usize) -> Rb {
    let mut rb = Rb::new(me, COLLECTION.to_vec(), SHARDS, config(replication, 64)).unwrap();
    rb.handle(Input::Members(members(ids)), T0);
    rb.handle(roots(), T0);
    for shard in 0..SHARDS {
        if holders(COLLECTION, shard, &members(ids), replication).contains(&me) {
            let root = root(shard);
            rb.handle(Input::Fetched { shard, root }, T0);
        }
    }
    rb
}

fn fetched(actions: &[Action<u32, u64>]) -> Vec<u32> {
    let fetch = |a: &Action<u32, u64>| match a {
        Action::Fetch { shard, root: r } => {
            assert_eq!(*r, root(*shard));
            Some(*shard)
        }
        _ => None,
    };
    actions.iter().filter_map(fetch).collect()
}

fn dropped(actions: &[Action<u32, u64>]) -> Vec<u32> {
    let drop = |a: &Action<u32, u64>| match a {
        Action::Drop { shard } => Some(*shard),
        _ => None,
    };
    actions.iter().filter_map(drop).collect()
}

#[test]
fn a_joiner_fetches_and_the_old_holder_drops_once_the_new_holders_report() {
    let mut old = settled(0, &[0, 1], 2);
    // A new member: nothing is dropped before anyone reports.
    assert_eq!(old.handle(Input::Members(members(&[0, 1, 2])), T0), []);
    let moved: Vec<u32> = (0..SHARDS)
        .filter(|&s| !holders(COLLECTION, s, &members(&[0, 1, 2]), 2).contains(&0))
        .collect();
    assert!(!moved.is_empty() && moved.len() < SHARDS as usize);

    // The joiner fetches its shards, two at a time, and announces each it gets.
    let mut joiner = Rb::new(2, COLLECTION.to_vec(), SHARDS, config(2, 2)).unwrap();
    assert_eq!(joiner.handle(Input::Members(members(&[0, 1, 2])), T0), []);
    let first = fetched(&joiner.handle(roots(), T0));
    let mine = joiner.placement().shards_of(&2);
    assert_eq!(first, mine[..2]);
    let shard = first[0];
    let at = root(shard);
    assert_eq!(
        joiner.handle(Input::Fetched { shard, root: at }, T0),
        [
            Action::Announce { shard, root: at },
            Action::Fetch {
                shard: mine[2],
                root: root(mine[2])
            }
        ]
    );

    for &s in &moved {
        // One of the two new holders, or the joiner at another root, is not enough.
        assert!(dropped(&old.handle(holds(1, s, root(s)), T0)).is_empty());
        assert!(dropped(&old.handle(holds(2, s, 7), T0)).is_empty());
        assert_eq!(old.status(T0)[s as usize].held, Some(root(s)));
        assert_eq!(
            old.handle(holds(2, s, root(s)), T0),
            [Action::Drop { shard: s }]
        );
    }
    let held = old.status(T0).into_iter().filter(|s| s.held.is_some());
    assert_eq!(held.count(), SHARDS as usize - moved.len());
}

#[test]
fn a_vanished_holders_shards_are_fetched_by_the_next_in_hrw_order() {
    let all = [0, 1, 2, 3, 4, 5];
    let gone = 3;
    let rest: Vec<u32> = all.iter().copied().filter(|&p| p != gone).collect();
    let mut repaired = BTreeSet::new();
    for &me in &rest {
        let mut rb = settled(me, &all, 2);
        let fetches = fetched(&rb.handle(Input::Members(members(&rest)), T0));
        let expected: Vec<u32> = (0..SHARDS)
            .filter(|&s| {
                let r = ranking(COLLECTION, s, &members(&all));
                r[..2].contains(&gone) && r[2] == me
            })
            .collect();
        assert_eq!(fetches, expected, "member {me}");
        repaired.extend(fetches);
    }
    let held: BTreeSet<u32> = (0..SHARDS)
        .filter(|&s| holders(COLLECTION, s, &members(&all), 2).contains(&gone))
        .collect();
    assert!(!held.is_empty());
    assert_eq!(repaired, held);
}

#[test]
fn a_leaving_member_hands_over_then_leaves() {
    let mut rb = settled(0, &[0, 1, 2, 3], 2);
    let mine = rb.placement().shards_of(&0);
    assert!(mine.len() > 1);
    // Still a member to the others while it leaves; the leaver places without itself.
    assert_eq!(rb.handle(Input::Leave, T0), []);
    assert!(mine.iter().all(|&s| !rb.status(T0)[s as usize].wanted));
    let after = members(&[1, 2, 3]);
    for (i, &s) in mine.iter().enumerate() {
        let new = holders(COLLECTION, s, &after, 2);
        assert!(dropped(&rb.handle(holds(new[0], s, root(s)), T0)).is_empty());
        let mut expected = vec![Action::Drop { shard: s }];
        if i + 1 == mine.len() {
            expected.push(Action::Left);
        }
        assert_eq!(rb.handle(holds(new[1], s, root(s)), T0), expected);
    }
    assert!(rb.has_left());
    assert_eq!(rb.handle(roots(), T0), []);
    assert_eq!(rb.poll(T0.after(Duration::from_secs(60))), []);
    assert_eq!(rb.next_deadline(), None);

    // Holding nothing, a member leaves at once; a fetch running is waited for.
    let mut rb = Rb::new(9, COLLECTION.to_vec(), SHARDS, config(1, 1)).unwrap();
    rb.handle(Input::Members(members(&[9])), T0);
    let shard = fetched(&rb.handle(roots(), T0))[0];
    assert_eq!(rb.handle(Input::Leave, T0), []);
    assert_eq!(rb.handle(Input::FetchFailed { shard }, T0), [Action::Left]);
    let mut idle = Rb::new(9, COLLECTION.to_vec(), SHARDS, config(1, 1)).unwrap();
    assert_eq!(idle.handle(Input::Leave, T0), [Action::Left]);
}

#[test]
fn reconcile_on_a_root_mismatch_at_most_once_a_period() {
    let mut rb = Rb::new(0, COLLECTION.to_vec(), 2, config(2, 4)).unwrap();
    rb.handle(Input::Members(members(&[0, 1])), T0);
    // No head known: the two roots differ, neither is known current.
    rb.handle(Input::Fetched { shard: 0, root: 7 }, T0);
    let reconcile = || Action::Reconcile { shard: 0, peer: 1 };
    assert_eq!(rb.handle(holds(1, 0, 8), T0), [reconcile()]);
    let soon = T0.after(Duration::from_secs(1));
    assert_eq!(rb.handle(holds(1, 0, 9), soon), []);
    assert_eq!(rb.poll(soon), []);
    // The sweep a period on asks again; then not until the next.
    let refresh = T0.after(Duration::from_secs(4));
    assert_eq!(rb.next_deadline(), Some(refresh));
    assert_eq!(rb.poll(refresh), [Action::Announce { shard: 0, root: 7 }]);
    let sweep = rb.next_deadline().unwrap();
    assert_eq!(sweep, T0.after(Duration::from_secs(5)));
    assert_eq!(rb.poll(sweep), [reconcile()]);
    assert_eq!(rb.handle(holds(1, 0, 8), sweep), []);
    // Same root: nothing to reconcile. A peer that is not a member is not heard.
    let later = sweep.after(Duration::from_secs(5));
    rb.handle(holds(1, 0, 7), later);
    assert_eq!(rb.handle(holds(5, 0, 3), later), []);
    let swept = rb.poll(later);
    assert!(!swept.iter().any(|a| matches!(a, Action::Reconcile { .. })));
    // A head naming the peer's root: this member fetches it instead, the shard nobody
    // holds first.
    rb.handle(holds(1, 0, 8), later);
    let head = Input::Roots(vec![8, 8]);
    let fetches = rb.handle(head, later.after(Duration::from_secs(5)));
    let fetch = |shard| Action::Fetch { shard, root: 8 };
    assert_eq!(fetches, [fetch(1), fetch(0)]);
}

#[test]
fn fetches_are_bounded_and_a_failed_one_is_tried_again_later() {
    let mut rb = Rb::new(0, COLLECTION.to_vec(), 4, config(1, 2)).unwrap();
    rb.handle(Input::Members(members(&[0])), T0);
    assert_eq!(
        fetched(&rb.handle(Input::Roots(vec![100, 101, 102, 103]), T0)),
        [0, 1]
    );
    assert_eq!(rb.fetching(), 2);
    assert_eq!(
        fetched(&rb.handle(Input::FetchFailed { shard: 0 }, T0)),
        [2]
    );
    let retry = T0.after(Duration::from_secs(2));
    // Both slots are taken: the retry waits for a fetch to end, not for the clock.
    assert!(rb.next_deadline().is_none_or(|t| t > retry));
    assert_eq!(rb.poll(retry), []);
    assert!(rb.next_deadline().is_none_or(|t| t > retry));
    let got = rb.handle(
        Input::Fetched {
            shard: 1,
            root: 101,
        },
        retry,
    );
    assert_eq!(
        got[0],
        Action::Announce {
            shard: 1,
            root: 101
        }
    );
    assert_eq!(fetched(&got), [0]);
    assert_eq!(
        fetched(&rb.handle(
            Input::Fetched {
                shard: 2,
                root: 102
            },
            retry
        )),
        [3]
    );
}

/// A retry that is no longer needed (the shard moved away) leaves no deadline behind: one in
/// the past would have the caller poll again at once, forever.
#[test]
fn a_retry_that_is_no_longer_needed_leaves_no_deadline() {
    let mut rb = Rb::new(0, COLLECTION.to_vec(), 1, config(1, 2)).unwrap();
    rb.handle(Input::Members(members(&[0])), T0);
    assert_eq!(fetched(&rb.handle(Input::Roots(vec![100]), T0)), [0]);
    assert!(fetched(&rb.handle(Input::FetchFailed { shard: 0 }, T0)).is_empty());
    let retry = T0.after(Duration::from_secs(2));
    assert_eq!(rb.next_deadline(), Some(retry));
    // Another member takes the shard (placement over members 0 and 1 with replication 1
    // gives it to one of them; pick the member that is not 0).
    let other = (1..100)
        .find(|p| holders(COLLECTION, 0, &members(&[0, *p]), 1) == [*p])
        .unwrap();
    rb.handle(Input::Members(members(&[0, other])), T0);
    let later = retry.after(Duration::from_secs(1));
    assert!(fetched(&rb.poll(later)).is_empty());
    assert!(
        rb.next_deadline().is_none_or(|t| t > later),
        "{:?} is not after {later:?}",
        rb.next_deadline()
    );
}

#[test]
fn a_new_head_is_fetched_while_the_old_root_is_served() {
    let mut rb = settled(0, &[0, 1], 2);
    let next = Input::Roots((0..SHARDS).map(|s| root(s) + 1000).collect());
    let actions = rb.handle(next, T0);
    assert_eq!(actions.len(), SHARDS as usize);
    assert!(dropped(&actions).is_empty());
    let status = rb.status(T0);
    assert!(status
        .iter()
        .all(|s| s.held == Some(root(s.shard)) && s.fetching.is_some()));
    assert!(status.iter().all(|s| !s.is_current()));
    let done = rb.handle(
        Input::Fetched {
            shard: 3,
            root: 1103,
        },
        T0,
    );
    assert_eq!(
        done,
        [Action::Announce {
            shard: 3,
            root: 1103
        }]
    );
    assert!(rb.status(T0)[3].is_current());
}

#[test]
fn held_shards_are_announced_again_and_reports_expire() {
    let mut rb = settled(0, &[0, 1], 2);
    rb.handle(holds(1, 0, root(0)), T0);
    let status = &rb.status(T0)[0];
    assert_eq!(
        (status.holders, status.replication, status.wanted),
        (2, 2, true)
    );
    let again = T0.after(Duration::from_secs(4));
    assert_eq!(rb.next_deadline(), Some(again));
    let announced = rb.poll(again);
    assert_eq!(announced.len(), SHARDS as usize);
    assert!(announced
        .iter()
        .all(|a| matches!(a, Action::Announce { .. })));
    // Peer 1's report is believed for 10 s.
    assert_eq!(rb.status(T0.after(Duration::from_secs(10)))[0].holders, 1);
}

#[test]
fn a_bad_config_is_refused() {
    let zero = Config {
        max_fetches: 0,
        ..Config::default()
    };
    let err = Rb::new(0, Vec::new(), 1, zero).unwrap_err();
    assert_eq!(err, ConfigError::Zero("max_fetches"));
    let rare = Config {
        announce_every: Duration::from_secs(600),
        ..Config::default()
    };
    assert!(matches!(
        rare.validate(),
        Err(ConfigError::AnnounceTooRare { .. })
    ));
    assert_eq!(Config::default().validate(), Ok(()));
}

#[test]
fn a_placement_computed_by_the_caller_is_taken_as_is() {
    let all = members(&[0, 1, 2, 3]);
    let shared = Arc::new(placement::place(COLLECTION, SHARDS, &all, 2));
    let mut own = Rb::new(1, COLLECTION.to_vec(), SHARDS, config(2, 64)).unwrap();
    let mut lent = Rb::new(1, COLLECTION.to_vec(), SHARDS, config(2, 64)).unwrap();
    own.handle(roots(), T0);
    lent.handle(roots(), T0);
    let placed = Input::Placed {
        members: all.clone().into(),
        placement: shared.clone(),
    };
    assert_eq!(
        lent.handle(placed.clone(), T0),
        own.handle(Input::Members(all.clone()), T0)
    );
    assert!(Arc::ptr_eq(&lent.placement, &shared));
    // Leaving, it places without itself whatever it is lent.
    lent.handle(Input::Leave, T0);
    lent.handle(placed, T0);
    assert!(lent.placement().shards_of(&1).is_empty());
    assert_eq!(lent.placement().holders(0).len(), 2);
}

#[test]
fn a_shard_lost_behind_its_back_is_fetched_again_if_placed_here() {
    let mut rb = settled(1, &[1, 2, 3], 2);
    let placed: Vec<u32> = (0..SHARDS)
        .filter(|&s| holders(COLLECTION, s, &members(&[1, 2, 3]), 2).contains(&1))
        .collect();
    let shard = placed[0];
    let t = T0.after(Duration::from_millis(10));
    let actions = rb.handle(Input::Lost { shard }, t);
    assert_eq!(fetched(&actions), vec![shard]);
    assert!(!rb.status(t)[shard as usize].is_current());
    // A shard not placed here that is lost is simply not held any more.
    let other = (0..SHARDS).find(|s| !placed.contains(s)).unwrap();
    let actions = rb.handle(Input::Lost { shard: other }, t);
    assert!(fetched(&actions).is_empty() && dropped(&actions).is_empty());
    assert!(rb.status(t)[other as usize].held.is_none());
}
