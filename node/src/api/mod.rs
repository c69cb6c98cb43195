//! The node's HTTP front end: the daemon that serves the operations of [`crate::ops`] as
//! HTTP/JSON ([`server`]), and the client the CLI uses to reach a running daemon ([`Client`]).
//! The operations themselves live in [`crate::ops`]; this module only speaks HTTP.
//!
//! # Layout
//! - [`types`]: request and response bodies (JSON): [`ipvec_protocol::api`], named here.
//! - [`error`]: [`ApiError`], an HTTP status, a stable code and a message; the one place an
//!   [`ops::Error`](crate::ops::Error) gets its HTTP status.
//! - `extract`: request bodies, path parameters and query strings, refused as [`ApiError`]s.
//! - [`server`]: axum routes, body limits, metrics middleware, OpenAPI, graceful shutdown.
//! - `openapi`: the bearer scheme and the refusals every operation of the document may answer.
//! - [`guard`]: what is checked before a handler runs: host, origin, body type, token,
//!   and a free slot for the kind of request.
//! - [`client`]: [`Client`], the same operations over HTTP (it implements
//!   [`Operations`](crate::ops::Operations)), reading the daemon's error bodies back into
//!   [`ops::Error`](crate::ops::Error).
//! - [`logs`]: recent log events for `GET /v1/logs` (a `tracing` layer).

pub mod client;
pub mod error;
mod extract;
pub mod guard;
pub mod logs;
mod openapi;
pub mod server;
pub mod types;

pub use client::{ready_blocking, Client, ExportTarget};
pub use error::ApiError;
