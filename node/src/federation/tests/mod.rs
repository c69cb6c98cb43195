//! Federated search's examples and properties, on a virtual clock with small integer peers.
//!
//! - `rules`: one example per rule of the planner.
//! - `book`: the peer book: latency estimates, the circuit breaker, the budget, its bounds.
//! - `sim`: property tests over a small simulated network driven by the planner.

mod book;
mod rules;
mod sim;

use std::{collections::BTreeMap, time::Duration};

use cid::Cid;
use ipvec_protocol::{
    entry::EntryId,
    search::{ErrorCode, Hit, SearchAnswer, ShardAnswer, ShardError},
};

use super::*;
use crate::cluster::Millis;

type Peer = u8;

const T0: Millis = Millis(1_000);

fn peer(p: Peer) -> Holder<Peer> {
    Holder::Peer(p)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// At `n` milliseconds after [`T0`].
fn at(n: u64) -> Millis {
    T0.after(ms(n))
}

/// A query of the shards in `holders`, for `k` hits, ending `deadline` ms after [`T0`].
fn query(holders: &[(u32, Vec<Holder<Peer>>)], k: usize, deadline: u64) -> Query<Peer> {
    Query {
        shards: holders.iter().map(|(s, _)| *s).collect(),
        holders: holders.iter().cloned().collect::<BTreeMap<_, _>>(),
        k,
        deadline: at(deadline),
    }
}

/// The sends among `actions`: request, holder, shards, hedge.
fn sends(actions: &[Action<Peer>]) -> Vec<(RequestId, Holder<Peer>, Vec<u32>, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                request,
                to,
                shards,
                hedge,
            } => Some((*request, to.clone(), shards.clone(), *hedge)),
            Action::Cancel { .. } => None,
        })
        .collect()
}

/// The cancels among `actions`.
fn cancels(actions: &[Action<Peer>]) -> Vec<RequestId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Cancel { request } => Some(*request),
            Action::Send { .. } => None,
        })
        .collect()
}

fn root(shard: u32, seq: u64) -> Cid {
    let mut bytes = shard.to_le_bytes().to_vec();
    bytes.extend(seq.to_le_bytes());
    ipvec_protocol::cid::block_cid(ipvec_protocol::cid::DAG_CBOR, &bytes)
}

fn wire_hit(id: u64, score: f64) -> Hit {
    Hit {
        id: EntryId::Int(id).to_key().unwrap(),
        score,
        leaf: Some(root(u32::MAX, id)),
        meta: None,
    }
}

/// Shard `shard` answered at head `seq` with `hits` (id, score).
fn found(shard: u32, seq: u64, hits: &[(u64, f64)]) -> ShardAnswer {
    ShardAnswer {
        shard,
        root: Some(root(shard, seq)),
        seq: Some(seq),
        hits: hits.iter().map(|(id, s)| wire_hit(*id, *s)).collect(),
        error: None,
    }
}

fn refused(shard: u32, code: ErrorCode) -> ShardAnswer {
    ShardAnswer::failed(
        shard,
        ShardError::new(code, format!("{} here", code.as_str())),
    )
}

fn answer(request: RequestId, shards: Vec<ShardAnswer>) -> Input {
    Input::Answered {
        request,
        answer: SearchAnswer {
            shards,
            refused: None,
        },
    }
}

fn failed(request: RequestId, reason: &str) -> Input {
    Input::Failed {
        request,
        reason: reason.to_string(),
    }
}

/// A book that has heard `peer` answer in `latency` ms many times (so its p95 is about
/// `latency`).
fn steady(book: &mut PeerBook<Peer>, peer: Peer, latency: u64) {
    for _ in 0..40 {
        book.answered(&peer, ms(latency), T0);
    }
}
