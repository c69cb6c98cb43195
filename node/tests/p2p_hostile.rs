//! Hostile peers against a real daemon: a head signed by the wrong key over gossipsub, a block
//! that does not match the CID asked for, malformed and oversized Bitswap messages, a peer
//! that sits on the daemon's wants. Each is refused and counted, nothing is stored, the daemon
//! keeps serving; a peer that sent a wrong block or broke the protocol is disconnected and
//! refused for a while; no peer is asked for more than its share of blocks at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{hostile::*, *};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use ipvec_node::net::bitswap::{
    message::{prefix_of, Message, Payload, Presence},
    PROTOCOL,
};
use libp2p::{gossipsub, identity::Keypair, PeerId};

/// The next length-prefixed Bitswap message on `stream` (None once it ends).
async fn next_message(stream: &mut libp2p::Stream) -> Option<Message> {
    let mut len = 0usize;
    for shift in (0..).step_by(7) {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.ok()?;
        len |= usize::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await.ok()?;
    Message::decode(&bytes).ok()
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
    let (address, daemon_peer) = address_and_peer(r);
    let refused = |url: &str| metric(url, "ipvec_bitswap{kind=\"refused\"}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let _entered = rt.enter();
    let (mut swarm, hostile_peer, hostile_address, control, mut incoming) =
        hostile_peer(&rt, PROTOCOL);
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
    // An honest node holds the block the daemon will ask for.
    let honest = new_repo();
    let wanted = {
        let mut put = std::process::Command::new(env!("CARGO_BIN_EXE_ipvec"))
            .arg("--repo")
            .arg(&honest.path)
            .args(["dag", "put", "--pin"])
            .env_remove("IPVEC_PATH")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(
            &mut put.stdin.take().unwrap(),
            br#"{"the real block": true}"#,
        )
        .unwrap();
        let out = put.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse::<cid::Cid>()
            .unwrap()
    };
    let _honest_daemon = Daemon::start(&honest.path, &[]);
    let honest_address = address_and_peer(&honest.path).0.to_string();
    let mut answer_control = control.clone();
    rt.spawn(async move {
        while let Some((peer, mut stream)) = incoming.next().await {
            // The first message of the stream (the daemon keeps streams open).
            let Some(message) = next_message(&mut stream).await else {
                continue;
            };
            for want in message.wants.iter().filter(|w| !w.cancel) {
                let lie = Message {
                    payload: vec![Payload {
                        prefix: prefix_of(&want.cid),
                        data: bytes::Bytes::from_static(b"not the real block"),
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

    // A session of the liar and the honest node: the block comes from the honest one, the
    // lie is refused again.
    let before = refused(&url);
    ok(
        r,
        &[
            "dag",
            "fetch",
            &wanted.to_string(),
            "--from",
            &hostile_address,
            "--from",
            &honest_address,
        ],
    );
    assert!(ok(r, &["block", "stat", &wanted.to_string()]).contains("dag-cbor"));
    within(10, "the second lie was not counted", || {
        refused(&url) > before
    });

    // Nobody asked this peer for the block it sent: once the grace for late answers is over,
    // it is disconnected and refused.
    disconnected_and_refused(r, hostile_peer, &hostile_address, 30);
    assert!(metric(&url, "ipvec_bitswap{kind=\"peers_banned\"}") >= 1.0);
    // Still serving.
    assert!(ok(r, &["--json", "id"]).contains("peer_id"));
    assert_eq!(
        json_of(&ok(r, &["--json", "collection", "info", "guarded"]))["root"],
        info["root"]
    );
}

#[test]
fn malformed_and_oversized_messages_get_their_sender_refused() {
    let repo = new_repo();
    let r = &repo.path;
    let daemon = Daemon::start(r, &[]);
    let url = daemon.url.clone();
    let refused = || metric(&url, "ipvec_bitswap{kind=\"refused\"}");
    let (address, daemon_peer) = address_and_peer(r);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _entered = rt.enter();
    let (mut swarm, hostile_peer, hostile_address, mut control, _incoming) =
        hostile_peer(&rt, PROTOCOL);
    swarm.dial(address).unwrap();
    rt.spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    // A malformed protobuf and an oversized length prefix, each on a stream opened before
    // either is written (the first one read gets the peer disconnected).
    let base = refused();
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
            // The daemon may cut the connection after the first: a write or close on the
            // other stream then need not finish, and is given up after a while.
            let wait = Duration::from_secs(5);
            let _ = tokio::time::timeout(wait, s.write_all(&bytes)).await;
            let _ = tokio::time::timeout(wait, s.close()).await;
        }
    });
    within(20, "malformed messages not refused", || {
        refused() >= base + 1.0
    });

    // The peer that broke the protocol is disconnected at once, and refused when the daemon
    // dials it again.
    disconnected_and_refused(r, hostile_peer, &hostile_address, 20);
    assert!(ok(r, &["--json", "id"]).contains("peer_id"));
}

#[test]
fn no_peer_is_asked_for_more_than_its_share_of_blocks_at_once() {
    use ipvec_node::net::bitswap::{PARALLEL_WANTS, WANTS_PER_PEER};
    use ipvec_protocol::cid::{block_cid, DAG_CBOR, RAW};
    use std::{
        collections::{HashMap, HashSet},
        sync::{Arc, Mutex},
    };

    let repo = new_repo();
    let r = &repo.path;
    let _daemon = Daemon::start(r, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _entered = rt.enter();
    let (mut swarm, _peer, hostile_address, control, mut incoming) = hostile_peer(&rt, PROTOCOL);
    rt.spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    // Three DAGs, each a root linking to 100 blocks the peer never sends: a fetch of each
    // gets the root, then asks for its children PARALLEL_WANTS at a time.
    let mut roots = HashMap::new();
    for dag in 0..3u32 {
        let children: Vec<ipld_core::ipld::Ipld> = (0..100u32)
            .map(|i| ipld_core::ipld::Ipld::Link(block_cid(RAW, &(dag * 1000 + i).to_le_bytes())))
            .collect();
        let bytes =
            ipvec_protocol::dagcbor::encode(&ipld_core::ipld::Ipld::List(children)).unwrap();
        roots.insert(block_cid(DAG_CBOR, &bytes), bytes);
    }
    let asked: Arc<Mutex<HashSet<cid::Cid>>> = Default::default();
    let answering = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let (roots, asked, answering) = (roots.clone(), asked.clone(), answering.clone());
        rt.spawn(async move {
            while let Some((peer, mut stream)) = incoming.next().await {
                let (roots, asked, answering) = (roots.clone(), asked.clone(), answering.clone());
                let mut control = control.clone();
                tokio::spawn(async move {
                    while let Some(message) = next_message(&mut stream).await {
                        let mut answer = Message::default();
                        for want in message.wants.iter().filter(|w| !w.cancel) {
                            if let Some(bytes) = roots.get(&want.cid) {
                                answer.payload.push(Payload {
                                    prefix: prefix_of(&want.cid),
                                    data: bytes.clone().into(),
                                });
                                continue;
                            }
                            asked.lock().unwrap().insert(want.cid);
                            // Sits on the wants until told to answer; then has none.
                            if answering.load(std::sync::atomic::Ordering::SeqCst) {
                                answer.presences.push(Presence {
                                    cid: want.cid,
                                    have: false,
                                });
                            }
                        }
                        if answer != Message::default() {
                            if let Ok(mut s) = control.open_stream(peer, PROTOCOL).await {
                                let _ = s.write_all(&frame(&answer.encode())).await;
                                let _ = s.close().await;
                            }
                        }
                    }
                });
            }
        });
    }
    let fetches: Vec<_> = roots
        .keys()
        .map(|root| {
            std::process::Command::new(env!("CARGO_BIN_EXE_ipvec"))
                .arg("--repo")
                .arg(r)
                .args([
                    "dag",
                    "fetch",
                    &root.to_string(),
                    "--from",
                    &hostile_address,
                ])
                .env_remove("IPVEC_PATH")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Three sessions would have 3 × PARALLEL_WANTS children in flight; the peer is asked for
    // WANTS_PER_PEER at most, and (past the rebroadcasts of those) for nothing more.
    let in_flight = || asked.lock().unwrap().len();
    within(30, "the fetches did not ask for children", || {
        in_flight() >= WANTS_PER_PEER
    });
    std::thread::sleep(ipvec_node::net::bitswap::REBROADCAST * 2);
    assert_eq!(in_flight(), WANTS_PER_PEER);
    // (The limit lies between one session's wants and three sessions'.)
    const { assert!(WANTS_PER_PEER > PARALLEL_WANTS && 3 * PARALLEL_WANTS > WANTS_PER_PEER) };
    // Told it has none of them, the fetches fail saying so.
    answering.store(true, std::sync::atomic::Ordering::SeqCst);
    for fetch in fetches {
        let out = fetch.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("no peer in the session has block"), "{err}");
    }
}
