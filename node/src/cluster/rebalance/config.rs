//! The rebalancer's settings.

use std::time::Duration;

/// How a [`Rebalancer`](super::Rebalancer) works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Members that hold each shard (the collection's replication factor).
    pub replication: usize,
    /// Shard fetches running at once.
    pub max_fetches: usize,
    /// How long a peer's report that it holds a shard is believed after it arrives.
    pub report_ttl: Duration,
    /// How often this member announces each shard it holds again; shorter than
    /// `report_ttl`, so that its announcements stay believed.
    pub announce_every: Duration,
    /// The anti-entropy period: a sweep of the held shards for co-holders at other roots,
    /// and the least time between two reconciles of a shard with the same peer.
    pub reconcile_every: Duration,
    /// How long after a failed fetch the shard is fetched again.
    pub retry_after: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            replication: 3,
            max_fetches: 4,
            report_ttl: Duration::from_secs(300),
            announce_every: Duration::from_secs(120),
            reconcile_every: Duration::from_secs(60),
            retry_after: Duration::from_secs(30),
        }
    }
}

/// What is wrong with a [`Config`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting that must be positive is zero.
    #[error("rebalance setting `{0}` is zero; give it a positive value")]
    Zero(&'static str),
    /// Announcements would lapse before they are renewed.
    #[error(
        "rebalance announce_every ({announce_every:?}) must be shorter than report_ttl \
         ({report_ttl:?}), or this member's reports lapse between announcements"
    )]
    AnnounceTooRare {
        /// The announcement period.
        announce_every: Duration,
        /// How long a report is believed.
        report_ttl: Duration,
    },
}

impl Config {
    /// Checks the settings work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let zero = [
            ("replication", self.replication == 0),
            ("max_fetches", self.max_fetches == 0),
            ("report_ttl", self.report_ttl.is_zero()),
            ("announce_every", self.announce_every.is_zero()),
            ("reconcile_every", self.reconcile_every.is_zero()),
            ("retry_after", self.retry_after.is_zero()),
        ];
        if let Some((name, _)) = zero.into_iter().find(|(_, zero)| *zero) {
            return Err(ConfigError::Zero(name));
        }
        if self.announce_every >= self.report_ttl {
            return Err(ConfigError::AnnounceTooRare {
                announce_every: self.announce_every,
                report_ttl: self.report_ttl,
            });
        }
        Ok(())
    }
}
