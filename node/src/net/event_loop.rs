//! The task that owns the swarm: it answers [`Command`]s from [`super::Network`] handles and
//! turns swarm events into state (peers, addresses) and replies. Refusing denied peers is in
//! [`deny`].

pub mod deny;

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::Ordering,
    time::Instant,
};

use futures::StreamExt;
use libp2p::{
    core::ConnectedPoint,
    gossipsub, identify,
    identity::Keypair,
    kad, mdns, noise, ping,
    swarm::{dial_opts::DialOpts, ConnectionId, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    behaviour::{Behaviour, BehaviourEvent},
    peer_of, Command, Gossip, LocalInfo, NetConfig, NetError, PeerState, Provider, Verdict,
    KAD_PROTOCOL,
};

/// Peers refused at once for misbehaviour; one more replaces the ban nearest its end (the
/// misbehaving peer is disconnected all the same).
const MAX_BANNED: usize = 4096;

type ProvidersReply = oneshot::Sender<Result<Vec<Provider>, NetError>>;

/// The swarm and what the loop tracks about it.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    inbox: mpsc::Receiver<Command>,
    listen: Vec<Multiaddr>,
    observed: Vec<Multiaddr>,
    peers: HashMap<PeerId, PeerState>,
    dials: HashMap<ConnectionId, (Multiaddr, oneshot::Sender<Result<PeerId, NetError>>)>,
    provider_queries: HashMap<kad::QueryId, (HashSet<PeerId>, ProvidersReply)>,
    /// Peers refused until then, for misbehaviour.
    banned: HashMap<PeerId, Instant>,
    gossip: mpsc::Sender<Gossip>,
    dht: std::sync::Arc<super::DhtStats>,
    connections: std::sync::Arc<super::ConnectionStats>,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("peer_id", self.swarm.local_peer_id())
            .field("peers", &self.peers.len())
            .finish()
    }
}

impl EventLoop {
    /// Builds the swarm and starts listening and dialing the bootstrap peers.
    pub(crate) fn new(
        key: &Keypair,
        config: &NetConfig,
        inbox: mpsc::Receiver<Command>,
        gossip: mpsc::Sender<Gossip>,
        dht: std::sync::Arc<super::DhtStats>,
        connections: std::sync::Arc<super::ConnectionStats>,
    ) -> Result<(Self, super::raw::Opener, super::raw::Accepting), NetError> {
        let start = |e: &dyn std::fmt::Display| NetError::Start(e.to_string());
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| start(&e))?
            .with_quic()
            .with_behaviour(|key| {
                Behaviour::new(key, config)
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            })
            .map_err(|e| start(&e))?
            .with_swarm_config(|c| {
                c.with_idle_connection_timeout(std::time::Duration::from_secs(120))
            })
            .build();
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Start(format!("cannot listen on {addr}: {e}")))?;
        }
        for addr in &config.bootstrap {
            if peer_of(addr).is_some_and(|p| config.deny.contains(&p)) {
                tracing::warn!(%addr, "not dialling a denied bootstrap peer");
                continue;
            }
            if let Some(peer) = peer_of(addr) {
                swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            }
            if let Err(e) = swarm.dial(addr.clone()) {
                tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
            }
        }
        if let Some(seeds) = &config.ipfs_dht {
            for addr in seeds {
                if let (Some(peer), Some(ipfs)) =
                    (peer_of(addr), swarm.behaviour_mut().ipfs_kad.as_mut())
                {
                    ipfs.add_address(&peer, addr.clone());
                }
                if let Err(e) = swarm.dial(addr.clone()) {
                    tracing::warn!(%addr, error = %e, "cannot dial IPFS bootstrap peer");
                }
            }
        }
        let opener = swarm.behaviour().raw.opener();
        let accepting = swarm.behaviour().raw.accepting();
        let this = Self {
            swarm,
            inbox,
            listen: Vec::new(),
            observed: Vec::new(),
            peers: HashMap::new(),
            dials: HashMap::new(),
            provider_queries: HashMap::new(),
            banned: HashMap::new(),
            gossip,
            dht,
            connections,
        };
        Ok((this, opener, accepting))
    }

    /// Runs until `stop` is cancelled or every [`super::Network`] handle is dropped; the
    /// swarm, and with it every connection, is dropped on the way out.
    pub async fn run(mut self, stop: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                command = self.inbox.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.on_event(event),
            }
        }
        tracing::info!("peer-to-peer layer stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Local(reply) => {
                let _ = reply.send(LocalInfo {
                    peer_id: *self.swarm.local_peer_id(),
                    listen: self.listen.clone(),
                    observed: self.observed.clone(),
                });
            }
            Command::Peers(reply) => {
                let gossip = &self.swarm.behaviour().gossipsub;
                let mut peers: Vec<PeerState> = self
                    .peers
                    .values()
                    .filter(|p| !self.is_denied(&p.peer_id))
                    .cloned()
                    .map(|mut p| {
                        p.score = gossip.peer_score(&p.peer_id);
                        p
                    })
                    .collect();
                peers.sort_by_key(|p| p.peer_id.to_string());
                let _ = reply.send(peers);
            }
            Command::Dial(address, reply) => {
                if let Some(peer) = peer_of(&address).filter(|p| self.is_denied(p)) {
                    let _ = reply.send(Err(deny::refused(&address.to_string(), peer)));
                    return;
                }
                if let Some(peer) = peer_of(&address) {
                    if self.swarm.is_connected(&peer) {
                        let _ = reply.send(Ok(peer));
                        return;
                    }
                }
                let opts = DialOpts::unknown_peer_id().address(address.clone()).build();
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.dials.insert(id, (address, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dial {
                            address: address.to_string(),
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::DialPeer(peer, reply) => {
                if self.is_denied(&peer) {
                    let _ = reply.send(Err(deny::refused(&peer.to_string(), peer)));
                    return;
                }
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(peer));
                    return;
                }
                let opts = DialOpts::peer_id(peer).build();
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.dials.insert(id, (Multiaddr::empty(), reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dial {
                            address: peer.to_string(),
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::Provide(key) => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .start_providing(key.to_bytes().into())
                {
                    tracing::warn!(%key, error = %e, "cannot store a provider record");
                }
            }
            Command::ProvideOnIpfs(cid) => {
                if let Some(ipfs) = self.swarm.behaviour_mut().ipfs_kad.as_mut() {
                    // IPFS provider records are keyed by the multihash, whatever the codec.
                    if let Err(e) = ipfs.start_providing(cid.hash().to_bytes().into()) {
                        tracing::warn!(%cid, error = %e, "cannot announce on the IPFS DHT");
                    }
                }
            }
            Command::Misbehaved(peer) => {
                let now = Instant::now();
                self.banned.retain(|_, until| *until > now);
                if self.banned.len() >= MAX_BANNED {
                    // Full: the ban nearest its end makes room.
                    if let Some(first) =
                        self.banned.iter().min_by_key(|(_, u)| **u).map(|(p, _)| *p)
                    {
                        self.banned.remove(&first);
                    }
                }
                self.banned.insert(peer, now + super::BAN);
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::Deny(peer) => self.deny(peer),
            Command::Allow(peer) => self.allow(peer),
            Command::StopProvidingOnIpfs(cid) => {
                if let Some(ipfs) = self.swarm.behaviour_mut().ipfs_kad.as_mut() {
                    ipfs.stop_providing(&cid.hash().to_bytes().into());
                }
            }
            Command::StopProviding(key) => {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .stop_providing(&key.to_bytes().into());
            }
            Command::Subscribe(topic) => {
                let topic = gossipsub::IdentTopic::new(topic);
                let gossip = &mut self.swarm.behaviour_mut().gossipsub;
                if let Err(e) = gossip.subscribe(&topic) {
                    tracing::warn!(%topic, error = %e, "cannot join a gossip topic");
                }
                let _ = gossip.set_topic_params(topic, super::behaviour::topic_score());
            }
            Command::Publish(topic, data) => {
                let topic = gossipsub::IdentTopic::new(topic);
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(topic.clone(), data)
                {
                    // No peer on the topic yet is normal; they fetch the head when they come.
                    tracing::debug!(%topic, error = %e, "head not published");
                }
            }
            Command::Judge(gossip, verdict) => {
                let acceptance = match verdict {
                    Verdict::Accept => gossipsub::MessageAcceptance::Accept,
                    Verdict::Ignore => gossipsub::MessageAcceptance::Ignore,
                    Verdict::Reject => gossipsub::MessageAcceptance::Reject,
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&gossip.id, &gossip.from, acceptance);
            }
            Command::Providers(key, reply) => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(key.to_bytes().into());
                self.provider_queries.insert(id, (HashSet::new(), reply));
            }
        }
    }

    fn addresses_of(&self, peer: &PeerId) -> Vec<Multiaddr> {
        if *peer == *self.swarm.local_peer_id() {
            return self.listen.clone();
        }
        self.peers
            .get(peer)
            .map(|p| {
                if p.listen.is_empty() {
                    vec![p.address.clone()]
                } else {
                    p.listen.clone()
                }
            })
            .unwrap_or_default()
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "p2p listening");
                self.listen.push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen.retain(|a| *a != address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let (address, outbound) = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => (address.clone(), true),
                    ConnectedPoint::Listener { send_back_addr, .. } => {
                        (send_back_addr.clone(), false)
                    }
                };
                self.banned.retain(|_, until| *until > Instant::now());
                if self.banned.contains_key(&peer_id) {
                    tracing::debug!(%peer_id, "refused a peer banned for misbehaviour");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    if let Some((address, reply)) = self.dials.remove(&connection_id) {
                        let _ = reply.send(Err(NetError::Dial {
                            address: address.to_string(),
                            reason: format!(
                                "{peer_id} broke the Bitswap protocol and is refused for {} minutes",
                                super::BAN.as_secs() / 60
                            ),
                        }));
                    }
                    return;
                }
                tracing::debug!(%peer_id, %address, outbound, "connected");
                self.peers.entry(peer_id).or_insert_with(|| PeerState {
                    peer_id,
                    address,
                    outbound,
                    rtt: None,
                    protocols: Vec::new(),
                    agent: None,
                    listen: Vec::new(),
                    score: None,
                });
                if let Some((_, reply)) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::debug!(%peer_id, "disconnected");
                self.peers.remove(&peer_id);
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                if let Some((address, reply)) = self.dials.remove(&connection_id) {
                    // Dials racing to one peer (two fetches from it at once): the one the
                    // per-peer connection limit turned away still has the peer.
                    let peer = peer_id.or_else(|| peer_of(&address));
                    if let Some(peer) = peer.filter(|p| self.swarm.is_connected(p)) {
                        let _ = reply.send(Ok(peer));
                        return;
                    }
                    let reason = match error {
                        libp2p::swarm::DialError::Denied { cause } if deny::is_denial(&cause) => {
                            self.connections.denied.fetch_add(1, Ordering::Relaxed);
                            format!("{cause}: this node denies it (`ipvec peers allow <peer id>` lifts it)")
                        }
                        libp2p::swarm::DialError::Denied { cause } => {
                            format!("refused by a connection limit ({cause})")
                        }
                        e => e.to_string(),
                    };
                    let _ = reply.send(Err(NetError::Dial {
                        address: address.to_string(),
                        reason,
                    }));
                }
            }
            SwarmEvent::IncomingConnectionError {
                error: libp2p::swarm::ListenError::Denied { cause },
                send_back_addr,
                ..
            } if deny::is_denial(&cause) => {
                tracing::debug!(%send_back_addr, %cause, "refused a denied peer");
                self.connections.denied.fetch_add(1, Ordering::Relaxed);
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour(event),
            _ => {}
        }
    }

    fn on_behaviour(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let speaks_ipfs_kad = info.protocols.contains(&kad::PROTOCOL_NAME);
                if let Some(ipfs) = self.swarm.behaviour_mut().ipfs_kad.as_mut() {
                    if speaks_ipfs_kad {
                        for addr in &info.listen_addrs {
                            ipfs.add_address(&peer_id, addr.clone());
                        }
                    }
                }
                let speaks_kad = info.protocols.iter().any(|p| p.as_ref() == KAD_PROTOCOL);
                if speaks_kad {
                    for addr in &info.listen_addrs {
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer_id, addr.clone());
                    }
                }
                if !self.observed.contains(&info.observed_addr) {
                    self.observed.push(info.observed_addr.clone());
                }
                if let Some(peer) = self.peers.get_mut(&peer_id) {
                    peer.protocols = info.protocols.iter().map(|p| p.to_string()).collect();
                    peer.agent = Some(info.agent_version);
                    peer.listen = info.listen_addrs;
                }
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.rtt = Some(rtt);
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                if self.is_denied(&propagation_source)
                    || message.source.is_some_and(|p| self.is_denied(&p))
                {
                    // Neither heard nor forwarded, and no penalty for the forwarder.
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            gossipsub::MessageAcceptance::Ignore,
                        );
                    return;
                }
                let gossip = Gossip {
                    topic: message.topic.to_string(),
                    data: message.data,
                    from: propagation_source,
                    id: message_id,
                };
                if let Err(mpsc::error::TrySendError::Full(gossip)) = self.gossip.try_send(gossip) {
                    // Too much to judge: drop it without penalty.
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &gossip.id,
                            &gossip.from,
                            gossipsub::MessageAcceptance::Ignore,
                        );
                }
            }
            BehaviourEvent::Kad(kad::Event::InboundRequest {
                request: kad::InboundRequest::AddProvider { .. },
            }) => {
                self.dht.records_received.fetch_add(1, Ordering::Relaxed);
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    if !self.swarm.is_connected(&peer) && !self.is_denied(&peer) {
                        tracing::debug!(%peer, %addr, "found on the local network");
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            }) => match result {
                kad::QueryResult::GetProviders(result) => {
                    let done = step.last;
                    let finished = match result {
                        Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                            // Dial them while the query still knows their addresses.
                            let me = *self.swarm.local_peer_id();
                            let providers: HashSet<PeerId> = providers
                                .into_iter()
                                .filter(|p| !self.is_denied(p))
                                .collect();
                            for peer in &providers {
                                if *peer != me && !self.swarm.is_connected(peer) {
                                    let _ = self.swarm.dial(*peer);
                                }
                            }
                            if let Some((found, _)) = self.provider_queries.get_mut(&id) {
                                found.extend(providers);
                            }
                            done
                        }
                        Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => true,
                        Err(e) => {
                            tracing::debug!(error = %e, "provider lookup ended");
                            true
                        }
                    };
                    if finished {
                        if let Some((found, reply)) = self.provider_queries.remove(&id) {
                            let providers = found
                                .into_iter()
                                .map(|peer_id| Provider {
                                    peer_id,
                                    addresses: self.addresses_of(&peer_id),
                                })
                                .collect();
                            let _ = reply.send(Ok(providers));
                        }
                    }
                }
                kad::QueryResult::RepublishProvider(result) => {
                    self.dht.republished.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "republished provider record not placed on enough peers");
                    }
                }
                kad::QueryResult::StartProviding(Err(e)) => {
                    tracing::debug!(error = %e, "provider record not placed on enough peers yet");
                }
                kad::QueryResult::Bootstrap(Err(e)) => {
                    tracing::debug!(error = %e, "DHT bootstrap incomplete");
                }
                _ => {}
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
