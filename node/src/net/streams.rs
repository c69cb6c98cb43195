//! Opening a stream to a peer, connected through the swarm first, and accepting the streams
//! peers open to us.
//!
//! [`Streams::open`] asks the event loop to connect to the peer first (nothing is dialled when
//! a connection exists), which answers whether it could, then opens the stream on the
//! connection ([`super::raw`]); a protocol that asks several peers at once (a federated
//! search, a fetch from several providers) has each of them dialled at once, and hears at
//! once of those out of reach. [`Streams::accept`] takes a protocol's inbound streams.

use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::{mpsc, oneshot};

use super::{
    raw::{Accepting, AlreadyAccepted, Incoming, Opener},
    Command,
};

/// Opens and accepts streams (see the [module](self)); cloneable.
#[derive(Clone)]
pub struct Streams {
    opener: Opener,
    accepting: Accepting,
    /// Weak: the protocols' tasks must not keep the event loop's inbox open.
    commands: mpsc::WeakSender<Command>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams").finish_non_exhaustive()
    }
}

impl Streams {
    /// Streams opened with `opener` and accepted through `accepting`, connecting through the
    /// event loop that `commands` reaches.
    pub(super) fn new(
        opener: Opener,
        accepting: Accepting,
        commands: &mpsc::Sender<Command>,
    ) -> Self {
        Self {
            opener,
            accepting,
            commands: commands.downgrade(),
        }
    }

    /// The streams peers open to us for `protocol` from now on.
    pub fn accept(&self, protocol: StreamProtocol) -> Result<Incoming, AlreadyAccepted> {
        self.accepting.accept(protocol)
    }

    /// A new stream of `protocol` to `peer`, connected to first unless it is; why not, if the
    /// peer cannot be reached, refuses the protocol or the network has stopped.
    pub async fn open(
        &mut self,
        peer: PeerId,
        protocol: StreamProtocol,
    ) -> Result<Stream, super::NetError> {
        let (reply, answer) = oneshot::channel();
        let commands = self.commands.upgrade().ok_or(super::NetError::Stopped)?;
        commands
            .send(Command::DialPeer(peer, reply))
            .await
            .map_err(|_| super::NetError::Stopped)?;
        drop(commands);
        answer.await.map_err(|_| super::NetError::Stopped)??;
        self.opener
            .open(peer, protocol.clone())
            .await
            .map_err(|reason| super::NetError::Ask {
                peer,
                protocol,
                reason,
            })
    }
}
