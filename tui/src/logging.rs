//! The dashboard's own log goes to a file, never to the screen it draws on.

use std::{
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
    sync::Mutex,
};

use tracing_subscriber::EnvFilter;

/// The file used when the preferred one cannot be opened (no repository folder, say).
pub fn fallback_path() -> PathBuf {
    std::env::temp_dir().join("ipvec-tui.log")
}

fn open(path: &Path) -> Option<File> {
    OpenOptions::new().create(true).append(true).open(path).ok()
}

/// Sends `tracing` events to `preferred` (else [`fallback_path`]), at `RUST_LOG` or
/// `warn,ipvec_tui=info`; returns the file used. Does nothing if a subscriber is set.
pub fn init(preferred: &Path) -> Option<PathBuf> {
    let (file, path) = match open(preferred) {
        Some(file) => (file, preferred.to_path_buf()),
        None => {
            let fallback = fallback_path();
            (open(&fallback)?, fallback)
        }
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,ipvec_tui=info"));
    tracing_subscriber::fmt()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init()
        .ok()?;
    Some(path)
}
