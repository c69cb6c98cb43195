//! Rate limits, token roles and quotas.
//!
//! # Layout
//! - [`bucket`]: keyed token buckets with time passed in (sans-io), the one core every rate
//!   limit of the node is made of.
//! - [`peers`]: per-peer rates of the peer-to-peer protocols (head requests, Bitswap wants;
//!   federated searches keep their own strikes and bans in `net::search` on the same core).
//! - [`tokens`]: API tokens with roles (read, write) stored hashed in `keys/tokens.json`, and
//!   which token created each collection.
//! - [`callers`]: the HTTP API's side: whether a route reads or writes, who calls, and each
//!   caller's read and write budgets.
//! - [`quota`]: per-collection and per-token quotas, checked before a write is logged.

pub mod bucket;
pub mod callers;
pub mod peers;
pub mod quota;
pub mod tokens;
