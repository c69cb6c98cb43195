//! The follow core's examples and properties, on a virtual clock with small integers for
//! collections and peers; a head is its own sequence number.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

type Core = Follow<u8, u8, u64>;
type Act = Action<u8, u8, u64>;

const T0: Millis = Millis(5_000);

fn head(id: u8, seq: u64, from: u8, signed: bool, local: Option<Local>) -> Input<u8, u8, u64> {
    Input::Head {
        id,
        seq,
        from,
        signed,
        local,
        head: seq,
    }
}

const REPLICA_AT_3: Option<Local> = Some(Local {
    seq: 3,
    writable: false,
});

fn verdict(from: u8, verdict: Verdict) -> Act {
    Action::Verdict { from, verdict }
}

fn catch_up(id: u8, seq: u64, from: u8) -> Act {
    Action::CatchUp {
        id,
        seq,
        head: seq,
        from,
    }
}

#[test]
fn heads_are_judged_and_news_is_caught_up_to() {
    let mut f = Core::default();
    let mut judge = |input| f.handle(input, T0);
    assert_eq!(
        judge(Input::Malformed { from: 1 }),
        [verdict(1, Verdict::Reject)]
    );
    // Of a collection not held here: not ours to judge.
    assert_eq!(
        judge(head(7, 9, 1, false, None)),
        [verdict(1, Verdict::Ignore)]
    );
    // Badly signed: rejected, which lowers the sender's score.
    assert_eq!(
        judge(head(1, 9, 2, false, REPLICA_AT_3)),
        [verdict(2, Verdict::Reject)]
    );
    assert_eq!(
        judge(head(1, 3, 2, true, REPLICA_AT_3)),
        [verdict(2, Verdict::Ignore)]
    );
    assert_eq!(
        judge(head(1, 5, 2, true, REPLICA_AT_3)),
        [verdict(2, Verdict::Accept), catch_up(1, 5, 2)]
    );
    // During the catch-up, the same head again starts nothing; a newer one waits.
    assert_eq!(
        judge(head(1, 5, 3, true, REPLICA_AT_3)),
        [verdict(3, Verdict::Accept)]
    );
    assert_eq!(
        judge(head(1, 6, 3, true, REPLICA_AT_3)),
        [verdict(3, Verdict::Accept)]
    );
    assert_eq!(
        judge(head(1, 8, 4, true, REPLICA_AT_3)),
        [verdict(4, Verdict::Accept)]
    );
    assert_eq!(
        judge(Input::CatchUpEnded { id: 1, moved: true }),
        [catch_up(1, 8, 4)]
    );
    // A writer has nothing to follow.
    let writer = Some(Local {
        seq: 3,
        writable: true,
    });
    assert_eq!(
        judge(head(2, 5, 2, true, writer)),
        [verdict(2, Verdict::Accept)]
    );
    assert_eq!(f.catching_up(), 1);
}

#[test]
fn states_follow_what_was_seen() {
    let mut f = Core::default();
    let status = |f: &Core, seq, writable| f.status(&1, seq, writable, T0);
    assert_eq!(status(&f, 3, true).state, State::Writer);
    assert_eq!(status(&f, 3, false).state, State::CaughtUp);
    f.handle(Input::Seen { id: 1, seq: 5 }, T0);
    let r = status(&f, 3, false);
    assert_eq!((r.state, r.lag), (State::Following, 2));
    let progress = Some((30, 120));
    f.handle(Input::Syncing { id: 1, progress }, T0);
    let r = status(&f, 3, false);
    assert_eq!((r.state, r.sync_percent), (State::Syncing, Some(25.0)));
    f.handle(
        Input::Syncing {
            id: 1,
            progress: None,
        },
        T0,
    );
    assert_eq!(status(&f, 3, false).state, State::Following);
    assert_eq!(status(&f, 5, false).state, State::CaughtUp);
    // An older head seen later does not lower the newest.
    f.handle(Input::Seen { id: 1, seq: 4 }, T0);
    assert_eq!(status(&f, 3, false).lag, 2);
    assert_eq!(status(&f, 3, false).announced_ago, None);
    f.handle(Input::Announced { id: 1 }, T0);
    let later = T0.after(Duration::from_secs(7));
    assert_eq!(
        f.status(&1, 3, false, later).announced_ago,
        Some(Duration::from_secs(7))
    );
    assert!(f.was_announced(&1));
    f.handle(Input::Forget { id: 1 }, T0);
    assert_eq!(status(&f, 3, false).lag, 0);
    assert!(!f.was_announced(&1));
}

#[test]
fn one_count_at_a_time_and_not_before_it_is_due() {
    let mut f = Core::default();
    let count = [Action::CountProviders { id: 1 }];
    assert_eq!(f.handle(Input::Read { id: 1 }, T0), count);
    assert!(
        f.handle(Input::Read { id: 1 }, T0).is_empty(),
        "a count runs"
    );
    let counts = Some(vec![2, 1]);
    f.handle(Input::Counted { id: 1, counts }, T0);
    let almost = T0.after(COUNT_EVERY - Duration::from_millis(1));
    assert!(f.handle(Input::Read { id: 1 }, almost).is_empty());
    assert_eq!(f.status(&1, 0, true, T0).providers, Some(vec![2, 1]));
    // A failed count keeps the last numbers and lets the next read try again.
    let due = T0.after(COUNT_EVERY);
    assert_eq!(f.handle(Input::Read { id: 1 }, due), count);
    f.handle(
        Input::Counted {
            id: 1,
            counts: None,
        },
        due,
    );
    assert_eq!(f.status(&1, 0, true, due).providers, Some(vec![2, 1]));
    assert_eq!(f.handle(Input::Read { id: 1 }, due), count);
}

/// One step of a random run.
#[derive(Debug, Clone)]
enum Step {
    Head {
        id: u8,
        seq: u64,
        from: u8,
        signed: bool,
        held: bool,
    },
    Malformed(u8),
    /// The catch-up picked among those running ends.
    End(prop::sample::Index, bool),
    Forget(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..8, 0u64..30, 0u8..6, proptest::bool::weighted(0.85), proptest::bool::weighted(0.95))
            .prop_map(|(id, seq, from, signed, held)| Step::Head { id, seq, from, signed, held }),
        1 => (0u8..6).prop_map(Step::Malformed),
        4 => (any::<prop::sample::Index>(), proptest::bool::weighted(0.8)).prop_map(|(i, m)| Step::End(i, m)),
        1 => (0u8..8).prop_map(Step::Forget),
    ]
}

/// The world the core's actions are checked against: each replica's sequence and the
/// catch-ups running.
struct World {
    /// Collection 0 is written here.
    local: HashMap<u8, u64>,
    running: Vec<(u8, u64)>,
    /// The newest valid head each replica should end up at.
    target: HashMap<u8, u64>,
}

impl World {
    fn new(start: &[u64]) -> Self {
        let local: HashMap<u8, u64> = (0..8u8).zip(start.iter().copied()).collect();
        Self {
            target: local.clone(),
            local,
            running: Vec::new(),
        }
    }

    fn check(&mut self, f: &Core, input: &Input<u8, u8, u64>, actions: Vec<Act>) {
        if matches!(input, Input::Head { .. } | Input::Malformed { .. }) {
            let from = match input {
                Input::Head { from, .. } | Input::Malformed { from } => *from,
                _ => unreachable!(),
            };
            assert!(
                matches!(actions.first(), Some(Action::Verdict { from: f, .. }) if *f == from),
                "the verdict comes first, on the sender: {actions:?}"
            );
            let verdicts = actions
                .iter()
                .filter(|a| matches!(a, Action::Verdict { .. }))
                .count();
            assert_eq!(verdicts, 1, "one verdict a message");
        }
        if let Input::Head { signed: false, .. } | Input::Malformed { .. } = input {
            if !matches!(input, Input::Head { local: None, .. }) {
                assert_eq!(actions.len(), 1, "an invalid head starts nothing");
                assert!(matches!(
                    actions[0],
                    Action::Verdict {
                        verdict: Verdict::Reject,
                        ..
                    }
                ));
            }
        }
        for action in actions {
            if let Action::CatchUp { id, seq, head, .. } = action {
                assert_eq!(head, seq);
                assert!(id != 0, "a writer follows nothing");
                assert!(
                    seq > self.local[&id],
                    "catching {id} up to {seq}, no newer than the {} it holds",
                    self.local[&id]
                );
                assert!(
                    self.running.iter().all(|(r, _)| *r != id),
                    "two catch-ups of {id} at once"
                );
                self.running.push((id, seq));
            }
        }
        assert!(self.running.len() <= MAX_CATCH_UPS);
        assert_eq!(self.running.len(), f.catching_up());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever heads come, from whom, in whatever order, and however catch-ups end: one
    /// verdict a message; an invalid head is rejected and starts nothing; a head no newer
    /// than the replica starts no fetch; at most MAX_CATCH_UPS catch-ups run, one per
    /// collection; and once the catch-ups are left to succeed, every replica ends at the
    /// newest valid head it was told of (a newer head that came meanwhile was queued and
    /// followed), except one whose own catch-up failed with nothing newer behind it.
    #[test]
    fn following_is_bounded_monotone_and_reaches_the_newest_head(
        start in proptest::collection::vec(0u64..8, 8),
        steps in proptest::collection::vec(step(), 1..150),
    ) {
        let mut f = Core::default();
        let mut w = World::new(&start);
        let mut now = T0;
        for step in steps {
            now = now.after(Duration::from_millis(10));
            let input = match step {
                Step::Head { id, seq, from, signed, held } => {
                    let local = held.then(|| Local { seq: w.local[&id], writable: id == 0 });
                    if signed && held && id != 0 {
                        let t = w.target.get_mut(&id).unwrap();
                        *t = (*t).max(seq);
                    }
                    head(id, seq, from, signed, local)
                }
                Step::Malformed(from) => Input::Malformed { from },
                Step::End(pick, moved) => {
                    if w.running.is_empty() {
                        continue;
                    }
                    let (id, seq) = w.running.remove(pick.index(w.running.len()));
                    if moved {
                        let l = w.local.get_mut(&id).unwrap();
                        *l = (*l).max(seq);
                    } else if w.target[&id] <= seq {
                        // Lost: nothing newer is known to follow.
                        w.target.insert(id, w.local[&id]);
                    }
                    Input::CatchUpEnded { id, moved }
                }
                Step::Forget(id) => {
                    // Dropped, then held again from where it was: the heads that waited
                    // are forgotten, a catch-up running still ends.
                    let running = w.running.iter().find(|(r, _)| *r == id).map(|(_, s)| *s);
                    w.target.insert(id, w.local[&id].max(running.unwrap_or(0)));
                    Input::Forget { id }
                }
            };
            let actions = f.handle(input.clone(), now);
            w.check(&f, &input, actions);
        }
        // Left to succeed, the catch-ups drain the queue.
        while let Some((id, seq)) = w.running.pop() {
            let l = w.local.get_mut(&id).unwrap();
            *l = (*l).max(seq);
            let input = Input::CatchUpEnded { id, moved: true };
            let actions = f.handle(input.clone(), now);
            w.check(&f, &input, actions);
        }
        for id in 1..8u8 {
            prop_assert_eq!(w.local[&id], w.target[&id], "replica {} is not at its newest head", id);
        }
    }

    /// Reads at any times, counts that succeed or fail: one count at a time, and none
    /// within COUNT_EVERY of the last that succeeded.
    #[test]
    fn providers_are_counted_at_most_once_a_period(
        steps in proptest::collection::vec((0u64..4_000, 0u8..3), 1..200),
    ) {
        let mut f = Core::default();
        let mut now = T0;
        let mut counting = false;
        let mut last_counted: Option<Millis> = None;
        for (wait, what) in steps {
            now = Millis(now.0 + wait);
            match what {
                0 => {
                    let asked = f.handle(Input::Read { id: 1 }, now);
                    if !asked.is_empty() {
                        prop_assert_eq!(&asked, &vec![Action::CountProviders { id: 1 }]);
                        prop_assert!(!counting, "two counts at once");
                        prop_assert!(last_counted.is_none_or(|at| now.since(at) >= COUNT_EVERY));
                        counting = true;
                    } else {
                        let due = last_counted.is_none_or(|at| now.since(at) >= COUNT_EVERY);
                        prop_assert!(counting || !due, "a due count was not asked for");
                    }
                }
                ok if counting => {
                    let counts = (ok == 1).then(|| vec![1, 2]);
                    if counts.is_some() {
                        last_counted = Some(now);
                    }
                    f.handle(Input::Counted { id: 1, counts }, now);
                    counting = false;
                }
                _ => {}
            }
        }
    }
}
