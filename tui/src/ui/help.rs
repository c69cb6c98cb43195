//! The help overlay (`?`).

use ratatui::{
    layout::{Constraint, Rect},
    style::Style,
    text::{Line, Span},
    widgets::{Block, Clear, Paragraph},
    Frame,
};

const KEYS: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit"),
    ("?", "this help (any key closes it)"),
    ("Tab, Shift-Tab", "next, previous view"),
    ("1 … 5", "Node, Peers, Collections, Search, Log"),
    ("↑ ↓, j k", "select a row, scroll the log"),
    ("Peers: s, r", "sort by another column, reverse"),
    ("Collections: Enter", "search the selected collection"),
    ("Collections: s", "the selected one's shard map (Esc: back)"),
    ("Search: / or Enter", "1, 0, 0.5, id:42 or a question"),
    ("Search: ← →, + -", "pick the collection, change k"),
    (
        "Search: f, Ctrl-F",
        "federated (ask the peers) or local search",
    ),
    ("Log: l", "level: error → warn → info → debug → trace"),
    ("Log: PgUp PgDn End", "scroll, follow the tail again"),
];

/// Draws the overlay in the middle of `area`.
pub fn draw(frame: &mut Frame, area: Rect) {
    let width = 66.min(area.width);
    let height = (KEYS.len() as u16 + 4).min(area.height);
    let popup = area.centered(Constraint::Length(width), Constraint::Length(height));
    let mut lines = vec![Line::default()];
    lines.extend(KEYS.iter().map(|(key, what)| {
        Line::from(vec![
            Span::styled(format!(" {key:>18}  "), Style::new().bold()),
            Span::raw(*what),
        ])
    }));
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Keys ")),
        popup,
    );
}
