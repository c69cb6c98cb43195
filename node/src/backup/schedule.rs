//! When the daemon takes its next scheduled backup: `backup.every` parsed, and the wait
//! computed from the newest backup's time, with the time passed in.

use std::time::Duration;

/// Parses `backup.every`: whole seconds (`3600`) or a number with a unit (`90s`, `30m`,
/// `6h`, `1d`). Empty or `0`: no schedule (`None`).
pub fn parse_every(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?}: write seconds (3600) or a number and s, m, h or d (6h)"
            ))
        }
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: write seconds (3600) or a number and s, m, h or d (6h)"))?;
    Ok((n > 0).then(|| Duration::from_secs(n.saturating_mul(scale))))
}

/// How long to wait before the next backup, `every` after the newest one (taken at
/// `last`, seconds since the epoch; `None`: there is none yet, so now), at time `now`.
pub fn wait_before_next(last: Option<u64>, every: Duration, now: u64) -> Duration {
    match last {
        None => Duration::ZERO,
        Some(last) => {
            let due = last.saturating_add(every.as_secs());
            Duration::from_secs(due.saturating_sub(now))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reads_seconds_and_units() {
        assert_eq!(parse_every(""), Ok(None));
        assert_eq!(parse_every("0"), Ok(None));
        assert_eq!(parse_every("0h"), Ok(None));
        assert_eq!(parse_every("3600"), Ok(Some(Duration::from_secs(3600))));
        assert_eq!(parse_every("90s"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(parse_every("30m"), Ok(Some(Duration::from_secs(1800))));
        assert_eq!(parse_every(" 6h "), Ok(Some(Duration::from_secs(21600))));
        assert_eq!(parse_every("1d"), Ok(Some(Duration::from_secs(86400))));
        for bad in ["6 hours", "h", "-1", "1.5h", "6w"] {
            let err = parse_every(bad).unwrap_err();
            assert!(err.contains("6h"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_next_backup_is_due_every_after_the_newest() {
        let hour = Duration::from_secs(3600);
        assert_eq!(wait_before_next(None, hour, 1_000), Duration::ZERO);
        assert_eq!(wait_before_next(Some(1_000), hour, 1_000), hour);
        assert_eq!(
            wait_before_next(Some(1_000), hour, 2_000),
            Duration::from_secs(2_600)
        );
        // Overdue (the daemon was down): at once.
        assert_eq!(wait_before_next(Some(1_000), hour, 99_000), Duration::ZERO);
    }
}
