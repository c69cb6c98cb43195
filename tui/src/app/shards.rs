//! The shard map of one collection (`s` in the Collections view, `Esc` back): what the node
//! last said of who holds each shard, and the shard selected. The runtime asks for it at each
//! refresh while it is shown.

use crate::api::types::ShardMap;

/// The shard map view of a collection, while it is open.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardMapView {
    /// The collection it shows.
    pub collection: String,
    /// The node's last answer; kept while a refresh fails.
    pub map: Option<ShardMap>,
    /// Why the last refresh failed, until one works again.
    pub error: Option<String>,
    /// The shard row selected.
    pub selected: usize,
}

impl ShardMapView {
    /// The view of `collection`, before the node has answered.
    pub fn new(collection: impl Into<String>) -> ShardMapView {
        ShardMapView {
            collection: collection.into(),
            map: None,
            error: None,
            selected: 0,
        }
    }

    /// Takes the node's answer about `collection`. An answer about another collection (asked
    /// before the user opened this one) is dropped.
    pub fn answered(&mut self, collection: &str, outcome: Result<ShardMap, String>) {
        if collection != self.collection {
            return;
        }
        match outcome {
            Ok(map) => {
                self.selected = self.selected.min(map.shards.len().saturating_sub(1));
                self.map = Some(map);
                self.error = None;
            }
            Err(error) => self.error = Some(error),
        }
    }

    /// Selects the shard above.
    pub fn select_previous(&mut self) {
        self.selected = self.selected.saturating_sub(1);
    }

    /// Selects the shard below, stopping at the last.
    pub fn select_next(&mut self) {
        let last = self
            .map
            .as_ref()
            .map_or(0, |m| m.shards.len().saturating_sub(1));
        self.selected = (self.selected + 1).min(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::ShardHolders;

    fn map(name: &str, shards: u32) -> ShardMap {
        ShardMap {
            name: name.into(),
            replication: 1,
            shards: (0..shards)
                .map(|shard| ShardHolders {
                    shard,
                    ..ShardHolders::default()
                })
                .collect(),
            ..ShardMap::default()
        }
    }

    #[test]
    fn answers_about_another_collection_are_dropped() {
        let mut view = ShardMapView::new("docs");
        view.answered("notes", Ok(map("notes", 2)));
        assert_eq!(view.map, None);
        view.answered("docs", Ok(map("docs", 2)));
        assert_eq!(view.map.as_ref().map(|m| m.shards.len()), Some(2));
    }

    #[test]
    fn a_failed_refresh_keeps_the_last_map_until_one_works() {
        let mut view = ShardMapView::new("docs");
        view.answered("docs", Ok(map("docs", 4)));
        view.answered("docs", Err("timed out".into()));
        assert_eq!(view.error.as_deref(), Some("timed out"));
        assert!(view.map.is_some());
        view.answered("docs", Ok(map("docs", 4)));
        assert_eq!(view.error, None);
    }

    #[test]
    fn the_selection_stays_on_the_shards() {
        let mut view = ShardMapView::new("docs");
        view.select_next();
        assert_eq!(view.selected, 0, "nothing to select before the answer");
        view.answered("docs", Ok(map("docs", 3)));
        for _ in 0..5 {
            view.select_next();
        }
        assert_eq!(view.selected, 2);
        view.answered("docs", Ok(map("docs", 2)));
        assert_eq!(view.selected, 1, "fewer shards: the last one");
        view.select_previous();
        view.select_previous();
        assert_eq!(view.selected, 0);
    }
}
