//! The `[backup]` section of the repository's configuration: the daemon's backup schedule.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::ConfigError;

/// Scheduled backups, taken by the daemon (`ipvec backup create` takes one by hand).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// The backup directory (created if missing). Empty: no scheduled backups. Through the
    /// API, callers without the admin token may only name backup folders under it.
    pub dir: String,
    /// How often: seconds (`3600`) or a number and s, m, h or d (`6h`). Empty or 0: never.
    #[serde(deserialize_with = "text_or_number")]
    pub every: String,
    /// Restorable versions to keep per collection (0: all). A chain holds at most this many
    /// links; after that the next backup is full, and older chains are dropped whole once
    /// the newer ones hold this many versions.
    pub keep: u64,
}

/// `every` as written: `"6h"`, or a bare number of seconds.
fn text_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Every {
        Text(String),
        Seconds(u64),
    }
    Ok(match Every::deserialize(d)? {
        Every::Text(text) => text,
        Every::Seconds(n) => n.to_string(),
    })
}

impl BackupConfig {
    /// The schedule: where and how often, or `None` when off.
    pub fn schedule(&self) -> Result<Option<(std::path::PathBuf, Duration)>, ConfigError> {
        let every = crate::backup::schedule::parse_every(&self.every).map_err(|reason| {
            ConfigError::Invalid {
                key: "backup.every".into(),
                reason,
            }
        })?;
        match every {
            Some(every) if !self.dir.is_empty() => Ok(Some((self.dir.clone().into(), every))),
            Some(_) => Err(ConfigError::Invalid {
                key: "backup.dir".into(),
                reason: "backup.every is set, so give the directory the backups go into".into(),
            }),
            None => Ok(None),
        }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.schedule().map(|_| ())
    }

    /// The section as `ipvec init` writes it.
    pub fn to_documented_toml(&self) -> String {
        format!(
            "[backup]\n\
             # Scheduled backups by the daemon (ipvec backup create takes one by hand): the\n\
             # directory (empty: none), how often (seconds, or 30m, 6h, 1d; empty or 0: never),\n\
             # and how many restorable versions to keep per collection (0: all; chains of full\n\
             # then incremental CARs are dropped whole, oldest first). Through the API, only\n\
             # the admin token may name backup folders outside dir.\n\
             dir = {:?}\n\
             every = {:?}\n\
             keep = {}\n",
            self.dir, self.every, self.keep
        )
    }
}
