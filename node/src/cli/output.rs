//! How commands print: text for people, JSON with `--json`. Everything goes through
//! [`write_stdout`], so a reader that goes away (`ipvec … | head`) ends the command quietly
//! with [`StdoutClosed`] instead of a panic.

use std::{
    io::Write,
    path::Path,
    pin::Pin,
    task::{Context, Poll},
};

use serde_json::json;

/// Standard output was closed by its reader (`ipvec … | head -1`). The command stops (a
/// directly opened repository still closes cleanly) and `ipvec` exits 0 without a message,
/// as Unix filters do.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct StdoutClosed;

/// Writes `bytes` to stdout; fails with [`StdoutClosed`] once the reader has gone.
pub fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(stdout_error)
}

/// Writes `text` and a newline to stdout.
pub fn write_line(text: impl AsRef<str>) -> anyhow::Result<()> {
    let mut line = String::with_capacity(text.as_ref().len() + 1);
    line.push_str(text.as_ref());
    line.push('\n');
    write_stdout(line.as_bytes())
}

/// A failed write to stdout as an error: [`StdoutClosed`] if the reader went away.
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(e).context("cannot write to standard output")
    }
}

/// Whether a command failed only because its output was closed ([`StdoutClosed`]).
pub fn is_stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| cause.is::<StdoutClosed>())
}

/// Stdout for a byte stream (a CAR export), noting when its reader goes away: the error
/// itself may reach the command only as a message, through layers that keep no I/O kinds.
#[derive(Debug)]
pub struct StdoutStream {
    inner: tokio::io::Stdout,
    /// Whether a write failed with a broken pipe.
    pub closed: bool,
}

impl StdoutStream {
    pub fn new() -> Self {
        Self {
            inner: tokio::io::stdout(),
            closed: false,
        }
    }

    fn note<T>(&mut self, polled: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if let Poll::Ready(Err(e)) = &polled {
            self.closed |= e.kind() == std::io::ErrorKind::BrokenPipe;
        }
        polled
    }
}

impl Default for StdoutStream {
    fn default() -> Self {
        Self::new()
    }
}

impl tokio::io::AsyncWrite for StdoutStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.note(polled)
    }
}

/// A time in milliseconds since the Unix epoch as `2026-11-30 10:51:08` (UTC).
pub fn utc_time(millis: u64) -> String {
    let secs = millis / 1000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let time = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`): (year, month 1–12, day 1–31).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of the 400-year era: [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the year from March 1
    let mp = (5 * doy + 2) / 153; // month from March: [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Where and how a command prints its results.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Print JSON instead of text.
    pub json: bool,
}

impl Output {
    /// Prints `text`, or `value` as one line of JSON.
    pub fn print(&self, text: impl AsRef<str>, value: serde_json::Value) -> anyhow::Result<()> {
        if self.json {
            write_line(value.to_string())
        } else {
            write_line(text)
        }
    }

    pub fn init(&self, path: &Path, peer_id: &str) -> anyhow::Result<()> {
        self.print(
            format!(
                "initialised ipvec repository at {}\npeer id: {peer_id}",
                path.display()
            ),
            json!({ "repo": path.display().to_string(), "peer_id": peer_id }),
        )
    }
}

/// A progress bar on stderr when it is a terminal; hidden otherwise.
pub fn progress_bar(total: Option<u64>, what: &str) -> indicatif::ProgressBar {
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::no_length(),
    };
    let template = match total {
        Some(_) => "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        None => "{msg} {bytes} ({bytes_per_sec})",
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc_time(1_709_251_199_999), "2024-02-29 23:59:59");
        assert_eq!(utc_time(1_796_035_868_000), "2026-11-30 10:51:08");
        assert_eq!(utc_time(4_102_444_800_000), "2100-01-01 00:00:00");
    }

    #[test]
    fn only_a_closed_pipe_is_quiet() {
        let closed = stdout_error(std::io::ErrorKind::BrokenPipe.into());
        assert!(is_stdout_closed(&closed.context("query 3")));
        let full = stdout_error(std::io::Error::other("disk full"));
        assert!(!is_stdout_closed(&full));
    }
}
