//! The metadata side file of a FAISS index: JSON lines `{"id": ID, KEY: VALUE, …}`, one per
//! point that has metadata, the keys other than `id` being the point's metadata.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufRead, BufReader, BufWriter, Write},
    path::Path,
};

use serde_json::{Map, Value};

use super::super::{BridgeError, Result};

/// The key holding a point's id.
pub const ID_KEY: &str = "id";

/// A side file's metadata by id, with the line each id came from.
#[derive(Debug, Default)]
pub struct SideFile {
    /// Metadata and line number (from 1) by id.
    pub by_id: HashMap<u64, (Value, usize)>,
}

/// Reads the side file `path`.
pub fn read(path: &Path) -> Result<SideFile> {
    let file = File::open(path).map_err(|e| BridgeError::io(path, e))?;
    let mut side = SideFile::default();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|e| BridgeError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = |what: String| {
            BridgeError::invalid(format!("{} line {number}: {what}", path.display()))
        };
        let value: Value = serde_json::from_str(&line).map_err(|e| {
            at(format!(
                "not JSON ({e}); each line is an object {{\"id\": ID, …metadata}}"
            ))
        })?;
        let Value::Object(mut object) = value else {
            return Err(at(
                "not a JSON object; each line is an object {\"id\": ID, …metadata}".into(),
            ));
        };
        let id = object
            .remove(ID_KEY)
            .ok_or_else(|| at("has no \"id\" key naming the point it describes".into()))?;
        let id = id.as_u64().ok_or_else(|| {
            at(format!(
                "id {id} is not an integer ≥ 0, which is what FAISS ids are"
            ))
        })?;
        if let Some((_, first)) = side.by_id.get(&id) {
            return Err(at(format!(
                "id {id} already has metadata on line {first}; give each id one line"
            )));
        }
        side.by_id.insert(id, (Value::Object(object), number));
    }
    Ok(side)
}

impl SideFile {
    /// The metadata of point `id`, removed from the file's (so that what is left at the end
    /// names ids the index does not hold). A line with only an id gives no metadata.
    pub fn take(&mut self, id: u64) -> Option<Value> {
        let (value, _) = self.by_id.remove(&id)?;
        match &value {
            Value::Object(object) if object.is_empty() => None,
            _ => Some(value),
        }
    }

    /// Refuses ids the index does not hold, naming the first line with one.
    pub fn check_known(
        &self,
        path: &Path,
        index: &Path,
        known: impl Fn(u64) -> bool,
    ) -> Result<()> {
        let stray = self
            .by_id
            .iter()
            .filter(|(id, _)| !known(**id))
            .map(|(id, (_, line))| (*line, *id))
            .min();
        match stray {
            None => Ok(()),
            Some((line, id)) => Err(BridgeError::invalid(format!(
                "{} line {line}: id {id} is not in {}; the side file describes points the \
                 index does not hold (is it the side file of another index?)",
                path.display(),
                index.display()
            ))),
        }
    }
}

/// Writes a side file, a line per point with metadata.
#[derive(Debug)]
pub struct SideWriter {
    out: BufWriter<File>,
}

impl SideWriter {
    /// Creates `path` (replacing it).
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| BridgeError::io(path, e))?;
        Ok(Self {
            out: BufWriter::new(file),
        })
    }

    /// Writes the line of point `id`, if it has metadata.
    pub fn write(&mut self, path: &Path, id: u64, metadata: Option<&Value>) -> Result<()> {
        let object = match metadata {
            None => return Ok(()),
            Some(Value::Object(object)) if object.is_empty() => return Ok(()),
            Some(Value::Object(object)) => object,
            Some(other) => {
                return Err(BridgeError::invalid(format!(
                    "point {id}: its metadata is {other}, not a JSON object; the side file \
                     {} holds objects",
                    path.display()
                )))
            }
        };
        if object.contains_key(ID_KEY) {
            return Err(BridgeError::invalid(format!(
                "point {id}: its metadata has a key \"{ID_KEY}\", which the side file {} uses \
                 for the point's id; rename that key, or export to Parquet",
                path.display()
            )));
        }
        let mut line = Map::with_capacity(object.len() + 1);
        line.insert(ID_KEY.into(), Value::from(id));
        line.extend(object.iter().map(|(k, v)| (k.clone(), v.clone())));
        serde_json::to_writer(&mut self.out, &line).map_err(|e| BridgeError::io(path, e.into()))?;
        self.out
            .write_all(b"\n")
            .map_err(|e| BridgeError::io(path, e))
    }

    /// Flushes the file to disk.
    pub fn finish(mut self, path: &Path) -> Result<()> {
        self.out.flush().map_err(|e| BridgeError::io(path, e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| BridgeError::io(path, e))
    }
}
