//! Judging one job: its newest snapshot against its RPO, its last run, the copies of that
//! snapshot.

use super::*;

pub(super) fn judge_job(w: &mut World<'_>, spec: &JobSpec) -> Result<JobStatus, StatusError> {
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
pub(super) fn copies_of(
    w: &mut World<'_>,
    s: &SnapshotStatus,
) -> Result<Vec<CopyStatus>, StatusError> {
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

pub(super) fn damaged_note(d: &DrillRecord, now: i64) -> String {
    format!(
        "not counted: a drill {} found damage{}",
        ago(d.ended_ns.unwrap_or(d.started_ns), now),
        d.message
            .as_deref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default()
    )
}
