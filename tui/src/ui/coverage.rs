//! What a search covered, drawn under its hits: one line (`coverage 7/8 shards, 1 hedged`
//! for a federated search, `searched shards 1, 3 of 4` for a partial replica searched
//! alone) and, when the node reports each shard, a row per shard: who answered it, how fast,
//! whether that answer was a hedge, or why the shard is missing.

use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Style, Stylize},
    text::{Line, Span},
    widgets::{Cell, Paragraph, Row, Table},
    Frame,
};

use super::{absent, format};
use crate::api::types::{Coverage, ShardCoverage};

/// Lines `coverage` takes when it all fits: its line, then the table's header and one row
/// per shard.
pub fn height(coverage: &Coverage) -> u16 {
    let line = u16::from(summary(coverage).is_some());
    let table = match coverage.report.len() {
        0 => 0,
        n => u16::try_from(n).unwrap_or(u16::MAX).saturating_add(1),
    };
    line.saturating_add(table)
}

/// The coverage line, or None when there is nothing to say (every shard searched here).
pub fn summary(coverage: &Coverage) -> Option<Line<'static>> {
    let color = if coverage.complete {
        Color::Green
    } else {
        Color::Yellow
    };
    if coverage.report.is_empty() {
        if coverage.complete {
            return None;
        }
        return Some(
            Line::from(format!(
                " searched shards {} of {} (this node holds only those)",
                list(coverage.searched.iter().copied()),
                coverage.shards
            ))
            .fg(color),
        );
    }
    let mut text = format!(
        " coverage {}/{} shards",
        coverage.searched.len(),
        coverage.shards
    );
    let hedged = coverage.report.iter().filter(|s| s.hedged).count();
    if hedged > 0 {
        text += &format!(", {hedged} hedged");
    }
    let missing: Vec<u32> = coverage
        .report
        .iter()
        .filter(|s| s.missing.is_some())
        .map(|s| s.shard)
        .collect();
    match missing.len() {
        0 => {}
        1 => text += &format!(", shard {} missing", missing[0]),
        _ => text += &format!(", shards {} missing", list(missing.into_iter())),
    }
    let failed: usize = coverage
        .report
        .iter()
        .map(|s| s.verify_failures.len())
        .sum();
    if failed > 0 {
        text += &format!(", {}", hits_failed(failed));
    }
    Some(Line::from(text).fg(color))
}

/// Draws the line and the table into `area`, as much of them as fits. When the table does
/// not fit, the rows that say something (a missing shard, failed verification, a hedge)
/// are kept, and the last line says how many others are left out.
pub fn draw(frame: &mut Frame, area: Rect, coverage: &Coverage) {
    let line = summary(coverage);
    let [line_area, table_area] = Layout::vertical([
        Constraint::Length(u16::from(line.is_some())),
        Constraint::Min(0),
    ])
    .areas(area);
    if let Some(line) = line {
        frame.render_widget(Paragraph::new(line), line_area);
    }
    // A header alone says nothing.
    if coverage.report.is_empty() || table_area.height < 2 {
        return;
    }
    let room = usize::from(table_area.height - 1);
    let (shown, hidden) = fitting(&coverage.report, room);
    let [rows_area, more_area] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(u16::from(hidden > 0)),
    ])
    .areas(table_area);
    let header = Row::new(vec![
        Cell::from(Line::from("Shard").right_aligned()),
        Cell::from("Answered by"),
        Cell::from(Line::from("Latency").right_aligned()),
        Cell::from("Hedged"),
        Cell::from("Notes"),
    ])
    .style(Style::new().bold());
    let widths = [
        Constraint::Length(5),
        Constraint::Length(11),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Fill(1),
    ];
    let rows = shown.into_iter().map(row);
    frame.render_widget(Table::new(rows, widths).header(header), rows_area);
    if hidden > 0 {
        frame.render_widget(
            Paragraph::new(format!(
                " … {hidden} more shard{} (a taller terminal shows every shard)",
                if hidden == 1 { "" } else { "s" }
            ))
            .fg(Color::DarkGray),
            more_area,
        );
    }
}

/// One shard's row.
fn row(shard: &ShardCoverage) -> Row<'static> {
    let answered_by = match &shard.answered_by {
        Some(by) => Cell::from(format::id_tail(by)),
        None => Cell::from(absent()),
    };
    let latency = match shard.latency_ms {
        Some(ms) => Cell::from(Line::from(format!("{ms} ms")).right_aligned()),
        None => Cell::from(Line::from(absent()).right_aligned()),
    };
    let hedged = if shard.hedged {
        Cell::from(Span::styled("yes", Style::new().fg(Color::Yellow)))
    } else {
        Cell::from("")
    };
    let notes = if let Some(why) = &shard.missing {
        Span::styled(format!("missing: {why}"), Style::new().fg(Color::Red))
    } else if let Some(first) = shard.verify_failures.first() {
        Span::styled(
            format!("{}: {first}", hits_failed(shard.verify_failures.len())),
            Style::new().fg(Color::Red),
        )
    } else if let Some(verified) = shard.verified {
        Span::styled(
            format!(
                "{} verified",
                format::counted(verified.into(), "hit", "hits")
            ),
            Style::new().fg(Color::Green),
        )
    } else {
        Span::raw("")
    };
    Row::new(vec![
        Cell::from(Line::from(shard.shard.to_string()).right_aligned()),
        answered_by,
        latency,
        hedged,
        Cell::from(notes),
    ])
}

/// The shards that fit in `room` rows, in shard order, and how many are left out. When
/// not all fit, one row goes to saying how many are left out, and the shards that say
/// something come first: missing ones, then those whose hits failed verification, then
/// hedged ones.
fn fitting(report: &[ShardCoverage], room: usize) -> (Vec<&ShardCoverage>, usize) {
    if report.len() <= room {
        return (report.iter().collect(), 0);
    }
    let keep = room.saturating_sub(1);
    let rank = |s: &ShardCoverage| {
        if s.missing.is_some() {
            0
        } else if !s.verify_failures.is_empty() {
            1
        } else if s.hedged {
            2
        } else {
            3
        }
    };
    let mut order: Vec<usize> = (0..report.len()).collect();
    // Stable: equal ranks stay in shard order.
    order.sort_by_key(|&i| rank(&report[i]));
    order.truncate(keep);
    order.sort_unstable();
    (
        order.into_iter().map(|i| &report[i]).collect(),
        report.len() - keep,
    )
}

/// Shard numbers as the CLI lists them: `1, 3`.
fn list(shards: impl Iterator<Item = u32>) -> String {
    shards.map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
}

fn hits_failed(n: usize) -> String {
    format!(
        "{} failed verification",
        format::counted(n as u64, "hit", "hits")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(shard: u32) -> ShardCoverage {
        ShardCoverage {
            shard,
            answered_by: Some("local".into()),
            latency_ms: Some(1),
            ..ShardCoverage::default()
        }
    }

    fn shown(report: &[ShardCoverage], room: usize) -> (Vec<u32>, usize) {
        let (rows, hidden) = fitting(report, room);
        (rows.iter().map(|s| s.shard).collect(), hidden)
    }

    #[test]
    fn rows_that_say_something_are_kept_when_the_table_is_cut() {
        let mut report: Vec<ShardCoverage> = (0..8).map(shard).collect();
        report[6].hedged = true;
        report[5].missing = Some("no holder known".into());
        report[7].verify_failures = vec!["id 4: score differs".into()];
        assert_eq!(shown(&report, 8), ((0..8).collect(), 0));
        assert_eq!(shown(&report, 5), (vec![0, 5, 6, 7], 4));
        assert_eq!(shown(&report, 3), (vec![5, 7], 6));
        assert_eq!(shown(&report, 1), (vec![], 8));
        assert_eq!(shown(&report, 0), (vec![], 8));
    }

    #[test]
    fn the_line_says_what_a_search_covered() {
        let text = |c: &Coverage| summary(c).map(|line| line.to_string());
        let local = Coverage {
            shards: 2,
            searched: vec![0, 1],
            complete: true,
            report: vec![],
        };
        assert_eq!(text(&local), None);
        assert_eq!(height(&local), 0);
        let partial = Coverage {
            shards: 4,
            searched: vec![1, 3],
            complete: false,
            report: vec![],
        };
        assert_eq!(
            text(&partial).unwrap(),
            " searched shards 1, 3 of 4 (this node holds only those)"
        );
        assert_eq!(height(&partial), 1);
        let mut report: Vec<ShardCoverage> = (0..4).map(shard).collect();
        report[1].hedged = true;
        report[2].missing = Some("deadline".into());
        report[3].missing = Some("no holder known".into());
        report[0].verify_failures = vec!["a".into(), "b".into()];
        let federated = Coverage {
            shards: 4,
            searched: vec![0, 1],
            complete: false,
            report,
        };
        assert_eq!(
            text(&federated).unwrap(),
            " coverage 2/4 shards, 1 hedged, shards 2, 3 missing, 2 hits failed verification"
        );
        assert_eq!(height(&federated), 6);
    }
}
