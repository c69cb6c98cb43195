//! The few numbers the dashboard reads from `GET /metrics` (Prometheus / OpenMetrics text),
//! and the rates between two scrapes.

/// Totals from one scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MetricsSample {
    /// Operations done since the daemon started (`ipvec_operations_total`, all labels).
    pub operations: f64,
    /// Searches done (`ipvec_operation_duration_seconds_count{operation="search"}`).
    pub searches: f64,
    /// Seconds spent in them (`…_sum{operation="search"}`).
    pub search_seconds: f64,
    /// Bytes in the block store (`ipvec_store_bytes`).
    pub store_bytes: f64,
}

/// Reads the totals out of a metrics text; lines it does not know are skipped.
pub fn parse(text: &str) -> MetricsSample {
    let mut sample = MetricsSample::default();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((name, labels, value)) = split_sample(line) else {
            continue;
        };
        let search = || labels.contains("operation=\"search\"");
        match name {
            "ipvec_operations_total" => sample.operations += value,
            "ipvec_operation_duration_seconds_count" if search() => sample.searches += value,
            "ipvec_operation_duration_seconds_sum" if search() => sample.search_seconds += value,
            "ipvec_store_bytes" => sample.store_bytes = value,
            _ => {}
        }
    }
    sample
}

/// `name{labels} value [timestamp]` → (name, labels, value).
fn split_sample(line: &str) -> Option<(&str, &str, f64)> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = open + line[open..].find('}')?;
            (&line[..open], &line[open + 1..close], &line[close + 1..])
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, "", rest)
        }
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name.trim(), labels, value))
}

/// What changed between two scrapes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Mean search latency in milliseconds over the interval (None: no searches in it).
    pub search_ms: Option<f64>,
    /// Store growth in bytes per second (0 when it shrank).
    pub store_bytes_per_sec: f64,
}

/// Rates from an earlier and a later scrape `seconds` apart; None when the counters went
/// back (the daemon restarted) or no time passed.
pub fn rates(before: &MetricsSample, after: &MetricsSample, seconds: f64) -> Option<Rates> {
    if seconds <= 0.0 || after.operations < before.operations || after.searches < before.searches {
        return None;
    }
    let searches = after.searches - before.searches;
    Some(Rates {
        ops_per_sec: (after.operations - before.operations) / seconds,
        search_ms: (searches > 0.0)
            .then(|| (after.search_seconds - before.search_seconds) / searches * 1000.0),
        store_bytes_per_sec: ((after.store_bytes - before.store_bytes) / seconds).max(0.0),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const TEXT: &str = r#"# HELP ipvec_operations Operations done.
# TYPE ipvec_operations counter
ipvec_operations_total{operation="search",collection="docs"} 12
ipvec_operations_total{operation="upsert",collection="docs"} 3
# TYPE ipvec_operation_duration_seconds histogram
ipvec_operation_duration_seconds_sum{operation="search",collection="docs"} 0.024
ipvec_operation_duration_seconds_count{operation="search",collection="docs"} 12
ipvec_operation_duration_seconds_bucket{le="0.005",operation="search",collection="docs"} 12
ipvec_operation_duration_seconds_sum{operation="upsert",collection="docs"} 1.5
ipvec_operation_duration_seconds_count{operation="upsert",collection="docs"} 3
ipvec_store_bytes 4096
# EOF
"#;

    #[test]
    fn totals_from_a_scrape() {
        let s = parse(TEXT);
        assert_eq!(s.operations, 15.0);
        assert_eq!(s.searches, 12.0);
        assert!((s.search_seconds - 0.024).abs() < 1e-9);
        assert_eq!(s.store_bytes, 4096.0);
    }

    #[test]
    fn rates_between_scrapes() {
        let before = parse(TEXT);
        let after = MetricsSample {
            operations: 35.0,
            searches: 22.0,
            search_seconds: 0.044,
            store_bytes: 8192.0,
        };
        let r = rates(&before, &after, 2.0).unwrap();
        assert_eq!(r.ops_per_sec, 10.0);
        assert!((r.search_ms.unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(r.store_bytes_per_sec, 2048.0);
        assert_eq!(rates(&before, &before, 1.0).unwrap().search_ms, None);
        // A restarted daemon starts its counters again.
        assert_eq!(rates(&after, &before, 1.0), None);
    }
}
