//! Latencies of a pass of requests, and their percentiles.

use std::time::Duration;

/// The latencies of one pass and its wall time.
pub struct Pass {
    pub wall: Duration,
    pub latencies: Vec<Duration>,
}

impl Pass {
    /// Requests answered per second.
    pub fn qps(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    /// The `p`-th latency (0 < p ≤ 1), in milliseconds.
    pub fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[i].as_secs_f64() * 1e3
    }
}
