//! The peer-to-peer layer: a libp2p swarm (TCP and QUIC, noise, yamux, identify, ping, mDNS,
//! Kademlia on `/ipvec/kad/1.0.0`) owned by one event loop, driven through a cloneable
//! [`Network`] handle.
//!
//! Every task of the layer (the event loop, the Bitswap and head-request accept loops and
//! the tasks they start per stream) is owned by one [`Tasks`] set whose token is a child of
//! the one given to [`Network::start`]: cancelling that token, calling [`Network::shutdown`]
//! or dropping the last [`Network`] handle stops them all. Every queue is bounded: commands
//! ([`COMMAND_QUEUE`], senders wait), gossip awaiting a verdict ([`GOSSIP_QUEUE`], more are
//! ignored), streams served at once per peer (Bitswap) and head requests at once
//! ([`heads::MAX_SERVING`], more are refused).
//!
//! # Layout
//! - [`behaviour`]: the combined libp2p behaviour.
//! - [`event_loop`]: the task that owns the swarm, answers [`Network`] commands and reacts to
//!   swarm events.
//! - [`bitswap`]: Bitswap 1.2.0, serving the block store and fetching DAGs.
//! - [`heads`]: `/ipvec/head/1.0.0`, asking a peer for a collection's signed head.
//! - [`search`]: `/ipvec/search/1.0.0`, searching shards a peer holds.
//! - [`frame`]: the length-prefixed frames of those two protocols.
//! - [`streams`]: opening a stream to a peer, connected through the swarm first, and
//!   accepting the streams peers open to us.
//! - [`raw`]: raw streams both ways, each protocol's inbound ones queued for its loop.

pub mod behaviour;
pub mod bitswap;
pub mod event_loop;
pub mod frame;
pub mod heads;
pub mod raw;
pub mod search;
pub mod streams;

use std::time::Duration;

use cid::Cid;
use libp2p::{identity::Keypair, Multiaddr, PeerId, StreamProtocol};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::tasks::{Stopped, Tasks};

/// Our Kademlia protocol (a DHT of ipvec peers, apart from the public IPFS one).
pub const KAD_PROTOCOL: &str = "/ipvec/kad/1.0.0";
/// How long a peer that broke a protocol (malformed or oversized messages) is refused.
pub const BAN: Duration = Duration::from_secs(10 * 60);
/// The protocol version sent in identify.
pub const IDENTIFY_PROTOCOL: &str = "/ipvec/1.0.0";
/// The agent sent in identify.
pub const AGENT: &str = concat!("ipvec/", env!("CARGO_PKG_VERSION"));
/// Largest gossip message (a signed head is a few hundred bytes).
pub const MAX_GOSSIP_BYTES: usize = 16 * 1024;
/// Gossip messages queued for validation at most; more are ignored.
pub const GOSSIP_QUEUE: usize = 256;
/// The gossipsub topic of a collection's heads.
pub fn heads_topic(collection_id: &str) -> String {
    format!("/ipvec/heads/1.0.0/{collection_id}")
}

/// A gossip message waiting for the node's verdict.
#[derive(Debug, Clone)]
pub struct Gossip {
    /// The topic.
    pub topic: String,
    /// Its bytes.
    pub data: Vec<u8>,
    /// The peer that forwarded it to us.
    pub from: PeerId,
    /// Its id, for the verdict.
    pub id: libp2p::gossipsub::MessageId,
}

/// What the node makes of a gossip message (decided by the follow core).
pub use crate::cluster::follow::Verdict;

/// Commands queued for the event loop at most; senders wait for room (a misbehaviour report,
/// sent from a task that must not wait, is dropped instead).
pub const COMMAND_QUEUE: usize = 256;

/// Settings of the swarm.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and to seed the DHT with (each with a `/p2p/<peer id>` part).
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the local network with mDNS.
    pub mdns: bool,
    /// Most connections at once.
    pub max_connections: u32,
    /// How often the DHT routing table is refreshed.
    pub bootstrap_interval: Duration,
    /// How often provider records are published again.
    pub reprovide_interval: Duration,
    /// How long provider records live.
    pub provider_ttl: Duration,
    /// Also announce collection roots on the public IPFS DHT, seeded by these peers.
    pub ipfs_dht: Option<Vec<Multiaddr>>,
    /// Peers refused from the start (`p2p.deny_peers` and the repository's `denied_peers`).
    pub deny: Vec<PeerId>,
}

impl NetConfig {
    /// Settings for a network that listens on `listen` only: no bootstrap peers, no mDNS, no
    /// IPFS DHT (tests and benches that connect their peers themselves).
    pub fn listening_on(listen: Vec<Multiaddr>) -> Self {
        Self {
            listen,
            bootstrap: Vec::new(),
            mdns: false,
            max_connections: 8,
            bootstrap_interval: Duration::from_secs(60),
            reprovide_interval: Duration::from_secs(3600),
            provider_ttl: Duration::from_secs(7200),
            ipfs_dht: None,
            deny: Vec::new(),
        }
    }

    /// The swarm settings of a repository configuration; addresses that do not parse are
    /// an error naming the key.
    pub fn from_config(config: &crate::repo::P2pConfig) -> Result<Self, NetError> {
        let parse = |key: &str, text: &String| {
            text.parse::<Multiaddr>().map_err(|e| {
                NetError::Config(format!(
                    "{key}: {text:?} is not a multiaddress ({e}), e.g. /ip4/0.0.0.0/tcp/4080"
                ))
            })
        };
        let listen = config
            .listen
            .iter()
            .map(|a| parse("p2p.listen", a))
            .collect::<Result<Vec<_>, _>>()?;
        let bootstrap = config
            .bootstrap
            .iter()
            .map(|a| parse("p2p.bootstrap", a))
            .collect::<Result<Vec<_>, _>>()?;
        let ipfs_bootstrap = config
            .ipfs_bootstrap
            .iter()
            .map(|a| parse("p2p.ipfs_bootstrap", a))
            .collect::<Result<Vec<_>, _>>()?;
        for (key, addrs) in [
            ("p2p.bootstrap", &bootstrap),
            ("p2p.ipfs_bootstrap", &ipfs_bootstrap),
        ] {
            if let Some(addr) = addrs.iter().find(|a| peer_of(a).is_none()) {
                return Err(NetError::Config(format!(
                    "{key}: {addr} has no /p2p/<peer id> part; `ipvec id` on that node prints its full addresses"
                )));
            }
        }
        Ok(Self {
            listen,
            bootstrap,
            ipfs_dht: config.ipfs_dht.then_some(ipfs_bootstrap),
            mdns: config.mdns,
            max_connections: 256,
            bootstrap_interval: Duration::from_secs(60),
            reprovide_interval: Duration::from_secs(config.reprovide_interval_secs),
            provider_ttl: Duration::from_secs(config.provider_ttl_secs),
            deny: config
                .denied()
                .map_err(|e| NetError::Config(e.to_string()))?,
        })
    }
}

/// The peer id at the end of a multiaddress, if any.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

/// Failures of the peer-to-peer layer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A setting is invalid.
    #[error("{0}")]
    Config(String),
    /// The swarm could not start.
    #[error("cannot start the peer-to-peer layer: {0}")]
    Start(String),
    /// Dialing a peer failed.
    #[error("cannot connect to {address}: {reason}")]
    Dial { address: String, reason: String },
    /// A peer we could reach did not answer a request: it does not speak the protocol, closed
    /// the stream unanswered (busy, or over its rate), broke the protocol, or took too long.
    /// The reason names the peer and says what to do.
    #[error("{reason}")]
    Ask {
        /// The peer asked.
        peer: PeerId,
        /// The protocol of the request.
        protocol: StreamProtocol,
        /// What went wrong.
        reason: String,
    },
    /// A DHT operation failed.
    #[error("DHT: {0}")]
    Dht(String),
    /// The event loop has stopped.
    #[error("the peer-to-peer layer is not running")]
    Stopped,
}

/// What this node knows of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalInfo {
    /// Our peer id.
    pub peer_id: PeerId,
    /// Addresses we listen on.
    pub listen: Vec<Multiaddr>,
    /// Addresses peers told us they see us at.
    pub observed: Vec<Multiaddr>,
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerState {
    /// Its id.
    pub peer_id: PeerId,
    /// The address of our connection to it.
    pub address: Multiaddr,
    /// Whether we dialed it (`outbound`) or it dialed us (`inbound`).
    pub outbound: bool,
    /// Last ping round trip.
    pub rtt: Option<Duration>,
    /// Protocols it said it speaks (identify).
    pub protocols: Vec<String>,
    /// Its agent string (identify).
    pub agent: Option<String>,
    /// Addresses it listens on (identify).
    pub listen: Vec<Multiaddr>,
    /// Its gossipsub score (negative after invalid messages).
    pub score: Option<f64>,
}

/// A provider found in the DHT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Its id.
    pub peer_id: PeerId,
    /// Addresses known for it.
    pub addresses: Vec<Multiaddr>,
}

/// DHT counters for metrics and tests.
#[derive(Debug, Default)]
pub struct DhtStats {
    /// Provider records other peers placed on this node (first announcements and republishes).
    pub records_received: std::sync::atomic::AtomicU64,
    /// Times this node published one of its provider records again (on the reprovide schedule).
    pub republished: std::sync::atomic::AtomicU64,
}

/// Counts of connections, for metrics and tests.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections refused or closed at once because the peer is denied (inbound and
    /// outbound).
    pub denied: std::sync::atomic::AtomicU64,
}

/// A request to the event loop.
#[derive(Debug)]
pub(crate) enum Command {
    Local(oneshot::Sender<LocalInfo>),
    Peers(oneshot::Sender<Vec<PeerState>>),
    Dial(Multiaddr, oneshot::Sender<Result<PeerId, NetError>>),
    DialPeer(PeerId, oneshot::Sender<Result<PeerId, NetError>>),
    Provide(Cid),
    StopProviding(Cid),
    ProvideOnIpfs(Cid),
    StopProvidingOnIpfs(Cid),
    /// A peer broke a protocol's rules: disconnect it and refuse it for [`BAN`].
    Misbehaved(PeerId),
    /// Refuse a peer until [`Command::Allow`]: close its connections, forget its addresses.
    Deny(PeerId),
    /// Stop refusing a denied peer.
    Allow(PeerId),
    Providers(Cid, oneshot::Sender<Result<Vec<Provider>, NetError>>),
    Subscribe(String),
    Publish(String, Vec<u8>),
    Judge(Gossip, Verdict),
}

/// A cloneable handle on the running swarm.
#[derive(Clone)]
pub struct Network {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    bitswap: bitswap::Bitswap<crate::store::IrohBlockStore>,
    streams: streams::Streams,
    /// Reports a peer that broke a protocol's rules (it is banned).
    misbehaving: bitswap::Misbehaving,
    gossip: std::sync::Arc<std::sync::Mutex<Option<mpsc::Receiver<Gossip>>>>,
    dht: std::sync::Arc<DhtStats>,
    connections: std::sync::Arc<ConnectionStats>,
    /// Head requests each peer may make a second (`limits.peer_head_rate`).
    head_rate: std::sync::Arc<crate::limits::peers::PeerRate>,
    /// Federated searches refused over their peer's rate.
    search_limited: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The layer's tasks: the event loop, the accept loops and their stream tasks.
    tasks: std::sync::Arc<Tasks>,
    /// Cancels the layer's token when the last handle is dropped.
    _stop: std::sync::Arc<DropGuard>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("peer_id", &self.peer_id)
            .finish()
    }
}

impl Network {
    /// Starts the swarm for `key` on the current tokio runtime, serving `store` over Bitswap;
    /// it runs until `stop` is cancelled, [`Network::shutdown`] is called or every handle is
    /// dropped.
    pub async fn start(
        key: &Keypair,
        config: NetConfig,
        store: crate::store::IrohBlockStore,
        stop: &CancellationToken,
    ) -> Result<Network, NetError> {
        let (commands, inbox) = mpsc::channel(COMMAND_QUEUE);
        let (gossip_tx, gossip_rx) = mpsc::channel(GOSSIP_QUEUE);
        let dht = std::sync::Arc::new(DhtStats::default());
        let connections = std::sync::Arc::new(ConnectionStats::default());
        let (event_loop, opener, accepting) = event_loop::EventLoop::new(
            key,
            &config,
            inbox,
            gossip_tx,
            dht.clone(),
            connections.clone(),
        )?;
        let peer_id = key.public().to_peer_id();
        let token = stop.child_token();
        let tasks = std::sync::Arc::new(Tasks::new(token.clone()));
        tasks.spawn_finishing(event_loop.run(token.clone()));
        // Weak: the protocols' tasks must not keep the event loop's inbox open.
        let reporter = commands.downgrade();
        let misbehaving: bitswap::Misbehaving = std::sync::Arc::new(move |peer| {
            if let Some(commands) = reporter.upgrade() {
                let _ = commands.try_send(Command::Misbehaved(peer));
            }
        });
        let streams = streams::Streams::new(opener, accepting, &commands);
        let bitswap =
            bitswap::Bitswap::start(store, streams.clone(), misbehaving.clone(), tasks.clone());
        let network = Network {
            peer_id,
            commands,
            bitswap,
            streams,
            misbehaving,
            gossip: std::sync::Arc::new(std::sync::Mutex::new(Some(gossip_rx))),
            dht,
            connections,
            head_rate: std::sync::Arc::new(crate::limits::peers::PeerRate::new(0)),
            search_limited: Default::default(),
            tasks,
            _stop: std::sync::Arc::new(token.drop_guard()),
        };
        // Report listen failures (a port in use) now rather than never.
        let started = std::time::Instant::now();
        loop {
            let local = network.local().await?;
            if !local.listen.is_empty() || config.listen.is_empty() {
                return Ok(network);
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(NetError::Start(format!(
                    "listening on {:?} failed (p2p.listen); is the port in use? pick another with --p2p-listen",
                    config.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the layer: cancels its token and waits up to `bound` for its tasks (the event
    /// loop, which drops the swarm and its connections, and every stream task); fetches in
    /// flight end with [`bitswap::FetchError::Stopped`].
    pub async fn shutdown(&self, bound: Duration) -> Stopped {
        let stopped = self.tasks.shutdown(bound).await;
        tracing::debug!(
            ended = stopped.ended,
            aborted = stopped.aborted,
            "peer-to-peer tasks stopped"
        );
        stopped
    }

    /// The token whose cancellation stops the layer.
    pub fn stop_token(&self) -> &CancellationToken {
        self.tasks.token()
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The gossip messages to judge (once: the first caller gets the receiver).
    pub fn take_gossip(&self) -> Option<mpsc::Receiver<Gossip>> {
        self.gossip.lock().ok().and_then(|mut g| g.take())
    }

    /// Joins a gossip topic.
    pub async fn subscribe(&self, topic: String) -> Result<(), NetError> {
        self.commands
            .send(Command::Subscribe(topic))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Publishes on a gossip topic.
    pub async fn publish(&self, topic: String, data: Vec<u8>) -> Result<(), NetError> {
        self.commands
            .send(Command::Publish(topic, data))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Gives the verdict on a gossip message (forward, drop, or drop and penalise).
    pub async fn judge(&self, gossip: Gossip, verdict: Verdict) -> Result<(), NetError> {
        self.commands
            .send(Command::Judge(gossip, verdict))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Answers `/ipvec/head/1.0.0` requests from `source`.
    pub fn serve_heads(&self, source: heads::HeadSource) {
        heads::serve(&self.streams, source, self.head_rate.clone(), &self.tasks);
    }

    /// Holds each peer to `head_rate` head requests and `want_rate` Bitswap wants a second
    /// (bursts of twice as many; 0: unlimited).
    pub fn limit_peers(&self, head_rate: u32, want_rate: u32) {
        self.head_rate.set(head_rate);
        self.bitswap.want_rate().set(want_rate);
    }

    /// Peer requests refused over their rate since start, by kind: search, head, want.
    pub fn rate_limited(&self) -> [(&'static str, u64); 3] {
        use std::sync::atomic::Ordering::Relaxed;
        [
            ("search", self.search_limited.load(Relaxed)),
            ("head", self.head_rate.refused()),
            ("want", self.bitswap.want_rate().refused()),
        ]
    }

    /// Asks `peer` for its signed head of `collection` (DAG-CBOR), if it holds one.
    pub async fn ask_head(
        &self,
        peer: PeerId,
        collection: &str,
    ) -> Result<Option<Vec<u8>>, NetError> {
        // A stream asked for once the swarm is gone would wait forever.
        self.tasks
            .token()
            .run_until_cancelled(heads::ask(self.streams.clone(), peer, collection))
            .await
            .ok_or(NetError::Stopped)?
    }

    /// Answers `/ipvec/search/1.0.0` requests from `source`, `rate_per_peer` a second per peer.
    pub fn serve_searches(
        &self,
        source: search::SearchSource,
        served: search::Served,
        rate_per_peer: u32,
    ) {
        search::serve(
            &self.streams,
            source,
            served,
            rate_per_peer,
            self.search_limited.clone(),
            self.misbehaving.clone(),
            &self.tasks,
        );
    }

    /// Asks `peer` to search shards it holds, waiting at most `timeout` for its answer.
    pub async fn search_peer(
        &self,
        peer: PeerId,
        request: &ipvec_protocol::search::SearchRequest,
        timeout: Duration,
    ) -> Result<ipvec_protocol::search::SearchAnswer, NetError> {
        self.tasks
            .token()
            .run_until_cancelled(search::ask(self.streams.clone(), peer, request, timeout))
            .await
            .ok_or(NetError::Stopped)?
    }

    /// DHT counters.
    pub fn dht_stats(&self) -> &DhtStats {
        &self.dht
    }

    /// Connection counters.
    pub fn connection_stats(&self) -> &ConnectionStats {
        &self.connections
    }

    /// Refuses `peer` until [`Network::allow`]: its connections are closed at once, it is not
    /// dialled (nor asked for blocks, heads or searches, which need a connection), not
    /// returned as a provider, and gossip from it or first published by it is ignored.
    pub async fn deny(&self, peer: PeerId) -> Result<(), NetError> {
        self.commands
            .send(Command::Deny(peer))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Stops refusing a peer [`Network::deny`] refused.
    pub async fn allow(&self, peer: PeerId) -> Result<(), NetError> {
        self.commands
            .send(Command::Allow(peer))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// The Bitswap engine.
    pub fn bitswap(&self) -> &bitswap::Bitswap<crate::store::IrohBlockStore> {
        &self.bitswap
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Our addresses.
    pub async fn local(&self) -> Result<LocalInfo, NetError> {
        self.ask(Command::Local).await
    }

    /// The connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerState>, NetError> {
        self.ask(Command::Peers).await
    }

    /// Connects to a peer; its id once connected.
    pub async fn dial(&self, address: Multiaddr) -> Result<PeerId, NetError> {
        self.ask(|tx| Command::Dial(address, tx)).await?
    }

    /// Connects to a peer by id, at addresses the DHT or identify told us.
    pub async fn dial_peer(&self, peer: PeerId) -> Result<PeerId, NetError> {
        self.ask(|tx| Command::DialPeer(peer, tx)).await?
    }

    /// Announces in the DHT that we provide `key` (kept and republished until withdrawn).
    pub async fn provide(&self, key: Cid) -> Result<(), NetError> {
        self.commands
            .send(Command::Provide(key))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Announces on the public IPFS DHT that we provide the block `cid` (if the node runs it).
    pub async fn provide_on_ipfs(&self, cid: Cid) -> Result<(), NetError> {
        self.commands
            .send(Command::ProvideOnIpfs(cid))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Withdraws an announcement on the IPFS DHT.
    pub async fn stop_providing_on_ipfs(&self, cid: Cid) -> Result<(), NetError> {
        self.commands
            .send(Command::StopProvidingOnIpfs(cid))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Withdraws an announcement.
    pub async fn stop_providing(&self, key: Cid) -> Result<(), NetError> {
        self.commands
            .send(Command::StopProviding(key))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// The peers the DHT knows to provide `key`.
    pub async fn providers(&self, key: Cid) -> Result<Vec<Provider>, NetError> {
        self.ask(|tx| Command::Providers(key, tx)).await?
    }
}
