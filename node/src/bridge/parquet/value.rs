//! One Arrow value as JSON metadata: integers stay integers, floats floats, booleans and
//! strings themselves; lists become arrays and structs objects; a null leaves the key out (an
//! element of a list stays, as `null`, so positions keep their meaning).

use arrow_array::{cast::AsArray, types::*, Array};
use arrow_schema::DataType;
use serde_json::{Map, Number, Value};

/// Whether a column of type `data_type` can be carried as metadata.
pub fn carried(data_type: &DataType) -> bool {
    match data_type {
        DataType::Null
        | DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View => true,
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            carried(item.data_type())
        }
        DataType::Struct(fields) => fields.iter().all(|f| carried(f.data_type())),
        DataType::Dictionary(_, values) => carried(values),
        _ => false,
    }
}

/// The value at `row` of `array`, or `None` for a null. The error says what is wrong with
/// the value (the caller names the file, row and column).
pub fn json_at(array: &dyn Array, row: usize) -> Result<Option<Value>, String> {
    if array.is_null(row) || array.data_type() == &DataType::Null {
        return Ok(None);
    }
    let value = match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => Value::from(array.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => Value::from(array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => Value::from(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Value::from(array.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => Value::from(array.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => Value::from(array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => Value::from(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float16 => float(array.as_primitive::<Float16Type>().value(row).to_f64())?,
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(row)))?,
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row))?,
        DataType::Utf8 => Value::from(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Value::from(array.as_string::<i64>().value(row)),
        DataType::Utf8View => Value::from(array.as_string_view().value(row)),
        DataType::List(_) => elements(array.as_list::<i32>().value(row).as_ref())?,
        DataType::LargeList(_) => elements(array.as_list::<i64>().value(row).as_ref())?,
        DataType::FixedSizeList(_, _) => elements(array.as_fixed_size_list().value(row).as_ref())?,
        DataType::Struct(fields) => {
            let columns = array.as_struct().columns();
            let mut object = Map::new();
            for (field, column) in fields.iter().zip(columns) {
                if let Some(value) = json_at(column.as_ref(), row)? {
                    object.insert(field.name().clone(), value);
                }
            }
            Value::Object(object)
        }
        DataType::Dictionary(_, _) => {
            let Some(dictionary) = array.as_any_dictionary_opt() else {
                return Err("a dictionary column that Arrow cannot open".into());
            };
            let key = dictionary.normalized_keys().get(row).copied();
            match key {
                Some(key) => return json_at(dictionary.values().as_ref(), key),
                None => return Ok(None),
            }
        }
        other => {
            return Err(format!(
                "a value of type {other}, which metadata cannot hold"
            ))
        }
    };
    Ok(Some(value))
}

/// A list's elements, nulls kept as `null`.
fn elements(list: &dyn Array) -> Result<Value, String> {
    let mut items = Vec::with_capacity(list.len());
    for i in 0..list.len() {
        items.push(json_at(list, i)?.unwrap_or(Value::Null));
    }
    Ok(Value::Array(items))
}

fn float(x: f64) -> Result<Value, String> {
    Number::from_f64(x)
        .map(Value::Number)
        .ok_or_else(|| format!("{x}, which JSON metadata cannot hold (only finite numbers)"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{
        builder::{ListBuilder, StringDictionaryBuilder},
        Float32Array, Int64Array, RecordBatch, StringArray, StructArray,
    };
    use arrow_schema::{Field, Fields};
    use serde_json::json;

    use super::*;

    #[test]
    fn scalars_lists_structs_and_dictionaries_become_json() {
        let ints = Int64Array::from(vec![Some(-3), None]);
        assert_eq!(json_at(&ints, 0).unwrap(), Some(json!(-3)));
        assert_eq!(json_at(&ints, 1).unwrap(), None);
        let floats = Float32Array::from(vec![0.5, f32::NAN]);
        assert_eq!(json_at(&floats, 0).unwrap(), Some(json!(0.5)));
        assert!(json_at(&floats, 1).unwrap_err().contains("finite"));

        let mut list = ListBuilder::new(arrow_array::builder::Int64Builder::new());
        list.values().append_value(1);
        list.values().append_null();
        list.append(true);
        let list = list.finish();
        assert_eq!(json_at(&list, 0).unwrap(), Some(json!([1, null])));

        let fields = Fields::from(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Int64, true),
        ]);
        let structs = StructArray::new(
            fields,
            vec![
                Arc::new(StringArray::from(vec![Some("x")])),
                Arc::new(Int64Array::from(vec![None::<i64>])),
            ],
            None,
        );
        assert_eq!(json_at(&structs, 0).unwrap(), Some(json!({"a": "x"})));

        let mut dictionary = StringDictionaryBuilder::<Int32Type>::new();
        dictionary.append_value("shirt");
        dictionary.append_null();
        dictionary.append_value("shirt");
        let dictionary = dictionary.finish();
        assert_eq!(json_at(&dictionary, 2).unwrap(), Some(json!("shirt")));
        assert_eq!(json_at(&dictionary, 1).unwrap(), None);
        let batch = RecordBatch::try_from_iter([("d", Arc::new(dictionary) as _)]).unwrap();
        assert!(carried(batch.schema().field(0).data_type()));
    }

    #[test]
    fn binary_and_time_columns_are_not_carried() {
        assert!(!carried(&DataType::Binary));
        assert!(!carried(&DataType::Date32));
        let list_of_binary = DataType::new_list(DataType::Binary, true);
        assert!(!carried(&list_of_binary));
    }
}
