//! Embeddings from an HTTP server: OpenAI-compatible (`POST {url}/v1/embeddings`) or
//! Ollama (`POST {url}/api/embed`).
//!
//! Each request has a deadline; one that times out, cannot connect, or is answered 5xx is
//! tried again after a pause that doubles each time (the shared [`Backoff`], jittered), and
//! one answered 429 after the `Retry-After` seconds the server asks for. The endpoint has a
//! circuit breaker (in the shared [`Outbound`] handle): after repeated failures, requests
//! fail at once with [`EmbedError::BreakerOpen`] until its trial request succeeds. Pauses,
//! deadlines and the breaker use tokio's clock, so tests run them in virtual time.

use std::{sync::OnceLock, time::Duration};

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{error::truncate, EmbedError, Embedder, ModelInfo};
use crate::{
    outbound::{Backoff, Failure, Outbound, RetryPolicy, TargetKind},
    repo::EmbeddingConfig,
};

/// Characters of an answer quoted in an error.
const QUOTED_CHARS: usize = 300;

/// The first pause before a retry (at most; half of it at least); each later one doubles,
/// up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The longest pause before a retry, also the most a `Retry-After` is honoured for.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The API an embedding server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpApi {
    /// `POST /v1/embeddings` with `{"model", "input": [...]}`, answering
    /// `{"data": [{"index", "embedding"}]}`.
    OpenAi,
    /// `POST /api/embed` with `{"model", "input": [...]}`, answering `{"embeddings": [...]}`.
    Ollama,
}

impl HttpApi {
    fn path(self) -> &'static str {
        match self {
            Self::OpenAi => "/v1/embeddings",
            Self::Ollama => "/api/embed",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Ollama => "ollama",
        }
    }
}

/// Where and how to ask for embeddings.
#[derive(Clone)]
pub struct HttpSettings {
    /// Base URL, e.g. `http://127.0.0.1:11434`.
    pub url: String,
    /// The model asked for.
    pub model: String,
    /// The API the server speaks.
    pub api: HttpApi,
    /// Bearer token, if the server wants one.
    pub api_key: Option<String>,
    /// Texts per request.
    pub batch_size: usize,
    /// How long one request may take.
    pub timeout: Duration,
    /// How often a failed request is tried again.
    pub max_retries: u32,
}

impl std::fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSettings")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api", &self.api)
            .field("api_key", &self.api_key.as_ref().map(|_| "(set)"))
            .field("batch_size", &self.batch_size)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl HttpSettings {
    /// The settings the `[embedding]` config section gives.
    pub fn from_config(config: &EmbeddingConfig) -> Result<Self, EmbedError> {
        let api = match config.http_api.as_str() {
            "openai" => HttpApi::OpenAi,
            "ollama" => HttpApi::Ollama,
            other => {
                return Err(EmbedError::Config {
                    key: "embedding.http_api".into(),
                    reason: format!("{other:?} is not an API: use openai or ollama"),
                })
            }
        };
        Ok(Self {
            url: config.http_url.clone(),
            model: config.http_model.clone(),
            api,
            api_key: Some(config.api_key.trim().to_string()).filter(|k| !k.is_empty()),
            batch_size: usize::try_from(config.batch_size).unwrap_or(usize::MAX),
            timeout: Duration::from_millis(config.timeout_ms),
            max_retries: config.max_retries,
        })
    }
}

/// An embedding model served over HTTP.
#[derive(Debug)]
pub struct HttpEmbedder {
    settings: HttpSettings,
    endpoint: String,
    client: reqwest::Client,
    /// The length of the first vector received; later ones must match it.
    dimension: OnceLock<usize>,
    /// The breakers the endpoint's is kept in.
    outbound: Outbound,
}

/// How one request went.
enum Attempt {
    Done(Vec<Vec<f32>>),
    /// Worth trying again: throttled (429, waiting its `Retry-After` if given), or failed
    /// (5xx, a timeout, no connection).
    Retry {
        reason: String,
        failure: Failure,
    },
    Fail(EmbedError),
}

#[derive(Deserialize)]
struct OpenAiAnswer {
    data: Vec<OpenAiItem>,
}

#[derive(Deserialize)]
struct OpenAiItem {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct OllamaAnswer {
    embeddings: Vec<Vec<f32>>,
}

impl HttpEmbedder {
    /// A client for the server the settings name.
    pub fn new(settings: HttpSettings) -> Result<Self, EmbedError> {
        let base = settings.url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(EmbedError::Config {
                key: "embedding.http_url".into(),
                reason: format!("{:?} must start with http:// or https://", settings.url),
            });
        }
        let endpoint = format!("{base}{}", settings.api.path());
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| EmbedError::Config {
                key: "embedding.http_url".into(),
                reason: format!("cannot make an HTTP client: {e}"),
            })?;
        Ok(Self {
            settings,
            endpoint,
            client,
            dimension: OnceLock::new(),
            outbound: Outbound::shared().clone(),
        })
    }

    /// This client with its endpoint's breaker kept in `outbound` rather than the
    /// process-wide handle.
    pub fn with_outbound(mut self, outbound: Outbound) -> Self {
        self.outbound = outbound;
        self
    }

    /// How requests are retried: `embedding.max_retries` times, pauses from
    /// [`FIRST_BACKOFF`] doubling up to [`MAX_BACKOFF`].
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.settings.max_retries.saturating_add(1),
            base_delay: FIRST_BACKOFF,
            max_delay: MAX_BACKOFF,
            max_total_wait: Duration::MAX,
        }
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn attempt(&self, texts: &[String]) -> Attempt {
        let body = serde_json::json!({ "model": self.settings.model, "input": texts });
        let mut request = self.client.post(&self.endpoint).json(&body);
        if let Some(key) = &self.settings.api_key {
            request = request.bearer_auth(key);
        }
        let exchange = async {
            let response = request.send().await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = response.text().await?;
            Ok::<_, reqwest::Error>((status, retry_after, text))
        };
        let (status, retry_after, text) =
            match tokio::time::timeout(self.settings.timeout, exchange).await {
                Err(_) => {
                    return Attempt::Retry {
                        reason: format!("no answer within {:?}", self.settings.timeout),
                        failure: Failure::Transient,
                    }
                }
                Ok(Err(e)) => {
                    return Attempt::Retry {
                        reason: e.to_string(),
                        failure: Failure::Transient,
                    }
                }
                Ok(Ok(answer)) => answer,
            };
        if status.as_u16() == 429 || status.is_server_error() {
            let failure = if status.as_u16() == 429 {
                Failure::Throttled(retry_after.map(|after| after.min(MAX_BACKOFF)))
            } else {
                Failure::Transient
            };
            return Attempt::Retry {
                reason: format!("{status}: {}", truncate(&text, QUOTED_CHARS)),
                failure,
            };
        }
        if !status.is_success() {
            return Attempt::Fail(EmbedError::Status {
                endpoint: self.endpoint.clone(),
                status: status.as_u16(),
                body: truncate(&text, QUOTED_CHARS),
            });
        }
        match self.parse(&text, texts.len()) {
            Ok(vectors) => Attempt::Done(vectors),
            Err(e) => Attempt::Fail(e),
        }
    }

    fn parse(&self, text: &str, sent: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        let bad = |reason: String| EmbedError::BadResponse {
            endpoint: self.endpoint.clone(),
            reason,
            body: truncate(text, QUOTED_CHARS),
        };
        let vectors = match self.settings.api {
            HttpApi::OpenAi => {
                let mut answer: OpenAiAnswer =
                    serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
                answer.data.sort_by_key(|item| item.index);
                if answer.data.iter().enumerate().any(|(i, d)| d.index != i) {
                    return Err(bad("its indexes are not 0, 1, 2, …".into()));
                }
                answer.data.into_iter().map(|d| d.embedding).collect()
            }
            HttpApi::Ollama => {
                let answer: OllamaAnswer =
                    serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
                answer.embeddings
            }
        };
        if vectors.len() != sent {
            return Err(EmbedError::Count {
                model: self.model().id(),
                sent,
                got: vectors.len(),
            });
        }
        for v in &vectors {
            let expected = *self.dimension.get_or_init(|| v.len());
            if v.len() != expected || v.is_empty() {
                return Err(EmbedError::DimensionMismatch {
                    model: self.model().id(),
                    expected,
                    got: v.len(),
                });
            }
        }
        Ok(vectors)
    }
}

impl Embedder for HttpEmbedder {
    fn model(&self) -> ModelInfo {
        ModelInfo {
            provider: self.settings.api.name().into(),
            model: self.settings.model.clone(),
            dimension: self.dimension.get().copied().unwrap_or(0),
            normalized: false,
        }
    }

    fn batch_size(&self) -> usize {
        self.settings.batch_size.max(1)
    }

    fn embed_batch<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            if texts.is_empty() {
                return Ok(Vec::new());
            }
            let target = self.endpoint.as_str();
            self.outbound.begin(TargetKind::Embedding, target)?;
            let mut backoff = Backoff::new(self.retry_policy(), rand::random());
            loop {
                let (reason, failure) = match self.attempt(texts).await {
                    Attempt::Done(vectors) => {
                        self.outbound.succeeded(TargetKind::Embedding, target);
                        return Ok(vectors);
                    }
                    Attempt::Fail(e) => {
                        // It answered: up, if unhappy with this request.
                        self.outbound.succeeded(TargetKind::Embedding, target);
                        return Err(e);
                    }
                    Attempt::Retry { reason, failure } => (reason, failure),
                };
                if failure == Failure::Transient {
                    self.outbound.failed(TargetKind::Embedding, target);
                }
                let Some(pause) = backoff.next_wait(failure) else {
                    return Err(EmbedError::Unreachable {
                        endpoint: self.endpoint.clone(),
                        attempts: backoff.attempts(),
                        reason,
                    });
                };
                // When this request's failures opened the breaker, it waits for the trial.
                let pause = pause.max(self.outbound.wait(TargetKind::Embedding, target));
                tracing::debug!(endpoint = %self.endpoint, attempts = backoff.attempts(), %reason, ?pause, "retrying an embedding request");
                tokio::time::sleep(pause).await;
                self.outbound.begin(TargetKind::Embedding, target)?;
            }
        })
    }
}
