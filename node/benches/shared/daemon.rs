//! `ipvec daemon` processes for the benches: started on loopback ports, stopped with SIGTERM
//! when dropped.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ipvec_node::api::ready_blocking;

/// A running daemon; SIGTERM and a wait when dropped.
pub struct Daemon(Child);

impl Daemon {
    /// Its process id, to signal it (a bench that stops it with SIGSTOP must send SIGCONT
    /// before the drop: a stopped process does not act on the SIGTERM).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Freezes the daemon with SIGSTOP (its sockets stay open: requests to it hang rather
    /// than fail) until the guard is dropped, which sends SIGCONT. Drop the guard first.
    #[allow(dead_code)]
    pub fn freeze(&self) -> Result<Frozen> {
        signal("STOP", self.pid())?;
        Ok(Frozen(self.pid()))
    }
}

/// A daemon frozen by [`Daemon::freeze`]; SIGCONT when dropped.
#[allow(dead_code)]
pub struct Frozen(u32);

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = signal("CONT", self.0);
    }
}

/// Sends signal `name` (`STOP`, `CONT`, …) to process `pid`.
#[allow(dead_code)]
fn signal(name: &str, pid: u32) -> Result<()> {
    let status = Command::new("sh")
        .args(["-c", &format!("kill -{name} {pid}")])
        .status()?;
    if !status.success() {
        bail!("kill -{name} {pid}: {status}");
    }
    Ok(())
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// Starts the daemon on `repo` (API and peer-to-peer on free loopback ports, no mDNS, only
/// warnings logged) and waits until it is ready; its API URL.
#[allow(dead_code)]
pub fn start_daemon(repo: &Path) -> Result<(Daemon, String)> {
    start_daemon_with(repo, &[])
}

/// [`start_daemon`] with more environment variables (settings such as
/// `IPVEC_STORAGE_COMMIT_INTERVAL_MS`).
#[allow(dead_code)]
pub fn start_daemon_with(repo: &Path, envs: &[(&str, &str)]) -> Result<(Daemon, String)> {
    let _ = std::fs::remove_file(repo.join("api"));
    // IPVEC_BENCH_BIN runs another build (say, the commit before a change) in the same run.
    let binary =
        std::env::var_os("IPVEC_BENCH_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_ipvec").into());
    let child = Command::new(binary)
        .envs(envs.iter().copied())
        .arg("--repo")
        .arg(repo)
        .args([
            "--log-level",
            "warn",
            "daemon",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .args(["--p2p-listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting ipvec daemon")?;
    let daemon = Daemon(child);
    let started = Instant::now();
    loop {
        if let Ok(url) = std::fs::read_to_string(repo.join("api")) {
            let url = url.trim().to_string();
            if ready_blocking(&url, Duration::from_secs(5)) {
                return Ok((daemon, url));
            }
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the daemon did not become ready");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
