//! The ipvec terminal dashboard (`ipvec tui`): a node's identity, peers, collections (and
//! who holds each of a collection's shards), a search box and the live log, over the node's
//! HTTP API only. The node's crate depends on this one (for the `ipvec tui` command), never
//! the other way round, so the dashboard keeps its own copies of the JSON it reads.
//!
//! # Layout
//! - `api/`: the node's API from the outside — `types` (the JSON fields shown), `client`
//!   (requests with timeouts, the [`Endpoint`]), `sse` (the log stream's event parser),
//!   `metrics` (totals from `/metrics` and the rates between scrapes).
//! - `app/`: the dashboard's state without I/O — [`App`] takes [`Update`]s and keys, and
//!   returns the searches to run; `history`, `stats`, `log`, `search` and `shards` (the
//!   open shard map) are its parts.
//! - `ui/`: drawing [`App`] with ratatui, one file per view, plus `format` for numbers and
//!   `coverage` for what a search covered (drawn under its hits).
//! - `runtime`: the pollers (the node, the shard map on screen), the log follower, search
//!   tasks and the event loop.
//! - [`terminal`]: raw mode and the alternate screen, given back on exit and on panic.
//! - `logging`: the dashboard's own log, to a file.

pub mod api;
pub mod app;
mod logging;
mod runtime;
pub mod terminal;
pub mod ui;

pub use api::client::Endpoint;
pub use app::{App, Update};
pub use runtime::{run, REFRESH};

/// Why the dashboard stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TuiError {
    /// The terminal failed (it may not be a terminal at all).
    #[error("the terminal failed (ipvec tui needs an interactive terminal)")]
    Terminal(#[from] std::io::Error),
    /// The HTTP client could not be set up.
    #[error("{0}")]
    Http(api::client::ClientError),
}
