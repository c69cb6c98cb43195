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

use std::{
    collections::HashSet,
    hash::{Hash, Hasher},
};

use ipvec_protocol::{
    entry::{EntryId, EntryKey},
    Ipld,
};
use serde_json::Value;

use super::CollectionError;

/// Most conditions in one filter, counted at every level.
pub const MAX_FILTER_CONDITIONS: usize = 1_024;
/// Deepest nesting of filters inside filters.
pub const MAX_FILTER_DEPTH: usize = 16;
/// Most ids in all `ids` conditions of one filter together.
pub const MAX_FILTER_IDS: usize = 100_000;

/// A parsed filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Conditions that must all hold.
    pub must: Vec<Condition>,
    /// Conditions of which at least one must hold (when any are given).
    pub should: Vec<Condition>,
    /// Conditions none of which may hold.
    pub must_not: Vec<Condition>,
}

/// One condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `{"key": K, "match": V}`.
    Match {
        /// Metadata key (dots for nested fields).
        key: String,
        /// The value to equal.
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
#[derive(Debug, Clone, PartialEq)]
pub enum MatchValue {
    /// A bool.
    Bool(bool),
    /// An integer.
    Integer(i64),
    /// A keyword.
    Keyword(String),
}

/// An id in a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum IdValue {
    /// Integer id.
    Int(u64),
    /// String id.
    Str(String),
}

/// Numeric bounds; absent bounds are open.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
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

/// The shape of a filter, quoted by every parse error.
const SHAPE: &str = r#"a filter looks like {"must": [{"key": "tag", "match": "a"}, {"key": "n", "range": {"gte": 1}}, {"ids": [1, "x"]}], "should": [...], "must_not": [...]}"#;

/// Reads a filter from JSON, counting what it holds against the limits.
#[derive(Debug, Default)]
struct Reader {
    conditions: usize,
    ids: usize,
}

impl Reader {
    fn filter(&mut self, value: &Value, at: &str, depth: usize) -> Result<Filter, String> {
        if depth > MAX_FILTER_DEPTH {
            return Err(format!(
                "{at}: filters nest at most {MAX_FILTER_DEPTH} deep"
            ));
        }
        let Value::Object(map) = value else {
            return Err(format!("{at} must be an object"));
        };
        let mut filter = Filter::default();
        for (name, list) in map {
            let slot = match name.as_str() {
                "must" => &mut filter.must,
                "should" => &mut filter.should,
                "must_not" => &mut filter.must_not,
                other => {
                    return Err(format!(
                        "{at} has an unknown field {other:?} (use must, should and must_not)"
                    ))
                }
            };
            let Value::Array(items) = list else {
                return Err(format!("{at}.{name} must be a list of conditions"));
            };
            for (i, item) in items.iter().enumerate() {
                slot.push(self.condition(item, &format!("{at}.{name}[{i}]"), depth)?);
            }
        }
        Ok(filter)
    }

    fn condition(&mut self, value: &Value, at: &str, depth: usize) -> Result<Condition, String> {
        self.conditions += 1;
        if self.conditions > MAX_FILTER_CONDITIONS {
            return Err(format!(
                "the filter has more than {MAX_FILTER_CONDITIONS} conditions"
            ));
        }
        let Value::Object(map) = value else {
            return Err(format!("{at} must be an object (a condition)"));
        };
        let has = |k: &str| map.contains_key(k);
        let only = |allowed: &[&str]| match map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(format!("{at} has an unknown field {k:?}")),
            None => Ok(()),
        };
        let key = || match map.get("key") {
            Some(Value::String(k)) if !k.is_empty() => Ok(k.clone()),
            _ => Err(format!("{at}.key must be a non-empty string")),
        };
        if has("match") {
            only(&["key", "match"])?;
            let value = match &map["match"] {
                Value::Bool(b) => MatchValue::Bool(*b),
                Value::String(s) => MatchValue::Keyword(s.clone()),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => MatchValue::Integer(i),
                    None => {
                        return Err(format!(
                            "{at}.match is {n}: match takes a string, a whole number (i64) or a bool; use range for other numbers"
                        ))
                    }
                },
                _ => {
                    return Err(format!(
                        "{at}.match must be a string, a whole number or a bool"
                    ))
                }
            };
            Ok(Condition::Match { key: key()?, value })
        } else if has("range") {
            only(&["key", "range"])?;
            let Value::Object(bounds) = &map["range"] else {
                return Err(format!(
                    "{at}.range must be an object like {{\"gte\": 1, \"lt\": 5}}"
                ));
            };
            let mut range = Range::default();
            for (name, bound) in bounds {
                let slot = match name.as_str() {
                    "gt" => &mut range.gt,
                    "gte" => &mut range.gte,
                    "lt" => &mut range.lt,
                    "lte" => &mut range.lte,
                    other => {
                        return Err(format!(
                            "{at}.range has an unknown bound {other:?} (use gt, gte, lt, lte)"
                        ))
                    }
                };
                *slot = Some(
                    bound
                        .as_f64()
                        .ok_or_else(|| format!("{at}.range.{name} must be a number"))?,
                );
            }
            Ok(Condition::Range { key: key()?, range })
        } else if has("ids") {
            only(&["ids"])?;
            let Value::Array(items) = &map["ids"] else {
                return Err(format!("{at}.ids must be a list of ids"));
            };
            self.ids += items.len();
            if self.ids > MAX_FILTER_IDS {
                return Err(format!("the filter names more than {MAX_FILTER_IDS} ids"));
            }
            let ids = items
                .iter()
                .map(|id| match id {
                    Value::String(s) => Ok(IdValue::Str(s.clone())),
                    Value::Number(n) => n.as_u64().map(IdValue::Int).ok_or_else(|| {
                        format!("{at}.ids holds {n}: ids are unsigned whole numbers or strings")
                    }),
                    _ => Err(format!(
                        "{at}.ids holds {id}: ids are unsigned whole numbers or strings"
                    )),
                })
                .collect::<Result<_, _>>()?;
            Ok(Condition::Ids { ids })
        } else if has("must") || has("should") || has("must_not") {
            Ok(Condition::Nested(Box::new(self.filter(
                value,
                at,
                depth + 1,
            )?)))
        } else if has("key") {
            Err(format!("{at} names a key but neither match nor range"))
        } else {
            Err(format!(
                "{at} is not a condition: use {{\"key\", \"match\"}}, {{\"key\", \"range\"}}, {{\"ids\"}} or a nested filter"
            ))
        }
    }
}

/// A filter ready to test points: dotted keys split into paths, id sets turned into key sets.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    /// The filter as parsed, which identifies it (see [`CompiledFilter::same_as`]).
    filter: Filter,
    /// A hash of `filter`, to tell filters apart quickly.
    fingerprint: u64,
    root: Clauses,
}

/// The compiled form of one [`Filter`] level.
#[derive(Debug, Clone)]
struct Clauses {
    must: Vec<Test>,
    should: Vec<Test>,
    must_not: Vec<Test>,
}

/// The compiled form of one [`Condition`].
#[derive(Debug, Clone)]
enum Test {
    Match {
        path: Vec<String>,
        value: MatchValue,
    },
    Range {
        path: Vec<String>,
        range: Range,
    },
    Ids(HashSet<EntryKey>),
    Nested(Clauses),
}

impl Filter {
    /// Parses a filter from JSON text, with an error that shows the accepted shape.
    pub fn parse(json: &str) -> Result<Filter, CollectionError> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| CollectionError::Invalid(format!("invalid filter ({e}); {SHAPE}")))?;
        Self::from_json(&value)
    }

    /// Reads a filter from a JSON value, within [`MAX_FILTER_CONDITIONS`],
    /// [`MAX_FILTER_DEPTH`] and [`MAX_FILTER_IDS`]; an error names the part at fault.
    pub fn from_json(value: &Value) -> Result<Filter, CollectionError> {
        Reader::default()
            .filter(value, "filter", 0)
            .map_err(|e| CollectionError::Invalid(format!("invalid filter: {e}; {SHAPE}")))
    }

    /// Prepares the filter for testing points.
    pub fn compile(self) -> Result<CompiledFilter, CollectionError> {
        let root = compile_clauses(&self)?;
        // Debug output is exact (floats print so that they parse back to the same value).
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        format!("{self:?}").hash(&mut hasher);
        Ok(CompiledFilter {
            fingerprint: hasher.finish(),
            filter: self,
            root,
        })
    }
}

fn compile_clauses(filter: &Filter) -> Result<Clauses, CollectionError> {
    let compile_all = |conditions: &[Condition]| {
        conditions
            .iter()
            .map(compile_condition)
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Clauses {
        must: compile_all(&filter.must)?,
        should: compile_all(&filter.should)?,
        must_not: compile_all(&filter.must_not)?,
    })
}

fn compile_condition(condition: &Condition) -> Result<Test, CollectionError> {
    let path = |key: &str| key.split('.').map(str::to_owned).collect();
    Ok(match condition {
        Condition::Match { key, value } => Test::Match {
            path: path(key),
            value: value.clone(),
        },
        Condition::Range { key, range } => Test::Range {
            path: path(key),
            range: *range,
        },
        Condition::Ids { ids } => Test::Ids(
            ids.iter()
                .map(|id| match id {
                    IdValue::Int(n) => EntryId::Int(*n).to_key(),
                    IdValue::Str(s) => EntryId::Str(s.clone()).to_key(),
                })
                .collect::<Result<HashSet<_>, _>>()?,
        ),
        Condition::Nested(inner) => Test::Nested(compile_clauses(inner)?),
    })
}

fn lookup<'a>(meta: &'a Ipld, path: &[String]) -> Option<&'a Ipld> {
    path.iter().try_fold(meta, |value, part| match value {
        Ipld::Map(map) => map.get(part.as_str()),
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
        self.root.test(id, metadata)
    }

    /// The filter it was compiled from.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Whether both were compiled from equal filters (and so accept the same points).
    pub fn same_as(&self, other: &CompiledFilter) -> bool {
        self.fingerprint == other.fingerprint && self.filter == other.filter
    }
}

impl Clauses {
    fn test(&self, id: &EntryKey, meta: Option<&Ipld>) -> bool {
        self.must.iter().all(|t| t.test(id, meta))
            && (self.should.is_empty() || self.should.iter().any(|t| t.test(id, meta)))
            && !self.must_not.iter().any(|t| t.test(id, meta))
    }
}

impl Test {
    fn test(&self, id: &EntryKey, meta: Option<&Ipld>) -> bool {
        match self {
            Test::Match { path, value } => meta
                .and_then(|m| lookup(m, path))
                .is_some_and(|v| matches_value(v, value)),
            Test::Range { path, range } => meta
                .and_then(|m| lookup(m, path))
                .is_some_and(|v| in_range(v, range)),
            Test::Ids(set) => set.contains(id),
            Test::Nested(inner) => inner.test(id, meta),
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
        let same = Filter::parse(r#"{"must": [{"key": "tag", "match": "shoe"}]}"#).unwrap();
        let other = Filter::parse(r#"{"must": [{"key": "tag", "match": "boot"}]}"#).unwrap();
        let same = same.compile().unwrap();
        assert!(same.same_as(&same.clone()));
        assert!(!same.same_as(&other.compile().unwrap()) && !same.same_as(&f));
        assert!(Filter::parse(r#"{"must": [{"key": "a", "matches": 1}]}"#).is_err());
        assert!(Filter::parse(r#"{"mustt": []}"#).is_err());
        assert!(Filter::parse("[1]")
            .unwrap_err()
            .to_string()
            .contains("a filter looks like"));
    }

    #[test]
    fn errors_name_the_part_at_fault_and_limits_hold() {
        let err = |json: &str| Filter::parse(json).unwrap_err().to_string();
        let e = err(r#"{"must": [{"key": "a", "match": 1}, {"key": "b", "match": [1]}]}"#);
        assert!(e.contains("filter.must[1].match must be"), "{e}");
        assert!(!e.contains("untagged"), "{e}");
        let e = err(r#"{"should": [{"key": "a"}]}"#);
        assert!(
            e.contains("filter.should[0] names a key but neither"),
            "{e}"
        );
        let e = err(r#"{"must": [{"ids": [-1]}]}"#);
        assert!(e.contains("unsigned"), "{e}");
        let e = err(r#"{"must": [{"key": "a", "range": {"between": 1}}]}"#);
        assert!(e.contains("unknown bound"), "{e}");
        let e = err(r#"{"must": [{"key": "a", "match": 1.5}]}"#);
        assert!(e.contains("use range"), "{e}");

        let many = format!(
            r#"{{"must": [{}]}}"#,
            vec![r#"{"key": "a", "match": 1}"#; MAX_FILTER_CONDITIONS + 1].join(",")
        );
        assert!(err(&many).contains("more than 1024 conditions"));
        let mut deep = r#"{"must": [{"key": "a", "match": 1}]}"#.to_string();
        for _ in 0..=MAX_FILTER_DEPTH {
            deep = format!(r#"{{"must": [{deep}]}}"#);
        }
        assert!(err(&deep).contains("nest at most"));
        let ids: Vec<u64> = (0..=MAX_FILTER_IDS as u64).collect();
        let e = err(&format!(r#"{{"must": [{{"ids": {ids:?}}}]}}"#));
        assert!(e.contains("more than 100000 ids"), "{e}");
        assert!(Filter::parse(r#"{"must": [{"must_not": [{"ids": [1, "x"]}]}]}"#).is_ok());
    }
}
