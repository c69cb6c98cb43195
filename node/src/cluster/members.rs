//! A collection's membership, learnt from announcements that expire: which peers have
//! joined it and with what capacity, as [`placement`](super::placement) takes it. It holds
//! no clock and checks no signature: the adapter verifies each signed member record, hands
//! it over as an [`Announcement`] with the time it arrived, and calls [`Membership::poll`]
//! at [`Membership::next_deadline`].
//!
//! # The rules
//! - **Newest wins**: an announcement counts only if its `issued` is later than the last
//!   one counted from its peer (an equal one is a copy and changes nothing). `issued` is
//!   the announcer's own clock or counter, compared only with its own earlier ones, so it
//!   must grow across the announcer's restarts (wall-clock time, or a persisted counter).
//! - **Expiry**: a member not heard from within the `ttl` of its last announcement (at most
//!   [`MAX_TTL`]), counted from when that announcement arrived here, drops out.
//! - **Leave**: a peer that says it leaves drops out at once. Its last `issued` is
//!   remembered for [`MAX_TTL`], as it is for an expired member, so a late copy of an older
//!   announcement does not bring it back; a newer one does (a re-join). A leave carries no
//!   `issued`, so one issued before it that arrives after it re-joins the peer until it
//!   expires: a leaving peer stops announcing before it says it leaves.
//! - **Generation**: a counter that grows each time the members or their capacities change
//!   (a join, a capacity change, a leave, an expiry seen by `poll`); placement needs
//!   computing again only when it moved.
//! - **Bounded**: at most the limit given to [`Membership::with_limit`] ([`MAX_MEMBERS`] by
//!   default) peers are remembered, members and departed ones together; an announcement of
//!   a new peer beyond it is refused.

use std::{collections::BTreeMap, time::Duration};

use super::{placement::Member, Millis};

/// The longest an announcement is believed without a newer one.
pub const MAX_TTL: Duration = Duration::from_secs(3_600);
/// Peers remembered per collection by default.
pub const MAX_MEMBERS: usize = 65_536;

/// A peer's signed statement that it is a member, as the adapter verified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement<P> {
    /// The peer.
    pub peer: P,
    /// Its capacity (0: a member that holds nothing).
    pub capacity: u64,
    /// When the announcer issued it, on its own clock.
    pub issued: Millis,
    /// How long it holds after it arrives.
    pub ttl: Duration,
}

/// What an observation did to the membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The peer is a member now and was not before.
    Joined,
    /// A member's capacity changed.
    Capacity,
    /// A member's announcement was refreshed; nothing placement sees changed.
    Refreshed,
    /// The peer is no longer a member.
    Left,
    /// Nothing: an announcement no newer than the last one, a leave of a non-member, or a
    /// new peer beyond the limit.
    Ignored,
}

/// What is known of one peer.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The last `issued` counted.
    issued: Millis,
    capacity: u64,
    /// While a member: when it expires. Departed: when it is forgotten.
    until: Millis,
    member: bool,
}

/// The members of one collection.
#[derive(Debug)]
pub struct Membership<P> {
    peers: BTreeMap<P, Entry>,
    generation: u64,
    limit: usize,
}

impl<P> Default for Membership<P> {
    fn default() -> Self {
        Self::with_limit(MAX_MEMBERS)
    }
}

impl<P> Membership<P> {
    /// An empty membership remembering at most `limit` peers.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            peers: BTreeMap::new(),
            generation: 0,
            limit,
        }
    }

    /// A counter that grows whenever the members or their capacities change.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl<P: Ord + Clone> Membership<P> {
    /// Takes in an announcement that arrived at `now`.
    pub fn observe(&mut self, a: Announcement<P>, now: Millis) -> Change {
        let until = now.after(a.ttl.min(MAX_TTL));
        let full = self.peers.len() >= self.limit;
        let change = match self.peers.get_mut(&a.peer) {
            Some(e) if a.issued <= e.issued => return Change::Ignored,
            Some(e) => {
                let change = if !e.member || e.until <= now {
                    Change::Joined
                } else if e.capacity != a.capacity {
                    Change::Capacity
                } else {
                    Change::Refreshed
                };
                *e = Entry {
                    issued: a.issued,
                    capacity: a.capacity,
                    until,
                    member: true,
                };
                change
            }
            None if full => return Change::Ignored,
            None => {
                self.peers.insert(
                    a.peer,
                    Entry {
                        issued: a.issued,
                        capacity: a.capacity,
                        until,
                        member: true,
                    },
                );
                Change::Joined
            }
        };
        if change != Change::Refreshed {
            self.generation += 1;
        }
        change
    }

    /// `peer` said it leaves, at `now`.
    pub fn leave(&mut self, peer: &P, now: Millis) -> Change {
        match self.peers.get_mut(peer) {
            Some(e) if e.member && e.until > now => {
                e.member = false;
                e.until = now.after(MAX_TTL);
                self.generation += 1;
                Change::Left
            }
            _ => Change::Ignored,
        }
    }

    /// Ends what is due at `now`: members whose announcement expired drop out (returned,
    /// in order), departed peers past [`MAX_TTL`] are forgotten.
    pub fn poll(&mut self, now: Millis) -> Vec<P> {
        let mut expired = Vec::new();
        self.peers.retain(|peer, e| {
            if e.until > now {
                return true;
            }
            if e.member {
                expired.push(peer.clone());
                e.member = false;
                e.until = now.after(MAX_TTL);
                return true;
            }
            false
        });
        if !expired.is_empty() {
            self.generation += 1;
        }
        expired
    }

    /// When [`poll`](Self::poll) has something to do next.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.peers.values().map(|e| e.until).min()
    }

    /// The members at `now` with their capacities, in peer order (a member whose
    /// announcement expired is left out even before `poll` sees it).
    pub fn members(&self, now: Millis) -> Vec<Member<P>> {
        self.peers
            .iter()
            .filter(|(_, e)| e.member && e.until > now)
            .map(|(peer, e)| Member {
                peer: peer.clone(),
                capacity: e.capacity,
            })
            .collect()
    }

    /// Whether `peer` is a member at `now`.
    pub fn is_member(&self, peer: &P, now: Millis) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|e| e.member && e.until > now)
    }

    /// Members at `now`.
    pub fn len(&self, now: Millis) -> usize {
        self.peers
            .values()
            .filter(|e| e.member && e.until > now)
            .count()
    }

    /// Whether there is no member at `now`.
    pub fn is_empty(&self, now: Millis) -> bool {
        self.len(now) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn ann(peer: u32, capacity: u64, issued: u64) -> Announcement<u32> {
        Announcement {
            peer,
            capacity,
            issued: Millis(issued),
            ttl: TTL,
        }
    }

    fn peers(m: &Membership<u32>, now: Millis) -> Vec<(u32, u64)> {
        m.members(now)
            .into_iter()
            .map(|m| (m.peer, m.capacity))
            .collect()
    }

    const T0: Millis = Millis(1_000);

    #[test]
    fn members_are_sorted_and_expire_without_news() {
        let mut m = Membership::default();
        assert_eq!(m.observe(ann(3, 1, 10), T0), Change::Joined);
        assert_eq!(m.observe(ann(1, 2, 10), T0.after(TTL / 2)), Change::Joined);
        assert_eq!(m.generation(), 2);
        assert_eq!(peers(&m, T0), [(1, 2), (3, 1)]);
        assert_eq!(m.next_deadline(), Some(T0.after(TTL)));
        assert!(m.poll(Millis(T0.after(TTL).0 - 1)).is_empty());
        // 3 is not heard from within its ttl: gone, even before poll runs.
        assert_eq!(peers(&m, T0.after(TTL)), [(1, 2)]);
        assert_eq!(m.poll(T0.after(TTL)), [3]);
        assert_eq!(m.generation(), 3);
        assert!(!m.is_member(&3, T0.after(TTL)));
        assert_eq!(m.len(T0.after(TTL)), 1);
        // 1 expires next; then 3's memory is forgotten after MAX_TTL.
        assert_eq!(m.next_deadline(), Some(T0.after(TTL / 2).after(TTL)));
        assert_eq!(m.poll(T0.after(TTL * 2)), [1]);
        assert!(m.is_empty(T0.after(TTL * 2)));
        m.poll(T0.after(TTL * 2).after(MAX_TTL));
        assert_eq!(m.next_deadline(), None);
    }

    #[test]
    fn the_newest_announcement_wins() {
        let mut m = Membership::default();
        m.observe(ann(1, 2, 10), T0);
        // Older or a copy: ignored, and it does not extend the expiry.
        assert_eq!(m.observe(ann(1, 9, 5), T0.after(TTL / 2)), Change::Ignored);
        assert_eq!(m.observe(ann(1, 2, 10), T0.after(TTL / 2)), Change::Ignored);
        assert_eq!(m.next_deadline(), Some(T0.after(TTL)));
        assert_eq!(peers(&m, T0), [(1, 2)]);
        let g = m.generation();
        // Newer, same capacity: a refresh placement does not see.
        assert_eq!(
            m.observe(ann(1, 2, 11), T0.after(TTL / 2)),
            Change::Refreshed
        );
        assert_eq!(m.generation(), g);
        assert_eq!(m.next_deadline(), Some(T0.after(TTL / 2).after(TTL)));
        assert_eq!(
            m.observe(ann(1, 5, 12), T0.after(TTL / 2)),
            Change::Capacity
        );
        assert_eq!(m.generation(), g + 1);
        assert_eq!(peers(&m, T0), [(1, 5)]);
    }

    #[test]
    fn a_leave_takes_effect_at_once_and_only_newer_news_rejoins() {
        let mut m = Membership::default();
        m.observe(ann(1, 1, 10), T0);
        m.observe(ann(2, 1, 10), T0);
        assert_eq!(m.leave(&1, T0), Change::Left);
        assert_eq!(m.leave(&1, T0), Change::Ignored);
        assert_eq!(m.leave(&7, T0), Change::Ignored);
        assert_eq!(m.generation(), 3);
        assert_eq!(peers(&m, T0), [(2, 1)]);
        // A late copy of its last announcement does not bring it back.
        assert_eq!(m.observe(ann(1, 1, 10), T0), Change::Ignored);
        assert_eq!(m.observe(ann(1, 1, 20), T0), Change::Joined);
        assert_eq!(peers(&m, T0), [(1, 1), (2, 1)]);
    }

    #[test]
    fn a_member_rejoins_after_expiry() {
        let mut m = Membership::default();
        m.observe(ann(1, 1, 10), T0);
        let later = T0.after(TTL * 3);
        assert_eq!(m.poll(later), [1]);
        assert_eq!(m.observe(ann(1, 1, 10), later), Change::Ignored);
        assert_eq!(m.observe(ann(1, 4, 90), later), Change::Joined);
        assert_eq!(peers(&m, later), [(1, 4)]);
        // Rejoining before poll noticed the expiry counts as a join too.
        assert_eq!(
            m.observe(ann(1, 4, 91), later.after(TTL * 2)),
            Change::Joined
        );
    }

    #[test]
    fn the_limit_refuses_new_peers_and_ttls_are_capped() {
        let mut m = Membership::with_limit(2);
        m.observe(ann(1, 1, 1), T0);
        m.observe(ann(2, 1, 1), T0);
        assert_eq!(m.observe(ann(3, 1, 1), T0), Change::Ignored);
        assert_eq!(m.observe(ann(2, 3, 2), T0), Change::Capacity);
        let mut forever = ann(1, 1, 2);
        forever.ttl = Duration::MAX;
        m.observe(forever, T0);
        assert!(!m.is_member(&1, T0.after(MAX_TTL)));
    }
}
