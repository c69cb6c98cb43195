//! The Log view's state: the node's log lines as they stream in, a level filter, scrolling,
//! and de-duplication when the stream reconnects (the node sends its kept tail again).

use std::collections::VecDeque;

use crate::api::types::LogLine;

/// Lines kept.
pub const KEEP: usize = 2_000;

/// A log level, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Errors.
    Error,
    /// Warnings.
    Warn,
    /// Information.
    Info,
    /// Debugging.
    Debug,
    /// Tracing.
    Trace,
}

impl LogLevel {
    /// Parses ERROR, WARN, … in any case.
    pub fn parse(text: &str) -> Option<LogLevel> {
        Some(match text.to_ascii_uppercase().as_str() {
            "ERROR" => LogLevel::Error,
            "WARN" => LogLevel::Warn,
            "INFO" => LogLevel::Info,
            "DEBUG" => LogLevel::Debug,
            "TRACE" => LogLevel::Trace,
            _ => return None,
        })
    }

    /// Its name in capitals.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "ERROR",
            LogLevel::Warn => "WARN",
            LogLevel::Info => "INFO",
            LogLevel::Debug => "DEBUG",
            LogLevel::Trace => "TRACE",
        }
    }

    /// The next filter level: error → warn → info → debug → trace → error.
    pub fn next(self) -> LogLevel {
        match self {
            LogLevel::Error => LogLevel::Warn,
            LogLevel::Warn => LogLevel::Info,
            LogLevel::Info => LogLevel::Debug,
            LogLevel::Debug => LogLevel::Trace,
            LogLevel::Trace => LogLevel::Error,
        }
    }
}

/// The state of the log stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    /// Not connected yet.
    Connecting,
    /// Lines arrive as the node logs them.
    Live,
    /// The stream broke; the dashboard reconnects.
    Down(String),
}

/// The Log view.
#[derive(Debug, Clone)]
pub struct LogView {
    lines: VecDeque<LogLine>,
    /// The least severe level shown.
    pub level: LogLevel,
    /// Lines scrolled up from the newest (0: following the tail).
    pub scroll: usize,
    /// The stream.
    pub stream: StreamState,
    /// After a reconnection: the newest time already held, until lines pass it.
    resync: Option<u64>,
}

impl Default for LogView {
    fn default() -> Self {
        LogView {
            lines: VecDeque::new(),
            level: LogLevel::Info,
            scroll: 0,
            stream: StreamState::Connecting,
            resync: None,
        }
    }
}

impl LogView {
    /// The stream (re)connected: the node will send its kept tail again, which may repeat
    /// lines already held.
    pub fn reconnected(&mut self) {
        self.stream = StreamState::Live;
        self.resync = self.lines.back().map(|l| l.time_ms);
    }

    /// Adds a line from the stream, unless it repeats one already held.
    pub fn push(&mut self, line: LogLine) {
        if let Some(cut) = self.resync {
            if line.time_ms < cut {
                return;
            }
            if line.time_ms == cut {
                let held = self
                    .lines
                    .iter()
                    .rev()
                    .take_while(|l| l.time_ms == cut)
                    .any(|l| *l == line);
                if held {
                    return;
                }
            } else {
                self.resync = None;
            }
        }
        if self.lines.len() == KEEP {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
        // Keep a scrolled-up view on the same lines while new ones arrive.
        if self.scroll > 0 && self.shows(self.lines.back()) {
            self.scroll += 1;
        }
    }

    fn shows(&self, line: Option<&LogLine>) -> bool {
        line.is_some_and(|l| LogLevel::parse(&l.level).is_none_or(|lv| lv <= self.level))
    }

    /// The lines that pass the filter, oldest first.
    pub fn visible(&self) -> Vec<&LogLine> {
        self.lines.iter().filter(|l| self.shows(Some(l))).collect()
    }

    /// Every line held, filtered or not.
    pub fn total(&self) -> usize {
        self.lines.len()
    }

    /// Shows one more level (wrapping from trace back to error).
    pub fn cycle_level(&mut self) {
        self.level = self.level.next();
        self.scroll = 0;
    }

    /// Scrolls up (towards older lines) by `n`.
    pub fn scroll_up(&mut self, n: usize) {
        let max = self.visible().len().saturating_sub(1);
        self.scroll = (self.scroll + n).min(max);
    }

    /// Scrolls down (towards newer lines) by `n`; at the bottom it follows the tail.
    pub fn scroll_down(&mut self, n: usize) {
        self.scroll = self.scroll.saturating_sub(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(time_ms: u64, level: &str, message: &str) -> LogLine {
        LogLine {
            time_ms,
            level: level.into(),
            target: "ipvec_node".into(),
            message: message.into(),
            fields: String::new(),
        }
    }

    #[test]
    fn the_filter_hides_less_severe_lines() {
        let mut log = LogView::default();
        log.push(line(1, "INFO", "a"));
        log.push(line(2, "DEBUG", "b"));
        log.push(line(3, "ERROR", "c"));
        assert_eq!(log.visible().len(), 2);
        log.cycle_level();
        assert_eq!(log.level, LogLevel::Debug);
        assert_eq!(log.visible().len(), 3);
        log.cycle_level();
        log.cycle_level();
        assert_eq!(log.level, LogLevel::Error);
        assert_eq!(log.visible().len(), 1);
    }

    #[test]
    fn a_reconnection_does_not_repeat_lines() {
        let mut log = LogView::default();
        log.reconnected();
        log.push(line(1, "INFO", "a"));
        log.push(line(5, "INFO", "b"));
        log.push(line(5, "INFO", "c"));
        // The node sends its kept tail again, then a new line.
        log.reconnected();
        for l in [
            line(1, "INFO", "a"),
            line(5, "INFO", "b"),
            line(5, "INFO", "c"),
            line(5, "INFO", "d"),
            line(6, "INFO", "e"),
            line(6, "INFO", "e"),
        ] {
            log.push(l);
        }
        let messages: Vec<_> = log.visible().iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["a", "b", "c", "d", "e", "e"]);
    }

    #[test]
    fn a_scrolled_view_stays_on_its_lines() {
        let mut log = LogView::default();
        for i in 0..10 {
            log.push(line(i, "INFO", "x"));
        }
        log.scroll_up(3);
        log.push(line(11, "INFO", "y"));
        assert_eq!(log.scroll, 4);
        log.scroll_down(10);
        assert_eq!(log.scroll, 0);
        log.scroll_up(100);
        assert_eq!(log.scroll, 10);
    }
}
