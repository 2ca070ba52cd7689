//! One job: an enrolled medium was plugged in. Its lifecycle: begin the run, make the medium
//! ready, rotate (`rotate.rs`), sync, mirror the ledger, release the medium, record its free
//! space, the state and the run, and say how it ended (`safe to remove LABEL` when it went well).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use bakfs_core::catalog::{
    Catalog, CopyOutcome, DrillOutcome, MediumKind, MediumRecord, MediumRun, MediumState,
};
use bakfs_core::format::id::RepoId;
use bakfs_core::repo::backend::Location;

use crate::daemon::{Attach, Job};
use crate::error::CopyError;
use crate::ledger;
use crate::medium::block::BlockDevice;
use crate::medium::bucket::BucketMedium;
use crate::medium::share::ShareMedium;
use crate::medium::Medium;
use crate::monitor::Monitors;
use crate::rotate::{self, Stats};

/// What every job needs to know.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The primary repository.
    pub repo: Location,
    pub repo_id: RepoId,
    pub catalog: PathBuf,
    /// Where media are mounted: `<media_root>/<fs uuid>`.
    pub media_root: PathBuf,
    /// Files on a medium last verified longer ago than this are read back again.
    pub reverify_after: Duration,
    /// The jobs with `pin = true`: their newest snapshots go onto every medium first, whatever
    /// its retention, and are read back at every insertion.
    pub pinned: BTreeSet<String>,
    /// The operator's time zone: media retention's calendar buckets follow it.
    pub tz: bakfs_core::timefmt::TimeZone,
    /// Heartbeats and metrics.
    pub monitors: Monitors,
    /// What the runbook written onto each medium says of the configuration.
    pub runbook: ledger::RunbookInfo,
    /// How mediad drills a medium due for one, if the operator gave it a password.
    pub drill: Option<crate::drill::DrillSetup>,
    /// An operation on a share that takes longer abandons its job (`[mediad] share_timeout`).
    pub share_timeout: Duration,
    /// How often a share mediad mounts itself is tried, and a failed copy onto a share tried
    /// again (`[mediad] share_retry`).
    pub share_retry: Duration,
    /// The percentage of packs written onto a share that are read back at once
    /// (`[mediad] share_read_back`, default 100): the others wait for `reverify_after`.
    pub share_read_back: f64,
}

/// The job for a block device, a share or a bucket (the daemon's runner in production).
pub fn run_attached(setup: &Setup, job: &Job) -> MediumState {
    let (m, cancel) = (&job.medium, job.cancel.as_ref());
    match &job.attach {
        Attach::Block(dev) => run(
            setup,
            m,
            &mut BlockDevice::new(dev, &setup.media_root),
            cancel,
        ),
        Attach::Share(clock) => {
            let Some(share) = &m.share else {
                tracing::error!(medium = %m.label, "{} is enrolled as a share without a path", m.label);
                return MediumState::Failed;
            };
            let mut medium = ShareMedium::new(
                share,
                &m.fs_type,
                &m.label,
                clock.clone(),
                setup.share_timeout,
            );
            run(setup, m, &mut medium, cancel)
        }
        Attach::Bucket => {
            let Some(loc) = &m.bucket else {
                tracing::error!(medium = %m.label, "{} is enrolled as a bucket without a location", m.label);
                return MediumState::Failed;
            };
            run(setup, m, &mut BucketMedium::new(loc), cancel)
        }
    }
}

/// Runs the job on `medium` to its end and records its outcome; returns the medium's new state.
pub fn run(
    setup: &Setup,
    m: &MediumRecord,
    medium: &mut dyn Medium,
    cancel: &AtomicBool,
) -> MediumState {
    let started = Instant::now();
    let t0 = bakfs_core::timefmt::now_ns();
    let mut cat = match Catalog::open(&setup.catalog) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(medium = %m.label, "catalog: {e}");
            return MediumState::Failed;
        }
    };
    let beat = setup.monitors.start(&m.label);
    let _ = cat.set_medium_state(&m.id, MediumState::Copying, None, t0);
    let run_id = cat.begin_medium_run(&m.id, t0).unwrap_or(0);
    tracing::info!(medium = %m.label, "copying snapshots onto {}", m.label);
    let mut stats = Stats::default();
    let (result, ready_after, free) = match medium.ready() {
        Ok(ident) => {
            let ready_after = started.elapsed();
            let files = medium.files();
            let r = rotate::copy_onto(setup, &mut cat, m, files, &ident, cancel, &mut stats)
                .and_then(|()| files.sync());
            // Its free space as the job leaves it, for `bakfs status` (a bucket has no bound).
            let free = files
                .free_bytes()
                .ok()
                .filter(|_| m.kind != MediumKind::ObjectStorage);
            (r, Some(ready_after), free)
        }
        Err(e) => (Err(e), None, None),
    };
    let copied_after = started.elapsed();
    let (mut state, mut outcome, mut message) = outcome(&result, &stats);
    if let Some(why) = medium.abandoned() {
        (state, outcome, message) = (MediumState::Failed, CopyOutcome::Interrupted, Some(why));
    }
    let run = MediumRun {
        id: run_id,
        medium_id: m.id,
        started_ns: t0,
        ended_ns: Some(bakfs_core::timefmt::now_ns()),
        outcome,
        snapshots_added: stats.added,
        snapshots_removed: stats.removed,
        files_written: stats.files_written,
        bytes_written: stats.bytes_written,
        bytes_verified: stats.bytes_verified,
        seconds: copied_after.as_secs_f64(),
        message,
    };
    // The medium's own ledger, this run included, unless the medium is gone or failing.
    if matches!(&result, Ok(()) | Err(CopyError::Full(_))) {
        if let Err(e) = ledger::write(&cat, medium.files(), m, &run) {
            tracing::warn!(medium = %m.label, "writing the ledger onto the medium: {e}");
        }
        if let Err(e) = ledger::write_runbook(&cat, medium.files(), setup) {
            tracing::warn!(medium = %m.label, "writing the runbook onto the medium: {e}");
        }
    }
    // A medium that got its copy and is still plugged in is the moment to drill it: mediad
    // drills it itself, while it is mounted, if the operator gave it a password; else it says so.
    let due = result
        .is_ok()
        .then(|| {
            setup
                .monitors
                .drill_due(&cat, m, bakfs_core::timefmt::now_ns())
        })
        .flatten();
    let drilled = match (&due, &setup.drill) {
        (Some(_), Some(d)) => {
            let (o, line) = crate::drill::run(&mut cat, m, medium.files().repository(), d);
            match o {
                DrillOutcome::Ok => tracing::info!(medium = %m.label, "{line}"),
                DrillOutcome::Damaged => tracing::error!(medium = %m.label, "{line}"),
                _ => tracing::warn!(medium = %m.label, "{line}"),
            }
            Some((o, line))
        }
        _ => None,
    };
    if let Err(e) = medium.release() {
        tracing::warn!(medium = %m.label, "{e}");
    }
    if let Some(ready_after) = ready_after {
        tracing::debug!(
            medium = %m.label,
            "ready after {:.3} s, copied and verified after {:.3} s, released after {:.3} s",
            ready_after.as_secs_f64(),
            copied_after.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    }
    if let Some(free) = free {
        let _ = cat.set_medium_free_bytes(&m.id, free, bakfs_core::timefmt::now_ns());
    }
    // State first, run second: a reader that sees the run ended sees the state too.
    let _ = cat.set_medium_state(
        &m.id,
        state,
        run.message.as_deref(),
        bakfs_core::timefmt::now_ns(),
    );
    let _ = cat.finish_medium_run(&run);
    let secs = run.seconds;
    let mib_s = stats.bytes_written as f64 / secs.max(1e-9) / (1 << 20) as f64;
    // A share or a bucket is not removed by hand: it has its copy (and a share was unmounted if
    // mediad mounted it).
    let done = match m.kind {
        MediumKind::Share | MediumKind::ObjectStorage => format!("{} has its copy", m.label),
        _ => format!("safe to remove {}", m.label),
    };
    let summary = match &result {
        Ok(()) => format!(
            "{done} ({} snapshots added, {} removed, {} bytes written at {mib_s:.1} MiB/s, {secs:.1} s)",
            stats.added, stats.removed, stats.bytes_written
        ),
        Err(e) => format!("{}: {e}", m.label),
    };
    match &result {
        Ok(()) => tracing::info!(
            medium = %m.label,
            added = stats.added,
            removed = stats.removed,
            bytes_written = stats.bytes_written,
            "{summary}"
        ),
        // Pulling a medium out, or stopping the daemon, is no error.
        Err(CopyError::Cancelled) => tracing::warn!(medium = %m.label, "{summary}"),
        Err(_) => tracing::error!(medium = %m.label, "{summary}"),
    }
    // A drill that found damage makes the job's heartbeat a failure: the copy is not good.
    let ok = matches!(outcome, CopyOutcome::Ok | CopyOutcome::Incomplete)
        && !matches!(drilled, Some((DrillOutcome::Damaged, _)));
    // Still due unless mediad's drill ended ok, or found damage (said above).
    let due =
        due.filter(|_| !matches!(drilled, Some((DrillOutcome::Ok | DrillOutcome::Damaged, _))));
    if let Some(d) = &due {
        tracing::info!(medium = %m.label, "{d}");
    }
    setup.monitors.refresh_metrics(&cat, &setup.repo_id);
    let summary = [Some(summary), drilled.map(|d| d.1), due]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n");
    setup.monitors.finish(beat, ok, &summary);
    state
}

/// The medium's state, the run's outcome and its message.
pub(crate) fn outcome(
    result: &Result<(), CopyError>,
    stats: &Stats,
) -> (MediumState, CopyOutcome, Option<String>) {
    match result {
        Ok(()) if !stats.skipped.is_empty() => (
            MediumState::SafeToRemove,
            CopyOutcome::Incomplete,
            Some(format!("not copied: {}", stats.skipped.join("; "))),
        ),
        Ok(()) => (MediumState::SafeToRemove, CopyOutcome::Ok, None),
        Err(CopyError::Full(m)) => (
            MediumState::MediumFull,
            CopyOutcome::MediumFull,
            Some(m.clone()),
        ),
        Err(e @ CopyError::Refused(_)) => (
            MediumState::Refused,
            CopyOutcome::Refused,
            Some(e.to_string()),
        ),
        Err(CopyError::Cancelled) => (
            MediumState::RemovedDuringCopy,
            CopyOutcome::Cancelled,
            Some("the medium went away or the daemon stopped".to_string()),
        ),
        Err(e) => (
            MediumState::Failed,
            CopyOutcome::Failed,
            Some(e.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests;
