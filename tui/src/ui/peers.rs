//! The Peers view: the node's connections, sortable, or why there are none to show.

use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Style, Stylize},
    text::{Line, Span, Text},
    widgets::{Block, Cell, Paragraph, Row, Table, TableState, Wrap},
    Frame,
};

use super::{absent, format};
use crate::{
    api::types::Peer,
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
    let header = Row::new([
        "Peer",
        "Address",
        "Dir",
        "Latency",
        "Blocks ↑/↓",
        "Protocols",
    ])
    .style(Style::new().bold());
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
        Row::new(vec![
            Cell::from(format::short_id(&p.peer_id)),
            Cell::from(p.address.clone()),
            Cell::from(direction.to_string()),
            latency,
            blocks,
            Cell::from(p.protocols.join(" ")),
        ])
    });
    let widths = [
        Constraint::Length(13),
        Constraint::Fill(2),
        Constraint::Length(3),
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Fill(1),
    ];
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
    let lines = vec![
        field("Peer ID", Span::raw(peer.peer_id.clone())),
        field(
            "Address",
            Span::raw(format!("{} ({})", peer.address, peer.direction)),
        ),
        field("Agent", agent),
        field("Protocols", Span::raw(peer.protocols.join(" "))),
    ];
    let paragraph = Paragraph::new(lines)
        .block(Block::bordered().title(" Peer "))
        .wrap(Wrap { trim: false });
    frame.render_widget(paragraph, area);
}
