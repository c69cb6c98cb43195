//! Retrying requests to a vector store's server: when to try again and how long to wait.
//!
//! [`Backoff`] is the whole decision, without a clock or a socket: told how an attempt
//! failed, it answers with the wait before the next one, or `None` when the attempts or the
//! total wait are spent. A throttled answer (429, or 503 with `Retry-After`) waits what the
//! server asks; a server error or a failed connection waits an exponentially growing,
//! jittered interval. [`send`] is the thin adapter that sends with `reqwest` and waits with
//! `tokio::time`, so tests run it under a paused clock.

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};

use super::{BridgeError, Result};

/// How persistent a client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The longest total wait across all retries of one request.
    pub max_total_wait: Duration,
    /// The first back-off interval after a server error; doubled after each.
    pub base_delay: Duration,
    /// The longest single back-off interval (a `Retry-After` may ask for more, within
    /// `max_total_wait`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            max_total_wait: Duration::from_secs(120),
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// How an attempt failed, as far as retrying cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The server asked the client to slow down (429, or 503), waiting this long if it
    /// said.
    Throttled(Option<Duration>),
    /// A server error (5xx) or a connection that failed or broke.
    Transient,
}

/// The retry state of one request.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    attempts: u32,
    waited: Duration,
    /// The jitter's random state (SplitMix64): seeded, so a run can be repeated.
    state: u64,
}

impl Backoff {
    /// The state before the first attempt; `seed` drives the jitter.
    pub fn new(policy: RetryPolicy, seed: u64) -> Self {
        Self {
            policy,
            attempts: 1,
            waited: Duration::ZERO,
            state: seed,
        }
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The wait before the next attempt after `failure`, or `None` to give up.
    pub fn next_wait(&mut self, failure: Failure) -> Option<Duration> {
        if self.attempts >= self.policy.max_attempts {
            return None;
        }
        let wait = match failure {
            Failure::Throttled(Some(asked)) => asked,
            Failure::Throttled(None) | Failure::Transient => {
                let exponent = (self.attempts - 1).min(16);
                let full = self
                    .policy
                    .base_delay
                    .saturating_mul(1 << exponent)
                    .min(self.policy.max_delay);
                // "Equal jitter": half the interval fixed, half drawn at random.
                let half = full / 2;
                let fraction = (self.next_random() >> 11) as f64 / (1u64 << 53) as f64;
                half + half.mul_f64(fraction)
            }
        };
        if self.waited + wait > self.policy.max_total_wait {
            return None;
        }
        self.waited += wait;
        self.attempts += 1;
        Some(wait)
    }

    fn next_random(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Reads a `Retry-After` header given in seconds (the HTTP-date form is not used by the
/// servers bridged here, and is treated as absent).
pub fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let seconds: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// Sends the request `build` makes, again after throttling, server errors and broken
/// connections, as `policy` allows. Returns the first answer that is neither (a success or
/// a 4xx for the caller to read); `what` names the request in the error when retries run
/// out.
pub async fn send(
    policy: RetryPolicy,
    what: &str,
    build: impl Fn() -> RequestBuilder,
) -> Result<Response> {
    let mut backoff = Backoff::new(policy, rand::random());
    loop {
        let (failure, description) = match build().send().await {
            Ok(response) => {
                let status = response.status();
                if status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::SERVICE_UNAVAILABLE
                {
                    (
                        Failure::Throttled(retry_after(&response)),
                        format!("answered {status}"),
                    )
                } else if status.is_server_error() {
                    let body = response.text().await.unwrap_or_default();
                    (
                        Failure::Transient,
                        format!("answered {status}: {}", truncate(&body, 300)),
                    )
                } else {
                    return Ok(response);
                }
            }
            Err(e) => (Failure::Transient, format!("could not be reached: {e}")),
        };
        match backoff.next_wait(failure) {
            Some(wait) => {
                tracing::debug!(what, attempt = backoff.attempts(), ?wait, %description, "retrying");
                tokio::time::sleep(wait).await;
            }
            None => {
                return Err(BridgeError::remote(format!(
                    "{what}: the server {description} (after {} attempts); check that it is \
                     up and not overloaded, then run the move again (with --resume if it kept \
                     a checkpoint)",
                    backoff.attempts()
                )))
            }
        }
    }
}

/// The HTTP client of the server bridges: a bounded connect and request time, so a server
/// that stops answering fails the move instead of stalling it.
pub fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(300))
        .build()
        .map_err(|e| BridgeError::remote(format!("cannot set up an HTTP client: {e}")))
}

/// At most `max` bytes of `text`, cut at a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_waits_what_the_server_asks_within_the_total() {
        let policy = RetryPolicy {
            max_attempts: 10,
            max_total_wait: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        let mut b = Backoff::new(policy, 1);
        let asked = Failure::Throttled(Some(Duration::from_secs(2)));
        assert_eq!(b.next_wait(asked), Some(Duration::from_secs(2)));
        assert_eq!(b.next_wait(asked), Some(Duration::from_secs(2)));
        // A third would pass the 5 s bound.
        assert_eq!(b.next_wait(asked), None);
    }

    #[test]
    fn server_errors_back_off_exponentially_with_jitter_and_give_up() {
        let policy = RetryPolicy {
            max_attempts: 5,
            max_total_wait: Duration::from_secs(600),
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let mut b = Backoff::new(policy, 7);
        let waits: Vec<_> = std::iter::from_fn(|| b.next_wait(Failure::Transient)).collect();
        assert_eq!(waits.len(), 4, "five attempts make four waits");
        for (i, wait) in waits.iter().enumerate() {
            let full = Duration::from_millis(100 * (1 << i)).min(Duration::from_secs(1));
            assert!(*wait >= full / 2 && *wait <= full, "wait {i}: {wait:?}");
        }
        let mut other = Backoff::new(policy, 8);
        let other: Vec<_> = std::iter::from_fn(|| other.next_wait(Failure::Transient)).collect();
        assert_ne!(waits, other, "the jitter differs between seeds");
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
