//! Shard tree and CAR benchmark: build, export, import, 1% updates, peak memory.
//!
//! ```text
//! cargo bench -p ipvec-node --bench tree_car                       # N = 1,000,000
//! cargo bench -p ipvec-node --bench tree_car -- --entries 100000
//! IPVEC_BENCH_ENTRIES=100000 cargo bench -p ipvec-node --bench tree_car
//! ```
//!
//! Options: `--entries N` (or `IPVEC_BENCH_ENTRIES`), `--dir PATH` (or `IPVEC_BENCH_DIR`: where
//! the temporary stores and CAR files go; default the system temp dir), `--skip-mem` (skip the
//! MemBlockStore comparison runs).
//!
//! It prints numbers and asserts nothing about time. MB = 10^6 bytes. See docs/benchmarks.md.

use std::{
    collections::HashSet,
    f64::consts::TAU,
    io::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use cid::Cid;
use futures::StreamExt;
use ipvec_node::{
    store::{
        car, dag, BlockInfo, BlockStore, Digest, IrohBlockStore, MemBlockStore, StoreError,
        SweepStats,
    },
    tree::{self, Edit, TreeBuilder},
};
use ipvec_protocol::{
    cid as pcid,
    entry::{Entry, EntryId},
    hlc::Hlc,
    node::Node,
};
use iroh_blobs::Hash;
use rand::{rngs::StdRng, SeedableRng};
use tokio::io::AsyncWriteExt;

const DIM: usize = 128;
const WRITER: [u8; 32] = [0x5a; 32];
/// 2025-01-01T00:00:00Z in milliseconds, counter 0.
const HLC_BUILD: u64 = 1_735_689_600_000 << 16;
/// One second later.
const HLC_UPDATE: u64 = (1_735_689_601_000) << 16;
const SEED: u64 = 0x1bec_2025;

// ---------------------------------------------------------------------------------------------
// Options, output helpers
// ---------------------------------------------------------------------------------------------

struct Options {
    entries: u64,
    dir: Option<PathBuf>,
    skip_mem: bool,
}

fn options() -> Result<Options> {
    let mut opts = Options {
        entries: 1_000_000,
        dir: std::env::var_os("IPVEC_BENCH_DIR").map(PathBuf::from),
        skip_mem: false,
    };
    if let Ok(v) = std::env::var("IPVEC_BENCH_ENTRIES") {
        opts.entries = parse_count(&v)?;
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--entries" | "-n" => {
                let v = args.next().context("--entries needs a value")?;
                opts.entries = parse_count(&v)?;
            }
            "--dir" => opts.dir = Some(args.next().context("--dir needs a value")?.into()),
            "--skip-mem" => opts.skip_mem = true,
            // cargo bench passes `--bench`; libtest-style filters are ignored too.
            _ => {}
        }
    }
    if opts.entries < 100 {
        bail!("--entries must be at least 100");
    }
    Ok(opts)
}

fn parse_count(s: &str) -> Result<u64> {
    s.replace(['_', ','], "")
        .parse()
        .with_context(|| format!("not a number of entries: {s}"))
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    mb(bytes) / d.as_secs_f64()
}

/// Rows of the summary table printed at the end.
#[derive(Default)]
struct Summary {
    rows: Vec<[String; 5]>,
}

impl Summary {
    fn add(&mut self, what: &str, secs: Option<Duration>, rate: String, notes: String) {
        self.add_cpu(what, secs, None, rate, notes);
    }

    fn add_cpu(
        &mut self,
        what: &str,
        secs: Option<Duration>,
        cpu: Option<&Timing>,
        rate: String,
        notes: String,
    ) {
        self.rows.push([
            what.to_string(),
            secs.map_or("–".into(), |d| format!("{:.3}", d.as_secs_f64())),
            cpu.map_or(String::new(), |c| format!("{:.2}", c.user + c.sys)),
            rate,
            notes,
        ]);
    }
}

/// Process CPU seconds (user, system) over all threads, from /proc/self/stat.
fn cpu_now() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return (0.0, 0.0);
    };
    // After the command name: state is field 3, utime field 14, stime field 15 (clock ticks).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (tick(11), tick(12))
}

/// Wall and CPU time of one phase.
#[derive(Debug, Clone, Copy)]
struct Timing {
    wall: Duration,
    user: f64,
    sys: f64,
}

impl Timing {
    fn describe(&self) -> String {
        format!(
            "cpu {:.2} s (user {:.2} + sys {:.2}) = {:.0}% of one core",
            self.user + self.sys,
            self.user,
            self.sys,
            100.0 * (self.user + self.sys) / self.wall.as_secs_f64()
        )
    }
}

struct Timer {
    start: Instant,
    cpu: (f64, f64),
}

impl Timer {
    fn start() -> Self {
        let cpu = cpu_now();
        Self {
            start: Instant::now(),
            cpu,
        }
    }

    fn stop(&self) -> Timing {
        let wall = self.start.elapsed();
        let (u, s) = cpu_now();
        Timing {
            wall,
            user: u - self.cpu.0,
            sys: s - self.cpu.1,
        }
    }
}

/// Writes dirty pages back (the `sync` command), so a phase does not pay for the previous
/// phase's writeback.
fn sync_disks() {
    let _ = std::process::Command::new("sync").status();
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Memory: VmHWM / VmRSS from /proc/self/status, peak reset through /proc/self/clear_refs.
// ---------------------------------------------------------------------------------------------

fn proc_status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resets VmHWM to the current RSS (Linux: writing 5 to clear_refs); returns whether it worked.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

struct Mem {
    can_reset: bool,
    process_peak_kb: u64,
}

impl Mem {
    fn new() -> Self {
        Self {
            can_reset: reset_peak(),
            process_peak_kb: proc_status_kb("VmHWM:").unwrap_or(0),
        }
    }

    fn phase_start(&mut self) {
        self.note();
        if self.can_reset {
            reset_peak();
        }
    }

    fn note(&mut self) {
        let hwm = proc_status_kb("VmHWM:").unwrap_or(0);
        self.process_peak_kb = self.process_peak_kb.max(hwm);
    }

    /// "phase peak X MB, process peak Y MB, now Z MB".
    fn report(&mut self, label: &str) -> String {
        self.note();
        let hwm = proc_status_kb("VmHWM:").unwrap_or(0);
        let rss = proc_status_kb("VmRSS:").unwrap_or(0);
        let line = if self.can_reset {
            format!(
                "{label}: VmHWM {:.0} MB during this phase, process VmHWM so far {:.0} MB, VmRSS now {:.0} MB",
                hwm as f64 / 1e3,
                self.process_peak_kb as f64 / 1e3,
                rss as f64 / 1e3
            )
        } else {
            format!(
                "{label}: process VmHWM {:.0} MB (peak reset unavailable), VmRSS now {:.0} MB",
                hwm as f64 / 1e3,
                rss as f64 / 1e3
            )
        };
        println!("  rss   {line}");
        line
    }
}

// ---------------------------------------------------------------------------------------------
// Data: structured, deterministic vectors.
// ---------------------------------------------------------------------------------------------

/// A 128-dim f32 vector derived from the id: `v_i = a(id) · sin((i+1)·x(id) + phase)`, a smooth
/// family of sinusoids (neighbouring ids have similar vectors), computed by the Chebyshev
/// recurrence. `phase` changes every value, for updates.
fn vector(id: u64, phase: f64) -> Vec<u8> {
    let x = (id as f64 * 0.013_7) % TAU;
    let amp = 1.0 + 0.5 * (id as f64 * 0.001).cos();
    let c2 = 2.0 * x.cos();
    // sin(0·x + p) and sin(1·x + p), then sin((k+1)x+p) = 2cos(x)·sin(kx+p) − sin((k−1)x+p).
    let mut prev = phase.sin();
    let mut cur = (x + phase).sin();
    let mut out = Vec::with_capacity(DIM * 4);
    for _ in 0..DIM {
        out.extend_from_slice(&((amp * cur) as f32).to_le_bytes());
        let next = c2 * cur - prev;
        prev = cur;
        cur = next;
    }
    out
}

fn entry(id: u64, phase: f64, hlc: u64) -> Result<Entry> {
    Ok(Entry::put(
        EntryId::Int(id).to_key()?,
        vector(id, phase),
        None,
        Hlc(hlc),
        WRITER,
    ))
}

// ---------------------------------------------------------------------------------------------
// A store that keeps nothing: the cost of building without storage.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct NullStore;

impl BlockStore for NullStore {
    async fn put_raw(&self, _: Digest, _: Bytes) -> Result<(), StoreError> {
        Ok(())
    }
    async fn get_raw(&self, _: Digest) -> Result<Option<Bytes>, StoreError> {
        Ok(None)
    }
    async fn has_digest(&self, _: Digest) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn list(&self) -> Result<Vec<BlockInfo>, StoreError> {
        Ok(Vec::new())
    }
    async fn pin(&self, _: &Cid) -> Result<(), StoreError> {
        Ok(())
    }
    async fn unpin(&self, _: &Cid) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn pins(&self) -> Result<Vec<Cid>, StoreError> {
        Ok(Vec::new())
    }
    async fn delete_unpinned(&self, _: &HashSet<Digest>) -> Result<SweepStats, StoreError> {
        Ok(SweepStats::default())
    }
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Tree shape
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Clone)]
struct Shape {
    /// Blocks in CAR export order (depth-first pre-order), each once.
    order: Vec<Cid>,
    digests: HashSet<Digest>,
    height: u32,
    leaves: u64,
    leaf_bytes: u64,
    branches: u64,
    branch_bytes: u64,
    entries: u64,
    min_leaf_entries: u64,
    max_leaf_entries: u64,
    max_block: u64,
}

impl Shape {
    fn blocks(&self) -> u64 {
        self.leaves + self.branches
    }
    fn bytes(&self) -> u64 {
        self.leaf_bytes + self.branch_bytes
    }
}

async fn walk<S: BlockStore>(store: &S, root: &Cid) -> Result<Shape> {
    let mut shape = Shape {
        min_leaf_entries: u64::MAX,
        ..Shape::default()
    };
    let mut stack = vec![*root];
    while let Some(cid) = stack.pop() {
        if !shape.digests.insert(pcid::digest(&cid)?) {
            continue;
        }
        shape.order.push(cid);
        let bytes = store.require(&cid).await?;
        shape.max_block = shape.max_block.max(bytes.len() as u64);
        match Node::decode(&bytes)? {
            Node::Leaf(entries) => {
                let n = entries.len() as u64;
                shape.leaves += 1;
                shape.leaf_bytes += bytes.len() as u64;
                shape.entries += n;
                shape.min_leaf_entries = shape.min_leaf_entries.min(n);
                shape.max_leaf_entries = shape.max_leaf_entries.max(n);
            }
            Node::Branch { level, children } => {
                shape.height = shape.height.max(level);
                shape.branches += 1;
                shape.branch_bytes += bytes.len() as u64;
                stack.extend(children.iter().rev().map(|c| c.cid));
            }
        }
    }
    Ok(shape)
}

fn print_shape(label: &str, s: &Shape) {
    println!(
        "  shape {label}: height {} (levels 0..={}), {} blocks = {} leaves + {} branches, {:.1} MB = {:.1} MB leaves + {:.2} MB branches",
        s.height,
        s.height,
        s.blocks(),
        s.leaves,
        s.branches,
        mb(s.bytes()),
        mb(s.leaf_bytes),
        mb(s.branch_bytes)
    );
    println!(
        "  shape {label}: {} entries; entries per leaf avg {:.0}, min {}, max {}; avg leaf {:.0} KiB, largest block {:.0} KiB",
        s.entries,
        s.entries as f64 / s.leaves.max(1) as f64,
        s.min_leaf_entries,
        s.max_leaf_entries,
        s.leaf_bytes as f64 / s.leaves.max(1) as f64 / 1024.0,
        s.max_block as f64 / 1024.0
    );
}

// ---------------------------------------------------------------------------------------------
// Phases
// ---------------------------------------------------------------------------------------------

struct Built {
    root: Cid,
    secs: Duration,
    written_blocks: u64,
    written_bytes: u64,
}

async fn build_tree<S: BlockStore>(store: &S, n: u64) -> Result<Built> {
    let start = Instant::now();
    let mut builder = TreeBuilder::new(store);
    for id in 0..n {
        builder.push(&entry(id, 0.0, HLC_BUILD)?).await?;
    }
    let (root, stats) = builder.finish().await?;
    Ok(Built {
        root,
        secs: start.elapsed(),
        written_blocks: stats.blocks,
        written_bytes: stats.bytes,
    })
}

fn report_build(label: &str, b: &Built, shape: &Shape, n: u64) -> String {
    let line = format!(
        "{:.3} s, {:.0} entries/s, {:.1} MB/s of leaf bytes; {} blocks written, {:.1} MB",
        b.secs.as_secs_f64(),
        n as f64 / b.secs.as_secs_f64(),
        mbps(shape.leaf_bytes, b.secs),
        b.written_blocks,
        mb(b.written_bytes)
    );
    println!("  build {label}: {line}");
    line
}

struct Exported {
    secs: Duration,
    blocks: u64,
    block_bytes: u64,
    file_bytes: u64,
}

async fn export_car<S: BlockStore>(store: &S, root: &Cid, path: &Path) -> Result<Exported> {
    let file = tokio::fs::File::create(path).await?;
    let start = Instant::now();
    let totals = car::export(store, root, file, |_| {}).await?;
    let secs = start.elapsed();
    let file_bytes = std::fs::metadata(path)?.len();
    Ok(Exported {
        secs,
        blocks: totals.blocks,
        block_bytes: totals.bytes,
        file_bytes,
    })
}

fn report_export(label: &str, e: &Exported) -> String {
    let line = format!(
        "{:.3} s, {:.0} MB/s of file, {} blocks, file {:.1} MB ({:.1} MB of blocks)",
        e.secs.as_secs_f64(),
        mbps(e.file_bytes, e.secs),
        e.blocks,
        mb(e.file_bytes),
        mb(e.block_bytes)
    );
    println!("  export {label}: {line}");
    line
}

/// Where the FsStore export's time goes: each step of `car::export` timed alone over the same
/// blocks in the same order.
async fn export_breakdown(
    store: &IrohBlockStore,
    shape: &Shape,
    dir: &Path,
    summary: &mut Summary,
) -> Result<Vec<Bytes>> {
    let blobs = store.blobs();
    let hashes: Vec<Hash> = shape
        .order
        .iter()
        .map(|c| pcid::digest(c).map(Hash::from))
        .collect::<Result<_, _>>()?;

    // 1. status() alone: one actor round trip per block.
    let t = Instant::now();
    for h in &hashes {
        blobs.status(*h).await?;
    }
    let status = t.elapsed();

    // 2. get_bytes() alone: export_bao streamed as 16 KiB chunk groups through a channel.
    let t = Instant::now();
    let mut got = 0u64;
    for h in &hashes {
        got += blobs.get_bytes(*h).await?.len() as u64;
    }
    let get_bytes = t.elapsed();

    // 3. has() alone, for comparison with status().
    let t = Instant::now();
    for h in &hashes {
        blobs.has(*h).await?;
    }
    let has = t.elapsed();

    // 4. get_raw (status + get_bytes), what require() calls.
    let t = Instant::now();
    let mut blocks = Vec::with_capacity(hashes.len());
    for h in &hashes {
        blocks.push(
            store
                .get_raw(*h.as_bytes())
                .await?
                .context("block vanished")?,
        );
    }
    let get_raw = t.elapsed();

    // 5. Verify: BLAKE3 of every block (in memory).
    let t = Instant::now();
    let mut x = 0u8;
    for b in &blocks {
        x ^= blake3::hash(b).as_bytes()[0];
    }
    let verify = t.elapsed();
    std::hint::black_box(x);

    // 6. dag::block_links: full DAG-CBOR decode of every block into Ipld.
    let t = Instant::now();
    let mut links = 0usize;
    for (cid, b) in shape.order.iter().zip(&blocks) {
        links += dag::block_links(cid, b)?.len();
    }
    let decode = t.elapsed();
    std::hint::black_box(links);

    // 7. Framing + writing from memory, through the same 1 MiB tokio BufWriter on a tokio File.
    let path = dir.join("breakdown.car");
    let t = Instant::now();
    let file = tokio::fs::File::create(&path).await?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    for (cid, b) in shape.order.iter().zip(&blocks) {
        let cid_bytes = cid.to_bytes();
        let mut frame = Vec::with_capacity(10);
        varint(&mut frame, (cid_bytes.len() + b.len()) as u64);
        out.write_all(&frame).await?;
        out.write_all(&cid_bytes).await?;
        out.write_all(b).await?;
    }
    out.flush().await?;
    let write = t.elapsed();
    std::fs::remove_file(&path)?;

    let total = get_raw + verify + decode + write;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / hashes.len() as f64;
    println!(
        "  export fs breakdown over {} blocks ({:.1} MB), each step alone:",
        hashes.len(),
        mb(got)
    );
    println!(
        "    store.get_raw (status + get_bytes)  {:.3} s  ({:.0} µs/block, {:.0} MB/s)",
        get_raw.as_secs_f64(),
        per(get_raw),
        mbps(got, get_raw)
    );
    println!(
        "      of which blobs().status()         {:.3} s  ({:.0} µs/block)",
        status.as_secs_f64(),
        per(status)
    );
    println!(
        "      of which blobs().get_bytes()      {:.3} s  ({:.0} µs/block, {:.0} MB/s)",
        get_bytes.as_secs_f64(),
        per(get_bytes),
        mbps(got, get_bytes)
    );
    println!(
        "      (blobs().has() for comparison     {:.3} s  ({:.0} µs/block))",
        has.as_secs_f64(),
        per(has)
    );
    println!(
        "    blake3 verify (BlockStore::get)     {:.3} s  ({:.0} MB/s)",
        verify.as_secs_f64(),
        mbps(got, verify)
    );
    println!(
        "    dag::block_links (Ipld decode)      {:.3} s  ({:.0} MB/s)",
        decode.as_secs_f64(),
        mbps(got, decode)
    );
    println!(
        "    frame + write (tokio BufWriter)     {:.3} s  ({:.0} MB/s)",
        write.as_secs_f64(),
        mbps(got, write)
    );
    println!(
        "    sum of steps                        {:.3} s",
        total.as_secs_f64()
    );
    summary.add(
        "  export fs: store reads (get_raw)",
        Some(get_raw),
        format!("{:.0} MB/s", mbps(got, get_raw)),
        format!(
            "status {:.3} s + get_bytes {:.3} s",
            status.as_secs_f64(),
            get_bytes.as_secs_f64()
        ),
    );
    summary.add(
        "  export: blake3 verify",
        Some(verify),
        format!("{:.0} MB/s", mbps(got, verify)),
        String::new(),
    );
    summary.add(
        "  export: block_links (Ipld decode)",
        Some(decode),
        format!("{:.0} MB/s", mbps(got, decode)),
        String::new(),
    );
    summary.add(
        "  export: frame + write",
        Some(write),
        format!("{:.0} MB/s", mbps(got, write)),
        String::new(),
    );
    Ok(blocks)
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A prototype of a tree-aware export: read the branches (≈0.5% of the bytes) to learn the
/// depth-first order, then fetch the leaves `window` at a time concurrently, verify, and write
/// in order. Leaves are not decoded (a leaf has no links). Same bytes as `car::export`.
async fn prototype_export(
    store: &IrohBlockStore,
    root: &Cid,
    path: &Path,
    window: usize,
) -> Result<(Duration, u64)> {
    let start = Instant::now();
    // Order: depth-first pre-order; children of a level-1 branch are leaves, not read here.
    let mut order: Vec<(Cid, Option<Bytes>)> = Vec::new();
    let mut stack: Vec<(Cid, bool)> = vec![(*root, false)];
    while let Some((cid, is_leaf)) = stack.pop() {
        if is_leaf {
            order.push((cid, None));
            continue;
        }
        let bytes = store.require(&cid).await?;
        match Node::decode(&bytes)? {
            Node::Branch { level, children } => {
                stack.extend(children.iter().rev().map(|c| (c.cid, level == 1)));
            }
            Node::Leaf(_) => {}
        }
        order.push((cid, Some(bytes)));
    }
    let file = tokio::fs::File::create(path).await?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let header = ipvec_protocol::dagcbor::encode(&ipld_core::ipld!({
        "roots": [*root], "version": 1
    }))?;
    let mut frame = Vec::new();
    varint(&mut frame, header.len() as u64);
    out.write_all(&frame).await?;
    out.write_all(&header).await?;
    let mut seen = HashSet::new();
    let mut fetches = futures::stream::iter(
        order
            .into_iter()
            .filter(|(c, _)| pcid::digest(c).map_or(true, |d| seen.insert(d))),
    )
    .map(|(cid, bytes)| {
        let store = store.clone();
        async move {
            let bytes = match bytes {
                Some(b) => b,
                None => tokio::spawn(async move { store.require(&cid).await })
                    .await
                    .map_err(|e| anyhow::anyhow!(e))??,
            };
            Ok::<_, anyhow::Error>((cid, bytes))
        }
    })
    .buffered(window);
    let mut bytes_out = 0u64;
    while let Some(item) = fetches.next().await {
        let (cid, bytes) = item?;
        let cid_bytes = cid.to_bytes();
        frame.clear();
        varint(&mut frame, (cid_bytes.len() + bytes.len()) as u64);
        out.write_all(&frame).await?;
        out.write_all(&cid_bytes).await?;
        out.write_all(&bytes).await?;
        bytes_out += bytes.len() as u64;
    }
    out.flush().await?;
    Ok((start.elapsed(), bytes_out))
}

struct Imported {
    secs: Duration,
    blocks: u64,
    bytes: u64,
}

async fn import_car<S: BlockStore>(store: &S, path: &Path) -> Result<Imported> {
    let file = tokio::fs::File::open(path).await?;
    let start = Instant::now();
    let summary = car::import(store, file, |_| {}).await?;
    Ok(Imported {
        secs: start.elapsed(),
        blocks: summary.totals.blocks,
        bytes: summary.totals.bytes,
    })
}

/// Where the import's time goes: its per-block steps timed alone over blocks held in memory.
async fn import_breakdown(shape: &Shape, blocks: &[Bytes], dir: &Path) -> Result<()> {
    let total: u64 = blocks.iter().map(|b| b.len() as u64).sum();
    let t = Instant::now();
    for (cid, b) in shape.order.iter().zip(blocks) {
        pcid::verify_block(cid, b)?;
    }
    let verify = t.elapsed();
    let t = Instant::now();
    for b in blocks {
        std::hint::black_box(ipvec_protocol::dagcbor::decode_ipld(b)?);
    }
    let decode = t.elapsed();
    let t = Instant::now();
    for b in blocks {
        std::hint::black_box(Bytes::copy_from_slice(b));
    }
    let copy = t.elapsed();
    let store_dir = tempfile::tempdir_in(dir)?;
    let store = IrohBlockStore::open(store_dir.path()).await?;
    let t = Instant::now();
    for (cid, b) in shape.order.iter().zip(blocks) {
        store.put_raw(pcid::digest(cid)?, b.clone()).await?;
    }
    let put = t.elapsed();
    let t = Instant::now();
    store.flush().await?;
    let flush = t.elapsed();
    store.shutdown().await?;
    println!(
        "  import breakdown over {} blocks ({:.1} MB), each step alone:",
        blocks.len(),
        mb(total)
    );
    println!(
        "    verify_block (blake3)               {:.3} s  ({:.0} MB/s)",
        verify.as_secs_f64(),
        mbps(total, verify)
    );
    println!(
        "    decode_ipld (decode + re-encode)    {:.3} s  ({:.0} MB/s)",
        decode.as_secs_f64(),
        mbps(total, decode)
    );
    println!(
        "    Bytes::copy_from_slice              {:.3} s  ({:.0} MB/s)",
        copy.as_secs_f64(),
        mbps(total, copy)
    );
    println!(
        "    FsStore put_raw (has + add_bytes)   {:.3} s  ({:.0} MB/s), then flush {:.3} s",
        put.as_secs_f64(),
        mbps(total, put),
        flush.as_secs_f64()
    );
    Ok(())
}

struct Updated {
    label: &'static str,
    secs: Duration,
    written_blocks: u64,
    written_bytes: u64,
    reads: u64,
    new_blocks: u64,
    new_bytes: u64,
    tree_blocks: u64,
    tree_bytes: u64,
    changed_leaves: u64,
    leaves: u64,
}

fn update_ids(n: u64, contiguous: bool) -> Vec<u64> {
    let k = (n / 100) as usize;
    if contiguous {
        let start = n / 2;
        (start..start + k as u64).collect()
    } else {
        let mut rng = StdRng::seed_from_u64(SEED);
        let mut ids: Vec<u64> = rand::seq::index::sample(&mut rng, n as usize, k)
            .into_iter()
            .map(|i| i as u64)
            .collect();
        ids.sort_unstable();
        ids
    }
}

async fn update<S: BlockStore>(
    store: &S,
    root: Cid,
    old: &Shape,
    label: &'static str,
    ids: &[u64],
) -> Result<Updated> {
    let edits: Vec<Edit> = ids
        .iter()
        .map(|&id| entry(id, 1.0, HLC_UPDATE).map(Edit::Put))
        .collect::<Result<_>>()?;
    let before: HashSet<Digest> = store.list().await?.into_iter().map(|b| b.digest).collect();
    let start = Instant::now();
    let (new_root, stats) = tree::apply(store, root, edits).await?;
    let secs = start.elapsed();
    let after = store.list().await?;
    let (mut new_blocks, mut new_bytes) = (0, 0);
    for b in &after {
        if !before.contains(&b.digest) {
            new_blocks += 1;
            new_bytes += b.size;
        }
    }
    let shape = walk(store, &new_root).await?;
    if shape.entries != old.entries {
        bail!(
            "update changed the entry count: {} -> {}",
            old.entries,
            shape.entries
        );
    }
    // Leaves of the new tree not in the old one.
    let mut changed_leaves = 0;
    for cid in &shape.order {
        if !old.digests.contains(&pcid::digest(cid)?) {
            let bytes = store.require(cid).await?;
            if matches!(Node::decode(&bytes)?, Node::Leaf(_)) {
                changed_leaves += 1;
            }
        }
    }
    Ok(Updated {
        label,
        secs,
        written_blocks: stats.written.blocks,
        written_bytes: stats.written.bytes,
        reads: stats.reads,
        new_blocks,
        new_bytes,
        tree_blocks: shape.blocks(),
        tree_bytes: shape.bytes(),
        changed_leaves,
        leaves: shape.leaves,
    })
}

fn report_update(store: &str, u: &Updated, k: usize) -> String {
    let line = format!(
        "{:.3} s ({:.0} edits/s); EditStats: {} blocks / {:.1} MB written, {} nodes read; new in store: {} blocks = {:.2}% of the tree's {} blocks, {:.1} MB = {:.2}% of its {:.1} MB; leaves rewritten {} of {} ({:.1}%)",
        u.secs.as_secs_f64(),
        k as f64 / u.secs.as_secs_f64(),
        u.written_blocks,
        mb(u.written_bytes),
        u.reads,
        u.new_blocks,
        100.0 * u.new_blocks as f64 / u.tree_blocks as f64,
        u.tree_blocks,
        mb(u.new_bytes),
        100.0 * u.new_bytes as f64 / u.tree_bytes as f64,
        mb(u.tree_bytes),
        u.changed_leaves,
        u.leaves,
        100.0 * u.changed_leaves as f64 / u.leaves as f64,
    );
    println!("  update {store} {}: {line}", u.label);
    line
}

/// The hardware reference: plain buffered writes of `bytes` bytes, fsync, read back, BLAKE3.
fn physical_reference(dir: &Path, bytes: u64, summary: &mut Summary) -> Result<()> {
    let chunk = vec![0xa5u8; 256 << 10];
    let path = dir.join("reference.bin");
    let t = Instant::now();
    {
        let file = std::fs::File::create(&path)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            out.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        out.flush()?;
        let write = t.elapsed();
        let file = out.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        let t2 = Instant::now();
        file.sync_all()?;
        let sync = t2.elapsed();
        println!(
            "  ref   std BufWriter write {:.1} MB: {:.3} s ({:.0} MB/s, page cache); + fsync {:.3} s ({:.0} MB/s to disk overall)",
            mb(bytes),
            write.as_secs_f64(),
            mbps(bytes, write),
            sync.as_secs_f64(),
            mbps(bytes, write + sync)
        );
        summary.add(
            "reference: buffered write (page cache)",
            Some(write),
            format!("{:.0} MB/s", mbps(bytes, write)),
            format!("{:.1} MB", mb(bytes)),
        );
        summary.add(
            "reference: write + fsync",
            Some(write + sync),
            format!("{:.0} MB/s", mbps(bytes, write + sync)),
            String::new(),
        );
    }
    let t = Instant::now();
    let mut file = std::fs::File::open(&path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0u64;
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        read += n as u64;
    }
    let read_secs = t.elapsed();
    println!(
        "  ref   read back {:.1} MB: {:.3} s ({:.0} MB/s, page cache)",
        mb(read),
        read_secs.as_secs_f64(),
        mbps(read, read_secs)
    );
    summary.add(
        "reference: read file (page cache)",
        Some(read_secs),
        format!("{:.0} MB/s", mbps(read, read_secs)),
        String::new(),
    );
    std::fs::remove_file(&path)?;

    let t = Instant::now();
    let mut left = bytes;
    let mut x = 0u8;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        x ^= blake3::hash(&chunk[..n]).as_bytes()[0];
        left -= n as u64;
    }
    let hash = t.elapsed();
    std::hint::black_box(x);
    println!(
        "  ref   blake3 {:.1} MB in 256 KiB pieces, one thread: {:.3} s ({:.0} MB/s)",
        mb(bytes),
        hash.as_secs_f64(),
        mbps(bytes, hash)
    );
    summary.add(
        "reference: blake3, one thread",
        Some(hash),
        format!("{:.0} MB/s", mbps(bytes, hash)),
        String::new(),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------

async fn run(opts: Options) -> Result<()> {
    let n = opts.entries;
    let mut mem = Mem::new();
    let mut summary = Summary::default();
    let base = opts.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base)?;
    let work = tempfile::tempdir_in(&base)?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    println!("tree_car: N = {n} entries, {DIM}-dim f32 vectors, no metadata");
    println!(
        "  cpu {cpu}, {} threads available; work dir {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        work.path().display()
    );

    // 0. Cost without storage: generating + encoding entries, and building into a null store.
    let t = Instant::now();
    let mut encoded = 0u64;
    for id in 0..n {
        encoded += entry(id, 0.0, HLC_BUILD)?.encode_checked()?.len() as u64;
    }
    let gen = t.elapsed();
    println!(
        "  gen   generate + encode {n} entries: {:.3} s ({:.0} B/entry encoded, {:.1} MB)",
        gen.as_secs_f64(),
        encoded as f64 / n as f64,
        mb(encoded)
    );
    let null = build_tree(&NullStore, n).await?;
    println!(
        "  build null store (chunk + frame + CID hash, nothing stored): {:.3} s, {:.0} entries/s, {} blocks, {:.1} MB",
        null.secs.as_secs_f64(),
        n as f64 / null.secs.as_secs_f64(),
        null.written_blocks,
        mb(null.written_bytes)
    );
    summary.add(
        "generate + encode entries (no tree)",
        Some(gen),
        format!("{:.0} entries/s", n as f64 / gen.as_secs_f64()),
        format!("{:.0} B/entry", encoded as f64 / n as f64),
    );

    // 1a. Build into the on-disk FsStore.
    let fs_dir = tempfile::tempdir_in(work.path())?;
    let fs = IrohBlockStore::open(fs_dir.path()).await?;
    mem.phase_start();
    let built = build_tree(&fs, n).await?;
    let t = Instant::now();
    fs.flush().await?;
    let flush = t.elapsed();
    let rss_build = mem.report("after FsStore build");
    let shape = walk(&fs, &built.root).await?;
    println!("  root  {}", built.root);
    print_shape("fs", &shape);
    let line = report_build("fs", &built, &shape, n);
    println!(
        "  build fs: then flush (sync_db) {:.3} s",
        flush.as_secs_f64()
    );
    let stats = fs.stats().await?;
    println!(
        "  store fs: {} blocks, {:.1} MB of blocks; directory {:.1} MB on disk",
        stats.blocks,
        mb(stats.bytes),
        mb(dir_size(fs_dir.path()))
    );
    summary.add(
        "build null store (no storage)",
        Some(null.secs),
        format!("{:.0} entries/s", n as f64 / null.secs.as_secs_f64()),
        format!(
            "{:.1} MB/s of leaf bytes",
            mbps(shape.leaf_bytes, null.secs)
        ),
    );
    summary.add(
        "**build, iroh FsStore**",
        Some(built.secs),
        format!(
            "{:.0} entries/s, {:.1} MB/s",
            n as f64 / built.secs.as_secs_f64(),
            mbps(shape.leaf_bytes, built.secs)
        ),
        format!(
            "{} blocks, {:.1} MB; + flush {:.3} s",
            built.written_blocks,
            mb(built.written_bytes),
            flush.as_secs_f64()
        ),
    );
    let _ = line;

    // 2a. Export from the FsStore.
    let car_fs = work.path().join("fs.car");
    mem.phase_start();
    let exported = export_car(&fs, &built.root, &car_fs).await?;
    let rss_export = mem.report("after FsStore export");
    report_export("fs", &exported);
    summary.add(
        "**export CAR from FsStore**",
        Some(exported.secs),
        format!("{:.0} MB/s", mbps(exported.file_bytes, exported.secs)),
        format!(
            "file {:.1} MB, {} blocks",
            mb(exported.file_bytes),
            exported.blocks
        ),
    );

    // Where the time goes, and a concurrent-read prototype.
    let blocks = export_breakdown(&fs, &shape, work.path(), &mut summary).await?;
    for window in [4usize, 16] {
        let path = work.path().join("proto.car");
        let (secs, bytes) = prototype_export(&fs, &built.root, &path, window).await?;
        let same = std::fs::read(&path)? == std::fs::read(&car_fs)?;
        println!(
            "  export fs prototype (branches first, {window} leaf reads in flight, no leaf decode): {:.3} s, {:.0} MB/s, identical file: {same}",
            secs.as_secs_f64(),
            mbps(bytes, secs)
        );
        summary.add(
            &format!("  export fs prototype, {window} reads in flight"),
            Some(secs),
            format!("{:.0} MB/s", mbps(bytes, secs)),
            format!("identical CAR: {same}"),
        );
        std::fs::remove_file(&path)?;
    }

    // 5. Import the CAR into a fresh FsStore.
    let fs2_dir = tempfile::tempdir_in(work.path())?;
    let fs2 = IrohBlockStore::open(fs2_dir.path()).await?;
    mem.phase_start();
    let imported = import_car(&fs2, &car_fs).await?;
    let rss_import = mem.report("after FsStore import");
    println!(
        "  import fs: {:.3} s, {:.0} MB/s of file, {} blocks, {:.1} MB",
        imported.secs.as_secs_f64(),
        mbps(exported.file_bytes, imported.secs),
        imported.blocks,
        mb(imported.bytes)
    );
    summary.add(
        "**import CAR into fresh FsStore**",
        Some(imported.secs),
        format!("{:.0} MB/s", mbps(exported.file_bytes, imported.secs)),
        format!("{} blocks", imported.blocks),
    );
    let again = walk(&fs2, &built.root).await?;
    if again.blocks() != shape.blocks() {
        bail!(
            "imported tree has {} blocks, not {}",
            again.blocks(),
            shape.blocks()
        );
    }
    fs2.shutdown().await?;
    drop(fs2_dir);
    import_breakdown(&shape, &blocks, work.path()).await?;
    drop(blocks);

    // 4. 1% updates on the FsStore.
    let k = (n / 100) as usize;
    let contiguous = update_ids(n, true);
    let scattered = update_ids(n, false);
    println!(
        "  update: {k} entries each; contiguous ids {}..{}, scattered ids uniform over 0..{n} (seed {SEED:#x})",
        contiguous[0],
        contiguous[k - 1] + 1
    );
    let mut updates = Vec::new();
    for (label, ids) in [("contiguous", &contiguous), ("scattered", &scattered)] {
        let u = update(&fs, built.root, &shape, label, ids).await?;
        report_update("fs", &u, k);
        summary.add(
            &format!("**update 1% {label}, FsStore**"),
            Some(u.secs),
            format!(
                "{:.2}% new blocks, {:.2}% new bytes",
                100.0 * u.new_blocks as f64 / u.tree_blocks as f64,
                100.0 * u.new_bytes as f64 / u.tree_bytes as f64
            ),
            format!(
                "{} of {} blocks, {:.1} of {:.1} MB; {} of {} leaves",
                u.new_blocks,
                u.tree_blocks,
                mb(u.new_bytes),
                mb(u.tree_bytes),
                u.changed_leaves,
                u.leaves
            ),
        );
        updates.push(u);
    }
    fs.shutdown().await?;
    drop(fs_dir);

    // 1b, 2b. The same on MemBlockStore.
    if !opts.skip_mem {
        let store = MemBlockStore::new();
        mem.phase_start();
        let built_mem = build_tree(&store, n).await?;
        let rss_mem = mem.report("after MemBlockStore build");
        if built_mem.root != built.root {
            bail!("MemBlockStore built a different root");
        }
        report_build("mem", &built_mem, &shape, n);
        summary.add(
            "build, MemBlockStore",
            Some(built_mem.secs),
            format!(
                "{:.0} entries/s, {:.1} MB/s",
                n as f64 / built_mem.secs.as_secs_f64(),
                mbps(shape.leaf_bytes, built_mem.secs)
            ),
            rss_mem,
        );
        let car_mem = work.path().join("mem.car");
        mem.phase_start();
        let e = export_car(&store, &built_mem.root, &car_mem).await?;
        mem.report("after MemBlockStore export");
        report_export("mem", &e);
        let same = std::fs::read(&car_mem)? == std::fs::read(&car_fs)?;
        println!("  export mem: identical to the FsStore's CAR: {same}");
        summary.add(
            "export CAR from MemBlockStore",
            Some(e.secs),
            format!("{:.0} MB/s", mbps(e.file_bytes, e.secs)),
            format!("identical CAR: {same}"),
        );
        std::fs::remove_file(&car_mem)?;
        let mem2 = MemBlockStore::new();
        let i = import_car(&mem2, &car_fs).await?;
        println!(
            "  import mem: {:.3} s, {:.0} MB/s of file",
            i.secs.as_secs_f64(),
            mbps(exported.file_bytes, i.secs)
        );
        summary.add(
            "import CAR into MemBlockStore",
            Some(i.secs),
            format!("{:.0} MB/s", mbps(exported.file_bytes, i.secs)),
            String::new(),
        );
        drop(mem2);
        for (label, ids) in [("contiguous", &contiguous), ("scattered", &scattered)] {
            let u = update(&store, built.root, &shape, label, ids).await?;
            report_update("mem", &u, k);
            summary.add(
                &format!("update 1% {label}, MemBlockStore"),
                Some(u.secs),
                format!(
                    "{:.2}% new blocks",
                    100.0 * u.new_blocks as f64 / u.tree_blocks as f64
                ),
                String::new(),
            );
        }
    }

    // Physical reference for the export's bytes.
    physical_reference(work.path(), exported.file_bytes, &mut summary)?;

    // Summary.
    println!();
    println!("summary (N = {n}; MB = 10^6 bytes)");
    println!();
    println!("| step | seconds | rate | notes |");
    println!("|---|---:|---|---|");
    for [a, b, c, d] in &summary.rows {
        println!("| {a} | {b} | {c} | {d} |");
    }
    println!();
    println!("- tree: {} blocks ({} leaves, {} branches, height {}), {:.1} MB; {:.0} entries per leaf on average",
        shape.blocks(), shape.leaves, shape.branches, shape.height, mb(shape.bytes()),
        shape.entries as f64 / shape.leaves as f64);
    println!("- CAR file: {:.1} MB", mb(exported.file_bytes));
    println!("- peak RSS: {rss_build}");
    println!("- peak RSS: {rss_export}");
    println!("- peak RSS: {rss_import}");
    for u in &updates {
        println!(
            "- update {}: {} new blocks / {} ({:.2}%), {:.1} / {:.1} MB ({:.2}%); EditStats.written {} blocks",
            u.label,
            u.new_blocks,
            u.tree_blocks,
            100.0 * u.new_blocks as f64 / u.tree_blocks as f64,
            mb(u.new_bytes),
            mb(u.tree_bytes),
            100.0 * u.new_bytes as f64 / u.tree_bytes as f64,
            u.written_blocks
        );
    }
    mem.note();
    println!(
        "- process VmHWM overall: {:.0} MB",
        mem.process_peak_kb as f64 / 1e3
    );
    Ok(())
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    for e in entries.flatten() {
        match e.metadata() {
            Ok(m) if m.is_dir() => total += dir_size(&e.path()),
            Ok(m) => total += m.len(),
            Err(_) => {}
        }
    }
    total
}

fn main() -> Result<()> {
    let opts = options()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(opts))
}
