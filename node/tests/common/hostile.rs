//! A raw libp2p peer for the tests that play a hostile one against a real daemon: it speaks
//! only what a test writes on its streams.

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::{gossipsub, identity::Keypair, swarm::NetworkBehaviour, Multiaddr, PeerId, Swarm};

use super::{fails, json_of, ok};

#[derive(NetworkBehaviour)]
pub struct Hostile {
    pub stream: libp2p_stream::Behaviour,
    pub gossipsub: gossipsub::Behaviour,
}

pub fn hostile_swarm(key: &Keypair) -> Swarm<Hostile> {
    tcp_swarm(key, |key| Hostile {
        stream: libp2p_stream::Behaviour::new(),
        gossipsub: gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(200))
                .build()
                .unwrap(),
        )
        .unwrap(),
    })
}

/// A swarm of `behaviour` on TCP (noise, yamux) whose idle connections live a minute.
pub fn tcp_swarm<B: NetworkBehaviour>(
    key: &Keypair,
    behaviour: impl FnOnce(&Keypair) -> B,
) -> Swarm<B> {
    libp2p::SwarmBuilder::with_existing_identity(key.clone())
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Makes `swarm` listen on a loopback port; the address, once it listens.
pub fn listen<B: NetworkBehaviour>(
    rt: &tokio::runtime::Runtime,
    swarm: &mut Swarm<B>,
) -> Multiaddr {
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    rt.block_on(async {
        loop {
            if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } =
                swarm.select_next_some().await
            {
                break address;
            }
        }
    })
}

/// A hostile peer listening on loopback: its swarm (to drive), id, full address and a stream
/// control accepting `accept` streams.
pub fn hostile_peer(
    rt: &tokio::runtime::Runtime,
    accept: libp2p::StreamProtocol,
) -> (
    Swarm<Hostile>,
    PeerId,
    String,
    libp2p_stream::Control,
    libp2p_stream::IncomingStreams,
) {
    let key = Keypair::generate_ed25519();
    let peer = PeerId::from(key.public());
    let _entered = rt.enter();
    let mut swarm = rt.block_on(async { hostile_swarm(&key) });
    let listening = listen(rt, &mut swarm);
    let mut control = swarm.behaviour().stream.new_control();
    let incoming = control.accept(accept).unwrap();
    (
        swarm,
        peer,
        format!("{listening}/p2p/{peer}"),
        control,
        incoming,
    )
}

/// Waits until `check` holds, for at most `secs` seconds.
pub fn within(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < Duration::from_secs(secs), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The first address of the daemon of `repo`, and its peer id.
pub fn address_and_peer(repo: &std::path::Path) -> (Multiaddr, PeerId) {
    let address: Multiaddr = json_of(&ok(repo, &["--json", "id"]))["addresses"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let peer = ipvec_node::net::peer_of(&address).unwrap();
    (address, peer)
}

/// Checks that the daemon of `repo` drops `peer` within `secs` seconds and refuses to
/// connect to it again.
pub fn disconnected_and_refused(repo: &std::path::Path, peer: PeerId, address: &str, secs: u64) {
    within(secs, &format!("{peer} is still connected"), || {
        !ok(repo, &["--json", "peers"]).contains(&peer.to_string())
    });
    let err = fails(repo, &["connect", address]);
    assert!(err.contains("is refused for 10 minutes"), "{err}");
}

pub fn metric(url: &str, line_start: &str) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let text = rt.block_on(async {
        reqwest::get(format!("{url}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ipvec_node::store::car::write_varint(&mut out, body.len() as u64);
    out.extend_from_slice(body);
    out
}
