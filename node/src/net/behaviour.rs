//! The libp2p behaviours a node runs, combined into one.

use std::time::Duration;

use libp2p::{
    allow_block_list::{self, BlockedPeers},
    connection_limits::{self, ConnectionLimits},
    gossipsub, identify,
    identity::Keypair,
    kad, mdns, ping,
    swarm::behaviour::toggle::Toggle,
    swarm::NetworkBehaviour,
    StreamProtocol,
};

use super::{NetConfig, AGENT, IDENTIFY_PROTOCOL, KAD_PROTOCOL};

/// Keys this node can announce at once (a collection and each of its shards are one each);
/// libp2p's default of 1,024 would be reached by 64 collections of 15 shards.
pub const MAX_PROVIDED_KEYS: usize = 1 << 16;

/// Denied peers, identify, ping, Kademlia on `/ipvec/kad/1.0.0` (and on the IPFS DHT if on),
/// mDNS (if on), connection limits, raw streams and gossipsub.
// libp2p's behaviours do not all implement Debug.
#[allow(missing_debug_implementations)]
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Denied peers: their connections are refused before any other behaviour sees them.
    pub deny: allow_block_list::Behaviour<BlockedPeers>,
    pub limits: connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// The public IPFS DHT (`/ipfs/kad/1.0.0`), when the node announces roots there.
    pub ipfs_kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Raw streams of the protocols written here (Bitswap, heads, search), both ways.
    pub raw: super::raw::Behaviour,
    /// Signed heads of new versions, one topic per collection.
    pub gossipsub: gossipsub::Behaviour,
}

impl Behaviour {
    /// The behaviours for the node with `key`.
    pub fn new(key: &Keypair, config: &NetConfig) -> std::io::Result<Self> {
        let peer_id = key.public().to_peer_id();
        let limits = ConnectionLimits::default()
            .with_max_established(Some(config.max_connections))
            .with_max_established_per_peer(Some(2))
            .with_max_pending_incoming(Some(64))
            .with_max_pending_outgoing(Some(64));
        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
                .with_agent_version(AGENT.to_string())
                .with_interval(Duration::from_secs(5 * 60)),
        );
        let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
        kad_config
            .set_query_timeout(Duration::from_secs(30))
            .set_periodic_bootstrap_interval(Some(config.bootstrap_interval))
            .set_provider_publication_interval(Some(config.reprovide_interval))
            .set_provider_record_ttl(Some(config.provider_ttl));
        let store = || {
            kad::store::MemoryStore::with_config(
                peer_id,
                kad::store::MemoryStoreConfig {
                    // A collection and each of its shards are a key each.
                    max_provided_keys: MAX_PROVIDED_KEYS,
                    ..Default::default()
                },
            )
        };
        let mut kad = kad::Behaviour::with_config(peer_id, store(), kad_config);
        // Answer DHT queries even where no address is confirmed as public (LANs, loopback).
        kad.set_mode(Some(kad::Mode::Server));
        // On the IPFS DHT the node is a client until an address of its is confirmed public
        // (libp2p's automatic mode): it must not claim to serve a network it cannot be reached
        // from.
        let ipfs_kad = config.ipfs_dht.as_ref().map(|_| {
            let mut c = kad::Config::new(kad::PROTOCOL_NAME);
            c.set_query_timeout(Duration::from_secs(60))
                .set_periodic_bootstrap_interval(Some(config.bootstrap_interval))
                .set_provider_publication_interval(Some(config.reprovide_interval))
                .set_provider_record_ttl(Some(config.provider_ttl));
            kad::Behaviour::with_config(peer_id, store(), c)
        });
        let mdns = if config.mdns {
            Some(mdns::tokio::Behaviour::new(
                mdns::Config::default(),
                peer_id,
            )?)
        } else {
            None
        };
        let gossip_config = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Strict)
            // Every head is checked (signature, writer, sequence) before it is forwarded.
            .validate_messages()
            .max_transmit_size(super::MAX_GOSSIP_BYTES)
            .heartbeat_interval(Duration::from_secs(1))
            .message_id_fn(|m: &gossipsub::Message| {
                gossipsub::MessageId::from(blake3::hash(&m.data).as_bytes().to_vec())
            })
            .build()
            .map_err(std::io::Error::other)?;
        let mut gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossip_config,
        )
        .map_err(std::io::Error::other)?;
        // Peers that forward invalid heads lose score (see `topic_score`).
        gossipsub
            .with_peer_score(
                gossipsub::PeerScoreParams::default(),
                gossipsub::PeerScoreThresholds::default(),
            )
            .map_err(std::io::Error::other)?;
        let mut deny = allow_block_list::Behaviour::<BlockedPeers>::default();
        for peer in &config.deny {
            deny.block_peer(*peer);
        }
        Ok(Self {
            deny,
            gossipsub,
            limits: connection_limits::Behaviour::new(limits),
            identify,
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(15))),
            kad,
            ipfs_kad: ipfs_kad.into(),
            mdns: mdns.into(),
            raw: Default::default(),
        })
    }
}

/// Scoring of a heads topic: an invalid head costs its forwarder 100 points (decaying);
/// heads are rare, so quiet meshes are not penalised.
pub fn topic_score() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        invalid_message_deliveries_weight: -100.0,
        invalid_message_deliveries_decay: 0.5,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        ..gossipsub::TopicScoreParams::default()
    }
}
