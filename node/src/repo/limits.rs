//! The `[limits]` section of the repository's configuration: request rates per API caller
//! and per peer, and quotas per token and per collection. Every rate is "a second" and 0
//! means unlimited; a burst is what a caller may spend at once after a quiet spell.

use serde::{Deserialize, Serialize};

use super::config::ConfigError;

/// Rates and quotas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Reads (GETs, searches, pages) one API token, or one client address when no token is
    /// sent, may make a second (0: unlimited).
    pub read_rate: u32,
    /// Reads one caller may make at once after a quiet spell.
    pub read_burst: u32,
    /// Writes (upserts, deletes, creates, imports, pins, gc, …) one caller may make a second
    /// (0: unlimited).
    pub write_rate: u32,
    /// Writes one caller may make at once after a quiet spell.
    pub write_burst: u32,
    /// Head requests (`/ipvec/head/1.0.0`) one peer may make a second, in bursts of twice as
    /// many (0: unlimited); more are closed unanswered.
    pub peer_head_rate: u32,
    /// Blocks and block presences one peer may want over Bitswap a second, in bursts of twice
    /// as many (0: unlimited); wants beyond that are answered DONT_HAVE (or not at all).
    pub peer_want_rate: u32,
    /// Most points a collection may hold; a write that would pass it is refused whole
    /// (0: unlimited).
    pub collection_max_points: u64,
    /// Most vector bytes (points × dimension × bytes per component) a collection may hold
    /// (0: unlimited).
    pub collection_max_bytes: u64,
    /// Most collections a token of `ipvec token create` may create (the admin token in
    /// keys/api.token has no quota; 0: unlimited).
    pub token_max_collections: u64,
    /// Most points the collections a token created may hold together (0: unlimited).
    pub token_max_points: u64,
    /// Most vector bytes the collections a token created may hold together (0: unlimited).
    pub token_max_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            read_rate: 10_000,
            read_burst: 20_000,
            write_rate: 2_000,
            write_burst: 4_000,
            peer_head_rate: 100,
            peer_want_rate: 10_000,
            collection_max_points: 0,
            collection_max_bytes: 0,
            token_max_collections: 0,
            token_max_points: 0,
            token_max_bytes: 0,
        }
    }
}

impl LimitsConfig {
    /// Refuses a burst of 0 under a rate that is on (nothing could ever pass).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (rate, burst, key) in [
            (self.read_rate, self.read_burst, "limits.read_burst"),
            (self.write_rate, self.write_burst, "limits.write_burst"),
        ] {
            if rate > 0 && burst == 0 {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    reason:
                        "must be at least 1 while its rate is on (set the rate to 0 for no limit)"
                            .into(),
                });
            }
        }
        Ok(())
    }

    /// The section as `ipvec init` writes it, each key with its meaning.
    pub fn to_documented_toml(&self) -> String {
        format!(
            "[limits]\n\
             # Requests a second per API token (per client address when no token is sent), reads\n\
             # (GETs, searches) and writes separately, and what may be spent at once after a quiet\n\
             # spell (0: unlimited). Over it: 429 with Retry-After.\n\
             read_rate = {}\n\
             read_burst = {}\n\
             write_rate = {}\n\
             write_burst = {}\n\
             # Head requests and Bitswap wants one peer may make a second, in bursts of twice as\n\
             # many (0: unlimited). Federated searches: p2p.search_rate_per_peer.\n\
             peer_head_rate = {}\n\
             peer_want_rate = {}\n\
             # Most points and vector bytes (points x dimension x bytes per component) a\n\
             # collection may hold (0: unlimited); a write that would pass it is refused whole.\n\
             collection_max_points = {}\n\
             collection_max_bytes = {}\n\
             # Quotas of each token made with `ipvec token create` over the collections it\n\
             # created (keys/api.token has none; 0: unlimited).\n\
             token_max_collections = {}\n\
             token_max_points = {}\n\
             token_max_bytes = {}\n\
             \n",
            self.read_rate,
            self.read_burst,
            self.write_rate,
            self.write_burst,
            self.peer_head_rate,
            self.peer_want_rate,
            self.collection_max_points,
            self.collection_max_bytes,
            self.token_max_collections,
            self.token_max_points,
            self.token_max_bytes,
        )
    }
}
