//! The Collections view: one row per collection (size, version, root, write-ahead log,
//! replication), and the selected one in full below.

use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Style, Stylize},
    text::{Line, Span},
    widgets::{Block, Cell, Paragraph, Row, Table, TableState},
    Frame,
};

use super::{absent, format};
use crate::{api::types::CollectionInfo, app::App};

/// Lines the details box needs without shards, borders included.
const DETAILS: u16 = 9;
/// Shards the details box makes room for (more are drawn if the screen has room).
const MAX_SHARD_LINES: usize = 4;

/// Draws the view.
pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let title = format!(" Collections ({}) ", app.collections.len());
    if app.collections.is_empty() {
        let text = if app.node.is_some() {
            "No collections. Create one with `ipvec collection create NAME --dim N`."
        } else {
            "Waiting for the node …"
        };
        let paragraph = Paragraph::new(vec![Line::default(), Line::from(text)])
            .block(Block::bordered().title(title))
            .centered()
            .fg(Color::Gray);
        frame.render_widget(paragraph, area);
        return;
    }
    // The details box grows by a line a shard (up to a few); the table gets the rest.
    let shard_lines = app
        .collections
        .get(app.collection_selected)
        .map_or(0, |c| c.shard_status.len().min(MAX_SHARD_LINES) as u16);
    let rows_height =
        (app.collections.len() as u16 + 3).min(area.height.saturating_sub(DETAILS + shard_lines));
    let [table_area, details_area] =
        Layout::vertical([Constraint::Length(rows_height), Constraint::Min(0)]).areas(area);
    let header = Row::new([
        "Name", "Points", "Dim", "Metric", "Root", "Ver", "WAL", "RW", "Replicas", "State",
    ])
    .style(Style::new().bold());
    let rows = app.collections.iter().map(|c| {
        Row::new(vec![
            Cell::from(c.name.clone()),
            Cell::from(Line::from(format::compact_count(c.points)).right_aligned()),
            Cell::from(Line::from(c.dim.to_string()).right_aligned()),
            Cell::from(c.metric.clone()),
            Cell::from(format::short_id(&c.root)),
            Cell::from(Line::from(c.version.to_string()).right_aligned()),
            Cell::from(Line::from(format::bytes(c.wal_bytes as f64)).right_aligned()),
            Cell::from(if c.writable { "rw" } else { "ro" }),
            replicas(c),
            state(c).map(Cell::from).unwrap_or_else(|| absent().into()),
        ])
    });
    let widths = [
        Constraint::Fill(1),
        Constraint::Length(6),
        Constraint::Length(4),
        Constraint::Length(6),
        Constraint::Length(13),
        Constraint::Length(4),
        Constraint::Length(8),
        Constraint::Length(2),
        Constraint::Length(8),
        Constraint::Length(9),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::bordered().title(title))
        .row_highlight_style(Style::new().bg(Color::DarkGray));
    let mut state = TableState::default().with_selected(Some(app.collection_selected));
    frame.render_stateful_widget(table, table_area, &mut state);
    if let Some(c) = app.collections.get(app.collection_selected) {
        details(frame, details_area, c);
    }
}

/// The selected collection in full.
fn details(frame: &mut Frame, area: Rect, c: &CollectionInfo) {
    let field = |name: &'static str, value: Vec<Span<'static>>| {
        let mut spans = vec![Span::styled(format!(" {name:<12} "), Style::new().bold())];
        spans.extend(value);
        Line::from(spans)
    };
    let text = |s: String| vec![Span::raw(s)];
    let shards = match &c.held_shards {
        Some(held) if held.len() < c.shards => {
            format!("{} of {} shards held", held.len(), c.shards)
        }
        _ if c.shards == 1 => "1 shard".to_string(),
        _ => format!("{} shards", c.shards),
    };
    let access = if c.writable {
        "writable: this node holds the owner key"
    } else {
        "read-only: imported without the owner key"
    };
    let replication = match (c.replicas, c.replication_factor, state(c)) {
        (None, None, None) => vec![
            absent(),
            Span::styled(
                " (the node does not report replication yet)",
                Style::new().fg(Color::DarkGray),
            ),
        ],
        (replicas, target, state) => {
            let mut parts = vec![format!(
                "{} of {} replicas",
                replicas.map_or("?".into(), |r| r.to_string()),
                target.map_or("?".into(), |t| t.to_string()),
            )];
            parts.extend(state);
            if let Some(lag) = c.lag.filter(|lag| *lag > 0) {
                parts.push(format!(
                    "{lag} version{} behind",
                    if lag == 1 { "" } else { "s" }
                ));
            }
            text(parts.join(", "))
        }
    };
    let mut lines = vec![
        field("Root", text(c.root.clone())),
        field("Id", text(c.id.clone())),
        field(
            "Vectors",
            text(format!(
                "{} points, {} dims, {}, {}, {shards}, version {}",
                format::count(c.points),
                c.dim,
                c.metric,
                c.quantization,
                c.version
            )),
        ),
        field(
            "Memory",
            text(format!(
                "index {}; log {} not yet committed into the tree",
                format::bytes(c.index_memory_bytes as f64),
                format::bytes(c.wal_bytes as f64),
            )),
        ),
        field("Access", text(access.to_string())),
        field("Replication", replication),
        field(
            "Announced",
            match c.announced_secs_ago {
                Some(age) => text(format!("in the DHT {} ago", format::duration(age))),
                None => vec![absent()],
            },
        ),
    ];
    let shard_lines = c.shard_status.iter().map(|shard| {
        field(
            if shard.shard == 0 { "Shards" } else { "" },
            text(format!(
                "{:>3}  {}  {} point{}, {}{}",
                shard.shard,
                format::short_id(&shard.root),
                format::count(shard.points),
                if shard.points == 1 { "" } else { "s" },
                match shard.replicas {
                    Some(1) => "1 replica".to_string(),
                    Some(n) => format!("{n} replicas"),
                    None => "replicas not counted yet".to_string(),
                },
                match shard.held {
                    Some(false) => ", not held here",
                    _ => "",
                }
            )),
        )
    });
    lines.extend(shard_lines);
    let block = Block::bordered().title(format!(" {} ", c.name));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The replication state in at most nine characters (`sync 42%` while syncing).
fn state(c: &CollectionInfo) -> Option<String> {
    match (c.state.as_deref(), c.sync_percent) {
        (Some("syncing"), Some(percent)) => Some(format!("sync {percent:.0}%")),
        (state, _) => state.map(str::to_string),
    }
}

/// Replicas present of the target, or "—" while the node does not say.
fn replicas(c: &CollectionInfo) -> Cell<'static> {
    match (c.replicas, c.replication_factor) {
        (None, None) => absent().into(),
        (r, t) => Cell::from(format!(
            "{}/{}",
            r.map_or("?".into(), |r| r.to_string()),
            t.map_or("?".into(), |t| t.to_string())
        )),
    }
}
