//! The Bitswap want ledger: a state machine that decides whom each block is asked of, when
//! a want is sent again, when it gives up, and what a block that arrives is to us. It holds
//! no block, socket or timer: the adapter (`net::bitswap`) feeds it [`Input`]s and the time,
//! carries out the [`Action`]s it answers, and calls [`WantLedger::poll`] at
//! [`WantLedger::next_deadline`].
//!
//! A want lives from the first fetch that asks for its block until the block comes, every
//! peer offered for it has failed, or nobody waits any more. It goes in rounds. A round asks
//! one peer of its session: the first, in the session's order, with a free slot (no peer is
//! asked for more than [`WANTS_PER_PEER`] blocks at once, across wants). The order is the
//! caller's preference: a fetch puts the peers that say they hold its blocks first, and
//! peers that merely are connected after them. Each peer of the round that says it does not
//! have the block, and each [`REBROADCAST`] without it, widens the round by one more peer;
//! at each [`REBROADCAST`] the round's peers are asked again (a busy peer may have dropped
//! the stream). A round ends when all of its peers said DONT_HAVE (or could not be reached)
//! or after [`WANT_TIMEOUT`]; the next round asks the session's peers not asked yet. A want whose untried peers are all busy waits for a slot. Peers
//! still asked when a want or round ends are sent a cancel.
//!
//! One peer at a time, not all at once: a block asked of every holder comes from every
//! holder. The simulations showed it: with three holders, more than half the bytes a repair
//! received were copies thrown away.
//!
//! Blocks: a block we want is delivered whoever sends it. A late copy from a peer it was
//! asked of is a duplicate. Any other block was not asked of its sender; see
//! `suspects` for how that is judged after [`GRACE`].

mod suspects;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    fmt::Debug,
    hash::Hash,
    time::Duration,
};

use cid::Cid;

use self::suspects::{Suspects, Unasked};
use super::Millis;

/// How long a round of a want waits for an answer before it is sent again.
pub const REBROADCAST: Duration = Duration::from_secs(2);
/// How long a round of a want waits for its block before it ends (and the want asks the
/// session's other peers, or fails).
pub const WANT_TIMEOUT: Duration = Duration::from_secs(30);
/// Blocks asked of one peer at once, across every want.
pub const WANTS_PER_PEER: usize = 64;
/// How long a block nobody asked its sender for may wait to be asked for (a late answer to a
/// want sent before this node restarted) before its sender is held to have sent a wrong one.
pub const GRACE: Duration = Duration::from_secs(10);
/// Blocks nobody asked for that one peer may have waiting out [`GRACE`]; one more and it is
/// banned at once.
pub const MAX_SUSPECT_BLOCKS: usize = 2 * super::walk::PARALLEL_WANTS;
/// How long the peers a block was asked of are remembered after its want ended: copies they
/// send later are duplicates, not wrong blocks.
pub const REMEMBER_ASKED: Duration = Duration::from_secs(120);

/// What the ledger is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<P> {
    /// A fetch wants block `cid` from the session `peers` (joining the want already open for
    /// it, whose session gains the peers it lacked).
    Want {
        /// The block.
        cid: Cid,
        /// The peers that may have it, in the order to try them.
        peers: Vec<P>,
    },
    /// Nobody waits for `cid` any more (the fetches were dropped or stopped).
    Abandon {
        /// The block.
        cid: Cid,
    },
    /// `from` sent a block that hashes to `cid` under its prefix (`None`: a prefix we cannot
    /// hash, which we never ask for).
    Block {
        /// The sender.
        from: P,
        /// The block's CID, if it could be computed.
        cid: Option<Cid>,
    },
    /// `from` said it does not have `cid`.
    DontHave {
        /// The sender.
        from: P,
        /// The block.
        cid: Cid,
    },
    /// A want for `cid` could not be sent to `to`: as good as a DONT_HAVE.
    Unreachable {
        /// The peer.
        to: P,
        /// The block.
        cid: Cid,
    },
}

/// What the ledger asks its adapter to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<P> {
    /// Send `peer` a want for `cid` (a block, with DONT_HAVE requested).
    Want {
        /// To whom.
        peer: P,
        /// The block.
        cid: Cid,
    },
    /// Send `peer` a cancel of its want for `cid`.
    Cancel {
        /// To whom.
        peer: P,
        /// The block.
        cid: Cid,
    },
    /// The block `cid` that just arrived is wanted: store it and hand it to the fetches
    /// waiting for it.
    Deliver {
        /// The block.
        cid: Cid,
    },
    /// The want ended without its block: tell the fetches waiting for it.
    Fail(WantError<P>),
    /// The block that just arrived is a late copy from a peer it was asked of: drop it.
    Duplicate {
        /// Its sender.
        peer: P,
    },
    /// The block that just arrived was not asked of its sender: drop it (its sender waits
    /// out [`GRACE`]).
    Refuse {
        /// Its sender.
        peer: P,
    },
    /// Disconnect `peer` and refuse it for a while.
    Ban {
        /// The peer.
        peer: P,
        /// What it did.
        why: Misconduct,
    },
}

/// Why a peer is banned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misconduct {
    /// It sent a block nobody asked it for (or bytes that do not hash to what was asked),
    /// still not asked for after [`GRACE`].
    WrongBlock,
    /// It has more than [`MAX_SUSPECT_BLOCKS`] blocks nobody asked it for waiting.
    TooManyUnasked,
}

/// How a want ended without its block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WantError<P> {
    /// Every peer asked said it does not have the block (or could not be reached).
    #[error("none of the {} peers asked has block {cid}", asked.len())]
    NotFound {
        /// The block.
        cid: Cid,
        /// The peers asked, in the order they were.
        asked: Vec<P>,
    },
    /// The last round waited [`WANT_TIMEOUT`] for the block and no peer was left to ask.
    #[error("timed out waiting for block {cid} from the {} peers asked", asked.len())]
    Timeout {
        /// The block.
        cid: Cid,
        /// The peers asked, in the order they were.
        asked: Vec<P>,
    },
    /// The want came with no peer to ask.
    #[error("no peer to ask for block {cid}")]
    NoPeers {
        /// The block.
        cid: Cid,
    },
}

impl<P> WantError<P> {
    /// The block the want was for.
    pub fn cid(&self) -> Cid {
        match self {
            WantError::NotFound { cid, .. }
            | WantError::Timeout { cid, .. }
            | WantError::NoPeers { cid } => *cid,
        }
    }
}

/// A want for one block.
#[derive(Debug)]
struct Want<P> {
    /// Peers of the session not asked yet, in order.
    untried: Vec<P>,
    /// Peers asked in this round (empty: waiting for a slot).
    round: Vec<P>,
    /// When each peer of the round was last asked.
    round_asked: HashMap<P, Millis>,
    /// Of those, the ones that answered it does not have it, or could not be reached; they
    /// hold no slot any more.
    answered: HashSet<P>,
    /// Every peer asked, in order.
    asked: Vec<P>,
    /// When the round ends.
    deadline: Millis,
    /// When the round's peers are asked again.
    rebroadcast: Millis,
    /// Whether the last round that ended timed out (else: every peer of it said no).
    timed_out: bool,
    /// Whether it waits in the queue for a free slot.
    queued: bool,
}

/// How a want ends.
enum End<'a, P> {
    /// Its block came from this peer.
    Delivered(&'a P),
    /// No peer is left to ask.
    Failed,
    /// Nobody waits for it any more.
    Abandoned,
}

/// The wants in flight, the slots each peer has taken, and the blocks that came unasked.
/// Time must not go backwards from one call to the next.
#[derive(Debug)]
pub struct WantLedger<P> {
    /// Ordered, so that polling answers the same actions in the same order every run.
    wants: BTreeMap<Cid, Want<P>>,
    /// Wants waiting for a free slot, oldest first (ended ones are skipped).
    queued: VecDeque<Cid>,
    /// Wants outstanding per peer (asked in a round and not answered).
    load: HashMap<P, usize>,
    suspects: Suspects<P>,
}

impl<P> Default for WantLedger<P> {
    fn default() -> Self {
        Self {
            wants: BTreeMap::new(),
            queued: VecDeque::new(),
            load: HashMap::new(),
            suspects: Suspects::default(),
        }
    }
}

impl<P: Clone + Eq + Hash + Debug> WantLedger<P> {
    /// Takes in what happened at `now`; answers what to do.
    pub fn handle(&mut self, input: Input<P>, now: Millis) -> Vec<Action<P>> {
        let mut out = Vec::new();
        match input {
            Input::Want { cid, peers } => self.want(cid, peers, now, &mut out),
            Input::Abandon { cid } => self.finish(cid, End::Abandoned, now, &mut out),
            Input::Block { from, cid } => self.block(from, cid, now, &mut out),
            Input::DontHave { from, cid } | Input::Unreachable { to: from, cid } => {
                self.dont_have(from, cid, now, &mut out)
            }
        }
        out
    }

    /// The timers due at `now`: wants asked again, rounds that time out, senders of unasked
    /// blocks whose [`GRACE`] is over.
    pub fn poll(&mut self, now: Millis) -> Vec<Action<P>> {
        let mut out = Vec::new();
        let due: Vec<Cid> = self
            .wants
            .iter()
            .filter(|(_, w)| !w.round.is_empty() && w.deadline.min(w.rebroadcast) <= now)
            .map(|(cid, _)| *cid)
            .collect();
        for cid in due {
            let Some(w) = self.wants.get_mut(&cid) else {
                continue;
            };
            if w.deadline <= now {
                self.end_round(cid, true, now, &mut out);
                continue;
            }
            // Asked again, unless they were asked within a REBROADCAST (added to the round
            // since the last one).
            for peer in w.round.iter().filter(|p| !w.answered.contains(*p)) {
                let due = w
                    .round_asked
                    .get(peer)
                    .is_none_or(|at| now.since(*at) >= REBROADCAST);
                if !due {
                    continue;
                }
                w.round_asked.insert(peer.clone(), now);
                out.push(Action::Want {
                    peer: peer.clone(),
                    cid,
                });
            }
            while w.rebroadcast <= now {
                w.rebroadcast = w.rebroadcast.after(REBROADCAST);
            }
            // No block yet: one more peer.
            self.widen(cid, now, &mut out);
        }
        for peer in self.suspects.poll(now) {
            out.push(Action::Ban {
                peer,
                why: Misconduct::WrongBlock,
            });
        }
        out
    }

    /// When [`WantLedger::poll`] has something to do next, if ever.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.wants
            .values()
            .filter(|w| !w.round.is_empty())
            .map(|w| w.deadline.min(w.rebroadcast))
            .chain(self.suspects.next_deadline())
            .min()
    }

    /// Whether a want for `cid` is open.
    pub fn is_wanted(&self, cid: &Cid) -> bool {
        self.wants.contains_key(cid)
    }

    /// Wants open.
    pub fn len(&self) -> usize {
        self.wants.len()
    }

    /// Whether no want is open.
    pub fn is_empty(&self) -> bool {
        self.wants.is_empty()
    }

    /// Blocks asked of `peer` and not answered yet.
    pub fn load(&self, peer: &P) -> usize {
        self.load.get(peer).copied().unwrap_or(0)
    }

    fn want(&mut self, cid: Cid, peers: Vec<P>, now: Millis, out: &mut Vec<Action<P>>) {
        // A block of it that came unasked was a late answer to a want like this one.
        self.suspects.forgive(&cid);
        if let Some(w) = self.wants.get_mut(&cid) {
            for peer in peers {
                if !w.asked.contains(&peer) && !w.untried.contains(&peer) {
                    w.untried.push(peer);
                }
            }
            if w.round.is_empty() {
                self.start_round(cid, now, out);
            }
            return;
        }
        if peers.is_empty() {
            out.push(Action::Fail(WantError::NoPeers { cid }));
            return;
        }
        let mut untried: Vec<P> = Vec::with_capacity(peers.len());
        for peer in peers {
            if !untried.contains(&peer) {
                untried.push(peer);
            }
        }
        self.wants.insert(
            cid,
            Want {
                untried,
                round: Vec::new(),
                round_asked: HashMap::new(),
                answered: HashSet::new(),
                asked: Vec::new(),
                deadline: now,
                rebroadcast: now,
                timed_out: false,
                queued: false,
            },
        );
        self.start_round(cid, now, out);
    }

    /// Starts a round: asks one untried peer with a free slot ([`WantLedger::widen`]); with
    /// none, waits for a slot, or fails when no peer is left.
    fn start_round(&mut self, cid: Cid, now: Millis, out: &mut Vec<Action<P>>) {
        if !self.widen(cid, now, out) {
            let Some(w) = self.wants.get_mut(&cid) else {
                return;
            };
            if w.untried.is_empty() {
                self.finish(cid, End::Failed, now, out);
            } else if !w.queued {
                w.queued = true;
                self.queued.push_back(cid);
            }
            return;
        }
        if let Some(w) = self.wants.get_mut(&cid) {
            w.deadline = now.after(WANT_TIMEOUT);
            w.rebroadcast = now.after(REBROADCAST);
        }
    }

    /// Adds to the round of the want for `cid` the first untried peer with a free slot, and
    /// asks it; whether there was one.
    fn widen(&mut self, cid: Cid, now: Millis, out: &mut Vec<Action<P>>) -> bool {
        let Some(w) = self.wants.get_mut(&cid) else {
            return false;
        };
        let load = &mut self.load;
        let free = |peer: &P| load.get(peer).copied().unwrap_or(0) < WANTS_PER_PEER;
        let Some(i) = w.untried.iter().position(free) else {
            return false;
        };
        let peer = w.untried.remove(i);
        *load.entry(peer.clone()).or_default() += 1;
        out.push(Action::Want {
            peer: peer.clone(),
            cid,
        });
        w.asked.push(peer.clone());
        w.round_asked.insert(peer.clone(), now);
        w.round.push(peer);
        true
    }

    /// Ends the current round without the block (`timed_out`, or every peer said no): its
    /// unanswered peers are cancelled, and the next round starts (or the want fails).
    fn end_round(&mut self, cid: Cid, timed_out: bool, now: Millis, out: &mut Vec<Action<P>>) {
        let Some(w) = self.wants.get_mut(&cid) else {
            return;
        };
        w.timed_out = timed_out;
        let round = std::mem::take(&mut w.round);
        w.round_asked.clear();
        let answered = std::mem::take(&mut w.answered);
        self.release(cid, &round, &answered, None, out);
        self.start_round(cid, now, out);
        self.unqueue(now, out);
    }

    /// Closes the want for `cid`.
    fn finish(&mut self, cid: Cid, end: End<'_, P>, now: Millis, out: &mut Vec<Action<P>>) {
        let Some(w) = self.wants.remove(&cid) else {
            return;
        };
        let by = match end {
            End::Delivered(by) => Some(by),
            End::Failed | End::Abandoned => None,
        };
        self.release(cid, &w.round, &w.answered, by, out);
        self.suspects.remember(cid, w.asked.iter().cloned(), now);
        match end {
            End::Delivered(_) => out.push(Action::Deliver { cid }),
            End::Failed => {
                let asked = w.asked;
                out.push(Action::Fail(if w.timed_out {
                    WantError::Timeout { cid, asked }
                } else {
                    WantError::NotFound { cid, asked }
                }));
            }
            // Nobody to tell.
            End::Abandoned => {}
        }
        self.unqueue(now, out);
    }

    /// Gives back the slots of a round's unanswered peers, cancelling their wants (but the
    /// one's that sent the block).
    fn release(
        &mut self,
        cid: Cid,
        round: &[P],
        answered: &HashSet<P>,
        by: Option<&P>,
        out: &mut Vec<Action<P>>,
    ) {
        for peer in round.iter().filter(|p| !answered.contains(*p)) {
            self.free_slot(peer);
            if by != Some(peer) {
                out.push(Action::Cancel {
                    peer: peer.clone(),
                    cid,
                });
            }
        }
    }

    fn free_slot(&mut self, peer: &P) {
        if let Some(n) = self.load.get_mut(peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.load.remove(peer);
            }
        }
    }

    /// Starts the rounds of the wants waiting for a slot that can now take one.
    fn unqueue(&mut self, now: Millis, out: &mut Vec<Action<P>>) {
        if self.queued.is_empty() {
            return;
        }
        for cid in std::mem::take(&mut self.queued) {
            if let Some(w) = self.wants.get_mut(&cid) {
                w.queued = false;
                if w.round.is_empty() {
                    self.start_round(cid, now, out);
                }
            }
        }
    }

    fn dont_have(&mut self, from: P, cid: Cid, now: Millis, out: &mut Vec<Action<P>>) {
        let Some(w) = self.wants.get_mut(&cid) else {
            return;
        };
        if !w.round.contains(&from) || !w.answered.insert(from.clone()) {
            return;
        }
        let all_said_no = w.round.iter().all(|p| w.answered.contains(p));
        self.free_slot(&from);
        if all_said_no {
            self.end_round(cid, false, now, out);
        } else {
            // Another peer in its place.
            self.widen(cid, now, out);
            self.unqueue(now, out);
        }
    }

    fn block(&mut self, from: P, cid: Option<Cid>, now: Millis, out: &mut Vec<Action<P>>) {
        if let Some(cid) = cid {
            if self.wants.contains_key(&cid) {
                self.finish(cid, End::Delivered(&from), now, out);
                return;
            }
            if self.suspects.was_asked(&cid, &from) {
                out.push(Action::Duplicate { peer: from });
                return;
            }
        }
        match self.suspects.arrived(from.clone(), cid, now) {
            Unasked::Suspect | Unasked::StillSuspect => out.push(Action::Refuse { peer: from }),
            Unasked::TooMany => out.push(Action::Ban {
                peer: from,
                why: Misconduct::TooManyUnasked,
            }),
        }
    }
}
