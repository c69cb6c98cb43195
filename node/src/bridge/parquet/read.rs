//! Reading a Parquet file as a [`Source`], one record batch at a time.

use std::{
    collections::VecDeque,
    fs::File,
    path::{Path, PathBuf},
};

use arrow_array::{cast::AsArray, types::*, Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use futures::future::BoxFuture;
use ipvec_protocol::{
    api::{PointId, PointIn},
    manifest::Metric,
};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde_json::{Map, Value};

use super::{value, DIMENSION_KEY, METRIC_KEY, READ_BATCH, REST_COLUMN_KEY};
use crate::bridge::{
    check_vector, ipvec::parse_metric, BridgeError, BridgeOptions, Result, Shape, Source,
};

/// Reads a Parquet file's rows as points.
pub struct ParquetSource {
    path: PathBuf,
    options: BridgeOptions,
    open: Option<Open>,
    /// Points converted from the last record batch and not yet handed out.
    pending: VecDeque<PointIn>,
}

impl std::fmt::Debug for ParquetSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSource")
            .field("path", &self.path)
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// The file once opened: its reader and where each part of a point is.
struct Open {
    reader: ParquetRecordBatchReader,
    columns: Columns,
    shape: Shape,
    /// Rows read so far (the index of the next row, for messages).
    row: u64,
}

/// The positions of the id, vector and metadata columns in the file's schema.
#[derive(Debug, Clone)]
struct Columns {
    id: usize,
    vector: usize,
    /// `(name, index)` of each column carried as metadata.
    metadata: Vec<(String, usize)>,
    /// The column holding the rest of the metadata as a JSON object, if the file has one.
    rest: Option<usize>,
}

impl ParquetSource {
    /// Reads `path` with `options`' column names and metric. Opening does no I/O.
    pub fn new(path: &Path, options: &BridgeOptions) -> Self {
        Self {
            path: path.to_path_buf(),
            options: options.clone(),
            open: None,
            pending: VecDeque::new(),
        }
    }

    fn whence(&self) -> String {
        self.path.display().to_string()
    }

    /// Opens the file, checks its columns and finds its shape (reading the first batch when
    /// the vector column does not fix the dimension).
    fn open(&mut self) -> Result<&mut Open> {
        if self.open.is_none() {
            let opened = self.open_file()?;
            self.open = Some(opened);
        }
        let whence = self.whence();
        self.open
            .as_mut()
            .ok_or_else(|| BridgeError::invalid(format!("{whence}: the file could not be opened")))
    }

    fn open_file(&mut self) -> Result<Open> {
        let whence = self.whence();
        let file = File::open(&self.path).map_err(|e| BridgeError::io(&self.path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
            BridgeError::invalid(format!(
                "{whence} is not a readable Parquet file ({e}): it may be truncated or \
                 damaged; write it again"
            ))
        })?;
        let file_metadata = builder.metadata().file_metadata();
        let pairs: Vec<(String, String)> = file_metadata
            .key_value_metadata()
            .map(|kvs| {
                kvs.iter()
                    .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
                    .collect()
            })
            .unwrap_or_default();
        let lookup = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let rows = u64::try_from(file_metadata.num_rows()).unwrap_or(0);
        let schema = builder.schema().clone();
        let columns = find_columns(&whence, &schema, &self.options, lookup(REST_COLUMN_KEY))?;
        let metric = choose_metric(&whence, lookup(METRIC_KEY), self.options.metric)?;
        let recorded_dimension = match lookup(DIMENSION_KEY) {
            Some(text) => Some(text.parse::<u32>().map_err(|_| {
                BridgeError::invalid(format!(
                    "{whence}: its key-value metadata {DIMENSION_KEY} is {text:?}, not a \
                     dimension; remove or correct it"
                ))
            })?),
            None => None,
        };
        let reader = builder
            .with_batch_size(READ_BATCH)
            .build()
            .map_err(|e| BridgeError::invalid(format!("{whence}: cannot read its rows ({e})")))?;
        let mut open = Open {
            reader,
            columns,
            shape: Shape {
                dimension: 0,
                metric,
                count: Some(rows),
            },
            row: 0,
        };
        let vector_type = schema.field(open.columns.vector).data_type().clone();
        let dimension = match vector_type {
            DataType::FixedSizeList(_, size) => Some(u32::try_from(size).unwrap_or(0)),
            _ => None,
        };
        let dimension = match (dimension, recorded_dimension) {
            (Some(fixed), Some(recorded)) if fixed != recorded => {
                return Err(BridgeError::invalid(format!(
                    "{whence}: column {:?} holds vectors of {fixed} components but the \
                     file's {DIMENSION_KEY} says {recorded}; the file is inconsistent",
                    self.options.vector_field
                )))
            }
            (Some(fixed), _) => fixed,
            (None, recorded) => {
                // The first row's length, else what the file records.
                let first = next_points(&whence, &mut open)?;
                let dimension = match (first.first(), recorded) {
                    (Some(point), _) => point.vector.len() as u32,
                    (None, Some(recorded)) => recorded,
                    (None, None) => {
                        return Err(BridgeError::invalid(format!(
                            "{whence} has no rows and its vector column {:?} is a list of any \
                             length: its dimension is unknown; write vectors as a \
                             fixed_size_list, or import a file with rows",
                            self.options.vector_field
                        )))
                    }
                };
                self.pending.extend(first);
                dimension
            }
        };
        if dimension == 0 {
            return Err(BridgeError::invalid(format!(
                "{whence}: the vectors of column {:?} have no components",
                self.options.vector_field
            )));
        }
        open.shape.dimension = dimension;
        for point in &self.pending {
            check_vector(point, dimension, &whence)?;
        }
        Ok(open)
    }
}

impl Source for ParquetSource {
    fn shape(&mut self) -> BoxFuture<'_, Result<Shape>> {
        Box::pin(async move { Ok(self.open()?.shape.clone()) })
    }

    fn next_batch(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<PointIn>>> {
        Box::pin(async move {
            let whence = self.whence();
            let max = max.max(1);
            while self.pending.len() < max {
                let open = self.open()?;
                let dimension = open.shape.dimension;
                let points = next_points(&whence, open)?;
                if points.is_empty() {
                    break;
                }
                for point in &points {
                    check_vector(point, dimension, &whence)?;
                }
                self.pending.extend(points);
            }
            let take = max.min(self.pending.len());
            Ok(self.pending.drain(..take).collect())
        })
    }
}

/// The points of the next record batch; none at the end of the file.
fn next_points(whence: &str, open: &mut Open) -> Result<Vec<PointIn>> {
    let Some(batch) = open.reader.next() else {
        return Ok(Vec::new());
    };
    let batch = batch.map_err(|e| {
        BridgeError::invalid(format!(
            "{whence}: reading the rows after row {} failed ({e}): the file is truncated or \
             damaged; write it again",
            open.row
        ))
    })?;
    let points = points_of(whence, &batch, &open.columns, open.row)?;
    open.row += batch.num_rows() as u64;
    Ok(points)
}

/// Converts a record batch whose first row is row `first_row` of the file.
fn points_of(
    whence: &str,
    batch: &RecordBatch,
    columns: &Columns,
    first_row: u64,
) -> Result<Vec<PointIn>> {
    let schema = batch.schema();
    let id_name = schema.field(columns.id).name().clone();
    let vector_name = schema.field(columns.vector).name().clone();
    let ids = batch.column(columns.id);
    let vectors = Vectors::of(batch.column(columns.vector));
    let mut points = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let row = first_row + i as u64;
        let id = id_at(ids, i).map_err(|problem| {
            BridgeError::invalid(format!(
                "{whence}: row {row} {problem} in column {id_name:?}; ipvec ids are integers \
                 ≥ 0 or strings"
            ))
        })?;
        let vector = vectors.at(i).map_err(|problem| {
            BridgeError::invalid(format!(
                "{whence}: row {row} {problem} in column {vector_name:?}; every point needs \
                 a whole vector"
            ))
        })?;
        let mut metadata = Map::new();
        for (name, index) in &columns.metadata {
            let value = value::json_at(batch.column(*index).as_ref(), i).map_err(|problem| {
                BridgeError::invalid(format!(
                    "{whence}: row {row}, column {name:?} holds {problem}"
                ))
            })?;
            if let Some(value) = value {
                metadata.insert(name.clone(), value);
            }
        }
        if let Some(rest) = columns.rest {
            merge_rest(batch.column(rest), i, &mut metadata).map_err(|problem| {
                BridgeError::invalid(format!(
                    "{whence}: row {row}, column {:?}: {problem}",
                    schema.field(rest).name()
                ))
            })?;
        }
        let metadata = (!metadata.is_empty()).then_some(Value::Object(metadata));
        points.push(PointIn::vector(id, vector, metadata));
    }
    Ok(points)
}

/// Adds the keys of the JSON object in row `i` of the rest column.
fn merge_rest(
    column: &ArrayRef,
    i: usize,
    metadata: &mut Map<String, Value>,
) -> Result<(), String> {
    let Some(Value::String(text)) = value::json_at(column.as_ref(), i)? else {
        return Ok(());
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(rest)) => {
            metadata.extend(rest);
            Ok(())
        }
        Ok(_) => Err(format!("{text:?} is not a JSON object")),
        Err(e) => Err(format!("{text:?} is not JSON ({e})")),
    }
}

/// The id at row `i`, or what is wrong with it.
fn id_at(ids: &ArrayRef, i: usize) -> Result<PointId, String> {
    if ids.is_null(i) {
        return Err("has no id (a null)".into());
    }
    let signed = |n: i64| {
        u64::try_from(n)
            .map(PointId::Int)
            .map_err(|_| format!("has id {n}"))
    };
    match ids.data_type() {
        DataType::UInt64 => Ok(PointId::Int(ids.as_primitive::<UInt64Type>().value(i))),
        DataType::UInt32 => Ok(PointId::Int(
            ids.as_primitive::<UInt32Type>().value(i).into(),
        )),
        DataType::Int64 => signed(ids.as_primitive::<Int64Type>().value(i)),
        DataType::Int32 => signed(ids.as_primitive::<Int32Type>().value(i).into()),
        DataType::Utf8 => Ok(PointId::Str(ids.as_string::<i32>().value(i).to_string())),
        DataType::LargeUtf8 => Ok(PointId::Str(ids.as_string::<i64>().value(i).to_string())),
        DataType::Utf8View => Ok(PointId::Str(ids.as_string_view().value(i).to_string())),
        other => Err(format!("has an id of type {other}")),
    }
}

/// Whether an id column of this type is read.
fn id_type_read(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::UInt64
            | DataType::UInt32
            | DataType::Int64
            | DataType::Int32
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
    )
}

/// Whether a vector column of this type is read: a list of floats of 16, 32 or 64 bits.
fn vector_type_read(data_type: &DataType) -> bool {
    match data_type {
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            matches!(
                item.data_type(),
                DataType::Float32 | DataType::Float64 | DataType::Float16
            )
        }
        _ => false,
    }
}

/// A vector column of one record batch: where each row's components start and end in one
/// flat array of floats.
struct Vectors<'a> {
    column: &'a ArrayRef,
    values: Option<&'a ArrayRef>,
}

impl<'a> Vectors<'a> {
    fn of(column: &'a ArrayRef) -> Self {
        let values = match column.data_type() {
            DataType::List(_) => Some(column.as_list::<i32>().values()),
            DataType::LargeList(_) => Some(column.as_list::<i64>().values()),
            DataType::FixedSizeList(_, _) => Some(column.as_fixed_size_list().values()),
            _ => None,
        };
        Self { column, values }
    }

    /// Row `i`'s components as `f32`, or what is wrong with them.
    fn at(&self, i: usize) -> Result<Vec<f32>, String> {
        if self.column.is_null(i) {
            return Err("has no vector (a null)".into());
        }
        let (start, end) = match self.column.data_type() {
            DataType::List(_) => {
                let offsets = self.column.as_list::<i32>().value_offsets();
                (offsets[i] as usize, offsets[i + 1] as usize)
            }
            DataType::LargeList(_) => {
                let offsets = self.column.as_list::<i64>().value_offsets();
                (offsets[i] as usize, offsets[i + 1] as usize)
            }
            DataType::FixedSizeList(_, _) => {
                let list = self.column.as_fixed_size_list();
                let start = list.value_offset_at(i);
                (start, start + list.value_length() as usize)
            }
            other => return Err(format!("has a vector of type {other}")),
        };
        let Some(values) = self.values else {
            return Err("has a vector that is not a list".into());
        };
        if let Some(nulls) = values.nulls() {
            if let Some(at) = (start..end).find(|&j| nulls.is_null(j)) {
                return Err(format!(
                    "has a null at component {} of its vector",
                    at - start
                ));
            }
        }
        match values.data_type() {
            DataType::Float32 => {
                Ok(values.as_primitive::<Float32Type>().values()[start..end].to_vec())
            }
            DataType::Float64 => Ok(values.as_primitive::<Float64Type>().values()[start..end]
                .iter()
                .map(|&x| x as f32)
                .collect()),
            DataType::Float16 => Ok(values.as_primitive::<Float16Type>().values()[start..end]
                .iter()
                .map(|x| x.to_f32())
                .collect()),
            other => Err(format!("has a vector of {other} components")),
        }
    }
}

/// Finds the id, vector and metadata columns, refusing a file without the first two or
/// with a column of a type that cannot be carried.
fn find_columns(
    whence: &str,
    schema: &Schema,
    options: &BridgeOptions,
    rest_column: Option<String>,
) -> Result<Columns> {
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{} ({})", f.name(), f.data_type()))
        .collect();
    let find = |wanted: &str, what: &str, flag: &str| -> Result<(usize, &Field)> {
        schema
            .fields()
            .iter()
            .enumerate()
            .find(|(_, f)| f.name() == wanted)
            .map(|(i, f)| (i, f.as_ref()))
            .ok_or_else(|| {
                BridgeError::invalid(format!(
                    "{whence} has no {what} column {wanted:?}; its columns are {}; name the \
                     {what} column with {flag}",
                    names.join(", ")
                ))
            })
    };
    let (id, id_field) = find(&options.id_field, "id", "--id-field")?;
    if !id_type_read(id_field.data_type()) {
        return Err(BridgeError::invalid(format!(
            "{whence}: id column {:?} has type {}; ipvec reads ids of type uint64, int64 \
             (≥ 0), uint32, int32, utf8 or large_utf8: cast the column before importing",
            id_field.name(),
            id_field.data_type()
        )));
    }
    let (vector, vector_field) = find(&options.vector_field, "vector", "--vector-field")?;
    if !vector_type_read(vector_field.data_type()) {
        return Err(BridgeError::invalid(format!(
            "{whence}: vector column {:?} has type {}; ipvec reads vectors stored as a list, \
             large_list or fixed_size_list of float32 (or float16/float64, converted): cast \
             the column before importing",
            vector_field.name(),
            vector_field.data_type()
        )));
    }
    let mut metadata = Vec::new();
    let mut rest = None;
    for (index, field) in schema.fields().iter().enumerate() {
        if index == id || index == vector {
            continue;
        }
        if rest_column.as_deref() == Some(field.name().as_str())
            && matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8)
        {
            rest = Some(index);
            continue;
        }
        if !value::carried(field.data_type()) {
            return Err(BridgeError::invalid(format!(
                "{whence}: column {:?} has type {}, which ipvec cannot carry as metadata \
                 (integers, floats, booleans, strings, and lists and structs of them): drop \
                 the column or cast it to a string before importing",
                field.name(),
                field.data_type()
            )));
        }
        metadata.push((field.name().clone(), index));
    }
    Ok(Columns {
        id,
        vector,
        metadata,
        rest,
    })
}

/// The file's recorded metric, else the one asked for; both must agree when both are given.
fn choose_metric(whence: &str, recorded: Option<String>, asked: Option<Metric>) -> Result<Metric> {
    let recorded = match recorded {
        Some(name) => Some(parse_metric(&name).map_err(|e| {
            BridgeError::invalid(format!(
                "{whence}: its key-value metadata {METRIC_KEY}: {e}"
            ))
        })?),
        None => None,
    };
    match (recorded, asked) {
        (Some(recorded), Some(asked)) if recorded != asked => Err(BridgeError::invalid(format!(
            "{whence} records metric {recorded} ({METRIC_KEY}) but {asked} was asked for; \
             leave out --metric to keep the file's"
        ))),
        (Some(metric), _) | (None, Some(metric)) => Ok(metric),
        (None, None) => Err(BridgeError::invalid(format!(
            "{whence} does not record how its vectors are compared: pass --metric cosine|l2|dot"
        ))),
    }
}
