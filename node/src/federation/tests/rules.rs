//! One example per rule of the planner.

use super::*;
use crate::federation::{
    peers::{DEFAULT_LATENCY, HEDGE_COST, HEDGE_CREDIT_START, HEDGE_EARN, MIN_SILENCE},
    plan::{DEADLINE, NO_HOLDER},
};

#[test]
fn this_node_comes_first_then_the_cheapest_peer() {
    let mut book = PeerBook::new();
    steady(&mut book, 1, 80);
    steady(&mut book, 3, 20);
    let mut p = Planner::new(
        query(
            &[
                (0, vec![peer(1), Holder::Local]),
                // Never heard from: the prior (50 ms) beats a known 80 ms.
                (1, vec![peer(1), peer(2)]),
                (2, vec![peer(1), peer(3)]),
            ],
            10,
            1_000,
        ),
        T0,
    );
    assert_eq!(p.next_deadline(), Some(T0));
    assert_eq!(
        sends(&p.poll(&mut book, T0)),
        [
            (RequestId(0), Holder::Local, vec![0], false),
            (RequestId(1), peer(2), vec![1], false),
            (RequestId(2), peer(3), vec![2], false),
        ]
    );
}

#[test]
fn the_shards_of_one_holder_go_in_one_request_and_load_spreads() {
    let mut book = PeerBook::new();
    let only_1: Vec<_> = (0..4).map(|s| (s, vec![peer(1)])).collect();
    let mut p = Planner::new(query(&only_1, 10, 1_000), T0);
    assert_eq!(
        sends(&p.poll(&mut book, T0)),
        [(RequestId(0), peer(1), vec![0, 1, 2, 3], false)]
    );

    // Two peers alike: each takes half the shards, so two requests in all.
    let both: Vec<_> = (0..4).map(|s| (s, vec![peer(2), peer(1)])).collect();
    let mut p = Planner::new(query(&both, 10, 1_000), T0);
    assert_eq!(
        sends(&p.poll(&mut book, T0)),
        [
            (RequestId(0), peer(1), vec![0, 2], false),
            (RequestId(1), peer(2), vec![1, 3], false),
        ]
    );
}

#[test]
fn a_slow_request_is_hedged_at_its_peers_p95() {
    let mut book = PeerBook::new();
    steady(&mut book, 1, 20);
    let mut p = Planner::new(query(&[(0, vec![peer(2), peer(1)])], 10, 1_000), T0);
    assert_eq!(
        sends(&p.poll(&mut book, T0)),
        [(RequestId(0), peer(1), vec![0], false)]
    );
    assert_eq!(book.hedge_credit(), HEDGE_CREDIT_START + HEDGE_EARN);
    assert_eq!(p.next_deadline(), Some(at(20)));
    assert!(p.poll(&mut book, at(19)).is_empty());
    assert_eq!(
        sends(&p.poll(&mut book, at(20))),
        [(RequestId(1), peer(2), vec![0], true)]
    );
    assert_eq!(
        book.hedge_credit(),
        HEDGE_CREDIT_START + HEDGE_EARN - HEDGE_COST
    );
    // The hedge answers first: the first request is cancelled.
    let out = p.handle(
        answer(RequestId(1), vec![found(0, 1, &[])]),
        &mut book,
        at(30),
    );
    assert_eq!(cancels(&out), [RequestId(0)]);
    assert!(p.is_done());
    let outcome = p.finish(at(30));
    assert_eq!(outcome.hedges, 1);
    assert_eq!(outcome.requests, 2);
    let answered = outcome.coverage[0].answered.clone().unwrap();
    assert_eq!(
        (answered.by, answered.hedged, answered.latency_ms),
        (peer(2), true, 10)
    );
    assert_eq!(outcome.coverage[0].tried, [peer(1), peer(2)]);
}

#[test]
fn hedge_delays_default_for_unknown_peers_and_have_a_floor() {
    let mut book = PeerBook::new();
    let mut p = Planner::new(query(&[(0, vec![peer(1), peer(2)])], 10, 1_000), T0);
    p.poll(&mut book, T0);
    assert_eq!(p.next_deadline(), Some(T0.after(DEFAULT_LATENCY)));

    steady(&mut book, 3, 1);
    let mut p = Planner::new(query(&[(0, vec![peer(3), peer(2)])], 10, 1_000), T0);
    p.poll(&mut book, T0);
    assert_eq!(p.next_deadline(), Some(at(5)));

    // A hedge that would fall at or after the deadline is not planned.
    let mut p = Planner::new(query(&[(0, vec![peer(1), peer(2)])], 10, 50), T0);
    p.poll(&mut book, T0);
    assert_eq!(p.next_deadline(), Some(at(50)));
}

#[test]
fn no_hedge_once_the_budget_is_spent() {
    let mut book = PeerBook::new();
    while book.spend_hedge() {}
    let mut p = Planner::new(query(&[(0, vec![peer(1), peer(2)])], 10, 1_000), T0);
    p.poll(&mut book, T0);
    assert!(p.poll(&mut book, at(50)).is_empty());
    assert_eq!(p.next_deadline(), Some(at(1_000)));
    p.handle(
        answer(RequestId(0), vec![found(0, 1, &[])]),
        &mut book,
        at(60),
    );
    assert_eq!(p.finish(at(60)).hedges, 0);
}

#[test]
fn a_shard_fails_over_on_not_held_and_on_a_failed_request() {
    let mut book = PeerBook::new();
    let mut p = Planner::new(
        query(&[(0, vec![peer(1), peer(2), peer(3)])], 10, 1_000),
        T0,
    );
    assert_eq!(sends(&p.poll(&mut book, T0))[0].1, peer(1));
    let credit = book.hedge_credit();
    let out = p.handle(
        answer(RequestId(0), vec![refused(0, ErrorCode::NotHeld)]),
        &mut book,
        at(10),
    );
    assert_eq!(sends(&out), [(RequestId(1), peer(2), vec![0], false)]);
    let out = p.handle(failed(RequestId(1), "could not connect"), &mut book, at(20));
    assert_eq!(sends(&out), [(RequestId(2), peer(3), vec![0], false)]);
    assert_eq!(book.hedge_credit(), credit, "failovers spend no budget");
    p.handle(
        answer(RequestId(2), vec![found(0, 1, &[])]),
        &mut book,
        at(25),
    );
    let outcome = p.finish(at(25));
    assert_eq!(
        (outcome.failovers, outcome.hedges, outcome.requests),
        (2, 0, 3)
    );
    let report = &outcome.coverage[0];
    assert_eq!(report.tried, [peer(1), peer(2), peer(3)]);
    assert_eq!(report.failovers, 2);
    assert_eq!(report.answered.as_ref().unwrap().by, peer(3));
    // not_held is no fault of the peer's health; a failed request is.
    let r = book.report(at(25));
    assert_eq!((r[0].peer, r[0].failures, r[0].answers), (1, 0, 1));
    assert_eq!((r[1].peer, r[1].failures), (2, 1));
}

/// A planner of shards 0, 1 and 2, held by peer 1 (the cheapest in `book`) and also by peer
/// 2, peer 3 and nobody else, with its plan sent: all three to peer 1, request 0.
fn three_shards_sent_to_peer_1(book: &mut PeerBook<Peer>, deadline: u64) -> Planner<Peer> {
    let mut p = Planner::new(
        query(
            &[
                (0, vec![peer(1), peer(2)]),
                (1, vec![peer(1), peer(3)]),
                (2, vec![peer(1)]),
            ],
            10,
            deadline,
        ),
        T0,
    );
    assert_eq!(
        sends(&p.poll(book, T0)),
        [(RequestId(0), peer(1), vec![0, 1, 2], false)]
    );
    p
}

#[test]
fn a_request_failing_fails_over_each_shard_to_its_own_next_holder() {
    let mut book = PeerBook::new();
    steady(&mut book, 1, 1);
    let mut p = three_shards_sent_to_peer_1(&mut book, 1_000);
    let out = p.handle(failed(RequestId(0), "stream reset"), &mut book, at(3));
    assert_eq!(
        sends(&out),
        [
            (RequestId(1), peer(2), vec![0], false),
            (RequestId(2), peer(3), vec![1], false),
        ]
    );
    let outcome = p.finish(at(1_000));
    assert_eq!(
        outcome.coverage[2].missing.as_deref(),
        Some("every holder failed: 1: stream reset")
    );
    assert_eq!(outcome.failovers, 2);
}

#[test]
fn bad_request_is_not_retried() {
    let mut book = PeerBook::new();
    let mut p = Planner::new(query(&[(0, vec![peer(1), peer(2)])], 10, 1_000), T0);
    p.poll(&mut book, T0);
    let out = p.handle(
        answer(RequestId(0), vec![refused(0, ErrorCode::BadRequest)]),
        &mut book,
        at(5),
    );
    assert!(sends(&out).is_empty());
    assert!(p.is_done());
    let outcome = p.finish(at(5));
    assert_eq!(
        outcome.coverage[0].missing.as_deref(),
        Some("bad_request from 1: bad_request here")
    );
    assert_eq!(book.report(at(5))[0].failures, 0);
}

#[test]
fn a_shard_every_holder_fails_is_missing_with_their_errors() {
    let mut book = PeerBook::new();
    let mut p = Planner::new(
        query(&[(0, vec![peer(1), peer(2)]), (1, vec![])], 10, 1_000),
        T0,
    );
    p.poll(&mut book, T0);
    p.handle(
        answer(RequestId(0), vec![refused(0, ErrorCode::Busy)]),
        &mut book,
        at(5),
    );
    let out = p.handle(failed(RequestId(1), "timed out"), &mut book, at(9));
    assert!(out.is_empty());
    assert!(p.is_done());
    let outcome = p.finish(at(9));
    assert_eq!(
        outcome.coverage[0].missing.as_deref(),
        Some("every holder failed: 1: busy: busy here; 2: timed out")
    );
    assert_eq!(outcome.coverage[1].missing.as_deref(), Some(NO_HOLDER));
    assert!(outcome.hits.is_empty());
    assert!(!outcome.is_complete());
}

#[test]
fn the_breaker_skips_a_peer_while_another_holder_exists() {
    let mut book = PeerBook::new();
    steady(&mut book, 1, 5);
    for _ in 0..3 {
        book.failed(&1, T0);
    }
    assert!(book.is_open(&1, T0));
    let mut p = Planner::new(
        query(
            &[(0, vec![peer(1), peer(2)]), (1, vec![peer(1)])],
            10,
            1_000,
        ),
        T0,
    );
    // 1 is the faster, but open: shard 0 goes to 2; shard 1 has no one else.
    assert_eq!(
        sends(&p.poll(&mut book, T0)),
        [
            (RequestId(0), peer(2), vec![0], false),
            (RequestId(1), peer(1), vec![1], false),
        ]
    );
    // No hedge goes to an open peer.
    assert!(sends(&p.poll(&mut book, at(50))).is_empty());
}

#[test]
fn a_newer_head_wins_and_an_older_late_answer_is_ignored() {
    let run = |first: u64, second: u64| {
        let mut book = PeerBook::new();
        let mut p = Planner::new(query(&[(0, vec![peer(1), peer(2)])], 10, 1_000), T0);
        p.poll(&mut book, T0);
        assert_eq!(sends(&p.poll(&mut book, at(50))).len(), 1);
        let out = p.handle(
            answer(RequestId(0), vec![found(0, first, &[(1, 0.5)])]),
            &mut book,
            at(60),
        );
        assert_eq!(cancels(&out), [RequestId(1)]);
        assert!(p.is_done());
        // The cancelled hedge answers all the same.
        p.handle(
            answer(RequestId(1), vec![found(0, second, &[(2, 0.25)])]),
            &mut book,
            at(70),
        );
        assert_eq!(book.latency(&2), Some(ms(20)), "late answers count");
        p.finish(at(70))
    };
    let newer = run(5, 7);
    let kept = newer.coverage[0].answered.clone().unwrap();
    assert_eq!(
        (kept.by, kept.seq, kept.root),
        (peer(2), Some(7), Some(root(0, 7)))
    );
    assert_eq!(newer.hits[0].hit.id, EntryId::Int(2));
    assert_eq!(newer.hits[0].from, peer(2));

    let older = run(5, 4);
    let kept = older.coverage[0].answered.clone().unwrap();
    assert_eq!((kept.by, kept.seq), (peer(1), Some(5)));
    assert_eq!(older.hits[0].hit.id, EntryId::Int(1));
}

#[test]
fn the_deadline_gives_up_the_shards_still_out() {
    let mut book = PeerBook::new();
    let mut p = Planner::new(
        query(&[(0, vec![Holder::Local]), (1, vec![peer(1)])], 10, 100),
        T0,
    );
    let plan = sends(&p.poll(&mut book, T0));
    assert_eq!(plan.len(), 2);
    p.handle(
        answer(RequestId(0), vec![found(0, 1, &[])]),
        &mut book,
        at(2),
    );
    // Peer 1's hedge time passes with nobody to hedge to.
    assert_eq!(p.next_deadline(), Some(at(50)));
    assert!(p.poll(&mut book, at(50)).is_empty());
    assert_eq!(p.next_deadline(), Some(at(100)));
    let out = p.poll(&mut book, at(100));
    assert_eq!(
        out,
        [Action::Cancel {
            request: RequestId(1)
        }]
    );
    assert!(p.is_done());
    assert_eq!(p.next_deadline(), None);
    // Out twice its hedge delay: a timeout of its peer.
    assert_eq!(book.report(at(100))[0].failures, 1);
    // Nothing is sent after the deadline, whatever comes.
    assert!(p
        .handle(failed(RequestId(1), "late"), &mut book, at(120))
        .is_empty());
    let outcome = p.finish(at(120));
    assert_eq!(outcome.coverage[0].missing, None);
    assert_eq!(outcome.coverage[1].missing.as_deref(), Some(DEADLINE));
    assert_eq!(outcome.coverage[1].tried, [peer(1)]);

    // A planner first polled at its deadline sends nothing.
    let mut p = Planner::new(query(&[(0, vec![peer(1)])], 10, 0), T0);
    assert!(p.poll(&mut book, T0).is_empty());
    assert!(p.is_done());
    assert_eq!(p.finish(T0).coverage[0].missing.as_deref(), Some(DEADLINE));
}

#[test]
fn a_silent_request_fails_its_shards_over_once_the_budget_is_spent() {
    let mut book = PeerBook::new();
    // One hedge's credit in all, once the plan has earned its share.
    while book.spend_hedge() {}
    while book.hedge_credit() + HEDGE_EARN < HEDGE_COST {
        book.earn_hedge();
    }
    steady(&mut book, 1, 20);
    let mut p = three_shards_sent_to_peer_1(&mut book, 30_000);
    // Peer 1 never answers (gone, its stream never opened). Its p95 passes: one hedge is
    // all the budget allows, so shard 1 stays with peer 1.
    assert_eq!(
        sends(&p.poll(&mut book, at(20))),
        [(RequestId(1), peer(2), vec![0], true)]
    );
    assert_eq!(book.hedge_credit(), 0);
    // At its silence limit (ten times 20 ms, at least a second) shard 1 is asked of its
    // next holder without credit; shard 2 has none and waits for peer 1; shard 0's hedge
    // is still out.
    let limit = MIN_SILENCE.as_millis() as u64;
    assert_eq!(p.next_deadline(), Some(at(limit)));
    assert!(p.poll(&mut book, at(limit - 1)).is_empty());
    let out = p.poll(&mut book, at(limit));
    assert_eq!(sends(&out), [(RequestId(2), peer(3), vec![1], false)]);
    assert!(cancels(&out).is_empty(), "the silent request stays out");
    assert_eq!(book.hedge_credit(), 0, "a failover spends no budget");
    assert_eq!(book.report(at(limit))[0].failures, 1);
    // Its silence is not timed again: the next timer is the hedge's own limit.
    assert_eq!(
        p.next_deadline(),
        Some(at(20).after(book.silence_limit(&peer(2))))
    );
    p.handle(
        answer(RequestId(1), vec![found(0, 1, &[(1, 0.1)])]),
        &mut book,
        at(limit + 5),
    );
    p.handle(
        answer(RequestId(2), vec![found(1, 1, &[(2, 0.2)])]),
        &mut book,
        at(limit + 10),
    );
    assert!(!p.is_done(), "shard 2 still waits for peer 1");
    // Peer 1 answers after all: its answer counts for the shard only it holds.
    let out = p.handle(
        answer(
            RequestId(0),
            vec![found(0, 1, &[]), found(1, 1, &[]), found(2, 1, &[(3, 0.3)])],
        ),
        &mut book,
        at(limit + 500),
    );
    assert!(sends(&out).is_empty());
    assert!(p.is_done());
    let outcome = p.finish(at(limit + 500));
    let by: Vec<_> = outcome
        .coverage
        .iter()
        .map(|c| c.answered.as_ref().map(|a| a.by.clone()))
        .collect();
    assert_eq!(by, [Some(peer(2)), Some(peer(3)), Some(peer(1))]);
    assert_eq!(outcome.coverage[1].tried, [peer(1), peer(3)]);
    assert_eq!(outcome.coverage[1].failovers, 1);
    // Every shard's hit is merged, the highest score first.
    assert_eq!(
        outcome.hits.iter().map(|h| h.shard).collect::<Vec<_>>(),
        [2, 1, 0]
    );
}

#[test]
fn a_failure_at_the_deadline_is_not_failed_over() {
    let mut book = PeerBook::new();
    let mut p = Planner::new(query(&[(0, vec![peer(1), peer(2)])], 10, 30), T0);
    p.poll(&mut book, T0);
    let out = p.handle(failed(RequestId(0), "reset"), &mut book, at(30));
    assert!(sends(&out).is_empty());
    assert!(p.is_done());
    assert_eq!(
        p.finish(at(30)).coverage[0].missing.as_deref(),
        Some(DEADLINE)
    );
}

#[test]
fn an_answer_naming_a_shard_not_asked_is_a_failure_of_its_peer() {
    let mut book = PeerBook::new();
    let mut p = Planner::new(
        query(&[(0, vec![peer(1)]), (1, vec![peer(2)])], 10, 1_000),
        T0,
    );
    p.poll(&mut book, T0);
    p.handle(
        answer(
            RequestId(0),
            vec![found(0, 1, &[(1, 0.5)]), found(1, 1, &[(9, 9.0)])],
        ),
        &mut book,
        at(5),
    );
    p.handle(
        answer(RequestId(1), vec![found(1, 1, &[(2, 0.1)])]),
        &mut book,
        at(6),
    );
    let r = book.report(at(6));
    assert_eq!((r[0].failures, r[0].answers), (1, 0));
    assert_eq!((r[1].failures, r[1].answers), (0, 1));
    let outcome = p.finish(at(6));
    let ids: Vec<_> = outcome.hits.iter().map(|h| h.hit.id.clone()).collect();
    assert_eq!(ids, [EntryId::Int(1), EntryId::Int(2)]);
}

#[test]
fn an_answer_that_leaves_a_shard_out_fails_it_over() {
    let mut book = PeerBook::new();
    let mut p = Planner::new(
        query(
            &[(0, vec![peer(1)]), (1, vec![peer(1), peer(2)])],
            10,
            1_000,
        ),
        T0,
    );
    steady(&mut book, 1, 1);
    assert_eq!(sends(&p.poll(&mut book, T0)).len(), 1);
    let out = p.handle(
        answer(RequestId(0), vec![found(0, 1, &[])]),
        &mut book,
        at(5),
    );
    assert_eq!(sends(&out), [(RequestId(1), peer(2), vec![1], false)]);
    assert_eq!(book.report(at(5))[0].failures, 1);
}

#[test]
fn a_refused_request_fails_over_all_its_shards() {
    let mut book = PeerBook::new();
    let mut p = Planner::new(
        query(
            &[(0, vec![peer(1), peer(2)]), (1, vec![peer(1), peer(2)])],
            10,
            1_000,
        ),
        T0,
    );
    steady(&mut book, 1, 1);
    assert_eq!(sends(&p.poll(&mut book, T0)).len(), 1);
    let out = p.handle(
        Input::Answered {
            request: RequestId(0),
            answer: SearchAnswer::refused(ShardError::new(ErrorCode::RateLimited, "slow down")),
        },
        &mut book,
        at(1),
    );
    assert_eq!(sends(&out), [(RequestId(1), peer(2), vec![0, 1], false)]);
    assert_eq!(book.report(at(1))[0].consecutive_failures, 1);
}

#[test]
fn merged_hits_name_their_shard_holder_and_head() {
    let mut book = PeerBook::new();
    let mut p = Planner::new(
        query(
            &[
                (0, vec![Holder::Local]),
                (1, vec![peer(1)]),
                (2, vec![peer(2)]),
            ],
            5,
            1_000,
        ),
        T0,
    );
    p.poll(&mut book, T0);
    p.handle(
        answer(RequestId(0), vec![found(0, 3, &[(1, 0.9), (2, 0.5)])]),
        &mut book,
        at(1),
    );
    // Shard 1 names point 2 too, from a newer head: its hit replaces shard 0's.
    p.handle(
        answer(RequestId(1), vec![found(1, 4, &[(3, 0.7), (2, 0.6)])]),
        &mut book,
        at(2),
    );
    p.handle(
        answer(RequestId(2), vec![found(2, 3, &[(4, 0.7), (5, 0.1)])]),
        &mut book,
        at(3),
    );
    let outcome = p.finish(at(3));
    let got: Vec<_> = outcome
        .hits
        .iter()
        .map(|h| {
            (
                h.hit.id.clone(),
                h.hit.score,
                h.shard,
                h.from.clone(),
                h.seq,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (EntryId::Int(1), 0.9, 0, Holder::Local, Some(3)),
            // A tie: shard order.
            (EntryId::Int(3), 0.7, 1, peer(1), Some(4)),
            (EntryId::Int(4), 0.7, 2, peer(2), Some(3)),
            // Named by shards 0 and 1: the newer head's hit.
            (EntryId::Int(2), 0.6, 1, peer(1), Some(4)),
            (EntryId::Int(5), 0.1, 2, peer(2), Some(3)),
        ]
    );
    assert_eq!(outcome.hits[0].root, Some(root(0, 3)));
    assert_eq!(outcome.hits[0].hit.leaf, Some(root(u32::MAX, 1)));
    assert!(outcome.is_complete());
}
