//! Embedding providers: text in, vectors out, behind one trait.
//!
//! # Layout
//! - [`Embedder`]: the trait every provider implements, with [`ModelInfo`] (what a
//!   collection's manifest will record about the model) and [`EmbedError`].
//! - [`local`]: all-MiniLM-L6-v2 on this machine's CPU (candle), from files the user put in
//!   a folder; nothing is downloaded at run time.
//! - [`http`]: an OpenAI-compatible (`POST /v1/embeddings`) or Ollama (`POST /api/embed`)
//!   server, with timeouts, retries and back-off.
//! - [`cache`]: a bounded in-memory cache keyed by (model, BLAKE3 of the text), and
//!   [`CachedEmbedder`], which sends a provider only the texts it has not seen.
//!
//! [`from_config`] builds the provider the `[embedding]` config section names; [`Models`]
//! keeps one per model for the node's text collections.

pub mod cache;
mod error;
pub mod http;
pub mod local;
mod models;

use std::sync::Arc;

use futures::future::BoxFuture;
use ipvec_protocol::manifest::EmbeddingModel;
use serde::{Deserialize, Serialize};

use crate::repo::EmbeddingConfig;

pub use cache::{CachedEmbedder, EmbeddingCache};
pub use error::EmbedError;
pub use http::{HttpApi, HttpEmbedder, HttpSettings};
pub use local::LocalEmbedder;
pub use models::Models;

/// What produced a set of vectors: recorded in a collection's manifest so that queries are
/// embedded by the same model as the points.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The provider: `local`, `openai` or `ollama`.
    pub provider: String,
    /// The model's name, e.g. `sentence-transformers/all-MiniLM-L6-v2`.
    pub model: String,
    /// Length of every vector (0 when not known yet: an HTTP model before its first answer).
    pub dimension: usize,
    /// Whether every vector has length 1 (then cosine similarity is a dot product).
    pub normalized: bool,
}

impl ModelInfo {
    /// `provider/model`: the model's part of a cache key.
    pub fn id(&self) -> String {
        format!("{}/{}", self.provider, self.model)
    }
}

/// How far a long [`Embedder::embed_with_progress`] call has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Texts embedded so far.
    pub done: usize,
    /// Texts in the call.
    pub total: usize,
}

/// Called after each batch of a long call.
pub type ProgressFn<'a> = &'a (dyn Fn(Progress) + Send + Sync);

/// A provider of text embeddings.
///
/// The trait is object safe (`Arc<dyn Embedder>`); its methods return boxed futures. A
/// provider implements [`embed_batch`](Embedder::embed_batch) for at most
/// [`batch_size`](Embedder::batch_size) texts; [`embed`](Embedder::embed) splits any number
/// of texts into such batches. CPU-bound providers run their work on tokio's blocking pool,
/// so every method may be awaited on the async runtime.
pub trait Embedder: Send + Sync + std::fmt::Debug {
    /// The model, its dimension and whether its vectors are normalised.
    fn model(&self) -> ModelInfo;

    /// The most texts [`embed_batch`](Embedder::embed_batch) takes at once.
    fn batch_size(&self) -> usize;

    /// One vector per text, in order, for at most [`batch_size`](Embedder::batch_size)
    /// texts (one request, or one run of the model).
    fn embed_batch<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>>;

    /// One vector per text, in order, for any number of texts, sent in batches.
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        self.embed_with_progress(texts, &no_progress)
    }

    /// [`embed`](Embedder::embed), calling `progress` after each batch.
    fn embed_with_progress<'a>(
        &'a self,
        texts: &'a [String],
        progress: ProgressFn<'a>,
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            let mut vectors = Vec::with_capacity(texts.len());
            for batch in texts.chunks(self.batch_size().max(1)) {
                let got = self.embed_batch(batch).await?;
                if got.len() != batch.len() {
                    return Err(EmbedError::Count {
                        model: self.model().id(),
                        sent: batch.len(),
                        got: got.len(),
                    });
                }
                vectors.extend(got);
                progress(Progress {
                    done: vectors.len(),
                    total: texts.len(),
                });
            }
            Ok(vectors)
        })
    }
}

/// A progress callback that ignores progress.
fn no_progress(_: Progress) {}

/// Which provider [`from_config`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// [`LocalEmbedder`].
    Local,
    /// [`HttpEmbedder`].
    Http,
}

impl ProviderKind {
    /// The provider a config names (`embedding.provider`).
    pub fn from_name(name: &str) -> Result<Self, EmbedError> {
        match name {
            "local" => Ok(Self::Local),
            "http" => Ok(Self::Http),
            other => Err(EmbedError::Config {
                key: "embedding.provider".into(),
                reason: format!("{other:?} is not a provider: use local or http"),
            }),
        }
    }
}

/// The provider `kind` (default: `embedding.provider`) set up from the `[embedding]`
/// config section, behind a cache of `embedding.cache_entries` vectors when that is not 0.
pub fn from_config(
    config: &EmbeddingConfig,
    kind: Option<ProviderKind>,
) -> Result<Arc<dyn Embedder>, EmbedError> {
    let kind = match kind {
        Some(kind) => kind,
        None => ProviderKind::from_name(&config.provider)?,
    };
    let model = match kind {
        ProviderKind::Local => EmbeddingModel {
            provider: "local".into(),
            model: local::MODEL_NAME.into(),
            normalized: true,
        },
        ProviderKind::Http => EmbeddingModel {
            provider: HttpSettings::from_config(config)?.api.name().into(),
            model: config.http_model.clone(),
            normalized: false,
        },
    };
    models::make(config, &model)
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[cfg(test)]
mod http_tests;
