//! Denied peers: refusing a peer at run time, lifting it, listing who is refused. A denial
//! made here is written to the repository's `denied_peers` file (see
//! [`repo::denied`](crate::repo::denied)) before the swarm is told, so a restarted daemon
//! refuses the same peers; peers denied in the config (`p2p.deny_peers`) are listed too but
//! lifted only there. Without a daemon the file alone changes, and the next daemon reads it.

use std::collections::BTreeSet;

use ipvec_protocol::api::{DeniedPeer, DeniedPeerList, PeerDenial};
use libp2p::PeerId;

use super::{Error, Node};
use crate::repo::denied;

/// Where a denial comes from, as [`DeniedPeer::source`] names it.
const FROM_CONFIG: &str = "config";
/// A denial made at run time.
const FROM_RUNTIME: &str = "runtime";

/// The parsed peer id of a request.
fn parse_peer(text: &str) -> Result<PeerId, Error> {
    text.trim().parse().map_err(|e| {
        Error::invalid(format!(
            "{text:?} is not a peer id ({e}); `ipvec peers` and `ipvec id` print them (12D3KooW…)"
        ))
    })
}

impl Node {
    /// The peers denied in the config (`p2p.deny_peers`, checked when the config was loaded).
    fn config_denied(&self) -> BTreeSet<PeerId> {
        self.config()
            .p2p
            .denied()
            .map(|peers| peers.into_iter().collect())
            .unwrap_or_default()
    }

    /// Whether `peer` is denied (in the config or at run time).
    pub(crate) fn is_denied(&self, peer: &PeerId) -> bool {
        let runtime = self.inner.denied.lock();
        let runtime = runtime.unwrap_or_else(|p| p.into_inner());
        runtime.contains(peer) || self.config_denied().contains(peer)
    }

    /// Reads the run-time list from the repository, runs `change` on it, writes it back if
    /// it changed and keeps it; whether it changed.
    fn change_denied(
        &self,
        change: impl FnOnce(&mut BTreeSet<PeerId>) -> bool,
    ) -> Result<bool, Error> {
        let mut held = self.inner.denied.lock().unwrap_or_else(|p| p.into_inner());
        let mut peers = denied::load(self.repo().path())?;
        let changed = change(&mut peers);
        if changed {
            denied::save(self.repo().path(), &peers)?;
        }
        *held = peers;
        Ok(changed)
    }

    /// Refuses `peer` from now on, and after restarts: its connections are closed at once and
    /// it is not dialled, asked for blocks or searches, nor heard on gossip.
    pub async fn deny_peer(&self, peer: &str) -> Result<PeerDenial, Error> {
        let peer = parse_peer(peer)?;
        if peer == self.repo().peer_id() {
            return Err(Error::invalid(format!("{peer} is this node's own peer id")));
        }
        let changed = if self.config_denied().contains(&peer) {
            false
        } else {
            self.change_denied(|peers| peers.insert(peer))?
        };
        if let Some(network) = self.inner.network.get() {
            network.deny(peer).await?;
        }
        Ok(PeerDenial {
            peer_id: peer.to_string(),
            denied: true,
            changed,
        })
    }

    /// Stops refusing a peer denied at run time; a peer denied in the config stays denied
    /// (an error says to edit `p2p.deny_peers`).
    pub async fn allow_peer(&self, peer: &str) -> Result<PeerDenial, Error> {
        let peer = parse_peer(peer)?;
        if self.config_denied().contains(&peer) {
            return Err(Error::conflict(format!(
                "{peer} is denied by p2p.deny_peers in the config: remove it there (or from $IPVEC_P2P_DENY_PEERS) and restart the daemon"
            )));
        }
        let changed = self.change_denied(|peers| peers.remove(&peer))?;
        if let Some(network) = self.inner.network.get() {
            network.allow(peer).await?;
        }
        Ok(PeerDenial {
            peer_id: peer.to_string(),
            denied: false,
            changed,
        })
    }

    /// The peers this node refuses, from the config and from run time.
    pub async fn denied_peers(&self) -> Result<DeniedPeerList, Error> {
        let runtime = denied::load(self.repo().path())?;
        let config = self.config_denied();
        let mut peers: Vec<DeniedPeer> = config
            .iter()
            .map(|p| (p, FROM_CONFIG))
            .chain(
                runtime
                    .iter()
                    .filter(|p| !config.contains(p))
                    .map(|p| (p, FROM_RUNTIME)),
            )
            .map(|(p, source)| DeniedPeer {
                peer_id: p.to_string(),
                source: source.to_string(),
            })
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        Ok(DeniedPeerList { peers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Repo;

    #[tokio::test(flavor = "multi_thread")]
    async fn federation_and_dials_see_denials_from_run_time_and_config() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init(&dir.path().join("repo")).await.unwrap();
        let (runtime, configured) = (PeerId::random(), PeerId::random());
        let mut config = repo.config().clone();
        config.p2p.deny_peers = vec![configured.to_string()];
        let own = repo.peer_id();
        let node = Node::new(repo, config);
        assert!(node.is_denied(&configured) && !node.is_denied(&runtime));

        let denied = node.deny_peer(&runtime.to_string()).await.unwrap();
        assert!(denied.denied && denied.changed);
        assert!(
            node.is_denied(&runtime),
            "seen at once (holders are filtered by it)"
        );
        assert_eq!(
            denied::load(node.repo().path()).unwrap(),
            [runtime].into(),
            "written to the repository, the config's peer not among them"
        );
        let err = node
            .connect(&format!("/ip4/127.0.0.1/tcp/1/p2p/{runtime}"))
            .await;
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("is denied on this node"),
            "a dial is refused before the swarm is asked"
        );

        let err = node.allow_peer(&configured.to_string()).await.unwrap_err();
        assert!(err.to_string().contains("p2p.deny_peers"), "{err}");
        let err = node.deny_peer(&own.to_string()).await.unwrap_err();
        assert!(err.to_string().contains("own peer id"), "{err}");

        let allowed = node.allow_peer(&runtime.to_string()).await.unwrap();
        assert!(!allowed.denied && allowed.changed);
        assert!(!node.is_denied(&runtime));
        assert!(!node.allow_peer(&runtime.to_string()).await.unwrap().changed);
        let list = node.denied_peers().await.unwrap();
        assert_eq!(list.peers.len(), 1);
        assert_eq!(list.peers[0].source, FROM_CONFIG);
    }
}
