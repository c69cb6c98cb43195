//! The `ipvec` command line, Kubo style: commands act on a repository (`--repo DIR`,
//! `$IPVEC_PATH`, default `~/.ipvec`).

mod dag;
mod output;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::repo::Repo;

/// ipvec: a peer-to-peer vector database whose data is IPFS/IPLD content.
#[derive(Debug, Parser)]
#[command(name = "ipvec", version, about, propagate_version = true)]
pub struct Cli {
    /// Repository folder (default: $IPVEC_PATH, else ~/.ipvec).
    #[arg(long, global = true, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a repository: config, node key and block store.
    Init,
    /// Work with IPLD DAGs: put, get, export and import CAR files.
    #[command(subcommand)]
    Dag(DagCommand),
    /// Inspect raw blocks.
    #[command(subcommand)]
    Block(BlockCommand),
    /// Keep DAGs from garbage collection.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Remove every block no pin reaches.
    Gc,
}

/// `ipvec dag …`
#[derive(Debug, Subcommand)]
pub enum DagCommand {
    /// Read DAG-JSON on stdin (links as {"/": "<cid>"}), store it as DAG-CBOR, print its CID.
    Put {
        /// Also pin the new block.
        #[arg(long)]
        pin: bool,
    },
    /// Print a block as DAG-JSON.
    Get {
        /// The block's CID.
        cid: String,
    },
    /// Write the DAG under a root as a CAR v1 file.
    Export {
        /// The root CID.
        cid: String,
        /// Output file (default: stdout).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Import CAR v1 files, checking every block, and pin their roots.
    Import {
        /// CAR files to import.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `ipvec block …`
#[derive(Debug, Subcommand)]
pub enum BlockCommand {
    /// Print a block's size and codec.
    Stat {
        /// The block's CID.
        cid: String,
    },
}

/// `ipvec pin …`
#[derive(Debug, Subcommand)]
pub enum PinCommand {
    /// List pinned roots.
    Ls,
    /// Pin the DAG under a root (every block must be stored).
    Add {
        /// The root CID.
        cid: String,
    },
    /// Remove a pin; its blocks go at the next gc unless another pin reaches them.
    Rm {
        /// The root CID.
        cid: String,
    },
}

/// A value as DAG-JSON, the text form `dag get` prints and `dag put` reads.
pub fn dag_json(value: &ipld_core::ipld::Ipld) -> anyhow::Result<Vec<u8>> {
    serde_ipld_dagjson::to_vec(value)
        .map_err(|e| anyhow::anyhow!("cannot write the block as DAG-JSON: {e}"))
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let path = cli.repo.clone().unwrap_or_else(Repo::default_path);
    let out = output::Output { json: cli.json };
    if let Command::Init = cli.command {
        let repo = Repo::init(&path).await?;
        out.init(repo.path(), &repo.peer_id().to_string());
        repo.close().await?;
        return Ok(());
    }
    let repo = Repo::open(&path).await?;
    let result = dag::run(&repo, &out, cli.command).await;
    let closed = repo.close().await;
    result?;
    closed?;
    Ok(())
}
