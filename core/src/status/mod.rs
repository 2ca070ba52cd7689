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

mod digits;
mod jobs;
mod levels;
mod media;
pub mod metrics;
mod pinned;
mod report;
mod spec;

pub use levels::{DigitState, Level, RpoState, StatusError};
pub use pinned::PinnedGap;
pub use report::*;
pub use spec::{JobSpec, Policy, PoolSpec, Settings};

use digits::*;
use jobs::*;
use media::*;

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

/// Which part of the report to make: `job` alone, `medium` alone, both, or (neither) all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub job: Option<String>,
    pub medium: Option<String>,
}

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

#[cfg(test)]
mod tests;
