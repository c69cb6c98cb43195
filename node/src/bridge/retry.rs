//! Sending requests to a vector store's server: retried, through its circuit breaker.
//!
//! The decisions live in [`crate::outbound`]: [`Backoff`] says how long to wait after a
//! failure (a throttled answer, 429 or 503, waits what the server asks; a server error or
//! a failed connection an exponentially growing, jittered interval), and the server's
//! breaker (keyed by its URL in the shared [`Outbound`] handle) refuses requests at once
//! after repeated failures until a trial succeeds. [`send`] is the thin adapter that sends
//! with `reqwest` and waits with `tokio::time`, so tests run it under a paused clock.

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};

use super::{BridgeError, Result};
use crate::outbound::{Backoff, Failure, Outbound, RetryPolicy, TargetKind};

/// The retry policy of bridge requests: the `[outbound]` settings this process was
/// started with.
pub fn policy() -> RetryPolicy {
    Outbound::shared().retry_policy()
}

/// Reads a `Retry-After` header given in seconds (the HTTP-date form is not used by the
/// servers bridged here, and is treated as absent).
pub fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let seconds: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// Sends the request `build` makes to the server at `server` (its base URL, the key of its
/// circuit breaker), again after throttling, server errors and broken connections, as
/// `policy` allows. Returns the first answer that is neither (a success or a 4xx for the
/// caller to read); `what` names the request in the error when retries run out or the
/// server's breaker is open.
pub async fn send(
    policy: RetryPolicy,
    server: &str,
    what: &str,
    build: impl Fn() -> RequestBuilder,
) -> Result<Response> {
    let outbound = Outbound::shared();
    let open = |e: crate::outbound::OpenBreaker| {
        BridgeError::remote(format!(
            "{what}: {e}; check that the server is up, then run the move again (with \
             --resume if it kept a checkpoint)"
        ))
    };
    outbound.begin(TargetKind::Bridge, server).map_err(open)?;
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
                    outbound.succeeded(TargetKind::Bridge, server);
                    return Ok(response);
                }
            }
            Err(e) => (Failure::Transient, format!("could not be reached: {e}")),
        };
        // A throttling server is up: only errors count against its breaker.
        if failure == Failure::Transient {
            outbound.failed(TargetKind::Bridge, server);
        }
        match backoff.next_wait(failure) {
            Some(wait) => {
                // When this request's failures opened the breaker, it waits for the trial.
                let wait = wait.max(outbound.wait(TargetKind::Bridge, server));
                tracing::debug!(what, attempt = backoff.attempts(), ?wait, %description, "retrying");
                tokio::time::sleep(wait).await;
                outbound.begin(TargetKind::Bridge, server).map_err(open)?;
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
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
