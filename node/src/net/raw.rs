//! Raw streams of the protocols written here (Bitswap, heads, search), both ways.
//!
//! Inbound, each protocol's streams wait in a queue of [`QUEUE`] for its accept loop
//! ([`Accepting`]): one is dropped only when that many wait, and the accept loops' own limits
//! refuse well before. (libp2p-stream, which took them before, kept one waiting and dropped a
//! stream that came meanwhile: its peer read the end of the stream where an answer should be,
//! and a burst of 60 searches from three peers lost some in every run.)
//!
//! Outbound, [`Opener::open`] opens a stream on a connection the peer already has; it does not
//! dial ([`super::streams::Streams`] connects through the event loop first). A connection
//! negotiates any number of new streams at once. (libp2p-stream negotiated one at a time per
//! connection, a round trip each, so a peer could open at most one stream per round trip to
//! another: at 50 ms, 20 searches a second.)

use std::{
    collections::{HashMap, VecDeque},
    convert::Infallible,
    future::{ready, Ready},
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use futures::{
    channel::{mpsc, oneshot},
    StreamExt,
};
use libp2p::{
    core::{transport::PortUse, Endpoint, UpgradeInfo},
    swarm::{
        behaviour::ConnectionEstablished,
        handler::{
            ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
        },
        ConnectionClosed, ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent,
        ConnectionId, FromSwarm, NetworkBehaviour, NotifyHandler, StreamUpgradeError,
        SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    InboundUpgrade, Multiaddr, OutboundUpgrade, PeerId, Stream, StreamProtocol,
};

/// Inbound streams that may wait per protocol for its accept loop.
pub const QUEUE: usize = 256;

/// A protocol's inbound streams, with the peers that opened them.
pub type Incoming = mpsc::Receiver<(PeerId, Stream)>;

/// The protocols accepted, each with its queue's sending end.
type Queues = HashMap<StreamProtocol, mpsc::Sender<(PeerId, Stream)>>;

/// The protocols accepted and their queues; shared by the behaviour, its handlers and
/// [`super::streams::Streams`].
#[derive(Clone, Default)]
pub struct Accepting {
    queues: Arc<Mutex<Queues>>,
}

impl std::fmt::Debug for Accepting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepting").finish_non_exhaustive()
    }
}

/// A protocol already has an accept loop that takes its streams.
#[derive(Debug, thiserror::Error)]
#[error("the streams of {0} are already accepted")]
pub struct AlreadyAccepted(pub StreamProtocol);

impl Accepting {
    /// Streams of `protocol` from now on, until the answer is dropped.
    pub fn accept(&self, protocol: StreamProtocol) -> Result<Incoming, AlreadyAccepted> {
        let mut queues = self.queues();
        if queues.get(&protocol).is_some_and(|q| !q.is_closed()) {
            return Err(AlreadyAccepted(protocol));
        }
        let (sender, receiver) = mpsc::channel(QUEUE);
        queues.insert(protocol, sender);
        Ok(receiver)
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The protocols whose streams an accept loop still takes.
    fn protocols(&self) -> Vec<StreamProtocol> {
        let mut queues = self.queues();
        queues.retain(|_, queue| !queue.is_closed());
        queues.keys().cloned().collect()
    }

    /// Queues `stream` for its protocol's loop; drops it when the queue is full or gone.
    fn hand(&self, peer: PeerId, stream: Stream, protocol: StreamProtocol) {
        let mut queues = self.queues();
        let Some(queue) = queues.get_mut(&protocol) else {
            return;
        };
        if let Err(e) = queue.try_send((peer, stream)) {
            if e.is_disconnected() {
                queues.remove(&protocol);
            } else {
                tracing::debug!(%peer, %protocol, "{QUEUE} inbound streams wait; dropped one");
            }
        }
    }
}

/// The answer to an [`Open`]: the stream, or why not.
type Opened = oneshot::Sender<Result<Stream, String>>;

/// A stream of `protocol` to open to `peer`.
#[derive(Debug)]
pub struct Open {
    peer: PeerId,
    protocol: StreamProtocol,
    reply: Opened,
}

/// Opens streams to connected peers (see the [module](self)); cloneable.
#[derive(Clone, Debug)]
pub struct Opener {
    requests: mpsc::UnboundedSender<Open>,
}

impl Opener {
    /// A new stream of `protocol` to `peer`, on a connection it already has.
    pub async fn open(&self, peer: PeerId, protocol: StreamProtocol) -> Result<Stream, String> {
        let (reply, opened) = oneshot::channel();
        let open = Open {
            peer,
            protocol,
            reply,
        };
        self.requests
            .unbounded_send(open)
            .map_err(|_| "the network has stopped".to_string())?;
        opened
            .await
            .unwrap_or_else(|_| Err(format!("the connection to {peer} closed")))
    }
}

/// Takes the inbound streams of the protocols [`Accepting::accept`] was called for, and
/// opens the streams [`Opener::open`] asks for.
#[allow(missing_debug_implementations)]
pub struct Behaviour {
    accepting: Accepting,
    requests: mpsc::UnboundedReceiver<Open>,
    opener: Opener,
    /// Each connected peer's connections, the newest last.
    connections: HashMap<PeerId, Vec<ConnectionId>>,
}

impl Default for Behaviour {
    fn default() -> Self {
        let (sender, requests) = mpsc::unbounded();
        Self {
            accepting: Accepting::default(),
            requests,
            opener: Opener { requests: sender },
            connections: HashMap::new(),
        }
    }
}

impl Behaviour {
    /// The handle that accepts protocols' streams.
    pub fn accepting(&self) -> Accepting {
        self.accepting.clone()
    }

    /// The handle that opens streams.
    pub fn opener(&self) -> Opener {
        self.opener.clone()
    }

    fn handler(&self, peer: PeerId) -> Handler {
        Handler {
            peer,
            accepting: self.accepting.clone(),
            opening: VecDeque::new(),
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    /// Connections are counted once every behaviour has taken them (another may refuse one
    /// after this one made its handler).
    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            }) => self
                .connections
                .entry(peer_id)
                .or_default()
                .push(connection_id),
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                ..
            }) => {
                if let Some(connections) = self.connections.get_mut(&peer_id) {
                    connections.retain(|c| *c != connection_id);
                    if connections.is_empty() {
                        self.connections.remove(&peer_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        while let Poll::Ready(Some(open)) = self.requests.poll_next_unpin(cx) {
            match self.connections.get(&open.peer).and_then(|c| c.last()) {
                Some(&connection) => {
                    return Poll::Ready(ToSwarm::NotifyHandler {
                        peer_id: open.peer,
                        handler: NotifyHandler::One(connection),
                        event: open,
                    })
                }
                None => {
                    let _ = open
                        .reply
                        .send(Err(format!("{} is not connected", open.peer)));
                }
            }
        }
        Poll::Pending
    }
}

/// One connection's side of [`Behaviour`]: it offers the accepted protocols, hands over the
/// streams negotiated on them, and negotiates the streams asked of it, all at once.
#[allow(missing_debug_implementations)]
pub struct Handler {
    peer: PeerId,
    accepting: Accepting,
    /// Streams asked for and not yet requested of the connection.
    opening: VecDeque<Open>,
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Open;
    type ToBehaviour = Infallible;
    type InboundProtocol = Protocols;
    type OutboundProtocol = Protocols;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Open;

    fn listen_protocol(&self) -> SubstreamProtocol<Protocols> {
        SubstreamProtocol::new(Protocols(self.accepting.protocols()), ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Protocols, Open, Infallible>> {
        match self.opening.pop_front() {
            Some(open) => Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(Protocols(vec![open.protocol.clone()]), open),
            }),
            None => Poll::Pending,
        }
    }

    fn on_behaviour_event(&mut self, open: Open) {
        self.opening.push_back(open);
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<'_, Protocols, Protocols, (), Open>) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: (stream, protocol),
                ..
            }) => self.accepting.hand(self.peer, stream, protocol),
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: (stream, _),
                info: open,
            }) => {
                let _ = open.reply.send(Ok(stream));
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { info: open, error }) => {
                let (peer, protocol) = (open.peer, &open.protocol);
                let why = match error {
                    StreamUpgradeError::NegotiationFailed => format!(
                        "{peer} does not speak {protocol}: it runs another version of ipvec or \
                         another program; ask another peer"
                    ),
                    StreamUpgradeError::Timeout => format!(
                        "opening a {protocol} stream to {peer} timed out; the peer may be \
                         overloaded, try again or ask another peer"
                    ),
                    StreamUpgradeError::Io(e) => {
                        format!("opening a {protocol} stream to {peer} failed: {e}")
                    }
                    StreamUpgradeError::Apply(never) => match never {},
                };
                let _ = open.reply.send(Err(why));
            }
            _ => {}
        }
    }
}

/// The protocols offered, or the one asked for; the stream comes out as it is, with the
/// protocol agreed on.
#[derive(Debug)]
pub struct Protocols(Vec<StreamProtocol>);

impl UpgradeInfo for Protocols {
    type Info = StreamProtocol;
    type InfoIter = std::vec::IntoIter<StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.0.clone().into_iter()
    }
}

impl InboundUpgrade<Stream> for Protocols {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;

    fn upgrade_inbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}

impl OutboundUpgrade<Stream> for Protocols {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;

    fn upgrade_outbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}
