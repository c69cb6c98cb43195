//! Rates derived from successive `/metrics` scrapes, kept as histories for the sparklines.

use super::history::History;
use crate::api::metrics::{rates, MetricsSample, Rates};

/// The node's rates over time.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    last: Option<(f64, MetricsSample)>,
    /// Operations per second.
    pub ops_per_sec: History,
    /// Mean search latency per interval, in milliseconds.
    pub search_ms: History,
    /// Store growth, in bytes per second.
    pub store_bytes_per_sec: History,
    /// The latest rates.
    pub latest: Option<Rates>,
}

impl Stats {
    /// Records a scrape taken at `at_secs` (any monotonic clock, in seconds).
    pub fn record(&mut self, at_secs: f64, sample: MetricsSample) {
        if let Some((then, before)) = self.last {
            if let Some(r) = rates(&before, &sample, at_secs - then) {
                self.ops_per_sec.push(Some(r.ops_per_sec));
                self.search_ms.push(r.search_ms);
                self.store_bytes_per_sec.push(Some(r.store_bytes_per_sec));
                self.latest = Some(r);
            }
        }
        self.last = Some((at_secs, sample));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn rates_start_at_the_second_scrape() {
        let mut stats = Stats::default();
        let mut s = MetricsSample::default();
        stats.record(0.0, s);
        assert!(stats.ops_per_sec.is_empty());
        s.operations = 4.0;
        s.searches = 2.0;
        s.search_seconds = 0.01;
        stats.record(2.0, s);
        assert_eq!(stats.ops_per_sec.last(), Some(2.0));
        assert!((stats.search_ms.last().unwrap() - 5.0).abs() < 1e-9);
        stats.record(3.0, s);
        assert_eq!(stats.ops_per_sec.last(), Some(0.0));
        assert_eq!(stats.search_ms.tail(1).next(), Some(None));
    }
}
