//! The node's HTTP API as the dashboard sees it: its JSON, a client, the log stream's
//! server-sent events, and the few Prometheus metrics it turns into rates.

pub mod client;
pub mod metrics;
pub mod sse;
pub mod types;
