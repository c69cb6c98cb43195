//! Sweeps: one scenario run over a grid of churn × replication × search deadline, written as
//! `sweep.csv` and drawn as PNG plots of coverage and latency against churn, one line per
//! replication (and deadline).

use std::{fmt::Write as _, path::Path};

use anyhow::Context;
use plotters::prelude::*;

use crate::{report::Summary, Scenario, World};

/// Where the plots' text font is looked for (Debian's `fonts-dejavu-core`).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// The grid of a sweep.
#[derive(Debug, Clone)]
pub struct Grid {
    /// Fractions of nodes churning per hour.
    pub churn: Vec<f64>,
    /// Replication factors.
    pub replication: Vec<u32>,
    /// Search deadlines, milliseconds.
    pub deadline_ms: Vec<u64>,
}

/// One run of the grid.
#[derive(Debug, Clone)]
struct Row {
    churn: f64,
    replication: u32,
    deadline_ms: u64,
    summary: Summary,
    violations: usize,
    bytes_moved: u64,
    trace: String,
}

/// Runs the grid with `seed`, writes `out/sweep.csv`, `out/coverage.png` and
/// `out/latency.png`, and returns the number of runs.
pub fn run_grid(base: &Scenario, grid: &Grid, seed: u64, out: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut rows = Vec::new();
    for &replication in &grid.replication {
        for &deadline_ms in &grid.deadline_ms {
            for &churn in &grid.churn {
                let mut sc = base.clone();
                sc.churn.per_hour = churn;
                sc.replication = replication;
                sc.search.deadline_ms = deadline_ms;
                // A sweep wants every run whole: violations are counted, not stopped at.
                let started = std::time::Instant::now();
                let mut world = World::new(sc, seed)?;
                world.keep_going();
                let stats = world.run();
                let wall = started.elapsed().as_secs_f64();
                eprintln!(
                    "churn {churn}/h, replication {replication}, deadline {deadline_ms} ms: {:.1} s wall",
                    wall
                );
                rows.push(Row {
                    churn,
                    replication,
                    deadline_ms,
                    summary: stats.summary(),
                    violations: stats.violations.len(),
                    bytes_moved: stats.bytes_moved,
                    trace: stats.trace,
                });
            }
        }
    }
    std::fs::write(out.join("sweep.csv"), csv(&rows))?;
    plot(
        &rows,
        &out.join("coverage.png"),
        "full-coverage rate (%)",
        |s| 100.0 * s.full_coverage_rate,
    )?;
    plot(&rows, &out.join("latency.png"), "p99 latency (ms)", |s| {
        s.p99 as f64
    })?;
    Ok(rows.len())
}

fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "churn_per_hour,replication,deadline_ms,searches,full_coverage_rate,mean_coverage,recall,p50_ms,p95_ms,p99_ms,repair_max_ms,repair_mean_ms,bytes_moved,violations,trace\n",
    );
    for r in rows {
        let s = &r.summary;
        let _ = writeln!(
            out,
            "{},{},{},{},{:.6},{:.6},{:.6},{},{},{},{},{:.1},{},{},{}",
            r.churn,
            r.replication,
            r.deadline_ms,
            s.searches,
            s.full_coverage_rate,
            s.mean_coverage,
            s.recall,
            s.p50,
            s.p95,
            s.p99,
            s.repair_max_ms,
            s.repair_mean_ms,
            r.bytes_moved,
            r.violations,
            r.trace
        );
    }
    out
}

/// Registers the plots' font once (plotters needs it for every text).
fn font() -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = std::fs::read(FONT).map_err(|e| {
            format!("cannot read the plot font {FONT} ({e}): install Debian's fonts-dejavu-core")
        })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{FONT} is not a font plotters can read"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// One line per (replication, deadline) of `metric` against churn.
fn plot(rows: &[Row], path: &Path, label: &str, metric: fn(&Summary) -> f64) -> anyhow::Result<()> {
    font()?;
    let max_x = rows.iter().map(|r| r.churn).fold(0.0, f64::max).max(0.01);
    let max_y = rows
        .iter()
        .map(|r| metric(&r.summary))
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{label} vs churn"), ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..max_x * 1.02, 0.0..max_y)?;
    chart
        .configure_mesh()
        .x_desc("nodes churning per hour (fraction)")
        .y_desc(label)
        .draw()?;
    let mut keys: Vec<(u32, u64)> = rows
        .iter()
        .map(|r| (r.replication, r.deadline_ms))
        .collect();
    keys.dedup();
    for (i, (replication, deadline)) in keys.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| (r.replication, r.deadline_ms) == (*replication, *deadline))
            .map(|r| (r.churn, metric(&r.summary)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(format!("replication {replication}, deadline {deadline} ms"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
