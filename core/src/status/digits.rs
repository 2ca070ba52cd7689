//! The digits of the policy for one job (copies, kinds, offsite, offline, drill), each
//! shortfall said in words.

use super::*;

/// Whether the policy wants more than the primary alone can give.
pub(super) fn needs_media(p: &Policy) -> bool {
    p.copies > 1 || p.kinds > 1 || p.offsite > 0 || p.offline > 0
}

pub(super) fn no_media_reason() -> String {
    "the catalog records no media: none enrolled, or the catalog lost its media ledger \
     (a catalog rebuilt from the repository has none; re-enroll them)"
        .into()
}

/// The five digits of the policy for one job's newest snapshot.
pub(super) fn judge_digits(
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
pub(super) fn judge_drill(
    w: &mut World<'_>,
    job: &str,
    has_snapshot: bool,
) -> Result<Digit, StatusError> {
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
