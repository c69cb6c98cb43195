//! This node on the network: its addresses, its peers, connections, the DHT's providers,
//! and announcing the collections it hosts. Each needs the swarm, which only a daemon runs.

use super::{Error, Node};
use ipvec_protocol::api::*;
use ipvec_protocol::cid as pcid;

impl Node {
    /// Gives the node its running swarm (the daemon does, once).
    pub fn attach_network(&self, network: crate::net::Network) {
        let limits = &self.inner.config.limits;
        network.limit_peers(limits.peer_head_rate, limits.peer_want_rate);
        self.serve_heads(&network);
        self.serve_searches(&network);
        let _ = self.inner.network.set(network);
    }

    pub(super) fn network(&self) -> Result<&crate::net::Network, Error> {
        self.inner.network.get().ok_or_else(|| {
            Error::unavailable(
                "the peer-to-peer layer runs in the daemon: start `ipvec daemon` and run this again",
            )
        })
    }

    /// This node on the network.
    pub async fn id(&self) -> Result<IdInfo, Error> {
        let peer_id = self.inner.repo.peer_id().to_string();
        let agent = crate::net::AGENT.to_string();
        let Some(network) = self.inner.network.get() else {
            return Ok(IdInfo {
                peer_id,
                addresses: Vec::new(),
                listen: self.inner.config.p2p.listen.clone(),
                observed: Vec::new(),
                agent,
            });
        };
        let local = network.local().await?;
        let with_id = |a: &libp2p::Multiaddr| format!("{a}/p2p/{peer_id}");
        let mut addresses: Vec<String> = local.listen.iter().map(with_id).collect();
        for a in local.observed.iter().map(with_id) {
            if !addresses.contains(&a) {
                addresses.push(a);
            }
        }
        Ok(IdInfo {
            addresses,
            listen: local.listen.iter().map(|a| a.to_string()).collect(),
            observed: local.observed.iter().map(|a| a.to_string()).collect(),
            peer_id,
            agent,
        })
    }

    /// The connected peers.
    pub async fn peers(&self) -> Result<PeerList, Error> {
        let network = self.network()?;
        let stats = network.bitswap().stats();
        let searches = self.federation_peers();
        let breakers: std::collections::HashMap<_, _> =
            self.peer_breakers().0.into_iter().collect();
        Ok(PeerList {
            peers: network
                .peers()
                .await?
                .into_iter()
                .map(|p| PeerOut {
                    blocks_sent: Some(stats.of_peer(&p.peer_id).sent),
                    blocks_received: Some(stats.of_peer(&p.peer_id).received),
                    peer_id: p.peer_id.to_string(),
                    address: p.address.to_string(),
                    direction: if p.outbound { "outbound" } else { "inbound" }.to_string(),
                    latency_ms: p.rtt.map(|d| d.as_secs_f64() * 1e3),
                    protocols: p.protocols,
                    agent: p.agent,
                    gossip_score: p.score,
                    searches: searches.get(&p.peer_id).cloned(),
                    breaker: Node::breaker_out(
                        breakers
                            .get(&p.peer_id)
                            .copied()
                            .unwrap_or(crate::outbound::BreakerState::Closed),
                    ),
                })
                .collect(),
        })
    }

    /// Connects to a peer.
    pub async fn connect(&self, address: &str) -> Result<Connected, Error> {
        let address: libp2p::Multiaddr = address.parse().map_err(|e| {
            Error::invalid(format!(
                "{address:?} is not a multiaddress ({e}); `ipvec id` on the other node prints its addresses"
            ))
        })?;
        if let Some(peer) = crate::net::peer_of(&address).filter(|p| self.is_denied(p)) {
            return Err(Error::invalid(format!(
                "peer {peer} is denied on this node: `ipvec peers allow {peer}` lifts it"
            )));
        }
        let peer = self.network()?.dial(address).await?;
        Ok(Connected {
            peer_id: peer.to_string(),
        })
    }

    /// The peers the DHT knows to provide `cid`.
    pub async fn providers(&self, cid: &str) -> Result<ProviderList, Error> {
        let key = pcid::parse_cid(cid)?;
        let found = self.network()?.providers(key).await?;
        Ok(ProviderList {
            key: key.to_string(),
            providers: found
                .into_iter()
                .map(|p| ProviderOut {
                    peer_id: p.peer_id.to_string(),
                    addresses: p.addresses.iter().map(|a| a.to_string()).collect(),
                })
                .collect(),
        })
    }

    /// Connects to each address in `from`; the peers' ids.
    pub(super) async fn dial_all(&self, from: &[String]) -> Result<Vec<libp2p::PeerId>, Error> {
        let mut peers = Vec::with_capacity(from.len());
        for address in from {
            let peer = self.connect(address).await?.peer_id;
            peers
                .push(peer.parse().map_err(|_| {
                    Error::internal("the swarm gave a peer id that does not parse")
                })?);
        }
        Ok(peers)
    }

    /// Announces in the DHT that this node hosts the shards of collection `name` it holds,
    /// and the collection itself when it holds them all.
    pub async fn announce(&self, name: &str) -> Result<(), Error> {
        let Some(network) = self.inner.network.get() else {
            return Ok(());
        };
        let c = self.collection(name).await?;
        let (id, held, whole) = {
            let c = c.read().await;
            (c.id()?, c.held_shards(), c.holds_all())
        };
        if whole {
            network
                .provide(ipvec_protocol::announce::collection_key(&id))
                .await?;
        }
        self.gossip_head(name).await?;
        for shard in held {
            network
                .provide(ipvec_protocol::announce::shard_key(&id, shard))
                .await?;
        }
        self.inner.replication.announced(&id);
        Ok(())
    }

    /// Withdraws the announcements of a collection with id `id` and `shards` shards.
    pub(super) async fn withdraw(&self, id: &str, shards: u32) {
        self.inner.replication.forget(id);
        if let Some(network) = self.inner.network.get() {
            let _ = network
                .stop_providing(ipvec_protocol::announce::collection_key(id))
                .await;
            for shard in 0..shards {
                let _ = network
                    .stop_providing(ipvec_protocol::announce::shard_key(id, shard))
                    .await;
            }
        }
    }
}
