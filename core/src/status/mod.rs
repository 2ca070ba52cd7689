//! `bakfs status`: can each job be got back, from where, and how fast. Answered from the
//! catalog alone (no key, no repository read), so that a monitor can ask every minute.
//!
//! Per job: the newest snapshot's age against the job's RPO ([`RpoState`]), the last run, the
//! copies of that snapshot (the primary and every medium holding a verified copy) and a verdict
//! per digit of the policy ([`Digit`]: copies, kinds, offsite, offline, drill) with the reason
//! for each shortfall in words; for a pinned job, the media lacking its newest snapshot
//! (`pinned.rs`). Per medium: when it was last seen, written, verified, rotated and drilled, its
//! space, whether it is due for rotation or stale or lacks a pinned job's newest snapshot, and
//! the restore time estimate from its drills. The whole report has one [`Level`], the worst found, which the
//! `bakfs` binary turns into its exit status.
//!
//! What counts (docs/design.md, "Assurance"):
//! - A copy is the primary's (the snapshot is in the catalog's list of the primary) or a
//!   medium's verified one (`media_snapshots`: recorded only after it was read back right). A
//!   copy whose newest drill of that snapshot found damage is not counted.
//! - The newest snapshot is the newest of the job, in the primary or on any medium, that is not
//!   dated after now: a snapshot from the future (a clock set wrong here or where it was made)
//!   never makes a job look fresh; it is listed as such.
//! - A medium is offline when bakfs-mediad saw it go ([`Presence::Removed`]); plugged in, or not
//!   known (no daemon has seen it since the catalog learnt presence), it does not count as
//!   offline.
//! - Where the catalog cannot tell, the answer is "unknown", never "ok": a digit that is short
//!   while the catalog records no media at all (none enrolled, or the catalog lost its media
//!   ledger), or while a medium that might hold the copy has lost its ledger rows, is unknown.
//!
//! ```
//! use bakfs_core::status::{Level, RpoState};
//! use std::time::Duration;
//!
//! let day = Duration::from_secs(86_400);
//! assert_eq!(RpoState::judge(Some(day), day, day / 2), RpoState::Ok);
//! assert_eq!(RpoState::judge(Some(day), day, day * 3 / 2), RpoState::Late);
//! assert_eq!(RpoState::judge(Some(day), day, day * 3), RpoState::Breached);
//! assert!(Level::Breached > Level::Unknown && Level::Unknown > Level::Ok);
//! ```

pub mod metrics;
mod pinned;

pub use pinned::PinnedGap;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::catalog::{
    BackupOutcome, Catalog, CatalogError, DrillOutcome, DrillQuery, DrillRecord, MediumKind,
    MediumLocation, MediumRecord, MediumState, NewestSnapshot, Presence,
};
use crate::format::id::{MediumId, RepoId, SnapshotId};
use crate::settings::{self, Config};
use crate::timefmt::{self, TimeError};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// `--job` names no job of the configuration.
    #[error("no job {0:?} in the configuration")]
    NoSuchJob(String),
    /// `--medium` names no enrolled medium.
    #[error("no medium labelled {0:?} (see `bakfs media list`)")]
    NoSuchMedium(String),
    /// A duration in the configuration does not parse (`settings::read` checks them first).
    #[error("config: {0}")]
    Config(#[from] TimeError),
}

/// How well things hold, from best to worst. A report's level is the worst of its jobs' and
/// media's; `bakfs status` exits with a code per level (README, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Everything holds.
    Ok,
    /// A medium is due for rotation or stale, or lacks the newest snapshot of a pinned job
    /// (and so does that job); every job's RPO and digits hold.
    Attention,
    /// A job's newest snapshot is older than its RPO (within the grace).
    Late,
    /// A digit of the policy is short for a job.
    Short,
    /// The catalog cannot tell (no record of the repository, media ledger lost, …).
    Unknown,
    /// A job's newest snapshot is older than its RPO and the grace, or it has none.
    Breached,
}

impl Level {
    /// The word JSON and the table show.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Attention => "attention",
            Level::Late => "late",
            Level::Short => "short",
            Level::Unknown => "unknown",
            Level::Breached => "breached",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for Level {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A job's newest snapshot against its RPO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpoState {
    /// No older than the RPO.
    Ok,
    /// Older than the RPO, no older than RPO + grace.
    Late,
    /// Older than RPO + grace, or no snapshot at all.
    Breached,
    /// The job has no RPO.
    None,
}

impl RpoState {
    /// The state of a snapshot `age` old for an RPO `rpo` (`None`: no RPO) with `grace`.
    pub fn judge(rpo: Option<Duration>, grace: Duration, age: Duration) -> RpoState {
        match rpo {
            None => RpoState::None,
            Some(rpo) if age <= rpo => RpoState::Ok,
            Some(rpo) if age <= rpo.saturating_add(grace) => RpoState::Late,
            Some(_) => RpoState::Breached,
        }
    }

    /// The word JSON and the table show.
    pub fn as_str(self) -> &'static str {
        match self {
            RpoState::Ok => "ok",
            RpoState::Late => "late",
            RpoState::Breached => "breached",
            RpoState::None => "none",
        }
    }

    fn level(self) -> Level {
        match self {
            RpoState::Ok | RpoState::None => Level::Ok,
            RpoState::Late => Level::Late,
            RpoState::Breached => Level::Breached,
        }
    }
}

impl Serialize for RpoState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Whether a digit of the policy holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitState {
    Ok,
    Short,
    Unknown,
}

impl DigitState {
    /// The word JSON and the table show.
    pub fn as_str(self) -> &'static str {
        match self {
            DigitState::Ok => "ok",
            DigitState::Short => "short",
            DigitState::Unknown => "unknown",
        }
    }

    fn level(self) -> Level {
        match self {
            DigitState::Ok => Level::Ok,
            DigitState::Short => Level::Short,
            DigitState::Unknown => Level::Unknown,
        }
    }
}

impl Serialize for DigitState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

// ---- settings --------------------------------------------------------------------------------

/// The policy, with the defaults of [`settings::Policy`] applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub copies: u32,
    pub kinds: u32,
    pub offsite: u32,
    pub offline: u32,
    /// `None`: no drill required.
    #[serde(rename = "drill_within_seconds", serialize_with = "secs_opt")]
    pub drill_within: Option<Duration>,
    pub primary_kind: MediumKind,
    #[serde(rename = "stale_after_seconds", serialize_with = "secs")]
    pub stale_after: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            copies: settings::POLICY_COPIES,
            kinds: settings::POLICY_KINDS,
            offsite: settings::POLICY_OFFSITE,
            offline: settings::POLICY_OFFLINE,
            drill_within: Some(Duration::from_secs(30 * 86_400)),
            primary_kind: MediumKind::Disk,
            stale_after: Duration::from_secs(30 * 86_400),
        }
    }
}

/// A configured job, as status judges it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub rpo: Option<Duration>,
    /// Late for this long past the RPO, breached after (default: the RPO).
    pub rpo_grace: Duration,
    /// `pin = true`: every enrolled medium must hold its newest snapshot (`pinned.rs`).
    pub pin: bool,
}

/// A pool's settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolSpec {
    pub rotate_every: Option<Duration>,
    pub stale_after: Option<Duration>,
}

/// What status judges by: the policy, the jobs and the pools of the configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub policy: Policy,
    pub jobs: Vec<JobSpec>,
    pub pools: BTreeMap<String, PoolSpec>,
}

fn duration(v: Option<&str>) -> Result<Option<Duration>, TimeError> {
    v.map(timefmt::parse_duration).transpose()
}

impl Settings {
    /// The settings of a configuration file, defaults applied.
    ///
    /// # Errors
    /// A duration that does not parse (`settings::read` refuses those already).
    pub fn from_config(cfg: &Config) -> Result<Settings, TimeError> {
        let p = &cfg.policy;
        let d = Policy::default();
        let drill_within = match p.drill_within.as_deref() {
            Some(settings::OFF) => None,
            Some(v) => Some(timefmt::parse_duration(v)?),
            None => d.drill_within,
        };
        let policy = Policy {
            copies: p.copies.unwrap_or(d.copies),
            kinds: p.kinds.unwrap_or(d.kinds),
            offsite: p.offsite.unwrap_or(d.offsite),
            offline: p.offline.unwrap_or(d.offline),
            drill_within,
            primary_kind: p.primary_kind.unwrap_or(d.primary_kind),
            stale_after: duration(p.stale_after.as_deref())?.unwrap_or(d.stale_after),
        };
        let mut jobs = Vec::new();
        for (name, j) in &cfg.jobs {
            let rpo = duration(j.rpo.as_deref())?;
            let rpo_grace = duration(j.rpo_grace.as_deref())?
                .or(rpo)
                .unwrap_or_default();
            jobs.push(JobSpec {
                name: name.clone(),
                rpo,
                rpo_grace,
                pin: j.pin,
            });
        }
        let mut pools = BTreeMap::new();
        for (name, pool) in &cfg.pools {
            pools.insert(
                name.clone(),
                PoolSpec {
                    rotate_every: duration(pool.rotate_every.as_deref())?,
                    stale_after: duration(pool.stale_after.as_deref())?,
                },
            );
        }
        Ok(Settings {
            policy,
            jobs,
            pools,
        })
    }
}

/// Which part of the report to make: `job` alone, `medium` alone, both, or (neither) all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub job: Option<String>,
    pub medium: Option<String>,
}

// ---- the report ------------------------------------------------------------------------------

/// Everything `bakfs status` says. Times are RFC 3339 in JSON, durations and ages seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The worst level of what the report covers.
    pub level: Level,
    #[serde(serialize_with = "time")]
    pub now: i64,
    #[serde(serialize_with = "hex_opt")]
    pub repository: Option<RepoId>,
    pub policy: Policy,
    /// What keeps the report from judging at all, or concerns all of it.
    pub notes: Vec<String>,
    pub jobs: Vec<JobStatus>,
    pub media: Vec<MediumStatus>,
}

impl Report {
    /// A report that cannot judge anything, for `why` (no catalog, no record of the
    /// repository): unknown, never ok.
    pub fn unknown(now: i64, policy: Policy, why: String) -> Report {
        Report {
            level: Level::Unknown,
            now,
            repository: None,
            policy,
            notes: vec![why],
            jobs: Vec::new(),
            media: Vec::new(),
        }
    }
}

/// One configured job.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub name: String,
    pub level: Level,
    #[serde(rename = "rpo_seconds", serialize_with = "secs_opt")]
    pub rpo: Option<Duration>,
    #[serde(rename = "rpo_grace_seconds", serialize_with = "secs_opt")]
    pub rpo_grace: Option<Duration>,
    pub rpo_state: RpoState,
    /// The newest snapshot not dated after now.
    pub newest: Option<SnapshotStatus>,
    /// Snapshots dated after now: not counted.
    pub future: Vec<FutureSnapshot>,
    pub last_run: Option<RunSummary>,
    /// The copies of the newest snapshot: the primary first, then media by label.
    pub copies: Vec<CopyStatus>,
    /// copies, kinds, offsite, offline, drill.
    pub digits: Vec<Digit>,
    /// `pin = true` in the configuration.
    pub pinned: bool,
    /// For a pinned job, the enrolled media lacking a verified copy of its newest snapshot.
    pub pinned_missing: Vec<PinnedGap>,
    pub notes: Vec<String>,
}

/// The newest snapshot of a job.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotStatus {
    #[serde(serialize_with = "hex")]
    pub id: SnapshotId,
    #[serde(serialize_with = "time")]
    pub time: i64,
    #[serde(rename = "age_seconds", serialize_with = "secs")]
    pub age: Duration,
    /// Bytes and files of its contents (known when the primary's catalog lists it).
    pub bytes: Option<u64>,
    pub files: Option<u64>,
    /// Whether the catalog's list of the primary's snapshots has it.
    pub in_primary: bool,
}

/// A snapshot dated after now.
#[derive(Debug, Clone, Serialize)]
pub struct FutureSnapshot {
    #[serde(serialize_with = "hex")]
    pub id: SnapshotId,
    #[serde(serialize_with = "time")]
    pub time: i64,
}

/// The last backup run of a job.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    #[serde(serialize_with = "time")]
    pub started: i64,
    #[serde(serialize_with = "time_opt")]
    pub ended: Option<i64>,
    pub outcome: BackupOutcome,
    pub message: Option<String>,
}

/// A drill, as status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DrillSummary {
    /// When it ended (started, if it has not).
    #[serde(serialize_with = "time")]
    pub time: i64,
    pub outcome: DrillOutcome,
    pub mode: crate::catalog::DrillMode,
    #[serde(serialize_with = "hex")]
    pub snapshot: SnapshotId,
    pub message: Option<String>,
}

impl DrillSummary {
    fn of(d: &DrillRecord) -> DrillSummary {
        DrillSummary {
            time: d.ended_ns.unwrap_or(d.started_ns),
            outcome: d.outcome,
            mode: d.mode,
            snapshot: d.snapshot_id,
            message: d.message.clone(),
        }
    }
}

/// One copy of a job's newest snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct CopyStatus {
    /// `primary`, or the medium's label.
    #[serde(rename = "where")]
    pub place: String,
    #[serde(serialize_with = "hex_opt")]
    pub medium_id: Option<MediumId>,
    pub kind: MediumKind,
    pub location: MediumLocation,
    /// `None` for the primary, and for a medium no daemon has seen since presence was recorded.
    pub presence: Option<Presence>,
    pub offline: bool,
    /// Every byte of the copy was read back right at or after this (media only).
    #[serde(serialize_with = "time_opt")]
    pub verified: Option<i64>,
    /// The newest drill from this place (any snapshot).
    pub last_drill: Option<DrillSummary>,
    /// The estimated time to restore the snapshot from here, from its drills.
    pub rto_seconds: Option<f64>,
    /// Whether the copy counts (not if its newest drill of this snapshot found damage).
    pub counted: bool,
    pub note: Option<String>,
}

/// One digit of the policy for one job.
#[derive(Debug, Clone, Serialize)]
pub struct Digit {
    /// `copies`, `kinds`, `offsite`, `offline` or `drill`.
    pub name: &'static str,
    pub want: u32,
    pub have: u32,
    pub state: DigitState,
    /// Why it is short or unknown, in words.
    pub reason: Option<String>,
}

/// The time to restore one job's newest snapshot on a medium.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreEstimate {
    pub job: Option<String>,
    #[serde(serialize_with = "hex")]
    pub snapshot: SnapshotId,
    pub bytes: Option<u64>,
    pub seconds: Option<f64>,
}

/// One enrolled medium.
#[derive(Debug, Clone, Serialize)]
pub struct MediumStatus {
    pub label: String,
    #[serde(serialize_with = "hex")]
    pub id: MediumId,
    pub level: Level,
    pub kind: MediumKind,
    pub pool: String,
    pub location: MediumLocation,
    pub state: MediumState,
    pub message: Option<String>,
    pub presence: Option<Presence>,
    #[serde(serialize_with = "time_opt")]
    pub presence_since: Option<i64>,
    #[serde(serialize_with = "time_opt")]
    pub last_seen: Option<i64>,
    #[serde(serialize_with = "time_opt")]
    pub last_written: Option<i64>,
    #[serde(serialize_with = "time_opt")]
    pub last_verified: Option<i64>,
    /// The end of the last copy run that brought it up to date (`ok` or `incomplete`).
    #[serde(serialize_with = "time_opt")]
    pub last_rotated: Option<i64>,
    pub last_drill: Option<DrillSummary>,
    pub snapshots: i64,
    pub bytes: i64,
    pub capacity: i64,
    pub free_bytes: Option<i64>,
    #[serde(serialize_with = "time_opt")]
    pub free_measured: Option<i64>,
    #[serde(rename = "rotate_every_seconds", serialize_with = "secs_opt")]
    pub rotate_every: Option<Duration>,
    /// `medium` (its own setting), `pool` (the configuration's), or null (never due).
    pub rotate_every_from: Option<&'static str>,
    pub rotation_due: bool,
    #[serde(rename = "stale_after_seconds", serialize_with = "secs")]
    pub stale_after: Duration,
    pub stale: bool,
    /// The catalog records it was written but no file on it: its ledger rows were lost.
    pub ledger_lost: bool,
    /// Measured by its newest drill that restored something.
    pub restore_bytes_per_second: Option<f64>,
    pub ready_seconds: Option<f64>,
    /// Per job, the newest snapshot it holds and the time to restore it.
    pub restore: Vec<RestoreEstimate>,
    /// The time to restore all of `restore`, if every part is known.
    pub rto_seconds: Option<f64>,
    /// The pinned jobs whose newest snapshot it lacks (a verified copy of).
    pub pinned_missing: Vec<String>,
    pub notes: Vec<String>,
}

// ---- serializers -----------------------------------------------------------------------------

fn time<S: Serializer>(ns: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&timefmt::format_rfc3339(*ns))
}

fn time_opt<S: Serializer>(ns: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ns {
        Some(ns) => time(ns, s),
        None => s.serialize_none(),
    }
}

fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

fn secs_opt<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => secs(d, s),
        None => s.serialize_none(),
    }
}

fn hex<S: Serializer, T: fmt::Display>(id: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

fn hex_opt<S: Serializer, T: fmt::Display>(id: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.collect_str(id),
        None => s.serialize_none(),
    }
}

// ---- judging ---------------------------------------------------------------------------------

/// `19 days ago`; `in the future` for a time after `now`.
fn ago(then: i64, now: i64) -> String {
    if then > now {
        return "in the future".into();
    }
    format!("{} ago", timefmt::format_age(age(then, now)))
}

/// `now - then`, 0 if `then` is later.
fn age(then: i64, now: i64) -> Duration {
    Duration::from_nanos(u64::try_from(now.saturating_sub(then)).unwrap_or(0))
}

/// `no offsite copy`, `only 1 offsite copy`, `only 2 offsite copies`.
fn only(n: u32, one: &str, many: &str) -> String {
    match n {
        0 => format!("no {one}"),
        1 => format!("only 1 {one}"),
        n => format!("only {n} {many}"),
    }
}

/// What a medium that could fill a gap last did: `OFF2 last written 19 days ago`.
fn candidate(m: &MediumRecord, now: i64) -> String {
    match m.last_written_ns {
        Some(t) => format!("{} last written {}", m.label, ago(t, now)),
        None => format!("{} never written", m.label),
    }
}

/// How many media a reason names as able to fill a gap; the others are counted.
const CANDIDATES: usize = 3;

/// The media that could fill a gap, the most recently written first, at most [`CANDIDATES`]
/// of them and then how many more.
fn candidates(ms: &[&MediumRecord], now: i64) -> Vec<String> {
    let mut ms: Vec<&MediumRecord> = ms.to_vec();
    ms.sort_by(|a, b| {
        b.last_written_ns
            .cmp(&a.last_written_ns)
            .then_with(|| a.label.cmp(&b.label))
    });
    let mut out: Vec<String> = ms
        .iter()
        .take(CANDIDATES)
        .map(|m| candidate(m, now))
        .collect();
    if ms.len() > CANDIDATES {
        out.push(format!("{} more", ms.len() - CANDIDATES));
    }
    out
}

/// The time to restore `bytes` at the rate and ready time `drill` measured.
fn restore_seconds(drill: Option<&DrillRecord>, bytes: Option<u64>) -> Option<f64> {
    let d = drill?;
    let rate = d.bytes_per_second()?;
    Some(d.ready_seconds + bytes? as f64 / rate)
}

/// Everything the report is made from that is the same for every job.
struct World<'a> {
    cat: &'a Catalog,
    repo: RepoId,
    settings: &'a Settings,
    now: i64,
    /// The repository's media, by label.
    media: Vec<MediumRecord>,
    /// Per medium: snapshots held, whether any file is recorded.
    counts: HashMap<MediumId, (i64, bool)>,
    /// Drills that measured a restore rate, newest per place (`None`: the primary).
    measured: HashMap<Option<MediumId>, Option<DrillRecord>>,
    /// The newest finished drill per place.
    last_drill: HashMap<Option<MediumId>, Option<DrillRecord>>,
    /// The newest snapshot of each pinned job and who holds it.
    pinned: Vec<pinned::PinnedNewest>,
}

impl World<'_> {
    fn ledger_lost(&self, m: &MediumRecord) -> bool {
        m.last_written_ns.is_some() && !self.counts.get(&m.id).is_some_and(|c| c.1)
    }

    fn measured(&mut self, place: Option<MediumId>) -> Result<Option<DrillRecord>, StatusError> {
        if let Some(d) = self.measured.get(&place) {
            return Ok(d.clone());
        }
        let q = DrillQuery {
            source: Some(place.as_ref()),
            measured: true,
            ..DrillQuery::default()
        };
        let d = self.cat.newest_drill(&self.repo, &q)?;
        self.measured.insert(place, d.clone());
        Ok(d)
    }

    fn last_drill(&mut self, place: Option<MediumId>) -> Result<Option<DrillRecord>, StatusError> {
        if let Some(d) = self.last_drill.get(&place) {
            return Ok(d.clone());
        }
        let q = DrillQuery {
            source: Some(place.as_ref()),
            ..DrillQuery::default()
        };
        let d = self.cat.newest_drill(&self.repo, &q)?;
        self.last_drill.insert(place, d.clone());
        Ok(d)
    }

    /// Whether the newest drill of `snapshot` from `place` found damage.
    fn drilled_damaged(
        &self,
        place: Option<&MediumId>,
        snapshot: &SnapshotId,
    ) -> Result<Option<DrillRecord>, StatusError> {
        let q = DrillQuery {
            source: Some(place),
            snapshot: Some(snapshot),
            outcomes: &[DrillOutcome::Ok, DrillOutcome::Damaged],
            ..DrillQuery::default()
        };
        Ok(self
            .cat
            .newest_drill(&self.repo, &q)?
            .filter(|d| d.outcome == DrillOutcome::Damaged))
    }
}

/// Makes the report for `repo` from `cat` at `now` (Unix ns).
///
/// # Errors
/// [`StatusError::NoSuchJob`] / [`StatusError::NoSuchMedium`] for a filter naming nothing;
/// catalog errors.
pub fn report(
    cat: &Catalog,
    repo: &RepoId,
    settings: &Settings,
    filter: &Filter,
    now: i64,
) -> Result<Report, StatusError> {
    cat.consistent(|cat| Ok(make(cat, repo, settings, filter, now)))
        .map_err(StatusError::from)?
}

fn make(
    cat: &Catalog,
    repo: &RepoId,
    settings: &Settings,
    filter: &Filter,
    now: i64,
) -> Result<Report, StatusError> {
    let media: Vec<MediumRecord> = cat
        .media()?
        .into_iter()
        .filter(|m| m.repo_id == *repo)
        .collect();
    let mut counts = HashMap::new();
    for m in &media {
        counts.insert(m.id, cat.medium_counts(&m.id)?);
    }
    let mut w = World {
        cat,
        repo: *repo,
        settings,
        now,
        media,
        counts,
        measured: HashMap::new(),
        last_drill: HashMap::new(),
        pinned: Vec::new(),
    };
    w.pinned = pinned::newest(&w)?;
    let jobs: Vec<&JobSpec> = match (&filter.job, &filter.medium) {
        (Some(j), _) => {
            let spec = settings
                .jobs
                .iter()
                .find(|s| s.name == *j)
                .ok_or_else(|| StatusError::NoSuchJob(j.clone()))?;
            vec![spec]
        }
        (None, Some(_)) => Vec::new(),
        (None, None) => settings.jobs.iter().collect(),
    };
    let chosen: Vec<MediumRecord> = match (&filter.job, &filter.medium) {
        (_, Some(label)) => {
            let all = cat.medium_by_label(label)?;
            let m = all
                .filter(|m| m.repo_id == *repo)
                .ok_or_else(|| StatusError::NoSuchMedium(label.clone()))?;
            vec![m]
        }
        (Some(_), None) => Vec::new(),
        (None, None) => w.media.clone(),
    };
    let mut notes = Vec::new();
    if filter.job.is_none() && filter.medium.is_none() && settings.jobs.is_empty() {
        notes.push(
            "no jobs in the configuration: nothing to judge (add [jobs.NAME] with an rpo)".into(),
        );
    }
    if w.media.is_empty() && needs_media(&settings.policy) && !jobs.is_empty() {
        notes.push(no_media_reason());
    }
    let mut job_status = Vec::new();
    for spec in jobs {
        job_status.push(judge_job(&mut w, spec)?);
    }
    let mut media_status = Vec::new();
    for m in &chosen {
        media_status.push(judge_medium(&mut w, m)?);
    }
    let mut level = job_status
        .iter()
        .map(|j| j.level)
        .chain(media_status.iter().map(|m| m.level))
        .max()
        .unwrap_or(Level::Ok);
    if filter.job.is_none() && filter.medium.is_none() && settings.jobs.is_empty() {
        level = level.max(Level::Unknown);
    }
    Ok(Report {
        level,
        now,
        repository: Some(*repo),
        policy: settings.policy.clone(),
        notes,
        jobs: job_status,
        media: media_status,
    })
}

/// Whether the policy wants more than the primary alone can give.
fn needs_media(p: &Policy) -> bool {
    p.copies > 1 || p.kinds > 1 || p.offsite > 0 || p.offline > 0
}

fn no_media_reason() -> String {
    "the catalog records no media: none enrolled, or the catalog lost its media ledger \
     (a catalog rebuilt from the repository has none; re-enroll them)"
        .into()
}

/// The newest snapshot of `job`, in the primary or on any medium, not dated after `now`.
fn newest_snapshot(
    cat: &Catalog,
    repo: &RepoId,
    job: &str,
    now: i64,
) -> Result<Option<NewestSnapshot>, StatusError> {
    let primary = cat.newest_job_snapshot(repo, job, now)?;
    let on_media = cat.newest_job_snapshot_on_media(repo, job, now)?;
    Ok(match (primary, on_media) {
        (Some(p), Some(m)) if (m.time_ns, m.snapshot_id) > (p.time_ns, p.snapshot_id) => Some(m),
        (Some(p), _) => Some(p),
        (None, m) => m,
    })
}

fn judge_job(w: &mut World<'_>, spec: &JobSpec) -> Result<JobStatus, StatusError> {
    let now = w.now;
    let cat = w.cat;
    let newest = newest_snapshot(cat, &w.repo, &spec.name, now)?;
    let future: Vec<FutureSnapshot> = cat
        .job_snapshots_after(&w.repo, &spec.name, now)?
        .into_iter()
        .map(|s| FutureSnapshot {
            id: s.snapshot_id,
            time: s.time_ns,
        })
        .collect();
    let last_run = cat.last_job_run(&w.repo, &spec.name)?.map(|r| RunSummary {
        started: r.started_ns,
        ended: r.ended_ns,
        outcome: r.outcome,
        message: r.message,
    });
    let mut notes = Vec::new();
    for f in &future {
        notes.push(format!(
            "snapshot {} is dated {} (after now): not counted; the clock here or where it was made is wrong",
            f.id.short(),
            timefmt::format_rfc3339(f.time)
        ));
    }
    let record = match &newest {
        Some(n) => cat.snapshot(&w.repo, &n.snapshot_id)?,
        None => None,
    };
    let snapshot = newest.as_ref().map(|n| SnapshotStatus {
        id: n.snapshot_id,
        time: n.time_ns,
        age: age(n.time_ns, now),
        bytes: record.as_ref().map(|r| r.bytes),
        files: record.as_ref().map(|r| r.files),
        in_primary: record.is_some(),
    });
    if let Some(s) = snapshot.as_ref().filter(|s| !s.in_primary) {
        notes.push(format!(
            "the newest snapshot {} is known only from media, not from the catalog's list of the primary (forgotten there, or run `bakfs catalog rebuild`)",
            s.id.short()
        ));
    }
    let rpo_state = match &snapshot {
        Some(s) => RpoState::judge(spec.rpo, spec.rpo_grace, s.age),
        None if spec.rpo.is_some() => RpoState::Breached,
        None => RpoState::None,
    };
    if snapshot.is_none() {
        notes.push(match &last_run {
            Some(r) => format!(
                "no snapshot of this job in the catalog; its last run began {} and ended {}",
                ago(r.started, now),
                r.outcome
            ),
            None => "no snapshot of this job in the catalog, and no run".into(),
        });
    }
    // A run that made a snapshot the catalog no longer lists: its snapshot rows were lost.
    let lost_snapshots = snapshot.is_none()
        && last_run
            .as_ref()
            .is_some_and(|r| matches!(r.outcome, BackupOutcome::Ok | BackupOutcome::Incomplete));
    let copies = match &snapshot {
        Some(s) => copies_of(w, s)?,
        None => Vec::new(),
    };
    let mut digits = judge_digits(w, &spec.name, snapshot.as_ref(), &copies)?;
    if lost_snapshots {
        notes.push(
            "its last run made a snapshot the catalog does not list: run `bakfs catalog rebuild`"
                .into(),
        );
        for d in digits.iter_mut().filter(|d| d.state == DigitState::Short) {
            d.state = DigitState::Unknown;
        }
    }
    let mut level = rpo_state.level();
    if lost_snapshots && rpo_state == RpoState::Breached {
        // Breached only as far as the catalog knows.
        level = Level::Unknown;
    }
    for d in &digits {
        level = level.max(d.state.level());
    }
    let pinned_missing = pinned::job_gaps(w, spec);
    level = level.max(pinned::job_level(&pinned_missing));
    Ok(JobStatus {
        name: spec.name.clone(),
        level,
        rpo: spec.rpo,
        rpo_grace: spec.rpo.map(|_| spec.rpo_grace),
        rpo_state,
        newest: snapshot,
        future,
        last_run,
        copies,
        digits,
        pinned: spec.pin,
        pinned_missing,
        notes,
    })
}

/// The copies of snapshot `s`: the primary's, then each medium's, by label.
fn copies_of(w: &mut World<'_>, s: &SnapshotStatus) -> Result<Vec<CopyStatus>, StatusError> {
    let mut out = Vec::new();
    if s.in_primary {
        let damaged = w.drilled_damaged(None, &s.id)?;
        let measured = w.measured(None)?;
        out.push(CopyStatus {
            place: "primary".into(),
            medium_id: None,
            kind: w.settings.policy.primary_kind,
            location: MediumLocation::Onsite,
            presence: None,
            offline: false,
            verified: None,
            last_drill: w.last_drill(None)?.as_ref().map(DrillSummary::of),
            rto_seconds: restore_seconds(measured.as_ref(), s.bytes),
            counted: damaged.is_none(),
            note: damaged.map(|d| damaged_note(&d, w.now)),
        });
    }
    let holders = w.cat.snapshot_holders(&s.id)?;
    let by_id: HashMap<MediumId, MediumRecord> =
        w.media.iter().map(|m| (m.id, m.clone())).collect();
    let mut media: Vec<(MediumRecord, i64)> = holders
        .into_iter()
        .filter_map(|h| by_id.get(&h.medium_id).map(|m| (m.clone(), h.verified_ns)))
        .collect();
    media.sort_by(|a, b| a.0.label.cmp(&b.0.label));
    for (m, verified_ns) in media {
        let damaged = w.drilled_damaged(Some(&m.id), &s.id)?;
        let measured = w.measured(Some(m.id))?;
        let note = match (&damaged, m.presence) {
            (Some(d), _) => Some(damaged_note(d, w.now)),
            (None, None) => Some(
                "whether it is plugged in is not known (no bakfs-mediad has seen it since the upgrade)"
                    .into(),
            ),
            (None, Some(_)) => None,
        };
        out.push(CopyStatus {
            place: m.label.clone(),
            medium_id: Some(m.id),
            kind: m.kind,
            location: m.location,
            presence: m.presence,
            offline: m.presence == Some(Presence::Removed),
            verified: Some(verified_ns.max(m.last_verified_ns.unwrap_or(i64::MIN))),
            last_drill: w.last_drill(Some(m.id))?.as_ref().map(DrillSummary::of),
            rto_seconds: restore_seconds(measured.as_ref(), s.bytes),
            counted: damaged.is_none(),
            note,
        });
    }
    Ok(out)
}

fn damaged_note(d: &DrillRecord, now: i64) -> String {
    format!(
        "not counted: a drill {} found damage{}",
        ago(d.ended_ns.unwrap_or(d.started_ns), now),
        d.message
            .as_deref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default()
    )
}

/// The five digits of the policy for one job's newest snapshot.
fn judge_digits(
    w: &mut World<'_>,
    job: &str,
    snapshot: Option<&SnapshotStatus>,
    copies: &[CopyStatus],
) -> Result<Vec<Digit>, StatusError> {
    let p = w.settings.policy.clone();
    let now = w.now;
    let counted: Vec<&CopyStatus> = copies.iter().filter(|c| c.counted).collect();
    let holders: BTreeSet<&str> = counted.iter().map(|c| c.place.as_str()).collect();
    // Media of the repository that do not hold a counted copy: they could fill a gap.
    let others: Vec<&MediumRecord> = w
        .media
        .iter()
        .filter(|m| !holders.contains(m.label.as_str()))
        .collect();
    // Media whose ledger was lost: they may hold a copy nobody can see.
    let lost: Vec<&MediumRecord> = others
        .iter()
        .copied()
        .filter(|m| w.ledger_lost(m))
        .collect();
    let no_media = w.media.is_empty();
    let list = |ms: &[&MediumRecord]| -> String { candidates(ms, now).join(", ") };
    // Short, unknown when media the catalog cannot see into could fill it. `short` is
    // `HEAD: what could fill it`.
    let verdict = |have: u32, want: u32, short: String| -> (DigitState, Option<String>) {
        if have >= want {
            (DigitState::Ok, None)
        } else if snapshot.is_none() {
            (DigitState::Short, Some("no snapshot of this job".into()))
        } else if no_media {
            let head = short.split(": ").next().unwrap_or_default();
            (
                DigitState::Unknown,
                Some(format!(
                    "{head}: the catalog records no media (none enrolled, or its media ledger was lost)"
                )),
            )
        } else if !lost.is_empty() {
            let names: Vec<&str> = lost.iter().map(|m| m.label.as_str()).collect();
            (
                DigitState::Unknown,
                Some(format!(
                    "{short}; {} may hold a copy: the catalog lost its ledger (it was written, no file is recorded on it)",
                    names.join(", ")
                )),
            )
        } else {
            (DigitState::Short, Some(short))
        }
    };
    let mut digits = Vec::new();

    // copies
    let have = counted.len() as u32;
    let short = format!(
        "{} ({} wanted): {}",
        only(have, "verified copy", "verified copies"),
        p.copies,
        if others.is_empty() {
            "no other medium enrolled".to_string()
        } else {
            list(&others)
        }
    );
    let (state, reason) = verdict(have, p.copies, short);
    digits.push(Digit {
        name: "copies",
        want: p.copies,
        have,
        state,
        reason,
    });

    // kinds
    let kinds: BTreeSet<MediumKind> = counted.iter().map(|c| c.kind).collect();
    let have = kinds.len() as u32;
    let other_kinds: Vec<&MediumRecord> = others
        .iter()
        .copied()
        .filter(|m| !kinds.contains(&m.kind))
        .collect();
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    let short = format!(
        "{} ({}; {} wanted): {}",
        only(have, "kind of media", "kinds of media"),
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        },
        p.kinds,
        if other_kinds.is_empty() {
            "no medium of another kind enrolled".to_string()
        } else {
            list(&other_kinds)
        }
    );
    let (state, reason) = verdict(have, p.kinds, short);
    digits.push(Digit {
        name: "kinds",
        want: p.kinds,
        have,
        state,
        reason,
    });

    // offsite
    let have = counted
        .iter()
        .filter(|c| c.location == MediumLocation::Offsite)
        .count() as u32;
    let offsite: Vec<&MediumRecord> = others
        .iter()
        .copied()
        .filter(|m| m.location == MediumLocation::Offsite)
        .collect();
    let short = format!(
        "{} ({} wanted): {}",
        only(have, "offsite copy", "offsite copies"),
        p.offsite,
        if offsite.is_empty() {
            "no other medium is kept offsite".to_string()
        } else {
            list(&offsite)
        }
    );
    let (state, reason) = verdict(have, p.offsite, short);
    digits.push(Digit {
        name: "offsite",
        want: p.offsite,
        have,
        state,
        reason,
    });

    // offline
    let have = counted.iter().filter(|c| c.offline).count() as u32;
    let mut why: Vec<String> = Vec::new();
    let mut not_known = Vec::new();
    for c in counted
        .iter()
        .filter(|c| c.medium_id.is_some() && !c.offline)
    {
        match c.presence {
            Some(_) => why.push(format!("{} holds it but is plugged in", c.place)),
            None => {
                not_known.push(c.place.clone());
                why.push(format!(
                    "{} holds it, but whether it is plugged in is not known",
                    c.place
                ));
            }
        }
    }
    why.extend(candidates(&others, now));
    if why.is_empty() {
        why.push("no medium holds it".into());
    }
    let short = format!(
        "{} ({} wanted): {}",
        only(have, "offline copy", "offline copies"),
        p.offline,
        why.join("; ")
    );
    let (mut state, reason) = verdict(have, p.offline, short);
    if state == DigitState::Short
        && have + not_known.len() as u32 >= p.offline
        && !not_known.is_empty()
    {
        state = DigitState::Unknown;
    }
    digits.push(Digit {
        name: "offline",
        want: p.offline,
        have,
        state,
        reason,
    });

    // drill
    digits.push(judge_drill(w, job, snapshot.is_some())?);
    Ok(digits)
}

/// Whether a drill of the job proved a copy restorable within `drill_within`.
fn judge_drill(w: &mut World<'_>, job: &str, has_snapshot: bool) -> Result<Digit, StatusError> {
    let now = w.now;
    let Some(within) = w.settings.policy.drill_within else {
        return Ok(Digit {
            name: "drill",
            want: 0,
            have: 0,
            state: DigitState::Ok,
            reason: None,
        });
    };
    let q = DrillQuery {
        job: Some(job),
        outcomes: &[DrillOutcome::Ok, DrillOutcome::Damaged],
        ..DrillQuery::default()
    };
    let newest = w.cat.newest_drill(&w.repo, &q)?;
    let place = |d: &DrillRecord| match d.medium_id {
        None => "the primary".to_string(),
        Some(id) => w
            .media
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.label.clone())
            .unwrap_or_else(|| id.short()),
    };
    let within_txt = timefmt::format_duration(within);
    let (have, reason) = match &newest {
        None if !has_snapshot => (0, Some("no snapshot of this job".to_string())),
        None => (
            0,
            Some(format!(
                "never drilled (a restore drill within {within_txt} wanted: `bakfs drill`)"
            )),
        ),
        Some(d) => {
            let t = d.ended_ns.unwrap_or(d.started_ns);
            if d.outcome == DrillOutcome::Damaged {
                (
                    0,
                    Some(format!(
                        "the last drill (from {}, {}) found damage{}",
                        place(d),
                        ago(t, now),
                        d.message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    )),
                )
            } else if t > now || age(t, now) > within {
                (
                    0,
                    Some(format!(
                        "last proven restorable {} from {} ({within_txt} wanted)",
                        ago(t, now),
                        place(d)
                    )),
                )
            } else {
                (1, None)
            }
        }
    };
    Ok(Digit {
        name: "drill",
        want: 1,
        have,
        state: if have >= 1 {
            DigitState::Ok
        } else {
            DigitState::Short
        },
        reason,
    })
}

fn judge_medium(w: &mut World<'_>, m: &MediumRecord) -> Result<MediumStatus, StatusError> {
    let now = w.now;
    let cat = w.cat;
    let (snapshots, _) = w.counts.get(&m.id).copied().unwrap_or_default();
    let pool = w.settings.pools.get(&m.pool);
    let (rotate_every, rotate_every_from) =
        match (m.rotate_every, pool.and_then(|p| p.rotate_every)) {
            (Some(d), _) => (Some(d), Some("medium")),
            (None, Some(d)) => (Some(d), Some("pool")),
            (None, None) => (None, None),
        };
    let last_rotated = cat.medium_last_rotated(&m.id)?;
    let mut notes = Vec::new();
    let rotation_due = match rotate_every {
        Some(every) => {
            let due = last_rotated.is_none_or(|t| age(t, now) > every);
            if due {
                notes.push(match last_rotated {
                    Some(t) => format!(
                        "due for rotation: last rotated {} (every {})",
                        ago(t, now),
                        timefmt::format_duration(every)
                    ),
                    None => format!(
                        "due for rotation: never rotated (every {})",
                        timefmt::format_duration(every)
                    ),
                });
            }
            due
        }
        None => false,
    };
    let stale_after = pool
        .and_then(|p| p.stale_after)
        .unwrap_or(w.settings.policy.stale_after);
    let seen = m.last_seen_ns.unwrap_or(m.enrolled_ns);
    let stale = m.presence != Some(Presence::PluggedIn) && age(seen, now) > stale_after;
    if stale {
        notes.push(format!(
            "stale: not seen for {} (more than {})",
            timefmt::format_age(age(seen, now)),
            timefmt::format_duration(stale_after)
        ));
    }
    let ledger_lost = w.ledger_lost(m);
    if ledger_lost {
        notes.push(
            "written, but the catalog records no file on it: its ledger rows were lost (plug it in: bakfs-mediad takes stock again)"
                .into(),
        );
    }
    if m.presence.is_none() {
        notes.push(
            "whether it is plugged in is not known (no bakfs-mediad has seen it since the upgrade)"
                .into(),
        );
    }
    let measured = w.measured(Some(m.id))?;
    let last_drill = w.last_drill(Some(m.id))?;
    let mut restore = Vec::new();
    for n in cat.medium_newest_by_job(&m.id)? {
        let bytes = cat.snapshot(&w.repo, &n.snapshot_id)?.map(|s| s.bytes);
        restore.push(RestoreEstimate {
            job: n.job,
            snapshot: n.snapshot_id,
            bytes,
            seconds: restore_seconds(measured.as_ref(), bytes),
        });
    }
    let total: Option<u64> = restore.iter().map(|r| r.bytes).sum();
    let rto_seconds = if restore.is_empty() {
        None
    } else {
        restore_seconds(measured.as_ref(), total)
    };
    let mut level = Level::Ok;
    if rotation_due || stale {
        level = Level::Attention;
    }
    if ledger_lost {
        level = Level::Unknown;
    }
    let mut status = MediumStatus {
        label: m.label.clone(),
        id: m.id,
        level,
        kind: m.kind,
        pool: m.pool.clone(),
        location: m.location,
        state: m.state,
        message: m.message.clone(),
        presence: m.presence,
        presence_since: m.presence_ns,
        last_seen: m.last_seen_ns,
        last_written: m.last_written_ns,
        last_verified: m.last_verified_ns,
        last_rotated,
        last_drill: last_drill.as_ref().map(DrillSummary::of),
        snapshots,
        bytes: m.bytes,
        capacity: m.capacity,
        free_bytes: m.free_bytes,
        free_measured: m.free_ns,
        rotate_every,
        rotate_every_from,
        rotation_due,
        stale_after,
        stale,
        ledger_lost,
        restore_bytes_per_second: measured.as_ref().and_then(DrillRecord::bytes_per_second),
        ready_seconds: measured.as_ref().map(|d| d.ready_seconds),
        restore,
        rto_seconds,
        pinned_missing: Vec::new(),
        notes,
    };
    pinned::flag_medium(w, &mut status);
    Ok(status)
}

#[cfg(test)]
mod tests;
