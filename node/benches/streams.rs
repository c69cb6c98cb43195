//! Searches one peer asks of another over real TCP, at a few numbers in flight at once: what
//! opening a stream per request costs when the peers are a round trip apart.
//!
//! ```text
//! cargo bench -p ipvec-node --bench streams
//! cargo bench -p ipvec-node --bench streams -- --ip 127.0.0.2 --searches 400 --at-once 1,8,32
//! ```
//!
//! Two networks in this process: one answers `/ipvec/search/1.0.0` at once from a source that
//! searches nothing, listening on `--ip` (127.0.0.1); the other dials it and sends
//! `--searches` requests per row, that many in flight at once. Every request opens its own
//! stream, so the rows show how many streams a connection opens per round trip. To put the
//! peers a round trip apart without touching other loopback traffic, delay the packets of one
//! address on `lo` (as root), run, then remove the delay:
//!
//! ```text
//! tc qdisc add dev lo root handle 1: prio
//! tc qdisc add dev lo parent 1:3 handle 30: netem delay 10ms
//! tc filter add dev lo parent 1: protocol ip prio 3 u32 match ip dst 127.0.0.2/32 flowid 1:3
//! tc filter add dev lo parent 1: protocol ip prio 3 u32 match ip src 127.0.0.2/32 flowid 1:3
//! tc qdisc del dev lo root
//! ```
//!
//! Asserts nothing about time; fails if a search goes unanswered.

use std::{
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
use libp2p::identity::Keypair;
use tokio_util::sync::CancellationToken;

struct Args {
    ip: String,
    searches: usize,
    at_once: Vec<usize>,
}

fn args() -> Result<Args> {
    let mut args = Args {
        ip: "127.0.0.1".to_string(),
        searches: 2_000,
        at_once: vec![1, 8, 32],
    };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        let mut value = || given.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--ip" => args.ip = value()?,
            "--searches" => args.searches = value()?.parse().context("--searches N")?,
            "--at-once" => {
                args.at_once = value()?
                    .split(',')
                    .map(|n| n.parse().context("--at-once N,N,…"))
                    .collect::<Result<_>>()?
            }
            "--bench" => {}
            other => return Err(anyhow!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn config(listen: Option<&str>) -> Result<NetConfig> {
    let listen = listen
        .map(|ip| {
            format!("/ip4/{ip}/tcp/0")
                .parse()
                .context("an IPv4 address")
        })
        .into_iter()
        .collect::<Result<_>>()?;
    Ok(NetConfig::listening_on(listen))
}

async fn network(listen: Option<&str>, stop: &CancellationToken) -> Result<Network> {
    let key = Keypair::generate_ed25519();
    Ok(Network::start(&key, config(listen)?, IrohBlockStore::memory(), stop).await?)
}

fn request(shard: u32) -> SearchRequest {
    SearchRequest::new("bench", vec![shard], &[0.5, 0.25], 10, 60_000)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    let stop = CancellationToken::new();
    let server = network(Some(&args.ip), &stop).await?;
    let source: SearchSource = Arc::new(|_, request: SearchRequest| {
        let shard = request.shards[0];
        Box::pin(async move {
            SearchAnswer {
                shards: vec![ShardAnswer {
                    shard,
                    root: None,
                    seq: None,
                    hits: Vec::new(),
                    error: None,
                }],
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
    let asker = network(None, &stop).await?;
    let peer = asker.dial(address.clone()).await?;
    println!("server at {address}; {} searches a row", args.searches);
    println!();
    println!("| searches at once | searches/s | median ms | p99 ms |");
    println!("| ---: | ---: | ---: | ---: |");
    for &at_once in &args.at_once {
        let started = Instant::now();
        let mut took: Vec<Duration> = futures::stream::iter(0..args.searches as u32)
            .map(|i| {
                let asker = asker.clone();
                async move {
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
                }
            })
            .buffer_unordered(at_once)
            .collect::<Vec<Result<Duration>>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        let elapsed = started.elapsed();
        took.sort();
        let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        println!(
            "| {at_once} | {:.0} | {:.2} | {:.2} |",
            args.searches as f64 / elapsed.as_secs_f64(),
            at(0.5),
            at(0.99)
        );
    }
    stop.cancel();
    Ok(())
}
