//! The node's API: its operations ([`Node`]), the HTTP/JSON daemon that serves them
//! ([`server`]), and the client the CLI uses to reach a running daemon ([`Client`]).
//!
//! # Layout
//! - [`types`]: request and response bodies (JSON), shared by all three.
//! - [`error`]: [`ApiError`], an HTTP status, a stable code and a message.
//! - [`service`]: [`Node`], the operations on an open repository.
//! - [`server`]: axum routes, body limits, metrics middleware, OpenAPI, graceful shutdown.
//! - `openapi`: the bearer scheme and the refusals every operation of the document may answer.
//! - [`guard`]: what is checked before a handler runs: host, origin, body type, token,
//!   and a free slot for the kind of request.
//! - `ids`: the open collections by id, for judging gossip without their locks.
//! - `lifecycle`: opening, creating and dropping a collection name, one at a time per name.
//! - [`replicate`]: fetching other nodes' collections, answering head requests.
//! - [`status`]: what this node knows of its collections' replication.
//! - [`client`]: [`Client`], the same operations over HTTP.
//! - [`metrics`]: the Prometheus registry.
//! - [`jobs`]: long operations in flight and their progress.
//! - [`logs`]: recent log events for `GET /v1/logs` (a `tracing` layer).

pub mod client;
pub mod error;
pub mod guard;
mod ids;
pub mod jobs;
mod lifecycle;
pub mod logs;
pub mod metrics;
mod openapi;
pub mod replicate;
pub mod server;
pub mod service;
pub mod status;
pub mod types;

pub use client::{ready_blocking, Client, ExportTarget};
pub use error::ApiError;
pub use service::Node;
