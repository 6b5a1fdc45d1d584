//! `[writer]`: the group-commit writer, and where proxy recordings wait while the database is
//! away (the spill file, then memory).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, DatabaseConfig};

/// The smallest spill file worth having: a few recordings.
const MIN_SPILL_BYTES: u64 = 4096;
/// The spill file's name beside the SQLite database (or in the working folder on PostgreSQL).
const DEFAULT_SPILL_FILE: &str = "wagate.spill";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriterConfig {
    pub shards: usize,
    pub max_batch: usize,
    pub retry_buffer: usize,
    #[serde(with = "humantime_serde")]
    pub retry_interval: Duration,
    /// This instance's spill file; empty: `wagate.spill` beside the SQLite database, or in the
    /// working folder on PostgreSQL. Never shared: an instance locks its file.
    pub spill_path: String,
    /// The spill file's size limit; 0 turns the spill file off (memory only).
    pub spill_max_bytes: u64,
}

impl WriterConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.spill_max_bytes != 0 && self.spill_max_bytes < MIN_SPILL_BYTES {
            return Err(ConfigError(format!(
                "writer.spill_max_bytes: must be 0 (no spill file) or at least {MIN_SPILL_BYTES}, \
                 e.g. 268435456 (256 MiB)"
            )));
        }
        if self.spill_path.ends_with('/') {
            return Err(ConfigError(
                "writer.spill_path: must name a file, e.g. /var/lib/wagate/wagate.spill".into(),
            ));
        }
        Ok(())
    }

    /// Where this instance's spill file is; `None` when it is turned off.
    pub fn spill_file(&self, database: &DatabaseConfig) -> Option<PathBuf> {
        if self.spill_max_bytes == 0 {
            return None;
        }
        if !self.spill_path.is_empty() {
            return Some(PathBuf::from(&self.spill_path));
        }
        let dir = database.sqlite_data_dir().unwrap_or_default();
        Some(Path::new(&dir).join(DEFAULT_SPILL_FILE))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    #[test]
    fn the_spill_file_defaults_beside_the_database() {
        let mut config = Config::defaults();
        assert_eq!(
            config.writer.spill_file(&config.database),
            Some(PathBuf::from("data/wagate.spill"))
        );
        config.database.url = "postgres://db/wagate".to_string().into();
        assert_eq!(
            config.writer.spill_file(&config.database),
            Some(PathBuf::from("wagate.spill"))
        );
        config.writer.spill_path = "/var/lib/wagate/a.spill".into();
        assert_eq!(
            config.writer.spill_file(&config.database),
            Some(PathBuf::from("/var/lib/wagate/a.spill"))
        );
        config.writer.spill_max_bytes = 0;
        assert_eq!(config.writer.spill_file(&config.database), None);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn a_tiny_spill_limit_is_refused() {
        let mut config = Config::defaults();
        config.writer.spill_max_bytes = 100;
        let error = config.validate().unwrap_err();
        assert!(error.0.contains("writer.spill_max_bytes"), "{error:?}");
        config.writer.spill_max_bytes = 4096;
        assert!(config.validate().is_ok());
        config.writer.spill_path = "data/".into();
        assert!(config.validate().is_err());
    }
}
