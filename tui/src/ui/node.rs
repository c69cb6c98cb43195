//! The Node view: who this node is, what it stores, and its rates over time.

use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Style, Stylize},
    text::{Line, Span},
    widgets::{Block, Paragraph},
    Frame,
};

use super::{absent, format, sparkline};
use crate::app::{App, History};

/// Listen addresses shown; the rest are counted.
const MAX_ADDRESSES: usize = 3;

/// Draws the view.
pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let block = Block::bordered().title(" Node ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(node) = &app.node else {
        let text = format!("Waiting for the node at {} …", app.target);
        frame.render_widget(Paragraph::new(text).fg(Color::DarkGray), inner);
        return;
    };
    let field = |name: &'static str, value: Vec<Span<'static>>| {
        let mut spans = vec![Span::styled(format!(" {name:<12} "), Style::new().bold())];
        spans.extend(value);
        Line::from(spans)
    };
    let text = |s: String| vec![Span::raw(s)];
    let listen = match &app.id {
        Some(id) if !id.listen.is_empty() => &id.listen,
        _ => &node.listen_addresses,
    };
    let api = match &node.api {
        Some(announced) if announced.trim_end_matches('/') != app.target => {
            format!("{} (announces {announced})", app.target)
        }
        _ => app.target.clone(),
    };
    let mut lines = vec![
        field("Peer ID", text(node.peer_id.clone())),
        field("Version", text(node.version.clone())),
        field("Repository", text(node.repo.clone())),
        field("API", text(api)),
    ];
    if listen.is_empty() {
        lines.push(field(
            "Listening",
            vec![
                absent(),
                Span::styled(
                    " (no peer-to-peer addresses reported)",
                    Style::new().fg(Color::DarkGray),
                ),
            ],
        ));
    }
    for (i, address) in listen.iter().take(MAX_ADDRESSES).enumerate() {
        let more = match listen.len() - MAX_ADDRESSES.min(listen.len()) {
            n if n > 0 && i + 1 == MAX_ADDRESSES => format!(" (+{n} more)"),
            _ => String::new(),
        };
        let name = if i == 0 { "Listening" } else { "" };
        lines.push(field(name, text(format!("{address}{more}"))));
    }
    lines.extend([
        field(
            "Uptime",
            node.uptime_secs
                .map(|s| text(format::duration(s)))
                .unwrap_or_else(|| vec![absent()]),
        ),
        field("Collections", text(format::count(node.collections as u64))),
        field(
            "Store",
            text(format!(
                "{} blocks, {}",
                format::count(node.store.blocks),
                format::bytes(node.store.bytes as f64)
            )),
        ),
    ]);
    let [info, charts] = Layout::vertical([
        Constraint::Length(lines.len() as u16 + 1),
        Constraint::Min(0),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(lines), info);
    let [ops, latency, growth] = Layout::horizontal([Constraint::Ratio(1, 3); 3]).areas(charts);
    let stats = &app.stats;
    chart(frame, ops, "ops", &stats.ops_per_sec, format::rate);
    chart(frame, latency, "search", &stats.search_ms, format::millis);
    chart(frame, growth, "store", &stats.store_bytes_per_sec, |b| {
        format!("{}/s", format::bytes(b))
    });
}

/// One sparkline in a box titled with its newest value.
fn chart(frame: &mut Frame, area: Rect, name: &str, history: &History, show: fn(f64) -> String) {
    let now = history.last().map(show).unwrap_or_else(|| "—".into());
    let block = Block::bordered().title(format!(" {name} {now} "));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    frame.render_widget(sparkline(history, inner.width), inner);
}
