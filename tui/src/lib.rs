//! The ipvec terminal dashboard (`ipvec tui`). It talks to a node only through the node's
//! HTTP API, so it never depends on the node's crate (the node depends on it).

use std::path::PathBuf;

/// Where the dashboard finds the daemon's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A fixed URL (`ipvec --api URL tui`).
    Url(String),
    /// The file a repository's daemon writes its URL into (`DIR/api`), read again at each
    /// reconnection, so a restarted daemon on another port is found.
    ApiFile(PathBuf),
}

/// Why the dashboard could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TuiError {
    /// The dashboard is not built yet.
    #[error("the terminal dashboard is not built yet")]
    NotBuilt,
}

/// Runs the dashboard until the user quits.
pub async fn run(
    endpoint: Endpoint,
    token: Option<String>,
    log_file: PathBuf,
) -> Result<(), TuiError> {
    let _ = (endpoint, token, log_file);
    Err(TuiError::NotBuilt)
}
