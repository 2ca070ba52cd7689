//! The report's types, as `bakfs status --json` shows them (times RFC 3339, durations seconds).

use super::*;

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
    pub(super) fn of(d: &DrillRecord) -> DrillSummary {
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
    /// A full tape, the newest of its media set: its pool wants another cartridge.
    pub wants_tape: bool,
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

pub(super) fn time<S: Serializer>(ns: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&timefmt::format_rfc3339(*ns))
}

pub(super) fn time_opt<S: Serializer>(ns: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ns {
        Some(ns) => time(ns, s),
        None => s.serialize_none(),
    }
}

pub(super) fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

pub(super) fn secs_opt<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => secs(d, s),
        None => s.serialize_none(),
    }
}

pub(super) fn hex<S: Serializer, T: fmt::Display>(id: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

pub(super) fn hex_opt<S: Serializer, T: fmt::Display>(
    id: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.collect_str(id),
        None => s.serialize_none(),
    }
}
