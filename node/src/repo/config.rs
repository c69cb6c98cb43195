//! The repository's configuration file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file is not valid TOML or has unknown keys.
    #[error("config file {path} is invalid: {reason}")]
    Parse { path: PathBuf, reason: String },
    /// A value is out of range.
    #[error("config value {key} is invalid: {reason}")]
    Invalid { key: &'static str, reason: String },
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Everything configurable, with the defaults `ipvec init` writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Logging.
    pub log: LogConfig,
}

/// Logging options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Least severe level logged: error, warn, info, debug or trace. RUST_LOG overrides it.
    pub level: String,
    /// Line format: "text" or "json".
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            return Err(ConfigError::Invalid {
                key: "log.level",
                reason: "use error, warn, info, debug or trace".into(),
            });
        }
        if !["text", "json"].contains(&self.log.format.as_str()) {
            return Err(ConfigError::Invalid {
                key: "log.format",
                reason: "use text or json".into(),
            });
        }
        Ok(())
    }

    /// The file `ipvec init` writes: every option with its meaning.
    pub fn to_documented_toml(&self) -> String {
        format!(
            "# ipvec repository configuration. Environment variables (IPVEC_…) and flags override it.\n\
             \n\
             [log]\n\
             # Least severe level logged: error, warn, info, debug or trace. RUST_LOG overrides it.\n\
             level = {:?}\n\
             # Line format: \"text\" or \"json\".\n\
             format = {:?}\n",
            self.log.level, self.log.format
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_file_parses_back_to_the_defaults() {
        let text = Config::default().to_documented_toml();
        let parsed: Config = toml::from_str(&text).unwrap();
        assert_eq!(parsed, Config::default());
        assert!(
            toml::from_str::<Config>("[log]\nlevle = \"x\"\n").is_err(),
            "unknown keys are refused"
        );
        let bad = Config {
            log: LogConfig {
                level: "loud".into(),
                ..LogConfig::default()
            },
        };
        assert!(bad.validate().is_err());
    }
}
