//! Numbers, sizes, durations and long identifiers as short text.

/// `s` cut to at most `width` characters, keeping its start and end around a `…`
/// (CIDs and peer ids differ at both ends).
pub fn middle(s: &str, width: usize) -> String {
    let len = s.chars().count();
    if len <= width {
        return s.to_string();
    }
    if width <= 1 {
        return "…".chars().take(width).collect();
    }
    let head = (width - 1).div_ceil(2);
    let tail = width - 1 - head;
    let start: String = s.chars().take(head).collect();
    let end: String = s.chars().skip(len - tail).collect();
    format!("{start}…{end}")
}

/// A CID or peer id in 13 characters: `bafyr4…ab2xyz`.
pub fn short_id(s: &str) -> String {
    middle(s, 13)
}

/// A peer id by its last six characters, as the Peers view's short ids end: `…x6nXTN`.
pub fn id_tail(s: &str) -> String {
    let len = s.chars().count();
    if len <= 7 {
        return s.to_string();
    }
    let tail: String = s.chars().skip(len - 6).collect();
    format!("…{tail}")
}

/// `1234567` → `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count in at most six characters: `99,999`, `123k`, `1.2M`.
pub fn compact_count(n: u64) -> String {
    match n {
        0..=99_999 => count(n),
        100_000..=999_999 => format!("{}k", n / 1000),
        1_000_000..=9_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{}M", n / 1_000_000),
    }
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `3.0 MiB`.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024.0 {
        return format!("{} B", n.round() as u64);
    }
    let mut value = n / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Seconds as `45s`, `3m 07s`, `1h 02m 03s`, `4d 03h`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// A time in milliseconds since the epoch as `HH:MM:SS` (UTC).
pub fn clock(time_ms: u64) -> String {
    let secs = time_ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Milliseconds with a sensible precision: `0.42 ms`, `3.1 ms`, `120 ms`.
pub fn millis(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// Milliseconds as a bare number for narrow columns: `0.4`, `3.1`, `48`, `1200`.
pub fn millis_number(ms: f64) -> String {
    // 9.96 rounds to 10 with either precision: shown as 10.
    if ms < 9.95 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

/// A count with its noun: `1 answer`, `0 failures`, `2 penalties`.
pub fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// A rate with one decimal below 100: `0.5/s`, `12.0/s`, `340/s`.
pub fn rate(per_sec: f64) -> String {
    if per_sec < 100.0 {
        format!("{per_sec:.1}/s")
    } else {
        format!("{per_sec:.0}/s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn middles() {
        assert_eq!(middle("abcdef", 6), "abcdef");
        assert_eq!(middle("abcdefgh", 5), "ab…gh");
        assert_eq!(middle("abcdefgh", 6), "abc…gh");
        assert_eq!(middle("abcdefgh", 1), "…");
        assert_eq!(middle("abcdefgh", 0), "");
        assert_eq!(
            short_id("bafyr4iabcdefghijklmnopqrstuvwxyz")
                .chars()
                .count(),
            13
        );
        let peer = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        assert_eq!(id_tail(peer), "…x6nXTN");
        assert!(short_id(peer).ends_with(&id_tail(peer)[3..]));
        assert_eq!(id_tail("local"), "local");
    }

    #[test]
    fn numbers() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        for (n, text) in [
            (7, "7"),
            (60_000, "60,000"),
            (123_456, "123k"),
            (1_234_567, "1.2M"),
            (123_456_789, "123M"),
        ] {
            assert_eq!(compact_count(n), text, "at most six characters");
        }
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0), "3.0 MiB");
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(187), "3m 07s");
        assert_eq!(duration(3723), "1h 02m 03s");
        assert_eq!(duration(4 * 86_400 + 3 * 3600), "4d 03h");
        assert_eq!(clock(86_400_000 + 3_723_000), "01:02:03");
        assert_eq!(millis(0.4213), "0.42 ms");
        assert_eq!(millis(3.24), "3.2 ms");
        assert_eq!(rate(340.2), "340/s");
        assert_eq!(millis_number(0.42), "0.4");
        assert_eq!(millis_number(9.96), "10");
        assert_eq!(millis_number(48.4), "48");
        assert_eq!(counted(1, "penalty", "penalties"), "1 penalty");
        assert_eq!(counted(1_200, "answer", "answers"), "1,200 answers");
    }
}
