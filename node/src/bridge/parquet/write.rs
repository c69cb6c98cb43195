//! Writing points into a Parquet file as a [`Sink`].
//!
//! A Parquet schema is fixed before the first row is written, but points may carry different
//! metadata keys. The sink holds back the first [`ROW_GROUP`] points, gives each metadata key
//! seen among them a column of the type most of its values have (boolean, int64, uint64,
//! float64 or utf8), and writes every value that has no column, or does not fit its column,
//! into the [`REST_COLUMN`] as one JSON object per row, which the source merges back.

use std::{
    collections::{BTreeMap, HashMap},
    fs::File,
    path::{Path, PathBuf},
    sync::Arc,
};

use arrow_array::{
    ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int64Array,
    RecordBatch, StringArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::future::BoxFuture;
use ipvec_protocol::api::{PointId, PointIn};
use parquet::{
    arrow::{ArrowSchemaConverter, ArrowWriter},
    basic::Compression,
    file::{
        metadata::KeyValue,
        properties::{EnabledStatistics, WriterProperties},
    },
};
use serde_json::{Map, Value};

use super::{DIMENSION_KEY, METRIC_KEY, REST_COLUMN, REST_COLUMN_KEY, ROW_GROUP};
use crate::bridge::{
    migrate::tmp_path, point_label, BridgeError, BridgeOptions, Result, Shape, Sink,
};

/// The largest integer every float64 holds exactly (2^53).
const EXACT_FLOAT_INT: u64 = 1 << 53;

/// Writes points into a Parquet file, beside its final name until [`Sink::finish`].
pub struct ParquetSink {
    path: PathBuf,
    tmp: PathBuf,
    options: BridgeOptions,
    shape: Option<Shape>,
    /// The file until the writer takes it.
    file: Option<File>,
    /// Points held back until the schema is chosen.
    held: Vec<PointIn>,
    /// Rows per row group, and points held back to choose the columns.
    row_group: usize,
    writer: Option<(ArrowWriter<File>, Layout)>,
}

impl std::fmt::Debug for ParquetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSink")
            .field("path", &self.path)
            .field("held", &self.held.len())
            .field("writing", &self.writer.is_some())
            .finish()
    }
}

impl ParquetSink {
    /// Writes `path`, naming the id and vector columns as `options` says.
    pub fn new(path: &Path, options: &BridgeOptions) -> Self {
        Self {
            path: path.to_path_buf(),
            tmp: tmp_path(path),
            options: options.clone(),
            shape: None,
            file: None,
            held: Vec::new(),
            row_group: ROW_GROUP,
            writer: None,
        }
    }

    /// Row groups of `rows` rows instead of [`ROW_GROUP`] (the columns are then chosen from
    /// the first `rows` points).
    pub fn with_row_group(mut self, rows: usize) -> Self {
        self.row_group = rows.max(1);
        self
    }

    fn whence(&self) -> String {
        self.path.display().to_string()
    }

    /// Chooses the schema from the points held back, starts the writer and writes them.
    fn start(&mut self) -> Result<()> {
        let whence = self.whence();
        let Some(shape) = self.shape.clone() else {
            return Err(BridgeError::invalid(format!(
                "{whence}: points were written before the sink began"
            )));
        };
        let Some(file) = self.file.take() else {
            return Err(BridgeError::invalid(format!(
                "{whence}: the file was already closed"
            )));
        };
        let layout = Layout::choose(&whence, &self.held, &shape, &self.options)?;
        let properties = properties(
            &whence,
            &layout.schema,
            &shape,
            &self.options,
            self.row_group,
        )?;
        let writer = ArrowWriter::try_new(file, layout.schema.clone(), Some(properties))
            .map_err(|e| BridgeError::invalid(format!("{whence}: cannot start writing: {e}")))?;
        self.writer = Some((writer, layout));
        let held = std::mem::take(&mut self.held);
        self.write_now(&held)
    }

    fn write_now(&mut self, points: &[PointIn]) -> Result<()> {
        let whence = self.whence();
        let Some((writer, layout)) = self.writer.as_mut() else {
            return Err(BridgeError::invalid(format!(
                "{whence}: the writer is not started"
            )));
        };
        if points.is_empty() {
            return Ok(());
        }
        let batch = layout.batch(&whence, points)?;
        writer
            .write(&batch)
            .map_err(|e| BridgeError::invalid(format!("{whence}: writing rows failed: {e}")))
    }
}

impl Sink for ParquetSink {
    fn begin<'a>(&'a mut self, shape: &'a Shape, _resuming: bool) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if self.path.exists() {
                return Err(BridgeError::invalid(format!(
                    "{} exists; ipvec does not overwrite a file: delete it or name another",
                    self.whence()
                )));
            }
            let file = File::create(&self.tmp).map_err(|e| BridgeError::io(&self.tmp, e))?;
            self.file = Some(file);
            self.shape = Some(shape.clone());
            Ok(())
        })
    }

    fn write<'a>(&'a mut self, batch: &'a [PointIn]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if self.writer.is_some() {
                return self.write_now(batch);
            }
            self.held.extend_from_slice(batch);
            if self.held.len() >= self.row_group {
                self.start()?;
            }
            Ok(())
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.writer.is_none() {
                self.start()?;
            }
            let whence = self.whence();
            let Some((writer, _)) = self.writer.take() else {
                return Err(BridgeError::invalid(format!(
                    "{whence}: nothing was written"
                )));
            };
            let file = writer.into_inner().map_err(|e| {
                BridgeError::invalid(format!("{whence}: finishing the file failed: {e}"))
            })?;
            file.sync_all().map_err(|e| BridgeError::io(&self.tmp, e))?;
            drop(file);
            std::fs::rename(&self.tmp, &self.path).map_err(|e| BridgeError::io(&self.path, e))
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.writer = None;
            self.file = None;
            self.held.clear();
            match std::fs::remove_file(&self.tmp) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(BridgeError::io(&self.tmp, e)),
            }
        })
    }
}

/// Snappy pages; no dictionary and no statistics for the vector's floats (neither helps
/// and both cost time); the shape and the rest column recorded in the key-value metadata.
fn properties(
    whence: &str,
    schema: &Schema,
    shape: &Shape,
    options: &BridgeOptions,
    row_group: usize,
) -> Result<WriterProperties> {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(row_group))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(METRIC_KEY.to_string(), shape.metric.as_str().to_string()),
            KeyValue::new(DIMENSION_KEY.to_string(), shape.dimension.to_string()),
            KeyValue::new(REST_COLUMN_KEY.to_string(), REST_COLUMN.to_string()),
        ]));
    let descriptor = ArrowSchemaConverter::new().convert(schema).map_err(|e| {
        BridgeError::invalid(format!(
            "{whence}: the table's schema has no Parquet form: {e}"
        ))
    })?;
    for column in descriptor.columns() {
        let path = column.path();
        if path.parts().first() == Some(&options.vector_field) {
            builder = builder
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_statistics_enabled(path.clone(), EnabledStatistics::None);
        }
    }
    Ok(builder.build())
}

/// The type of a metadata column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    UInt,
    Float,
    Str,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::Int => DataType::Int64,
            Kind::UInt => DataType::UInt64,
            Kind::Float => DataType::Float64,
            Kind::Str => DataType::Utf8,
        }
    }

    /// Whether `value` is kept exactly in a column of this kind.
    fn fits(self, value: &Value) -> bool {
        match (self, value) {
            (Kind::Bool, Value::Bool(_)) | (Kind::Str, Value::String(_)) => true,
            (Kind::Int, Value::Number(n)) => n.is_i64(),
            (Kind::UInt, Value::Number(n)) => n.is_u64(),
            (Kind::Float, Value::Number(n)) => {
                n.is_f64()
                    || n.as_i64()
                        .is_some_and(|i| i.unsigned_abs() <= EXACT_FLOAT_INT)
                    || n.as_u64().is_some_and(|u| u <= EXACT_FLOAT_INT)
            }
            _ => false,
        }
    }
}

/// How many values of each kind a key has among the points held back.
#[derive(Debug, Default)]
struct Tally {
    bools: usize,
    ints: usize,
    /// Integers above i64's range.
    big: usize,
    floats: usize,
    strings: usize,
}

impl Tally {
    fn add(&mut self, value: &Value) {
        match value {
            Value::Bool(_) => self.bools += 1,
            Value::Number(n) if n.is_i64() => self.ints += 1,
            Value::Number(n) if n.is_u64() => self.big += 1,
            Value::Number(_) => self.floats += 1,
            Value::String(_) => self.strings += 1,
            // Nulls, arrays and objects go to the rest column.
            _ => {}
        }
    }

    /// The column kind that keeps the most values, if any.
    fn kind(&self) -> Option<Kind> {
        let numbers = self.ints + self.big + self.floats;
        let number_kind = if self.floats > 0 {
            Kind::Float
        } else if self.big > 0 {
            Kind::UInt
        } else {
            Kind::Int
        };
        [
            (numbers, number_kind),
            (self.strings, Kind::Str),
            (self.bools, Kind::Bool),
        ]
        .into_iter()
        .filter(|(count, _)| *count > 0)
        .max_by_key(|(count, _)| *count)
        .map(|(_, kind)| kind)
    }
}

/// The schema chosen: how ids are written and which metadata keys have a column.
#[derive(Debug)]
struct Layout {
    schema: SchemaRef,
    dimension: usize,
    string_ids: bool,
    /// `(key, kind)` of each metadata column, in schema order after id and vector.
    columns: Vec<(String, Kind)>,
    by_key: HashMap<String, usize>,
}

impl Layout {
    fn choose(
        whence: &str,
        points: &[PointIn],
        shape: &Shape,
        options: &BridgeOptions,
    ) -> Result<Layout> {
        let string_ids = match points.first().map(|p| &p.id) {
            Some(PointId::Str(_)) => true,
            Some(PointId::Int(_)) | None => false,
        };
        let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
        for point in points {
            if let Some(Value::Object(map)) = &point.metadata {
                for (key, value) in map {
                    tallies.entry(key.as_str()).or_default().add(value);
                }
            }
        }
        let reserved = [
            options.id_field.as_str(),
            options.vector_field.as_str(),
            REST_COLUMN,
        ];
        let columns: Vec<(String, Kind)> = tallies
            .iter()
            .filter(|(key, _)| !reserved.contains(key))
            .filter_map(|(key, tally)| Some((key.to_string(), tally.kind()?)))
            .collect();
        let id_type = if string_ids {
            DataType::Utf8
        } else {
            DataType::UInt64
        };
        let mut fields = vec![
            Field::new(&options.id_field, id_type, false),
            Field::new(
                &options.vector_field,
                DataType::FixedSizeList(
                    Arc::new(Field::new_list_field(DataType::Float32, false)),
                    i32::try_from(shape.dimension).map_err(|_| {
                        BridgeError::invalid(format!(
                            "{whence}: dimension {} is too large for a Parquet list",
                            shape.dimension
                        ))
                    })?,
                ),
                false,
            ),
        ];
        fields.extend(
            columns
                .iter()
                .map(|(key, kind)| Field::new(key, kind.data_type(), true)),
        );
        fields.push(Field::new(REST_COLUMN, DataType::Utf8, true));
        let by_key = columns
            .iter()
            .enumerate()
            .map(|(i, (key, _))| (key.clone(), i))
            .collect();
        // Also in the Arrow schema, which pyarrow shows as the table's metadata.
        let recorded = HashMap::from([
            (METRIC_KEY.to_string(), shape.metric.as_str().to_string()),
            (DIMENSION_KEY.to_string(), shape.dimension.to_string()),
            (REST_COLUMN_KEY.to_string(), REST_COLUMN.to_string()),
        ]);
        Ok(Layout {
            schema: Arc::new(Schema::new_with_metadata(fields, recorded)),
            dimension: shape.dimension as usize,
            string_ids,
            columns,
            by_key,
        })
    }

    /// The record batch of `points`.
    fn batch(&self, whence: &str, points: &[PointIn]) -> Result<RecordBatch> {
        let ids: ArrayRef = if self.string_ids {
            let ids: Result<Vec<&str>> = points
                .iter()
                .map(|p| match &p.id {
                    PointId::Str(s) => Ok(s.as_str()),
                    PointId::Int(_) => Err(mixed_ids(whence, p)),
                })
                .collect();
            Arc::new(StringArray::from(ids?))
        } else {
            let ids: Result<Vec<u64>> = points
                .iter()
                .map(|p| match &p.id {
                    PointId::Int(n) => Ok(*n),
                    PointId::Str(_) => Err(mixed_ids(whence, p)),
                })
                .collect();
            Arc::new(UInt64Array::from(ids?))
        };
        let mut flat = Vec::with_capacity(points.len() * self.dimension);
        for point in points {
            if point.vector.len() != self.dimension {
                return Err(BridgeError::invalid(format!(
                    "{whence}: point {} has {} components where the file's vectors have {}",
                    point_label(point),
                    point.vector.len(),
                    self.dimension
                )));
            }
            flat.extend_from_slice(&point.vector);
        }
        let item = Arc::new(Field::new_list_field(DataType::Float32, false));
        let vectors = FixedSizeListArray::try_new(
            item,
            self.dimension as i32,
            Arc::new(Float32Array::from(flat)),
            None,
        )
        .map_err(|e| BridgeError::invalid(format!("{whence}: building the vectors: {e}")))?;

        let mut values: Vec<Vec<Option<&Value>>> =
            vec![vec![None; points.len()]; self.columns.len()];
        let mut rest: Vec<Option<String>> = Vec::with_capacity(points.len());
        for (row, point) in points.iter().enumerate() {
            let mut left = Map::new();
            if let Some(Value::Object(map)) = &point.metadata {
                for (key, value) in map {
                    match self.by_key.get(key) {
                        Some(&c) if self.columns[c].1.fits(value) => values[c][row] = Some(value),
                        _ => {
                            left.insert(key.clone(), value.clone());
                        }
                    }
                }
            }
            rest.push((!left.is_empty()).then(|| Value::Object(left).to_string()));
        }
        let mut arrays: Vec<ArrayRef> = vec![ids, Arc::new(vectors)];
        for ((_, kind), column) in self.columns.iter().zip(&values) {
            arrays.push(column_array(*kind, column));
        }
        arrays.push(Arc::new(StringArray::from(rest)));
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| BridgeError::invalid(format!("{whence}: building rows: {e}")))
    }
}

/// One metadata column's array; every value given fits `kind`.
fn column_array(kind: Kind, values: &[Option<&Value>]) -> ArrayRef {
    match kind {
        Kind::Bool => Arc::new(BooleanArray::from(
            values
                .iter()
                .map(|v| v.and_then(Value::as_bool))
                .collect::<Vec<_>>(),
        )),
        Kind::Int => Arc::new(Int64Array::from(
            values
                .iter()
                .map(|v| v.and_then(Value::as_i64))
                .collect::<Vec<_>>(),
        )),
        Kind::UInt => Arc::new(UInt64Array::from(
            values
                .iter()
                .map(|v| v.and_then(Value::as_u64))
                .collect::<Vec<_>>(),
        )),
        Kind::Float => Arc::new(Float64Array::from(
            values
                .iter()
                .map(|v| v.and_then(Value::as_f64))
                .collect::<Vec<_>>(),
        )),
        Kind::Str => Arc::new(StringArray::from(
            values
                .iter()
                .map(|v| v.and_then(Value::as_str))
                .collect::<Vec<_>>(),
        )),
    }
}

fn mixed_ids(whence: &str, point: &PointIn) -> BridgeError {
    BridgeError::invalid(format!(
        "{whence}: point {} has an id of the other kind: the collection mixes integer and \
         string ids, and a Parquet id column holds one type; export the two kinds apart (or \
         give every point a string id) before writing Parquet",
        point_label(point)
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_key_gets_the_column_most_of_its_values_fit() {
        let kind = |values: &[Value]| {
            let mut tally = Tally::default();
            values.iter().for_each(|v| tally.add(v));
            tally.kind()
        };
        assert_eq!(kind(&[json!(1), json!(2), json!("a")]), Some(Kind::Int));
        assert_eq!(kind(&[json!(1), json!(0.5)]), Some(Kind::Float));
        assert_eq!(kind(&[json!(u64::MAX), json!(1)]), Some(Kind::UInt));
        assert_eq!(
            kind(&[json!("a"), json!("b"), json!(true)]),
            Some(Kind::Str)
        );
        assert_eq!(kind(&[json!([1]), json!({"a": 1}), Value::Null]), None);
    }

    #[test]
    fn only_values_kept_exactly_fit_a_column() {
        assert!(Kind::Float.fits(&json!(1u64 << 53)));
        assert!(!Kind::Float.fits(&json!((1u64 << 53) + 1)));
        assert!(!Kind::Int.fits(&json!(0.5)));
        assert!(!Kind::Int.fits(&json!(u64::MAX)));
        assert!(Kind::UInt.fits(&json!(u64::MAX)));
        assert!(!Kind::Str.fits(&Value::Null));
    }
}
