//! `ipvec-simulations`: run a scenario, replay a seed, or sweep a grid of scenarios.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ipvec_simulations::{run, sweep, Scenario};

#[derive(Debug, Parser)]
#[command(
    name = "ipvec-simulations",
    about = "Deterministic simulations of ipvec networks, driving the node's own sans-io cores"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario and print what it measured.
    Run {
        /// The scenario file (e.g. simulations/scenarios/churn.toml).
        scenario: PathBuf,
        /// The seed (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Rerun a seed that broke an invariant, printing the events that led to it.
        #[arg(long, value_name = "SEED", conflicts_with = "seed")]
        replay: Option<u64>,
        /// Override the number of nodes.
        #[arg(long)]
        nodes: Option<u32>,
    },
    /// Run a grid of variations of a scenario; write a CSV and PNG plots.
    Sweep {
        /// The scenario file the grid varies.
        scenario: PathBuf,
        /// Churn rates (fraction of nodes per hour), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "0,0.05,0.1,0.2,0.4")]
        churn: Vec<f64>,
        /// Replication factors, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        replication: Vec<u32>,
        /// Search deadlines in milliseconds, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "2000")]
        deadline_ms: Vec<u64>,
        /// Where to write sweep.csv and the plots.
        #[arg(long, default_value = "target/sweep")]
        out: PathBuf,
        /// The seed of every run (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run {
            scenario,
            seed,
            replay,
            nodes,
        } => {
            let mut sc = Scenario::load(&scenario)?;
            if let Some(n) = nodes {
                sc.nodes = n;
                sc.check()?;
            }
            let seed = replay.or(seed).unwrap_or(sc.seed);
            if replay.is_some() {
                return replay_seed(&sc, seed);
            }
            let (stats, wall) = run(&sc, seed)?;
            print!("{}", stats.table(&sc.name, seed, wall));
            if let Some(v) = stats.violations.first() {
                bail!(
                    "invariant broken at {:.3} s by event {}: {} — rerun it with `run {} --replay {seed}`",
                    v.at.0 as f64 / 1_000.0,
                    v.event,
                    v.invariant,
                    scenario.display()
                );
            }
            Ok(())
        }
        Command::Sweep {
            scenario,
            churn,
            replication,
            deadline_ms,
            out,
            seed,
        } => {
            let sc = Scenario::load(&scenario)?;
            let grid = sweep::Grid {
                churn,
                replication,
                deadline_ms,
            };
            let seed = seed.unwrap_or(sc.seed);
            let rows = sweep::run_grid(&sc, &grid, seed, &out)
                .with_context(|| format!("sweeping {}", scenario.display()))?;
            println!(
                "{} runs; wrote {} and plots in {}",
                rows,
                out.join("sweep.csv").display(),
                out.display()
            );
            Ok(())
        }
    }
}

/// Reruns `seed`, printing the events before the first broken invariant.
fn replay_seed(sc: &Scenario, seed: u64) -> anyhow::Result<()> {
    let mut world = ipvec_simulations::World::new(sc.clone(), seed)?;
    world.record_events(64);
    let started = std::time::Instant::now();
    let (stats, events) = world.run_recorded();
    for line in &events {
        println!("{line}");
    }
    print!(
        "{}",
        stats.table(&sc.name, seed, started.elapsed().as_secs_f64())
    );
    Ok(())
}
