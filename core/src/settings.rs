//! The configuration file (TOML), read by `bakfs` and `bakfs-mediad` alike. Where it is (and
//! where the state directory is) is the binaries' business: `bakfs_host::paths`.
//!
//! ```toml
//! repository = "/var/lib/bakfs/repo"
//! password_file = "/etc/bakfs/password"
//!
//! [jobs.etc]
//! paths = ["/etc"]
//! exclude = ["*.swp"]
//! tags = ["etc"]
//! one_file_system = true
//! rpo = "1d"
//! retention = { keep_daily = 7, keep_weekly = 4, keep_monthly = 12 }
//!
//! [mediad]
//! reverify_after = "30d"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::forget::KeepPolicy;

/// Why the configuration file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("config {path}: {msg}")]
pub struct SettingsError {
    pub path: PathBuf,
    pub msg: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub repository: Option<PathBuf>,
    pub password_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub jobs: BTreeMap<String, Job>,
    #[serde(default)]
    pub mediad: Mediad,
}

/// What `bakfs-mediad` reads besides the repository and the state directory.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mediad {
    /// Files already on a medium are read back again once their last check is older than this
    /// (a duration like "30d"; "0d": at every insertion). Default: [`REVERIFY_AFTER`].
    pub reverify_after: Option<String>,
}

/// The default of `[mediad] reverify_after`.
pub const REVERIFY_AFTER: &str = "30d";

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub paths: Vec<PathBuf>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub one_file_system: bool,
    /// Recovery point objective, e.g. "1d".
    pub rpo: Option<String>,
    #[serde(default)]
    pub retention: KeepPolicy,
}

/// Reads the configuration file at `path`.
///
/// # Errors
/// The file cannot be read, is not valid TOML, has unknown keys or a bad duration.
pub fn read(path: &Path) -> Result<Config, SettingsError> {
    let err = |msg: String| SettingsError {
        path: path.to_path_buf(),
        msg,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let cfg: Config = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    for (name, job) in &cfg.jobs {
        if let Some(r) = &job.rpo {
            crate::timefmt::parse_duration(r).map_err(|e| err(format!("job {name}: rpo: {e}")))?;
        }
    }
    if let Some(r) = &cfg.mediad.reverify_after {
        crate::timefmt::parse_duration(r)
            .map_err(|e| err(format!("mediad: reverify_after: {e}")))?;
    }
    Ok(cfg)
}
