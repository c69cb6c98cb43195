//! The peer book: latency estimates, the circuit breaker, the hedging budget, its bounds.

use super::*;
use crate::federation::peers::{
    FIRST_BACKOFF, FORGET_AFTER, HEDGE_CREDIT_MAX, HEDGE_CREDIT_START, MAX_PEERS, TRIAL_TIMEOUT,
};

#[test]
fn latency_is_estimated_like_a_round_trip() {
    let mut book = PeerBook::<Peer>::new();
    assert_eq!(book.latency_p95(&1), None);
    book.answered(&1, ms(20), T0);
    assert_eq!(
        (book.latency(&1), book.latency_p95(&1)),
        (Some(ms(20)), Some(ms(40)))
    );
    // Deviation 10 → 7.5 ms, the mean stays.
    book.answered(&1, ms(20), T0);
    assert_eq!(book.latency_p95(&1), Some(ms(35)));
    // A slow answer moves the mean by an eighth of the gap, the deviation by a quarter.
    book.answered(&1, ms(100), T0);
    assert_eq!(book.latency(&1), Some(ms(30)));
    assert_eq!(
        book.latency_p95(&1),
        Some(Duration::from_micros(30_000 + 2 * 25_625))
    );
}

#[test]
fn the_breaker_opens_after_three_failures_and_half_opens_for_one_trial() {
    let mut book = PeerBook::new();
    steady(&mut book, 1, 5);
    book.failed(&1, T0);
    book.failed(&1, T0);
    assert!(!book.is_open(&1, T0));
    book.failed(&1, T0);
    assert!(book.is_open(&1, T0));
    assert!(book.is_open(&1, at(999)));
    assert_eq!(book.report(T0)[0].open_until, Some(T0.after(FIRST_BACKOFF)));

    // Half-open: the first search to ask it sends the trial; the next one goes elsewhere.
    let t = at(1_000);
    assert!(!book.is_open(&1, t));
    let holders = [(0, vec![peer(2), peer(1)])];
    let mut first = Planner::new(query(&holders, 10, 5_000), t);
    assert_eq!(sends(&first.poll(&mut book, t))[0].1, peer(1));
    assert!(book.is_open(&1, t));
    let mut second = Planner::new(query(&holders, 10, 5_000), t);
    assert_eq!(sends(&second.poll(&mut book, t))[0].1, peer(2));

    // The trial fails: open again, twice as long, less up to a fifth of jitter.
    first.handle(failed(RequestId(0), "reset"), &mut book, at(1_010));
    let until = book.report(at(1_010))[0].open_until.unwrap();
    let length = until.since(at(1_010));
    assert!(length >= ms(1_600) && length <= ms(2_000), "{length:?}");
    assert!(book.is_open(&1, Millis(until.0 - 1)));
    assert!(!book.is_open(&1, until));

    // A trial nobody hears back from holds the others off only so long.
    book.sent(&1, until);
    assert!(book.is_open(&1, until));
    assert!(!book.is_open(&1, until.after(TRIAL_TIMEOUT)));

    // An answer closes it, and the back-off starts over.
    book.answered(&1, ms(5), at(3_020));
    assert!(!book.is_open(&1, at(3_020)));
    assert_eq!(book.report(at(3_020))[0].consecutive_failures, 0);
    for _ in 0..3 {
        book.failed(&1, at(4_000));
    }
    assert_eq!(
        book.report(at(4_000))[0].open_until,
        Some(at(4_000).after(FIRST_BACKOFF))
    );
}

#[test]
fn failures_of_requests_sent_before_it_opened_do_not_lengthen_it() {
    let mut book = PeerBook::<Peer>::new();
    for _ in 0..3 {
        book.failed(&1, T0);
    }
    book.failed(&1, at(500));
    assert!(!book.is_open(&1, at(1_000)));
}

#[test]
fn the_back_off_doubles_up_to_a_minute() {
    let mut book = PeerBook::<Peer>::new();
    let mut now = T0;
    for _ in 0..3 {
        book.failed(&1, now);
    }
    let mut open = Vec::new();
    for _ in 0..8 {
        let until = book.report(now)[0].open_until.unwrap();
        open.push(until.since(now));
        now = until;
        book.failed(&1, now);
    }
    // The first opening is exact; each later one is its doubled length less up to a fifth.
    assert_eq!(open[0], ms(1_000));
    for (length, nominal) in open[1..].iter().zip([2, 4, 8, 16, 32, 60, 60]) {
        let nominal = ms(nominal * 1_000);
        assert!(
            *length <= nominal && *length >= nominal.mul_f64(0.8),
            "{length:?} of {nominal:?}"
        );
    }
    // The first opening, and one more after each of the eight failed trials.
    assert_eq!(book.breakers_opened(), 9);
}

#[test]
fn a_penalty_bans_the_peer_whatever_it_answers() {
    use crate::federation::peers::{LIAR_BAN, MAX_LIAR_BAN};
    let mut book = PeerBook::<Peer>::new();
    book.answered(&1, ms(5), T0);
    book.penalise(&1, T0);
    assert!(book.is_open(&1, T0));
    // Answers (a forger answers everything) do not lift the ban.
    let later = T0.after(ms(120_000));
    book.answered(&1, ms(5), later);
    assert!(book.is_open(&1, later));
    let almost = T0.after(LIAR_BAN - ms(1));
    assert!(book.is_open(&1, almost));
    assert!(!book.is_open(&1, T0.after(LIAR_BAN)));
    // A second lie bans it for twice as long; the ban never passes the longest.
    let again = T0.after(LIAR_BAN);
    book.penalise(&1, again);
    assert!(book.is_open(&1, again.after(2 * LIAR_BAN - ms(1))));
    assert!(!book.is_open(&1, again.after(2 * LIAR_BAN)));
    for n in 0..20 {
        book.penalise(&2, T0.after(ms(n)));
    }
    assert!(!book.is_open(&2, T0.after(ms(19) + MAX_LIAR_BAN)));
    let mut book = PeerBook::<Peer>::new();
    book.answered(&1, ms(5), T0);
    book.penalise(&1, T0);
    let r = &book.report(T0)[0];
    assert_eq!(
        (r.penalties, r.consecutive_failures, r.recent_failures),
        (1, 3, 3.0)
    );
}

#[test]
fn recent_failures_fade() {
    let mut book = PeerBook::<Peer>::new();
    book.failed(&1, T0);
    assert_eq!(book.cost(&1, T0), 2.0 * book.cost(&2, T0));
    let later = T0.after(crate::federation::peers::FAILURE_HALF_LIFE);
    assert_eq!(book.report(later)[0].recent_failures, 0.5);
    assert_eq!(book.cost(&1, later), 1.5 * book.cost(&2, later));
}

#[test]
fn the_hedge_budget_earns_and_spends() {
    let mut book = PeerBook::<Peer>::new();
    assert_eq!(book.hedge_credit(), HEDGE_CREDIT_START);
    assert!(book.spend_hedge() && book.spend_hedge() && book.spend_hedge());
    assert!(!book.spend_hedge());
    for _ in 0..10 {
        book.earn_hedge();
    }
    assert!(book.spend_hedge());
    assert!(!book.spend_hedge());
    for _ in 0..1_000 {
        book.earn_hedge();
    }
    assert_eq!(book.hedge_credit(), HEDGE_CREDIT_MAX);
}

#[test]
fn the_book_forgets_idle_peers_then_the_least_recent() {
    let mut book = PeerBook::<u32>::new();
    let n = MAX_PEERS as u32;
    for p in 0..n {
        book.answered(&p, ms(1), Millis(u64::from(p)));
    }
    assert_eq!(book.len(), MAX_PEERS);
    // All of them idle long enough: a newcomer makes everyone else go.
    let late = Millis(u64::from(n)).after(FORGET_AFTER);
    book.failed(&n, late);
    assert_eq!(book.len(), 1);

    for p in 0..n - 1 {
        book.answered(&p, ms(1), late.after(ms(u64::from(p))));
    }
    assert_eq!(book.len(), MAX_PEERS);
    // None idle: the eighth least recently heard from go.
    book.failed(&(n + 1), late.after(ms(u64::from(n))));
    assert_eq!(book.len(), MAX_PEERS - MAX_PEERS / 8 + 1);
    assert!(book.latency(&0).is_none());
    assert!(book.latency(&(n - 2)).is_some());
}

#[test]
fn an_unreachable_peer_opens_its_breaker_and_is_reported_skipped_without_being_waited_on() {
    let mut book = PeerBook::<Peer>::new();
    let only_1 = [(0, vec![peer(1)])];
    // Three searches whose only holder cannot be reached.
    for i in 0..3 {
        let t = at(i * 10);
        let mut p = Planner::new(query(&only_1, 10, 5_000), t);
        let sent = sends(&p.poll(&mut book, t));
        assert_eq!(sent[0].1, peer(1));
        p.handle(failed(sent[0].0, "connection refused"), &mut book, t);
        let outcome = p.finish(t);
        assert!(outcome.coverage[0].skipped.is_empty());
    }
    assert!(book.is_open(&1, at(30)));
    assert_eq!(book.breakers_opened(), 1);

    // A search with another holder asks that one first, and says which peer it passed over.
    let both = [(0, vec![peer(1), peer(2)])];
    let t = at(40);
    let mut p = Planner::new(query(&both, 10, 5_000), t);
    let sent = sends(&p.poll(&mut book, t));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, peer(2));
    p.handle(
        answer(sent[0].0, vec![found(0, 1, &[(7, 0.9)])]),
        &mut book,
        at(45),
    );
    let outcome = p.finish(at(45));
    assert_eq!(outcome.coverage[0].tried, [peer(2)]);
    assert_eq!(outcome.coverage[0].skipped, [peer(1)]);
    assert!(outcome.is_complete());

    // When it is the last holder left it is still asked, and not reported skipped.
    let mut p = Planner::new(query(&only_1, 10, 5_000), t);
    let sent = sends(&p.poll(&mut book, t));
    assert_eq!(sent[0].1, peer(1));
    p.handle(failed(sent[0].0, "connection refused"), &mut book, t);
    let outcome = p.finish(t);
    assert!(outcome.coverage[0].skipped.is_empty());
    assert_eq!(outcome.coverage[0].tried, [peer(1)]);
}
