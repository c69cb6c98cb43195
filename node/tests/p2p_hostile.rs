//! A hostile peer against a real daemon: a head signed by the wrong key over gossipsub, a block
//! that does not match the CID asked for, malformed and oversized Bitswap messages. Each is
//! refused and counted, nothing is stored, the daemon keeps serving; the peer that broke the
//! protocol is disconnected and refused for a while.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use ipvec_node::net::bitswap::{
    message::{prefix_of, Message, Payload, Presence},
    PROTOCOL,
};
use libp2p::{gossipsub, identity::Keypair, swarm::NetworkBehaviour, Multiaddr, PeerId, Swarm};

#[derive(NetworkBehaviour)]
struct Hostile {
    stream: libp2p_stream::Behaviour,
    gossipsub: gossipsub::Behaviour,
}

fn hostile_swarm(key: &Keypair) -> Swarm<Hostile> {
    libp2p::SwarmBuilder::with_existing_identity(key.clone())
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| Hostile {
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
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

fn metric(url: &str, line_start: &str) -> f64 {
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

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ipvec_node::store::car::write_varint(&mut out, body.len() as u64);
    out.extend_from_slice(body);
    out
}

#[test]
fn hostile_messages_blocks_and_heads_are_refused() {
    // The daemon holds a collection (so it follows its topic) and a block to serve.
    let repo = new_repo();
    let r = &repo.path;
    ok(r, &["collection", "create", "guarded", "--dim", "2"]);
    let info = json_of(&ok(r, &["--json", "collection", "info", "guarded"]));
    let id = info["id"].as_str().unwrap().to_string();
    let daemon = Daemon::start(r, &[]);
    let address: Multiaddr = json_of(&ok(r, &["--json", "id"]))["addresses"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let daemon_peer = ipvec_node::net::peer_of(&address).unwrap();
    let refused = |url: &str| metric(url, "ipvec_bitswap{kind=\"refused\"}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let _entered = rt.enter();
    let key = Keypair::generate_ed25519();
    let hostile_peer = PeerId::from(key.public());
    let mut swarm = rt.block_on(async { hostile_swarm(&key) });
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let listening = rt.block_on(async {
        loop {
            if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } =
                swarm.select_next_some().await
            {
                break address;
            }
        }
    });
    let hostile_address = format!("{listening}/p2p/{hostile_peer}");
    let mut control = swarm.behaviour().stream.new_control();
    let mut incoming = control.accept(PROTOCOL).unwrap();
    swarm.dial(address.clone()).unwrap();
    let topic = gossipsub::IdentTopic::new(ipvec_node::net::heads_topic(&id));
    swarm.behaviour_mut().gossipsub.subscribe(&topic).unwrap();
    // A head that claims to be of this collection, signed by a key its manifest does not allow.
    let owner_peer: PeerId = id.parse().unwrap();
    let owner = libp2p::identity::PublicKey::try_decode_protobuf(owner_peer.as_ref().digest())
        .unwrap()
        .try_into_ed25519()
        .unwrap()
        .to_bytes();
    let forger = Keypair::generate_ed25519();
    let forged = ipvec_protocol::head::HeadRecord::sign(
        owner,
        99,
        ipvec_protocol::cid::block_cid(ipvec_protocol::cid::RAW, b"x"),
        &forger,
    )
    .unwrap();
    let forged = ipvec_protocol::dagcbor::encode(&forged).unwrap();
    rt.spawn(async move {
        // Drive the swarm; publish the forged head once the daemon is in the topic.
        let mut published = false;
        loop {
            tokio::select! {
                _ = swarm.select_next_some() => {}
                _ = tokio::time::sleep(Duration::from_millis(300)), if !published => {
                    let joined = swarm
                        .behaviour()
                        .gossipsub
                        .all_peers()
                        .any(|(p, topics)| *p == daemon_peer && !topics.is_empty());
                    if joined {
                        published = swarm
                            .behaviour_mut()
                            .gossipsub
                            .publish(topic.clone(), forged.clone())
                            .is_ok();
                    }
                }
            }
        }
    });

    let url = daemon.url.clone();
    // 2. The forged head is rejected (a wrong writer), and nothing moved.
    let started = Instant::now();
    while metric(&url, "ipvec_gossip_heads_total{verdict=\"rejected\"}") < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the forged head was not rejected"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Its forwarder lost score.
    let peers = json_of(&ok(r, &["--json", "peers"]));
    let hostile = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == hostile_peer.to_string().as_str())
        .unwrap();
    assert!(hostile["gossip_score"].as_f64().unwrap() < 0.0, "{hostile}");
    let after = json_of(&ok(r, &["--json", "collection", "info", "guarded"]));
    assert_eq!(after["root"], info["root"]);
    assert_eq!(after["version"], info["version"]);
    // 3. The daemon asks us for a block; we answer with other bytes, then DONT_HAVE.
    let wanted = ipvec_protocol::cid::block_cid(ipvec_protocol::cid::RAW, b"the real block");
    let mut answer_control = control.clone();
    rt.spawn(async move {
        while let Some((peer, mut stream)) = incoming.next().await {
            // The first length-prefixed message of the stream (the daemon keeps streams open).
            let mut len = 0usize;
            for shift in (0..).step_by(7) {
                let mut byte = [0u8; 1];
                if stream.read_exact(&mut byte).await.is_err() {
                    break;
                }
                len |= usize::from(byte[0] & 0x7f) << shift;
                if byte[0] & 0x80 == 0 {
                    break;
                }
            }
            let mut bytes = vec![0u8; len];
            if stream.read_exact(&mut bytes).await.is_err() {
                continue;
            }
            let Ok(message) = Message::decode(&bytes) else {
                continue;
            };
            for want in message.wants.iter().filter(|w| !w.cancel) {
                let lie = Message {
                    payload: vec![Payload {
                        prefix: prefix_of(&want.cid),
                        data: b"not the real block".to_vec(),
                    }],
                    presences: vec![Presence {
                        cid: want.cid,
                        have: false,
                    }],
                    ..Message::default()
                };
                if let Ok(mut s) = answer_control.open_stream(peer, PROTOCOL).await {
                    let _ = s.write_all(&frame(&lie.encode())).await;
                    let _ = s.close().await;
                }
            }
        }
    });
    let before = refused(&url);
    let err = fails(
        r,
        &[
            "dag",
            "fetch",
            &wanted.to_string(),
            "--from",
            &hostile_address,
        ],
    );
    assert!(err.contains("no peer in the session has block"), "{err}");
    assert!(refused(&url) > before, "the wrong block was not counted");
    let err = fails(r, &["block", "stat", &wanted.to_string()]);
    assert!(err.contains("not in the local store"), "{err}");

    // 4. Malformed protobuf and an oversized length prefix, each on a stream opened before
    // either is written (the first one read gets the peer disconnected).
    let base = refused(&url);
    rt.block_on(async {
        let mut streams = Vec::new();
        for _ in 0..2 {
            streams.push(loop {
                match control.open_stream(daemon_peer, PROTOCOL).await {
                    Ok(s) => break s,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            });
        }
        for (mut s, bytes) in streams.into_iter().zip([
            frame(&[0x0a, 0xff, 0xff, 0x7f]),
            vec![0xff, 0xff, 0xff, 0x7f],
        ]) {
            let _ = s.write_all(&bytes).await;
            let _ = s.close().await;
        }
    });
    let started = Instant::now();
    while refused(&url) < base + 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "malformed messages not refused"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The peer that broke the protocol is disconnected, and refused when the daemon dials it
    // again.
    let started = Instant::now();
    while ok(r, &["--json", "peers"]).contains(&hostile_peer.to_string()) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the peer that sent malformed messages is still connected"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let err = fails(r, &["connect", &hostile_address]);
    assert!(err.contains("is refused for 10 minutes"), "{err}");
    // Still serving.
    assert!(ok(r, &["--json", "id"]).contains("peer_id"));
    assert_eq!(
        json_of(&ok(r, &["--json", "collection", "info", "guarded"]))["root"],
        info["root"]
    );
}
