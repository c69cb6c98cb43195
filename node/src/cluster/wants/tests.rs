//! The want ledger's examples and properties, on a virtual clock with small integer peers.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::*;

type Peer = u8;

fn cid(n: u32) -> Cid {
    ipvec_protocol::cid::block_cid(ipvec_protocol::cid::RAW, &n.to_le_bytes())
}

fn want(cid: Cid, peers: &[Peer]) -> Input<Peer> {
    Input::Want {
        cid,
        peers: peers.to_vec(),
    }
}

fn block(from: Peer, cid: Cid) -> Input<Peer> {
    Input::Block {
        from,
        cid: Some(cid),
    }
}

const T0: Millis = Millis(1_000);

#[test]
fn an_asked_block_is_delivered_once_and_a_late_copy_is_a_duplicate() {
    let mut l = WantLedger::default();
    let asked = l.handle(want(cid(1), &[1, 2]), T0);
    assert_eq!(
        asked,
        [Action::Want {
            peer: 1,
            cid: cid(1)
        }]
    );
    // No block after a REBROADCAST: 1 is asked again, and 2 too.
    let t1 = T0.after(REBROADCAST);
    assert_eq!(l.next_deadline(), Some(t1));
    assert_eq!(
        l.poll(t1),
        [
            Action::Want {
                peer: 1,
                cid: cid(1)
            },
            Action::Want {
                peer: 2,
                cid: cid(1)
            }
        ]
    );
    assert_eq!(
        l.handle(block(1, cid(1)), t1),
        [
            Action::Cancel {
                peer: 2,
                cid: cid(1)
            },
            Action::Deliver { cid: cid(1) }
        ]
    );
    // 2 was asked too: its copy coming late is no fault of its own.
    assert_eq!(
        l.handle(block(2, cid(1)), t1),
        [Action::Duplicate { peer: 2 }]
    );
    // A peer never asked for it is suspected, whatever others were asked; after the grace
    // it is banned, once.
    assert_eq!(l.handle(block(9, cid(1)), t1), [Action::Refuse { peer: 9 }]);
    assert_eq!(l.handle(block(9, cid(1)), t1), [Action::Refuse { peer: 9 }]);
    assert_eq!(l.next_deadline(), Some(t1.after(GRACE)));
    assert!(l
        .poll(t1.after(GRACE - Duration::from_millis(1)))
        .is_empty());
    assert_eq!(
        l.poll(t1.after(GRACE)),
        [Action::Ban {
            peer: 9,
            why: Misconduct::WrongBlock
        }]
    );
    assert!(l.suspects.is_clear());
    assert_eq!(l.next_deadline(), None);
}

#[test]
fn a_round_asks_one_peer_and_widens_when_one_says_no() {
    let mut l = WantLedger::default();
    let asked = |actions: Vec<Action<Peer>>| -> Vec<Peer> {
        actions
            .into_iter()
            .filter_map(|a| match a {
                Action::Want { peer, .. } => Some(peer),
                _ => None,
            })
            .collect()
    };
    assert_eq!(asked(l.handle(want(cid(1), &[1, 2, 3]), T0)), [1]);
    // A DONT_HAVE ends a round of one; the next asks the next peer.
    let no = |from| Input::DontHave { from, cid: cid(1) };
    assert_eq!(asked(l.handle(no(1), T0)), [2]);
    // Silent for a REBROADCAST: 2 again, and 3 beside it.
    let t1 = T0.after(REBROADCAST);
    assert_eq!(asked(l.poll(t1)), [2, 3]);
    assert_eq!(asked(l.handle(no(3), t1)), Vec::<Peer>::new());
    assert_eq!(
        l.handle(block(2, cid(1)), t1),
        [Action::Deliver { cid: cid(1) }]
    );
    // Each want goes to the first peer of its session with a free slot.
    let firsts: Vec<Peer> = (10..16)
        .flat_map(|n| asked(l.handle(want(cid(n), &[3, 1, 2]), t1)))
        .collect();
    assert_eq!(firsts, [3; 6]);
    assert_eq!((l.load(&1), l.load(&2), l.load(&3)), (0, 0, 6));
}

#[test]
fn a_block_asked_for_within_the_grace_is_forgiven() {
    // A restarted node asks again for what it wanted before it died: the answers to its old
    // wants that came first are forgiven.
    let mut l = WantLedger::default();
    assert_eq!(l.handle(block(1, cid(2)), T0), [Action::Refuse { peer: 1 }]);
    l.handle(want(cid(2), &[1]), T0);
    assert!(l.suspects.is_clear());
    let after_grace = l.poll(T0.after(GRACE));
    assert!(!after_grace.iter().any(|a| matches!(a, Action::Ban { .. })));
    // Bytes under a prefix we cannot hash are never asked for, so never forgiven.
    let unhashable = Input::Block { from: 1, cid: None };
    assert_eq!(l.handle(unhashable, T0), [Action::Refuse { peer: 1 }]);
    assert!(l.poll(T0.after(GRACE)).contains(&Action::Ban {
        peer: 1,
        why: Misconduct::WrongBlock
    }));
}

#[test]
fn peers_asked_are_remembered_for_a_while_only() {
    let mut l = WantLedger::default();
    l.handle(want(cid(4), &[1]), T0);
    l.handle(Input::Abandon { cid: cid(4) }, T0);
    // Long after, another want ends; the first is forgotten.
    let later = T0.after(REMEMBER_ASKED);
    l.handle(want(cid(5), &[1]), later);
    l.handle(Input::Abandon { cid: cid(5) }, later);
    assert_eq!(
        l.handle(block(1, cid(4)), later),
        [Action::Refuse { peer: 1 }]
    );
    assert_eq!(
        l.handle(block(1, cid(5)), later),
        [Action::Duplicate { peer: 1 }]
    );
}

#[test]
fn a_want_asks_the_sessions_other_peers_when_the_first_have_none() {
    let mut l = WantLedger::default();
    // Peer 1 is busy with WANTS_PER_PEER other blocks: the want goes to 2 first, then 3.
    for n in 0..WANTS_PER_PEER as u32 {
        l.handle(want(cid(100 + n), &[1]), T0);
    }
    let asked = l.handle(want(cid(1), &[1, 2, 3]), T0);
    assert_eq!(
        asked,
        [Action::Want {
            peer: 2,
            cid: cid(1)
        }]
    );
    let next = l.handle(
        Input::DontHave {
            from: 2,
            cid: cid(1),
        },
        T0,
    );
    assert_eq!(
        next,
        [Action::Want {
            peer: 3,
            cid: cid(1)
        }]
    );
    let last = l.handle(Input::Unreachable { to: 3, cid: cid(1) }, T0);
    // Both said no: the want waits for peer 1, and gets it when one of its wants ends.
    assert!(last.is_empty(), "{last:?}");
    let freed = l.handle(block(1, cid(100)), T0);
    assert!(freed.contains(&Action::Want {
        peer: 1,
        cid: cid(1)
    }));
    let failed = l.handle(
        Input::DontHave {
            from: 1,
            cid: cid(1),
        },
        T0,
    );
    assert_eq!(
        failed,
        [Action::Fail(WantError::NotFound {
            cid: cid(1),
            asked: vec![2, 3, 1]
        })]
    );
}

#[test]
fn a_silent_want_times_out_at_exactly_want_timeout() {
    let mut l = WantLedger::default();
    l.handle(want(cid(1), &[1]), T0);
    let mut rebroadcasts = 0;
    let now = loop {
        let now = l.next_deadline().unwrap();
        let actions = l.poll(now);
        if let [Action::Cancel { .. }, Action::Fail(e)] = actions.as_slice() {
            assert_eq!(
                e,
                &WantError::Timeout {
                    cid: cid(1),
                    asked: vec![1]
                }
            );
            break now;
        }
        assert_eq!(actions.len(), 1);
        rebroadcasts += 1;
    };
    assert_eq!(now, T0.after(WANT_TIMEOUT));
    assert_eq!(
        rebroadcasts,
        WANT_TIMEOUT.as_millis() / REBROADCAST.as_millis() - 1
    );
    assert!(l.is_empty() && l.next_deadline().is_none());
}

#[test]
fn too_many_unasked_blocks_from_one_peer_are_not_waited_out() {
    let mut l = WantLedger::default();
    for n in 0..MAX_SUSPECT_BLOCKS as u32 {
        assert_eq!(l.handle(block(1, cid(n)), T0), [Action::Refuse { peer: 1 }]);
    }
    let more = cid(MAX_SUSPECT_BLOCKS as u32);
    assert_eq!(
        l.handle(block(1, more), T0),
        [Action::Ban {
            peer: 1,
            why: Misconduct::TooManyUnasked
        }]
    );
    assert_eq!(l.handle(block(2, more), T0), [Action::Refuse { peer: 2 }]);
}

/// One step of a random run.
#[derive(Debug, Clone)]
enum Step {
    Want(u32, Vec<Peer>),
    /// Wants for this many blocks from the first on, of these peers (to fill their slots).
    Burst(u32, u32, Vec<Peer>),
    Block(Peer, Option<u32>),
    DontHave(Peer, u32),
    Unreachable(Peer, u32),
    Abandon(u32),
    /// Virtual milliseconds to let pass, the timers firing on time.
    Wait(u64),
}

const PEERS: Peer = 5;
const BLOCKS: u32 = 300;

fn step() -> impl Strategy<Value = Step> {
    let peer = 0..PEERS;
    let block = 0..BLOCKS;
    prop_oneof![
        4 => (block.clone(), proptest::collection::vec(peer.clone(), 0..4))
            .prop_map(|(c, p)| Step::Want(c, p)),
        1 => (block.clone(), 0..2 * WANTS_PER_PEER as u32, proptest::collection::vec(peer.clone(), 1..3))
            .prop_map(|(c, n, p)| Step::Burst(c, n, p)),
        2 => (peer.clone(), proptest::option::weighted(0.9, block.clone()))
            .prop_map(|(p, c)| Step::Block(p, c)),
        2 => (peer.clone(), block.clone()).prop_map(|(p, c)| Step::DontHave(p, c)),
        1 => (peer.clone(), block.clone()).prop_map(|(p, c)| Step::Unreachable(p, c)),
        1 => block.prop_map(Step::Abandon),
        2 => (0u64..40_000).prop_map(Step::Wait),
    ]
}

/// What the actions said so far, checked against the ledger's invariants as they come.
#[derive(Default)]
struct Model {
    now: Millis,
    /// Wants the fetches opened and not yet answered (delivered or failed) or abandoned.
    open: HashSet<Cid>,
    /// Wants sent and neither answered nor cancelled, per peer.
    outstanding: HashMap<Peer, HashSet<Cid>>,
    /// When each peer was last asked for each block, within the want's life.
    last_asked: HashMap<(Peer, Cid), Millis>,
    /// Peers asked for each block within the want's life, in order.
    asked: HashMap<Cid, Vec<Peer>>,
    /// When a round started (a peer was first asked), per block.
    first_asked_at: HashMap<Cid, HashSet<Millis>>,
    /// When each open want was opened.
    opened_at: HashMap<Cid, Millis>,
}

impl Model {
    fn apply(&mut self, l: &mut WantLedger<Peer>, input: Option<Input<Peer>>) {
        let actions = match input.clone() {
            Some(input) => l.handle(input, self.now),
            None => l.poll(self.now),
        };
        if let Some(Input::Want { cid, peers }) = &input {
            if !peers.is_empty() || self.open.contains(cid) {
                self.open.insert(*cid);
                self.opened_at.entry(*cid).or_insert(self.now);
            }
        }
        if let Some(Input::DontHave { from, cid } | Input::Unreachable { to: from, cid }) = &input {
            if let Some(o) = self.outstanding.get_mut(from) {
                o.remove(cid);
            }
        }
        if let Some(Input::Block {
            from,
            cid: Some(cid),
        }) = &input
        {
            if actions.contains(&Action::Deliver { cid: *cid }) {
                if let Some(o) = self.outstanding.get_mut(from) {
                    o.remove(cid);
                }
            }
        }
        for action in actions {
            match action {
                Action::Want { peer, cid } => {
                    assert!(self.open.contains(&cid), "asked for a block nobody wants");
                    if let Some(at) = self.last_asked.insert((peer, cid), self.now) {
                        assert!(
                            self.now.since(at) >= REBROADCAST,
                            "{cid} asked of {peer} at {at:?} and again at {:?}",
                            self.now
                        );
                    } else {
                        self.asked.entry(cid).or_default().push(peer);
                        self.first_asked_at.entry(cid).or_default().insert(self.now);
                    }
                    self.outstanding.entry(peer).or_default().insert(cid);
                }
                Action::Cancel { peer, cid } => {
                    assert!(
                        self.outstanding.entry(peer).or_default().remove(&cid),
                        "cancelled {cid} of {peer}, not outstanding"
                    );
                }
                Action::Deliver { cid } => {
                    assert!(self.open.contains(&cid));
                    self.end(cid);
                }
                Action::Fail(e) => {
                    let (cid, asked) = match &e {
                        WantError::NotFound { cid, asked } | WantError::Timeout { cid, asked } => {
                            (*cid, asked.clone())
                        }
                        WantError::NoPeers { .. } => continue,
                    };
                    assert!(self.open.contains(&cid));
                    assert_eq!(
                        &asked,
                        self.asked.get(&cid).unwrap_or(&Vec::new()),
                        "the error names the peers asked"
                    );
                    if matches!(e, WantError::Timeout { .. }) {
                        let start = Millis(self.now.0 - WANT_TIMEOUT.as_millis() as u64);
                        assert!(
                            self.first_asked_at[&cid].contains(&start),
                            "timed out at {:?}, not WANT_TIMEOUT after a round began",
                            self.now
                        );
                    }
                    self.end(cid);
                }
                Action::Duplicate { .. } | Action::Refuse { .. } | Action::Ban { .. } => {}
            }
        }
        if let Some(Input::Abandon { cid }) = &input {
            self.end(*cid);
        }
        for (peer, o) in &self.outstanding {
            assert!(o.len() <= WANTS_PER_PEER);
            assert_eq!(
                o.len(),
                l.load(peer),
                "the ledger's count of {peer}'s wants"
            );
        }
        assert_eq!(self.open.len(), l.len(), "wants open");
        // One peer asked at a time, one more per REBROADCAST: never all at once.
        for (cid, opened) in &self.opened_at {
            let asking = self
                .outstanding
                .values()
                .filter(|o| o.contains(cid))
                .count();
            let widened = self.now.since(*opened).as_millis() / REBROADCAST.as_millis();
            assert!(
                asking as u128 <= 1 + widened,
                "{cid} asked of {asking} peers at once {:?} after it was opened",
                self.now.since(*opened)
            );
        }
    }

    /// The want for `cid` ended: nothing of it may stay outstanding.
    fn end(&mut self, cid: Cid) {
        self.open.remove(&cid);
        for (peer, o) in &self.outstanding {
            assert!(
                !o.contains(&cid),
                "{cid} still outstanding at {peer} after its want ended"
            );
        }
        self.last_asked.retain(|(_, c), _| *c != cid);
        self.asked.remove(&cid);
        self.first_asked_at.remove(&cid);
        self.opened_at.remove(&cid);
    }

    /// Lets virtual time pass until `until`, polling at every deadline on time.
    fn wait(&mut self, l: &mut WantLedger<Peer>, until: Millis) {
        while let Some(at) = l.next_deadline().filter(|at| *at <= until) {
            assert!(at >= self.now, "a deadline in the past");
            self.now = at;
            self.apply(l, None);
        }
        self.now = until;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Whatever peers answer, and whenever: no peer is asked for a block more than once a
    /// REBROADCAST, nor for more than WANTS_PER_PEER blocks at once; a block is asked of one
    /// peer more per REBROADCAST at most, not of all at once; every want ends,
    /// delivered or failed with an error that names the peers asked (a timeout exactly
    /// WANT_TIMEOUT after its last round began), and nothing stays asked once it ended.
    #[test]
    fn wants_are_paced_bounded_and_always_end(steps in proptest::collection::vec(step(), 1..120)) {
        let mut l = WantLedger::default();
        let mut m = Model { now: T0, ..Model::default() };
        for step in steps {
            let input = match step {
                Step::Want(c, peers) => want(cid(c), &peers),
                Step::Burst(first, n, peers) => {
                    for c in first..first + n {
                        m.apply(&mut l, Some(want(cid(c), &peers)));
                    }
                    continue;
                }
                Step::Block(p, c) => Input::Block { from: p, cid: c.map(cid) },
                Step::DontHave(p, c) => Input::DontHave { from: p, cid: cid(c) },
                Step::Unreachable(p, c) => Input::Unreachable { to: p, cid: cid(c) },
                Step::Abandon(c) => Input::Abandon { cid: cid(c) },
                Step::Wait(ms) => {
                    let until = Millis(m.now.0 + ms);
                    m.wait(&mut l, until);
                    continue;
                }
            };
            m.apply(&mut l, Some(input));
        }
        // Left alone, every want ends.
        let end = Millis(m.now.0 + 1_000 * WANT_TIMEOUT.as_millis() as u64);
        m.wait(&mut l, end);
        prop_assert!(l.is_empty() && m.open.is_empty());
        prop_assert_eq!(l.next_deadline(), None);
    }

    /// A peer that sends blocks nobody asked it for is banned at the first one past
    /// MAX_SUSPECT_BLOCKS, and for each it sent within the limit once GRACE is over, unless
    /// the block was asked for meanwhile.
    #[test]
    fn unasked_blocks_get_their_sender_banned(sent in 0usize..3 * MAX_SUSPECT_BLOCKS, asked_for in 0usize..10) {
        let mut l = WantLedger::default();
        let mut banned_at_once = 0;
        for n in 0..sent {
            for action in l.handle(block(1, cid(n as u32)), T0) {
                if action == (Action::Ban { peer: 1, why: Misconduct::TooManyUnasked }) {
                    banned_at_once += 1;
                }
            }
        }
        prop_assert_eq!(banned_at_once, sent.saturating_sub(MAX_SUSPECT_BLOCKS));
        let waiting = sent.min(MAX_SUSPECT_BLOCKS);
        let forgiven = asked_for.min(waiting);
        for n in 0..forgiven {
            l.handle(want(cid(n as u32), &[2]), T0);
        }
        let early = l.poll(T0.after(GRACE - Duration::from_millis(1)));
        let banned_early = early.iter().any(|a| matches!(a, Action::Ban { .. }));
        prop_assert!(!banned_early);
        let convicted = l.poll(T0.after(GRACE)).into_iter().filter(|a| {
            *a == Action::Ban { peer: 1, why: Misconduct::WrongBlock }
        }).count();
        prop_assert_eq!(convicted, waiting - forgiven);
        prop_assert!(l.suspects.is_clear());
    }
}
