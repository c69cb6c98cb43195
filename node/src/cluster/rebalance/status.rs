//! What the rebalancer shows of each shard: for collection info and the TUI.

use std::fmt::Debug;

use super::{Identity, Rebalancer};
use crate::cluster::Millis;

/// Where one shard of the collection stands on this member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardStatus<R> {
    /// The shard.
    pub shard: u32,
    /// Whether placement gives it to this member.
    pub wanted: bool,
    /// The root the collection's head names, once known.
    pub current: Option<R>,
    /// The root held here.
    pub held: Option<R>,
    /// The root being fetched.
    pub fetching: Option<R>,
    /// Members known to hold it at the current root, this one included.
    pub holders: usize,
    /// Copies placement wants: the replication factor, or every member that can hold it
    /// when there are fewer.
    pub replication: usize,
}

impl<R: PartialEq> ShardStatus<R> {
    /// Whether this member holds the shard at its current root.
    pub fn is_current(&self) -> bool {
        self.current.is_some() && self.held == self.current
    }
}

impl<P, R> Rebalancer<P, R>
where
    P: Identity + Ord + Clone + Debug,
    R: Clone + Eq + Debug,
{
    /// Where each shard stands at `now`, in shard order.
    pub fn status(&self, now: Millis) -> Vec<ShardStatus<R>> {
        (0u32..)
            .zip(&self.shards)
            .map(|(shard, s)| {
                let here = usize::from(s.current.is_some() && s.held == s.current);
                ShardStatus {
                    shard,
                    wanted: self.wanted(shard),
                    current: s.current.clone(),
                    held: s.held.clone(),
                    fetching: s.fetching.clone(),
                    holders: here + self.holders_at_current(shard, now, false),
                    replication: self.placement.holders(shard).len(),
                }
            })
            .collect()
    }
}
