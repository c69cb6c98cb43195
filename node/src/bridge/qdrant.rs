//! Placeholder while the Qdrant bridge is written.

use super::{BridgeError, BridgeOptions, Result, Sink, Source};

/// Opens collection `collection` of the Qdrant server at `url` to be read.
pub fn source(url: &str, collection: &str, _options: &BridgeOptions) -> Result<Box<dyn Source>> {
    Err(BridgeError::invalid(format!(
        "{url}/{collection}: the Qdrant bridge is not built yet"
    )))
}

/// Opens collection `collection` of the Qdrant server at `url` to be written.
pub fn sink(url: &str, collection: &str, _options: &BridgeOptions) -> Result<Box<dyn Sink>> {
    Err(BridgeError::invalid(format!(
        "{url}/{collection}: the Qdrant bridge is not built yet"
    )))
}
