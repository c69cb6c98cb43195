//! Searches one peer asks of another over real TCP, at a few numbers in flight at once: what
//! opening a stream per request costs when the peers are a round trip apart.
//!
//! ```text
//! cargo bench -p ipvec-node --bench streams
//! cargo bench -p ipvec-node --bench streams -- --searches 400 --at-once 1,8,32 --delays-ms 0,10
//! ```
//!
//! Two networks in this process: one answers `/ipvec/search/1.0.0` at once from a source that
//! searches nothing; the other dials it and sends `--searches` requests per row, that many in
//! flight at once. Every request opens its own stream, so the rows show how many streams a
//! connection opens per round trip. For each of `--delays-ms` (0 and 10) the asker connects
//! anew: directly at 0, otherwise through a relay on loopback that holds every chunk of bytes
//! that long each way before passing it on (a round trip of twice the delay; `tc netem`,
//! which would do it in the kernel, is not in this machine's kernel).
//!
//! Asserts nothing about time; fails if a search goes unanswered.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{anyhow, ensure, Context, Result};
use futures::StreamExt;
use ipvec_node::{
    net::{search::SearchSource, NetConfig, Network},
    store::IrohBlockStore,
};
use ipvec_protocol::search::{SearchAnswer, SearchRequest, ShardAnswer};
use libp2p::{identity::Keypair, multiaddr::Protocol, Multiaddr, PeerId};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    time::Instant as TokioInstant,
};
use tokio_util::sync::CancellationToken;

struct Args {
    searches: usize,
    at_once: Vec<usize>,
    delays_ms: Vec<u64>,
}

/// `N,N,…` as numbers.
fn list<T: std::str::FromStr>(text: &str, what: &str) -> Result<Vec<T>> {
    text.split(',')
        .map(|n| n.parse().ok().with_context(|| format!("{what} N,N,…")))
        .collect()
}

fn args() -> Result<Args> {
    let mut args = Args {
        searches: 2_000,
        at_once: vec![1, 8, 32],
        delays_ms: vec![0, 10],
    };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        let mut value = || given.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--searches" => args.searches = value()?.parse().context("--searches N")?,
            "--at-once" => args.at_once = list(&value()?, "--at-once")?,
            "--delays-ms" => args.delays_ms = list(&value()?, "--delays-ms")?,
            "--bench" => {}
            other => return Err(anyhow!("unknown argument {other}")),
        }
    }
    Ok(args)
}

async fn network(listen: Vec<Multiaddr>, stop: &CancellationToken) -> Result<Network> {
    let key = Keypair::generate_ed25519();
    let config = NetConfig::listening_on(listen);
    Ok(Network::start(&key, config, IrohBlockStore::memory(), stop).await?)
}

fn request(shard: u32) -> SearchRequest {
    SearchRequest::new("bench", vec![shard], &[0.5, 0.25], 10, 60_000)
}

/// A relay on loopback to `to` that holds what it reads `delay` before writing it on, each
/// way; its address.
async fn relay(to: SocketAddr, delay: Duration) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let at = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((near, _)) = listener.accept().await {
            let Ok(far) = TcpStream::connect(to).await else {
                continue;
            };
            let _ = (near.set_nodelay(true), far.set_nodelay(true));
            let ((near_in, near_out), (far_in, far_out)) = (near.into_split(), far.into_split());
            tokio::spawn(late(near_in, far_out, delay));
            tokio::spawn(late(far_in, near_out, delay));
        }
    });
    Ok(at)
}

/// Passes what `from` reads to `to`, each chunk `delay` after it was read.
async fn late(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (chunks, mut due) = tokio::sync::mpsc::unbounded_channel::<(TokioInstant, Vec<u8>)>();
    tokio::spawn(async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut buffer = vec![0; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buffer).await {
        if chunks
            .send((TokioInstant::now() + delay, buffer[..n].to_vec()))
            .is_err()
        {
            break;
        }
    }
}

/// The TCP port of a `/ip4/…/tcp/…` address.
fn port_of(address: &Multiaddr) -> Result<u16> {
    address
        .iter()
        .find_map(|part| match part {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .with_context(|| format!("{address} has no TCP port"))
}

/// `searches` searches of `peer` from `asker`, `at_once` in flight: searches a second, and
/// each search's time, sorted.
async fn row(
    asker: &Network,
    peer: PeerId,
    searches: usize,
    at_once: usize,
) -> Result<(f64, Vec<Duration>)> {
    let started = Instant::now();
    let mut took: Vec<Duration> = futures::stream::iter(0..searches as u32)
        .map(|i| async move {
            let began = Instant::now();
            let answer = asker
                .search_peer(peer, &request(i), Duration::from_secs(60))
                .await
                .with_context(|| format!("search {i} unanswered"))?;
            ensure!(
                answer.shards[0].shard == i,
                "search {i} answered for another"
            );
            Ok(began.elapsed())
        })
        .buffer_unordered(at_once)
        .collect::<Vec<Result<Duration>>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    took.sort();
    Ok((searches as f64 / started.elapsed().as_secs_f64(), took))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    let stop = CancellationToken::new();
    let server = network(vec!["/ip4/127.0.0.1/tcp/0".parse()?], &stop).await?;
    let source: SearchSource = Arc::new(|_, request: SearchRequest| {
        let shard = request.shards[0];
        Box::pin(async move {
            let shard = ShardAnswer {
                shard,
                root: None,
                seq: None,
                hits: Vec::new(),
                error: None,
            };
            SearchAnswer {
                shards: vec![shard],
                refused: None,
            }
        })
    });
    server.serve_searches(source, Arc::new(|_| {}), u32::MAX);
    let address = loop {
        if let Some(address) = server.local().await?.listen.pop() {
            break address;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let port = port_of(&address)?;
    println!("{} searches a row", args.searches);
    println!();
    println!("| delay each way | searches at once | searches/s | median ms | p99 ms |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for &delay_ms in &args.delays_ms {
        let through = match delay_ms {
            0 => port,
            ms => relay(([127, 0, 0, 1], port).into(), Duration::from_millis(ms))
                .await?
                .port(),
        };
        let asker = network(Vec::new(), &stop).await?;
        let peer = asker
            .dial(format!("/ip4/127.0.0.1/tcp/{through}").parse()?)
            .await?;
        for &at_once in &args.at_once {
            let (rate, took) = row(&asker, peer, args.searches, at_once).await?;
            let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
            println!(
                "| {delay_ms} ms | {at_once} | {rate:.0} | {:.2} | {:.2} |",
                at(0.5),
                at(0.99)
            );
        }
    }
    stop.cancel();
    Ok(())
}
