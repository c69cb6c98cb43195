//! Streams peers open to us, queued per protocol until its accept loop takes them.
//!
//! libp2p-stream hands an inbound stream to its protocol's accept loop through a channel with
//! room for one: a second stream of that protocol that comes before the loop has taken the
//! first is dropped, and its peer reads the end of the stream where an answer should be (a
//! burst of 48 federated searches from one peer lost up to 6 of them so). This behaviour takes
//! the inbound streams of the protocols served here (Bitswap, heads, search) instead, into a
//! queue of [`QUEUE`] streams per protocol: a stream is dropped only when that many wait, and
//! the accept loops' own limits refuse well before. Outbound streams stay libp2p-stream's
//! ([`super::streams`]).

use std::{
    collections::HashMap,
    convert::Infallible,
    future::{ready, Ready},
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use futures::channel::mpsc;
use libp2p::{
    core::{transport::PortUse, upgrade::DeniedUpgrade, Endpoint, UpgradeInfo},
    swarm::{
        handler::{ConnectionEvent, FullyNegotiatedInbound},
        ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
        NetworkBehaviour, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    InboundUpgrade, Multiaddr, PeerId, Stream, StreamProtocol,
};

/// Inbound streams that may wait per protocol for its accept loop.
pub const QUEUE: usize = 256;

/// A protocol's inbound streams, with the peers that opened them.
pub type Incoming = mpsc::Receiver<(PeerId, Stream)>;

/// The protocols accepted, each with its queue's sending end.
type Queues = HashMap<StreamProtocol, mpsc::Sender<(PeerId, Stream)>>;

/// The protocols accepted and their queues; shared by the behaviour, its
/// handlers and [`super::streams::Streams`].
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

/// Takes the inbound streams of the protocols [`Accepting::accept`] was called for.
#[allow(missing_debug_implementations)]
#[derive(Default)]
pub struct Behaviour {
    accepting: Accepting,
}

impl Behaviour {
    /// The handle that accepts protocols' streams.
    pub fn accepting(&self) -> Accepting {
        self.accepting.clone()
    }

    fn handler(&self, peer: PeerId) -> Handler {
        Handler {
            peer,
            accepting: self.accepting.clone(),
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

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// One connection's side of [`Behaviour`]: it offers the accepted protocols and hands over
/// the streams negotiated on them.
#[allow(missing_debug_implementations)]
pub struct Handler {
    peer: PeerId,
    accepting: Accepting,
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = Protocols;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Protocols> {
        SubstreamProtocol::new(Protocols(self.accepting.protocols()), ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<DeniedUpgrade, (), Infallible>> {
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, event: Infallible) {
        match event {}
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<'_, Protocols, DeniedUpgrade>) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: (stream, protocol),
            ..
        }) = event
        {
            self.accepting.hand(self.peer, stream, protocol);
        }
    }
}

/// The protocols offered to a peer opening a stream; the stream comes out as it is, with the
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
