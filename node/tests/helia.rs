//! Bitswap against an independent implementation: Helia's `@helia/bitswap` on js-libp2p
//! (tests/js-bitswap), over TCP with noise and yamux. Needs Node.js ≥ 20 and npm; the npm
//! packages are installed on first run (`.ci/run` does it in advance).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    sync::OnceLock,
};

use common::*;

fn js_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/js-bitswap"))
}

/// Installs the npm packages once.
fn npm_ready() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let version = Command::new("node").arg("--version").output().expect(
            "the Helia tests need Node.js >= 20 and npm on PATH (apt-get install nodejs npm)",
        );
        assert!(version.status.success());
        if !js_dir().join("node_modules/@helia/bitswap").exists() {
            let status = Command::new("npm")
                .args([
                    "ci",
                    "--ignore-scripts",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                ])
                .current_dir(js_dir())
                .status()
                .expect("npm is needed to install Helia's Bitswap");
            assert!(status.success(), "npm ci in tests/js-bitswap failed");
        }
    });
}

#[test]
fn helia_fetches_and_verifies_every_block_of_a_collection() {
    npm_ready();
    let repo = new_repo();
    let r = &repo.path;
    ok(r, &["collection", "create", "h", "--dim", "4"]);
    let file = r.parent().unwrap().join("points.jsonl");
    std::fs::write(&file, points_jsonl(0..2_000)).unwrap();
    ok(r, &["add", "h", file.to_str().unwrap()]);
    let root = json_of(&ok(r, &["--json", "collection", "info", "h"]))["root"]
        .as_str()
        .unwrap()
        .to_string();
    let _daemon = Daemon::start(r, &[]);
    let address = json_of(&ok(r, &["--json", "id"]))["addresses"][0]
        .as_str()
        .unwrap()
        .to_string();

    let out = Command::new("node")
        .args(["fetch.mjs", &address, &root])
        .current_dir(js_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Helia's fetch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fetched = json_of(&String::from_utf8_lossy(&out.stdout));
    // Helia got the whole DAG, every block matching its BLAKE3 CID; count it our way too.
    let car = r.parent().unwrap().join("h.car");
    let exported = json_of(&ok(
        r,
        &[
            "--json",
            "dag",
            "export",
            &root,
            "-o",
            car.to_str().unwrap(),
        ],
    ));
    assert_eq!(fetched["bad"], 0, "{fetched}");
    assert_eq!(
        fetched["blocks"], exported["blocks"],
        "{fetched} vs {exported}"
    );
    assert_eq!(fetched["bytes"], exported["bytes"]);
}

#[test]
fn ipvec_fetches_a_dag_that_helia_holds() {
    npm_ready();
    let mut helia = Command::new("node")
        .arg("serve.mjs")
        .current_dir(js_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(helia.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let held = json_of(&line);
    let (address, root) = (
        held["addr"].as_str().unwrap(),
        held["root"].as_str().unwrap(),
    );

    let repo = new_repo();
    let r = &repo.path;
    let _daemon = Daemon::start(r, &[]);
    let fetched = json_of(&ok(r, &["--json", "dag", "fetch", root, "--from", address]));
    drop(helia.stdin.take());
    let _ = helia.wait();
    assert_eq!(fetched["blocks"], held["blocks"], "{fetched}");
    assert_eq!(fetched["fetched"], held["blocks"]);
    assert_eq!(fetched["bytes"], held["bytes"]);
    let value = json_of(&ok(r, &["dag", "get", root]));
    assert_eq!(value["name"], "from helia");
    assert!(ok(r, &["pin", "ls"]).contains(root));
}
