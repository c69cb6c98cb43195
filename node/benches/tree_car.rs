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
//! Profiling one phase with perf (phase names at `perf_ctl`):
//!
//! ```text
//! mkfifo /tmp/ctl.fifo
//! IPVEC_BENCH_PERF_CTL=/tmp/ctl.fifo IPVEC_BENCH_PERF_PHASE=export-fs \
//!   perf record -F 999 --control=fifo:/tmp/ctl.fifo -D -1 -- target/release/deps/tree_car-<hash>
//! ```
//!
//! Every store stays on disk until the end of the run, then is deleted. On ext4 without a
//! journal, inode allocation is slow for a few minutes after many files were deleted, so leave
//! about six minutes between runs (see docs/benchmarks.md).
//!
//! It prints numbers and asserts nothing about time, only that results are correct (same root,
//! same CAR, same entry count). MB = 10^6 bytes. See docs/benchmarks.md.

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
    store::{car, dag, BlockStore, Digest, IrohBlockStore, MemBlockStore},
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

/// Profiling one phase: with `IPVEC_BENCH_PERF_CTL=<fifo>` and `IPVEC_BENCH_PERF_PHASE=<name>`,
/// writes `enable` / `disable` to the control fifo of `perf record --control=fifo:<fifo> -D -1`
/// around that phase (names: build-fs, export-fs, import-fs, update-contiguous-fs,
/// update-scattered-fs, build-mem, export-mem).
fn perf_ctl(phase: &str, on: bool) {
    let (Some(ctl), Ok(want)) = (
        std::env::var_os("IPVEC_BENCH_PERF_CTL"),
        std::env::var("IPVEC_BENCH_PERF_PHASE"),
    ) else {
        return;
    };
    if want != phase {
        return;
    }
    let cmd = if on { "enable\n" } else { "disable\n" };
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(ctl) {
        let _ = f.write_all(cmd.as_bytes());
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
// Tree shape
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Clone)]
struct Shape {
    /// Blocks in CAR export order (depth-first pre-order), each once.
    order: Vec<Cid>,
    /// Block sizes, in `order`.
    sizes: Vec<u64>,
    /// Whether each block is a leaf, in `order`.
    is_leaf: Vec<bool>,
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
        shape.sizes.push(bytes.len() as u64);
        let node = Node::decode(&bytes)?;
        shape.is_leaf.push(matches!(node, Node::Leaf(_)));
        match node {
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
    time: Timing,
    written_blocks: u64,
    written_bytes: u64,
}

async fn build_tree<S: BlockStore>(store: &S, n: u64, phase: &str) -> Result<Built> {
    let timer = Timer::start();
    let mut builder = TreeBuilder::new(store);
    perf_ctl(phase, true);
    for id in 0..n {
        builder.push(&entry(id, 0.0, HLC_BUILD)?).await?;
    }
    let (root, stats) = builder.finish().await?;
    perf_ctl(phase, false);
    Ok(Built {
        root,
        time: timer.stop(),
        written_blocks: stats.blocks,
        written_bytes: stats.bytes,
    })
}

fn report_build(label: &str, b: &Built, shape: &Shape, n: u64) {
    println!(
        "  build {label}: {:.3} s, {:.0} entries/s, {:.1} MB/s of leaf bytes; {} blocks written, {:.1} MB; {}",
        b.time.wall.as_secs_f64(),
        n as f64 / b.time.wall.as_secs_f64(),
        mbps(shape.leaf_bytes, b.time.wall),
        b.written_blocks,
        mb(b.written_bytes),
        b.time.describe()
    );
}

struct Exported {
    time: Timing,
    blocks: u64,
    block_bytes: u64,
    file_bytes: u64,
}

async fn export_car<S: BlockStore>(
    store: &S,
    root: &Cid,
    path: &Path,
    phase: &str,
) -> Result<Exported> {
    let file = tokio::fs::File::create(path).await?;
    let timer = Timer::start();
    perf_ctl(phase, true);
    let totals = car::export(store, root, file, |_| {}).await?;
    perf_ctl(phase, false);
    let time = timer.stop();
    let file_bytes = std::fs::metadata(path)?.len();
    Ok(Exported {
        time,
        blocks: totals.blocks,
        block_bytes: totals.bytes,
        file_bytes,
    })
}

fn report_export(label: &str, e: &Exported) {
    println!(
        "  export {label}: {:.3} s, {:.0} MB/s of file, {} blocks, file {:.1} MB ({:.1} MB of blocks); {}",
        e.time.wall.as_secs_f64(),
        mbps(e.file_bytes, e.time.wall),
        e.blocks,
        mb(e.file_bytes),
        mb(e.block_bytes),
        e.time.describe()
    );
}

/// The exact size of the CAR `car::export` writes for a tree.
fn car_size(root: &Cid, shape: &Shape) -> Result<u64> {
    let header = ipvec_protocol::dagcbor::encode(&ipld_core::ipld!({
        "roots": [*root], "version": 1
    }))?;
    let mut frame = Vec::new();
    ipvec_node::store::car::write_varint(&mut frame, header.len() as u64);
    let mut total = (frame.len() + header.len()) as u64;
    for (cid, size) in shape.order.iter().zip(&shape.sizes) {
        let section = cid.to_bytes().len() as u64 + size;
        frame.clear();
        ipvec_node::store::car::write_varint(&mut frame, section);
        total += frame.len() as u64 + section;
    }
    Ok(total)
}

/// Where the FsStore export's time goes: each step of `car::export` timed alone over the same
/// blocks in the same order. Returns the blocks.
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
    let count = hashes.len() as f64;

    // 1. status() alone: one actor round trip per block.
    let timer = Timer::start();
    for h in &hashes {
        blobs.status(*h).await?;
    }
    let status = timer.stop();

    // 2. get_bytes() alone: export_bao, validated against the outboard, streamed as 16 KiB
    //    chunk groups through a channel, concatenated.
    let timer = Timer::start();
    let mut got = 0u64;
    for h in &hashes {
        got += blobs.get_bytes(*h).await?.len() as u64;
    }
    let get_bytes = timer.stop();

    // 3. get_raw (status + get_bytes), what BlockStore::get calls; each block dropped at once,
    //    as in the export.
    let timer = Timer::start();
    for h in &hashes {
        store
            .get_raw(*h.as_bytes())
            .await?
            .context("block vanished")?;
    }
    let get_raw = timer.stop();

    // 4. The same, keeping every block (fresh memory for all of them), for the steps below.
    let timer = Timer::start();
    let mut blocks = Vec::with_capacity(hashes.len());
    for h in &hashes {
        blocks.push(
            store
                .get_raw(*h.as_bytes())
                .await?
                .context("block vanished")?,
        );
    }
    let get_raw_kept = timer.stop();

    // 5. Verify: BLAKE3 of every block, as BlockStore::get does.
    let timer = Timer::start();
    let mut x = 0u8;
    for b in &blocks {
        x ^= blake3::hash(b).as_bytes()[0];
    }
    let verify = timer.stop();
    std::hint::black_box(x);

    // 6. What link finding cost before the scanner: decode every block into Ipld.
    let timer = Timer::start();
    let mut links = Vec::with_capacity(blocks.len());
    for b in &blocks {
        let value: ipvec_protocol::Ipld = ipvec_protocol::dagcbor::decode_trusted(b)?;
        links.push(ipvec_protocol::dagcbor::links(&value));
    }
    let decode = timer.stop();

    // 7. dag::block_links as export runs it: a scan of the encoding, no values built.
    let timer = Timer::start();
    let mut scanned = Vec::with_capacity(blocks.len());
    for (cid, b) in shape.order.iter().zip(&blocks) {
        scanned.push(dag::block_links(cid, b)?);
    }
    let scan = timer.stop();
    let scan_agrees = scanned == links;

    // 8. Framing + writing from memory, through the same 1 MiB tokio BufWriter on a tokio File.
    sync_disks();
    let path = dir.join("breakdown.car");
    let timer = Timer::start();
    let file = tokio::fs::File::create(&path).await?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut frame = Vec::with_capacity(10);
    for (cid, b) in shape.order.iter().zip(&blocks) {
        let cid_bytes = cid.to_bytes();
        frame.clear();
        ipvec_node::store::car::write_varint(&mut frame, (cid_bytes.len() + b.len()) as u64);
        out.write_all(&frame).await?;
        out.write_all(&cid_bytes).await?;
        out.write_all(b).await?;
    }
    out.flush().await?;
    let write = timer.stop();
    std::fs::remove_file(&path)?;

    let per = |t: &Timing| t.wall.as_secs_f64() * 1e6 / count;
    let line = |name: &str, t: &Timing, extra: String| {
        println!(
            "    {name:<44} {:>7.3} s  cpu {:>5.2} s  {extra}",
            t.wall.as_secs_f64(),
            t.user + t.sys
        );
    };
    println!(
        "  export fs breakdown over {} blocks ({:.1} MB), each step alone:",
        hashes.len(),
        mb(got)
    );
    line(
        "store.get_raw = status + get_bytes",
        &get_raw,
        format!(
            "{:.0} µs/block, {:.0} MB/s",
            per(&get_raw),
            mbps(got, get_raw.wall)
        ),
    );
    line(
        "  blobs().status() alone",
        &status,
        format!("{:.0} µs/block", per(&status)),
    );
    line(
        "  blobs().get_bytes() alone",
        &get_bytes,
        format!(
            "{:.0} µs/block, {:.0} MB/s",
            per(&get_bytes),
            mbps(got, get_bytes.wall)
        ),
    );
    line(
        "  get_raw keeping every block (fresh memory)",
        &get_raw_kept,
        format!("{:.0} MB/s", mbps(got, get_raw_kept.wall)),
    );
    line(
        "blake3 verify (BlockStore::get)",
        &verify,
        format!("{:.0} MB/s", mbps(got, verify.wall)),
    );
    line(
        "links by decoding to Ipld (before)",
        &decode,
        format!("{:.0} MB/s", mbps(got, decode.wall)),
    );
    line(
        "dag::block_links (scan, no Ipld)",
        &scan,
        format!(
            "{:.0} MB/s, same links: {scan_agrees}",
            mbps(got, scan.wall)
        ),
    );
    line(
        "frame + write (tokio BufWriter, new file)",
        &write,
        format!("{:.0} MB/s", mbps(got, write.wall)),
    );
    let sum = get_raw.wall + verify.wall + scan.wall + write.wall;
    println!(
        "    {:<44} {:>7.3} s",
        "sum (get_raw + verify + links + write)",
        sum.as_secs_f64()
    );
    summary.add_cpu(
        "· export step: store reads (get_raw)",
        Some(get_raw.wall),
        Some(&get_raw),
        format!("{:.0} MB/s", mbps(got, get_raw.wall)),
        format!(
            "status {:.3} s + get_bytes {:.3} s",
            status.wall.as_secs_f64(),
            get_bytes.wall.as_secs_f64()
        ),
    );
    summary.add_cpu(
        "· export step: blake3 verify",
        Some(verify.wall),
        Some(&verify),
        format!("{:.0} MB/s", mbps(got, verify.wall)),
        String::new(),
    );
    summary.add_cpu(
        "· export step: dag::block_links (scan)",
        Some(scan.wall),
        Some(&scan),
        format!("{:.0} MB/s", mbps(got, scan.wall)),
        format!(
            "decoding to Ipld instead: {:.3} s; same links: {scan_agrees}",
            decode.wall.as_secs_f64()
        ),
    );
    summary.add_cpu(
        "· export step: frame + write",
        Some(write.wall),
        Some(&write),
        format!("{:.0} MB/s", mbps(got, write.wall)),
        String::new(),
    );
    Ok(blocks)
}

struct Imported {
    time: Timing,
    blocks: u64,
    bytes: u64,
}

async fn import_car<S: BlockStore>(store: &S, path: &Path, phase: &str) -> Result<Imported> {
    let file = tokio::fs::File::open(path).await?;
    let timer = Timer::start();
    perf_ctl(phase, true);
    let summary = car::import(store, file, |_| {}).await?;
    perf_ctl(phase, false);
    Ok(Imported {
        time: timer.stop(),
        blocks: summary.totals.blocks,
        bytes: summary.totals.bytes,
    })
}

/// Where the import's time goes: its per-block steps timed alone over blocks held in memory.
async fn import_breakdown(
    shape: &Shape,
    blocks: &[Bytes],
    dir: &Path,
    summary: &mut Summary,
) -> Result<()> {
    let total: u64 = blocks.iter().map(|b| b.len() as u64).sum();
    let timer = Timer::start();
    for (cid, b) in shape.order.iter().zip(blocks) {
        pcid::verify_block(cid, b)?;
    }
    let verify = timer.stop();
    let timer = Timer::start();
    for b in blocks {
        std::hint::black_box(ipvec_protocol::dagcbor::decode_ipld(b)?);
    }
    let decode = timer.stop();
    let store = IrohBlockStore::open(&dir.join("put-sequential")).await?;
    sync_disks();
    let timer = Timer::start();
    for (cid, b) in shape.order.iter().zip(blocks) {
        store.put_raw(pcid::digest(cid)?, b.clone()).await?;
    }
    let put = timer.stop();
    store.shutdown().await?;
    // The same puts, 4 in flight (a write-behind queue in import or in the tree builder).
    let store = IrohBlockStore::open(&dir.join("put-concurrent")).await?;
    sync_disks();
    let timer = Timer::start();
    let mut puts = futures::stream::iter(shape.order.iter().zip(blocks).map(|(cid, b)| {
        let store = store.clone();
        let b = b.clone();
        let digest = pcid::digest(cid);
        async move { store.put_raw(digest?, b).await }
    }))
    .buffer_unordered(4);
    while let Some(r) = puts.next().await {
        r?;
    }
    let put4 = timer.stop();
    store.shutdown().await?;
    println!(
        "  import breakdown over {} blocks ({:.1} MB), each step alone:",
        blocks.len(),
        mb(total)
    );
    for (name, t) in [
        ("verify_block (blake3)", &verify),
        ("decode_ipld (decode + re-encode + compare)", &decode),
        ("FsStore put_raw (has + add_bytes)", &put),
        ("  the same, 4 puts in flight", &put4),
    ] {
        println!(
            "    {name:<44} {:>7.3} s  cpu {:>5.2} s  {:.0} MB/s",
            t.wall.as_secs_f64(),
            t.user + t.sys,
            mbps(total, t.wall)
        );
    }
    summary.add_cpu(
        "· import step: decode_ipld (canonical check)",
        Some(decode.wall),
        Some(&decode),
        format!("{:.0} MB/s", mbps(total, decode.wall)),
        String::new(),
    );
    summary.add_cpu(
        "· import step: FsStore put_raw",
        Some(put.wall),
        Some(&put),
        format!("{:.0} MB/s", mbps(total, put.wall)),
        format!("4 puts in flight: {:.3} s", put4.wall.as_secs_f64()),
    );
    Ok(())
}

struct Updated {
    label: &'static str,
    time: Timing,
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

impl Updated {
    fn block_pct(&self) -> f64 {
        100.0 * self.new_blocks as f64 / self.tree_blocks as f64
    }
    fn byte_pct(&self) -> f64 {
        100.0 * self.new_bytes as f64 / self.tree_bytes as f64
    }
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
    phase: &str,
) -> Result<Updated> {
    let edits: Vec<Edit> = ids
        .iter()
        .map(|&id| entry(id, 1.0, HLC_UPDATE).map(Edit::Put))
        .collect::<Result<_>>()?;
    let before: HashSet<Digest> = store.list().await?.into_iter().map(|b| b.digest).collect();
    let timer = Timer::start();
    perf_ctl(phase, true);
    let (new_root, stats) = tree::apply(store, root, edits).await?;
    perf_ctl(phase, false);
    let time = timer.stop();
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
    // Leaves of the new tree that the old tree does not have.
    let mut changed_leaves = 0;
    for (cid, is_leaf) in shape.order.iter().zip(&shape.is_leaf) {
        if *is_leaf && !old.digests.contains(&pcid::digest(cid)?) {
            changed_leaves += 1;
        }
    }
    Ok(Updated {
        label,
        time,
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

fn report_update(store: &str, u: &Updated, k: usize) {
    println!(
        "  update {store} {}: {:.3} s ({:.0} edits/s; {}); EditStats: {} blocks / {:.1} MB written, {} nodes read; new in store: {} blocks = {:.2}% of the tree's {} blocks, {:.1} MB = {:.2}% of its {:.1} MB; leaves rewritten {} of {} ({:.1}%)",
        u.label,
        u.time.wall.as_secs_f64(),
        k as f64 / u.time.wall.as_secs_f64(),
        u.time.describe(),
        u.written_blocks,
        mb(u.written_bytes),
        u.reads,
        u.new_blocks,
        u.block_pct(),
        u.tree_blocks,
        mb(u.new_bytes),
        u.byte_pct(),
        mb(u.tree_bytes),
        u.changed_leaves,
        u.leaves,
        100.0 * u.changed_leaves as f64 / u.leaves as f64,
    );
}

/// The hardware reference: plain buffered writes of `bytes` bytes to a new file, fsync, read
/// back, and BLAKE3 of as many bytes.
fn physical_reference(dir: &Path, bytes: u64, summary: &mut Summary) -> Result<()> {
    let chunk = vec![0xa5u8; 256 << 10];
    let path = dir.join("reference.bin");
    sync_disks();
    let timer = Timer::start();
    let file = std::fs::File::create(&path)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        out.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    let write = timer.stop();
    let file = out.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    let timer = Timer::start();
    file.sync_all()?;
    let sync = timer.stop();
    drop(file);
    println!(
        "  ref   std BufWriter write {:.1} MB to a new file: {:.3} s ({:.0} MB/s, page cache; {}); then fsync {:.3} s ({:.0} MB/s to disk overall)",
        mb(bytes),
        write.wall.as_secs_f64(),
        mbps(bytes, write.wall),
        write.describe(),
        sync.wall.as_secs_f64(),
        mbps(bytes, write.wall + sync.wall)
    );
    summary.add_cpu(
        "reference: buffered write, new file (page cache)",
        Some(write.wall),
        Some(&write),
        format!("{:.0} MB/s", mbps(bytes, write.wall)),
        format!("{:.1} MB", mb(bytes)),
    );
    summary.add(
        "reference: write + fsync",
        Some(write.wall + sync.wall),
        format!("{:.0} MB/s", mbps(bytes, write.wall + sync.wall)),
        String::new(),
    );

    let timer = Timer::start();
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
    let read_time = timer.stop();
    println!(
        "  ref   read it back: {:.3} s ({:.0} MB/s, page cache)",
        read_time.wall.as_secs_f64(),
        mbps(read, read_time.wall)
    );
    summary.add(
        "reference: read file (page cache)",
        Some(read_time.wall),
        format!("{:.0} MB/s", mbps(read, read_time.wall)),
        String::new(),
    );

    // Overwriting the same file in place: page cache pages already allocated.
    let timer = Timer::start();
    let file = std::fs::OpenOptions::new().write(true).open(&path)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        out.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    let overwrite = timer.stop();
    drop(out);
    println!(
        "  ref   overwrite it in place (no new pages): {:.3} s ({:.0} MB/s)",
        overwrite.wall.as_secs_f64(),
        mbps(bytes, overwrite.wall)
    );
    summary.add(
        "reference: overwrite in place (no new pages)",
        Some(overwrite.wall),
        format!("{:.0} MB/s", mbps(bytes, overwrite.wall)),
        String::new(),
    );
    std::fs::remove_file(&path)?;

    let timer = Timer::start();
    let mut left = bytes;
    let mut x = 0u8;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        x ^= blake3::hash(&chunk[..n]).as_bytes()[0];
        left -= n as u64;
    }
    let hash = timer.stop();
    std::hint::black_box(x);
    println!(
        "  ref   blake3 {:.1} MB in 256 KiB pieces, one thread: {:.3} s ({:.0} MB/s)",
        mb(bytes),
        hash.wall.as_secs_f64(),
        mbps(bytes, hash.wall)
    );
    summary.add(
        "reference: blake3, one thread",
        Some(hash.wall),
        format!("{:.0} MB/s", mbps(bytes, hash.wall)),
        String::new(),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------

const EXPORT_RUNS: usize = 3;

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
    println!("tree_car: N = {n} entries, {DIM}-dim f32 vectors, no metadata; MB = 10^6 bytes");
    println!(
        "  cpu {cpu}, {} threads available; work dir {}; load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        work.path().display(),
        loadavg()
    );

    // 0. The cost of the input alone: generating + encoding entries (MemBlockStore's build, below,
    //    adds the tree's own cost with next to no storage cost).
    let timer = Timer::start();
    let mut encoded = 0u64;
    for id in 0..n {
        encoded += entry(id, 0.0, HLC_BUILD)?.encode_checked()?.len() as u64;
    }
    let gen = timer.stop();
    println!(
        "  gen   generate + encode {n} entries (no tree): {:.3} s ({:.0} B/entry encoded, {:.1} MB); {}",
        gen.wall.as_secs_f64(),
        encoded as f64 / n as f64,
        mb(encoded),
        gen.describe()
    );
    summary.add_cpu(
        "generate + encode entries (no tree)",
        Some(gen.wall),
        Some(&gen),
        format!("{:.0} entries/s", n as f64 / gen.wall.as_secs_f64()),
        format!("{:.0} B/entry", encoded as f64 / n as f64),
    );

    // 1a. Build into the on-disk FsStore.
    let fs_dir = tempfile::tempdir_in(work.path())?;
    let fs = IrohBlockStore::open(fs_dir.path()).await?;
    sync_disks();
    mem.phase_start();
    let built = build_tree(&fs, n, "build-fs").await?;
    let timer = Timer::start();
    fs.flush().await?;
    let flush = timer.stop();
    let rss_build = mem.report("FsStore build");
    let shape = walk(&fs, &built.root).await?;
    println!("  root  {}", built.root);
    print_shape("fs", &shape);
    report_build("fs", &built, &shape, n);
    println!(
        "  build fs: then flush (sync_db) {:.3} s",
        flush.wall.as_secs_f64()
    );
    let stats = fs.stats().await?;
    println!(
        "  store fs: {} blocks, {:.1} MB of blocks; directory {:.1} MB on disk",
        stats.blocks,
        mb(stats.bytes),
        mb(dir_size(fs_dir.path()))
    );
    summary.add_cpu(
        "**build, iroh FsStore**",
        Some(built.time.wall),
        Some(&built.time),
        format!(
            "{:.0} entries/s, {:.1} MB/s",
            n as f64 / built.time.wall.as_secs_f64(),
            mbps(shape.leaf_bytes, built.time.wall)
        ),
        format!(
            "{} blocks, {:.1} MB; + flush {:.3} s",
            built.written_blocks,
            mb(built.written_bytes),
            flush.wall.as_secs_f64()
        ),
    );

    // The physical reference, right before the export it is for.
    let car_bytes = car_size(&built.root, &shape)?;
    physical_reference(work.path(), car_bytes, &mut summary)?;

    // 2a. Export from the FsStore, a few times.
    let car_fs = work.path().join("fs.car");
    let mut export_walls = Vec::new();
    let mut rss_export = String::new();
    let mut exported = None;
    for run in 0..EXPORT_RUNS {
        if car_fs.exists() {
            std::fs::remove_file(&car_fs)?;
        }
        sync_disks();
        mem.phase_start();
        let e = export_car(&fs, &built.root, &car_fs, "export-fs").await?;
        if run == 0 {
            rss_export = mem.report("FsStore export");
            if e.file_bytes != car_bytes {
                bail!("CAR is {} bytes, expected {car_bytes}", e.file_bytes);
            }
        }
        report_export(&format!("fs (run {})", run + 1), &e);
        export_walls.push(e.time.wall);
        summary.add_cpu(
            &format!("**export CAR from FsStore**, run {}", run + 1),
            Some(e.time.wall),
            Some(&e.time),
            format!("{:.0} MB/s", mbps(e.file_bytes, e.time.wall)),
            format!("file {:.1} MB, {} blocks", mb(e.file_bytes), e.blocks),
        );
        exported = Some(e);
    }
    let exported = exported.context("no export ran")?;
    export_walls.sort();
    println!(
        "  export fs: best {:.3} s, median {:.3} s of {EXPORT_RUNS}",
        export_walls[0].as_secs_f64(),
        export_walls[EXPORT_RUNS / 2].as_secs_f64()
    );

    // 5. Import the CAR into a fresh FsStore.
    let fs2_dir = tempfile::tempdir_in(work.path())?;
    let fs2 = IrohBlockStore::open(fs2_dir.path()).await?;
    sync_disks();
    mem.phase_start();
    let imported = import_car(&fs2, &car_fs, "import-fs").await?;
    let rss_import = mem.report("FsStore import");
    println!(
        "  import fs: {:.3} s, {:.0} MB/s of file, {} blocks, {:.1} MB; {}",
        imported.time.wall.as_secs_f64(),
        mbps(exported.file_bytes, imported.time.wall),
        imported.blocks,
        mb(imported.bytes),
        imported.time.describe()
    );
    summary.add_cpu(
        "**import CAR into fresh FsStore**",
        Some(imported.time.wall),
        Some(&imported.time),
        format!("{:.0} MB/s", mbps(exported.file_bytes, imported.time.wall)),
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

    // Where the export's and import's time goes.
    let blocks = export_breakdown(&fs, &shape, work.path(), &mut summary).await?;
    import_breakdown(&shape, &blocks, work.path(), &mut summary).await?;
    drop(blocks);

    // 4. 1% updates on the FsStore, each from the original root.
    let k = (n / 100) as usize;
    let contiguous = update_ids(n, true);
    let scattered = update_ids(n, false);
    println!(
        "  update: {k} entries each (new vector, later hlc), from the original root; contiguous ids {}..{}, scattered ids uniform over 0..{n} (seed {SEED:#x})",
        contiguous[0],
        contiguous[k - 1] + 1
    );
    let mut updates = Vec::new();
    for (label, ids) in [("contiguous", &contiguous), ("scattered", &scattered)] {
        let u = update(
            &fs,
            built.root,
            &shape,
            label,
            ids,
            &format!("update-{label}-fs"),
        )
        .await?;
        report_update("fs", &u, k);
        summary.add_cpu(
            &format!("**update 1% {label}, FsStore**"),
            Some(u.time.wall),
            Some(&u.time),
            format!(
                "{:.2}% new blocks, {:.2}% new bytes",
                u.block_pct(),
                u.byte_pct()
            ),
            format!(
                "{} of {} blocks, {:.1} of {:.1} MB new; {} of {} leaves rewritten",
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

    // 1b, 2b. The same on MemBlockStore.
    if !opts.skip_mem {
        let store = MemBlockStore::new();
        mem.phase_start();
        let built_mem = build_tree(&store, n, "build-mem").await?;
        let rss_mem = mem.report("MemBlockStore build");
        if built_mem.root != built.root {
            bail!("MemBlockStore built a different root");
        }
        report_build("mem", &built_mem, &shape, n);
        summary.add_cpu(
            "build, MemBlockStore",
            Some(built_mem.time.wall),
            Some(&built_mem.time),
            format!(
                "{:.0} entries/s, {:.1} MB/s",
                n as f64 / built_mem.time.wall.as_secs_f64(),
                mbps(shape.leaf_bytes, built_mem.time.wall)
            ),
            rss_mem,
        );
        let car_mem = work.path().join("mem.car");
        sync_disks();
        mem.phase_start();
        let e = export_car(&store, &built_mem.root, &car_mem, "export-mem").await?;
        mem.report("MemBlockStore export");
        report_export("mem", &e);
        let same = same_file(&car_mem, &car_fs)?;
        println!("  export mem: identical to the FsStore's CAR: {same}");
        summary.add_cpu(
            "export CAR from MemBlockStore",
            Some(e.time.wall),
            Some(&e.time),
            format!("{:.0} MB/s", mbps(e.file_bytes, e.time.wall)),
            format!("identical CAR: {same}"),
        );
        std::fs::remove_file(&car_mem)?;
        let mem2 = MemBlockStore::new();
        let i = import_car(&mem2, &car_fs, "import-mem").await?;
        println!(
            "  import mem: {:.3} s, {:.0} MB/s of file; {}",
            i.time.wall.as_secs_f64(),
            mbps(exported.file_bytes, i.time.wall),
            i.time.describe()
        );
        summary.add_cpu(
            "import CAR into MemBlockStore",
            Some(i.time.wall),
            Some(&i.time),
            format!("{:.0} MB/s", mbps(exported.file_bytes, i.time.wall)),
            String::new(),
        );
        drop(mem2);
        for (label, ids) in [("contiguous", &contiguous), ("scattered", &scattered)] {
            let u = update(
                &store,
                built.root,
                &shape,
                label,
                ids,
                &format!("update-{label}-mem"),
            )
            .await?;
            report_update("mem", &u, k);
            summary.add_cpu(
                &format!("update 1% {label}, MemBlockStore"),
                Some(u.time.wall),
                Some(&u.time),
                format!("{:.2}% new blocks", u.block_pct()),
                String::new(),
            );
        }
    }

    // Summary.
    println!();
    println!(
        "summary (N = {n}; MB = 10^6 bytes; cpu = user + sys seconds over all threads; load average at end {})",
        loadavg()
    );
    println!();
    println!("| step | wall s | cpu s | rate | notes |");
    println!("|---|---:|---:|---|---|");
    for [a, b, c, d, e] in &summary.rows {
        println!("| {a} | {b} | {c} | {d} | {e} |");
    }
    println!();
    println!(
        "- tree: {} blocks ({} leaves, {} branches, height {}), {:.1} MB; {:.0} entries per leaf on average (min {}, max {})",
        shape.blocks(),
        shape.leaves,
        shape.branches,
        shape.height,
        mb(shape.bytes()),
        shape.entries as f64 / shape.leaves as f64,
        shape.min_leaf_entries,
        shape.max_leaf_entries
    );
    println!("- CAR file: {:.1} MB", mb(exported.file_bytes));
    println!(
        "- export from FsStore: best {:.3} s, median {:.3} s of {EXPORT_RUNS} (target 1.5 s)",
        export_walls[0].as_secs_f64(),
        export_walls[EXPORT_RUNS / 2].as_secs_f64()
    );
    println!("- peak RSS, {rss_build}");
    println!("- peak RSS, {rss_export}");
    println!("- peak RSS, {rss_import}");
    for u in &updates {
        println!(
            "- update {}: {} new blocks of {} ({:.2}%), {:.1} of {:.1} MB ({:.2}%); EditStats.written {} blocks, {:.1} MB",
            u.label,
            u.new_blocks,
            u.tree_blocks,
            u.block_pct(),
            mb(u.new_bytes),
            mb(u.tree_bytes),
            u.byte_pct(),
            u.written_blocks,
            mb(u.written_bytes)
        );
    }
    mem.note();
    println!(
        "- process VmHWM overall: {:.0} MB",
        mem.process_peak_kb as f64 / 1e3
    );
    Ok(())
}

/// Whether two files hold the same bytes, read in 1 MiB pieces.
fn same_file(a: &Path, b: &Path) -> Result<bool> {
    use std::io::Read;
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
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
