//! The `[outbound]` section of the repository's configuration: how calls to other machines
//! (peers, embedding servers, the vector stores bridged) are retried, and when a target's
//! circuit breaker opens.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::ConfigError;
use crate::outbound::{BreakerPolicy, RetryPolicy};

/// Retries and circuit breakers of outbound calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Failures in a row that open a target's breaker.
    pub breaker_failures: u32,
    /// How long a breaker first stays open, in milliseconds.
    pub breaker_open_ms: u64,
    /// The longest a breaker stays open, in milliseconds (the time doubles after each
    /// failed trial up to it).
    pub breaker_max_open_ms: u64,
    /// Each reopening is shortened by a random share of up to this many percent.
    pub breaker_jitter_percent: u32,
    /// How long a half-open breaker's trial call holds other calls off, in milliseconds.
    pub breaker_trial_timeout_ms: u64,
    /// How often a bridge request that failed, timed out or was throttled is tried again.
    pub max_retries: u32,
    /// The first pause before a retry, in milliseconds (doubled after each, jittered).
    pub retry_base_ms: u64,
    /// The longest pause before a retry, in milliseconds.
    pub retry_max_ms: u64,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        let breaker = BreakerPolicy::default();
        let retry = RetryPolicy::default();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            breaker_failures: breaker.failures_to_open,
            breaker_open_ms: ms(breaker.first_open),
            breaker_max_open_ms: ms(breaker.max_open),
            breaker_jitter_percent: breaker.jitter_percent,
            breaker_trial_timeout_ms: ms(breaker.trial_timeout),
            max_retries: retry.max_attempts - 1,
            retry_base_ms: ms(retry.base_delay),
            retry_max_ms: ms(retry.max_delay),
        }
    }
}

impl OutboundConfig {
    /// The breaker policy these settings give.
    pub fn breaker(&self) -> BreakerPolicy {
        BreakerPolicy {
            failures_to_open: self.breaker_failures,
            first_open: Duration::from_millis(self.breaker_open_ms),
            max_open: Duration::from_millis(self.breaker_max_open_ms),
            jitter_percent: self.breaker_jitter_percent,
            trial_timeout: Duration::from_millis(self.breaker_trial_timeout_ms),
        }
    }

    /// The retry policy these settings give (`max_retries` retries; the total wait of one
    /// call is bounded as [`RetryPolicy::default`] bounds it).
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_retries.saturating_add(1),
            base_delay: Duration::from_millis(self.retry_base_ms),
            max_delay: Duration::from_millis(self.retry_max_ms),
            ..RetryPolicy::default()
        }
    }

    /// The `[outbound]` section of the file `ipvec init` writes, every option with its
    /// meaning, ending in a blank line.
    pub fn to_documented_toml(&self) -> String {
        format!(
            "[outbound]\n\
             # Calls to peers, embedding servers and bridged vector stores. A target's circuit\n\
             # breaker opens after breaker_failures failures in a row: calls to it then fail at\n\
             # once (peers are skipped) for breaker_open_ms, then one trial call goes through;\n\
             # if it fails the breaker opens again for twice as long (up to breaker_max_open_ms,\n\
             # less up to breaker_jitter_percent at random). A trial holds other calls off for\n\
             # at most breaker_trial_timeout_ms.\n\
             breaker_failures = {}\n\
             breaker_open_ms = {}\n\
             breaker_max_open_ms = {}\n\
             breaker_jitter_percent = {}\n\
             breaker_trial_timeout_ms = {}\n\
             # Retries of a bridge request that failed or was throttled (embedding requests use\n\
             # embedding.max_retries), with pauses from retry_base_ms doubling up to retry_max_ms.\n\
             max_retries = {}\n\
             retry_base_ms = {}\n\
             retry_max_ms = {}\n\
             \n",
            self.breaker_failures,
            self.breaker_open_ms,
            self.breaker_max_open_ms,
            self.breaker_jitter_percent,
            self.breaker_trial_timeout_ms,
            self.max_retries,
            self.retry_base_ms,
            self.retry_max_ms,
        )
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| ConfigError::Invalid {
            key: format!("outbound.{key}"),
            reason: reason.into(),
        };
        if self.breaker_failures == 0 {
            return Err(invalid("breaker_failures", "must be at least 1"));
        }
        if self.breaker_open_ms == 0 {
            return Err(invalid("breaker_open_ms", "must be at least 1"));
        }
        if self.breaker_max_open_ms < self.breaker_open_ms {
            return Err(invalid(
                "breaker_max_open_ms",
                "must be at least outbound.breaker_open_ms",
            ));
        }
        if self.breaker_jitter_percent > 100 {
            return Err(invalid("breaker_jitter_percent", "must be 0 to 100"));
        }
        if self.breaker_trial_timeout_ms == 0 {
            return Err(invalid("breaker_trial_timeout_ms", "must be at least 1"));
        }
        if self.retry_max_ms < self.retry_base_ms {
            return Err(invalid(
                "retry_max_ms",
                "must be at least outbound.retry_base_ms",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_policies_defaults_and_bad_values_name_their_key() {
        let config = OutboundConfig::default();
        assert_eq!(config.breaker(), BreakerPolicy::default());
        assert_eq!(config.retry(), RetryPolicy::default());
        assert!(config.validate().is_ok());
        let bad = OutboundConfig {
            breaker_max_open_ms: 10,
            ..OutboundConfig::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("outbound.breaker_max_open_ms"), "{err}");
        let bad = OutboundConfig {
            breaker_failures: 0,
            ..OutboundConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
