//! Member records: signing and gossiping this member's, judging the ones gossip brings, and
//! taking them into the membership and the rebalancer.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use cid::Cid;
use ipvec_protocol::{
    dagcbor,
    member::{HeldShard, MemberRecord, MemberState, MemberStatement},
};
use libp2p::PeerId;

use super::{members_topic, Node};
use crate::cluster::{
    members::{Announcement, Change},
    rebalance::Input,
    Millis,
};

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn peer_of_key(key: &[u8]) -> Option<PeerId> {
    let key = libp2p::identity::ed25519::PublicKey::try_from_bytes(key).ok()?;
    Some(PeerId::from_public_key(&libp2p::identity::PublicKey::from(
        key,
    )))
}

impl Node {
    /// Signs and gossips this node's member record of collection `id`, and counts it here.
    pub(super) async fn publish_member(&self, id: &str) {
        let ttl = self.member_ttl();
        let now = self.now();
        let record = self
            .inner
            .groups
            .with(id, |g| {
                let own = g.own.as_mut()?;
                own.issued = unix_millis().max(own.issued + 1);
                own.published = Some(now);
                let state = if own.rebalancer.has_left() {
                    MemberState::Left
                } else if own.saved.leaving {
                    MemberState::Leaving
                } else {
                    MemberState::Serving
                };
                let statement = MemberStatement {
                    collection: g.owner,
                    capacity: own.saved.capacity,
                    issued: own.issued,
                    ttl: ttl.as_secs(),
                    state,
                    holds: own
                        .announced
                        .iter()
                        .map(|(&shard, &root)| HeldShard { shard, root })
                        .collect(),
                };
                MemberRecord::sign(statement, self.inner.repo.key()).ok()
            })
            .flatten();
        let Some(record) = record else { return };
        self.hear_member(id, &record);
        let (Ok(network), Ok(bytes)) = (self.network(), dagcbor::encode(&record)) else {
            return;
        };
        // No peer subscribed yet is not an error: the next record goes out a third of a
        // ttl later.
        if let Err(e) = network.publish(members_topic(id), bytes).await {
            tracing::debug!(collection = %id, error = %e, "member record not gossiped");
        }
    }

    /// Judges a gossiped member record: counted if signed and new, its holds reported.
    pub(in crate::ops) fn judge_member(&self, message: &crate::net::Gossip) -> crate::net::Verdict {
        use crate::net::Verdict;
        let Some(id) = message.topic.strip_prefix(&members_topic("")) else {
            return Verdict::Reject;
        };
        let Ok(record) = dagcbor::decode::<MemberRecord>(&message.data) else {
            return Verdict::Reject;
        };
        let Some(owner) = self.inner.groups.with(id, |g| g.owner) else {
            return Verdict::Ignore;
        };
        if record.collection != owner || record.verify().is_err() {
            self.inner.metrics.member_record("rejected");
            return Verdict::Reject;
        }
        match self.hear_member(id, &record) {
            Change::Ignored => {
                self.inner.metrics.member_record("ignored");
                Verdict::Ignore
            }
            _ => {
                self.inner.metrics.member_record("accepted");
                Verdict::Accept
            }
        }
    }

    /// Takes a verified member record of collection `id` into its membership and, on a
    /// member, its rebalancer.
    fn hear_member(&self, id: &str, record: &MemberRecord) -> Change {
        let Some(peer) = peer_of_key(&record.peer) else {
            return Change::Ignored;
        };
        let now = self.now();
        let outcome = self.inner.groups.with(id, |g| {
            let change = if record.state == MemberState::Left {
                g.members.leave(&peer, now)
            } else {
                g.members.observe(
                    Announcement {
                        peer,
                        // A leaving member gets no placement.
                        capacity: if record.state == MemberState::Leaving {
                            0
                        } else {
                            record.capacity
                        },
                        issued: Millis(record.issued),
                        ttl: Duration::from_secs(record.ttl),
                    },
                    now,
                )
            };
            if change == Change::Ignored {
                return (change, Vec::new());
            }
            let holds: BTreeMap<u32, Cid> = if record.state == MemberState::Left {
                BTreeMap::new()
            } else {
                record.holds.iter().map(|h| (h.shard, h.root)).collect()
            };
            let before = g.holds.insert(peer, holds.clone()).unwrap_or_default();
            let mut actions = Vec::new();
            if let Some(own) = g.own.as_mut() {
                if own.generation != Some(g.members.generation()) {
                    own.generation = Some(g.members.generation());
                    let members = g.members.members(now);
                    actions.extend(own.handle(Input::Members(members), now));
                }
                let released: BTreeSet<u32> = before
                    .keys()
                    .filter(|s| !holds.contains_key(s))
                    .copied()
                    .collect();
                for shard in released {
                    actions.extend(own.handle(Input::Released { peer, shard }, now));
                }
                for (&shard, &root) in &holds {
                    actions.extend(own.handle(Input::Holds { peer, shard, root }, now));
                }
            }
            (change, actions)
        });
        let Some((change, actions)) = outcome else {
            return Change::Ignored;
        };
        self.carry_out_members(id, actions);
        change
    }
}
