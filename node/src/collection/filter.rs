//! Filters over point metadata and ids.
//!
//! ```json
//! {"must":     [{"key": "tag", "match": "shoe"}, {"key": "year", "range": {"gte": 2000, "lt": 2010}}],
//!  "should":   [{"key": "in_stock", "match": true}, {"ids": [1, "doc-2"]}],
//!  "must_not": [{"must": [{"key": "color", "match": "red"}]}]}
//! ```
//!
//! A point passes when every `must` condition holds, at least one `should` condition holds (if
//! there are any), and no `must_not` condition holds. A condition is a key match (a string,
//! integer or bool, equal to the metadata value or contained in a metadata list), a numeric
//! range on a key, a set of ids, or a nested filter. `key` may name nested fields with dots.

use std::collections::HashSet;

use ipvec_protocol::{
    entry::{EntryId, EntryKey},
    Ipld,
};
use serde::Deserialize;

use super::CollectionError;

/// A parsed filter.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Conditions that must all hold.
    #[serde(default)]
    pub must: Vec<Condition>,
    /// Conditions of which at least one must hold (when any are given).
    #[serde(default)]
    pub should: Vec<Condition>,
    /// Conditions none of which may hold.
    #[serde(default)]
    pub must_not: Vec<Condition>,
}

/// One condition.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Condition {
    /// `{"key": K, "match": V}`.
    Match {
        /// Metadata key (dots for nested fields).
        key: String,
        /// The value to equal.
        #[serde(rename = "match")]
        value: MatchValue,
    },
    /// `{"key": K, "range": {"gt"|"gte"|"lt"|"lte": N}}`.
    Range {
        /// Metadata key.
        key: String,
        /// Bounds.
        range: Range,
    },
    /// `{"ids": [...]}`.
    Ids {
        /// Point ids (unsigned integers or strings).
        ids: Vec<IdValue>,
    },
    /// A nested filter.
    Nested(Box<Filter>),
}

/// A value to match: keyword, integer or bool.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum MatchValue {
    /// A bool.
    Bool(bool),
    /// An integer.
    Integer(i64),
    /// A keyword.
    Keyword(String),
}

/// An id in a filter.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum IdValue {
    /// Integer id.
    Int(u64),
    /// String id.
    Str(String),
}

/// Numeric bounds; absent bounds are open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// Greater than.
    pub gt: Option<f64>,
    /// Greater than or equal.
    pub gte: Option<f64>,
    /// Less than.
    pub lt: Option<f64>,
    /// Less than or equal.
    pub lte: Option<f64>,
}

/// A filter ready to test points: id sets turned into key sets.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    filter: Filter,
    ids: Vec<HashSet<EntryKey>>,
}

impl Filter {
    /// Parses a filter from JSON, with an error that shows the accepted shape.
    pub fn parse(json: &str) -> Result<Filter, CollectionError> {
        serde_json::from_str(json).map_err(|e| {
            CollectionError::Invalid(format!(
                "invalid filter ({e}); a filter looks like {{\"must\": [{{\"key\": \"tag\", \"match\": \"a\"}}, {{\"key\": \"n\", \"range\": {{\"gte\": 1}}}}], \"should\": [...], \"must_not\": [...]}}"
            ))
        })
    }

    /// Prepares the filter for testing points.
    pub fn compile(self) -> Result<CompiledFilter, CollectionError> {
        let mut ids = Vec::new();
        collect_ids(&self, &mut ids)?;
        Ok(CompiledFilter { filter: self, ids })
    }
}

fn collect_ids(filter: &Filter, out: &mut Vec<HashSet<EntryKey>>) -> Result<(), CollectionError> {
    for c in filter
        .must
        .iter()
        .chain(&filter.should)
        .chain(&filter.must_not)
    {
        match c {
            Condition::Ids { ids } => {
                let set = ids
                    .iter()
                    .map(|id| match id {
                        IdValue::Int(n) => EntryId::Int(*n).to_key(),
                        IdValue::Str(s) => EntryId::Str(s.clone()).to_key(),
                    })
                    .collect::<Result<HashSet<_>, _>>()?;
                out.push(set);
            }
            Condition::Nested(inner) => collect_ids(inner, out)?,
            _ => {}
        }
    }
    Ok(())
}

fn lookup<'a>(meta: &'a Ipld, key: &str) -> Option<&'a Ipld> {
    key.split('.').try_fold(meta, |value, part| match value {
        Ipld::Map(map) => map.get(part),
        _ => None,
    })
}

fn matches_value(value: &Ipld, want: &MatchValue) -> bool {
    match (value, want) {
        (Ipld::List(items), _) => items.iter().any(|v| matches_value(v, want)),
        (Ipld::String(s), MatchValue::Keyword(w)) => s == w,
        (Ipld::Integer(i), MatchValue::Integer(w)) => *i == i128::from(*w),
        (Ipld::Bool(b), MatchValue::Bool(w)) => b == w,
        _ => false,
    }
}

fn in_range(value: &Ipld, range: &Range) -> bool {
    let x = match value {
        Ipld::Integer(i) => *i as f64,
        Ipld::Float(f) => *f,
        _ => return false,
    };
    range.gt.is_none_or(|b| x > b)
        && range.gte.is_none_or(|b| x >= b)
        && range.lt.is_none_or(|b| x < b)
        && range.lte.is_none_or(|b| x <= b)
}

impl CompiledFilter {
    /// Whether the point with `id` and `metadata` passes.
    pub fn test(&self, id: &EntryKey, metadata: Option<&Ipld>) -> bool {
        let mut next_ids = 0;
        self.test_filter(&self.filter, id, metadata, &mut next_ids)
    }

    fn test_filter(
        &self,
        f: &Filter,
        id: &EntryKey,
        meta: Option<&Ipld>,
        next_ids: &mut usize,
    ) -> bool {
        // Evaluate every condition (in a fixed order, so id sets line up with conditions).
        let must: Vec<bool> = f
            .must
            .iter()
            .map(|c| self.test_condition(c, id, meta, next_ids))
            .collect();
        let should: Vec<bool> = f
            .should
            .iter()
            .map(|c| self.test_condition(c, id, meta, next_ids))
            .collect();
        let must_not: Vec<bool> = f
            .must_not
            .iter()
            .map(|c| self.test_condition(c, id, meta, next_ids))
            .collect();
        must.iter().all(|b| *b)
            && (should.is_empty() || should.iter().any(|b| *b))
            && !must_not.iter().any(|b| *b)
    }

    fn test_condition(
        &self,
        c: &Condition,
        id: &EntryKey,
        meta: Option<&Ipld>,
        next_ids: &mut usize,
    ) -> bool {
        match c {
            Condition::Match { key, value } => meta
                .and_then(|m| lookup(m, key))
                .is_some_and(|v| matches_value(v, value)),
            Condition::Range { key, range } => meta
                .and_then(|m| lookup(m, key))
                .is_some_and(|v| in_range(v, range)),
            Condition::Ids { .. } => {
                let hit = self.ids.get(*next_ids).is_some_and(|set| set.contains(id));
                *next_ids += 1;
                hit
            }
            Condition::Nested(inner) => self.test_filter(inner, id, meta, next_ids),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(json: serde_json::Value) -> Ipld {
        crate::collection::points::json_to_ipld(json)
    }

    fn key(n: u64) -> EntryKey {
        EntryId::Int(n).to_key().unwrap()
    }

    #[test]
    fn must_should_must_not_ranges_ids_and_nesting() {
        let f = Filter::parse(
            r#"{"must": [{"key": "tag", "match": "shoe"}, {"key": "year", "range": {"gte": 2000, "lt": 2010}}],
                "should": [{"key": "stock.ok", "match": true}, {"ids": [7, "x"]}],
                "must_not": [{"must": [{"key": "colors", "match": "red"}]}]}"#,
        )
        .unwrap()
        .compile()
        .unwrap();
        let good = meta(
            serde_json::json!({"tag": "shoe", "year": 2005, "stock": {"ok": true}, "colors": ["blue"]}),
        );
        assert!(f.test(&key(1), Some(&good)));
        let red = meta(
            serde_json::json!({"tag": "shoe", "year": 2005, "stock": {"ok": true}, "colors": ["blue", "red"]}),
        );
        assert!(!f.test(&key(1), Some(&red)), "must_not with a list value");
        let old = meta(serde_json::json!({"tag": "shoe", "year": 2010, "stock": {"ok": true}}));
        assert!(!f.test(&key(1), Some(&old)), "lt is exclusive");
        let no_stock = meta(serde_json::json!({"tag": "shoe", "year": 2001.5}));
        assert!(
            !f.test(&key(1), Some(&no_stock)),
            "no should condition holds"
        );
        assert!(
            f.test(&key(7), Some(&no_stock)),
            "the id set satisfies should"
        );
        assert!(
            !f.test(&key(7), None),
            "no metadata fails the must conditions"
        );
        assert!(Filter::parse(r#"{"must": [{"key": "a", "matches": 1}]}"#).is_err());
        assert!(Filter::parse(r#"{"mustt": []}"#).is_err());
        assert!(Filter::parse("[1]")
            .unwrap_err()
            .to_string()
            .contains("a filter looks like"));
    }
}
