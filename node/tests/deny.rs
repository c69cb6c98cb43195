//! Denied peers between real daemons on loopback: a node that denies a peer closes its
//! connection, refuses its dials, will not fetch from it, keeps refusing it after a restart,
//! and connects again once it allows it; and the settings that name denied peers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;

/// The total of `ipvec_connections{kind="denied"}` on a daemon.
fn denied_connections(daemon: &Daemon) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scrape = rt.block_on(daemon.metrics());
    sample(&scrape, "ipvec_connections", &[("kind", "denied")])
}

#[test]
fn a_denied_peer_is_refused_until_it_is_allowed_even_across_a_restart() {
    // A holds a small collection whose root B will fetch.
    let a = new_repo();
    ok(&a.path, &["collection", "create", "small", "--dim", "4"]);
    let file = a.path.parent().unwrap().join("points.jsonl");
    std::fs::write(&file, points_jsonl(0..50)).unwrap();
    ok(&a.path, &["add", "small", file.to_str().unwrap()]);
    let root = json_of(&ok(&a.path, &["--json", "collection", "info", "small"]))["root"]
        .as_str()
        .unwrap()
        .to_string();
    let _da = Daemon::start(&a.path, &[]);
    let (peer_a, addr_a) = (peer_of(&a.path), address_of(&a.path));
    let b = new_repo();
    let mut db = Daemon::start(&b.path, &[]);
    let (peer_b, addr_b) = (peer_of(&b.path), address_of(&b.path));

    // Connected, then denied: the open connection is closed on both sides.
    ok(&b.path, &["connect", &addr_a]);
    eventually("A and B connected", || {
        peers_of(&b.path).contains(&peer_a) && peers_of(&a.path).contains(&peer_b)
    });
    let denied = json_of(&ok(&b.path, &["--json", "peers", "deny", &peer_a]));
    assert_eq!(
        (denied["denied"].as_bool(), denied["changed"].as_bool()),
        (Some(true), Some(true)),
        "{denied}"
    );
    assert!(
        !peers_of(&b.path).contains(&peer_a),
        "B lists A once it is denied"
    );
    eventually("A's connection to B is closed", || {
        !peers_of(&a.path).contains(&peer_b)
    });
    let again = ok(&b.path, &["peers", "deny", &peer_a]);
    assert!(again.contains("already denied"), "{again}");

    // A dials B: B refuses the connection (and counts it), and never lists A.
    let before = denied_connections(&db);
    let _ = ipvec(&a.path, &["connect", &addr_b], &[]);
    eventually("B counts A's refused connection", || {
        denied_connections(&db) > before
    });
    assert!(!peers_of(&b.path).contains(&peer_a));
    eventually("A is not connected to B", || {
        !peers_of(&a.path).contains(&peer_b)
    });

    // B does not dial or fetch from A, and says why.
    let err = fails(&b.path, &["dag", "fetch", &root, "--from", &addr_a]);
    assert!(
        err.contains(&format!("peer {peer_a} is denied")) && err.contains("peers allow"),
        "{err}"
    );
    assert!(!ok(&b.path, &["pin", "ls"]).contains(&root));
    let list: Value = json_of(&ok(&b.path, &["--json", "peers", "denied"]));
    assert_eq!(list["peers"][0]["peer_id"], peer_a.as_str(), "{list}");
    assert_eq!(list["peers"][0]["source"], "runtime", "{list}");
    assert_eq!(list["peers"].as_array().unwrap().len(), 1, "{list}");

    // A restart keeps the denial: the swarm refuses A from the start.
    db.stop();
    let db = Daemon::start(&b.path, &[]);
    let addr_b = address_of(&b.path);
    let err = fails(&b.path, &["connect", &addr_a]);
    assert!(err.contains("denied"), "{err}");
    let _ = ipvec(&a.path, &["connect", &addr_b], &[]);
    eventually("the restarted B refuses A's connection", || {
        denied_connections(&db) >= 1.0
    });
    assert!(!peers_of(&b.path).contains(&peer_a));

    // Allowed: B connects to A and fetches from it.
    let allowed = json_of(&ok(&b.path, &["--json", "peers", "allow", &peer_a]));
    assert_eq!(allowed["denied"].as_bool(), Some(false), "{allowed}");
    let fetched = json_of(&ok(
        &b.path,
        &["--json", "dag", "fetch", &root, "--from", &addr_a],
    ));
    assert!(fetched["blocks"].as_u64().unwrap() >= 1, "{fetched}");
    assert!(peers_of(&b.path).contains(&peer_a));
    let list = json_of(&ok(&b.path, &["--json", "peers", "denied"]));
    assert_eq!(list["peers"].as_array().map(Vec::len), Some(0), "{list}");
}

#[test]
fn denied_peers_in_the_config_must_be_peer_ids_and_are_lifted_only_there() {
    let r = new_repo();
    let out = ipvec(
        &r.path,
        &["config", "show"],
        &[("IPVEC_P2P_DENY_PEERS", "not-a-peer")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("p2p.deny_peers") && err.contains("not-a-peer"),
        "{err}"
    );

    // Without a daemon the repository's file changes, and the config's peers are listed too.
    let (runtime, configured) = (peer_of(&new_repo().path), peer_of(&new_repo().path));
    let env = [("IPVEC_P2P_DENY_PEERS", configured.as_str())];
    let out = ipvec(&r.path, &["peers", "deny", &runtime], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(r.path.join("denied_peers"))
        .unwrap()
        .contains(&runtime));
    let out = ipvec(&r.path, &["--json", "peers", "denied"], &env);
    let list = json_of(&String::from_utf8(out.stdout).unwrap());
    let sources: Vec<(String, String)> = list["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["peer_id"].as_str().unwrap().into(),
                p["source"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        sources.contains(&(runtime.clone(), "runtime".into())),
        "{list}"
    );
    assert!(
        sources.contains(&(configured.clone(), "config".into())),
        "{list}"
    );
    let out = ipvec(&r.path, &["peers", "allow", &configured], &env);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("p2p.deny_peers"), "{err}");
    assert!(
        fails(&r.path, &["peers", "deny", "12D3nope"]).contains("is not a peer id"),
        "a bad peer id is refused"
    );
}
