//! The Log view: the node's log lines as they happen, filtered by level, newest at the
//! bottom; scrolling up stops following.

use ratatui::{
    layout::Rect,
    style::{Color, Style, Stylize},
    text::{Line, Span},
    widgets::{Block, Paragraph},
    Frame,
};

use super::format;
use crate::app::{App, LogLevel, StreamState};

/// Draws the view.
pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let log = &app.log;
    let visible = log.visible();
    let stream = match &log.stream {
        StreamState::Connecting => "connecting".to_string(),
        StreamState::Live => "live".to_string(),
        StreamState::Down(_) => "reconnecting".to_string(),
    };
    let position = if log.scroll == 0 {
        "following".to_string()
    } else {
        format!("{} lines up", log.scroll)
    };
    let title = format!(
        " Log: {} and above, {} of {} lines, {position}, {stream} ",
        log.level.name(),
        visible.len(),
        log.total()
    );
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rows = inner.height as usize;
    let end = visible.len().saturating_sub(log.scroll);
    let start = end.saturating_sub(rows);
    let mut lines: Vec<Line> = visible[start..end]
        .iter()
        .map(|line| {
            let level = LogLevel::parse(&line.level);
            let color = match level {
                Some(LogLevel::Error) => Color::Red,
                Some(LogLevel::Warn) => Color::Yellow,
                Some(LogLevel::Info) => Color::Green,
                Some(LogLevel::Debug) => Color::Blue,
                _ => Color::DarkGray,
            };
            let target = line
                .target
                .strip_prefix("ipvec_node::")
                .unwrap_or(&line.target);
            let mut spans = vec![
                Span::styled(
                    format::clock(line.time_ms),
                    Style::new().fg(Color::DarkGray),
                ),
                Span::styled(
                    format!(" {:<5} ", line.level),
                    Style::new().fg(color).bold(),
                ),
                Span::styled(format!("{target}: "), Style::new().fg(Color::DarkGray)),
                Span::raw(line.message.clone()),
            ];
            if !line.fields.is_empty() {
                spans.push(Span::styled(
                    format!(" {}", line.fields),
                    Style::new().fg(Color::Gray),
                ));
            }
            Line::from(spans)
        })
        .collect();
    if lines.is_empty() {
        let text = match &log.stream {
            StreamState::Down(e) => format!("The log stream broke ({e}); reconnecting …"),
            _ if log.total() > 0 => format!(
                "No lines at {} or above; press l for another level.",
                log.level.name()
            ),
            _ => "No log lines yet.".to_string(),
        };
        lines.push(Line::from(text).fg(Color::DarkGray));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}
