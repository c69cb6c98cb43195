//! `ipvec migrate`, `ipvec import` and `ipvec export`: moves between ipvec and other stores
//! (the [`bridge`](crate::bridge) module), with a progress bar and a checkpoint when asked.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{backend::Backend, output::Output, MetricArg};
use crate::bridge::{self, BridgeOptions, Endpoint, Migration, MigrationReport, Progress};

/// How a move runs, and how to read stores that do not describe themselves.
#[derive(Debug, Clone, Args)]
pub struct BridgeArgs {
    /// Points per batch.
    #[arg(long, default_value_t = bridge::migrate::DEFAULT_BATCH)]
    pub batch: usize,
    /// Keep a checkpoint after each batch so that an interrupted move can be continued with
    /// --resume; what was written then stays in the target until the move finishes (without
    /// it a failed move removes what it wrote). Into ipvec, Qdrant and Elasticsearch/OpenSearch
    /// only: files are written whole.
    #[arg(long)]
    pub resumable: bool,
    /// Continue a move started with --resumable that was interrupted.
    #[arg(long, conflicts_with = "resumable")]
    pub resume: bool,
    /// The checkpoint file (default: one per source and target under REPO/migrations/).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Skip reading the target back at the end to compare it with the source.
    #[arg(long)]
    pub no_verify: bool,
    /// Points the verification compares one by one (vector bits and metadata), besides the
    /// count and the content digest of all.
    #[arg(long, default_value_t = bridge::migrate::DEFAULT_SAMPLE)]
    pub sample: usize,
    /// Qdrant's api-key, or an Elasticsearch/OpenSearch API key (sent as `ApiKey …`).
    #[arg(
        long,
        value_name = "KEY",
        env = "IPVEC_BRIDGE_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// Qdrant: the named vector to read or write (default: the unnamed one).
    #[arg(long, value_name = "NAME")]
    pub vector_name: Option<String>,
    /// Parquet, Elasticsearch/OpenSearch: the column or field holding the vectors.
    #[arg(long, value_name = "FIELD", default_value = "vector")]
    pub vector_field: String,
    /// Parquet: the column holding the ids.
    #[arg(long, value_name = "FIELD", default_value = "id")]
    pub id_field: String,
    /// FAISS: a side file of metadata by id (JSON lines {"id": …, …}), read on import and
    /// written on export.
    #[arg(long, value_name = "FILE")]
    pub metadata: Option<PathBuf>,
    /// The metric of a source that records none (Parquet, bulk files); for a FAISS inner
    /// product index of normalised vectors, cosine.
    #[arg(long, value_enum)]
    pub metric: Option<MetricArg>,
}

impl BridgeArgs {
    fn options(&self) -> BridgeOptions {
        BridgeOptions {
            api_key: self.api_key.clone(),
            vector_name: self.vector_name.clone(),
            vector_field: self.vector_field.clone(),
            id_field: self.id_field.clone(),
            metadata_file: self.metadata.clone(),
            metric: self.metric.map(Into::into),
        }
    }
}

/// Runs a move from `from` to `to`.
pub async fn run(
    backend: &Backend,
    out: &Output,
    repo: &Path,
    from: &str,
    to: &str,
    args: &BridgeArgs,
) -> anyhow::Result<()> {
    let from = Endpoint::parse(from)?;
    let to = Endpoint::parse(to)?;
    let checkpoint = (args.resumable || args.resume || args.checkpoint.is_some()).then(|| {
        args.checkpoint
            .clone()
            .unwrap_or_else(|| default_checkpoint(repo, &from, &to))
    });
    if let Some(dir) = checkpoint.as_deref().and_then(Path::parent) {
        std::fs::create_dir_all(dir)?;
    }
    let migration = Migration {
        options: args.options(),
        batch: args.batch,
        checkpoint,
        resume: args.resume,
        verify: !args.no_verify,
        sample: args.sample,
        ..Migration::new(from, to)
    };
    let bar = super::output::progress_bar(None, "moving");
    let style = |template: &str| {
        indicatif::ProgressStyle::with_template(template)
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    };
    let mut phase = None;
    let mut progress = |step: Progress| {
        let (what, done, total) = match step {
            Progress::Moving { done, total } => ("moving", done, total),
            Progress::Verifying { done, total } => ("verifying", done, Some(total)),
        };
        if phase != Some((what, total)) {
            phase = Some((what, total));
            match total {
                Some(total) => {
                    bar.set_length(total);
                    bar.set_style(style(
                        "{msg} [{bar:30}] {pos}/{len} points ({per_sec}, {eta})",
                    ));
                }
                None => bar.set_style(style("{msg} {pos} points ({per_sec})")),
            }
            bar.set_message(what);
            bar.reset_elapsed();
        }
        bar.set_position(done);
    };
    let result = bridge::migrate(&migration, backend.ops(), &mut progress).await;
    bar.finish_and_clear();
    let report = result?;
    out.print(summary(&report), serde_json::to_value(&report)?)
}

/// The checkpoint of a move from `from` to `to` in `repo`: its name is a hash of both.
fn default_checkpoint(repo: &Path, from: &Endpoint, to: &Endpoint) -> PathBuf {
    let key = blake3::hash(format!("{from}\n{to}").as_bytes()).to_hex();
    repo.join("migrations").join(format!("{}.json", &key[..16]))
}

fn summary(report: &MigrationReport) -> String {
    let mut text = format!(
        "moved {} points from {} to {} (dimension {}, {}) in {:.1} s",
        report.points, report.from, report.to, report.dimension, report.metric, report.seconds
    );
    if report.resumed_after > 0 {
        text.push_str(&format!(
            ", continuing after the {} an earlier run moved",
            report.resumed_after
        ));
    }
    match &report.verified {
        Some(v) => {
            text.push_str(&format!(
                "\nverified: {} points read back, {} compared one by one, content {}",
                v.points, v.sampled, v.digest
            ));
            if !v.digest_compared {
                text.push_str(
                    " (the earlier run's points were not read again: count and sample only)",
                );
            }
        }
        None => text.push_str("\nnot verified (--no-verify)"),
    }
    text
}
