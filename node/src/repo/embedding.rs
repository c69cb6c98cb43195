//! The `[embedding]` section of the repository's configuration: which provider turns text
//! into vectors, and its settings.

use serde::{Deserialize, Serialize};

use super::config::ConfigError;

/// Embedding options: the provider that turns text into vectors, and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingConfig {
    /// Provider used when none is named: "local" (all-MiniLM-L6-v2 on this machine's CPU)
    /// or "http" (an OpenAI-compatible or Ollama server).
    pub provider: String,
    /// Folder holding the local model's `model.safetensors`, `tokenizer.json` and
    /// `config.json` (nothing is downloaded at run time; docs/embeddings.md says where to
    /// get them). Empty: not set.
    pub model_dir: String,
    /// Base URL of the HTTP provider, without `/v1/embeddings` or `/api/embed`.
    pub http_url: String,
    /// Model the HTTP provider is asked for.
    pub http_model: String,
    /// The HTTP provider's API: "openai" (`POST /v1/embeddings`) or "ollama"
    /// (`POST /api/embed`).
    pub http_api: String,
    /// Bearer token sent to the HTTP provider (empty: none). Prefer setting it through
    /// `IPVEC_EMBEDDING_API_KEY` over writing it here.
    pub api_key: String,
    /// Texts sent in one request or run through the local model at once.
    pub batch_size: u32,
    /// How long one HTTP request may take, in milliseconds.
    pub timeout_ms: u64,
    /// How often a request that timed out or was answered 429 or 5xx is tried again.
    pub max_retries: u32,
    /// Embeddings kept in memory so a repeated text is not embedded again (0: no cache).
    pub cache_entries: u64,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        Self {
            provider: "local".into(),
            model_dir: String::new(),
            http_url: "http://127.0.0.1:11434".into(),
            http_model: "all-minilm".into(),
            http_api: "ollama".into(),
            api_key: String::new(),
            batch_size: 32,
            timeout_ms: 30_000,
            max_retries: 4,
            cache_entries: 10_000,
        }
    }
}

/// The most texts one embedding batch may hold.
pub const MAX_EMBEDDING_BATCH: u32 = 2_048;

impl EmbeddingConfig {
    /// The `[embedding]` section of the file `ipvec init` writes, every option with its
    /// meaning, ending in a blank line.
    pub fn to_documented_toml(&self) -> String {
        format!(
            "[embedding]\n\
             # Provider used when none is named: \"local\" (all-MiniLM-L6-v2 on this CPU) or \"http\".\n\
             provider = {:?}\n\
             # Folder with the local model's model.safetensors, tokenizer.json and config.json\n\
             # (nothing is downloaded at run time; docs/embeddings.md says where to get them).\n\
             model_dir = {:?}\n\
             # The HTTP provider: base URL, model, and API (\"openai\": POST /v1/embeddings,\n\
             # \"ollama\": POST /api/embed).\n\
             http_url = {:?}\n\
             http_model = {:?}\n\
             http_api = {:?}\n\
             # Bearer token for the HTTP provider (empty: none); better set IPVEC_EMBEDDING_API_KEY.\n\
             api_key = {:?}\n\
             # Texts per request or per run of the local model.\n\
             batch_size = {}\n\
             # How long one HTTP request may take (ms), and how often one that timed out or was\n\
             # answered 429 or 5xx is tried again, with growing pauses.\n\
             timeout_ms = {}\n\
             max_retries = {}\n\
             # Embeddings kept in memory so a repeated text is not embedded again (0: none).\n\
             cache_entries = {}\n\
             \n",
            self.provider,
            self.model_dir,
            self.http_url,
            self.http_model,
            self.http_api,
            self.api_key,
            self.batch_size,
            self.timeout_ms,
            self.max_retries,
            self.cache_entries,
        )
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| ConfigError::Invalid {
            key: format!("embedding.{key}"),
            reason: reason.into(),
        };
        if !["local", "http"].contains(&self.provider.as_str()) {
            return Err(invalid("provider", "use local or http"));
        }
        if !["openai", "ollama"].contains(&self.http_api.as_str()) {
            return Err(invalid("http_api", "use openai or ollama"));
        }
        if !(self.http_url.starts_with("http://") || self.http_url.starts_with("https://")) {
            return Err(invalid(
                "http_url",
                "must start with http:// or https:// (e.g. http://127.0.0.1:11434)",
            ));
        }
        if self.http_model.trim().is_empty() {
            return Err(invalid(
                "http_model",
                "name the model the server should use",
            ));
        }
        if !(1..=MAX_EMBEDDING_BATCH).contains(&self.batch_size) {
            return Err(invalid(
                "batch_size",
                &format!("must be 1 to {MAX_EMBEDDING_BATCH}"),
            ));
        }
        if self.timeout_ms == 0 {
            return Err(invalid("timeout_ms", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::repo::Config;

    #[test]
    fn embedding_settings_come_from_the_environment_and_are_checked() {
        let config = Config::default()
            .with_vars(|n| match n {
                "IPVEC_EMBEDDING_MODEL_DIR" => Some("/models/minilm".to_string()),
                "IPVEC_EMBEDDING_BATCH_SIZE" => Some("8".to_string()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.embedding.model_dir, "/models/minilm");
        assert_eq!(config.embedding.batch_size, 8);
        for (var, value, key) in [
            ("IPVEC_EMBEDDING_PROVIDER", "magic", "embedding.provider"),
            ("IPVEC_EMBEDDING_HTTP_API", "grpc", "embedding.http_api"),
            (
                "IPVEC_EMBEDDING_HTTP_URL",
                "localhost:1",
                "embedding.http_url",
            ),
            ("IPVEC_EMBEDDING_BATCH_SIZE", "0", "embedding.batch_size"),
            ("IPVEC_EMBEDDING_TIMEOUT_MS", "0", "embedding.timeout_ms"),
        ] {
            let err = Config::default()
                .with_vars(|n| (n == var).then(|| value.to_string()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{var}={value}: {err}");
        }
    }
}
