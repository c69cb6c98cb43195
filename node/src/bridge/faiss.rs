//! Placeholder while the faiss bridge is written.

use std::path::Path;

use super::{BridgeError, BridgeOptions, Result, Sink, Source};

/// Opens `path` to be read.
pub fn source(path: &Path, _options: &BridgeOptions) -> Result<Box<dyn Source>> {
    Err(BridgeError::invalid(format!(
        "{}: the faiss bridge is not built yet",
        path.display()
    )))
}

/// Opens `path` to be written.
pub fn sink(path: &Path, _options: &BridgeOptions) -> Result<Box<dyn Sink>> {
    Err(BridgeError::invalid(format!(
        "{}: the faiss bridge is not built yet",
        path.display()
    )))
}
