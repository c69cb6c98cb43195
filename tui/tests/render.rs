//! Every view drawn from known state into ratatui's `TestBackend`, compared with the text
//! snapshots in `tests/snapshots/` (colours aside). `UPDATE_SNAPSHOTS=1` rewrites them after
//! a deliberate change; review the diff. docs/tui.md shows the same screens.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ipvec_tui::{
    api::{
        metrics::MetricsSample,
        types::{
            BreakerStateOut, CollectionInfo, Coverage, Hit, Holder, IdInfo, LogLine, NodeInfo,
            Peer, PeerSearches, ShardCoverage, ShardHolders, ShardInfo, ShardMap, StoreInfo,
        },
    },
    app::{Connection, PeerSort, PeersState, SearchResult, Snapshot, Tab},
    ui, App, Update,
};
use ratatui::{backend::TestBackend, Terminal};

const PEER: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
const ROOT: &str = "bafyr4igdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
const LEAF: &str = "bafyr4ibq7vsmjcyowqk3xqjx4n6oyd7p5fkv6tjxddmu7wsqvkcqy3t6ia";
/// Two peers holding shards, as the Peers view shows them (`12D3Ko…1111zz`).
const HOLDER_A: &str = "12D3KooWAbc1111111111111111111111111111111111111111zz";
const HOLDER_B: &str = "12D3KooWXyz2222222222222222222222222222222222222222yy";

/// The screen as text, one line per row, trailing spaces cut.
fn render(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::draw(frame, app)).unwrap();
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        let row: String = (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol().to_string())
            .collect();
        text.push_str(row.trim_end());
        text.push('\n');
    }
    text
}

/// Compares with `tests/snapshots/NAME.txt`.
fn snapshot(name: &str, screen: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, screen).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}; run with UPDATE_SNAPSHOTS=1 to write it:\n{screen}",
            path.display()
        )
    });
    assert!(
        expected == screen,
        "{name} changed; run with UPDATE_SNAPSHOTS=1 if that is intended\n--- expected\n{expected}\n--- got\n{screen}"
    );
}

fn collection(name: &str, points: u64, writable: bool) -> CollectionInfo {
    CollectionInfo {
        name: name.into(),
        id: PEER.into(),
        dim: 3,
        metric: "cosine".into(),
        quantization: "f32".into(),
        shards: 1,
        points,
        root: ROOT.into(),
        version: 4,
        index_memory_bytes: 9_312,
        wal_bytes: 0,
        writable,
        ..CollectionInfo::default()
    }
}

/// A dashboard connected to a node with two collections, after five refreshes.
fn connected() -> App {
    let mut app = App::new("http://127.0.0.1:5080");
    let node = NodeInfo {
        peer_id: PEER.into(),
        version: "0.1.0".into(),
        repo: "/home/op/.ipvec".into(),
        collections: 2,
        store: StoreInfo {
            blocks: 1_204,
            bytes: 3_481_600,
        },
        ..NodeInfo::default()
    };
    let mut fm = collection("fashion", 60_000, false);
    fm.dim = 784;
    fm.metric = "l2".into();
    fm.wal_bytes = 0;
    let mut docs = collection("docs", 2, true);
    docs.wal_bytes = 1_536;
    docs.version = 7;
    for (i, (ops, searches, seconds, bytes)) in [
        (0.0, 0.0, 0.0, 3_000_000.0),
        (40.0, 30.0, 0.060, 3_100_000.0),
        (90.0, 70.0, 0.100, 3_300_000.0),
        (100.0, 75.0, 0.130, 3_400_000.0),
        (180.0, 140.0, 0.260, 3_481_600.0),
    ]
    .into_iter()
    .enumerate()
    {
        app.apply(Update::Snapshot(Box::new(Snapshot {
            url: "http://127.0.0.1:5080".into(),
            node: node.clone(),
            id: Some(IdInfo {
                peer_id: PEER.into(),
                listen: vec![
                    "/ip4/0.0.0.0/tcp/4001".into(),
                    "/ip4/0.0.0.0/udp/4001/quic-v1".into(),
                ],
                ..IdInfo::default()
            }),
            collections: vec![docs.clone(), fm.clone()],
            peers: PeersState::NotAvailable(
                "GET /v1/peers answered 404: peers appear here once the node runs it.".into(),
            ),
            metrics: Some(MetricsSample {
                operations: ops,
                searches,
                search_seconds: seconds,
                store_bytes: bytes,
            }),
            at_secs: i as f64,
        })));
    }
    app
}

fn press(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

#[test]
fn node_view() {
    let app = connected();
    let screen = render(&app, 80, 24);
    assert!(screen.contains(PEER));
    assert!(screen.contains("1,204 blocks, 3.3 MiB"));
    assert!(screen.contains("● connected"));
    assert!(
        screen.contains("Listening    /ip4/0.0.0.0/tcp/4001"),
        "{screen}"
    );
    assert!(screen.contains("ops 80.0/s"), "{screen}");
    assert!(screen.contains("search 2.0 ms"), "{screen}");
    snapshot("node", &screen);
}

#[test]
fn node_view_with_uptime_and_addresses() {
    let mut app = connected();
    app.node.as_mut().unwrap().uptime_secs = Some(3_723);
    app.id = Some(IdInfo {
        peer_id: PEER.into(),
        listen: (1..=5)
            .map(|i| format!("/ip4/0.0.0.0/tcp/400{i}"))
            .collect(),
        ..IdInfo::default()
    });
    let screen = render(&app, 80, 24);
    assert!(screen.contains("1h 02m 03s"));
    assert!(
        screen.contains("Listening    /ip4/0.0.0.0/tcp/4001"),
        "{screen}"
    );
    assert!(
        screen.contains("/ip4/0.0.0.0/tcp/4003 (+2 more)"),
        "{screen}"
    );
    assert!(!screen.contains("tcp/4004"));
}

#[test]
fn unreachable_daemon_banner_over_the_last_known_state() {
    let mut app = connected();
    for _ in 0..3 {
        app.apply(Update::Unreachable {
            url: Some("http://127.0.0.1:5080".into()),
            error: "tcp connect error: Connection refused (os error 111)".into(),
        });
    }
    let screen = render(&app, 80, 24);
    assert!(screen.contains(
        "Daemon unreachable at http://127.0.0.1:5080: retrying every second (attempt 3)"
    ));
    assert!(screen.contains("Connection refused"));
    assert!(screen.contains("✖ offline"));
    assert!(screen.contains(PEER), "the last known state stays visible");
    snapshot("unreachable", &screen);
}

#[test]
fn waiting_for_a_daemon_that_never_answered() {
    let mut app = App::new("/home/op/.ipvec/api");
    assert_eq!(app.connection, Connection::Connecting);
    let screen = render(&app, 80, 24);
    assert!(screen.contains("Connecting to /home/op/.ipvec/api"));
    app.apply(Update::Unreachable {
        url: None,
        error: "no daemon is running for this repository (/home/op/.ipvec/api is missing): \
                start one with `ipvec daemon`"
            .into(),
    });
    let screen = render(&app, 80, 24);
    assert!(screen.contains("no daemon is running for this repository"));
    snapshot("no-daemon", &screen);
}

#[test]
fn peers_view_without_the_peer_to_peer_layer() {
    let mut app = connected();
    press(&mut app, KeyCode::Char('2'));
    let screen = render(&app, 80, 24);
    assert!(screen.contains("peer-to-peer layer is not available on this node"));
    snapshot("peers-unavailable", &screen);
}

#[test]
fn peers_view_sorted_by_latency() {
    let mut app = connected();
    let peer = |id: &str, address: &str, direction: &str, latency: Option<f64>| Peer {
        peer_id: id.into(),
        address: address.into(),
        direction: direction.into(),
        latency_ms: latency,
        protocols: vec!["/ipfs/ping/1.0.0".into(), "/ipfs/bitswap/1.2.0".into()],
        ..Peer::default()
    };
    app.peers = PeersState::Connected(vec![
        peer(
            "12D3KooWAbc1111111111111111111111111111111111111111zz",
            "/ip4/10.0.0.7/tcp/4001",
            "outbound",
            Some(12.5),
        ),
        Peer {
            agent: Some("ipvec/0.1.0".into()),
            blocks_sent: Some(1_200),
            blocks_received: Some(34),
            ..peer(
                "12D3KooWXyz2222222222222222222222222222222222222222yy",
                "/ip4/192.168.1.20/udp/4001/quic-v1",
                "inbound",
                Some(0.8),
            )
        },
        peer(
            "12D3KooWMno3333333333333333333333333333333333333333xx",
            "/ip6/::1/tcp/4002",
            "inbound",
            None,
        ),
    ]);
    press(&mut app, KeyCode::Char('2'));
    for _ in 0..3 {
        press(&mut app, KeyCode::Char('s'));
    }
    assert_eq!(app.peer_sort, PeerSort::Latency);
    let screen = render(&app, 80, 24);
    let rows: Vec<&str> = screen.lines().filter(|l| l.contains("12D3Ko")).collect();
    assert!(rows[0].contains("0.80 ms") && rows[0].contains("1,200/34"));
    assert!(rows[1].contains("12.5 ms"));
    assert!(rows[2].contains("—"), "unknown latency sorts last");
    assert!(
        screen.contains("Address    /ip4/192.168.1.20/udp/4001/quic-v1 (inbound)"),
        "the selected peer in full: {screen}"
    );
    assert!(screen.contains("Agent      ipvec/0.1.0"), "{screen}");
    snapshot("peers", &screen);
}

#[test]
fn peers_view_with_what_federated_searches_learnt() {
    let mut app = connected();
    let peer = |id: &str, address: &str, searches: Option<PeerSearches>| Peer {
        peer_id: id.into(),
        address: address.into(),
        direction: "outbound".into(),
        latency_ms: Some(0.5),
        protocols: vec!["/ipfs/ping/1.0.0".into(), "/ipvec/search/1.0.0".into()],
        searches,
        ..Peer::default()
    };
    let record = |ms: Option<f64>, p95: Option<f64>| PeerSearches {
        latency_ms: ms,
        latency_p95_ms: p95,
        answers: 41,
        ..PeerSearches::default()
    };
    app.peers = PeersState::Connected(vec![
        peer(
            HOLDER_A,
            "/ip4/10.0.0.7/tcp/4001",
            Some(record(Some(3.12), Some(9.8))),
        ),
        Peer {
            breaker: BreakerStateOut::Open,
            ..peer(
                HOLDER_B,
                "/ip4/10.0.0.8/tcp/4001",
                Some(PeerSearches {
                    failures: 5,
                    skipped: true,
                    ..record(Some(120.4), Some(450.0))
                }),
            )
        },
        Peer {
            breaker: BreakerStateOut::HalfOpen,
            ..peer(
                "12D3KooWMno3333333333333333333333333333333333333333xx",
                "/ip4/10.0.0.9/tcp/4001",
                Some(PeerSearches {
                    penalties: 2,
                    ..record(Some(12.4), None)
                }),
            )
        },
        peer(
            "12D3KooWPqr4444444444444444444444444444444444444444ww",
            "/ip4/10.0.0.10/tcp/4001",
            None,
        ),
    ]);
    press(&mut app, KeyCode::Char('2'));
    for _ in 0..4 {
        press(&mut app, KeyCode::Char('s'));
    }
    assert_eq!(app.peer_sort, PeerSort::Search);
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Down);
    let screen = render(&app, 80, 24);
    assert!(screen.contains("Peers (4) by search time ↑"), "{screen}");
    assert!(screen.contains("Search ms"), "{screen}");
    let rows: Vec<&str> = screen.lines().filter(|l| l.contains("12D3Ko…")).collect();
    assert_eq!(rows.len(), 4, "{screen}");
    let search_cell = |row: &str| row.trim_end_matches('│').trim_end().to_string();
    assert!(search_cell(rows[0]).ends_with(" 3.1/9.8"), "{screen}");
    assert!(search_cell(rows[1]).ends_with(" 12 !"), "{screen}");
    assert!(search_cell(rows[2]).ends_with(" 120/450 ✖"), "{screen}");
    // The Breaker column, before the search times.
    assert!(
        search_cell(rows[0]).ends_with("closed    3.1/9.8"),
        "{screen}"
    );
    assert!(search_cell(rows[1]).ends_with("half-open 12 !"), "{screen}");
    assert!(
        search_cell(rows[2]).ends_with("open      120/450 ✖"),
        "{screen}"
    );
    assert!(
        search_cell(rows[3]).ends_with(" —"),
        "never asked: last, and a dash:\n{screen}"
    );
    let header = screen.lines().find(|l| l.contains("Search ms")).unwrap();
    assert!(
        !header.contains("Protocols"),
        "no Protocols column at 80 columns:\n{screen}"
    );
    assert!(
        screen.contains("Searches   41 answers in 120 ms (p95 450 ms), 5 failures, 0 penalties"),
        "the selected peer in full:\n{screen}"
    );
    assert!(
        screen.contains("            skipped by searches for now (its breaker is open)"),
        "{screen}"
    );
    snapshot("peers-searches", &screen);
    // Wider, the protocols come back as a column.
    let screen = render(&app, 120, 30);
    let header = screen.lines().find(|l| l.contains("Search ms")).unwrap();
    assert!(header.contains("Protocols"), "{screen}");
    assert!(
        screen
            .lines()
            .any(|l| l.contains("120/450 ✖") && l.contains("/ipfs/ping/1.0.0")),
        "{screen}"
    );
    for (w, h) in [(40, 12), (20, 6), (1, 1), (0, 0)] {
        render(&app, w, h);
    }
}

#[test]
fn collections_view() {
    let mut app = connected();
    press(&mut app, KeyCode::Char('3'));
    let screen = render(&app, 80, 24);
    assert!(screen.contains("Collections (2)"));
    assert!(screen.contains("60,000"));
    assert!(screen.contains("bafyr4…5fbzdi"), "{screen}");
    assert!(screen.contains(ROOT), "the selected collection's full root");
    assert!(screen.contains("the node does not report replication yet"));
    snapshot("collections", &screen);
    press(&mut app, KeyCode::Down);
    let screen = render(&app, 80, 24);
    assert!(screen.contains("read-only: imported without the owner key"));
}

#[test]
fn collections_view_with_replication_reported() {
    let mut app = connected();
    app.collections[0].replicas = Some(2);
    app.collections[0].replication_factor = Some(3);
    app.collections[0].state = Some("syncing".into());
    app.collections[0].sync_percent = Some(41.6);
    app.collections[0].lag = Some(2);
    app.collections[0].announced_secs_ago = Some(75);
    app.collections[0].shard_status = (0..2)
        .map(|shard| ShardInfo {
            shard,
            root: ROOT.into(),
            points: 1 + u64::from(shard),
            held: None,
            replicas: (shard == 0).then_some(2),
        })
        .collect();
    press(&mut app, KeyCode::Char('3'));
    let screen = render(&app, 80, 24);
    assert!(screen.contains("2/3"));
    assert!(screen.contains("sync 42%"), "{screen}");
    assert!(
        screen.contains("2 of 3 replicas, sync 42%, 2 versions behind"),
        "{screen}"
    );
    assert!(
        screen.contains("Announced    in the DHT 1m 15s ago"),
        "{screen}"
    );
    assert!(
        screen.contains("0  bafyr4…5fbzdi  1 point, 2 replicas"),
        "{screen}"
    );
    assert!(screen.contains("1  bafyr4…5fbzdi  2 points, replicas not counted yet"));
    snapshot("collections-replication", &screen);
    // A replica that is caught up says so, without a lag.
    app.collections[0].state = Some("caught up".into());
    app.collections[0].sync_percent = None;
    app.collections[0].lag = Some(0);
    let screen = render(&app, 80, 24);
    assert!(screen.contains("2 of 3 replicas, caught up "), "{screen}");
    assert!(!screen.contains("behind"), "{screen}");
}

/// A partial replica says how many shards it holds, and which ones it does not.
#[test]
fn collections_view_of_a_partial_replica() {
    let mut app = connected();
    app.collections[0].shards = 4;
    app.collections[0].held_shards = Some(vec![1, 3]);
    app.collections[0].shard_status = (0..4)
        .map(|shard| ShardInfo {
            shard,
            root: ROOT.into(),
            points: 10,
            held: Some(shard % 2 == 1),
            replicas: Some(1),
        })
        .collect();
    press(&mut app, KeyCode::Char('3'));
    let screen = render(&app, 100, 30);
    assert!(screen.contains("2 of 4 shards held"), "{screen}");
    assert!(
        screen.contains("0  bafyr4…5fbzdi  10 points, 1 replica, not held here"),
        "{screen}"
    );
    assert!(
        screen.contains("1  bafyr4…5fbzdi  10 points, 1 replica ")
            || screen.contains("1  bafyr4…5fbzdi  10 points, 1 replica│"),
        "{screen}"
    );
}

/// docs in four shards, two holders wanted each: shard 0 has both, shard 1 only this node,
/// shard 2 a live peer and one whose record outlived it, shard 3 that peer alone.
// `..default()` even with every field given, so fields the node adds later (moves in
// progress) keep this compiling.
#[allow(clippy::needless_update)]
fn four_shards() -> ShardMap {
    let holder = |peer_id: &str, here: bool, alive: bool| Holder {
        peer_id: peer_id.into(),
        here,
        alive,
    };
    let holders = [
        vec![holder(PEER, true, true), holder(HOLDER_A, false, true)],
        vec![holder(PEER, true, true)],
        vec![
            holder(HOLDER_B, false, false),
            holder(HOLDER_A, false, true),
        ],
        vec![holder(HOLDER_B, false, false)],
    ];
    ShardMap {
        name: "docs".into(),
        id: PEER.into(),
        replication: 2,
        shards: holders
            .into_iter()
            .enumerate()
            .map(|(shard, holders)| ShardHolders {
                shard: shard as u32,
                root: if shard % 2 == 0 { ROOT } else { LEAF }.into(),
                points: 1_000 * (shard as u64 + 1),
                live: holders.iter().filter(|h| h.alive).count() as u32,
                holders,
                ..ShardHolders::default()
            })
            .collect(),
        ..ShardMap::default()
    }
}

#[test]
fn shard_map_view() {
    let mut app = connected();
    press(&mut app, KeyCode::Char('3'));
    press(&mut app, KeyCode::Char('s'));
    assert_eq!(app.shard_map_shown(), Some("docs"));
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("Asking the node who holds the shards of docs"),
        "{screen}"
    );
    app.apply(Update::ShardMap {
        collection: "docs".into(),
        outcome: Ok(four_shards()),
    });
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("Shards of docs (4), 2 holders wanted each, 3 under-replicated"),
        "{screen}"
    );
    assert!(
        screen.contains("Shard Root          Points Live  Move               Holders"),
        "{screen}"
    );
    let row = |screen: &str, shard: u32| {
        screen
            .lines()
            .find(|l| l.starts_with(&format!("│{shard:>5} ")))
            .unwrap_or_else(|| {
                panic!(
                    "no row for shard {shard}:
{screen}"
                )
            })
            .to_string()
    };
    assert!(
        row(&screen, 0).contains("bafyr4…5fbzdi  1,000 2/2                      ● here  ● …1111zz"),
        "{screen}"
    );
    assert!(
        row(&screen, 1).contains("bafyr4…y3t6ia  2,000 1/2                      ● here "),
        "{screen}"
    );
    assert!(
        row(&screen, 2).contains("1/2                      ● …1111zz  ✖ …2222yy"),
        "the live holder first:
{screen}"
    );
    assert!(
        row(&screen, 3).contains("0/2                      ✖ …2222yy"),
        "{screen}"
    );
    // The first shard in full.
    assert!(screen.contains(&format!("Root     {ROOT}")), "{screen}");
    assert!(
        screen.contains(&format!("Holders  {PEER}  this node")),
        "{screen}"
    );
    assert!(
        screen.contains(&format!("         {HOLDER_A}  connected")),
        "{screen}"
    );
    assert!(screen.contains("Esc back to the collections"), "{screen}");
    snapshot("shards", &screen);

    // Down to shard 3: nobody alive holds it.
    for _ in 0..3 {
        press(&mut app, KeyCode::Down);
    }
    let screen = render(&app, 80, 24);
    assert!(screen.contains("┌ Shard 3 ─"), "{screen}");
    assert!(
        screen.contains("Live     0 of 2 wanted holders alive: under-replicated"),
        "{screen}"
    );
    assert!(
        screen.contains(&format!("Holders  {HOLDER_B}  not connected")),
        "{screen}"
    );

    // A failed refresh keeps the map and says so; an answer about another collection is
    // not this one's.
    app.apply(Update::ShardMap {
        collection: "docs".into(),
        outcome: Err("timed out".into()),
    });
    app.apply(Update::ShardMap {
        collection: "fashion".into(),
        outcome: Ok(ShardMap::default()),
    });
    let screen = render(&app, 80, 24);
    assert!(screen.contains("refresh failed: timed out"), "{screen}");
    assert!(row(&screen, 3).contains("0/2"), "{screen}");
    for (w, h) in [(120, 40), (40, 12), (20, 6), (1, 1), (0, 0)] {
        render(&app, w, h);
    }

    // Esc: the collections again.
    press(&mut app, KeyCode::Esc);
    let screen = render(&app, 80, 24);
    assert!(screen.contains("Collections (2)"), "{screen}");
}

#[test]
fn shard_map_view_of_a_collection_the_node_cannot_map() {
    let mut app = connected();
    press(&mut app, KeyCode::Char('3'));
    press(&mut app, KeyCode::Char('s'));
    app.apply(Update::ShardMap {
        collection: "docs".into(),
        outcome: Err("404: no collection named docs".into()),
    });
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("The node did not give the shard map of docs:"),
        "{screen}"
    );
    assert!(screen.contains("404: no collection named docs"), "{screen}");
    for (w, h) in [(40, 12), (20, 6), (1, 1), (0, 0)] {
        render(&app, w, h);
    }
}

#[test]
fn search_view_with_hits() {
    let mut app = connected();
    press(&mut app, KeyCode::Char('4'));
    press(&mut app, KeyCode::Char('/'));
    for c in "id:1".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    let call = app
        .on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE))
        .unwrap();
    let screen = render(&app, 80, 24);
    assert!(screen.contains("searching …"));
    app.apply(Update::Searched {
        seq: call.seq,
        outcome: Ok(SearchResult {
            collection: "docs".into(),
            query: "id:1".into(),
            hits: vec![
                Hit {
                    id: 1.into(),
                    score: 1.0,
                    cid: Some(LEAF.into()),
                    metadata: None,
                },
                Hit {
                    id: "doc-2".into(),
                    score: 0.993_884,
                    cid: Some(LEAF.into()),
                    metadata: None,
                },
                Hit {
                    id: 3.into(),
                    score: 0.5,
                    cid: None,
                    metadata: None,
                },
            ],
            coverage: None,
            millis: 2.74,
        }),
    });
    let screen = render(&app, 80, 24);
    assert!(screen.contains("3 hits in 2.7 ms for id:1 in docs"));
    assert!(screen.contains("doc-2") && screen.contains("0.9939"));
    assert!(screen.contains("bafyr4ibq7vsmjcyowqk3"), "{screen}");
    assert!(screen.contains("in the log, not yet in a leaf"));
    snapshot("search", &screen);
}

/// Three hits, as `search_view_with_hits` has them.
fn three_hits() -> Vec<Hit> {
    vec![
        Hit {
            id: 1.into(),
            score: 1.0,
            cid: Some(LEAF.into()),
            metadata: None,
        },
        Hit {
            id: "doc-2".into(),
            score: 0.993_884,
            cid: Some(LEAF.into()),
            metadata: None,
        },
        Hit {
            id: 3.into(),
            score: 0.5,
            cid: None,
            metadata: None,
        },
    ]
}

/// Searches `docs` for `id:1` from the Search view; the answer is `coverage`'s.
fn searched(app: &mut App, coverage: Option<Coverage>) {
    press(app, KeyCode::Char('/'));
    for c in "id:1".chars() {
        press(app, KeyCode::Char(c));
    }
    let call = app
        .on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE))
        .unwrap();
    assert_eq!(call.federated, app.search.federated);
    app.apply(Update::Searched {
        seq: call.seq,
        outcome: Ok(SearchResult {
            collection: "docs".into(),
            query: "id:1".into(),
            hits: three_hits(),
            coverage,
            millis: 41.3,
        }),
    });
}

/// A federated search of eight shards: two answered here, the others by two peers (one
/// answer a hedge), shard 3 by nobody.
fn seven_of_eight() -> Coverage {
    let report = (0..8)
        .map(|shard| {
            let by = match shard {
                0 | 4 => "local",
                1 | 2 | 5 => HOLDER_A,
                _ => HOLDER_B,
            };
            let mut s = ShardCoverage {
                shard,
                answered_by: Some(by.into()),
                root: Some(ROOT.into()),
                seq: Some(4),
                latency_ms: Some(if by == "local" {
                    1
                } else {
                    20 + u64::from(shard)
                }),
                tried: vec![by.into()],
                ..ShardCoverage::default()
            };
            if shard == 3 {
                s.answered_by = None;
                s.root = None;
                s.seq = None;
                s.latency_ms = None;
                s.missing = Some("every holder failed: timed out after 2000 ms".into());
            }
            if shard == 6 {
                s.hedged = true;
                s.tried = vec![HOLDER_A.into(), HOLDER_B.into()];
            }
            s
        })
        .collect();
    Coverage {
        shards: 8,
        searched: vec![0, 1, 2, 4, 5, 6, 7],
        complete: false,
        report,
    }
}

#[test]
fn search_view_of_a_federated_search() {
    let mut app = connected();
    press(&mut app, KeyCode::Char('4'));
    assert!(render(&app, 80, 24).contains("┌ Search: local ─"));
    press(&mut app, KeyCode::Char('f'));
    assert!(app.search.federated);
    let screen = render(&app, 80, 24);
    assert!(screen.contains("┌ Search: federated ─"), "{screen}");
    searched(&mut app, Some(seven_of_eight()));
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("coverage 7/8 shards, 1 hedged, shard 3 missing"),
        "{screen}"
    );
    assert!(screen.contains("3 hits in 41.3 ms"), "{screen}");
    assert!(
        screen.contains("Shard Answered by Latency Hedged Notes"),
        "{screen}"
    );
    let row = |screen: &str, shard: u32| {
        screen
            .lines()
            .find(|l| l.starts_with(&format!("│{shard:>5} ")))
            .map(str::to_string)
    };
    // At 80×24 the hits and five shards fit: the missing and the hedged ones are among them.
    let missing = row(&screen, 3).unwrap_or_else(|| panic!("no row for shard 3:\n{screen}"));
    assert!(
        missing.contains("missing: every holder failed: timed out"),
        "{screen}"
    );
    let hedged = row(&screen, 6).unwrap_or_else(|| panic!("no row for shard 6:\n{screen}"));
    assert!(
        hedged.contains("…2222yy") && hedged.contains("26 ms") && hedged.contains("yes"),
        "{screen}"
    );
    assert!(row(&screen, 0).unwrap().contains("local"), "{screen}");
    assert!(screen.contains("… 3 more shards"), "{screen}");
    assert!(screen.contains("  3 3 "), "the hits stay whole:\n{screen}");
    snapshot("search-federated", &screen);
    // Taller, every shard has its row.
    let screen = render(&app, 80, 30);
    for shard in 0..8 {
        assert!(row(&screen, shard).is_some(), "no row {shard}:\n{screen}");
    }
    let fifth = row(&screen, 5).unwrap();
    assert!(
        fifth.contains("…1111zz") && fifth.contains(" 25 ms"),
        "{screen}"
    );
    assert!(!screen.contains("more shards"), "{screen}");
    for (w, h) in [(120, 40), (40, 12), (40, 17), (20, 6), (1, 1), (0, 0)] {
        render(&app, w, h);
    }
}

#[test]
fn search_view_of_a_local_search_says_which_shards_it_covered() {
    let mut app = connected();
    press(&mut app, KeyCode::Char('4'));
    // Every shard searched here: nothing to add under the hits.
    searched(
        &mut app,
        Some(Coverage {
            shards: 4,
            searched: vec![0, 1, 2, 3],
            complete: true,
            report: vec![],
        }),
    );
    let screen = render(&app, 80, 24);
    assert!(
        !screen.contains("coverage") && !screen.contains("shards"),
        "{screen}"
    );
    // A partial replica searched alone.
    searched(
        &mut app,
        Some(Coverage {
            shards: 4,
            searched: vec![1, 3],
            complete: false,
            report: vec![],
        }),
    );
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("searched shards 1, 3 of 4 (this node holds only those)"),
        "{screen}"
    );
    assert!(!screen.contains("Answered by"), "{screen}");
    assert!(screen.contains("┌ Search: local ─"), "{screen}");
}

#[test]
fn search_view_shows_long_l2_scores_whole() {
    let mut app = connected();
    press(&mut app, KeyCode::Char('4'));
    press(&mut app, KeyCode::Right);
    press(&mut app, KeyCode::Char('/'));
    for c in "id:7".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    let call = app
        .on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE))
        .unwrap();
    app.apply(Update::Searched {
        seq: call.seq,
        outcome: Ok(SearchResult {
            collection: "fashion".into(),
            query: "id:7".into(),
            hits: vec![
                Hit {
                    id: 7.into(),
                    score: -0.0,
                    cid: Some(LEAF.into()),
                    metadata: None,
                },
                Hit {
                    id: 52_114.into(),
                    score: -1_413_204.0,
                    cid: Some(LEAF.into()),
                    metadata: None,
                },
                Hit {
                    id: "boot-31".into(),
                    score: -12_901_733.0,
                    cid: Some(LEAF.into()),
                    metadata: None,
                },
            ],
            coverage: None,
            millis: 4.1,
        }),
    });
    let screen = render(&app, 80, 24);
    assert!(screen.contains("784 dims, l2"), "{screen}");
    assert!(screen.contains(" -1413204.0000 "), "{screen}");
    assert!(screen.contains(" -12901733.0000 "), "{screen}");
    snapshot("search-l2", &screen);
}

#[test]
fn search_view_while_typing_and_after_a_bad_query() {
    let mut app = connected();
    press(&mut app, KeyCode::Char('4'));
    press(&mut app, KeyCode::Enter);
    for c in "1, 0".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    let screen = render(&app, 80, 24);
    assert!(screen.contains("Enter search"));
    press(&mut app, KeyCode::Enter);
    let screen = render(&app, 80, 24);
    assert!(screen.contains("the vector has 2 numbers; docs has dimension 3"));
    snapshot("search-error", &screen);
}

fn log_line(second: u64, level: &str, target: &str, message: &str, fields: &str) -> LogLine {
    LogLine {
        time_ms: 1_764_000_000_000 + second * 1000,
        level: level.into(),
        target: target.into(),
        message: message.into(),
        fields: fields.into(),
    }
}

#[test]
fn log_view_filters_by_level() {
    let mut app = connected();
    app.apply(Update::LogConnected);
    for line in [
        log_line(
            0,
            "INFO",
            "ipvec_node::cli::daemon",
            "daemon started",
            "peer_id=12D3KooWDpJ7 api=http://127.0.0.1:5080",
        ),
        log_line(
            1,
            "DEBUG",
            "ipvec_node::collection",
            "opening",
            "collection=\"docs\"",
        ),
        log_line(
            2,
            "INFO",
            "ipvec_node::api::server",
            "request",
            "route=\"/v1/node\" status=200",
        ),
        log_line(
            3,
            "WARN",
            "ipvec_node::store",
            "store busy, retrying",
            "attempt=1",
        ),
        log_line(
            4,
            "ERROR",
            "ipvec_node::api::server",
            "request failed",
            "status=500",
        ),
    ] {
        app.apply(Update::Log(line));
    }
    press(&mut app, KeyCode::Char('5'));
    let screen = render(&app, 80, 24);
    assert!(screen.contains("Log: INFO and above, 4 of 5 lines, following, live"));
    assert!(!screen.contains("opening"));
    assert!(
        screen.contains("16:00:03 WARN  store: store busy, retrying attempt=1"),
        "{screen}"
    );
    snapshot("log", &screen);
    press(&mut app, KeyCode::Char('l'));
    let screen = render(&app, 80, 24);
    assert!(screen.contains("opening"));
    press(&mut app, KeyCode::Char('l'));
    press(&mut app, KeyCode::Char('l'));
    let screen = render(&app, 80, 24);
    assert!(screen.contains("ERROR and above, 1 of 5 lines"));
    assert!(!screen.contains("store busy"));
}

#[test]
fn help_overlay() {
    let mut app = connected();
    press(&mut app, KeyCode::Char('?'));
    let screen = render(&app, 80, 24);
    assert!(screen.contains("Keys"));
    assert!(screen.contains("level: error → warn → info → debug → trace"));
    snapshot("help", &screen);
}

#[test]
fn every_view_draws_at_any_size() {
    let mut app = connected();
    app.apply(Update::Log(log_line(0, "INFO", "x", "hello", "")));
    for tab in Tab::ALL {
        app.tab = tab;
        for help in [false, true] {
            app.help = help;
            for (w, h) in [(80, 24), (120, 40), (40, 12), (20, 6), (1, 1), (0, 0)] {
                render(&app, w, h);
            }
        }
    }
}

#[test]
fn a_resize_redraws_to_the_new_size() {
    let app = connected();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|frame| ui::draw(frame, &app)).unwrap();
    terminal.backend_mut().resize(100, 30);
    terminal.draw(|frame| ui::draw(frame, &app)).unwrap();
    let buffer = terminal.backend().buffer();
    assert_eq!((buffer.area.width, buffer.area.height), (100, 30));
    let last: String = (0..100)
        .map(|x| buffer[(x, 29)].symbol().to_string())
        .collect();
    assert!(
        last.contains("quit"),
        "the key hints move to the new last line: {last}"
    );
}

#[test]
fn the_docs_show_the_current_snapshots() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("../docs/tui.md")).unwrap();
    for entry in std::fs::read_dir(root.join("tests/snapshots")).unwrap() {
        let path = entry.unwrap().path();
        let screen = std::fs::read_to_string(&path).unwrap();
        assert!(
            docs.contains(screen.trim_end()),
            "docs/tui.md does not show {} as it is now; paste it in",
            path.display()
        );
    }
}
