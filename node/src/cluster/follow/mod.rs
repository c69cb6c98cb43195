//! Following collections: a state machine that judges the heads gossiped for collections
//! this node holds, decides which to catch up to and when, and keeps each collection's
//! replication state (the newest head seen, a fetch in progress, when it was announced, how
//! many peers provide each shard). It holds no collection, network or clock: the node's
//! replication code feeds it [`Input`]s with the time and carries out the [`Action`]s it
//! answers; [`Follow::status`] is what collection info shows.
//!
//! Heads: the adapter decodes a gossiped head and checks its signature against the
//! collection's writers (it holds the keys); this core gives the verdict gossipsub needs
//! (a badly signed or malformed head is rejected, which lowers its sender's score) and
//! starts a catch-up for a head newer than the replica holds, at most [`MAX_CATCH_UPS`] at
//! once across collections. A newer head that comes while its collection catches up, or
//! while every catch-up slot is taken, waits (only the newest per collection) and is
//! followed when a slot frees; one no newer than what the replica holds or is already being
//! caught up to starts nothing.
//!
//! Provider counts: reading a collection's status asks for a count of its providers when the
//! last one is older than [`COUNT_EVERY`], one count at a time.

#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, VecDeque},
    time::Duration,
};

use super::Millis;

/// Catch-ups (fetching a gossiped head's blocks, then moving the replica) running at once.
pub const MAX_CATCH_UPS: usize = 4;
/// How old a provider count may get before a read asks for a new one.
pub const COUNT_EVERY: Duration = Duration::from_secs(10);

/// What the node makes of a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: forward it.
    Accept,
    /// Valid but not news: drop it quietly.
    Ignore,
    /// Invalid: drop it and lower the sender's score.
    Reject,
}

/// What this node holds of a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// The sequence of the head it is at.
    pub seq: u64,
    /// Whether this node writes it (a writer has nothing to follow).
    pub writable: bool,
}

/// What the core is told. `C` names a collection, `P` a peer, `H` is a head as the adapter
/// carries it (the core only passes it on).
#[derive(Debug, Clone, PartialEq)]
pub enum Input<C, P, H> {
    /// A gossip message from `from` that is not a head of its topic's collection (it does
    /// not decode, or names another collection).
    Malformed {
        /// The peer that forwarded it.
        from: P,
    },
    /// A gossiped head of collection `id`.
    Head {
        /// The collection.
        id: C,
        /// The head's sequence.
        seq: u64,
        /// The peer that forwarded it.
        from: P,
        /// Whether one of the collection's writers signed it (unchecked when `local` is
        /// `None`: the node does not know the writers).
        signed: bool,
        /// What this node holds of the collection, if it holds it.
        local: Option<Local>,
        /// The head, handed back in [`Action::CatchUp`].
        head: H,
    },
    /// A valid head of `id` with sequence `seq` was seen another way (a fetch asked peers).
    Seen {
        /// The collection.
        id: C,
        /// The head's sequence.
        seq: u64,
    },
    /// The catch-up of `id` started by [`Action::CatchUp`] ended: the replica moved to its
    /// head (`moved`), or it could not.
    CatchUpEnded {
        /// The collection.
        id: C,
        /// Whether the replica is now at the head.
        moved: bool,
    },
    /// A fetch of `id`'s blocks walked `done` of the `known` blocks found so far; `None`
    /// when it ended.
    Syncing {
        /// The collection.
        id: C,
        /// Blocks walked and blocks known.
        progress: Option<(u64, u64)>,
    },
    /// This node just announced `id` in the DHT.
    Announced {
        /// The collection.
        id: C,
    },
    /// The status of `id` was read (its provider counts may be due).
    Read {
        /// The collection.
        id: C,
    },
    /// A count of `id`'s providers ended: per shard, or `None` if it failed.
    Counted {
        /// The collection.
        id: C,
        /// Providers of each shard.
        counts: Option<Vec<u32>>,
    },
    /// Collection `id` was dropped here.
    Forget {
        /// The collection.
        id: C,
    },
}

/// What the core asks its adapter to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action<C, P, H> {
    /// Give gossipsub this verdict on the message just judged (a reject lowers `from`'s
    /// score).
    Verdict {
        /// The peer that forwarded the message.
        from: P,
        /// The verdict.
        verdict: Verdict,
    },
    /// Fetch `head`'s blocks from `from` (and other peers) and move replica `id` to it;
    /// report [`Input::CatchUpEnded`].
    CatchUp {
        /// The collection.
        id: C,
        /// The head's sequence.
        seq: u64,
        /// The head.
        head: H,
        /// The peer that forwarded it (it holds the blocks, most likely).
        from: P,
    },
    /// Count the providers of each shard of `id`; report [`Input::Counted`].
    CountProviders {
        /// The collection.
        id: C,
    },
}

/// Where a collection's replica stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// This node writes it.
    Writer,
    /// A fetch of its blocks is running.
    Syncing,
    /// A newer head was seen; the replica is not there yet.
    Following,
    /// At the newest head seen.
    CaughtUp,
}

impl State {
    /// The state as collection info shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Writer => "writer",
            State::Syncing => "syncing",
            State::Following => "following",
            State::CaughtUp => "caught up",
        }
    }
}

/// The replication part of a collection's info.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Where the replica stands.
    pub state: State,
    /// Of a fetch in progress, the share of the blocks discovered so far that arrived.
    pub sync_percent: Option<f64>,
    /// Versions behind the newest head seen from peers.
    pub lag: u64,
    /// How long ago this node announced it in the DHT.
    pub announced_ago: Option<Duration>,
    /// Providers of each shard, once counted.
    pub providers: Option<Vec<u32>>,
}

/// A head waiting for a catch-up slot.
#[derive(Debug, Clone)]
struct Pending<P, H> {
    seq: u64,
    from: P,
    head: H,
}

/// What is known of one collection's replication.
#[derive(Debug, Clone)]
struct Replica<P, H> {
    /// The highest head sequence seen from peers.
    newest_seen: u64,
    /// The highest sequence the replica is known to hold.
    held: u64,
    /// The head being caught up to.
    catching_up: Option<u64>,
    /// The newest head waiting for a catch-up.
    queued: Option<Pending<P, H>>,
    /// A fetch in progress: blocks walked and blocks discovered.
    syncing: Option<(u64, u64)>,
    /// When this node last announced the collection.
    announced: Option<Millis>,
    /// Providers per shard and when they were counted.
    providers: Option<(Millis, Vec<u32>)>,
    /// Whether a count is running.
    counting: bool,
}

impl<P, H> Default for Replica<P, H> {
    fn default() -> Self {
        Self {
            newest_seen: 0,
            held: 0,
            catching_up: None,
            queued: None,
            syncing: None,
            announced: None,
            providers: None,
            counting: false,
        }
    }
}

/// The followed collections and the catch-ups running.
#[derive(Debug)]
pub struct Follow<C, P, H> {
    /// Ordered, so the same inputs answer the same actions in every run.
    replicas: BTreeMap<C, Replica<P, H>>,
    /// Catch-ups running.
    running: usize,
    /// Collections with a head waiting for a catch-up slot, oldest first.
    waiting: VecDeque<C>,
}

impl<C, P, H> Default for Follow<C, P, H> {
    fn default() -> Self {
        Self {
            replicas: BTreeMap::new(),
            running: 0,
            waiting: VecDeque::new(),
        }
    }
}

impl<C: Ord + Clone, P: Clone, H: Clone> Follow<C, P, H> {
    /// Takes in what happened at `now`; answers what to do.
    pub fn handle(&mut self, input: Input<C, P, H>, now: Millis) -> Vec<Action<C, P, H>> {
        let mut out = Vec::new();
        match input {
            Input::Malformed { from } => out.push(Action::Verdict {
                from,
                verdict: Verdict::Reject,
            }),
            Input::Head {
                id,
                seq,
                from,
                signed,
                local,
                head,
            } => {
                let verdict = self.head(id, Pending { seq, from, head }, signed, local, &mut out);
                out.insert(0, verdict);
            }
            Input::Seen { id, seq } => {
                let r = self.replica(id);
                r.newest_seen = r.newest_seen.max(seq);
            }
            Input::CatchUpEnded { id, moved } => self.caught_up(id, moved, &mut out),
            Input::Syncing { id, progress } => self.replica(id).syncing = progress,
            Input::Announced { id } => self.replica(id).announced = Some(now),
            Input::Read { id } => {
                let r = self.replica(id.clone());
                let due = r
                    .providers
                    .as_ref()
                    .is_none_or(|(at, _)| now.since(*at) >= COUNT_EVERY);
                if due && !r.counting {
                    r.counting = true;
                    out.push(Action::CountProviders { id });
                }
            }
            Input::Counted { id, counts } => {
                let r = self.replica(id);
                r.counting = false;
                if let Some(counts) = counts {
                    r.providers = Some((now, counts));
                }
            }
            Input::Forget { id } => {
                self.waiting.retain(|w| *w != id);
                if let Some(r) = self.replicas.remove(&id) {
                    // Its catch-up still runs; it reports its end.
                    if r.catching_up.is_some() {
                        self.replica(id).catching_up = r.catching_up;
                    }
                }
            }
        }
        out
    }

    /// The replication state of collection `id`, whose local copy is at `seq`.
    pub fn status(&self, id: &C, seq: u64, writable: bool, now: Millis) -> Status {
        let default = Replica::default();
        let r = self.replicas.get(id).unwrap_or(&default);
        let lag = r.newest_seen.saturating_sub(seq);
        let state = match (&r.syncing, writable) {
            (_, true) => State::Writer,
            (Some(_), false) => State::Syncing,
            (None, false) if lag > 0 => State::Following,
            (None, false) => State::CaughtUp,
        };
        Status {
            state,
            sync_percent: r
                .syncing
                .map(|(done, known)| 100.0 * done as f64 / known.max(1) as f64),
            lag,
            announced_ago: r.announced.map(|at| now.since(at)),
            providers: r.providers.as_ref().map(|(_, counts)| counts.clone()),
        }
    }

    /// Whether this node announced collection `id` since it started.
    pub fn was_announced(&self, id: &C) -> bool {
        self.replicas.get(id).is_some_and(|r| r.announced.is_some())
    }

    /// Catch-ups running.
    pub fn catching_up(&self) -> usize {
        self.running
    }

    fn replica(&mut self, id: C) -> &mut Replica<P, H> {
        self.replicas.entry(id).or_default()
    }

    /// Judges a head; starts or queues its catch-up when it is news to a replica.
    fn head(
        &mut self,
        id: C,
        pending: Pending<P, H>,
        signed: bool,
        local: Option<Local>,
        out: &mut Vec<Action<C, P, H>>,
    ) -> Action<C, P, H> {
        let from = pending.from.clone();
        let verdict = |verdict| Action::Verdict {
            from: from.clone(),
            verdict,
        };
        // Not a collection held here: nothing to judge it by.
        let Some(local) = local else {
            return verdict(Verdict::Ignore);
        };
        if !signed {
            return verdict(Verdict::Reject);
        }
        let running = self.running;
        let r = self.replicas.entry(id.clone()).or_default();
        r.newest_seen = r.newest_seen.max(pending.seq);
        r.held = r.held.max(local.seq);
        if pending.seq <= local.seq {
            return verdict(Verdict::Ignore);
        }
        if local.writable {
            return verdict(Verdict::Accept);
        }
        let newest_coming = r.catching_up.max(r.queued.as_ref().map(|q| q.seq));
        if newest_coming.is_some_and(|s| pending.seq <= s) {
            // Valid news to others; this replica is already on its way there.
            return verdict(Verdict::Accept);
        }
        if r.catching_up.is_none() && running < MAX_CATCH_UPS {
            self.start(id, pending, out);
        } else {
            let waits = r.queued.replace(pending).is_some() || r.catching_up.is_some();
            if !waits {
                self.waiting.push_back(id);
            }
        }
        verdict(Verdict::Accept)
    }

    fn start(&mut self, id: C, pending: Pending<P, H>, out: &mut Vec<Action<C, P, H>>) {
        self.running += 1;
        self.replica(id.clone()).catching_up = Some(pending.seq);
        out.push(Action::CatchUp {
            id,
            seq: pending.seq,
            head: pending.head,
            from: pending.from,
        });
    }

    fn caught_up(&mut self, id: C, moved: bool, out: &mut Vec<Action<C, P, H>>) {
        let Some(r) = self.replicas.get_mut(&id) else {
            return;
        };
        let Some(seq) = r.catching_up.take() else {
            return;
        };
        self.running = self.running.saturating_sub(1);
        if moved {
            r.held = r.held.max(seq);
        }
        if r.queued.is_some() {
            // Its next head waits its turn behind the collections that waited already.
            self.waiting.push_back(id);
        }
        while self.running < MAX_CATCH_UPS {
            let Some(next) = self.waiting.pop_front() else {
                break;
            };
            let Some(r) = self.replicas.get_mut(&next) else {
                continue;
            };
            match r.queued.take() {
                Some(pending) if pending.seq > r.held => self.start(next, pending, out),
                _ => {}
            }
        }
    }
}
