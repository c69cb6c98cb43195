//! The Search view: the collection, the query line, the mode (local or federated) in the
//! title, the hits (id, score, the leaf block that holds each vector), what the search
//! covered (`coverage`), and this dashboard's search round trips over time.

use ratatui::{
    layout::{Constraint, Layout, Position, Rect},
    style::{Color, Style, Stylize},
    text::{Line, Span},
    widgets::{Block, Cell, Paragraph, Row, Table},
    Frame,
};

use super::{coverage, format, sparkline};
use crate::app::{App, SearchResult};

const ID_WIDTH: u16 = 16;
/// The score column is as wide as its widest score (l2 and dot scores can be long), never
/// narrower than this.
const SCORE_MIN_WIDTH: u16 = 10;

/// Draws the view.
pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let block = Block::bordered().title(format!(" Search: {} ", app.search.mode()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [collection_area, query_area, status_area, hits_area, chart_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Min(2),
        Constraint::Length(4),
    ])
    .areas(inner);
    let label = |name: &'static str| Span::styled(format!(" {name:<11} "), Style::new().bold());
    let search = &app.search;

    let collection = match app.search_collection() {
        Some(c) => Line::from(vec![
            label("Collection"),
            Span::styled(
                format!("◀ {} ▶", c.name),
                Style::new().fg(Color::Cyan).bold(),
            ),
            Span::raw(format!(
                "  {} dims, {}, {} points   k {}",
                c.dim,
                c.metric,
                format::count(c.points),
                search.k
            )),
        ]),
        None => Line::from(vec![
            label("Collection"),
            Span::styled("none yet", Style::new().fg(Color::DarkGray)),
        ]),
    };
    frame.render_widget(Paragraph::new(collection), collection_area);

    let input = if search.input.is_empty() && !search.editing {
        Span::styled(
            "press / and type 0.1, 0.2, …, id:<point id> or a question",
            Style::new().fg(Color::DarkGray),
        )
    } else if search.editing {
        Span::styled(search.input.clone(), Style::new().underlined())
    } else {
        Span::raw(search.input.clone())
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![label("Query"), input])),
        query_area,
    );
    if search.editing {
        let x = query_area.x + 13 + search.input.chars().count() as u16;
        frame.set_cursor_position(Position::new(
            x.min(query_area.right().saturating_sub(1)),
            query_area.y,
        ));
    }

    let status = if search.pending.is_some() {
        Line::from(" searching …").fg(Color::Yellow)
    } else if let Some(e) = &search.error {
        Line::from(format!(" {e}")).fg(Color::Red)
    } else if let Some(r) = &search.result {
        let hits = match r.hits.len() {
            1 => "1 hit".to_string(),
            n => format!("{n} hits"),
        };
        Line::from(format!(
            " {hits} in {} for {} in {}",
            format::millis(r.millis),
            r.query,
            r.collection
        ))
        .fg(Color::Green)
    } else {
        Line::default()
    };
    frame.render_widget(
        Paragraph::new(status).wrap(ratatui::widgets::Wrap { trim: false }),
        status_area,
    );

    if let Some(result) = &search.result {
        let (hits_area, coverage_area) = split(hits_area, result);
        if let Some(c) = &result.coverage {
            coverage::draw(frame, coverage_area, c);
        }
        // Scores are shown whole: a cut one (-1413204 as 13204.0000) reads as another number.
        let scores: Vec<String> = result
            .hits
            .iter()
            // An exact l2 match scores -0: shown as 0.
            .map(|hit| format!("{:.4}", if hit.score == 0.0 { 0.0 } else { hit.score }))
            .collect();
        let score_width = scores
            .iter()
            .map(|s| s.chars().count() as u16)
            .fold(SCORE_MIN_WIDTH, u16::max);
        let cid_width = hits_area
            .width
            .saturating_sub(3 + ID_WIDTH + score_width + 3) as usize;
        let header = Row::new(vec![
            Cell::from(Line::from("#").right_aligned()),
            Cell::from("Id"),
            Cell::from(Line::from("Score").right_aligned()),
            Cell::from("Leaf CID"),
        ])
        .style(Style::new().bold());
        let rows = result
            .hits
            .iter()
            .zip(scores)
            .enumerate()
            .map(|(i, (hit, score))| {
                let cid = match &hit.cid {
                    Some(cid) => Cell::from(format::middle(cid, cid_width)),
                    None => Cell::from(Span::styled(
                        "in the log, not yet in a leaf",
                        Style::new().fg(Color::DarkGray),
                    )),
                };
                Row::new(vec![
                    Cell::from(Line::from(format!("{}", i + 1)).right_aligned()),
                    Cell::from(format::middle(&hit.id_text(), ID_WIDTH as usize)),
                    Cell::from(Line::from(score).right_aligned()),
                    cid,
                ])
            });
        let widths = [
            Constraint::Length(3),
            Constraint::Length(ID_WIDTH),
            Constraint::Length(score_width),
            Constraint::Fill(1),
        ];
        frame.render_widget(Table::new(rows, widths).header(header), hits_area);
    }

    let history = &search.latencies;
    let now = history
        .last()
        .map(format::millis)
        .unwrap_or_else(|| "—".into());
    let chart = Block::bordered().title(format!(" round trip of searches from here: {now} "));
    let chart_inner = chart.inner(chart_area);
    frame.render_widget(chart, chart_area);
    frame.render_widget(sparkline(history, chart_inner.width), chart_inner);
}

/// The hits' rows, and the coverage's below them: all of both when they fit (with a blank
/// line between), else the coverage gets at least half (it names the missing shards) and
/// the hits the rest.
fn split(area: Rect, result: &SearchResult) -> (Rect, Rect) {
    let needed = result.coverage.as_ref().map_or(0, coverage::height);
    if needed == 0 {
        return (area, Rect::default());
    }
    let hits = u16::try_from(result.hits.len())
        .unwrap_or(u16::MAX)
        .saturating_add(1);
    let (hits, gap) = if hits.saturating_add(needed) < area.height {
        (hits, 1)
    } else if hits.saturating_add(needed) == area.height {
        (hits, 0)
    } else {
        let below = needed.min((area.height / 2).max(area.height.saturating_sub(hits)));
        (area.height - below, 0)
    };
    let [hits_area, _, coverage_area] = Layout::vertical([
        Constraint::Length(hits),
        Constraint::Length(gap),
        Constraint::Min(0),
    ])
    .areas(area);
    (hits_area, coverage_area)
}
