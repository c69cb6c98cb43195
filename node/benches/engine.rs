//! Engine benchmark on Fashion-MNIST (60,000 × 784, L2): ingest, recall/QPS sweep, filtered
//! search and memory per quantization, for an ipvec collection (with its graph over f32 and
//! over one-byte codes), the raw usearch wrapper it is built on, and faiss / hnswlib baselines
//! (through node/benches/baselines.py). `--dataset tokens` runs ingest and the sweep on
//! all-MiniLM-L6-v2's token embeddings (28,523 + 1,000 × 384, cosine) instead.
//!
//! ```text
//! apt-get install dataset-fashion-mnist          # the data
//! pip install faiss-cpu hnswlib numpy            # the baselines (optional)
//! cargo bench -p ipvec-node --bench engine
//! cargo bench -p ipvec-node --bench engine -- --queries 200
//! ```
//!
//! Options: `--dataset fashion-mnist|tokens`, `--queries N` (queries, default 1,000),
//! `--dir PATH` (where the temporary stores go; default the system temp dir),
//! `--skip-baselines`, `--skip-memory`, `--skip-usearch-kernel` (no second raw index with
//! usearch's own f32 kernel), `--overhead ROUNDS` (only a collection in f32 and one on codes
//! against their own graphs, searched in turns `ROUNDS` times), `--shards N` (the ipvec
//! collection's shard count, default 1: with more, queries search the one index of every
//! shard, and a section measures searches of some of the shards).
//! Everything runs on one thread with M = 16 and ef_construction = 128. It prints numbers and
//! asserts nothing about time. MB = 10^6 bytes. See docs/benchmarks.md.

#[path = "engine/baselines.rs"]
mod baselines;
#[path = "engine/data.rs"]
mod data;
#[path = "engine/engines.rs"]
mod engines;
#[path = "engine/memory.rs"]
mod memory;
#[path = "engine/overhead.rs"]
mod overhead;
#[path = "engine/report.rs"]
mod report;
#[path = "engine/subset.rs"]
mod subset;
#[path = "engine/util.rs"]
mod util;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ipvec_node::{
    collection::Filter,
    index::{HnswIndex, HnswRuntime},
};
use ipvec_protocol::manifest::Quantization;

use crate::{
    data::{Dataset, Exact, Truth},
    engines::{Coll, BATCH},
    report::{FilterRow, IngestRow, Quality, SearchRow},
    util::{Stopwatch, Timing},
};

/// Counts the Rust heap for the memory children's phase tables.
#[global_allocator]
static ALLOC: util::CountingAlloc = util::CountingAlloc::new();

/// The ef sweep.
pub const EFS: [usize; 6] = [16, 32, 64, 128, 256, 512];
/// The ef values of the filtered searches.
const FILTER_EFS: [usize; 4] = [16, 32, 64, 128];
/// Whether the raw index reserves room for every point before the load. ipvec's collection
/// grows the index by doubling as points arrive; the raw run does the same, so the two differ
/// only by what ipvec adds.
const RAW_RESERVES: bool = false;

struct Options {
    queries: usize,
    dir: Option<PathBuf>,
    memory_child: Option<String>,
    skip_baselines: bool,
    skip_memory: bool,
    skip_own_kernel: bool,
    /// `--skip-cores`: no collections written with graph inserts on every core.
    skip_cores: bool,
    shards: u32,
    /// `--dataset tokens`: all-MiniLM-L6-v2's token embeddings (cosine) instead of
    /// Fashion-MNIST (L2).
    tokens: bool,
    /// `--overhead ROUNDS`: only the collections against their own graphs ([`overhead`]).
    overhead: Option<usize>,
}

fn options() -> Result<Options> {
    let mut opts = Options {
        queries: 1_000,
        dir: None,
        memory_child: None,
        skip_baselines: false,
        skip_memory: false,
        skip_own_kernel: false,
        skip_cores: false,
        shards: 1,
        tokens: false,
        overhead: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--queries" | "-q" => {
                let v = args.next().context("--queries needs a value")?;
                opts.queries = v.replace(['_', ','], "").parse().context("--queries N")?;
            }
            "--dir" => opts.dir = Some(args.next().context("--dir needs a path")?.into()),
            "--memory-child" => opts.memory_child = args.next(),
            "--skip-baselines" => opts.skip_baselines = true,
            "--skip-memory" => opts.skip_memory = true,
            "--skip-usearch-kernel" => opts.skip_own_kernel = true,
            "--skip-cores" => opts.skip_cores = true,
            "--dataset" => match args.next().as_deref() {
                Some("fashion-mnist") => opts.tokens = false,
                Some("tokens") => opts.tokens = true,
                _ => bail!("--dataset is fashion-mnist (L2) or tokens (cosine)"),
            },
            "--overhead" => {
                let v = args.next().context("--overhead needs a number of rounds")?;
                let rounds: usize = v.parse().context("--overhead ROUNDS")?;
                if rounds == 0 {
                    bail!("--overhead needs at least one round");
                }
                opts.overhead = Some(rounds);
            }
            "--shards" => {
                let v = args.next().context("--shards needs a value")?;
                opts.shards = v.parse().context("--shards N")?;
            }
            // cargo bench passes `--bench`; libtest-style filters are ignored too.
            _ => {}
        }
    }
    Ok(opts)
}

fn main() -> Result<()> {
    let opts = options()?;
    let dir = opts.dir.clone().unwrap_or_else(std::env::temp_dir);
    if let Some(kind) = &opts.memory_child {
        return memory::child(kind, opts.queries, &dir);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(&opts, &dir))
}

async fn run(opts: &Options, dir: &Path) -> Result<()> {
    let watch = Stopwatch::start();
    let data = match opts.tokens {
        true => data::load_tokens(opts.queries)?,
        false => data::load(opts.queries)?,
    };
    report::machine(&data, opts.queries);
    println!(
        "data: {} base × {} dims, {} queries (loaded in {:.1} s)",
        data.len(),
        data.dim,
        data.queries_len(),
        watch.stop().secs()
    );
    if let Some(rounds) = opts.overhead {
        let work = tempfile::Builder::new()
            .prefix("ipvec-engine-overhead")
            .tempdir_in(dir)?;
        return overhead::run(&data, work.path(), rounds).await;
    }
    // Filters and the memory children need Fashion-MNIST's labels and pixels.
    let filters = match data.has_labels() {
        true => data::filter_cases(),
        false => Vec::new(),
    };
    let watch = Stopwatch::start();
    let truths = data::ground_truth(&data, data.measure, &filters);
    println!(
        "ground truth: exact top-{} by brute force for {} queries, unfiltered and {} filters, in {:.1} s; {} queries have a tie at rank {}",
        data::K,
        data.queries_len(),
        filters.len(),
        watch.stop().secs(),
        truths[0].ties,
        data::K
    );
    let work = tempfile::Builder::new()
        .prefix("ipvec-engine-bench")
        .tempdir_in(dir)?;
    println!("work dir: {}\n", work.path().display());
    let exact = Exact::new(&data, data.measure);
    let queries = data.queries_f32();

    // Ingest: raw first, so that the diagnostic passes between ipvec's upserts and its
    // checkpoint can compare both indexes at the same moment.
    let (raw, raw_timing) = ingest_raw(&data, HnswRuntime::default())?;
    let (store, mut collection, mut ingest, diagnostic) =
        ingest_ipvec(&data, work.path(), &queries, &raw, opts.shards).await?;
    ingest.push(IngestRow::new(
        "usearch raw (HnswIndex::upsert)",
        raw_timing,
        data.len(),
    ));

    let kernel = engines::kernel_name(&raw);
    // The same raw index with usearch's own f32 kernel, when ipvec's replaced it.
    let own_kernel = match opts.skip_own_kernel || raw.kernel().is_none() {
        true => None,
        false => {
            let runtime = HnswRuntime {
                f32_kernel: false,
                ..HnswRuntime::default()
            };
            let (index, timing) = ingest_raw(&data, runtime)?;
            ingest.push(IngestRow::new(
                "usearch raw, usearch's kernel",
                timing,
                data.len(),
            ));
            Some(index)
        }
    };

    // Search.
    let mut search = sweep(
        &collection,
        &raw,
        own_kernel.as_ref(),
        &queries,
        &exact,
        &truths[0],
    )
    .await?;
    drop(own_kernel);
    // The same collection with its graph over one-byte codes (`hnsw.codes`).
    let codes_dir = work.path().join("ipvec-codes");
    let (codes_store, codes) = ingest_codes(&data, &codes_dir, &mut ingest).await?;
    println!("ingest: raw usearch HnswIndex on codes …");
    let mut raw_codes = engines::raw_index_on_codes(data.dim, data.measure)?;
    let timing = engines::upsert_raw(&mut raw_codes, &data, RAW_RESERVES)?;
    ingest.push(IngestRow::new("usearch raw on codes", timing, data.len()));
    sweep_codes(
        (&codes, &mut raw_codes),
        &queries,
        &exact,
        &truths[0],
        &mut search,
    )
    .await?;
    drop((codes, raw_codes));
    codes_store.shutdown().await?;
    std::fs::remove_dir_all(&codes_dir)?;
    let on_cores = match opts.skip_cores {
        true => Vec::new(),
        false => {
            ingest_on_cores(
                &data,
                work.path(),
                &queries,
                &exact,
                &truths[0],
                &mut ingest,
            )
            .await?
        }
    };
    let (filtered, filter_costs) = match data.has_labels() {
        true => (
            filtered(&mut collection, &raw, &data, &queries, &exact, &truths[1..]).await?,
            filter_eval_costs(&data)?,
        ),
        false => (Vec::new(), Vec::new()),
    };
    if opts.shards > 1 {
        subset::run(&collection, &data, &queries, opts.shards).await?;
    }
    let watch = Stopwatch::start();
    collection.close().await?;
    let close = watch.stop();
    store.shutdown().await?;
    drop(raw);

    // Baselines and memory, in child processes.
    let python = match opts.skip_baselines {
        true => Vec::new(),
        false => run_baselines(
            work.path(),
            &data,
            &exact,
            &truths[0],
            &mut ingest,
            &mut search,
        )?,
    };
    let memory = match opts.skip_memory || !data.has_labels() {
        true => Vec::new(),
        false => run_memory(opts.queries, work.path())?,
    };

    report::ingest(&ingest, data.len());
    println!(
        "- ipvec close() after the run (saves the HNSW index cache): {:.2} s",
        close.secs()
    );
    report::on_cores(&ingest, &on_cores, &search);
    report::search(&search, &kernel);
    report::search_goal(&search);
    report::search_diagnostics(&search, &diagnostic);
    if !filtered.is_empty() {
        report::filtered(&filtered, &filter_costs, &search);
    }
    if !memory.is_empty() {
        report::memory(&memory, &python);
    }
    Ok(())
}

/// Upserts every point into a new collection in batches, then checkpoints. In between, the
/// diagnostic: ipvec and raw search passes at ef = 64 while every point is only in ipvec's
/// write-ahead log (hits then need no shard-tree lookup).
async fn ingest_ipvec(
    data: &Dataset,
    dir: &Path,
    queries: &[Vec<f32>],
    raw: &HnswIndex,
    shards: u32,
) -> Result<(
    ipvec_node::store::IrohBlockStore,
    Coll,
    Vec<IngestRow>,
    report::Diagnostic,
)> {
    println!(
        "ingest: ipvec collection (on-disk iroh store, f32, {:?}, {shards} shard(s)), batches of {BATCH} …",
        data.measure
    );
    let (store, mut collection) = engines::create(
        &dir.join("ipvec"),
        data.dim,
        data.measure,
        Quantization::F32,
        shards,
        false,
    )
    .await?;
    let upserts = engines::upsert_all(&mut collection, data).await?;
    let diagnostic = report::Diagnostic {
        ipvec_in_log: engines::search_ipvec_best(&collection, queries, 64).await?,
        raw: engines::search_raw_best(raw, queries, 64)?,
    };
    let checkpoint = engines::checkpoint(&mut collection).await?;
    let mut total = upserts;
    total.add(checkpoint);
    let n = data.len();
    let rows = vec![
        IngestRow::new("ipvec upserts (WAL fsync + index)", upserts, n),
        IngestRow::new("ipvec checkpoint (Merkle trees)", checkpoint, n),
        IngestRow::new("ipvec total", total, n),
    ];
    Ok((store, collection, rows, diagnostic))
}

/// A collection like ipvec's whose graph walks on codes: upserts in the same batches, then a
/// checkpoint.
async fn ingest_codes(
    data: &Dataset,
    dir: &Path,
    rows: &mut Vec<IngestRow>,
) -> Result<(ipvec_node::store::IrohBlockStore, Coll)> {
    println!("ingest: ipvec collection on codes (hnsw.codes), batches of {BATCH} …");
    let (store, mut collection) =
        engines::create(dir, data.dim, data.measure, Quantization::F32, 1, true).await?;
    let upserts = engines::upsert_all(&mut collection, data).await?;
    let checkpoint = engines::checkpoint(&mut collection).await?;
    let mut total = upserts;
    total.add(checkpoint);
    rows.push(IngestRow::new(
        "ipvec on codes, upserts",
        upserts,
        data.len(),
    ));
    rows.push(IngestRow::new("ipvec on codes, total", total, data.len()));
    Ok((store, collection))
}

/// The collection, in f32 and on codes, written again with its graph inserts on every core
/// (`Collection::set_write_threads`): ingest rows beside the one-thread ones, and the recall
/// of the graphs the concurrent inserts built.
async fn ingest_on_cores(
    data: &Dataset,
    dir: &Path,
    queries: &[Vec<f32>],
    exact: &Exact<'_>,
    truth: &Truth,
    rows: &mut Vec<IngestRow>,
) -> Result<Vec<report::CoresRecall>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut recalls = Vec::new();
    for codes in [false, true] {
        let name = match codes {
            false => "ipvec",
            true => "ipvec on codes",
        };
        println!("ingest: {name}, graph inserts on {threads} threads, batches of {BATCH} …");
        let sub = dir.join(format!("cores-{codes}"));
        let (store, mut collection) =
            engines::create(&sub, data.dim, data.measure, Quantization::F32, 1, codes).await?;
        collection.set_write_threads(threads);
        let upserts = engines::upsert_all(&mut collection, data).await?;
        let checkpoint = engines::checkpoint(&mut collection).await?;
        let mut total = upserts;
        total.add(checkpoint);
        let n = data.len();
        let label = |what: &str| format!("{name}, {what} on {threads} threads");
        rows.push(IngestRow::new(&label("upserts"), upserts, n));
        rows.push(IngestRow::new(&label("total"), total, n));
        for ef in [16, 64] {
            let pass = engines::search_ipvec_best(&collection, queries, ef).await?;
            recalls.push(report::CoresRecall {
                codes,
                ef,
                quality: Quality::of(exact, truth, &pass.ids, pass.qps()),
            });
        }
        collection.close().await?;
        store.shutdown().await?;
        std::fs::remove_dir_all(&sub)?;
    }
    Ok(recalls)
}

/// The ef sweep of the collection on codes and of the raw index on codes, into the rows of
/// [`sweep`]: the raw index by usearch's walk and by ipvec's own (`HnswIndex::set_own_walk`).
async fn sweep_codes(
    (collection, raw): (&Coll, &mut ipvec_node::index::HnswIndex),
    queries: &[Vec<f32>],
    exact: &Exact<'_>,
    truth: &Truth,
    rows: &mut [SearchRow],
) -> Result<()> {
    println!("search: ef sweep on codes …");
    // An unchanged graph is laid out for the own walk after a share of searches (one per 128
    // points): a pass over every query takes both there.
    engines::search_ipvec(collection, queries, 64, None).await?;
    engines::search_raw(raw, queries, 64)?;
    for row in rows {
        raw.set_own_walk(false);
        let [ipvec, usearch, own] =
            engines::search_trio_best(collection, raw, queries, row.ef).await?;
        raw.set_own_walk(true);
        let walk = engines::search_raw_best(raw, queries, row.ef)?;
        row.codes = Some(Quality::of(exact, truth, &ipvec.ids, ipvec.qps()));
        row.raw_codes = Some(Quality::of(exact, truth, &usearch.ids, usearch.qps()));
        row.raw_codes_own_walk = Some(Quality::of(exact, truth, &walk.ids, walk.qps()));
        row.codes_own_graph = Some(own.qps());
    }
    Ok(())
}

fn ingest_raw(
    data: &Dataset,
    runtime: HnswRuntime,
) -> Result<(ipvec_node::index::HnswIndex, Timing)> {
    let mut index = engines::raw_index(data.dim, data.measure, Quantization::F32, runtime)?;
    println!(
        "ingest: raw usearch HnswIndex, same parameters, {} f32 kernel …",
        engines::kernel_name(&index)
    );
    let timing = engines::upsert_raw(&mut index, data, RAW_RESERVES)?;
    Ok((index, timing))
}

/// Recall@10 and QPS over the ef sweep, for ipvec and raw usearch (and raw usearch with its own
/// kernel, when given).
async fn sweep(
    collection: &Coll,
    raw: &HnswIndex,
    own_kernel: Option<&ipvec_node::index::HnswIndex>,
    queries: &[Vec<f32>],
    exact: &Exact<'_>,
    truth: &Truth,
) -> Result<Vec<SearchRow>> {
    println!("search: ef sweep …");
    // Warm every index up (first touches of the graph and of the store's blocks).
    let warm = &queries[..queries.len().min(50)];
    engines::search_ipvec(collection, warm, 64, None).await?;
    for index in std::iter::once(raw).chain(own_kernel) {
        engines::search_raw(index, warm, 64)?;
    }
    let mut rows = Vec::new();
    for ef in EFS {
        let [ipvec, raw, own] = engines::search_trio_best(collection, raw, queries, ef).await?;
        let raw_own_kernel = match own_kernel {
            Some(index) => {
                let pass = engines::search_raw_best(index, queries, ef)?;
                Some(Quality::of(exact, truth, &pass.ids, pass.qps()))
            }
            None => None,
        };
        rows.push(SearchRow {
            ef,
            ipvec: Quality::of(exact, truth, &ipvec.ids, ipvec.qps()),
            raw: Quality::of(exact, truth, &raw.ids, raw.qps()),
            own_graph: own.qps(),
            raw_own_kernel,
            codes_own_graph: None,
            raw_codes_own_walk: None,
            codes: None,
            raw_codes: None,
            faiss: None,
            hnswlib: None,
        });
    }
    Ok(rows)
}

/// Filtered searches at the three selectivities, each through both paths: exact scoring of
/// the matching points, and the HNSW walk the collection chooses (its walk of the matching
/// points, or usearch's filtered walk for a broad set spread over the graph) at each of
/// [`FILTER_EFS`]. `default` marks the path `Collection::search` takes by itself. Beside
/// them, usearch's own filtered walk of the raw index `raw` (the same vectors), which filters
/// its results only and walks every point it meets.
async fn filtered(
    collection: &mut Coll,
    raw: &HnswIndex,
    data: &Dataset,
    queries: &[Vec<f32>],
    exact: &Exact<'_>,
    truths: &[Truth],
) -> Result<Vec<FilterRow>> {
    use ipvec_node::collection::{FilterPath, EXACT_FALLBACK_FRACTION, EXACT_FALLBACK_POINTS};
    println!("search: filtered …");
    // The first walk of matching points after a change to the graph reads its links; the
    // walks after it reuse them (node/src/index/hnsw/walk.rs).
    let every = key_set(data.len(), |_| true);
    let timed = || -> Result<f64> {
        let started = std::time::Instant::now();
        raw.search_passing(
            &queries[0],
            10,
            Some(16),
            &|_| true,
            every.seeds().iter().copied(),
        )?;
        Ok(started.elapsed().as_secs_f64() * 1e3)
    };
    let (first, next) = (timed()?, timed()?);
    println!(
        "  the first walk of matching points after a change reads the graph's links: {first:.1} ms, the next walk {next:.2} ms"
    );
    let mut rows = Vec::new();
    for (case, truth) in data::filter_cases().iter().zip(truths) {
        let matching = data::matching(data, case);
        let compiled = Filter::parse(case.json)?.compile()?;
        // The plan with the node's own thresholds (the passes below change them).
        collection.set_exact_fallback(EXACT_FALLBACK_POINTS, EXACT_FALLBACK_FRACTION);
        let plan = collection.filter_plan(&compiled);
        anyhow::ensure!(
            plan.matching == matching,
            "{}: the node counts {}",
            case.name,
            plan.matching
        );
        println!(
            "  {}: {matching} matching, linked share {:.3}, default path {:?}",
            case.name, plan.linked_share, plan.path
        );
        let default_exact = plan.path == FilterPath::Exact;
        let row = |path: &str, ef: Option<usize>, default: bool, pass: &engines::Pass| {
            FilterRow::new(case.name, matching, path, ef, default, exact, truth, pass)
        };
        collection.set_exact_fallback(usize::MAX, 1.0);
        let pass =
            engines::search_ipvec(collection, queries, FILTER_EFS[0], Some(&compiled)).await?;
        rows.push(row("exact among matches", None, default_exact, &pass));
        collection.set_exact_fallback(0, 0.0);
        let walk = match collection.filter_plan(&compiled).path {
            FilterPath::FilteredWalk => "usearch filtered walk",
            _ => "walk of matching points",
        };
        for ef in FILTER_EFS {
            let pass = engines::search_ipvec(collection, queries, ef, Some(&compiled)).await?;
            rows.push(row(walk, Some(ef), !default_exact, &pass));
        }
        let accepts = |key: u64| (case.accepts)(key as usize, data.labels[key as usize]);
        for ef in FILTER_EFS {
            let pass = engines::search_raw_filtered(raw, queries, ef, Some(&accepts))?;
            rows.push(row("usearch walk, raw index", Some(ef), false, &pass));
        }
        // Both walks on the same graph, whichever the planner picks: what the choice is
        // between.
        let allowed = key_set(data.len(), accepts);
        for ef in FILTER_EFS {
            let pass = engines::search_raw_passing(raw, queries, ef, &accepts, allowed.seeds())?;
            rows.push(row(
                "walk of matching points, raw index",
                Some(ef),
                false,
                &pass,
            ));
        }
    }
    collection.set_exact_fallback(EXACT_FALLBACK_POINTS, EXACT_FALLBACK_FRACTION);
    Ok(rows)
}

/// The keys below `n` that `accepts` lets through, as the collection holds a filter's set:
/// its seeds are where the collection's walk of the matching points starts.
fn key_set(n: usize, accepts: impl Fn(u64) -> bool) -> ipvec_node::collection::allowed::KeySet {
    let mut set = ipvec_node::collection::allowed::KeySet::with_limit(n as u64);
    for key in (0..n as u64).filter(|key| accepts(*key)) {
        set.insert(key);
    }
    set
}

/// What evaluating a filter over every point costs when its set is not cached (the first
/// search with a filter after a write): `allowed::evaluate` over a key map of every point.
fn filter_eval_costs(data: &Dataset) -> Result<Vec<(String, f64)>> {
    use ipvec_node::collection::{
        allowed::{self, Restriction},
        cache::{self, KeyMap},
        points::json_to_ipld,
    };
    use ipvec_protocol::entry::EntryId;
    let mut keys = KeyMap::default();
    for i in 0..data.len() {
        let key = keys.assign(&EntryId::Int(i as u64).to_key()?, 0);
        let meta = json_to_ipld(serde_json::json!({"label": data.labels[i], "id_mod10": i % 10}));
        let meta = ipvec_protocol::entry::normalize_metadata(meta);
        keys.set_metadata(key, Some(cache::PackedMetadata::pack(&meta)?));
    }
    let mut out = Vec::new();
    for case in data::filter_cases() {
        let compiled = Filter::parse(case.json)?.compile()?;
        let per_call = engines::per_call(50, || {
            let only = Restriction {
                filter: Some(&compiled),
                shards: None,
            };
            std::hint::black_box(allowed::evaluate(only, &keys));
        });
        out.push((case.name.to_string(), per_call));
    }
    Ok(out)
}

fn run_baselines(
    dir: &Path,
    data: &Dataset,
    exact: &Exact,
    truth: &Truth,
    ingest: &mut Vec<IngestRow>,
    search: &mut [SearchRow],
) -> Result<Vec<baselines::LibResult>> {
    let mut results = Vec::new();
    if !baselines::available() {
        return Ok(results);
    }
    baselines::write_inputs(dir, data)?;
    for lib in baselines::LIBS {
        println!("baselines: {lib} (python3, one thread) …");
        let result = baselines::run(dir, lib, &EFS, data.measure)?;
        ingest.push(IngestRow::external(
            &format!("{} {} (Python)", result.lib, result.version),
            result.build_s,
            data.len(),
        ));
        for row in search.iter_mut() {
            let Some(run) = result.run(row.ef) else {
                continue;
            };
            let quality = Quality::of(exact, truth, &run.ids_u64(), run.qps());
            match lib {
                "faiss" => row.faiss = Some(quality),
                _ => row.hnswlib = Some(quality),
            }
        }
        report::python_memory(&result);
        results.push(result);
    }
    Ok(results)
}

fn run_memory(queries: usize, dir: &Path) -> Result<Vec<memory::MemoryRow>> {
    let mut rows = Vec::new();
    for kind in memory::KINDS {
        println!("memory: {kind} in a child process …");
        rows.push(memory::measure(kind, queries, dir)?);
    }
    Ok(rows)
}
