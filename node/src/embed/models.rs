//! The models a node embeds text collections with: chosen by name when a collection is
//! created, recorded in its manifest as an [`EmbeddingModel`], and made from the node's
//! `[embedding]` config the first time a collection of that model needs one.

use std::{collections::HashMap, sync::Arc};

use ipvec_protocol::manifest::EmbeddingModel;

use super::{
    local::MODEL_NAME, CachedEmbedder, EmbedError, Embedder, EmbeddingCache, HttpApi, HttpEmbedder,
    HttpSettings, LocalEmbedder,
};
use crate::repo::EmbeddingConfig;

/// A text that gives an HTTP model's dimension when the collection does not name one.
const PROBE: &str = "How long are this model's vectors?";

/// One embedder per model, made when first asked for and kept.
#[derive(Debug)]
pub struct Models {
    config: EmbeddingConfig,
    made: std::sync::Mutex<HashMap<EmbeddingModel, Arc<dyn Embedder>>>,
}

impl Models {
    /// Models made from `config`.
    pub fn new(config: EmbeddingConfig) -> Self {
        Self {
            config,
            made: Default::default(),
        }
    }

    /// The model a collection's `embedding` setting names (`local`, `http` or `http:MODEL`)
    /// and the length of its vectors (an HTTP model is asked to embed one text for it, which
    /// also shows that its server answers).
    pub async fn choose(&self, choice: &str) -> Result<(EmbeddingModel, usize), EmbedError> {
        let (provider, name) = match choice.trim().split_once(':') {
            Some((provider, name)) => (provider, Some(name.trim())),
            None => (choice.trim(), None),
        };
        let model = match (provider, name) {
            ("local", None) => EmbeddingModel {
                provider: "local".into(),
                model: MODEL_NAME.into(),
                normalized: true,
            },
            ("http", name) => EmbeddingModel {
                provider: http_api(&self.config)?.name().into(),
                model: match name {
                    Some(name) if !name.is_empty() => name.to_string(),
                    _ => self.config.http_model.clone(),
                },
                normalized: false,
            },
            _ => {
                return Err(EmbedError::Config {
                    key: "embedding".into(),
                    reason: format!(
                        "{choice:?} names no model: use local (all-MiniLM-L6-v2 on this CPU), \
                         http (embedding.http_model on embedding.http_url) or http:MODEL"
                    ),
                })
            }
        };
        let embedder = self.get(&model).await?;
        let dimension = match embedder.model().dimension {
            0 => probe(embedder.as_ref()).await?,
            known => known,
        };
        Ok((model, dimension))
    }

    /// The embedder of `model`, made from the config the first time.
    pub async fn get(&self, model: &EmbeddingModel) -> Result<Arc<dyn Embedder>, EmbedError> {
        if let Some(made) = self.lock().get(model) {
            return Ok(made.clone());
        }
        let config = self.config.clone();
        let wanted = model.clone();
        // Loading the local model reads and checks ~90 MB: not on the runtime's threads.
        let made = tokio::task::spawn_blocking(move || make(&config, &wanted))
            .await
            .map_err(|e| EmbedError::Inference(format!("loading the model stopped: {e}")))??;
        Ok(self.lock().entry(model.clone()).or_insert(made).clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EmbeddingModel, Arc<dyn Embedder>>> {
        self.made.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The API `embedding.http_api` names.
fn http_api(config: &EmbeddingConfig) -> Result<HttpApi, EmbedError> {
    Ok(HttpSettings::from_config(config)?.api)
}

/// A new embedder of `model` from `config`, behind the cache the config asks for.
pub(super) fn make(
    config: &EmbeddingConfig,
    model: &EmbeddingModel,
) -> Result<Arc<dyn Embedder>, EmbedError> {
    let batch = usize::try_from(config.batch_size).unwrap_or(usize::MAX);
    let provider: Arc<dyn Embedder> = match model.provider.as_str() {
        "local" if model.model == MODEL_NAME => {
            if config.model_dir.trim().is_empty() {
                return Err(EmbedError::ModelDirUnset);
            }
            Arc::new(LocalEmbedder::load(
                config.model_dir.trim().as_ref(),
                batch,
            )?)
        }
        "local" => {
            return Err(EmbedError::Config {
                key: "embedding".into(),
                reason: format!(
                    "the collection's texts were embedded with {}, and the local provider runs \
                     only {MODEL_NAME}; search it with vectors of that model, or on a node \
                     that serves it over HTTP",
                    model.id()
                ),
            })
        }
        provider => {
            let mut settings = HttpSettings::from_config(config)?;
            if settings.api.name() != provider {
                return Err(EmbedError::Config {
                    key: "embedding.http_api".into(),
                    reason: format!(
                        "the collection's model {} is served by the {provider} API, and this \
                         node's embedding.http_api is {}; set it (and embedding.http_url) to a \
                         server of that API",
                        model.id(),
                        settings.api.name()
                    ),
                });
            }
            settings.model = model.model.clone();
            Arc::new(HttpEmbedder::new(settings)?)
        }
    };
    if config.cache_entries == 0 {
        return Ok(provider);
    }
    let entries = usize::try_from(config.cache_entries).unwrap_or(usize::MAX);
    Ok(Arc::new(CachedEmbedder::new(
        provider,
        EmbeddingCache::new(entries),
    )))
}

/// The length of the vectors `embedder` gives, found by embedding one text.
async fn probe(embedder: &dyn Embedder) -> Result<usize, EmbedError> {
    let vectors = embedder.embed(&[PROBE.to_string()]).await?;
    match vectors.first().map(Vec::len) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(EmbedError::Count {
            model: embedder.model().id(),
            sent: 1,
            got: 0,
        }),
    }
}
