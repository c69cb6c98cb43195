//! Members of community collections: the daemon's adapter of the
//! [`members`](crate::cluster::members) and [`rebalance`](crate::cluster::rebalance) cores.
//!
//! `ipvec join ID` makes this node a member: it registers the collection as a replica that
//! holds no shard yet (the manifest and shard roots only), and from then on signs a
//! [`MemberRecord`] — its capacity and the shards it holds at which roots — and gossips it
//! on the collection's member topic every third of the record's time to live
//! (`p2p.member_ttl_secs`). Every node holding the collection hears the records: they make
//! the membership (a member not heard from within the ttl drops out) and, on a member, feed
//! its rebalancer, whose actions this file carries out: fetch a shard placement gives it
//! (only the blocks missing), announce it (DHT provider record and the next member record),
//! drop one placed elsewhere once its new holders hold it, exchange heads with a co-holder
//! at another root. `ipvec leave` hands the shards over, then drops the collection.
//!
//! The cores are fed on a tick ([`TICK`]): the collection's shard roots and the shards held
//! as they stand (a catch-up to a new head moves them), the membership's expiries, the
//! rebalancer's timers. A member's state (capacity, leaving) is kept in the collection's
//! folder (`member`), so a restarted daemon goes on serving.
//!
//! # Layout
//! - this file: joining, leaving, the membership and the tick.
//! - `carry`: carrying out the rebalancer's actions (fetch, announce, drop, reconcile).
//! - `records`: this member's signed records, and judging and hearing others'.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Mutex,
    time::Duration,
};

use cid::Cid;
use ipvec_protocol::api::{JoinCollection, MemberInfo, MemberShard, MembershipInfo};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

mod carry;
mod records;

use super::{Error, Node};
use crate::cluster::{
    members::Membership,
    rebalance::{Action, Config, Input, Rebalancer},
    Millis,
};

/// How often the cores are fed what changed and polled.
pub const TICK: Duration = Duration::from_millis(500);
/// Capacity offered when `join` names none.
pub const DEFAULT_CAPACITY: u64 = 1 << 30;
/// Shard fetches a member runs at once.
const MAX_FETCHES: usize = 2;
/// After a failed shard fetch, how long before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The gossipsub topic of a collection's member records.
pub fn members_topic(collection_id: &str) -> String {
    format!("/ipvec/members/1.0.0/{collection_id}")
}

/// What a member keeps in its collection's folder (`member`, JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Saved {
    capacity: u64,
    leaving: bool,
}

/// One collection's members as this node knows them, and its own part when a member.
#[derive(Debug)]
struct Group {
    name: String,
    /// The owner's key: the collection as placement hashes it.
    owner: [u8; 32],
    members: Membership<PeerId>,
    /// The shards each member last said it holds.
    holds: BTreeMap<PeerId, BTreeMap<u32, Cid>>,
    /// This node's part, when it joined.
    own: Option<Own>,
}

/// This node as a member of a collection.
#[derive(Debug)]
struct Own {
    saved: Saved,
    rebalancer: Rebalancer<PeerId, Cid>,
    /// The membership generation last given to the rebalancer.
    generation: Option<u64>,
    /// The roots last given to it.
    roots: Vec<Cid>,
    /// Shards with a fetch or a drop under way: the tick leaves them alone.
    busy: BTreeSet<u32>,
    /// Counts the fetches and drops ended: a tick that read the collection before one
    /// ended does not judge what it read.
    ended: u64,
    /// The shards held here at their roots, as announced.
    announced: BTreeMap<u32, Cid>,
    /// When the last record was published; none: publish at the next tick.
    published: Option<Millis>,
    /// The `issued` of the last record (milliseconds since the Unix epoch, growing).
    issued: u64,
}

impl Own {
    /// The rebalancer's answer to `input`, its fetches and drops marked under way.
    fn handle(&mut self, input: Input<PeerId, Cid>, now: Millis) -> Vec<Action<PeerId, Cid>> {
        let actions = self.rebalancer.handle(input, now);
        self.mark(actions)
    }

    /// What the rebalancer has due at `now`, marked as [`Own::handle`] marks it.
    fn poll(&mut self, now: Millis) -> Vec<Action<PeerId, Cid>> {
        let actions = self.rebalancer.poll(now);
        self.mark(actions)
    }

    fn mark(&mut self, actions: Vec<Action<PeerId, Cid>>) -> Vec<Action<PeerId, Cid>> {
        for action in &actions {
            if let Action::Fetch { shard, .. } | Action::Drop { shard } = action {
                self.busy.insert(*shard);
            }
        }
        actions
    }

    /// A fetch or drop of `shard` ended (its outcome, if any, is fed next).
    fn ended(&mut self, shard: u32) {
        self.busy.remove(&shard);
        self.ended += 1;
    }

    /// Tells the rebalancer what the collection holds when it believes otherwise: a shard
    /// held at a root it does not know (fetched, or moved by a catch-up to a new version), or
    /// one it believes held that is not. Shards with a fetch or drop under way are left alone.
    fn reconcile(&mut self, roots: &[Cid], held: &[u32], now: Millis) -> Vec<Action<PeerId, Cid>> {
        let mut actions = Vec::new();
        for s in self.rebalancer.status(now) {
            if self.busy.contains(&s.shard) || s.fetching.is_some() {
                continue;
            }
            let here = held
                .contains(&s.shard)
                .then(|| roots.get(s.shard as usize).copied())
                .flatten();
            let shard = s.shard;
            match (here, s.held) {
                (Some(root), believed) if believed != Some(root) => {
                    actions.extend(self.handle(Input::Fetched { shard, root }, now));
                }
                (None, Some(_)) => actions.extend(self.handle(Input::Lost { shard }, now)),
                _ => {}
            }
        }
        actions
    }
}

/// The collections whose members this node follows, by id.
#[derive(Debug, Default)]
pub(super) struct Groups {
    by_id: Mutex<BTreeMap<String, Group>>,
}

impl Groups {
    fn with<T>(&self, id: &str, f: impl FnOnce(&mut Group) -> T) -> Option<T> {
        self.by_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(id)
            .map(f)
    }
}

fn saved_path(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("member")
}

fn save(dir: &std::path::Path, saved: Saved) -> Result<(), Error> {
    let bytes = serde_json::to_vec(&saved).map_err(|e| Error::internal(e.to_string()))?;
    Ok(crate::collection::catalog::write_atomic(
        &saved_path(dir),
        &bytes,
    )?)
}

fn rebalance_config(replication: u32, ttl: Duration) -> Config {
    Config {
        replication: replication.max(1) as usize,
        max_fetches: MAX_FETCHES,
        report_ttl: ttl,
        announce_every: ttl / 3,
        reconcile_every: (ttl / 2).max(Duration::from_secs(1)),
        retry_after: RETRY_AFTER,
    }
}

impl Node {
    fn now(&self) -> Millis {
        Millis(self.inner.started.elapsed().as_millis() as u64)
    }

    fn member_ttl(&self) -> Duration {
        Duration::from_secs(self.inner.config.p2p.member_ttl_secs.max(1))
    }

    /// Makes this node a member of collection `request.id`: registers it (holding no shard
    /// yet) unless it is held here, then announces itself and fetches what placement gives it.
    pub async fn join(&self, request: JoinCollection) -> Result<MembershipInfo, Error> {
        self.network()?;
        let capacity = request.capacity.unwrap_or(DEFAULT_CAPACITY);
        if capacity == 0 {
            return Err(Error::invalid(
                "a member's capacity must be positive: give the bytes this node offers \
                 (`--capacity 10G`), or leave it out for 1 GiB",
            ));
        }
        let name = match self.name_of_id(&request.id) {
            Some(name) => name,
            None => {
                self.fetch_holding(&request.id, request.name, &request.from, Some(vec![]))
                    .await?
                    .name
            }
        };
        let c = self.collection(&name).await?;
        let dir = {
            let c = c.read().await;
            if c.writable() {
                return Err(Error::conflict(format!(
                    "this node writes collection {name} and holds every shard of it already; \
                     members are the other nodes that help serve it"
                )));
            }
            c.dir().to_path_buf()
        };
        let saved = Saved {
            capacity,
            leaving: false,
        };
        save(&dir, saved)?;
        self.start_member(&name, saved).await?;
        self.membership(&name).await
    }

    /// Hands this node's shards of collection `name` (or id) over, then leaves: once their
    /// new holders have them the collection is dropped here.
    pub async fn leave(&self, name: &str) -> Result<MembershipInfo, Error> {
        let name = self.name_of_id(name).unwrap_or_else(|| name.to_string());
        let c = self.collection(&name).await?;
        let (id, dir) = {
            let c = c.read().await;
            (c.id()?, c.dir().to_path_buf())
        };
        let now = self.now();
        let actions = self
            .inner
            .groups
            .with(&id, |g| {
                let own = g.own.as_mut()?;
                own.saved.leaving = true;
                own.published = None;
                Some(own.handle(Input::Leave, now))
            })
            .flatten()
            .ok_or_else(|| {
                Error::conflict(format!(
                    "this node is not a member of collection {name}: `ipvec join {id}` makes it one"
                ))
            })?;
        let saved = self
            .inner
            .groups
            .with(&id, |g| g.own.as_ref().map(|o| o.saved));
        if let Some(Some(saved)) = saved {
            save(&dir, saved)?;
        }
        self.publish_member(&id).await;
        self.carry_out_members(&id, actions);
        self.membership(&name).await
    }

    /// This node's view of collection `name`'s members and, when it is one, its shards.
    pub async fn membership(&self, name: &str) -> Result<MembershipInfo, Error> {
        let c = self.collection(name).await?;
        let id = c.read().await.id()?;
        self.membership_of(&id).ok_or_else(|| {
            Error::not_found(format!(
                "no member of collection {name} is known here: `ipvec join {id}` makes this \
                 node one"
            ))
        })
    }

    /// [`Node::membership`] of the collection with id `id`, when its members are followed.
    pub(super) fn membership_of(&self, id: &str) -> Option<MembershipInfo> {
        let me = self.inner.repo.peer_id();
        let now = self.now();
        self.inner.groups.with(id, |g| {
            let members = g
                .members
                .members(now)
                .into_iter()
                .map(|m| MemberInfo {
                    peer_id: m.peer.to_string(),
                    capacity: m.capacity,
                    here: m.peer == me,
                    holds: g
                        .holds
                        .get(&m.peer)
                        .map(|h| h.keys().copied().collect())
                        .unwrap_or_default(),
                })
                .collect();
            let (state, capacity, shards) = match &g.own {
                None => ("observing", 0, Vec::new()),
                Some(own) => (
                    if own.saved.leaving {
                        "leaving"
                    } else {
                        "serving"
                    },
                    own.saved.capacity,
                    own.rebalancer
                        .status(now)
                        .into_iter()
                        .map(|s| MemberShard {
                            shard: s.shard,
                            placed: s.wanted,
                            current: s.is_current(),
                            held: s.held.is_some(),
                            fetching: s.fetching.is_some(),
                            holders: s.holders as u32,
                            replication: s.replication as u32,
                        })
                        .collect(),
                ),
            };
            MembershipInfo {
                name: g.name.clone(),
                id: id.to_string(),
                state: state.to_string(),
                capacity,
                members,
                shards,
            }
        })
    }

    /// The members placement gives each shard of collection `id` (with `shards` shards and
    /// `replication` holders each), when its members are followed here.
    pub(super) fn placement_of(
        &self,
        id: &str,
        shards: u32,
        replication: u32,
    ) -> Option<Vec<Vec<PeerId>>> {
        let now = self.now();
        self.inner.groups.with(id, |g| {
            let members = g.members.members(now);
            crate::cluster::placement::place(&g.owner, shards, &members, replication as usize)
                .into_holders()
        })
    }

    /// Follows the members of collection `name` (its member topic), without joining.
    pub(super) async fn observe_members(&self, name: &str) -> Result<(), Error> {
        let Ok(network) = self.network() else {
            return Ok(());
        };
        let c = self.collection(name).await?;
        let (id, owner) = {
            let c = c.read().await;
            (c.id()?, owner_key(c.head())?)
        };
        let new = {
            let mut groups = self
                .inner
                .groups
                .by_id
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let fresh = !groups.contains_key(&id);
            groups.entry(id.clone()).or_insert_with(|| Group {
                name: name.to_string(),
                owner,
                members: Membership::default(),
                holds: BTreeMap::new(),
                own: None,
            });
            fresh
        };
        if new {
            network.subscribe(members_topic(&id)).await?;
        }
        Ok(())
    }

    /// Starts this node's part as a member of collection `name`.
    async fn start_member(&self, name: &str, saved: Saved) -> Result<(), Error> {
        self.observe_members(name).await?;
        let c = self.collection(name).await?;
        let (id, shards, replication) = {
            let c = c.read().await;
            (
                c.id()?,
                c.manifest().shards.len() as u32,
                c.manifest().replication,
            )
        };
        let me = self.inner.repo.peer_id();
        let config = rebalance_config(replication, self.member_ttl());
        self.inner.groups.with(&id, |g| -> Result<(), Error> {
            match &mut g.own {
                Some(own) => own.saved = saved,
                None => {
                    let mut rebalancer = Rebalancer::new(me, g.owner.to_vec(), shards, config)
                        .map_err(|e| Error::internal(e.to_string()))?;
                    if saved.leaving {
                        rebalancer.handle(Input::Leave, Millis(0));
                    }
                    g.own = Some(Own {
                        saved,
                        rebalancer,
                        generation: None,
                        roots: Vec::new(),
                        busy: BTreeSet::new(),
                        ended: 0,
                        announced: BTreeMap::new(),
                        published: None,
                        issued: 0,
                    })
                }
            }
            Ok(())
        });
        self.tick_members(&id).await;
        Ok(())
    }

    /// Resumes the memberships kept in the collections' folders (a restarted daemon), and
    /// follows the members of every other collection held.
    async fn resume_members(&self) {
        for (name, c) in self.open_collections().await {
            let dir = c.read().await.dir().to_path_buf();
            let started = match std::fs::read(saved_path(&dir)) {
                Ok(bytes) => match serde_json::from_slice::<Saved>(&bytes) {
                    Ok(saved) => self.start_member(&name, saved).await,
                    Err(e) => Err(Error::internal(format!(
                        "{} does not parse ({e}); `ipvec join` the collection again",
                        saved_path(&dir).display()
                    ))),
                },
                Err(_) => self.observe_members(&name).await,
            };
            if let Err(e) = started {
                tracing::warn!(collection = %name, error = %e, "cannot follow the collection's members");
            }
        }
    }

    /// Runs the members' tick until the node stops (the daemon starts it).
    pub fn run_members(&self) {
        let node = self.clone();
        self.inner.tasks.spawn(async move {
            let mut every = tokio::time::interval(TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut resumed = false;
            loop {
                every.tick().await;
                if !resumed && node.is_ready() {
                    resumed = true;
                    node.resume_members().await;
                }
                let ids: Vec<String> = node
                    .inner
                    .groups
                    .by_id
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .keys()
                    .cloned()
                    .collect();
                for id in ids {
                    node.tick_members(&id).await;
                }
            }
        });
    }

    /// Feeds collection `id`'s cores what changed and what is due, publishes this member's
    /// record when due, and carries out the rebalancer's actions.
    async fn tick_members(&self, id: &str) {
        let Some(name) = self.name_of_id(id) else {
            // Dropped: nothing more to follow.
            self.inner
                .groups
                .by_id
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id);
            return;
        };
        let Ok(c) = self.collection(&name).await else {
            return;
        };
        // Fetches and drops that end after this are not judged from what is read here.
        let Some(ended) = self
            .inner
            .groups
            .with(id, |g| g.own.as_ref().map(|o| o.ended))
        else {
            return;
        };
        // Not waited for: a fetch holds the collection while it opens a shard's index, and
        // the member's record must go out on time all the same.
        let state = c
            .try_read()
            .ok()
            .map(|c| (c.manifest().shards.clone(), c.held_shards()));
        let now = self.now();
        let refresh = self.member_ttl() / 3;
        let (actions, publish) = self
            .inner
            .groups
            .with(id, |g| {
                g.members.poll(now);
                let Some(own) = g.own.as_mut() else {
                    return (Vec::new(), false);
                };
                let mut actions = Vec::new();
                if let Some((roots, held)) = &state {
                    if own.roots != *roots {
                        own.roots = roots.clone();
                        actions.extend(own.handle(Input::Roots(roots.clone()), now));
                    }
                    if ended == Some(own.ended) {
                        actions.extend(own.reconcile(roots, held, now));
                    }
                }
                if own.generation != Some(g.members.generation()) {
                    own.generation = Some(g.members.generation());
                    let members = g.members.members(now);
                    actions.extend(own.handle(Input::Members(members), now));
                }
                actions.extend(own.poll(now));
                let publish = own.published.is_none_or(|at| at.after(refresh) <= now);
                (actions, publish)
            })
            .unwrap_or_default();
        if publish {
            self.publish_member(id).await;
        }
        self.carry_out_members(id, actions);
    }
}

/// The owner's 32-byte key a head names.
fn owner_key(head: &ipvec_protocol::head::HeadRecord) -> Result<[u8; 32], Error> {
    head.collection
        .as_slice()
        .try_into()
        .map_err(|_| Error::internal("a head's collection key is not 32 bytes"))
}
