//! Federated search between real daemons on loopback: a collection of 8 shards, written on
//! one node and held in parts by five others (every shard on two of them), searched by id
//! from a node that holds none of it — the same hits as a full replica gives, a coverage
//! report, failover when holders die, and a clear refusal below `--min-coverage`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[allow(dead_code)]
#[path = "../benches/engine/data.rs"]
mod data;

use std::path::Path;

use common::*;
use ipvec_protocol::search::{SearchAnswer, SearchRequest as WireRequest};
use serde_json::Value;

/// Points written, and queries searched.
const POINTS: usize = 3_000;
const QUERIES: usize = 100;

/// Which of the five holders keep shard `s`: two each, so that holders 0 and 3 share only
/// shard 3.
fn holders_of(shard: u32) -> [usize; 2] {
    [shard as usize % 5, (shard as usize + 2) % 5]
}

/// Writes `rows` as an .fvecs file (each row: its dimension as i32, then its f32s).
fn write_fvecs(path: &Path, rows: &[Vec<f32>]) {
    let mut bytes = Vec::new();
    for row in rows {
        bytes.extend_from_slice(&(row.len() as i32).to_le_bytes());
        for x in row {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).unwrap();
}

/// The JSON answers of `ipvec search NAME --query-file FILE` (one per query) and `extra` flags.
fn search_all(repo: &Path, name: &str, queries: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "--json",
        "search",
        name,
        "--query-file",
        queries.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(repo, &args).lines().map(json_of).collect()
}

/// The (id, score) pairs of an answer.
fn hits(answer: &Value) -> Vec<(Value, f64)> {
    answer["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["id"].clone(), h["score"].as_f64().unwrap()))
        .collect()
}

#[test]
fn a_node_holding_nothing_searches_a_collection_spread_over_five_peers() {
    let data = data::load(QUERIES).expect("apt-get install dataset-fashion-mnist");
    // The writer: 8 shards of Fashion-MNIST.
    let w = new_repo();
    ok(
        &w.path,
        &[
            "collection",
            "create",
            "fm",
            "--dim",
            "784",
            "--metric",
            "l2",
            "--shards",
            "8",
        ],
    );
    let file = w.path.parent().unwrap().join("fm.jsonl");
    let lines: Vec<String> = (0..POINTS)
        .map(|i| {
            serde_json::json!({"id": i, "vector": data.vector(i), "metadata": {"label": data.labels[i]}})
                .to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    ok(&w.path, &["add", "fm", file.to_str().unwrap()]);
    let mut dw = Daemon::start(&w.path, &[]);
    let id = json_of(&ok(&w.path, &["--json", "collection", "info", "fm"]))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let addr_w = address_of(&w.path);

    // Five holders, each fetching its shards from the writer.
    let holders: Vec<TestRepo> = (0..5).map(|_| new_repo()).collect();
    let mut daemons: Vec<Option<Daemon>> = holders
        .iter()
        .map(|h| Some(Daemon::start_with(&h.path, &[], &["--bootstrap", &addr_w])))
        .collect();
    for (i, h) in holders.iter().enumerate() {
        let shards: Vec<String> = (0..8u32)
            .filter(|s| holders_of(*s).contains(&i))
            .map(|s| s.to_string())
            .collect();
        ok(
            &h.path,
            &[
                "fetch",
                &id,
                "--from",
                &addr_w,
                "--shards",
                &shards.join(","),
            ],
        );
    }

    // The asker: a full replica first, to know the answers a whole copy gives.
    let a = new_repo();
    let _da = Daemon::start_with(&a.path, &[], &["--bootstrap", &addr_w]);
    eventually("the asker connected", || !peers_of(&a.path).is_empty());
    let queries = a.path.parent().unwrap().join("queries.fvecs");
    write_fvecs(&queries, &data.queries_f32());
    ok(&a.path, &["fetch", &id]);
    let expected_exact = search_all(&a.path, "fm", &queries, &["--exact"]);
    let expected_hnsw = search_all(&a.path, "fm", &queries, &[]);
    assert_eq!(expected_exact.len(), QUERIES);
    ok(&a.path, &["collection", "drop", "fm"]);
    // The writer leaves: only the five partial holders serve the collection now.
    dw.stop();

    // The same answers, gathered from the holders, with every shard accounted for.
    // HNSW hits are also verified: every one traced from the signed head to its leaf.
    for (expected, flags) in [
        (&expected_exact, &["--exact"][..]),
        (&expected_hnsw, &["--verify"][..]),
    ] {
        let answers = search_all(&a.path, &id, &queries, flags);
        assert_eq!(answers.len(), QUERIES);
        for (q, (got, want)) in answers.iter().zip(expected.iter()).enumerate() {
            assert_eq!(hits(got), hits(want), "query {q} {flags:?}");
            let coverage = &got["coverage"];
            assert_eq!(coverage["complete"], true, "query {q}: {coverage}");
            assert_eq!(
                coverage["searched"],
                serde_json::json!([0, 1, 2, 3, 4, 5, 6, 7])
            );
            let report = coverage["report"].as_array().unwrap();
            assert_eq!(report.len(), 8);
            if flags.contains(&"--verify") {
                let verified: u64 = report
                    .iter()
                    .map(|s| s["verified"].as_u64().unwrap_or(0))
                    .sum();
                assert_eq!(verified, 10, "query {q}: {coverage}");
                assert!(report.iter().all(|s| s.get("verify_failures").is_none()));
            }
            for shard in report {
                let by = shard["answered_by"].as_str().unwrap();
                let n = shard["shard"].as_u64().unwrap() as u32;
                let allowed: Vec<String> = holders_of(n)
                    .iter()
                    .map(|&h| peer_of(&holders[h].path))
                    .collect();
                assert!(
                    allowed.iter().any(|p| p == by),
                    "shard {n} answered by {by}"
                );
            }
        }
    }
    let line = coverage_line(&a.path, &id, &data, 0);
    assert!(line.starts_with("# coverage 8/8 shards"), "{line}");

    // One holder killed: its shards fail over to their other holder.
    let mut kill = |i: usize| {
        let mut d = daemons[i].take().unwrap();
        signal("KILL", d.pid());
        d.child.take().unwrap().wait().unwrap();
    };
    kill(0);
    let answers = search_all(&a.path, &id, &queries, &[]);
    for (q, (got, want)) in answers.iter().zip(expected_hnsw.iter()).enumerate() {
        assert_eq!(hits(got), hits(want), "query {q} with holder 0 gone");
        assert_eq!(got["coverage"]["complete"], true);
    }

    // Both holders of shard 3 gone: the answer comes by its deadline without it, and says so.
    kill(3);
    let answer = json_of(&ok(
        &a.path,
        &[
            "--json",
            "search",
            &id,
            "--vector",
            &vector_text(&data, 1),
            "--deadline-ms",
            "3000",
        ],
    ));
    let coverage = &answer["coverage"];
    assert_eq!(coverage["complete"], false);
    assert_eq!(
        coverage["searched"],
        serde_json::json!([0, 1, 2, 4, 5, 6, 7])
    );
    let missing = &coverage["report"][3];
    assert!(missing["missing"].as_str().is_some(), "{missing}");
    assert_eq!(answer["hits"].as_array().unwrap().len(), 10);
    let line = coverage_line(&a.path, &id, &data, 1);
    assert!(
        line.starts_with("# coverage 7/8 shards; missing: shard 3"),
        "{line}"
    );
    let refused = fails(
        &a.path,
        &[
            "search",
            &id,
            "--vector",
            &vector_text(&data, 1),
            "--min-coverage",
            "1",
        ],
    );
    assert!(
        refused.contains("7 of 8 shards answered") && refused.contains("shard 3"),
        "{refused}"
    );

    // What the asker counted.
    let metrics = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(_da.metrics());
    let count = |event: &str| sample(&metrics, "ipvec_federation_events", &[("event", event)]);
    assert!(count("searches") >= (3 * QUERIES) as f64);
    assert!(count("failovers") >= 1.0);
    assert!(count("missing_shards") >= 1.0);
}

/// The last line of `ipvec search` on `repo` for test query `query`: its coverage line.
fn coverage_line(repo: &Path, id: &str, data: &data::Dataset, query: usize) -> String {
    let text = ok(repo, &["search", id, "--vector", &vector_text(data, query)]);
    text.lines().last().unwrap().to_string()
}

/// Creates collection `films` (4-d, L2, `shards` shards) in the repository at `repo` with
/// points `0..points`.
fn films(repo: &Path, shards: u32, points: u64) {
    let shards = shards.to_string();
    ok(
        repo,
        &[
            "collection",
            "create",
            "films",
            "--dim",
            "4",
            "--metric",
            "l2",
            "--shards",
            &shards,
        ],
    );
    let file = repo.parent().unwrap().join("films.jsonl");
    std::fs::write(&file, points_jsonl(0..points)).unwrap();
    ok(repo, &["add", "films", file.to_str().unwrap()]);
}

/// Test query `i` as the CLI's comma-separated vector.
fn vector_text(data: &data::Dataset, i: usize) -> String {
    data.query_vector(i)
        .iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Sends `bytes` as one framed request on a new `/ipvec/search/1.0.0` stream to `peer`; the
/// decoded answer, or `None` if the stream closed without one.
async fn raw_search(
    control: &mut libp2p_stream::Control,
    peer: libp2p::PeerId,
    bytes: &[u8],
) -> Option<SearchAnswer> {
    use futures::{AsyncReadExt, AsyncWriteExt};
    // A few tries while the connection comes up; none once the peer refuses us.
    let mut tries = 0;
    let mut stream = loop {
        match control
            .open_stream(peer, ipvec_node::net::search::PROTOCOL)
            .await
        {
            Ok(s) => break s,
            Err(_) if tries < 100 => tries += 1,
            Err(_) => return None,
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    stream.write_all(&hostile::frame(bytes)).await.ok()?;
    stream.flush().await.ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    // The answer is one frame: skip its length prefix.
    let start = answer.iter().position(|b| b & 0x80 == 0)? + 1;
    SearchAnswer::decode(answer.get(start..)?, 1_000).ok()
}

#[test]
fn peers_searches_are_checked_limited_and_a_flooding_peer_is_refused() {
    let repo = new_repo();
    let r = &repo.path;
    films(r, 2, 300);
    // A low rate, so that one client's sequential requests go over it.
    let daemon = Daemon::start(r, &[("IPVEC_P2P_SEARCH_RATE_PER_PEER", "50")]);
    let info = json_of(&ok(r, &["--json", "collection", "info", "films"]));
    let id = info["id"].as_str().unwrap().to_string();
    let (address, daemon_peer) = hostile::address_and_peer(r);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _entered = rt.enter();
    let (mut swarm, hostile_peer, hostile_address, mut control, _incoming) =
        hostile::hostile_peer(&rt, ipvec_node::net::search::PROTOCOL);
    swarm.dial(address.clone()).unwrap();
    rt.spawn(async move {
        use futures::StreamExt;
        loop {
            swarm.select_next_some().await;
        }
    });
    let request = |change: &dyn Fn(&mut WireRequest)| {
        let mut request = WireRequest {
            collection: id.clone(),
            shards: vec![0, 1],
            roots: None,
            seq: None,
            vector: Vec::new(),
            k: 5,
            ef: None,
            exact: true,
            filter: None,
            metadata: false,
            deadline_ms: 5_000,
        };
        request.set_query(&[3.0, 1.0, -2.0, 5.0]);
        change(&mut request);
        ipvec_protocol::dagcbor::encode(&request).unwrap()
    };
    let mut ask = |bytes: Vec<u8>| {
        rt.block_on(raw_search(&mut control, daemon_peer, &bytes))
            .unwrap()
    };

    // A good request: each shard answered at its root, and the two merged give the exact top 5.
    let answer = ask(request(&|_| {}));
    assert_eq!(answer.refused, None);
    let mut merged = Vec::new();
    for (n, shard) in answer.shards.iter().enumerate() {
        assert_eq!(shard.shard, n as u32);
        assert_eq!(shard.error, None);
        assert_eq!(
            shard.root.unwrap().to_string(),
            info["shard_status"][n]["root"].as_str().unwrap()
        );
        merged.extend(shard.hits.iter().map(|h| (h.score, h.id.id().to_string())));
    }
    merged.sort_by(|a, b| b.0.total_cmp(&a.0));
    merged.truncate(5);
    let local = json_of(&ok(
        r,
        &[
            "--json", "search", "films", "--vector", "3,1,-2,5", "-k", "5", "--exact",
        ],
    ));
    let local: Vec<String> = local["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].to_string())
        .collect();
    assert_eq!(
        merged.into_iter().map(|(_, id)| id).collect::<Vec<_>>(),
        local
    );

    // Bad requests: each gets an error that says what is wrong, never a hang.
    let refused = |answer: SearchAnswer| {
        let e = answer.refused.expect("refused");
        (e.code, e.message)
    };
    let (code, message) = refused(ask(request(&|r| r.set_query(&[1.0, 2.0, 3.0]))));
    assert_eq!(code, "bad_request");
    assert!(message.contains("3 dimensions"), "{message}");
    let (code, _) = refused(ask(request(&|r| {
        r.collection = libp2p::PeerId::random().to_string()
    })));
    assert_eq!(code, "not_held");
    let (code, message) = refused(ask(request(&|r| r.set_query(&vec![0.5; 20_000]))));
    assert_eq!(code, "bad_request");
    assert!(message.contains("vector"), "{message}");
    let (code, message) = refused(ask(b"\xa1\x61x\xff".to_vec()));
    assert_eq!(code, "bad_request");
    assert!(message.contains("malformed"), "{message}");
    let answer = ask(request(&|r| r.shards = vec![1, 7]));
    assert_eq!(answer.shards[0].error, None);
    let no_shard = answer.shards[1].error.clone().unwrap();
    assert_eq!(
        (no_shard.code.as_str(), answer.shards[1].shard),
        ("bad_request", 7)
    );
    let other_root = answer.shards[0].root.unwrap();
    let answer = ask(request(&|r| r.roots = Some(vec![other_root, other_root])));
    assert_eq!(answer.shards[0].error.as_ref().unwrap().code, "stale");
    assert_eq!(answer.shards[1].error, None, "shard 1 is at that root");

    // A flood: over its rate the peer is told so, the node's own searches keep answering,
    // and a peer that never pauses is disconnected and refused.
    let mut rate_limited = 0;
    for i in 0.. {
        match rt.block_on(raw_search(&mut control, daemon_peer, &request(&|_| {}))) {
            Some(answer) => {
                if answer.refused.is_some_and(|e| e.code == "rate_limited") {
                    rate_limited += 1;
                }
            }
            None => break,
        }
        if i % 50 == 0 {
            ok(r, &["search", "films", "--vector", "3,1,-2,5"]);
        }
        assert!(i < 2_000, "the flooding peer was never refused");
    }
    assert!(rate_limited >= 1);
    hostile::disconnected_and_refused(r, hostile_peer, &hostile_address, 20);
    ok(r, &["search", "films", "--vector", "3,1,-2,5"]);

    // An oversized request: its sender is refused at once.
    let (mut swarm, second, second_address, mut control, _incoming) =
        hostile::hostile_peer(&rt, ipvec_node::net::search::PROTOCOL);
    swarm.dial(address).unwrap();
    rt.spawn(async move {
        use futures::StreamExt;
        loop {
            swarm.select_next_some().await;
        }
    });
    rt.block_on(async {
        use futures::AsyncWriteExt;
        let mut stream = loop {
            match control
                .open_stream(daemon_peer, ipvec_node::net::search::PROTOCOL)
                .await
            {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        };
        let _ = stream.write_all(&[0xff, 0xff, 0xff, 0x7f]).await;
        let _ = stream.close().await;
    });
    hostile::disconnected_and_refused(r, second, &second_address, 20);
    let served = hostile::metric(
        &daemon.url,
        "ipvec_federation_events_total{event=\"remote_served\"}",
    );
    let refused = hostile::metric(
        &daemon.url,
        "ipvec_federation_events_total{event=\"remote_refused\"}",
    );
    assert!(
        served >= 100.0 && refused >= (3 + rate_limited) as f64,
        "served {served}, refused {refused}"
    );
}

/// A peer that claims to hold a whole collection: it announces the collection's key in the
/// DHT and answers searches with the real holder's answer, forged (a better score for the
/// first hit, another id for the second, raised to the top too).
#[derive(libp2p::swarm::NetworkBehaviour)]
struct Forger {
    stream: libp2p_stream::Behaviour,
    kad: libp2p::kad::Behaviour<libp2p::kad::store::MemoryStore>,
}

/// The score a forged first hit claims (far better than any real one).
const FORGED_SCORE: f64 = 1_000.0;

#[test]
fn forged_hits_are_caught_by_verify_and_their_peer_is_penalised() {
    use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
    use libp2p::{identity::Keypair, kad, PeerId, StreamProtocol};

    let w = new_repo();
    films(&w.path, 8, 400);
    // Writes stay in the writer's log until the test is over (no periodic commit).
    let _dw = Daemon::start(&w.path, &[("IPVEC_STORAGE_COMMIT_INTERVAL_MS", "3600000")]);
    let id = json_of(&ok(&w.path, &["--json", "collection", "info", "films"]))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (w_address, w_peer) = hostile::address_and_peer(&w.path);
    let a = new_repo();
    let da = Daemon::start_with(&a.path, &[], &["--bootstrap", &w_address.to_string()]);
    eventually("the asker connected", || !peers_of(&a.path).is_empty());
    let (a_address, a_peer) = hostile::address_and_peer(&a.path);

    // The forger joins the DHT, announces the collection, and serves forged searches.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = Keypair::generate_ed25519();
    let forger = PeerId::from(key.public());
    let mut swarm = rt.block_on(async {
        hostile::tcp_swarm(&key, |key| {
            let peer = key.public().to_peer_id();
            let mut kad = kad::Behaviour::with_config(
                peer,
                kad::store::MemoryStore::new(peer),
                kad::Config::new(StreamProtocol::new(ipvec_node::net::KAD_PROTOCOL)),
            );
            kad.set_mode(Some(kad::Mode::Server));
            Forger {
                stream: libp2p_stream::Behaviour::new(),
                kad,
            }
        })
    });
    let _entered = rt.enter();
    let listening = hostile::listen(&rt, &mut swarm);
    swarm.add_external_address(listening);
    swarm
        .behaviour_mut()
        .kad
        .add_address(&w_peer, w_address.clone());
    swarm
        .behaviour_mut()
        .kad
        .add_address(&a_peer, a_address.clone());
    swarm.dial(w_address).unwrap();
    swarm.dial(a_address).unwrap();
    let collection_key = ipvec_protocol::announce::collection_key(&id);
    swarm
        .behaviour_mut()
        .kad
        .start_providing(collection_key.to_bytes().into())
        .unwrap();
    let mut control = swarm.behaviour().stream.new_control();
    let mut incoming = control.accept(ipvec_node::net::search::PROTOCOL).unwrap();
    rt.spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    // What the writer answers for the test's query, shard by shard, kept to forge from: the
    // forger answers at once, faster than the writer.
    let query = |shards: Vec<u32>| {
        let mut request = WireRequest {
            collection: id.clone(),
            shards,
            roots: None,
            seq: None,
            vector: Vec::new(),
            k: 10,
            ef: None,
            exact: true,
            filter: None,
            metadata: true,
            deadline_ms: 5_000,
        };
        request.set_query(&[3.0, 1.0, -2.0, 5.0]);
        request
    };
    // One shard a request: a request for several is one search split by shard, which leaves
    // a shard only its hits among the best k of all, often none.
    let mut forged: Vec<_> = (0..8)
        .map(|n| {
            let answer = rt
                .block_on(raw_search(
                    &mut control,
                    w_peer,
                    &query(vec![n]).encode().unwrap(),
                ))
                .unwrap();
            answer.shards.into_iter().next().unwrap()
        })
        .collect();
    for shard in &mut forged {
        assert!(shard.hits.len() >= 2, "{shard:?}");
        if let Some(first) = shard.hits.first_mut() {
            first.score = FORGED_SCORE;
        }
        if let Some(second) = shard.hits.get_mut(1) {
            second.id = ipvec_protocol::entry::EntryId::Int(99_999)
                .to_key()
                .unwrap();
            second.score = FORGED_SCORE - 1.0;
        }
    }
    rt.spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            // The length prefix, then the request.
            let mut len = 0usize;
            for shift in (0..).step_by(7) {
                if stream.read_exact(&mut byte).await.is_err() {
                    break;
                }
                len |= usize::from(byte[0] & 0x7f) << shift;
                if byte[0] & 0x80 == 0 {
                    break;
                }
            }
            request.resize(len, 0);
            if stream.read_exact(&mut request).await.is_err() {
                continue;
            }
            let Ok(request) = WireRequest::decode(&request) else {
                continue;
            };
            let answer = SearchAnswer {
                shards: request
                    .shards
                    .iter()
                    .map(|n| forged[*n as usize].clone())
                    .collect(),
                refused: None,
            };
            let _ = stream
                .write_all(&hostile::frame(&answer.encode().unwrap()))
                .await;
            let _ = stream.close().await;
        }
    });
    // The asker hears of the forger as a holder.
    let providers = || {
        json_of(&ok(
            &a.path,
            &["--json", "dht", "providers", &collection_key.to_string()],
        ))
        .to_string()
    };
    eventually("the forger announced", || {
        providers().contains(&forger.to_string())
    });

    let search = |extra: &[&str]| {
        let mut args = vec!["--json", "search", &id, "--vector", "3,1,-2,5", "--exact"];
        args.extend_from_slice(extra);
        json_of(&ok(&a.path, &args))
    };
    let forged = |answer: &Value| {
        answer["hits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["score"].as_f64() == Some(FORGED_SCORE) || h["id"] == 99_999)
    };
    // Unverified, the forger's shards come back forged (the planner spreads shards over both
    // holders).
    let unverified = search(&[]);
    assert!(forged(&unverified), "{unverified}");
    // Verified: the forged hits are dropped and named, and the forger is penalised…
    let verified = search(&["--verify"]);
    assert!(!forged(&verified), "{verified}");
    let report = verified["coverage"]["report"].as_array().unwrap();
    let failures: Vec<&Value> = report
        .iter()
        .flat_map(|s| s["verify_failures"].as_array().into_iter().flatten())
        .collect();
    assert!(!failures.is_empty(), "{verified}");
    assert!(
        failures
            .iter()
            .any(|f| f.as_str().unwrap().contains("recomputed")),
        "{verified}"
    );
    assert!(
        failures
            .iter()
            .any(|f| f.as_str().unwrap().contains("99999")),
        "{unverified}\n{verified}"
    );
    // …so the next search asks only the honest holder, and answers what it holds.
    let after = search(&["--verify"]);
    let by: Vec<&str> = after["coverage"]["report"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["answered_by"].as_str().unwrap())
        .collect();
    assert!(by.iter().all(|p| *p == w_peer.to_string()), "{after}");
    let local = json_of(&ok(
        &w.path,
        &[
            "--json", "search", "films", "--vector", "3,1,-2,5", "--exact",
        ],
    ));
    assert_eq!(hits(&after), hits(&local));
    // A collection held here in full stays local unless asked otherwise; with --federated
    // this node answers every shard itself (it is the first holder of each).
    let own = json_of(&ok(
        &w.path,
        &[
            "--json",
            "search",
            "films",
            "--vector",
            "3,1,-2,5",
            "--exact",
            "--federated",
        ],
    ));
    assert_eq!(hits(&own), hits(&local));
    let by: Vec<&str> = own["coverage"]["report"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["answered_by"].as_str().unwrap())
        .collect();
    assert_eq!(by, ["local"; 8]);
    assert!(local["coverage"].get("report").is_none());
    // The asker's peer list shows what searches learnt of the forger.
    let record = |peer: PeerId| {
        json_of(&ok(&a.path, &["--json", "peers"]))["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["peer_id"] == peer.to_string())
            .map(|p| p["searches"].clone())
            .unwrap()
    };
    let forger_record = record(forger);
    assert!(
        forger_record["penalties"].as_u64().unwrap() >= 1,
        "{forger_record}"
    );
    assert_eq!(forger_record["skipped"], true);
    // A write still in the writer's log cannot be verified, but it is no lie: the hit is left
    // out and named, and the writer is still asked.
    let near = w.path.parent().unwrap().join("near.jsonl");
    std::fs::write(&near, r#"{"id": 777, "vector": [3, 1, -2, 5]}"#).unwrap();
    ok(&w.path, &["add", "films", near.to_str().unwrap()]);
    let pending = search(&["--verify"]);
    assert!(pending["hits"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["id"] != 777));
    assert!(
        pending.to_string().contains("not yet committed"),
        "{pending}"
    );
    let unverified = search(&[]);
    assert_eq!(unverified["hits"][0]["id"], 777, "{unverified}");
    let by_writer = pending["coverage"]["report"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["answered_by"] == w_peer.to_string());
    assert!(by_writer, "{pending}");
    let writer_record = record(w_peer);
    assert_eq!(
        (&writer_record["penalties"], &writer_record["skipped"]),
        (&serde_json::json!(0), &serde_json::json!(false)),
        "{writer_record}"
    );
    // Committed: a newer version than the one the asker trusted when it looked the holders
    // up; it moves its trust to the newer signed head, and the hit verifies.
    ok(&w.path, &["collection", "log", "films"]);
    let committed = search(&["--verify"]);
    assert_eq!(committed["hits"][0]["id"], 777, "{committed}");
    assert!(
        !committed.to_string().contains("verify_failures"),
        "{committed}"
    );
    let metrics = rt.block_on(da.metrics());
    assert!(
        sample(
            &metrics,
            "ipvec_federation_events",
            &[("event", "verification_failures")]
        ) >= 2.0
    );
}
