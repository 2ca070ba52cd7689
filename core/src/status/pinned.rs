//! The pinned critical set in `bakfs status`: a job with `pin = true` (node keys, cold keys)
//! must have its newest snapshot on every enrolled medium of the repository (bakfs-mediad copies
//! it onto each at every insertion, whatever the medium's retention). Every medium that lacks a
//! verified copy of it is named, on the job (`pinned_missing`) and on the medium
//! (`pinned_missing`, the jobs), and both are at least [`Level::Attention`].
//!
//! "The newest snapshot" and "a verified copy" are those of the rest of the report: the newest of
//! the job in the primary or on any medium not dated after now, and a medium's copy in
//! `media_snapshots` (read back right when written) whose newest drill of that snapshot did not
//! find damage. A medium whose ledger rows were lost is named too (the catalog cannot say it
//! holds the copy); that medium is `unknown` already.

use std::collections::BTreeSet;

use serde::Serialize;

use super::{ago, JobSpec, Level, MediumStatus, StatusError, World};
use crate::catalog::{MediumRecord, MediumState};
use crate::format::id::{MediumId, SnapshotId};

/// The newest snapshot of a pinned job and the media holding a verified copy of it that counts.
#[derive(Debug, Clone)]
pub(super) struct PinnedNewest {
    pub job: String,
    pub snapshot: SnapshotId,
    pub holders: BTreeSet<MediumId>,
}

/// An enrolled medium that lacks the newest snapshot of a pinned job.
#[derive(Debug, Clone, Serialize)]
pub struct PinnedGap {
    pub medium: String,
    #[serde(serialize_with = "super::hex")]
    pub medium_id: MediumId,
    #[serde(serialize_with = "super::time_opt")]
    pub last_written: Option<i64>,
    /// In words: `OFFSITE-2 lacks the newest snapshot (last written 19 days ago)`.
    pub reason: String,
}

/// The newest snapshot of every pinned job of the configuration that has one, with its holders.
pub(super) fn newest(w: &World<'_>) -> Result<Vec<PinnedNewest>, StatusError> {
    let mut out = Vec::new();
    for spec in w.settings.jobs.iter().filter(|s| s.pin) {
        let Some(n) = super::newest_snapshot(w.cat, &w.repo, &spec.name, w.now)? else {
            continue;
        };
        let mut holders = BTreeSet::new();
        for h in w.cat.snapshot_holders(&n.snapshot_id)? {
            if !w.media.iter().any(|m| m.id == h.medium_id) {
                continue;
            }
            if w.drilled_damaged(Some(&h.medium_id), &n.snapshot_id)?
                .is_none()
            {
                holders.insert(h.medium_id);
            }
        }
        out.push(PinnedNewest {
            job: spec.name.clone(),
            snapshot: n.snapshot_id,
            holders,
        });
    }
    Ok(out)
}

/// The media lacking job `spec`'s newest snapshot, if the job is pinned and has one.
pub(super) fn job_gaps(w: &World<'_>, spec: &JobSpec) -> Vec<PinnedGap> {
    let Some(p) = w.pinned.iter().find(|p| p.job == spec.name) else {
        return Vec::new();
    };
    // `w.media` is sorted by label.
    w.media
        .iter()
        .filter(|m| !p.holders.contains(&m.id))
        .map(|m| PinnedGap {
            medium: m.label.clone(),
            medium_id: m.id,
            last_written: m.last_written_ns,
            reason: reason(w, m),
        })
        .collect()
}

/// `OFFSITE-2 lacks the newest snapshot (last written 19 days ago)`, with what the catalog knows
/// of why: the medium's last job filled it up or failed, its ledger was lost.
fn reason(w: &World<'_>, m: &MediumRecord) -> String {
    let mut why = vec![match m.last_written_ns {
        Some(t) => format!("last written {}", ago(t, w.now)),
        None => "never written".to_string(),
    }];
    if matches!(
        m.state,
        MediumState::MediumFull | MediumState::Failed | MediumState::Refused
    ) {
        why.push(format!("its last job: {}", m.state));
    }
    if w.ledger_lost(m) {
        why.push("its ledger was lost: it may hold it".into());
    }
    format!("{} lacks the newest snapshot ({})", m.label, why.join("; "))
}

/// The level a pinned job's gaps give it.
pub(super) fn job_level(gaps: &[PinnedGap]) -> Level {
    if gaps.is_empty() {
        Level::Ok
    } else {
        Level::Attention
    }
}

/// Names on medium `s` the pinned jobs whose newest snapshot it lacks, with a note each, and
/// raises its level to attention.
pub(super) fn flag_medium(w: &World<'_>, s: &mut MediumStatus) {
    for p in w.pinned.iter().filter(|p| !p.holders.contains(&s.id)) {
        s.pinned_missing.push(p.job.clone());
        s.notes.push(format!(
            "pinned {}: lacks the newest snapshot {} (plug it in: bakfs-mediad copies it first)",
            p.job,
            p.snapshot.short()
        ));
        s.level = s.level.max(Level::Attention);
    }
}
