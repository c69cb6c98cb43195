//! A small world of rebalancers wired together by a loop: members join, leave and change
//! capacity, fetches end or fail in any order, time passes. Whatever happens, no shard is
//! ever held at its root by fewer members than the replication factor, and once things
//! settle every shard is held by exactly the members placement names and every leaver has
//! left.
//!
//! The world delivers what one member says to every other member in the order it was said
//! (a queue, drained before the next event): a membership change reaches every member
//! before anything it causes, and a member's drop before anything it says later. These are
//! the conditions under which the rebalancer promises its floor (see its rules).

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;

use super::*;

const WORLD_SHARDS: u32 = 8;

#[derive(Debug, Clone)]
enum Event {
    Join(usize),
    Leave(usize),
    Capacity(usize, u64),
    Complete(usize),
    Fail(usize),
    Tick(u64),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        1 => any::<usize>().prop_map(Event::Join),
        1 => any::<usize>().prop_map(Event::Leave),
        1 => (any::<usize>(), 1u64..=3).prop_map(|(i, c)| Event::Capacity(i, c)),
        3 => any::<usize>().prop_map(Event::Complete),
        1 => any::<usize>().prop_map(Event::Fail),
        2 => (100u64..6_000).prop_map(Event::Tick),
    ]
}

/// One member of the world: its rebalancer and what it really holds.
struct Node {
    rb: Rb,
    held: BTreeMap<u32, u64>,
    /// Fetches it was asked to run.
    pending: Vec<u32>,
    joined: bool,
    leaving: bool,
    left: bool,
}

struct World {
    nodes: Vec<Node>,
    members: Vec<Member<u32>>,
    replication: usize,
    now: Millis,
    queue: VecDeque<(usize, Input<u32, u64>)>,
}

impl World {
    fn new(size: usize, initial: usize, replication: usize) -> Self {
        let config = config(replication, 2);
        let nodes = (0..size as u32)
            .map(|me| Node {
                rb: Rb::new(me, COLLECTION.to_vec(), WORLD_SHARDS, config.clone()).unwrap(),
                held: BTreeMap::new(),
                pending: Vec::new(),
                joined: false,
                leaving: false,
                left: false,
            })
            .collect();
        let mut world = Self {
            nodes,
            members: Vec::new(),
            replication,
            now: T0,
            queue: VecDeque::new(),
        };
        for n in 0..initial {
            world.nodes[n].joined = true;
            world.members.push(Member {
                peer: n as u32,
                capacity: 1,
            });
        }
        // Members first, then what the initial holders hold, then the head: nothing to
        // fetch.
        world.membership_changed();
        for shard in 0..WORLD_SHARDS {
            for h in holders(COLLECTION, shard, &world.members, replication) {
                world.nodes[h as usize].held.insert(shard, root(shard));
                let root = root(shard);
                world
                    .queue
                    .push_back((h as usize, Input::Fetched { shard, root }));
            }
        }
        let roots: Vec<u64> = (0..WORLD_SHARDS).map(root).collect();
        world.broadcast(None, |_| Input::Roots(roots.clone()));
        world
    }

    /// Queues an input for every member that has not left, but `from`.
    fn broadcast(&mut self, from: Option<usize>, input: impl Fn(usize) -> Input<u32, u64>) {
        for n in 0..self.nodes.len() {
            if Some(n) != from && !self.nodes[n].left {
                self.queue.push_back((n, input(n)));
            }
        }
        self.drain();
    }

    /// Tells every member the new membership: half of them as members to place, half with
    /// the placement computed once (as a simulator does).
    fn membership_changed(&mut self) {
        let members = self.members.clone();
        let placement = Arc::new(placement::place(
            COLLECTION,
            WORLD_SHARDS,
            &members,
            self.replication,
        ));
        self.broadcast(None, |n| match n % 2 {
            0 => Input::Members(members.clone()),
            _ => Input::Placed {
                members: members.clone().into(),
                placement: placement.clone(),
            },
        });
    }

    fn drain(&mut self) {
        while let Some((n, input)) = self.queue.pop_front() {
            if self.nodes[n].left {
                continue;
            }
            let actions = self.nodes[n].rb.handle(input, self.now);
            self.apply(n, actions);
        }
    }

    fn apply(&mut self, n: usize, actions: Vec<Action<u32, u64>>) {
        let peer = n as u32;
        for action in actions {
            match action {
                Action::Fetch { shard, root: r } => {
                    assert_eq!(r, root(shard));
                    assert!(!self.nodes[n].pending.contains(&shard));
                    self.nodes[n].pending.push(shard);
                }
                Action::Announce { shard, root } => {
                    assert_eq!(self.nodes[n].held.get(&shard), Some(&root));
                    let report = Input::Holds { peer, shard, root };
                    for m in 0..self.nodes.len() {
                        if m != n && !self.nodes[m].left {
                            self.queue.push_back((m, report.clone()));
                        }
                    }
                }
                Action::Drop { shard } => {
                    assert!(self.nodes[n].held.remove(&shard).is_some());
                    self.check_floor();
                    for m in 0..self.nodes.len() {
                        if m != n && !self.nodes[m].left {
                            self.queue.push_back((m, Input::Released { peer, shard }));
                        }
                    }
                }
                Action::Reconcile { .. } => panic!("one root per shard: nothing to reconcile"),
                Action::Left => {
                    let node = &mut self.nodes[n];
                    assert!(node.leaving && node.held.is_empty() && node.pending.is_empty());
                    node.left = true;
                }
            }
        }
    }

    /// Every shard is held at its root by at least `replication` members.
    fn check_floor(&self) {
        for shard in 0..WORLD_SHARDS {
            let copies = self
                .nodes
                .iter()
                .filter(|n| n.held.get(&shard) == Some(&root(shard)))
                .count();
            assert!(
                copies >= self.replication,
                "shard {shard} down to {copies} copies at {:?}",
                self.now
            );
        }
    }

    /// The `i`th pending fetch in the world (`None` when none is pending).
    fn pending(&self, i: usize) -> Option<(usize, u32)> {
        let all: Vec<(usize, u32)> = (0..self.nodes.len())
            .flat_map(|n| self.nodes[n].pending.iter().map(move |&s| (n, s)))
            .collect();
        (!all.is_empty()).then(|| all[i % all.len()])
    }

    /// Ends the fetch of `shard` by `n`: it succeeds if some member holds the shard.
    fn end_fetch(&mut self, n: usize, shard: u32, fail: bool) {
        self.nodes[n].pending.retain(|&s| s != shard);
        let source = self
            .nodes
            .iter()
            .any(|m| m.held.get(&shard) == Some(&root(shard)));
        let input = if source && !fail {
            self.nodes[n].held.insert(shard, root(shard));
            Input::Fetched {
                shard,
                root: root(shard),
            }
        } else {
            Input::FetchFailed { shard }
        };
        self.queue.push_back((n, input));
        self.drain();
    }

    fn tick(&mut self, ms: u64) {
        self.now = Millis(self.now.0 + ms);
        for n in 0..self.nodes.len() {
            if !self.nodes[n].left {
                let actions = self.nodes[n].rb.poll(self.now);
                self.apply(n, actions);
                self.drain();
            }
        }
    }

    fn step(&mut self, event: Event) {
        match event {
            Event::Join(i) => {
                let waiting: Vec<usize> = (0..self.nodes.len())
                    .filter(|&n| !self.nodes[n].joined)
                    .collect();
                if let Some(&n) = waiting.get(i % waiting.len().max(1)) {
                    self.nodes[n].joined = true;
                    self.members.push(Member {
                        peer: n as u32,
                        capacity: 1,
                    });
                    self.membership_changed();
                }
            }
            Event::Leave(i) => {
                // Enough members stay to hold every shard `replication` times.
                if self.members.len() > self.replication {
                    let peer = self.members.remove(i % self.members.len()).peer;
                    self.nodes[peer as usize].leaving = true;
                    self.queue.push_back((peer as usize, Input::Leave));
                    self.membership_changed();
                }
            }
            Event::Capacity(i, capacity) => {
                let at = i % self.members.len();
                self.members[at].capacity = capacity;
                self.membership_changed();
            }
            Event::Complete(i) | Event::Fail(i) => {
                if let Some((n, shard)) = self.pending(i) {
                    self.end_fetch(n, shard, matches!(event, Event::Fail(_)));
                }
            }
            Event::Tick(ms) => self.tick(ms),
        }
        self.check_floor();
    }

    /// Lets fetches end and time pass until nothing moves; then checks the world holds
    /// what placement says.
    fn settle(&mut self) {
        for _ in 0..200 {
            while let Some((n, shard)) = self.pending(0) {
                self.end_fetch(n, shard, false);
            }
            self.tick(1_000);
        }
        for shard in 0..WORLD_SHARDS {
            let mut placed = holders(COLLECTION, shard, &self.members, self.replication);
            placed.sort_unstable();
            let holding: Vec<u32> = (0..self.nodes.len() as u32)
                .filter(|&n| self.nodes[n as usize].held.contains_key(&shard))
                .collect();
            assert_eq!(holding, placed, "shard {shard}");
        }
        for node in &self.nodes {
            assert_eq!(node.leaving, node.left);
            assert!(node.pending.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any interleaving of joins, leaves, capacity changes, fetch ends and time: no shard
    /// ever has fewer than `replication` copies at its root, and the world settles on the
    /// placement.
    #[test]
    fn copies_never_fall_below_replication(
        size in 4usize..8,
        replication in 1usize..=3,
        initial in any::<prop::sample::Index>(),
        events in prop::collection::vec(event(), 0..60),
    ) {
        // At least replication + 1 members to start with.
        let initial = replication + 1 + initial.index(size - replication);
        let mut world = World::new(size, initial.min(size), replication);
        world.check_floor();
        for event in events {
            world.step(event);
        }
        world.settle();
    }
}
