//! The Peers view: the node's connections, sortable, with what federated searches learnt
//! of each (answer time, whether searches skip it) and the state of its circuit breaker,
//! or why there are none to show.

use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Style, Stylize},
    text::{Line, Span, Text},
    widgets::{Block, Cell, Paragraph, Row, Table, TableState, Wrap},
    Frame,
};

use super::{absent, format};
use crate::{
    api::types::{BreakerStateOut, Peer},
    app::{App, PeersState},
};

/// Draws the view.
pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let peers = app.sorted_peers();
    let order = if app.peer_sort_descending {
        "↓"
    } else {
        "↑"
    };
    let title = match &app.peers {
        PeersState::Connected(_) => format!(
            " Peers ({}) by {} {order} ",
            peers.len(),
            app.peer_sort.name()
        ),
        _ => " Peers ".to_string(),
    };
    let block = Block::bordered().title(title);
    let message = match &app.peers {
        PeersState::Connected(list) if list.is_empty() => vec!["No peers connected.".to_string()],
        PeersState::Connected(_) => Vec::new(),
        PeersState::Unknown => vec!["Waiting for the node …".to_string()],
        PeersState::NotAvailable(why) => vec![
            "The peer-to-peer layer is not available on this node.".to_string(),
            format!("({why})"),
        ],
        PeersState::Failed(e) => vec![format!("The node could not list its peers: {e}")],
    };
    if !message.is_empty() {
        let mut lines = vec![Line::default()];
        lines.extend(message.into_iter().map(Line::from));
        let text = Text::from(lines);
        let paragraph = Paragraph::new(text)
            .block(block)
            .centered()
            .wrap(Wrap { trim: true })
            .fg(Color::Gray);
        frame.render_widget(paragraph, area);
        return;
    }
    // Protocols get a column where there is room for it; the details below list them all.
    let protocols = area.width >= PROTOCOLS_FROM;
    let mut header = vec![
        "Peer",
        "Address",
        "Dir",
        "Latency",
        "Blocks ↑/↓",
        "Breaker",
        "Search ms",
    ];
    if protocols {
        header.push("Protocols");
    }
    let header = Row::new(header).style(Style::new().bold());
    let rows = peers.iter().map(|p| {
        let latency = match p.latency_ms {
            Some(ms) => Cell::from(format::millis(ms)),
            None => Cell::from(absent()),
        };
        let blocks = match (p.blocks_sent, p.blocks_received) {
            (None, None) => Cell::from(absent()),
            (sent, received) => Cell::from(format!(
                "{}/{}",
                sent.map(format::count).unwrap_or_else(|| "—".into()),
                received.map(format::count).unwrap_or_else(|| "—".into())
            )),
        };
        let direction = match p.direction.as_str() {
            "inbound" => "in",
            "outbound" => "out",
            other => other,
        };
        let mut cells = vec![
            Cell::from(format::short_id(&p.peer_id)),
            Cell::from(p.address.clone()),
            Cell::from(direction.to_string()),
            latency,
            blocks,
            breaker(p),
            searches(p),
        ];
        if protocols {
            cells.push(Cell::from(p.protocols.join(" ")));
        }
        Row::new(cells)
    });
    let mut widths = vec![
        Constraint::Length(13),
        Constraint::Fill(2),
        Constraint::Length(3),
        Constraint::Length(7),
        Constraint::Length(10),
        Constraint::Length(BREAKER_WIDTH),
        Constraint::Length(SEARCH_WIDTH),
    ];
    if protocols {
        widths.push(Constraint::Fill(1));
    }
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(Style::new().bg(Color::DarkGray));
    let rows_height = (peers.len() as u16 + 3).min(area.height.saturating_sub(DETAILS));
    let [table_area, details_area] =
        Layout::vertical([Constraint::Length(rows_height), Constraint::Min(0)]).areas(area);
    let mut state = TableState::default().with_selected(Some(app.peer_selected));
    frame.render_stateful_widget(table, table_area, &mut state);
    if let Some(peer) = peers.get(app.peer_selected) {
        details(frame, details_area, peer);
    }
}

/// Lines the details box needs, borders included.
const DETAILS: u16 = 8;

/// The narrowest view with a Protocols column.
const PROTOCOLS_FROM: u16 = 100;

/// The Search column: `12/48 ✖!` and a little more.
const SEARCH_WIDTH: u16 = 11;

/// The Breaker column: `half-open` and its padding.
const BREAKER_WIDTH: u16 = 9;

/// The state of the peer's circuit breaker: "closed" (calls go through), "open" in red
/// (searches and fetches skip it after repeated failures), "half-open" in yellow (the next
/// call is a trial).
fn breaker(peer: &Peer) -> Cell<'static> {
    match peer.breaker {
        BreakerStateOut::Closed => Cell::from(Span::styled("closed", Style::new().fg(Color::Gray))),
        BreakerStateOut::Open => Cell::from(Span::styled("open", Style::new().fg(Color::Red))),
        BreakerStateOut::HalfOpen => {
            Cell::from(Span::styled("half-open", Style::new().fg(Color::Yellow)))
        }
    }
}

/// What federated searches learnt of the peer: its answer time and the 95th percentile of
/// it in milliseconds (`3.1/9.8`), then `✖` while searches skip it (its circuit breaker is
/// open) and `!` when hits it answered failed verification; "—" when it was never asked.
fn searches(peer: &Peer) -> Cell<'static> {
    let Some(s) = &peer.searches else {
        return Cell::from(absent());
    };
    let mut text = match (s.latency_ms, s.latency_p95_ms) {
        (Some(ms), Some(p95)) => format!(
            "{}/{}",
            format::millis_number(ms),
            format::millis_number(p95)
        ),
        (Some(ms), None) => format::millis_number(ms),
        (None, _) => "—".to_string(),
    };
    let marks = match (s.skipped, s.penalties > 0) {
        (true, true) => " ✖!",
        (true, false) => " ✖",
        (false, true) => " !",
        (false, false) => "",
    };
    text += marks;
    let style = if s.skipped {
        Style::new().fg(Color::Red)
    } else if s.penalties > 0 {
        Style::new().fg(Color::Yellow)
    } else {
        Style::new()
    };
    Cell::from(Span::styled(text, style))
}

/// The peer's record in federated searches, in words: a line of counts and answer times,
/// and one more while searches skip it.
fn searches_in_full(peer: &Peer) -> Vec<Span<'static>> {
    let Some(s) = &peer.searches else {
        return vec![absent()];
    };
    let mut answers = format::counted(s.answers, "answer", "answers");
    match (s.latency_ms, s.latency_p95_ms) {
        (Some(ms), Some(p95)) => {
            answers += &format!(" in {} (p95 {})", format::millis(ms), format::millis(p95));
        }
        (Some(ms), None) => answers += &format!(" in {}", format::millis(ms)),
        (None, _) => {}
    }
    let mut spans = vec![Span::raw(format!(
        "{answers}, {}, {}",
        format::counted(s.failures, "failure", "failures"),
        format::counted(s.penalties, "penalty", "penalties")
    ))];
    if s.skipped {
        spans.push(Span::styled(
            "skipped by searches for now (its breaker is open)",
            Style::new().fg(Color::Red),
        ));
    }
    spans
}

/// The selected peer in full.
fn details(frame: &mut Frame, area: Rect, peer: &Peer) {
    let field = |name: &'static str, value: Span<'static>| {
        Line::from(vec![
            Span::styled(format!(" {name:<10} "), Style::new().bold()),
            value,
        ])
    };
    let agent = match &peer.agent {
        Some(agent) => Span::raw(agent.clone()),
        None => absent(),
    };
    let mut lines = vec![
        field("Peer ID", Span::raw(peer.peer_id.clone())),
        field(
            "Address",
            Span::raw(format!("{} ({})", peer.address, peer.direction)),
        ),
        field("Agent", agent),
        field("Protocols", Span::raw(peer.protocols.join(" "))),
    ];
    for (i, span) in searches_in_full(peer).into_iter().enumerate() {
        lines.push(field(if i == 0 { "Searches" } else { "" }, span));
    }
    let paragraph = Paragraph::new(lines)
        .block(Block::bordered().title(" Peer "))
        .wrap(Wrap { trim: false });
    frame.render_widget(paragraph, area);
}
