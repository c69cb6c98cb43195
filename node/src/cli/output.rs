//! How commands print: text for people, JSON with `--json`.

use std::path::Path;

use serde_json::json;

/// Where and how a command prints its results.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Print JSON instead of text.
    pub json: bool,
}

impl Output {
    /// Prints `text`, or `value` as one line of JSON.
    pub fn print(&self, text: impl AsRef<str>, value: serde_json::Value) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", text.as_ref());
        }
    }

    pub fn init(&self, path: &Path, peer_id: &str) {
        self.print(
            format!(
                "initialised ipvec repository at {}\npeer id: {peer_id}",
                path.display()
            ),
            json!({ "repo": path.display().to_string(), "peer_id": peer_id }),
        );
    }
}

/// A progress bar on stderr when it is a terminal; hidden otherwise.
pub fn progress_bar(total: Option<u64>, what: &str) -> indicatif::ProgressBar {
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::no_length(),
    };
    let template = match total {
        Some(_) => "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        None => "{msg} {bytes} ({bytes_per_sec})",
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar
}
