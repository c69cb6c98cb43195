//! Per-peer request rates for the peer-to-peer protocols (head requests, Bitswap wants): a
//! shared, lockable [`Buckets`] keyed by peer, counting what it refused.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Instant,
};

use libp2p::PeerId;

use super::bucket::{Buckets, Rate, Verdict};

/// Peers whose rates are remembered at most, per protocol (the quietest are forgotten).
pub const MAX_PEERS: usize = 4_096;

/// One protocol's per-peer rate.
#[derive(Debug)]
pub struct PeerRate {
    buckets: Mutex<Buckets<PeerId>>,
    refused: AtomicU64,
}

impl PeerRate {
    /// `per_second` requests a second per peer in bursts of twice as many (0: unlimited).
    pub fn new(per_second: u32) -> Self {
        Self {
            buckets: Mutex::new(Buckets::new(
                Rate::new(per_second, per_second.saturating_mul(2)),
                MAX_PEERS,
            )),
            refused: AtomicU64::new(0),
        }
    }

    /// Changes the rate to `per_second` a peer (bursts of twice as many; 0: unlimited),
    /// forgetting every peer's budget.
    pub fn set(&self, per_second: u32) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        *buckets = Buckets::new(
            Rate::new(per_second, per_second.saturating_mul(2)),
            MAX_PEERS,
        );
    }

    /// Takes `cost` requests' worth from `peer`'s budget at `now`; how many of them fit when
    /// not all do (wants are admitted one by one, so a long wantlist is partly served).
    pub fn admit(&self, peer: PeerId, cost: u32, now: Instant) -> u32 {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.rate().is_unlimited() {
            return cost;
        }
        let mut admitted = 0;
        while admitted < cost && buckets.take(peer, 1.0, now).verdict == Verdict::Admitted {
            admitted += 1;
        }
        drop(buckets);
        if admitted < cost {
            self.refused
                .fetch_add(u64::from(cost - admitted), Ordering::Relaxed);
        }
        admitted
    }

    /// Requests refused since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_flooding_peer_is_cut_to_its_rate_while_another_is_served() {
        let rate = PeerRate::new(10);
        let (flood, calm) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let admitted: u32 = (0..100).map(|_| rate.admit(flood, 1, t0)).sum();
        assert_eq!(admitted, 20, "the burst is twice the rate");
        assert_eq!(rate.refused(), 80);
        assert_eq!(rate.admit(calm, 5, t0), 5);
        // Half a second later: five more of a wantlist of eight.
        assert_eq!(rate.admit(flood, 8, t0 + Duration::from_millis(500)), 5);
        assert_eq!(rate.refused(), 83);
        assert_eq!(PeerRate::new(0).admit(flood, 1_000_000, t0), 1_000_000);
    }
}
