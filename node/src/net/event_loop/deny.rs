//! Denied peers: the event loop's side of [`Network::deny`](crate::net::Network::deny).
//!
//! The refusal itself is libp2p's block list (`allow_block_list::Behaviour<BlockedPeers>`,
//! the first behaviour of [`Behaviour`](crate::net::behaviour::Behaviour)): it refuses a
//! denied peer's connections, inbound and outbound, as they are established, before any other
//! behaviour hears of them, and closes the ones open when the peer is denied. What is here
//! keeps the rest of the loop from reaching for the peer: dials by address or id fail at once
//! with a message naming the way back, the DHT forgets its addresses and does not return it
//! as a provider, and gossip it sent or first published is ignored (by the loop's callers of
//! [`EventLoop::is_denied`]).

use libp2p::{allow_block_list::Blocked, swarm::ConnectionDenied, PeerId};

use super::EventLoop;
use crate::net::NetError;

/// Whether a refused connection was refused because its peer is denied.
pub fn is_denial(cause: &ConnectionDenied) -> bool {
    cause.downcast_ref::<Blocked>().is_some()
}

/// The error of a dial to a denied peer, naming how to lift the denial.
pub fn refused(address: &str, peer: PeerId) -> NetError {
    NetError::Dial {
        address: address.to_string(),
        reason: format!("peer {peer} is denied on this node (`ipvec peers allow {peer}` lifts it)"),
    }
}

impl EventLoop {
    /// Whether `peer` is denied.
    pub(super) fn is_denied(&self, peer: &PeerId) -> bool {
        self.swarm.behaviour().deny.blocked_peers().contains(peer)
    }

    /// Refuses `peer`: closes its connections (the block list does, at its next poll),
    /// forgets its addresses in both DHTs, and drops it from the peers shown at once.
    pub(super) fn deny(&mut self, peer: PeerId) {
        let behaviour = self.swarm.behaviour_mut();
        behaviour.deny.block_peer(peer);
        behaviour.kad.remove_peer(&peer);
        if let Some(ipfs) = behaviour.ipfs_kad.as_mut() {
            ipfs.remove_peer(&peer);
        }
        self.peers.remove(&peer);
        tracing::info!(%peer, "peer denied");
    }

    /// Stops refusing `peer`; it is dialled again only when something asks for it.
    pub(super) fn allow(&mut self, peer: PeerId) {
        self.swarm.behaviour_mut().deny.unblock_peer(peer);
        tracing::info!(%peer, "peer allowed");
    }
}
