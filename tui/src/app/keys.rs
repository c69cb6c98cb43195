//! Keys: global ones (quit, help, switching views), then the shown view's own.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::{search::MAX_K, App, SearchCall, ShardMapView, Tab};

/// Lines a page key moves in the Log view.
const PAGE: usize = 10;

impl App {
    /// Handles a key; returns a search for the runtime to run, if the key started one.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<SearchCall> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            self.quit = true;
            return None;
        }
        if self.tab == Tab::Search && self.search.editing {
            return self.edit_query(key);
        }
        if self.help {
            match key.code {
                KeyCode::Char('q') => self.quit = true,
                _ => self.help = false,
            }
            return None;
        }
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') => self.help = true,
            KeyCode::Tab => self.tab = self.tab.offset(1),
            KeyCode::BackTab => self.tab = self.tab.offset(-1),
            KeyCode::Char(c @ '1'..='5') => {
                self.tab = Tab::ALL[c as usize - '1' as usize];
            }
            _ => return self.view_key(key),
        }
        None
    }

    fn view_key(&mut self, key: KeyEvent) -> Option<SearchCall> {
        match self.tab {
            Tab::Node => {}
            Tab::Peers => match key.code {
                KeyCode::Up | KeyCode::Char('k') => {
                    self.peer_selected = self.peer_selected.saturating_sub(1);
                }
                KeyCode::Down | KeyCode::Char('j') => {
                    let last = self.sorted_peers().len().saturating_sub(1);
                    self.peer_selected = (self.peer_selected + 1).min(last);
                }
                KeyCode::Char('s') => self.peer_sort = self.peer_sort.next(),
                KeyCode::Char('r') => self.peer_sort_descending = !self.peer_sort_descending,
                _ => {}
            },
            Tab::Collections if self.shard_map.is_some() => self.shard_map_key(key),
            Tab::Collections => match key.code {
                KeyCode::Up | KeyCode::Char('k') => {
                    self.collection_selected = self.collection_selected.saturating_sub(1);
                }
                KeyCode::Down | KeyCode::Char('j') => {
                    let last = self.collections.len().saturating_sub(1);
                    self.collection_selected = (self.collection_selected + 1).min(last);
                }
                KeyCode::Enter => {
                    if let Some(c) = self.collections.get(self.collection_selected) {
                        self.search.collection = Some(c.name.clone());
                        self.tab = Tab::Search;
                        self.search.editing = true;
                    }
                }
                KeyCode::Char('s') => {
                    if let Some(c) = self.collections.get(self.collection_selected) {
                        self.shard_map = Some(ShardMapView::new(c.name.clone()));
                    }
                }
                _ => {}
            },
            Tab::Search => match key.code {
                KeyCode::Left | KeyCode::Char('[') => self.cycle_search_collection(-1),
                KeyCode::Right | KeyCode::Char(']') => self.cycle_search_collection(1),
                KeyCode::Char('/') | KeyCode::Char('i') | KeyCode::Enter => {
                    self.search.editing = true;
                }
                KeyCode::Char('+') => self.search.k = (self.search.k + 1).min(MAX_K),
                KeyCode::Char('-') => self.search.k = self.search.k.saturating_sub(1).max(1),
                // Ctrl-F too, as while typing.
                KeyCode::Char('f') => self.search.toggle_federated(),
                _ => {}
            },
            Tab::Log => match key.code {
                KeyCode::Char('l') => self.log.cycle_level(),
                KeyCode::Up | KeyCode::Char('k') => self.log.scroll_up(1),
                KeyCode::Down | KeyCode::Char('j') => self.log.scroll_down(1),
                KeyCode::PageUp => self.log.scroll_up(PAGE),
                KeyCode::PageDown => self.log.scroll_down(PAGE),
                KeyCode::Home | KeyCode::Char('g') => self.log.scroll_up(usize::MAX / 2),
                KeyCode::End | KeyCode::Char('G') | KeyCode::Char('f') => self.log.scroll = 0,
                _ => {}
            },
        }
        None
    }

    /// Keys of the shard map, shown in the Collections view's place.
    fn shard_map_key(&mut self, key: KeyEvent) {
        let Some(view) = &mut self.shard_map else {
            return;
        };
        match key.code {
            KeyCode::Esc => self.shard_map = None,
            KeyCode::Up | KeyCode::Char('k') => view.select_previous(),
            KeyCode::Down | KeyCode::Char('j') => view.select_next(),
            _ => {}
        }
    }

    fn edit_query(&mut self, key: KeyEvent) -> Option<SearchCall> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Esc => self.search.editing = false,
            KeyCode::Enter => {
                let Some(collection) = self.search_collection() else {
                    self.search.error = Some(
                        "no collection to search: create one with `ipvec collection create`".into(),
                    );
                    return None;
                };
                let (name, dim) = (collection.name.clone(), collection.dim);
                return self.search.submit(&name, dim);
            }
            KeyCode::Backspace => {
                self.search.input.pop();
            }
            KeyCode::Char('u') if ctrl => self.search.input.clear(),
            KeyCode::Char('f') if ctrl => self.search.toggle_federated(),
            KeyCode::Char(c) if !ctrl => self.search.input.push(c),
            _ => {}
        }
        None
    }

    fn cycle_search_collection(&mut self, by: isize) {
        let n = self.collections.len();
        if n == 0 {
            return;
        }
        let current = self
            .search_collection()
            .and_then(|c| self.collections.iter().position(|x| x.name == c.name))
            .unwrap_or(0);
        let next = (current as isize + by).rem_euclid(n as isize) as usize;
        self.search.collection = Some(self.collections[next].name.clone());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{
        api::types::CollectionInfo,
        app::{Query, Update},
    };

    fn press(app: &mut App, code: KeyCode) -> Option<SearchCall> {
        app.on_key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn typed(app: &mut App, text: &str) {
        for c in text.chars() {
            press(app, KeyCode::Char(c));
        }
    }

    fn app_with(names: &[&str]) -> App {
        let mut app = App::new("x");
        app.collections = names
            .iter()
            .map(|n| CollectionInfo {
                name: n.to_string(),
                dim: 2,
                ..CollectionInfo::default()
            })
            .collect();
        app
    }

    #[test]
    fn tabs_by_number_tab_and_backtab() {
        let mut app = App::new("x");
        press(&mut app, KeyCode::Char('3'));
        assert_eq!(app.tab, Tab::Collections);
        press(&mut app, KeyCode::Tab);
        assert_eq!(app.tab, Tab::Search);
        for _ in 0..4 {
            press(&mut app, KeyCode::BackTab);
        }
        assert_eq!(
            app.tab,
            Tab::Log,
            "backtab wraps from the first view to the last"
        );
    }

    #[test]
    fn help_opens_and_any_key_closes_it_but_q_quits() {
        let mut app = App::new("x");
        press(&mut app, KeyCode::Char('?'));
        assert!(app.help);
        press(&mut app, KeyCode::Char('2'));
        assert!(!app.help);
        assert_eq!(
            app.tab,
            Tab::Node,
            "the key that closes help does nothing else"
        );
        press(&mut app, KeyCode::Char('?'));
        press(&mut app, KeyCode::Char('q'));
        assert!(app.quit);
    }

    #[test]
    fn typing_a_query_keeps_q_and_digits_in_the_query() {
        let mut app = app_with(&["docs"]);
        press(&mut app, KeyCode::Char('4'));
        press(&mut app, KeyCode::Char('/'));
        typed(&mut app, "q1");
        assert!(!app.quit);
        assert_eq!(app.search.input, "q1");
        press(&mut app, KeyCode::Backspace);
        press(&mut app, KeyCode::Backspace);
        typed(&mut app, "0.5, 1");
        let call = press(&mut app, KeyCode::Enter).unwrap();
        assert_eq!(call.collection, "docs");
        assert_eq!(call.query, Query::Vector(vec![0.5, 1.0]));
        assert!(!app.search.editing);
        press(&mut app, KeyCode::Char('q'));
        assert!(app.quit);
    }

    #[test]
    fn enter_on_a_collection_searches_it() {
        let mut app = app_with(&["a", "b"]);
        press(&mut app, KeyCode::Char('3'));
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.tab, Tab::Search);
        assert!(app.search.editing);
        typed(&mut app, "id:7");
        let call = press(&mut app, KeyCode::Enter).unwrap();
        assert_eq!(call.collection, "b");
        assert_eq!(call.query, Query::Point("7".into()));
        app.apply(Update::Searched {
            seq: call.seq,
            outcome: Err("404: no point 7".into()),
        });
        assert_eq!(app.search.error.as_deref(), Some("404: no point 7"));
    }

    #[test]
    fn arrows_pick_the_search_collection_and_wrap() {
        let mut app = app_with(&["a", "b", "c"]);
        press(&mut app, KeyCode::Char('4'));
        press(&mut app, KeyCode::Left);
        assert_eq!(app.search_collection().unwrap().name, "c");
        press(&mut app, KeyCode::Right);
        press(&mut app, KeyCode::Right);
        assert_eq!(app.search_collection().unwrap().name, "b");
    }

    #[test]
    fn searching_without_collections_says_what_to_do() {
        let mut app = App::new("x");
        press(&mut app, KeyCode::Char('4'));
        press(&mut app, KeyCode::Enter);
        typed(&mut app, "1,2");
        assert_eq!(press(&mut app, KeyCode::Enter), None);
        assert!(app
            .search
            .error
            .as_deref()
            .unwrap()
            .contains("collection create"));
    }

    #[test]
    fn f_switches_searches_between_local_and_federated() {
        let mut app = app_with(&["docs"]);
        press(&mut app, KeyCode::Char('4'));
        press(&mut app, KeyCode::Char('f'));
        assert!(app.search.federated);
        // While typing, f is part of the query and Ctrl-F switches.
        press(&mut app, KeyCode::Char('/'));
        typed(&mut app, "id:f");
        assert!(app.search.federated);
        app.on_key(KeyEvent::new(KeyCode::Char('f'), KeyModifiers::CONTROL));
        assert!(!app.search.federated);
        app.on_key(KeyEvent::new(KeyCode::Char('f'), KeyModifiers::CONTROL));
        assert_eq!(app.search.input, "id:f");
        let call = press(&mut app, KeyCode::Enter).unwrap();
        assert!(call.federated, "the search carries the mode");
        assert_eq!(call.query, Query::Point("f".into()));
        press(&mut app, KeyCode::Char('f'));
        press(&mut app, KeyCode::Enter);
        let call = press(&mut app, KeyCode::Enter).unwrap();
        assert!(!call.federated);
        // Elsewhere f does what that view says (the Log view: follow the tail).
        press(&mut app, KeyCode::Char('5'));
        press(&mut app, KeyCode::Char('f'));
        assert!(!app.search.federated);
    }

    #[test]
    fn s_opens_the_selected_collections_shard_map_and_esc_closes_it() {
        let mut app = app_with(&["a", "b"]);
        press(&mut app, KeyCode::Char('s'));
        assert_eq!(app.shard_map, None, "only from the Collections view");
        press(&mut app, KeyCode::Char('3'));
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Char('s'));
        assert_eq!(app.shard_map_shown(), Some("b"));
        // Arrows move among the shards now, not the collections.
        press(&mut app, KeyCode::Up);
        assert_eq!(app.collection_selected, 1);
        // Another view: the map stays open but is not refreshed.
        press(&mut app, KeyCode::Char('1'));
        assert_eq!(app.shard_map_shown(), None);
        press(&mut app, KeyCode::Char('3'));
        assert_eq!(app.shard_map_shown(), Some("b"));
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.shard_map, None);
        assert_eq!(app.tab, Tab::Collections);
        press(&mut app, KeyCode::Up);
        assert_eq!(app.collection_selected, 0);
    }

    #[test]
    fn ctrl_c_quits_even_while_typing() {
        let mut app = app_with(&["a"]);
        press(&mut app, KeyCode::Char('4'));
        press(&mut app, KeyCode::Enter);
        app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert!(app.quit);
    }
}
