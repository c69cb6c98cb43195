//! The Search view's state: which collection, the query being typed, whether searches ask
//! the peers (federated) or this node alone, and the last answer with its coverage.

use super::history::History;
use crate::api::types::{Coverage, Hit};

/// A query as typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// A vector, typed as comma-separated numbers.
    Vector(Vec<f32>),
    /// `id:<point id>`: search with that point's vector.
    Point(String),
    /// A question in words (a text collection's), embedded by the node.
    Text(String),
}

impl Query {
    /// Parses `0.1, 0.2, 0.3` (brackets and spaces allowed), `id:42`, or words: anything
    /// that starts with neither a number nor `[` is a question for a text collection, and so
    /// is text that starts with a number but has a word in it (`3 ways to cook rice`).
    pub fn parse(text: &str) -> Result<Query, String> {
        let text = text.trim();
        if let Some(id) = text.strip_prefix("id:") {
            let id = id.trim();
            if id.is_empty() {
                return Err("type a point id after id:".into());
            }
            return Ok(Query::Point(id.to_string()));
        }
        let numeric = |c: char| c.is_ascii_digit() || matches!(c, '[' | '-' | '+' | '.');
        match text.chars().next() {
            None => return Err("type a vector (1, 0, 0.5), id:<point id> or a question".into()),
            Some(c) if !numeric(c) => return Ok(Query::Text(text.to_string())),
            Some(_) => {}
        }
        let tokens = |t: &str| {
            t.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|part| !part.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        // A word (two letters or more, not a number such as NaN or 1e5) makes it a question.
        let is_word = |part: &String| {
            part.parse::<f32>().is_err() && part.chars().filter(|c| c.is_alphabetic()).count() >= 2
        };
        if tokens(text).iter().any(is_word) {
            return Ok(Query::Text(text.to_string()));
        }
        let inner = text.trim_start_matches('[').trim_end_matches(']');
        if inner.trim().is_empty() {
            return Err("type a vector (1, 0, 0.5), id:<point id> or a question".into());
        }
        inner
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<f32>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| format!("{part:?} is not a number"))
            })
            .collect::<Result<Vec<f32>, String>>()
            .map(Query::Vector)
    }
}

/// A search the dashboard asks the runtime to run.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchCall {
    /// Its number; answers to older calls are dropped.
    pub seq: u64,
    /// The collection.
    pub collection: String,
    /// The query.
    pub query: Query,
    /// Number of hits.
    pub k: usize,
    /// Ask the peers holding the collection's shards, not only this node.
    pub federated: bool,
    /// The query as typed, to show beside the answer.
    pub text: String,
}

/// A search's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResult {
    /// The collection searched.
    pub collection: String,
    /// The query as the user typed it.
    pub query: String,
    /// Hits, best first.
    pub hits: Vec<Hit>,
    /// Which shards the hits come from, as the node said (None from older nodes); a
    /// federated search adds a report per shard.
    pub coverage: Option<Coverage>,
    /// Round trip in milliseconds (including the point lookup for `id:` queries).
    pub millis: f64,
}

/// Default number of hits.
pub const DEFAULT_K: usize = 10;
/// Most hits the view asks for.
pub const MAX_K: usize = 100;

/// The Search view.
#[derive(Debug, Clone)]
pub struct SearchState {
    /// The chosen collection's name (None: the first one).
    pub collection: Option<String>,
    /// The query being typed.
    pub input: String,
    /// Whether keys go into the query.
    pub editing: bool,
    /// Number of hits to ask for.
    pub k: usize,
    /// Whether searches are federated (asked of the peers holding the shards) or local.
    pub federated: bool,
    /// The search running now, by number.
    pub pending: Option<u64>,
    next_seq: u64,
    /// The last answer.
    pub result: Option<SearchResult>,
    /// The last failure (a bad query, or the node's error).
    pub error: Option<String>,
    /// Round trips of this dashboard's searches, in milliseconds.
    pub latencies: History,
}

impl Default for SearchState {
    fn default() -> Self {
        SearchState {
            collection: None,
            input: String::new(),
            editing: false,
            k: DEFAULT_K,
            federated: false,
            pending: None,
            next_seq: 1,
            result: None,
            error: None,
            latencies: History::default(),
        }
    }
}

impl SearchState {
    /// Switches between federated and local searches (from the next search on).
    pub fn toggle_federated(&mut self) {
        self.federated = !self.federated;
    }

    /// The search mode as the view names it.
    pub fn mode(&self) -> &'static str {
        if self.federated {
            "federated"
        } else {
            "local"
        }
    }

    /// Starts a search of `collection` (of dimension `dim`) with the typed query.
    pub fn submit(&mut self, collection: &str, dim: u32) -> Option<SearchCall> {
        let query = match Query::parse(&self.input) {
            Ok(Query::Vector(v)) if v.len() != dim as usize => {
                self.error = Some(format!(
                    "the vector has {} numbers; {collection} has dimension {dim}",
                    v.len()
                ));
                return None;
            }
            Ok(query) => query,
            Err(e) => {
                self.error = Some(e);
                return None;
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending = Some(seq);
        self.error = None;
        self.editing = false;
        Some(SearchCall {
            seq,
            collection: collection.to_string(),
            query,
            k: self.k,
            federated: self.federated,
            text: self.input.trim().to_string(),
        })
    }

    /// The runtime's answer to search `seq`.
    pub fn answered(&mut self, seq: u64, outcome: Result<SearchResult, String>) {
        if self.pending != Some(seq) {
            return;
        }
        self.pending = None;
        match outcome {
            Ok(result) => {
                self.latencies.push(Some(result.millis));
                self.result = Some(result);
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn queries() {
        assert_eq!(
            Query::parse(" 1, 0,-0.5 ").unwrap(),
            Query::Vector(vec![1.0, 0.0, -0.5])
        );
        assert_eq!(
            Query::parse("[1 2 3]").unwrap(),
            Query::Vector(vec![1.0, 2.0, 3.0])
        );
        assert_eq!(
            Query::parse("id: doc-2").unwrap(),
            Query::Point("doc-2".into())
        );
        assert!(Query::parse("1, x").unwrap_err().contains("\"x\""));
        assert_eq!(
            Query::parse(" where do cats sleep? ").unwrap(),
            Query::Text("where do cats sleep?".into())
        );
        assert!(Query::parse("").is_err() && Query::parse("id:").is_err());
        for question in [
            "3 ways to cook rice",
            "2nd best pizza in town",
            "1984 by Orwell",
        ] {
            assert_eq!(
                Query::parse(question).unwrap(),
                Query::Text(question.into()),
                "{question}"
            );
        }
        assert!(Query::parse("1, NaN").is_err());
    }

    #[test]
    fn a_vector_of_the_wrong_dimension_is_refused_before_sending() {
        let mut s = SearchState {
            input: "1, 2".into(),
            ..SearchState::default()
        };
        assert_eq!(s.submit("docs", 3), None);
        assert!(s.error.as_deref().unwrap().contains("dimension 3"));
        s.input = "1, 2, 3".into();
        let call = s.submit("docs", 3).unwrap();
        assert_eq!(call.k, DEFAULT_K);
        assert!(!call.federated, "searches are local until switched");
        assert_eq!(s.pending, Some(call.seq));
    }

    #[test]
    fn the_mode_goes_with_the_next_search() {
        let mut s = SearchState {
            input: "id:1".into(),
            ..SearchState::default()
        };
        assert_eq!(s.mode(), "local");
        s.toggle_federated();
        assert_eq!(s.mode(), "federated");
        assert!(s.submit("docs", 3).unwrap().federated);
        s.toggle_federated();
        assert!(!s.submit("docs", 3).unwrap().federated);
    }

    #[test]
    fn answers_to_older_searches_are_dropped() {
        let mut s = SearchState {
            input: "id:1".into(),
            ..SearchState::default()
        };
        let first = s.submit("docs", 3).unwrap();
        let second = s.submit("docs", 3).unwrap();
        s.answered(first.seq, Err("late".into()));
        assert_eq!(s.error, None);
        let result = SearchResult {
            collection: "docs".into(),
            query: "id:1".into(),
            hits: vec![],
            coverage: None,
            millis: 2.5,
        };
        s.answered(second.seq, Ok(result));
        assert_eq!(s.pending, None);
        assert_eq!(s.latencies.last(), Some(2.5));
    }
}
