//! Backups: a full backup of an N × 128 collection beside incremental ones after updating 1%
//! of its points (a range of ids, then scattered ids), time and bytes side by side, and the
//! restore of the chain.
//!
//! ```text
//! cargo bench -p ipvec-node --bench backup                      # N = 100,000
//! cargo bench -p ipvec-node --bench backup -- --points 1000000  # the numbers in docs/benchmarks.md
//! ```
//!
//! Options: `--points N` (or `IPVEC_BENCH_POINTS`), `--dir PATH` (where the repository and
//! the backups go; default the system temp dir). The full backup is the baseline, measured in
//! the same run on the same store. It prints numbers and asserts nothing about time, only
//! that results are correct (the restored collection has the backed-up root and points).
//! MB = 10^6 bytes.

use std::{path::PathBuf, time::Instant};

use anyhow::{bail, Context, Result};
use ipvec_node::{backup::LinkKind, ops::Node, repo::Repo};
use ipvec_protocol::{
    api::{CreateCollection, PointId, PointIn},
    manifest::Metric,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

const DIM: usize = 128;
const BATCH: usize = 10_000;

struct Options {
    points: usize,
    dir: Option<PathBuf>,
}

fn options() -> Result<Options> {
    let mut points: usize = std::env::var("IPVEC_BENCH_POINTS")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context("IPVEC_BENCH_POINTS")?
        .unwrap_or(100_000);
    let mut dir = std::env::var("IPVEC_BENCH_DIR").ok().map(PathBuf::from);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--points" => {
                points = args
                    .next()
                    .context("--points N")?
                    .parse()
                    .context("--points N")?
            }
            "--dir" => dir = Some(args.next().context("--dir PATH")?.into()),
            // cargo bench passes --bench.
            "--bench" => {}
            other => bail!("unknown option {other}; use --points N or --dir PATH"),
        }
    }
    Ok(Options { points, dir })
}

fn vector(rng: &mut StdRng) -> Vec<f32> {
    (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn main() -> Result<()> {
    let opts = options()?;
    let tmp = match &opts.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            tempfile::tempdir_in(dir)?
        }
        None => tempfile::tempdir()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(opts.points, tmp.path().to_path_buf()))
}

async fn run(n: usize, dir: PathBuf) -> Result<()> {
    let repo = Repo::init(&dir.join("repo")).await?;
    let config = repo.config().clone();
    let node = Node::new(repo, config);
    node.create_collection(CreateCollection {
        metric: Metric::L2,
        ef_construction: 64,
        ..CreateCollection::new("bench", DIM as u32)
    })
    .await?;
    let mut rng = StdRng::seed_from_u64(0xbac0_2026);
    let started = Instant::now();
    for start in (0..n).step_by(BATCH) {
        let points = (start..(start + BATCH).min(n))
            .map(|i| PointIn {
                id: PointId::Int(i as u64),
                text: None,
                vector: vector(&mut rng),
                metadata: None,
            })
            .collect();
        node.upsert("bench", points).await?;
    }
    node.commit("bench").await?;
    println!(
        "{n} × {DIM} points loaded and committed in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let backups = dir.join("backups");
    let started = Instant::now();
    let full = node
        .backup_create(&backups, Some("bench"), false, |_, _, _| {})
        .await?;
    let full_secs = started.elapsed().as_secs_f64();
    let full = full.collections[0].link.clone().context("no full link")?;
    if full.kind != LinkKind::Full {
        bail!("the first backup was not full");
    }

    // 1% of the points rewritten: first a range of ids (appends and batch rewrites look like
    // this), then the same number scattered at random ids.
    let changed = (n / 100).max(1);
    let start = rng.gen_range(0..=(n - changed) as u64);
    let mut increments = Vec::new();
    let updates: [(&str, Vec<u64>); 2] = [
        (
            "incremental, 1% (id range)",
            (start..start + changed as u64).collect(),
        ),
        ("incremental, 1% (scattered)", {
            // Distinct: a batch may name each id once.
            let mut ids = std::collections::BTreeSet::new();
            while ids.len() < changed {
                ids.insert(rng.gen_range(0..n as u64));
            }
            ids.into_iter().collect()
        }),
    ];
    for (what, ids) in updates {
        let points = ids
            .into_iter()
            .map(|id| PointIn {
                id: PointId::Int(id),
                text: None,
                vector: vector(&mut rng),
                metadata: None,
            })
            .collect();
        node.upsert("bench", points).await?;
        node.commit("bench").await?;
        let started = Instant::now();
        let incr = node
            .backup_create(&backups, Some("bench"), false, |_, _, _| {})
            .await?;
        let secs = started.elapsed().as_secs_f64();
        let incr = incr.collections[0]
            .link
            .clone()
            .context("no incremental link")?;
        if incr.kind != LinkKind::Incremental {
            bail!("a backup after the full was not incremental");
        }
        increments.push((what, secs, incr));
    }
    let info = node.collection_info("bench").await?;
    node.close().await?;

    println!();
    println!("| backup ({n} × {DIM}) | time (s) | blocks | MB | MB/s | bytes vs full |");
    println!("| ---- | ---: | ---: | ---: | ---: | ---: |");
    let rows = std::iter::once(("full (baseline)", full_secs, &full)).chain(
        increments
            .iter()
            .map(|(what, secs, link)| (*what, *secs, link)),
    );
    for (what, secs, link) in rows {
        println!(
            "| {what} | {secs:.2} | {} | {:.1} | {:.0} | {:.1}% |",
            link.blocks,
            mb(link.bytes),
            mb(link.bytes) / secs,
            100.0 * link.bytes as f64 / full.bytes as f64
        );
    }
    println!(
        "({changed} points rewritten in each update, {:.1}% of them)",
        100.0 * changed as f64 / n as f64
    );

    // The chain restores into a new repository with the same root and points.
    let verify_started = Instant::now();
    let report = ipvec_node::backup::verify(&backups, |_| {})?;
    let verify_secs = verify_started.elapsed().as_secs_f64();
    if !report.problems.is_empty() {
        bail!("verify: {:?}", report.problems);
    }
    let repo = Repo::init(&dir.join("restored")).await?;
    let config = repo.config().clone();
    let restored = Node::new(repo, config);
    let started = Instant::now();
    restored
        .backup_restore(&backups, Some("bench"), None, |_, _| {})
        .await?;
    let restore_secs = started.elapsed().as_secs_f64();
    let back = restored.collection_info("bench").await?;
    restored.close().await?;
    if (back.root.as_str(), back.points) != (info.root.as_str(), info.points) {
        bail!(
            "the restored collection differs: {} {} vs {} {}",
            back.root,
            back.points,
            info.root,
            info.points
        );
    }
    println!(
        "verify of both files: {verify_secs:.2} s ({:.1} MB); restore of the chain: {restore_secs:.2} s (root and {} points as backed up)",
        mb(report.bytes),
        back.points
    );
    Ok(())
}
