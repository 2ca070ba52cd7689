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
//!
//! [policy]                # what `bakfs status` holds each job's newest snapshot to
//! copies = 3
//! kinds = 2
//! offsite = 1
//! offline = 1
//! drill_within = "30d"
//! primary_kind = "disk"
//! stale_after = "30d"
//!
//! [pools.offsite]
//! rotate_every = "7d"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::catalog::MediumKind;
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
    #[serde(default)]
    pub policy: Policy,
    /// Settings per pool of media, by pool name.
    #[serde(default)]
    pub pools: BTreeMap<String, Pool>,
}

/// `[policy]`: what `bakfs status` holds each job's newest snapshot to (the 3-2-1-1-0 rule by
/// default). Absent keys take the `POLICY_*` defaults; a number 0 (or `drill_within = "off"`)
/// turns that digit off.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Verified copies, the primary included. Default [`POLICY_COPIES`].
    pub copies: Option<u32>,
    /// Kinds of media among those copies, the primary's counting as `primary_kind`. Default
    /// [`POLICY_KINDS`].
    pub kinds: Option<u32>,
    /// Copies on media kept offsite. Default [`POLICY_OFFSITE`].
    pub offsite: Option<u32>,
    /// Copies on media not plugged in. Default [`POLICY_OFFLINE`].
    pub offline: Option<u32>,
    /// A drill of the job must have proven a copy restorable this recently ("30d"; "off").
    /// Default [`POLICY_DRILL_WITHIN`].
    pub drill_within: Option<String>,
    /// The kind the primary repository's copy counts as. Default `disk`.
    pub primary_kind: Option<MediumKind>,
    /// A medium not plugged in and not seen for longer than this is stale. Default
    /// [`POLICY_STALE_AFTER`]; a pool may say otherwise.
    pub stale_after: Option<String>,
}

/// `[pools.NAME]`: settings for the media of one pool.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// A medium of the pool is due for rotation once its last rotation is older than this
    /// ("7d"); a medium's own setting (`bakfs media set-rotate-every`) wins.
    pub rotate_every: Option<String>,
    /// Overrides `[policy] stale_after` for the pool's media.
    pub stale_after: Option<String>,
}

/// The defaults of `[policy]`: 3 copies on 2 kinds of media, 1 offsite, 1 offline, a drill
/// within 30 days; a medium unseen for 30 days is stale.
pub const POLICY_COPIES: u32 = 3;
/// See [`POLICY_COPIES`].
pub const POLICY_KINDS: u32 = 2;
/// See [`POLICY_COPIES`].
pub const POLICY_OFFSITE: u32 = 1;
/// See [`POLICY_COPIES`].
pub const POLICY_OFFLINE: u32 = 1;
/// See [`POLICY_COPIES`].
pub const POLICY_DRILL_WITHIN: &str = "30d";
/// See [`POLICY_COPIES`].
pub const POLICY_STALE_AFTER: &str = "30d";
/// `drill_within = "off"`: no drill is required.
pub const OFF: &str = "off";

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
    /// Recovery point objective, e.g. "1d": `bakfs status` calls the job late once its newest
    /// snapshot is older than this.
    pub rpo: Option<String>,
    /// How long past its RPO a job is late before it is breached. Default: the RPO itself
    /// (breached past twice the RPO).
    pub rpo_grace: Option<String>,
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
    let duration = |what: &str, v: &Option<String>| -> Result<(), SettingsError> {
        match v {
            Some(v) => crate::timefmt::parse_duration(v)
                .map(drop)
                .map_err(|e| err(format!("{what}: {e}"))),
            None => Ok(()),
        }
    };
    for (name, job) in &cfg.jobs {
        duration(&format!("job {name}: rpo_grace"), &job.rpo_grace)?;
        if job.rpo_grace.is_some() && job.rpo.is_none() {
            return Err(err(format!("job {name}: rpo_grace needs an rpo")));
        }
    }
    if cfg.policy.drill_within.as_deref() != Some(OFF) {
        duration("policy: drill_within", &cfg.policy.drill_within)?;
    }
    duration("policy: stale_after", &cfg.policy.stale_after)?;
    for (name, pool) in &cfg.pools {
        duration(&format!("pools.{name}: rotate_every"), &pool.rotate_every)?;
        duration(&format!("pools.{name}: stale_after"), &pool.stale_after)?;
    }
    if let Some(r) = &cfg.mediad.reverify_after {
        crate::timefmt::parse_duration(r)
            .map_err(|e| err(format!("mediad: reverify_after: {e}")))?;
    }
    Ok(cfg)
}
