//! `GET /ready`, part by part: the block store answers, every collection is open (its index
//! loaded and its log replayed), and the peer-to-peer layer runs. Each check is bounded, so
//! a part that hangs shows as not ready instead of hanging the probe.

use std::time::Duration;

use ipvec_protocol::api::{ComponentReadiness, Readiness};

use super::Node;
use crate::{collection::catalog, store::BlockStore};

/// How long each part may take to answer before it counts as not ready.
pub const CHECK_BOUND: Duration = Duration::from_secs(2);

const READY: &str = "ready";
const NOT_READY: &str = "not ready";
const OFF: &str = "off";

/// `n` and the noun for it: `1 peer`, `3 peers`.
fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn part(name: &str, state: &str, detail: String) -> ComponentReadiness {
    ComponentReadiness {
        name: name.into(),
        state: state.into(),
        detail,
    }
}

impl Node {
    /// Each part's readiness; the node is ready when none is `not ready`.
    pub async fn readiness(&self) -> Readiness {
        let components = vec![
            self.store_readiness().await,
            self.index_readiness().await,
            self.p2p_readiness().await,
        ];
        let waiting: Vec<String> = components
            .iter()
            .filter(|c| c.state == NOT_READY)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        let ready = waiting.is_empty();
        Readiness {
            status: if ready { READY } else { NOT_READY }.into(),
            message: waiting.join("; "),
            components,
        }
    }

    /// The block store answers a lookup within [`CHECK_BOUND`].
    async fn store_readiness(&self) -> ComponentReadiness {
        // Any CID will do: the store is asked whether it holds the empty raw block.
        let probe = ipvec_protocol::cid::block_cid(ipvec_protocol::cid::RAW, b"");
        match tokio::time::timeout(CHECK_BOUND, self.store().has(&probe)).await {
            Ok(Ok(_)) => part("store", READY, "the block store answers".into()),
            Ok(Err(e)) => part(
                "store",
                NOT_READY,
                format!("the block store fails: {e}; check the disk and the daemon's log"),
            ),
            Err(_) => part(
                "store",
                NOT_READY,
                format!(
                    "the block store did not answer within {} s; check the disk and the \
                     daemon's log",
                    CHECK_BOUND.as_secs()
                ),
            ),
        }
    }

    /// Every collection in the catalog is open.
    async fn index_readiness(&self) -> ComponentReadiness {
        let total = catalog::list(&self.collections_root()).map_or(0, |names| names.len());
        let (open, opening) = self.open_and_opening().await;
        let mut detail = format!("{} of {total} collections open", open.len().min(total));
        if !open.is_empty() && open.len() < total {
            detail.push_str(&format!(" ({})", open.join(", ")));
        }
        for (name, percent) in &opening {
            detail.push_str(&format!("; {name} opening, {percent}% of its index built"));
        }
        if self.is_ready() {
            part("index", READY, detail)
        } else {
            detail.push_str(
                "; the node is opening its collections (loading their indexes, replaying their \
                 logs) or shutting down",
            );
            part("index", NOT_READY, detail)
        }
    }

    /// The peer-to-peer layer's event loop answers within [`CHECK_BOUND`] and listens where
    /// `p2p.listen` says; `off` in a process that runs none (the CLI on a repository).
    async fn p2p_readiness(&self) -> ComponentReadiness {
        let Some(network) = self.inner.network.get() else {
            return part(
                "p2p",
                OFF,
                "this process runs no peer-to-peer layer (the daemon does)".into(),
            );
        };
        let wants_listen = !self.config().p2p.listen.is_empty();
        let answer = tokio::time::timeout(CHECK_BOUND, async {
            Ok::<_, crate::net::NetError>((network.local().await?, network.peers().await?))
        })
        .await;
        match answer {
            Ok(Ok((local, _))) if wants_listen && local.listen.is_empty() => part(
                "p2p",
                NOT_READY,
                "listening on no address (p2p.listen); is the port in use?".into(),
            ),
            Ok(Ok((local, peers))) => part(
                "p2p",
                READY,
                format!(
                    "listening on {}, {} connected",
                    counted(local.listen.len(), "address", "addresses"),
                    counted(peers.len(), "peer", "peers")
                ),
            ),
            Ok(Err(e)) => part(
                "p2p",
                NOT_READY,
                format!("the peer-to-peer layer stopped: {e}; restart the daemon"),
            ),
            Err(_) => part(
                "p2p",
                NOT_READY,
                format!(
                    "the peer-to-peer layer did not answer within {} s",
                    CHECK_BOUND.as_secs()
                ),
            ),
        }
    }
}
