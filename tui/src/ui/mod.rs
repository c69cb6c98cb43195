//! Drawing the dashboard from its state: the tab bar, the connection banner, the shown view,
//! the key hints and the help overlay. Pure functions of [`App`], so tests render them into
//! ratatui's `TestBackend` and compare text.

mod collections;
mod coverage;
pub mod format;
mod help;
mod log;
mod node;
mod peers;
mod search;
mod shards;

use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Paragraph, Sparkline, Tabs, Wrap},
    Frame,
};

use crate::app::{App, Connection, History, Tab};

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let (banner, banner_style) = banner(app);
    // Long errors wrap, up to four lines.
    let width = frame.area().width.max(1);
    let banner_height: u16 = banner
        .iter()
        .map(|line| (line.width() as u16).div_ceil(width).max(1))
        .sum::<u16>()
        .min(4);
    let [header, banner_area, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(banner_height),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, header, app);
    frame.render_widget(
        Paragraph::new(banner)
            .style(banner_style)
            .wrap(Wrap { trim: false }),
        banner_area,
    );
    match app.tab {
        Tab::Node => node::draw(frame, body, app),
        Tab::Peers => peers::draw(frame, body, app),
        Tab::Collections => match &app.shard_map {
            Some(view) => shards::draw(frame, body, view),
            None => collections::draw(frame, body, app),
        },
        Tab::Search => search::draw(frame, body, app),
        Tab::Log => log::draw(frame, body, app),
    }
    frame.render_widget(Paragraph::new(hints(app)), footer);
    if app.help {
        help::draw(frame, frame.area());
    }
}

fn draw_header(frame: &mut Frame, area: Rect, app: &App) {
    let [tabs_area, status_area] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(13)]).areas(area);
    let titles = Tab::ALL
        .iter()
        .enumerate()
        .map(|(i, tab)| format!("{} {}", i + 1, tab.title()));
    let tabs = Tabs::new(titles)
        .select(app.tab.index())
        .style(Style::new().fg(Color::Gray))
        .highlight_style(Style::new().fg(Color::Black).bg(Color::Cyan).bold())
        .divider("│");
    frame.render_widget(tabs, tabs_area);
    let status = match app.connection {
        Connection::Up => Span::styled("● connected", Style::new().fg(Color::Green)),
        Connection::Connecting => Span::styled("… connecting", Style::new().fg(Color::Yellow)),
        Connection::Down { .. } => Span::styled("✖ offline", Style::new().fg(Color::Red).bold()),
    };
    frame.render_widget(
        Paragraph::new(Line::from(status).right_aligned()),
        status_area,
    );
}

/// The lines above the view while the node does not answer, and their colours.
fn banner(app: &App) -> (Vec<Line<'static>>, Style) {
    match &app.connection {
        Connection::Up => (Vec::new(), Style::new()),
        Connection::Connecting => (
            vec![Line::from(format!(" Connecting to {} …", app.target))],
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ),
        Connection::Down { error, attempts } => (
            vec![
                Line::from(format!(
                    " Daemon unreachable at {}: retrying every second (attempt {attempts})",
                    app.target
                ))
                .style(Style::new().add_modifier(Modifier::BOLD)),
                Line::from(format!(" {error}")),
            ],
            Style::new().fg(Color::White).bg(Color::Red),
        ),
    }
}

/// The key hints on the last line.
fn hints(app: &App) -> Line<'static> {
    let pairs: &[(&str, &str)] = match app.tab {
        _ if app.help => &[("any key", "close help"), ("q", "quit")],
        Tab::Search if app.search.editing => &[
            ("Enter", "search"),
            ("Esc", "stop typing"),
            ("Ctrl-U", "clear"),
            ("Ctrl-C", "quit"),
        ],
        Tab::Node => &[("q", "quit"), ("?", "help"), ("Tab/1-5", "views")],
        Tab::Peers => &[
            ("q", "quit"),
            ("?", "help"),
            ("↑↓", "select"),
            ("s", "sort"),
            ("r", "reverse"),
        ],
        Tab::Collections if app.shard_map.is_some() => &[
            ("q", "quit"),
            ("?", "help"),
            ("↑↓", "select"),
            ("Esc", "back to the collections"),
        ],
        Tab::Collections => &[
            ("q", "quit"),
            ("?", "help"),
            ("↑↓", "select"),
            ("Enter", "search it"),
            ("s", "shards"),
        ],
        Tab::Search => &[
            ("q", "quit"),
            ("/", "type a query"),
            ("←→", "collection"),
            ("+-", "k"),
            ("f", "local/federated"),
        ],
        Tab::Log => &[
            ("q", "quit"),
            ("l", "level"),
            ("↑↓ PgUp PgDn", "scroll"),
            ("End", "follow"),
        ],
    };
    let mut spans = Vec::new();
    for (key, what) in pairs {
        spans.push(Span::styled(format!(" {key}"), Style::new().bold()));
        spans.push(Span::raw(format!(" {what} ")));
    }
    Line::from(spans).style(Style::new().fg(Color::Gray))
}

/// A sparkline of the newest samples that fit `width`, scaled to its own maximum.
fn sparkline(history: &History, width: u16) -> Sparkline<'static> {
    let bars: Vec<Option<u64>> = history
        .tail(width as usize)
        .map(|v| v.map(|x| (x * 1000.0).round().max(0.0) as u64))
        .collect();
    Sparkline::default()
        .data(bars)
        .style(Style::new().fg(Color::Cyan))
}

/// A dimmed "—", for values the node does not report.
fn absent() -> Span<'static> {
    Span::styled("—", Style::new().fg(Color::DarkGray))
}
