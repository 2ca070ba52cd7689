//! Judging one medium: seen, written, verified, drilled, its space, rotation, staleness and
//! restore estimate.

use super::*;

pub(super) fn judge_medium(
    w: &mut World<'_>,
    m: &MediumRecord,
) -> Result<MediumStatus, StatusError> {
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
    // A full cartridge that is its set's newest: the set goes on only on another one.
    let wants_tape = match &m.tape {
        Some(t) if t.status == crate::catalog::TapeStatus::Full => cat
            .tape_set(&t.set)?
            .iter()
            .all(|o| o.tape.as_ref().is_none_or(|x| x.seq <= t.seq)),
        _ => false,
    };
    if wants_tape {
        notes.push(format!(
            "full: load a tape of pool {} to go on with its media set (`bakfs tape label LABEL --pool {}` for a new one)",
            m.pool, m.pool
        ));
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
    if rotation_due || stale || wants_tape {
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
        wants_tape,
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
