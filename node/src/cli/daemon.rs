//! `ipvec daemon`: the long-lived node. Opens (or on first run initialises) the repository,
//! holds its lock, serves the HTTP API and writes its address into `DIR/api` so CLI commands
//! find it; on SIGINT or SIGTERM it stops taking requests and cancels its token (the
//! peer-to-peer layer stops, so fetches in flight end at once), lets the requests in flight
//! finish, waits up to [`TASKS_BOUND`] for its tasks, commits every collection's log, and
//! removes `DIR/api`.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{output::write_line, Cli};
use crate::{
    api::server,
    ops::Node,
    repo::{self, Repo, RepoError},
};

/// How long requests in flight may run on after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(30);
/// How long the daemon's tasks, then the network's, then the node's, may take to stop once
/// cancelled; those still running are aborted.
const TASKS_BOUND: Duration = Duration::from_secs(3);

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT: shutting down"),
        _ = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}

/// The URL clients on this machine use for a listen address (an unspecified address is
/// reached through loopback).
fn local_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Runs the daemon until a shutdown signal.
pub async fn run(cli: &Cli, path: &Path) -> anyhow::Result<()> {
    let repo = match Repo::open(path).await {
        Err(RepoError::NotInitialised(_)) => {
            let repo = Repo::init(path).await?;
            eprintln!("initialised ipvec repository at {}", path.display());
            repo
        }
        other => other?,
    };
    let mut config = repo.config().clone();
    cli.adjust(&mut config);
    config.validate()?;
    let addr = config.api.listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (api.listen); is another program using it? pick another with --api-listen ADDR"))?;
    let local = listener.local_addr()?;
    let token = (config.api.require_token || !local.ip().is_loopback())
        .then(|| repo.api_token())
        .transpose()?;
    let peer_id = repo.peer_id();
    let mut net_config = crate::net::NetConfig::from_config(&config.p2p)?;
    // Peers denied at run time before the last stop (`ipvec peers deny`).
    net_config.deny.extend(repo::denied::load(path)?);
    // Cancelled on SIGINT or SIGTERM: stops the network and the daemon's own tasks.
    let stop = CancellationToken::new();
    let network =
        crate::net::Network::start(repo.key(), net_config, repo.store().clone(), &stop).await?;
    let node = Node::new(repo, config);
    node.attach_network(network);
    node.follow();
    node.run_members();
    let url = local_url(local);
    let api_file = repo::api_file(path);
    // Written whole, then renamed into place: a client that reads it while the daemon starts
    // sees no file or the whole URL, never an empty one.
    let api_tmp = api_file.with_extension("tmp");
    std::fs::write(&api_tmp, format!("{url}\n"))
        .and_then(|()| std::fs::rename(&api_tmp, &api_file))
        .with_context(|| format!("writing {}", api_file.display()))?;
    tracing::info!(%peer_id, api = %url, repo = %path.display(), token_required = token.is_some(), "daemon started");
    // A daemon whose stdout reader went away goes on serving.
    let _ = write_line(format!(
        "ipvec daemon: peer {peer_id}\nAPI listening on {url}"
    ));

    let mut tasks = JoinSet::new();
    // Serve at once (/health answers, /ready says 503) while the collections open.
    {
        let node = node.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            match stop.run_until_cancelled(node.open_all()).await {
                Some(Err(e)) => tracing::error!(error = %e, "opening the collections failed"),
                Some(Ok(())) => tracing::info!("ready"),
                None => {}
            }
        });
    }
    {
        let node = node.clone();
        let stop = stop.clone();
        let every = Duration::from_millis(node.config().storage.commit_interval_ms);
        tasks.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // A commit under way finishes; the close below commits what is left.
            while stop.run_until_cancelled(ticks.tick()).await.is_some() {
                node.commit_all().await;
            }
        });
    }
    if let Some((dir, every)) = node.config().backup.schedule()? {
        let node = node.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            stop.run_until_cancelled(node.backup_schedule(dir, every))
                .await;
        });
    }
    let signalled = {
        let stop = stop.clone();
        async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = stop.cancelled() => {}
            }
            stop.cancel();
        }
    };
    let served = server::serve(node.clone(), listener, token, signalled, DRAIN).await;
    stop.cancel();
    if tokio::time::timeout(TASKS_BOUND, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            "the daemon's tasks are still running after the shutdown bound; aborting them"
        );
        tasks.shutdown().await;
    }
    node.stop_tasks(TASKS_BOUND).await;
    let closed = node.close().await;
    let _ = std::fs::remove_file(&api_file);
    served.context("the API server failed")?;
    closed?;
    tracing::info!("daemon stopped; every acknowledged write is committed");
    let _ = write_line("ipvec daemon stopped");
    Ok(())
}
