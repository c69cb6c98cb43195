//! What the HTTP API sends and receives, as JSON: the types live in the vocabulary crate
//! ([`ipvec_protocol::api`]), shared with the dashboard; this module names them for the
//! node's code.

pub use ipvec_protocol::api::*;
