//! The configuration file (TOML).
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
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bakfs_core::forget::KeepPolicy;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub repository: Option<PathBuf>,
    pub password_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub jobs: BTreeMap<String, Job>,
}

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

/// Finds and reads the configuration: `explicit`, else the XDG location, else /etc.
pub fn load(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>)> {
    let path = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => {
            let xdg = std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
            let candidates = xdg
                .map(|x| x.join("bakfs/config.toml"))
                .into_iter()
                .chain([PathBuf::from("/etc/bakfs/bakfs.toml")]);
            candidates.into_iter().find(|p| p.is_file())
        }
    };
    let Some(path) = path else {
        return Ok((Config::default(), None));
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading config {}", path.display()))?;
    let cfg: Config =
        toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
    for (name, job) in &cfg.jobs {
        if let Some(r) = &job.rpo {
            bakfs_core::timefmt::parse_duration(r)
                .with_context(|| format!("config {}: job {name}: rpo", path.display()))?;
        }
    }
    Ok((cfg, Some(path)))
}
