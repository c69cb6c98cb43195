//! Placeholder while the Elasticsearch/OpenSearch bridge is written.

use std::path::Path;

use super::{endpoint::Flavor, BridgeError, BridgeOptions, Result, Sink, Source};

/// Opens index `index` of the server at `url` to be read.
pub fn source(
    url: &str,
    index: &str,
    _flavor: Flavor,
    _options: &BridgeOptions,
) -> Result<Box<dyn Source>> {
    Err(BridgeError::invalid(format!(
        "{url}/{index}: the Elasticsearch bridge is not built yet"
    )))
}

/// Opens index `index` of the server at `url` to be written.
pub fn sink(
    url: &str,
    index: &str,
    _flavor: Flavor,
    _options: &BridgeOptions,
) -> Result<Box<dyn Sink>> {
    Err(BridgeError::invalid(format!(
        "{url}/{index}: the Elasticsearch bridge is not built yet"
    )))
}

/// Opens a bulk NDJSON file to be read.
pub fn file_source(path: &Path, _options: &BridgeOptions) -> Result<Box<dyn Source>> {
    Err(BridgeError::invalid(format!(
        "{}: the bulk file bridge is not built yet",
        path.display()
    )))
}

/// Opens a bulk NDJSON file to be written.
pub fn file_sink(path: &Path, _options: &BridgeOptions) -> Result<Box<dyn Sink>> {
    Err(BridgeError::invalid(format!(
        "{}: the bulk file bridge is not built yet",
        path.display()
    )))
}
