//! Community collections on real daemons over loopback (issue #15): how long members take to
//! hold the shards placement gives them, how long and how many bytes the repair of a member
//! killed takes against the bytes of the shards it held, and how long three writers'
//! concurrent updates take to reach every writer and every member (Fashion-MNIST, 784-d, L2).
//!
//! ```text
//! apt-get install dataset-fashion-mnist
//! cargo bench -p ipvec-node --bench members
//! cargo bench -p ipvec-node --bench members -- --points 60000 --shards 24 --members 8 --ttl 10
//! ```
//!
//! Setup: the first `--points` (20,000) training images are written in process into a
//! collection of `--shards` (12) shards, replication 2 (M = 16, ef_construction = 128, f32) and
//! committed; an `ipvec daemon` then serves that repository: the owner. Every daemon runs with
//! `IPVEC_P2P_MEMBER_TTL_SECS` = `--ttl` (5 s): members announce themselves every third of it
//! and drop out of the membership when not heard from within it.
//!
//! Steps, each timed on its own and polled every 100 ms:
//! 1. `--members` (6) empty daemons bootstrap to the owner and all join the collection at
//!    once (`POST /v1/collections/join`, 1 GiB each: equal weights). Done when every member
//!    knows every member, holds exactly the shards placement gives it (computed here with
//!    `cluster::placement::place`, as `node/tests/members.rs` checks), both in its membership
//!    and in the shards its replica searches (`held_shards`), each at the current version.
//! 2. Every member runs a gc, which would remove the blocks of shards it fetched while the
//!    membership filled in and dropped since (the bench prints what it removed: nothing so
//!    far, as gc keeps whatever a partial replica's manifest reaches). For each shard copy
//!    placement over the survivors will give a new holder, the bench counts the bytes of that
//!    shard's blocks the new holder lacks (`GET /v1/blocks/{cid}` on it, block by block):
//!    what the repair has to move. Then the member placement gives the most shards is killed
//!    (SIGKILL). Done when every survivor
//!    knows only the survivors and holds what placement over them gives it (as in 1). The time
//!    includes waiting for the dead member's last record to expire: the time at which every
//!    survivor had dropped it is printed too, and the repair after it. The owner stays up and
//!    connected, so it is one of the peers a survivor may fetch from.
//! 3. Two more daemons fetch the whole collection and the owner adds their keys as writers;
//!    once both are `writable` and every member holds its shards at that version, the three
//!    writers each upsert `--writes` (W = 1,000) Fashion-MNIST images at the same moment, over
//!    overlapping id ranges (the owner ids N−W..N, the second N−W/2..N+W/2, the third N..N+W,
//!    with N the point count: W ids written by two writers, W new), and commit at once
//!    (`collection log`). Done when the three writers and every member show the same
//!    `merged_root` (a CID of every shard's tree; a member holding some shards merges those and
//!    takes the other shards' roots from the newest version it hears, so a converged member
//!    shows the writers' root), the writers hold N + W points and every member holds its
//!    shards at the current version. The times at which the writers alone agreed, and at
//!    which the members did, are printed too.
//!
//! Bytes are Bitswap's `bytes_received` (`/metrics`, `ipvec_bitswap{kind="bytes_received"}`):
//! the bytes of blocks received and stored, framing and CIDs excluded, late duplicates of a
//! block asked of several peers not counted (their number is `duplicates`, printed beside).
//! A shard's bytes are the same measure of its tree: the owner exports the DAG under the
//! shard's tree root (`GET /v1/dag/{cid}/export`) and the bench adds up the block data in the
//! CAR (`store::car::scan`), each block once. That is what a member holding nothing of the
//! shard has to receive (a shard's HNSW index is built by each holder, never fetched). The
//! goal of the issue is repair bytes ≤ 1.1 × the dead member's shards' bytes; the ratio to
//! what the new holders lacked is printed too (lower when they kept blocks of those shards
//! from the joins). Prints numbers and asserts nothing about time.

#[path = "shared/daemon.rs"]
mod daemon;
#[allow(dead_code)]
#[path = "engine/data.rs"]
mod data;

use std::{
    cell::Cell,
    collections::BTreeSet,
    future::Future,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};
use daemon::{start_daemon_with, Daemon};
use futures::{future::join_all, StreamExt};
use ipvec_node::{
    api::{
        types::{CollectionInfo, CreateCollection, JoinCollection, PointId, PointIn},
        Client, ExportTarget,
    },
    cluster::placement::{place, Member, Placement},
    ops::{Node, Operations},
    repo::Repo,
    store::car,
};
use ipvec_protocol::manifest::Metric;
use libp2p::PeerId;

/// The collection's name on every node.
const NAME: &str = "fm";
const REPLICATION: u32 = 2;
/// What each member offers: equal weights.
const CAPACITY: u64 = 1 << 30;
const POLL: Duration = Duration::from_millis(100);

struct Options {
    points: usize,
    shards: u32,
    members: usize,
    /// Member records' time to live, seconds.
    ttl: u64,
    /// Points each writer upserts in step 3.
    writes: usize,
    /// How long each step may take.
    timeout: Duration,
    dir: Option<PathBuf>,
}

fn options() -> Result<Options> {
    let mut opts = Options {
        points: 20_000,
        shards: 12,
        members: 6,
        ttl: 5,
        writes: 1_000,
        timeout: Duration::from_secs(300),
        dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} N"));
        match arg.as_str() {
            "--points" => opts.points = value("--points")?.parse()?,
            "--shards" => opts.shards = value("--shards")?.parse()?,
            "--members" => opts.members = value("--members")?.parse()?,
            "--ttl" => opts.ttl = value("--ttl")?.parse()?,
            "--writes" => opts.writes = value("--writes")?.parse()?,
            "--timeout" => opts.timeout = Duration::from_secs(value("--timeout")?.parse()?),
            "--dir" => opts.dir = Some(value("--dir")?.into()),
            // cargo bench passes `--bench`.
            _ => {}
        }
    }
    ensure!(opts.members >= 3, "--members takes 3 or more");
    ensure!((3..=3_600).contains(&opts.ttl), "--ttl takes 3 to 3600");
    ensure!(opts.shards >= 1, "--shards takes 1 or more");
    ensure!(
        opts.writes >= 2 && opts.writes <= opts.points,
        "--writes takes 2 to --points"
    );
    Ok(opts)
}

/// A daemon the bench started: its API and its identity.
struct Peer {
    daemon: Option<Daemon>,
    client: Client,
    url: String,
    peer: PeerId,
    address: String,
}

/// Starts a daemon on `repo` with `envs`; blocks the calling worker while it starts.
async fn start_peer(repo: &Path, envs: &[(&str, &str)]) -> Result<Peer> {
    let (daemon, url) = tokio::task::block_in_place(|| start_daemon_with(repo, envs))?;
    let client = Client::new(&url, None)?;
    let me = client.id().await?;
    Ok(Peer {
        daemon: Some(daemon),
        client,
        url,
        peer: me.peer_id.parse()?,
        address: me
            .addresses
            .first()
            .context("a daemon has no peer-to-peer address")?
            .clone(),
    })
}

/// Polls `check` every [`POLL`] until it holds or `bound` passes; the time it took, or why it
/// still did not hold.
async fn until<F, Fut>(bound: Duration, mut check: F) -> Result<Duration, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        let next = Instant::now() + POLL;
        match check().await {
            Ok(()) => return Ok(started.elapsed()),
            Err(why) if started.elapsed() > bound => return Err(why),
            Err(_) => tokio::time::sleep_until(next.into()).await,
        }
    }
}

/// Placement over `members`, as every member should compute it.
fn placement(owner: &[u8], shards: u32, members: &[&Peer]) -> Placement<PeerId> {
    let list: Vec<Member<PeerId>> = members
        .iter()
        .map(|m| Member {
            peer: m.peer,
            capacity: CAPACITY,
        })
        .collect();
    place(owner, shards, &list, REPLICATION as usize)
}

/// Whether every one of `members` knows them and no other, holds exactly the shards
/// placement over them gives it (as it says and as its replica searches), each at the
/// current version; else the first that does not, and how.
async fn placed(owner: &[u8], shards: u32, members: &[&Peer]) -> Result<(), String> {
    let want = placement(owner, shards, members);
    let everyone: BTreeSet<String> = members.iter().map(|m| m.peer.to_string()).collect();
    for m in members {
        let info = m.client.membership(NAME).await.map_err(|e| e.to_string())?;
        let known: BTreeSet<String> = info.members.iter().map(|k| k.peer_id.clone()).collect();
        if known != everyone {
            return Err(format!("{} knows {} members", m.peer, known.len()));
        }
        let held: Vec<u32> = info
            .shards
            .iter()
            .filter(|s| s.held)
            .map(|s| s.shard)
            .collect();
        if held != want.shards_of(&m.peer) {
            return Err(format!(
                "{} holds {held:?}, placement gives it {:?}",
                m.peer,
                want.shards_of(&m.peer)
            ));
        }
        if let Some(stale) = info.shards.iter().find(|s| s.held && !s.current) {
            return Err(format!("{} holds shard {} stale", m.peer, stale.shard));
        }
        let searched = info_of(m).await?.held_shards.unwrap_or_default();
        if searched != held {
            return Err(format!("{} searches {searched:?}, holds {held:?}", m.peer));
        }
    }
    Ok(())
}

/// Whether every one of `members` holds its shards at the current version.
async fn current(members: &[&Peer]) -> Result<(), String> {
    for m in members {
        let info = m.client.membership(NAME).await.map_err(|e| e.to_string())?;
        if let Some(stale) = info.shards.iter().find(|s| s.held && !s.current) {
            return Err(format!("{} holds shard {} stale", m.peer, stale.shard));
        }
    }
    Ok(())
}

async fn info_of(p: &Peer) -> Result<CollectionInfo, String> {
    p.client
        .collection_info(NAME)
        .await
        .map_err(|e| e.to_string())
}

/// A Bitswap total (`blocks_received`, `bytes_received`, `duplicates`, …) from a daemon's
/// `/metrics`.
async fn bitswap(url: &str, kind: &str) -> Result<u64> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    let prefix = format!("ipvec_bitswap{{kind=\"{kind}\"}} ");
    let value = text.lines().find_map(|l| l.strip_prefix(&prefix));
    Ok(value.map_or(Ok(0.0), |v| v.trim().parse::<f64>())? as u64)
}

/// Bitswap `bytes_received` and `duplicates` summed over `peers`.
async fn received(peers: &[&Peer]) -> Result<(u64, u64)> {
    let mut sum = (0, 0);
    for p in peers {
        sum.0 += bitswap(&p.url, "bytes_received").await?;
        sum.1 += bitswap(&p.url, "duplicates").await?;
    }
    Ok(sum)
}

/// The blocks of a shard's tree: CID and bytes of data.
type Blocks = Vec<(String, u64)>;

/// Each shard's tree as the owner holds it, block by block.
async fn shard_blocks(owner: &Client) -> Result<Vec<Blocks>> {
    let info = owner.collection_info(NAME).await?;
    let mut shards = Vec::with_capacity(info.shard_status.len());
    for shard in &info.shard_status {
        // The shard root block names the tree; its index snapshot, if any, is not fetched.
        let root: serde_json::Value = serde_json::from_slice(&owner.dag_get(&shard.root).await?)?;
        let tree = root["tree"]["/"]
            .as_str()
            .with_context(|| format!("shard {} root names no tree: {root}", shard.shard))?;
        let mut stream = owner.export(ExportTarget::Dag(tree)).await?;
        let mut car = Vec::new();
        while let Some(chunk) = stream.next().await {
            car.extend_from_slice(&chunk?);
        }
        let blocks = car_blocks(&car)?;
        // The same totals as the store's own reading of the CAR.
        let totals = car::scan(car.as_slice()).await?.totals;
        ensure!(
            totals.blocks == blocks.len() as u64
                && totals.bytes == blocks.iter().map(|b| b.1).sum::<u64>(),
            "shard {}: the CAR reads differently",
            shard.shard
        );
        shards.push(blocks);
    }
    Ok(shards)
}

/// The blocks of a CAR v1 file: varint-framed sections of a CID and the block's data, after
/// a varint-framed header.
fn car_blocks(car: &[u8]) -> Result<Blocks> {
    fn varint(bytes: &[u8], at: &mut usize) -> Result<usize> {
        let mut n = 0usize;
        for shift in (0..63).step_by(7) {
            let byte = *bytes.get(*at).context("a CAR cut short")?;
            *at += 1;
            n |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(n);
            }
        }
        anyhow::bail!("a varint of more than 9 bytes in a CAR")
    }
    let mut at = 0;
    at += varint(car, &mut at)?;
    let mut blocks = Vec::new();
    while at < car.len() {
        let len = varint(car, &mut at)?;
        let section = car.get(at..at + len).context("a CAR section cut short")?;
        let mut cursor = std::io::Cursor::new(section);
        let cid = cid::Cid::read_bytes(&mut cursor)?;
        blocks.push((cid.to_string(), len as u64 - cursor.position()));
        at += len;
    }
    Ok(blocks)
}

/// Bytes of `blocks` that `peer` does not hold.
async fn lacking(peer: &Peer, blocks: &Blocks) -> u64 {
    let mut sum = 0;
    for (cid, bytes) in blocks {
        if peer.client.block_stat(cid).await.is_err() {
            sum += bytes;
        }
    }
    sum
}

/// Writes the first `points` images into collection [`NAME`] in `repo` and commits them.
async fn write_collection(
    repo: &Path,
    data: &data::Dataset,
    points: usize,
    shards: u32,
) -> Result<()> {
    let repo = Repo::init(repo).await?;
    let config = repo.config().clone();
    let node = Node::new(repo, config);
    node.create_collection(CreateCollection {
        metric: Metric::L2,
        shards,
        replication: REPLICATION,
        ..CreateCollection::new(NAME, data.dim as u32)
    })
    .await?;
    for start in (0..points).step_by(1_000) {
        let batch = (start..(start + 1_000).min(points))
            .map(|i| image(data, i as u64, i))
            .collect();
        node.upsert(NAME, batch).await?;
    }
    node.commit(NAME).await?;
    node.close().await?;
    Ok(())
}

/// Point `id` with training image `row`.
fn image(data: &data::Dataset, id: u64, row: usize) -> PointIn {
    PointIn {
        id: PointId::Int(id),
        text: None,
        vector: data.vector(row % data.len()),
        metadata: None,
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A step's time, or an error saying why it did not finish within `bound`.
/// A step's time; if it did not finish within `bound`, prints where each of `peers` stands
/// and fails with why.
async fn waited(
    what: &str,
    result: Result<Duration, String>,
    bound: Duration,
    peers: &[&Peer],
) -> Result<Duration> {
    let why = match result {
        Ok(took) => return Ok(took),
        Err(why) => why,
    };
    for p in peers {
        let Ok(m) = p.client.membership(NAME).await else {
            continue;
        };
        let shards: Vec<String> = m
            .shards
            .iter()
            .filter(|s| s.placed || s.held || s.fetching)
            .map(|s| {
                format!(
                    "{}{}{}{}{} ({}/{})",
                    s.shard,
                    if s.placed { " placed" } else { "" },
                    if s.held { " held" } else { "" },
                    if s.current { " current" } else { "" },
                    if s.fetching { " fetching" } else { "" },
                    s.holders,
                    s.replication
                )
            })
            .collect();
        let known: Vec<String> = m
            .members
            .iter()
            .map(|k| {
                let tail = k.peer_id.get(k.peer_id.len().saturating_sub(6)..);
                format!("…{} {:?}", tail.unwrap_or_default(), k.holds)
            })
            .collect();
        eprintln!(
            "{} ({}): {}; knows {}",
            p.peer,
            m.state,
            shards.join(", "),
            known.join(" ")
        );
    }
    anyhow::bail!("{what}: not done after {bound:?}: {why}")
}

fn main() -> Result<()> {
    let opts = options()?;
    let mut data = data::load(1)?;
    let points = opts.points.min(data.len());
    data.truncate(data.len().min(points + 3 * opts.writes));
    let tmp = match &opts.dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "# ipvec community collection benchmark\n\nFashion-MNIST: {points} × {}, {} shards, replication {REPLICATION}, \
         {} members, member ttl {} s, {cores} cores",
        data.dim, opts.shards, opts.members, opts.ttl
    );
    let owner_repo = tmp.path().join("owner");
    let started = Instant::now();
    runtime.block_on(write_collection(&owner_repo, &data, points, opts.shards))?;
    println!(
        "owner: built and committed in {:.1} s",
        secs(started.elapsed())
    );
    runtime.block_on(run(&opts, &data, points, tmp.path()))
}

async fn run(opts: &Options, data: &data::Dataset, points: usize, dir: &Path) -> Result<()> {
    let ttl = opts.ttl.to_string();
    let env = [("IPVEC_P2P_MEMBER_TTL_SECS", ttl.as_str())];
    let owner = start_peer(&dir.join("owner"), &env).await?;
    let info = owner.client.collection_info(NAME).await?;
    let id = info.id.clone();
    let key = ipvec_protocol::head::key_of_id(&id)?;
    let blocks = shard_blocks(&owner.client).await?;
    let sizes: Vec<(u64, u64)> = blocks
        .iter()
        .map(|b| (b.len() as u64, b.iter().map(|x| x.1).sum()))
        .collect();
    let total: u64 = sizes.iter().map(|s| s.1).sum();
    println!(
        "shard trees: {} blocks, {:.2} MB in all, {:.2} MB a shard on average",
        sizes.iter().map(|s| s.0).sum::<u64>(),
        mb(total),
        mb(total) / sizes.len() as f64
    );

    // (1) The members join at once.
    let joining = [env[0], ("IPVEC_P2P_BOOTSTRAP", owner.address.as_str())];
    let mut members = Vec::with_capacity(opts.members);
    for m in 0..opts.members {
        members.push(start_peer(&dir.join(format!("member{m}")), &joining).await?);
    }
    let from = vec![owner.address.clone()];
    let started = Instant::now();
    let joins = members.iter().map(|m| {
        m.client.join(JoinCollection {
            id: id.clone(),
            capacity: Some(CAPACITY),
            name: Some(NAME.into()),
            from: from.clone(),
        })
    });
    for (m, joined) in join_all(joins).await.into_iter().enumerate() {
        joined.with_context(|| format!("member {m} joining"))?;
    }
    let all: Vec<&Peer> = members.iter().collect();
    let result = until(opts.timeout, || placed(&key, opts.shards, &all)).await;
    let initial = waited(
        "initial placement",
        result.map(|_| started.elapsed()),
        opts.timeout,
        &all,
    )
    .await?;
    let (initial_bytes, initial_dups) = received(&all).await?;
    let want = placement(&key, opts.shards, &all);
    let per_member: Vec<usize> = all.iter().map(|m| want.shards_of(&m.peer).len()).collect();
    println!(
        "1. placement held on every member {:.2} s after the joins; {:.2} MB received",
        secs(initial),
        mb(initial_bytes)
    );
    // Blocks of shards fetched while the membership was still filling in and dropped since
    // should go at a gc; what a new holder still has of a shard is counted below either way,
    // so the repair's bytes are compared with what it lacked too.
    let mut freed = 0;
    for m in &all {
        freed += m.client.gc().await?.removed_bytes;
    }
    println!(
        "   gc on every member: {:.2} MB of shards dropped during the joins removed; placement still held: {}",
        mb(freed),
        match placed(&key, opts.shards, &all).await {
            Ok(()) => "yes".to_string(),
            Err(why) => format!("no, {why}"),
        }
    );

    // (2) The member with the most shards is killed.
    let victim = (0..members.len())
        .max_by_key(|&m| per_member[m])
        .unwrap_or(0);
    let lost = want.shards_of(&members[victim].peer);
    let lost_bytes: u64 = lost.iter().map(|&s| sizes[s as usize].1).sum();
    let survivors: Vec<&Peer> = (0..members.len())
        .filter(|&m| m != victim)
        .map(|m| &members[m])
        .collect();
    let after = placement(&key, opts.shards, &survivors);
    // Each shard copy placement over the survivors gives a new holder, and the bytes of it
    // that holder lacks now: what the repair has to move.
    let mut moved = 0;
    let mut missing = 0;
    for m in &survivors {
        for shard in after.shards_of(&m.peer) {
            if !want.holds(&m.peer, shard) {
                moved += 1;
                missing += lacking(m, &blocks[shard as usize]).await;
            }
        }
    }
    let (before, dups_before) = received(&survivors).await?;
    let dead = members[victim].daemon.as_ref().context("the victim runs")?;
    let pid = dead.pid();
    let started = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    ensure!(killed.success(), "kill -KILL {pid}: {killed}");
    // When every survivor had dropped it from its membership.
    let dropped = Cell::new(None);
    let result = {
        let (key, survivors, dropped) = (&key, &survivors, &dropped);
        let shards = opts.shards;
        until(opts.timeout, move || async move {
            if dropped.get().is_none() {
                let mut all_dropped = true;
                for m in survivors {
                    let info = m.client.membership(NAME).await.map_err(|e| e.to_string())?;
                    all_dropped &= info.members.len() == survivors.len();
                }
                if all_dropped {
                    dropped.set(Some(started.elapsed()));
                }
            }
            placed(key, shards, survivors).await
        })
        .await
    };
    let repair = waited(
        "repair",
        result.map(|_| started.elapsed()),
        opts.timeout,
        &survivors,
    )
    .await?;
    let (after_bytes, dups_after) = received(&survivors).await?;
    let repair_bytes = after_bytes - before;
    let dropped = dropped.get().unwrap_or(repair);
    println!(
        "2. member {victim} killed: every survivor dropped it after {:.2} s, placement held after {:.2} s; \
         {:.2} MB received for {:.2} MB of its shards, {:.2} MB of which their new holders lacked",
        secs(dropped),
        secs(repair),
        mb(repair_bytes),
        mb(lost_bytes),
        mb(missing)
    );

    // (3) Three writers at once.
    let mut writers = Vec::with_capacity(2);
    for w in 1..=2 {
        writers.push(start_peer(&dir.join(format!("writer{w}")), &joining).await?);
    }
    for w in &writers {
        w.client
            .fetch_collection(&id, Some(NAME.into()), &from, None)
            .await?;
    }
    for w in &writers {
        owner
            .client
            .change_writer(NAME, &w.peer.to_string(), true)
            .await?;
    }
    let all_writers: Vec<&Peer> = std::iter::once(&owner).chain(&writers).collect();
    let result = {
        let (writers, survivors) = (&writers, &survivors);
        until(opts.timeout, move || async move {
            for w in writers {
                if !info_of(w).await?.writable {
                    return Err(format!("{} does not write yet", w.peer));
                }
            }
            current(survivors).await
        })
        .await
    };
    waited("the writers writable", result, opts.timeout, &survivors).await?;
    let base_root = info_of(&owner)
        .await
        .map_err(anyhow::Error::msg)?
        .merged_root;
    let everyone: Vec<&Peer> = all_writers.iter().chain(&survivors).copied().collect();
    let (moved_before, _) = received(&everyone).await?;
    let n = points as u64;
    let w = opts.writes as u64;
    let started = Instant::now();
    let writes = all_writers.iter().enumerate().map(|(k, p)| {
        // N−W..N, N−W/2..N+W/2, N..N+W.
        let first = n + k as u64 * w / 2 - w;
        let batch: Vec<PointIn> = (0..w)
            .map(|i| image(data, first + i, points + k * opts.writes + i as usize))
            .collect();
        async move {
            let t = Instant::now();
            p.client.upsert(NAME, batch).await?;
            p.client.collection_log(NAME).await?;
            anyhow::Ok(t.elapsed())
        }
    });
    let committed: Vec<Duration> = join_all(writes).await.into_iter().collect::<Result<_>>()?;
    let expected = n + w;
    // When the writers agreed, and when the members showed the same merged root.
    let (writers_agreed, members_agreed) = (Cell::new(None), Cell::new(None));
    let result = {
        let (all_writers, survivors, base_root) = (&all_writers, &survivors, &base_root);
        let (writers_agreed, members_agreed) = (&writers_agreed, &members_agreed);
        until(opts.timeout, move || async move {
            let mut roots = Vec::new();
            for p in all_writers {
                let info = info_of(p).await?;
                if info.points != expected {
                    return Err(format!("writer {} holds {} points", p.peer, info.points));
                }
                roots.push(info.merged_root);
            }
            if roots.iter().any(|r| *r != roots[0] || r == base_root) {
                return Err("the writers show different merged roots".into());
            }
            if writers_agreed.get().is_none() {
                writers_agreed.set(Some(started.elapsed()));
            }
            for p in survivors {
                if info_of(p).await?.merged_root != roots[0] {
                    return Err(format!("member {} shows another merged root", p.peer));
                }
            }
            if members_agreed.get().is_none() {
                members_agreed.set(Some(started.elapsed()));
            }
            current(survivors).await
        })
        .await
    };
    let converged = waited(
        "convergence",
        result.map(|_| started.elapsed()),
        opts.timeout,
        &survivors,
    )
    .await?;
    let (moved_after, _) = received(&everyone).await?;

    println!();
    println!("| step | seconds | MB received | against | ratio |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    println!(
        "| 1. {} members join, until placement holds everywhere | {:.2} | {:.2} | {:.2} MB ({REPLICATION} × every shard) | {:.3} |",
        opts.members,
        secs(initial),
        mb(initial_bytes),
        mb(total * u64::from(REPLICATION)),
        initial_bytes as f64 / (total * u64::from(REPLICATION)) as f64
    );
    println!(
        "| 2. member killed ({} shards), until placement holds on the {} left | {:.2} | {:.2} | {:.2} MB (its shards) | {:.3} |",
        lost.len(),
        survivors.len(),
        secs(repair),
        mb(repair_bytes),
        mb(lost_bytes),
        repair_bytes as f64 / lost_bytes as f64
    );
    println!(
        "| – the same bytes against what the new holders lacked | | {:.2} | {:.2} MB | {:.3} |",
        mb(repair_bytes),
        mb(missing),
        repair_bytes as f64 / missing.max(1) as f64
    );
    println!(
        "| – of which until every survivor dropped it (ttl {} s) | {:.2} | | | |",
        opts.ttl,
        secs(dropped)
    );
    println!(
        "| – repair after that | {:.2} | | | |",
        secs(repair.saturating_sub(dropped))
    );
    println!(
        "| 3. three writers × {} points at once, until all converge | {:.2} | {:.2} | | |",
        opts.writes,
        secs(converged),
        mb(moved_after - moved_before)
    );
    println!(
        "| – until the three writers agreed | {:.2} | | | |",
        secs(writers_agreed.get().unwrap_or(converged))
    );
    println!(
        "| – until every member showed their merged root | {:.2} | | | |",
        secs(members_agreed.get().unwrap_or(converged))
    );
    println!();
    println!(
        "initial placement: {} late duplicate blocks dropped; shards per member {per_member:?}",
        initial_dups
    );
    println!(
        "repair: member {victim} held shards {lost:?}; placement over the survivors gives {moved} shard copies to \
         new holders (it held {}); {} late duplicate blocks dropped",
        lost.len(),
        dups_after - dups_before
    );
    println!(
        "writes: upsert + commit took {} s on the three writers; MB in step 3 is Bitswap bytes received by the writers and members",
        committed
            .iter()
            .map(|d| format!("{:.2}", secs(*d)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let ratio = repair_bytes as f64 / lost_bytes as f64;
    let needed = repair_bytes as f64 / missing.max(1) as f64;
    println!();
    println!(
        "goal: repair bytes ≤ 1.1 × the dead member's shards: {ratio:.3} ×, {}; \
         {needed:.3} × what the new holders lacked, {}",
        if ratio <= 1.1 { "met" } else { "not met" },
        if needed <= 1.1 { "met" } else { "not met" }
    );
    Ok(())
}
