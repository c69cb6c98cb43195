//! `ipvec embed`: texts in, vectors out as JSON, with the provider the config names.

use std::path::Path;

use serde_json::json;

use super::output;
use crate::{
    embed::{self, ProviderKind},
    repo::Config,
};

/// Provider names on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ProviderArg {
    /// all-MiniLM-L6-v2 on this CPU, from embedding.model_dir.
    Local,
    /// The server embedding.http_url names (OpenAI-compatible or Ollama).
    Http,
}

impl From<ProviderArg> for ProviderKind {
    fn from(p: ProviderArg) -> Self {
        match p {
            ProviderArg::Local => Self::Local,
            ProviderArg::Http => Self::Http,
        }
    }
}

/// Embeds `texts` and prints `{"model": {…}, "vectors": [[…], …]}`. The configuration is
/// the repository's (when it has one), then the `IPVEC_EMBEDDING_…` variables.
pub async fn run(
    repo: &Path,
    provider: Option<ProviderArg>,
    texts: &[String],
) -> anyhow::Result<()> {
    let file = repo.join("config.toml");
    let config = if file.exists() {
        Config::load(&file)?
    } else {
        Config::default()
    }
    .with_env()?;
    let embedder = embed::from_config(&config.embedding, provider.map(Into::into))?;
    let bar = indicatif::ProgressBar::new(texts.len() as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "embedding [{bar:30}] {pos}/{len} ({per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_draw_target(if texts.len() > embedder.batch_size() {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    });
    let vectors = embedder
        .embed_with_progress(texts, &|p| bar.set_position(p.done as u64))
        .await?;
    bar.finish_and_clear();
    let answer = json!({ "model": embedder.model(), "vectors": vectors });
    output::write_line(serde_json::to_string(&answer)?)
}
