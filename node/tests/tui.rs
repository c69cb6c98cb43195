//! `ipvec tui` in a real terminal: tmux runs the dashboard against a real daemon connected
//! to a second one, the test presses keys (`send-keys`) and reads the screen
//! (`capture-pane`). It checks every view, the replica's blocks and provider count after the
//! second node fetches the collection, a search typed into the Search view, the banner
//! while the daemon is away and the reconnection to its successor on another port, a
//! resize, and that quitting gives the terminal back; and a sharded collection's shard map.
//! Needs tmux: `.ci/run` installs it, and without it the tests fail saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// How long anything on screen may take to appear (debug builds on a busy machine).
const PATIENCE: Duration = Duration::from_secs(60);

fn ipvec(repo: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipvec"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env_remove("IPVEC_PATH")
        .env_remove("IPVEC_API")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(repo: &Path, args: &[&str]) -> String {
    let out = ipvec(repo, args);
    assert!(
        out.status.success(),
        "ipvec {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A daemon on a free loopback port; killed if the test ends without stopping it.
struct Daemon {
    child: Option<Child>,
    url: String,
    peer_id: String,
}

impl Daemon {
    fn start(repo: &Path, run: usize) -> Daemon {
        let _ = std::fs::remove_file(repo.join("api"));
        let dir = repo.parent().unwrap();
        let stdout = dir.join(format!("daemon-{run}.out"));
        let child = Command::new(env!("CARGO_BIN_EXE_ipvec"))
            .arg("--repo")
            .arg(repo)
            .args(["daemon", "--api-listen", "127.0.0.1:0"])
            // Loopback only, and no mDNS: other tests' daemons stay strangers.
            .args(["--p2p-listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
            .env_remove("IPVEC_PATH")
            .env_remove("IPVEC_API")
            .env("IPVEC_EMBEDDING_MODEL_DIR", common::model_dir())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(dir.join(format!("daemon-{run}.log"))).unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let url = loop {
            if let Ok(url) = std::fs::read_to_string(repo.join("api")) {
                break url.trim().to_string();
            }
            assert!(started.elapsed() < PATIENCE, "the daemon wrote no api file");
            std::thread::sleep(Duration::from_millis(50));
        };
        while !ipvec_node::api::ready_blocking(&url, Duration::from_secs(5)) {
            assert!(
                started.elapsed() < PATIENCE,
                "the daemon never became ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // "ipvec daemon: peer <id>" is its first line.
        let printed = std::fs::read_to_string(&stdout).unwrap();
        let peer_id = printed
            .split_whitespace()
            .skip_while(|w| *w != "peer")
            .nth(1)
            .unwrap_or_else(|| panic!("no peer id in the daemon's output: {printed}"))
            .to_string();
        Daemon {
            child: Some(child),
            url,
            peer_id,
        }
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", child.id())])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(child.wait().unwrap().success());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether tmux runs here, installing it with apt-get if it is missing and that is possible.
fn tmux_ready() -> Result<(), String> {
    let works = || {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works() {
        return Ok(());
    }
    let installed = Command::new("sh")
        .args([
            "-c",
            "command -v apt-get >/dev/null && (apt-get install -y -qq tmux || \
             (apt-get update -qq && apt-get install -y -qq tmux))",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed && works() {
        Ok(())
    } else {
        Err("tmux is not installed and apt-get could not install it".into())
    }
}

/// A tmux server of our own (its own socket, one per test), with one session running a
/// command.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(test: &str, command: &str, width: u16, height: u16) -> Tmux {
        let tmux = Tmux {
            socket: format!("ipvec-tui-test-{}-{test}", std::process::id()),
        };
        let (w, h) = (width.to_string(), height.to_string());
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "tui",
            "-x",
            &w,
            "-y",
            &h,
            command,
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Presses keys by tmux name (`Enter`, `C-u`, `3`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "tui"];
        args.extend(keys);
        self.run(&args);
    }

    /// Types text as it is.
    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "tui", "-l", text]);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "tui"])
    }

    /// Waits until the screen passes `test`; the screen then.
    fn wait_for(&self, what: &str, test: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if test(&screen) {
                return screen;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "waited {PATIENCE:?} for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for_text(&self, text: &str) -> String {
        self.wait_for(&format!("{text:?}"), |screen| screen.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The collection's root once the daemon has committed its log into the tree.
fn committed_root(repo: &Path, name: &str) -> String {
    let started = Instant::now();
    loop {
        let info: serde_json::Value =
            serde_json::from_str(&ok(repo, &["--json", "collection", "info", name])).unwrap();
        if info["wal_bytes"] == 0 {
            return info["root"].as_str().unwrap().to_string();
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the daemon never committed {name}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// The command tmux runs: `ipvec tui` on `repo`, then a line saying how it exited.
fn tui_command(repo: &Path) -> String {
    format!(
        "env -u IPVEC_API -u IPVEC_PATH {} --repo {} tui; echo \"ipvec tui exited with $?\"; sleep 600",
        quoted(Path::new(env!("CARGO_BIN_EXE_ipvec"))),
        quoted(repo)
    )
}

/// `ipvec collection shards NAME` as JSON.
fn shard_map(repo: &Path, name: &str) -> serde_json::Value {
    serde_json::from_str(&ok(repo, &["--json", "collection", "shards", name])).unwrap()
}

/// A root as the dashboard shortens it: its first and last six characters.
fn short(root: &str) -> String {
    format!("{}…{}", &root[..6], &root[root.len() - 6..])
}

/// The screen's row of `shard` in the shard map, if it shows one.
fn shard_row(screen: &str, shard: u64) -> Option<&str> {
    screen
        .lines()
        .find(|l| l.starts_with(&format!("│{shard:>5} ")))
}

#[test]
fn the_dashboard_shows_a_live_node_and_searches_it() {
    if let Err(reason) = tmux_ready() {
        panic!("the tmux test of ipvec tui needs tmux: {reason} (.ci/run installs it)");
    }
    let dir = tempfile::tempdir().unwrap();
    let repo: PathBuf = dir.path().join("repo");
    ok(&repo, &["init"]);
    let mut daemon = Daemon::start(&repo, 1);
    // A second node, which the first one dials.
    let other_dir = tempfile::tempdir().unwrap();
    let other_repo = other_dir.path().join("repo");
    ok(&other_repo, &["init"]);
    let other = Daemon::start(&other_repo, 1);
    let id: serde_json::Value = serde_json::from_str(&ok(&other_repo, &["--json", "id"])).unwrap();
    let address = id["addresses"][0].as_str().unwrap().to_string();
    ok(&repo, &["connect", &address]);
    ok(&repo, &["collection", "create", "docs", "--dim", "3"]);
    let points = dir.path().join("points.jsonl");
    std::fs::write(
        &points,
        concat!(
            "{\"id\": 1, \"vector\": [1, 0, 0], \"metadata\": {\"tag\": \"a\"}}\n",
            "{\"id\": \"doc-2\", \"vector\": [0.9, 0.1, 0]}\n",
            "{\"id\": 3, \"vector\": [0, 1, 0]}\n",
        ),
    )
    .unwrap();
    ok(&repo, &["add", "docs", points.to_str().unwrap()]);
    let root = committed_root(&repo, "docs");
    // The other node replicates it (over Bitswap, from this one).
    let info: serde_json::Value =
        serde_json::from_str(&ok(&repo, &["--json", "collection", "info", "docs"])).unwrap();
    let mine: serde_json::Value = serde_json::from_str(&ok(&repo, &["--json", "id"])).unwrap();
    let fetched: serde_json::Value = serde_json::from_str(&ok(
        &other_repo,
        &[
            "--json",
            "fetch",
            info["id"].as_str().unwrap(),
            "--from",
            mine["addresses"][0].as_str().unwrap(),
        ],
    ))
    .unwrap();
    assert_eq!(fetched["root"].as_str(), Some(root.as_str()));

    let command = tui_command(&repo);
    let tmux = Tmux::start("live", &command, 80, 24);

    // Node: who it is, where its API is.
    let screen = tmux.wait_for_text(&daemon.peer_id);
    assert!(screen.contains("● connected"), "{screen}");
    assert!(screen.contains(&daemon.url), "{screen}");
    assert!(screen.contains(&repo.display().to_string()), "{screen}");
    assert!(
        screen.contains("Listening    /ip4/127.0.0.1/tcp/"),
        "{screen}"
    );

    // Peers: the other node, dialled by this one, in the table and in full below it.
    tmux.keys(&["2"]);
    let screen = tmux.wait_for_text(&other.peer_id);
    assert!(screen.contains("Peers (1)"), "{screen}");
    let row = screen
        .lines()
        .find(|l| l.contains(&other.peer_id[..6]) && l.contains(" out "))
        .unwrap_or_else(|| panic!("no outbound row for the other node:\n{screen}"));
    assert!(row.contains("/ip4/127.0.0.1/tcp/"), "{screen}");
    // Blocks sent/received: this node sent the replica its blocks and received none.
    let blocks = row
        .split_whitespace()
        .find(|w| w.contains('/') && !w.starts_with('/'))
        .unwrap_or_else(|| panic!("no blocks column:\n{screen}"));
    let (sent, received) = blocks.split_once('/').unwrap();
    assert!(sent.parse::<u64>().unwrap() > 0, "{screen}");
    assert_eq!(received, "0", "{screen}");

    // Collections: the name and the committed root, in full for the selected row.
    tmux.keys(&["3"]);
    let screen = tmux.wait_for_text(&root);
    assert!(screen.contains("docs"), "{screen}");
    assert!(screen.contains("Collections (1)"), "{screen}");
    // Its replication: this node writes it, and the DHT names two providers of its shard
    // (this node and the replica) against a target of one.
    let screen = tmux.wait_for_text("2 of 1 replicas, writer");
    assert!(screen.contains("2/1"), "{screen}");
    assert!(screen.contains("Announced    in the DHT"), "{screen}");
    assert!(screen.contains("0  bafy"), "the shard row:\n{screen}");

    // Search by a point's id, then by a typed vector.
    tmux.keys(&["4", "/"]);
    tmux.type_text("id:1");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for_text("3 hits in");
    assert!(screen.contains("for id:1 in docs"), "{screen}");
    let first = screen
        .lines()
        .find(|l| l.contains("  1 "))
        .unwrap_or_else(|| panic!("no first hit:\n{screen}"));
    assert!(
        first.contains("1.0000") && first.contains("bafy"),
        "{screen}"
    );
    assert!(screen.contains("doc-2"), "{screen}");
    tmux.keys(&["/", "C-u"]);
    tmux.type_text("0, 1, 0");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for_text("for 0, 1, 0 in docs");
    let first = screen.lines().find(|l| l.contains("  1 ")).unwrap();
    assert!(
        first.contains(" 3 ") && first.contains("1.0000"),
        "point 3 is [0, 1, 0]:\n{screen}"
    );

    // A text collection: the next one in the Search view, asked a question in words.
    ok(
        &repo,
        &["collection", "create", "notes", "--embedding", "local"],
    );
    ok(
        &repo,
        &[
            "add",
            "notes",
            "--text",
            "Owls hunt at night.",
            "--id",
            "owl",
        ],
    );
    ok(
        &repo,
        &[
            "add",
            "notes",
            "--text",
            "The soup needs more salt.",
            "--id",
            "soup",
        ],
    );
    // Once the dashboard's refresh has listed it, → picks it.
    tmux.keys(&["Escape", "3"]);
    tmux.wait_for_text("Collections (2)");
    tmux.keys(&["4", "Right"]);
    tmux.wait_for_text("◀ notes ▶");
    tmux.keys(&["/", "C-u"]);
    tmux.type_text("Which birds hunt after dark?");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for_text("for Which birds hunt after dark? in notes");
    let first = screen
        .lines()
        .find(|l| l.contains("  1 "))
        .unwrap_or_else(|| panic!("no first hit:\n{screen}"));
    assert!(first.contains("owl"), "the owl answers it:\n{screen}");

    // Log: the daemon's own lines, live.
    tmux.keys(&["5"]);
    tmux.wait_for_text("daemon started");

    // The daemon goes away: a banner; a new one on another port: back by itself.
    tmux.keys(&["1"]);
    daemon.stop();
    tmux.wait_for_text("Daemon unreachable");
    let daemon = Daemon::start(&repo, 2);
    let screen = tmux.wait_for("the new daemon", |s| {
        s.contains(&daemon.url) && s.contains("● connected") && !s.contains("unreachable")
    });
    assert!(screen.contains(&daemon.peer_id), "{screen}");

    // A bigger terminal: the frame follows.
    tmux.run(&["resize-window", "-t", "tui", "-x", "100", "-y", "30"]);
    tmux.wait_for("a 100-column frame", |s| {
        s.lines().nth(1).is_some_and(|l| l.chars().count() == 100)
    });

    // q quits and gives the terminal back (the alternate screen is gone).
    tmux.keys(&["q"]);
    let screen = tmux.wait_for_text("ipvec tui exited with 0");
    assert!(!screen.contains("Collections"), "{screen}");
}

#[test]
fn the_shard_map_shows_each_shard_and_its_holders() {
    if let Err(reason) = tmux_ready() {
        panic!("the tmux test of ipvec tui needs tmux: {reason} (.ci/run installs it)");
    }
    let dir = tempfile::tempdir().unwrap();
    let repo: PathBuf = dir.path().join("repo");
    ok(&repo, &["init"]);
    let daemon = Daemon::start(&repo, 1);
    ok(
        &repo,
        &[
            "collection",
            "create",
            "sharded",
            "--dim",
            "2",
            "--shards",
            "4",
        ],
    );
    let points = dir.path().join("points.jsonl");
    let lines: String = (0..16)
        .map(|i| format!("{{\"id\": {i}, \"vector\": [{i}, 1]}}\n"))
        .collect();
    std::fs::write(&points, lines).unwrap();
    ok(&repo, &["add", "sharded", points.to_str().unwrap()]);
    committed_root(&repo, "sharded");
    let map = shard_map(&repo, "sharded");
    let shards = map["shards"].as_array().unwrap().clone();
    assert_eq!(shards.len(), 4, "{map}");
    // This node alone, holding every shard, against a replication of one.
    assert_eq!(map["replication"], 1, "{map}");

    let tmux = Tmux::start("shards", &tui_command(&repo), 80, 24);
    tmux.wait_for_text("● connected");
    tmux.keys(&["3"]);
    tmux.wait_for_text("Collections (1)");
    tmux.keys(&["s"]);
    // The detail box of the first shard draws last: a screen caught before it is not done.
    let first = shards[0]["root"].as_str().unwrap();
    let screen = tmux.wait_for("the shard map and the first shard's detail", |s| {
        s.contains("Shards of sharded (4), 1 holder wanted each")
            && shard_row(s, 3).is_some()
            && s.contains(&format!("Root     {first}"))
            && s.contains(&format!("Holders  {}  this node", daemon.peer_id))
    });
    assert!(!screen.contains("under-replicated"), "{screen}");
    for s in &shards {
        let n = s["shard"].as_u64().unwrap();
        let row = shard_row(&screen, n).unwrap_or_else(|| panic!("no row {n}:\n{screen}"));
        let root = s["root"].as_str().unwrap();
        assert!(
            row.contains(&short(root)),
            "shard {n}'s root {root}:\n{screen}"
        );
        assert!(row.contains(" 1/1 "), "one live holder of one:\n{screen}");
        assert!(row.contains("● here"), "this node holds it:\n{screen}");
        assert_eq!(s["live"], 1, "{map}");
    }
    // The first shard in full: its root, and this node by its peer id.
    assert!(screen.contains(&format!("Root     {first}")), "{screen}");
    assert!(
        screen.contains(&format!("Holders  {}  this node", daemon.peer_id)),
        "{screen}"
    );
    assert!(screen.contains("Esc back to the collections"), "{screen}");

    // New points: the refresh shows the shards' new roots.
    let more = dir.path().join("more.jsonl");
    let lines: String = (16..32)
        .map(|i| format!("{{\"id\": {i}, \"vector\": [1, {i}]}}\n"))
        .collect();
    std::fs::write(&more, lines).unwrap();
    ok(&repo, &["add", "sharded", more.to_str().unwrap()]);
    committed_root(&repo, "sharded");
    let roots = |map: &serde_json::Value| -> Vec<String> {
        map["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| short(s["root"].as_str().unwrap()))
            .collect()
    };
    let before = roots(&map);
    let after = roots(&shard_map(&repo, "sharded"));
    assert_ne!(before, after, "the new points changed some shard's root");
    tmux.wait_for("the new roots", |screen| {
        after
            .iter()
            .enumerate()
            .all(|(n, root)| shard_row(screen, n as u64).is_some_and(|row| row.contains(root)))
    });

    // Esc: the collections again; q quits.
    tmux.keys(&["Escape"]);
    tmux.wait_for_text("Collections (1)");
    tmux.keys(&["q"]);
    tmux.wait_for_text("ipvec tui exited with 0");
}
