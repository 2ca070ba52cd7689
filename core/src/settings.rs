//! The configuration file (TOML), read by `bakfs` and `bakfs-mediad` alike. Where it is (and
//! where the state directory is) is the binaries' business: `bakfs_host::paths`.
//!
//! ```toml
//! repository = "/var/lib/bakfs/repo"
//! password_file = "/etc/bakfs/password"
//! # Told of every job's runs, besides each job's own `heartbeats`.
//! heartbeats = [{ kind = "ntfy", url = "https://ntfy.example.net/backups" }]
//!
//! [jobs.etc]
//! paths = ["/etc"]
//! exclude = ["*.swp"]
//! tags = ["etc"]
//! one_file_system = true
//! rpo = "1d"
//! retention = { keep_daily = 7, keep_weekly = 4, keep_monthly = 12 }
//!
//! [jobs.keys]
//! paths = ["/var/lib/node/staking"]
//! pin = true              # on every medium at every insertion, read back each time
//!
//! [jobs.production]
//! command = ["pg_dump", "-Fc", "production"]
//! stdin_name = "production.dump"
//! timeout = "2h"
//! before = [{ command = "psql -c CHECKPOINT production", timeout = "10min" }]
//!
//! [mediad]
//! reverify_after = "30d"
//! heartbeats = [{ kind = "healthchecks", url = "https://hc.example.net/ping/UUID" }]
//!
//! [metrics]               # node_exporter's textfile collector
//! textfile = "/var/lib/prometheus/node-exporter/bakfs.prom"
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
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::catalog::MediumKind;
use crate::forget::KeepPolicy;
use crate::timefmt;

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
    /// Monitors told of every job's runs (besides each job's own).
    #[serde(default)]
    pub heartbeats: Vec<Monitor>,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub drill: Drill,
    #[serde(default)]
    pub s3: S3,
}

/// `[s3]`: how to reach buckets (`s3:` locations) where the environment does not say; the
/// environment's `AWS_*` variables win.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3 {
    /// The access key id.
    pub access_key_id: Option<String>,
    /// A file whose first line is the secret access key (kept out of the configuration, which
    /// is often readable by all).
    pub secret_access_key_file: Option<PathBuf>,
    /// The region to sign requests for (default `us-east-1`).
    pub region: Option<String>,
    /// Virtual-host addressing (`BUCKET.HOST`) instead of path-style (`HOST/BUCKET`).
    #[serde(default)]
    pub virtual_hosted_style: bool,
}

/// `[drill]`: the defaults of `bakfs drill` (its options win).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drill {
    /// Where sandboxes are made (default `/var/tmp`).
    pub sandbox: Option<PathBuf>,
    /// The share of files a drill restores ("5%"); a job with a `drill_check` is drilled in
    /// full unless a sample is asked for.
    pub sample: Option<String>,
}

/// A monitor that hears of runs: `{ kind = "healthchecks", url = "https://…/ping/UUID" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitor {
    pub kind: MonitorKind,
    pub url: String,
}

impl Monitor {
    /// Checks that its URL is one a monitor can be reached at.
    ///
    /// # Errors
    /// A message naming the URL.
    pub fn check(&self) -> Result<(), String> {
        let rest = self
            .url
            .strip_prefix("https://")
            .or_else(|| self.url.strip_prefix("http://"));
        match rest {
            Some(r) if !r.is_empty() && !self.url.contains(char::is_whitespace) => Ok(()),
            _ => Err(format!(
                "heartbeat url {:?} is not an http:// or https:// URL",
                self.url
            )),
        }
    }
}

/// The conventions a monitor speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorKind {
    /// healthchecks.io and compatible servers: `URL/start`, `URL` (success), `URL/<exit status>`
    /// (failure), with `?rid=<run id>` and the log's tail as the body.
    Healthchecks,
    /// An Uptime Kuma push monitor: `URL?status=up|down&msg=…` (no start).
    UptimeKuma,
    /// An ntfy topic: a message per success or failure (no start), failures with high priority.
    Ntfy,
    /// Any URL that takes a JSON POST of every event.
    Webhook,
}

/// `[metrics]`: where the figures of `bakfs status` are kept for node_exporter's textfile
/// collector; backups and bakfs-mediad refresh the file when set.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub textfile: Option<PathBuf>,
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
    /// The kind the primary repository's copy counts as. Default `disk` (`object storage` for a
    /// repository in a bucket).
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
    /// Tapes: when the pool's jobs start a new media set: `continue` (the default), `always`,
    /// `daily`, `weekly`, `monthly` or a period such as `7d` (`tape_pool.rs`).
    pub allocation: Option<String>,
    /// Tapes: when a media set's cartridges may be written over: `keep` (the default),
    /// `overwrite` (once it is not the current set) or a period after its last write (`90d`).
    pub set_retention: Option<String>,
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
    /// Monitors told of each medium's job (start, then success or failure).
    #[serde(default)]
    pub heartbeats: Vec<Monitor>,
    /// A password file that lets bakfs-mediad drill a medium due for a drill itself, right
    /// after its copy (a daemon holding a password can read every backup: docs/mediad.md).
    /// Without it, mediad holds no key and only says when a drill is due.
    pub drill_password_file: Option<PathBuf>,
    /// An operation on a NAS share (a write, a read-back, a listing, a mount) that takes longer
    /// than this abandons its job: a hung network filesystem never hangs the daemon (`30s`,
    /// `2min`). Default: [`SHARE_TIMEOUT`].
    pub share_timeout: Option<String>,
    /// How often bakfs-mediad tries to mount a share it mounts itself, and tries again a copy
    /// onto a share that failed (`15min`, `1h`). Default: [`SHARE_RETRY`].
    pub share_retry: Option<String>,
    /// The share of packs written onto a NAS share that are read back before the catalog
    /// records them (`"100%"`, the default, or e.g. `"10%"`: a sample, by pack name); the
    /// others are read back in full once `reverify_after` has passed. Manifests, index files,
    /// keys and the config are always read back. Other media always read back everything.
    pub share_read_back: Option<String>,
    /// Tape drives bakfs-mediad watches for cartridges enrolled with `bakfs tape label`: a
    /// non-rewinding device (`/dev/nst0`), a virtual drive (`virtual:/var/lib/bakfs/tapes`), or
    /// `auto`: every drive udev knows, looked up at every poll.
    #[serde(default)]
    pub tape_drives: Vec<String>,
    /// How often each tape drive is asked whether a cartridge is in it (loading one raises no
    /// uevent). Default: [`TAPE_POLL`].
    pub tape_poll: Option<String>,
    /// Eject a cartridge once its job is done (default true): the sign it may go to the vault.
    pub tape_eject: Option<bool>,
}

/// The default of `[mediad] tape_poll`.
pub const TAPE_POLL: &str = "10s";

/// The default of `[mediad] reverify_after`.
pub const REVERIFY_AFTER: &str = "30d";
/// The default of `[mediad] share_timeout`.
pub const SHARE_TIMEOUT: &str = "60s";
/// The default of `[mediad] share_retry`.
pub const SHARE_RETRY: &str = "15min";

/// A job: what one snapshot holds (`paths`, or the output of `command`), with the commands run
/// before and after it. Exactly one of `paths` and `command` is given ([`Job::validate`]).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Files and directories to back up.
    #[serde(default)]
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
    /// A command whose standard output is stored as the snapshot's one file (a database dump).
    pub command: Option<CommandLine>,
    /// The name of that file in the snapshot (`/NAME`). Default: the job's name.
    pub stdin_name: Option<String>,
    /// How long `command` may run (a timeout like "2h", [`timefmt::parse_timeout`]); no limit
    /// if not given.
    pub timeout: Option<String>,
    /// Environment variables for `command`, `before` and `after`, besides bakfs's own.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Commands run in order before the backup; the first that fails stops the job.
    #[serde(default)]
    pub before: Vec<Hook>,
    /// Commands run in order after the backup, whatever happened (also after a failed `before`).
    #[serde(default)]
    pub after: Vec<Hook>,
    /// Monitors told of this job's runs (start, then success or failure).
    #[serde(default)]
    pub heartbeats: Vec<Monitor>,
    /// A command a drill runs in the restored tree and in the live source (`/`), whose outputs
    /// must be the same; a drill of the job is then full unless told otherwise.
    pub drill_check: Option<CommandLine>,
    /// A pinned critical set (node keys, cold keys): bakfs-mediad copies the job's newest
    /// snapshot onto every medium at every insertion, whatever the medium's retention, and
    /// reads it back there each time; `bakfs status` flags every enrolled medium that lacks it.
    #[serde(default)]
    pub pin: bool,
}

/// A share (of files, of data) as the options and the configuration give it, such as `5%` (or `5`), in (0, 100].
///
/// # Errors
/// What is wrong with it.
pub fn parse_percent(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?}: expected a percentage like 5%"))?;
    if v > 0.0 && v <= 100.0 {
        Ok(v)
    } else {
        Err(format!("{s:?}: must be in (0, 100]%"))
    }
}

/// The timeout of a `before` or `after` command that gives none: 10 minutes.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(600);

/// A command line in the configuration: a list is the program and its arguments, run as they
/// are (no shell, no quoting); a string is a shell command, run with `sh -c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// `["pg_dump", "-Fc", "production"]`.
    Argv(Vec<String>),
    /// `"systemctl stop app && sync"`.
    Shell(String),
}

impl CommandLine {
    /// The program and its arguments: the list itself, or `sh -c STRING`.
    pub fn argv(&self) -> Vec<String> {
        match self {
            CommandLine::Argv(v) => v.clone(),
            CommandLine::Shell(s) => vec!["sh".into(), "-c".into(), s.clone()],
        }
    }

    fn check(&self) -> Result<(), String> {
        let empty = match self {
            CommandLine::Argv(v) => v.first().is_none_or(|p| p.trim().is_empty()),
            CommandLine::Shell(s) => s.trim().is_empty(),
        };
        let nul = match self {
            CommandLine::Argv(v) => v.iter().any(|a| a.contains('\0')),
            CommandLine::Shell(s) => s.contains('\0'),
        };
        match (empty, nul) {
            (true, _) => Err("is empty".into()),
            (_, true) => Err("contains a NUL character".into()),
            _ => Ok(()),
        }
    }
}

/// The command as an operator reads it: the shell string, or the list joined by spaces (an
/// argument with a space or a quote is quoted).
impl std::fmt::Display for CommandLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandLine::Shell(s) => f.write_str(s),
            CommandLine::Argv(v) => {
                let words: Vec<String> = v
                    .iter()
                    .map(|a| {
                        if a.is_empty()
                            || a.contains(|c: char| c.is_whitespace() || "'\"\\".contains(c))
                        {
                            format!("{a:?}")
                        } else {
                            a.clone()
                        }
                    })
                    .collect();
                f.write_str(&words.join(" "))
            }
        }
    }
}

impl<'de> Deserialize<'de> for CommandLine {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CommandLine;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a list of strings (a program and its arguments) or a string (run with sh -c)",
                )
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<CommandLine, E> {
                Ok(CommandLine::Shell(s.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<CommandLine, A::Error> {
                let mut v = Vec::new();
                while let Some(a) = seq.next_element::<String>()? {
                    v.push(a);
                }
                Ok(CommandLine::Argv(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A `before` or `after` command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// What to run.
    pub command: CommandLine,
    /// How long it may run; default [`HOOK_TIMEOUT`].
    pub timeout: Option<String>,
}

impl Hook {
    /// Its timeout (the default if none was given).
    pub fn timeout(&self) -> Duration {
        self.timeout
            .as_deref()
            .and_then(|t| timefmt::parse_timeout(t).ok())
            .unwrap_or(HOOK_TIMEOUT)
    }
}

impl Job {
    /// The timeout of `command`, if any (a bad one is refused by [`read`]).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
            .as_deref()
            .and_then(|t| timefmt::parse_timeout(t).ok())
    }

    /// The name of the file `command`'s output is stored as, in the job called `name`.
    pub fn stdin_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.stdin_name.as_deref().unwrap_or(name)
    }

    /// Checks what the types cannot: the job named `name` has either paths or a command, its
    /// durations parse, its file name is a plain name, its commands are not empty.
    ///
    /// # Errors
    /// A message naming the setting, without the job's name.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        if let Some(r) = &self.rpo {
            timefmt::parse_duration(r).map_err(|e| format!("rpo: {e}"))?;
        }
        match &self.command {
            None => {
                if self.paths.is_empty() {
                    return Err(
                        "give paths to back up, or a command whose output to back up".into(),
                    );
                }
                for (key, given) in [
                    ("stdin_name", self.stdin_name.is_some()),
                    ("timeout", self.timeout.is_some()),
                ] {
                    if given {
                        return Err(format!("{key} applies to a command, and the job has none"));
                    }
                }
            }
            Some(c) => {
                c.check().map_err(|e| format!("command {e}"))?;
                if !self.paths.is_empty() {
                    return Err("give either paths or a command, not both (a command's output is a snapshot of its own: make it another job)".into());
                }
                if !self.exclude.is_empty() || self.one_file_system {
                    return Err(
                        "exclude and one_file_system apply to paths, and the job has a command"
                            .into(),
                    );
                }
                let file = self.stdin_name(name);
                if !crate::format::is_safe_name(file.as_bytes()) {
                    return Err(match &self.stdin_name {
                        Some(_) => format!("stdin_name {file:?} must be a plain file name"),
                        None => {
                            format!("the job's name {name:?} cannot name its file: give stdin_name")
                        }
                    });
                }
                if let Some(t) = &self.timeout {
                    timefmt::parse_timeout(t).map_err(|e| format!("timeout: {e}"))?;
                }
            }
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
                return Err(format!(
                    "env: {k:?} is not a variable name (or its value has a NUL)"
                ));
            }
        }
        if let Some(c) = &self.drill_check {
            c.check().map_err(|e| format!("drill_check {e}"))?;
        }
        for (list, hooks) in [("before", &self.before), ("after", &self.after)] {
            for (i, h) in hooks.iter().enumerate() {
                let at = format!("{list}[{i}]");
                h.command
                    .check()
                    .map_err(|e| format!("{at}: command {e}"))?;
                if let Some(t) = &h.timeout {
                    timefmt::parse_timeout(t).map_err(|e| format!("{at}: timeout: {e}"))?;
                }
            }
        }
        Ok(())
    }
}

/// Reads the configuration file at `path`.
///
/// # Errors
/// The file cannot be read, is not valid TOML, has unknown keys, a bad duration or a job that
/// [`Job::validate`] refuses.
pub fn read(path: &Path) -> Result<Config, SettingsError> {
    let err = |msg: String| SettingsError {
        path: path.to_path_buf(),
        msg,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let cfg: Config = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    for (name, job) in &cfg.jobs {
        job.validate(name)
            .map_err(|e| err(format!("job {name}: {e}")))?;
    }
    let duration = |what: &str, v: &Option<String>| -> Result<(), SettingsError> {
        match v {
            Some(v) => crate::timefmt::parse_duration(v)
                .map(drop)
                .map_err(|e| err(format!("{what}: {e}"))),
            None => Ok(()),
        }
    };
    let monitors = |what: &str, list: &[Monitor]| -> Result<(), SettingsError> {
        list.iter()
            .try_for_each(|m| m.check().map_err(|e| err(format!("{what}{e}"))))
    };
    if cfg.s3.access_key_id.is_some() != cfg.s3.secret_access_key_file.is_some() {
        return Err(err(
            "[s3]: access_key_id and secret_access_key_file go together".into(),
        ));
    }
    monitors("", &cfg.heartbeats)?;
    monitors("mediad: ", &cfg.mediad.heartbeats)?;
    for (name, job) in &cfg.jobs {
        monitors(&format!("job {name}: "), &job.heartbeats)?;
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
        crate::tape_pool::PoolPolicy::of(Some(pool))
            .map_err(|e| err(format!("pools.{name}: {e}")))?;
    }
    if let Some(r) = &cfg.mediad.reverify_after {
        crate::timefmt::parse_duration(r)
            .map_err(|e| err(format!("mediad: reverify_after: {e}")))?;
    }
    Ok(cfg)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod job_tests {
    use super::*;

    /// The job `[jobs.db]` with `body`, checked as `read` checks it.
    fn job(body: &str) -> Result<Job, String> {
        let job: Job = toml::from_str(body).map_err(|e| e.to_string())?;
        job.validate("db")?;
        Ok(job)
    }

    #[test]
    fn a_command_job_is_a_list_or_a_shell_string_with_its_file_name_and_timeout() {
        let j = job(r#"command = ["pg_dump", "-Fc", "my db"]
timeout = "1h30min"
env = { PGHOST = "/run/postgresql" }
before = [{ command = "psql -c CHECKPOINT", timeout = "30s" }]
[[after]]
command = ["systemctl", "start", "app"]
"#)
        .unwrap();
        let c = j.command.as_ref().unwrap();
        assert_eq!(c.argv(), ["pg_dump", "-Fc", "my db"]);
        assert_eq!(c.to_string(), r#"pg_dump -Fc "my db""#);
        assert_eq!(j.timeout(), Some(Duration::from_secs(5_400)));
        assert_eq!(j.stdin_name("db"), "db", "the job's name by default");
        assert_eq!(
            j.before[0].command.argv(),
            ["sh", "-c", "psql -c CHECKPOINT"]
        );
        assert_eq!(j.before[0].timeout(), Duration::from_secs(30));
        assert_eq!(
            j.after[0].timeout(),
            Duration::from_secs(600),
            "HOOK_TIMEOUT"
        );
        let j = job("command = \"pg_dump x | gzip\"\nstdin_name = \"x.sql.gz\"").unwrap();
        assert_eq!(j.stdin_name("db"), "x.sql.gz");
        assert_eq!(j.timeout(), None);
        // A path job may have hooks too.
        job("paths = [\"/etc\"]\nbefore = [{ command = \"sync\" }]").unwrap();
        // Pinned: its newest snapshot on every medium (bakfs-mediad, bakfs status).
        assert!(job("paths = [\"/etc\"]\npin = true").unwrap().pin);
        assert!(!job("paths = [\"/etc\"]").unwrap().pin);
    }

    #[test]
    fn a_job_that_cannot_work_is_refused_with_the_setting_named() {
        for (body, says) in [
            ("tags = [\"x\"]", "give paths to back up, or a command"),
            (
                "paths = [\"/etc\"]\ncommand = \"pg_dump\"",
                "either paths or a command, not both",
            ),
            ("command = []", "command is empty"),
            ("command = \"  \"", "command is empty"),
            (
                "command = 3",
                "a list of strings (a program and its arguments) or a string",
            ),
            (
                "command = \"x\"\nexclude = [\"*.tmp\"]",
                "exclude and one_file_system apply to paths",
            ),
            (
                "command = \"x\"\nstdin_name = \"a/b\"",
                "stdin_name \"a/b\" must be a plain file name",
            ),
            (
                "command = \"x\"\nstdin_name = \"..\"",
                "must be a plain file name",
            ),
            (
                "command = \"x\"\ntimeout = \"5m\"",
                "timeout: invalid timeout \"5m\"",
            ),
            (
                "command = \"x\"\ntimeout = \"0s\"",
                "timeout: invalid timeout",
            ),
            (
                "paths = [\"/etc\"]\ntimeout = \"1h\"",
                "timeout applies to a command",
            ),
            (
                "paths = [\"/etc\"]\nstdin_name = \"x\"",
                "stdin_name applies to a command",
            ),
            (
                "command = \"x\"\nbefore = [{ command = \"\" }]",
                "before[0]: command is empty",
            ),
            (
                "command = \"x\"\nafter = [{ command = \"y\", timeout = \"1\" }]",
                "after[0]: timeout: invalid timeout",
            ),
            (
                "command = \"x\"\nafter = [{ run = \"y\" }]",
                "unknown field `run`",
            ),
            (
                "command = \"x\"\nenv = { \"A=B\" = \"1\" }",
                "env: \"A=B\" is not a variable name",
            ),
            ("paths = [\"/etc\"]\nrpo = \"1x\"", "rpo: invalid duration"),
            ("paths = [\"/etc\"]\npin = \"yes\"", "invalid type"),
        ] {
            let e = job(body).unwrap_err();
            assert!(e.contains(says), "{body:?}: {e:?} does not say {says:?}");
        }
        // The job's own name is the default file name, so it must be a plain name.
        let j: Job = toml::from_str("command = \"x\"").unwrap();
        let e = j.validate("a/b").unwrap_err();
        assert!(e.contains("give stdin_name"), "{e}");
    }

    #[test]
    fn read_names_the_file_and_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bakfs.toml");
        std::fs::write(&p, "[jobs.db]\ncommand = \"pg_dump\"\npaths = [\"/x\"]\n").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "config {}: job db: give either paths",
                p.display()
            )),
            "{e}"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod monitor_tests {
    use super::*;

    fn config(text: &str) -> Result<Config, SettingsError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bakfs.toml");
        std::fs::write(&p, text).unwrap();
        read(&p)
    }

    #[test]
    fn heartbeats_for_every_job_for_one_job_and_for_mediad_and_the_metrics_file() {
        let c = config(
            r#"heartbeats = [{ kind = "ntfy", url = "https://ntfy.example.net/all" }]
[jobs.etc]
paths = ["/etc"]
heartbeats = [{ kind = "healthchecks", url = "http://127.0.0.1:8000/ping/etc" }]
[mediad]
heartbeats = [{ kind = "uptime_kuma", url = "https://kuma.example.net/api/push/x" }, { kind = "webhook", url = "https://hooks.example.net/bakfs" }]
[metrics]
textfile = "/var/lib/prometheus/node-exporter/bakfs.prom"
"#,
        )
        .unwrap();
        assert_eq!(c.heartbeats[0].kind, MonitorKind::Ntfy);
        assert_eq!(c.jobs["etc"].heartbeats[0].kind, MonitorKind::Healthchecks);
        assert_eq!(c.mediad.heartbeats.len(), 2);
        assert_eq!(c.mediad.heartbeats[0].kind, MonitorKind::UptimeKuma);
        assert!(c.metrics.textfile.is_some());
    }

    #[test]
    fn a_monitor_that_cannot_be_reached_is_refused_with_where_it_is_named() {
        for (text, says) in [
            (
                "heartbeats = [{ kind = \"ntfy\", url = \"ntfy.sh/x\" }]",
                "heartbeat url \"ntfy.sh/x\" is not an http",
            ),
            (
                "[jobs.etc]\npaths = [\"/etc\"]\nheartbeats = [{ kind = \"healthchecks\", url = \"https://\" }]",
                "job etc: heartbeat url",
            ),
            (
                "[mediad]\nheartbeats = [{ kind = \"pagerduty\", url = \"https://x\" }]",
                "unknown variant `pagerduty`",
            ),
        ] {
            let e = config(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
