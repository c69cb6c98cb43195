//! The shard map (`s` on a collection): one row per shard — its number, root, points, live
//! holders of those wanted, and the holders — and the selected shard in full below. The
//! table's columns are a list ([`COLUMNS`]), so another one (moves in progress, once the node
//! reports them) is one more entry.

use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Style, Stylize},
    text::{Line, Span},
    widgets::{Block, Paragraph, Row, Table, TableState, Wrap},
    Frame,
};

use super::{absent, format};
use crate::{
    api::types::{Holder, ShardHolders, ShardMap},
    app::ShardMapView,
};

/// Lines the details box needs besides its holders, borders included.
const DETAILS: u16 = 5;
/// Holders the details box makes room for (more are listed if the screen has room).
const MAX_HOLDER_LINES: usize = 4;
/// Characters between two columns (the table's default).
const SPACING: u16 = 1;
/// Between two holders in a row.
const GAP: &str = "  ";

/// What a row's cells need besides its shard.
#[derive(Debug, Clone, Copy)]
struct RowContext {
    /// Holders each shard should have.
    wanted: u32,
    /// Characters the Holders column has.
    holders_width: usize,
}

/// A column of the shard table: its header, its width, and its cell of a shard.
struct Column {
    header: &'static str,
    width: Constraint,
    cell: fn(&ShardHolders, RowContext) -> Line<'static>,
}

/// The columns, left to right. Holders, last, takes the width the others leave.
const COLUMNS: [Column; 6] = [
    Column {
        header: "Shard",
        width: Constraint::Length(5),
        cell: shard_cell,
    },
    Column {
        header: "Root",
        width: Constraint::Length(13),
        cell: root_cell,
    },
    Column {
        header: "Points",
        width: Constraint::Length(6),
        cell: points_cell,
    },
    Column {
        header: "Live",
        width: Constraint::Length(5),
        cell: live_cell,
    },
    Column {
        header: "Move",
        width: Constraint::Length(18),
        cell: move_cell,
    },
    Column {
        header: "Holders",
        width: Constraint::Fill(1),
        cell: holders_cell,
    },
];

/// Draws the view of `view`'s collection.
pub fn draw(frame: &mut Frame, area: Rect, view: &ShardMapView) {
    let Some(map) = &view.map else {
        let text = match &view.error {
            Some(error) => vec![
                Line::from(format!(
                    "The node did not give the shard map of {}:",
                    view.collection
                )),
                Line::from(error.clone()).fg(Color::Red),
            ],
            None => vec![Line::from(format!(
                "Asking the node who holds the shards of {} …",
                view.collection
            ))],
        };
        let mut lines = vec![Line::default()];
        lines.extend(text);
        let paragraph = Paragraph::new(lines)
            .block(Block::bordered().title(format!(" Shards of {} ", view.collection)))
            .centered()
            .wrap(Wrap { trim: true })
            .fg(Color::Gray);
        frame.render_widget(paragraph, area);
        return;
    };
    let selected = map.shards.get(view.selected);
    let holder_lines = selected.map_or(1, |s| s.holders.len().clamp(1, MAX_HOLDER_LINES)) as u16;
    let rows_height =
        (map.shards.len() as u16 + 3).min(area.height.saturating_sub(DETAILS + holder_lines));
    let [table_area, details_area] =
        Layout::vertical([Constraint::Length(rows_height), Constraint::Min(0)]).areas(area);
    let context = RowContext {
        wanted: map.replication,
        holders_width: holders_width(table_area.width.saturating_sub(2)),
    };
    let header = Row::new(COLUMNS.iter().map(|c| c.header)).style(Style::new().bold());
    let rows = map.shards.iter().map(|s| Row::new(cells(s, context)));
    let mut block = Block::bordered().title(title(map));
    if let Some(error) = &view.error {
        block = block.title_bottom(Line::from(format!(" refresh failed: {error} ")).red());
    }
    let table = Table::new(rows, COLUMNS.iter().map(|c| c.width))
        .header(header)
        .column_spacing(SPACING)
        .block(block)
        .row_highlight_style(Style::new().bg(Color::DarkGray));
    let mut state = TableState::default().with_selected(Some(view.selected));
    frame.render_stateful_widget(table, table_area, &mut state);
    if let Some(shard) = selected {
        details(frame, details_area, shard, map.replication);
    }
}

/// ` Shards of docs (4), 2 holders wanted each, 1 under-replicated `.
fn title(map: &ShardMap) -> String {
    let under = map
        .shards
        .iter()
        .filter(|s| s.live < map.replication)
        .count();
    let mut title = format!(
        " Shards of {} ({}), {} wanted each",
        map.name,
        map.shards.len(),
        format::counted(u64::from(map.replication), "holder", "holders"),
    );
    if under > 0 {
        title.push_str(&format!(", {under} under-replicated"));
    }
    title.push(' ');
    title
}

/// The width the Holders column gets of a table `inner` characters wide.
fn holders_width(inner: u16) -> usize {
    let fixed: u16 = COLUMNS
        .iter()
        .map(|c| match c.width {
            Constraint::Length(n) => n,
            _ => 0,
        })
        .sum();
    let spacing = SPACING * (COLUMNS.len() as u16 - 1);
    usize::from(inner.saturating_sub(fixed + spacing))
}

/// One shard's row, a cell per column.
fn cells(shard: &ShardHolders, context: RowContext) -> Vec<Line<'static>> {
    COLUMNS.iter().map(|c| (c.cell)(shard, context)).collect()
}

fn shard_cell(s: &ShardHolders, _: RowContext) -> Line<'static> {
    Line::from(s.shard.to_string()).right_aligned()
}

fn root_cell(s: &ShardHolders, _: RowContext) -> Line<'static> {
    if s.root.is_empty() {
        return Line::from(absent());
    }
    Line::from(format::short_id(&s.root))
}

fn points_cell(s: &ShardHolders, _: RowContext) -> Line<'static> {
    Line::from(format::compact_count(s.points)).right_aligned()
}

fn live_cell(s: &ShardHolders, context: RowContext) -> Line<'static> {
    Line::from(live(s.live, context.wanted))
}

/// Moves under way: on this node as a member, or on others as their records say.
fn move_cell(s: &ShardHolders, _: RowContext) -> Line<'static> {
    match &s.moving {
        Some(moving) => Line::from(Span::styled(moving.clone(), Style::new().fg(Color::Yellow))),
        None => Line::from(""),
    }
}

fn holders_cell(s: &ShardHolders, context: RowContext) -> Line<'static> {
    holders(&s.holders, context.holders_width)
}

/// Live holders of those wanted, `1/2`, as [`live_style`] shows them.
fn live(live: u32, wanted: u32) -> Span<'static> {
    Span::styled(format!("{live}/{wanted}"), live_style(live, wanted))
}

/// Yellow while some of the holders wanted are missing, red when none is alive.
fn live_style(live: u32, wanted: u32) -> Style {
    match live {
        0 => Style::new().fg(Color::Red).bold(),
        n if n < wanted => Style::new().fg(Color::Yellow).bold(),
        _ => Style::new(),
    }
}

/// A holder in a row: `here` for this node, else its peer id's end as the Peers view shows
/// it, after `●` when it is alive or `✖` when it is not connected.
fn holder(h: &Holder) -> Span<'static> {
    let name = if h.here {
        "here".to_string()
    } else {
        format::id_tail(&h.peer_id)
    };
    if h.alive {
        Span::styled(format!("● {name}"), Style::new().fg(Color::Green))
    } else {
        Span::styled(format!("✖ {name}"), Style::new().fg(Color::Red))
    }
}

/// The holders in `width` characters: this node first, then the live ones, then the others,
/// and `+N` for those that do not fit.
fn holders(list: &[Holder], width: usize) -> Line<'static> {
    if list.is_empty() {
        return Line::from(Span::styled("none known", Style::new().fg(Color::Red)));
    }
    let mut ordered: Vec<&Holder> = list.iter().collect();
    ordered.sort_by_key(|h| (!h.here, !h.alive));
    let mut spans = Vec::new();
    let mut used = 0;
    for (i, h) in ordered.iter().enumerate() {
        let span = holder(h);
        let gap = if i == 0 { 0 } else { GAP.len() };
        let rest = ordered.len() - i - 1;
        let more = if rest == 0 {
            0
        } else {
            GAP.len() + format!("+{rest}").len()
        };
        if used + gap + span.width() + more > width {
            let left = ordered.len() - i;
            let gap = if i == 0 { "" } else { GAP };
            spans.push(Span::raw(format!("{gap}+{left}")));
            break;
        }
        if gap > 0 {
            spans.push(Span::raw(GAP));
        }
        used += gap + span.width();
        spans.push(span);
    }
    Line::from(spans)
}

/// The selected shard in full: its whole root, and every holder's whole peer id.
fn details(frame: &mut Frame, area: Rect, s: &ShardHolders, wanted: u32) {
    let field = |name: &'static str, value: Vec<Span<'static>>| {
        let mut spans = vec![Span::styled(format!(" {name:<8} "), Style::new().bold())];
        spans.extend(value);
        Line::from(spans)
    };
    let root = if s.root.is_empty() {
        vec![absent()]
    } else {
        vec![Span::raw(s.root.clone())]
    };
    let mut liveness = vec![
        Span::styled(
            format!("{} of {wanted}", s.live),
            live_style(s.live, wanted),
        ),
        Span::raw(" wanted holders alive"),
    ];
    if s.live < wanted {
        liveness.push(Span::raw(": under-replicated"));
    }
    let mut lines = vec![
        field("Root", root),
        field(
            "Points",
            vec![Span::raw(format!(
                "{} (as of this node's version)",
                format::count(s.points)
            ))],
        ),
        field("Live", liveness),
    ];
    if !s.placed.is_empty() {
        let placed = s
            .placed
            .iter()
            .map(|p| format::id_tail(p))
            .collect::<Vec<_>>();
        let mut value = vec![Span::raw(placed.join(" "))];
        if let Some(moving) = &s.moving {
            value.push(Span::styled(
                format!(" ({moving})"),
                Style::new().fg(Color::Yellow),
            ));
        }
        lines.push(field("Placed", value));
    }
    if s.holders.is_empty() {
        lines.push(field(
            "Holders",
            vec![Span::styled(
                "none known: neither this node nor a provider in the DHT",
                Style::new().fg(Color::Red),
            )],
        ));
    }
    let mut ordered: Vec<&Holder> = s.holders.iter().collect();
    ordered.sort_by_key(|h| (!h.here, !h.alive));
    for (i, h) in ordered.into_iter().enumerate() {
        let state = match (h.here, h.alive) {
            (true, _) => Span::styled("this node", Style::new().fg(Color::Green)),
            (false, true) => Span::styled("connected", Style::new().fg(Color::Green)),
            (false, false) => Span::styled("not connected", Style::new().fg(Color::Red)),
        };
        lines.push(field(
            if i == 0 { "Holders" } else { "" },
            vec![Span::raw(format!("{}  ", h.peer_id)), state],
        ));
    }
    let block = Block::bordered().title(format!(" Shard {} ", s.shard));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
    const PEER_A: &str = "12D3KooWAbc1111111111111111111111111111111111111111zz";
    const PEER_B: &str = "12D3KooWXyz2222222222222222222222222222222222222222yy";

    fn holder(peer_id: &str, here: bool, alive: bool) -> Holder {
        Holder {
            peer_id: peer_id.into(),
            here,
            alive,
        }
    }

    fn text(line: &Line) -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    // `..default()` even with every field given, so fields the node adds later (moves in
    // progress) keep this compiling.
    #[allow(clippy::needless_update)]
    fn shard(holders: Vec<Holder>) -> ShardHolders {
        ShardHolders {
            shard: 3,
            root: "bafyr4igdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".into(),
            points: 123_456,
            live: holders.iter().filter(|h| h.alive).count() as u32,
            holders,
            ..ShardHolders::default()
        }
    }

    #[test]
    fn a_row_has_a_cell_per_column() {
        let s = shard(vec![
            holder(PEER_B, false, false),
            holder(PEER_A, false, true),
            holder(HERE, true, true),
        ]);
        let context = RowContext {
            wanted: 3,
            holders_width: 40,
        };
        let row: Vec<String> = cells(&s, context).iter().map(text).collect();
        assert_eq!(
            row,
            [
                "3",
                "bafyr4…5fbzdi",
                "123k",
                "2/3",
                "",
                "● here  ● …1111zz  ✖ …2222yy"
            ]
        );
        let headers: Vec<&str> = COLUMNS.iter().map(|c| c.header).collect();
        assert_eq!(
            headers,
            ["Shard", "Root", "Points", "Live", "Move", "Holders"]
        );
        // A member fetching the shard says so.
        let moving = ShardHolders {
            moving: Some("fetching here".into()),
            ..s
        };
        assert_eq!(text(&cells(&moving, context)[4]), "fetching here");
    }

    #[test]
    fn live_holders_stand_out_when_fewer_than_wanted() {
        assert_eq!(live(2, 2).style, Style::default());
        assert_eq!(
            live(3, 2).style,
            Style::default(),
            "more than wanted is fine"
        );
        assert_eq!(live(1, 2).style.fg, Some(Color::Yellow));
        assert_eq!(live(0, 1).style.fg, Some(Color::Red));
        assert_eq!(live(0, 1).content, "0/1");
    }

    #[test]
    fn holders_that_do_not_fit_are_counted() {
        let list = vec![
            holder(PEER_A, false, true),
            holder(PEER_B, false, false),
            holder(HERE, true, true),
        ];
        assert_eq!(text(&holders(&list, 28)), "● here  ● …1111zz  ✖ …2222yy");
        assert_eq!(text(&holders(&list, 27)), "● here  ● …1111zz  +1");
        assert_eq!(text(&holders(&list, 17)), "● here  +2");
        assert_eq!(text(&holders(&list, 3)), "+3");
        assert_eq!(text(&holders(&[], 40)), "none known");
        // Without the network the node names itself "this node": still `here`.
        assert_eq!(
            text(&holders(&[holder("this node", true, true)], 40)),
            "● here"
        );
    }

    #[test]
    fn the_holders_column_takes_what_the_others_leave() {
        // 5 + 13 + 6 + 5 + 18 fixed, five gaps.
        assert_eq!(holders_width(78), 78 - 47 - 5);
        assert_eq!(holders_width(10), 0);
    }

    #[test]
    fn the_title_counts_under_replicated_shards() {
        let mut map = ShardMap {
            name: "docs".into(),
            replication: 2,
            shards: vec![
                shard(vec![holder(HERE, true, true), holder(PEER_A, false, true)]),
                shard(vec![holder(HERE, true, true)]),
            ],
            ..ShardMap::default()
        };
        assert_eq!(
            title(&map),
            " Shards of docs (2), 2 holders wanted each, 1 under-replicated "
        );
        map.replication = 1;
        assert_eq!(title(&map), " Shards of docs (2), 1 holder wanted each ");
    }
}
