//! Pool decisions over cartridge records.

use super::*;
use crate::catalog::{MediumKind, MediumLocation, Tape, TapePlace};
use crate::format::id::{MediumId, RepoId};

const D: i64 = 24 * 3600 * 1_000_000_000;
const NOW: i64 = 1_800_000_000 * 1_000_000_000;

/// Cartridge `label`, place `seq` of `set` (labelled `age` days ago), last written `written`
/// days ago if ever.
fn cart(
    label: &str,
    set: &str,
    seq: u32,
    status: TapeStatus,
    age: i64,
    written: Option<i64>,
) -> MediumRecord {
    MediumRecord {
        last_written_ns: written.map(|w| NOW - w * D),
        tape: Some(Tape {
            set: set.into(),
            seq,
            status,
            place: TapePlace::InDrive,
        }),
        ..MediumRecord::enrolled(
            MediumId::hash_of(label.as_bytes()),
            label,
            RepoId::hash_of(b"r"),
            &format!("tape-{label}"),
            MediumKind::Tape,
            MediumLocation::Offsite,
            NOW - age * D,
        )
    }
}

fn policy(allocation: &str, retention: &str) -> PoolPolicy {
    PoolPolicy::of(Some(&Pool {
        allocation: Some(allocation.into()),
        set_retention: Some(retention.into()),
        ..Pool::default()
    }))
    .unwrap()
}

use TapeStatus::{Full, Writable};

#[test]
fn policies_read_words_and_periods() {
    assert_eq!(PoolPolicy::of(None).unwrap(), PoolPolicy::default());
    let p = policy("7d", "90d");
    assert_eq!(
        p.allocation,
        Allocation::Every(Duration::from_secs(7 * 86400))
    );
    assert_eq!(
        p.retention,
        SetRetention::For(Duration::from_secs(90 * 86400))
    );
    assert_eq!(
        policy("always", "overwrite").retention,
        SetRetention::Overwrite
    );
    let bad = Pool {
        allocation: Some("sometimes".into()),
        ..Pool::default()
    };
    assert!(PoolPolicy::of(Some(&bad))
        .unwrap_err()
        .contains("continue, always"));
}

#[test]
fn continue_appends_to_the_current_set_and_a_full_set_takes_the_next_cartridge() {
    let p = policy("continue", "keep");
    let a = cart("A", "s1", 0, Writable, 10, Some(1));
    assert_eq!(
        decide(&p, &a, true, std::slice::from_ref(&a), NOW, &TimeZone::UTC),
        Decision::Append
    );
    // A full: an empty cartridge labelled later in another set continues s1.
    let a = cart("A", "s1", 0, Full, 10, Some(1));
    let b = cart("B", "s2", 0, Writable, 0, None);
    let pool = [a.clone(), b.clone()];
    // s2 is the newest set but was never written: it is current, and B appends.
    assert_eq!(
        decide(&p, &b, false, &pool, NOW, &TimeZone::UTC),
        Decision::Append
    );
    assert_eq!(
        decide(&p, &a, true, &pool, NOW, &TimeZone::UTC),
        Decision::Leave(
            "A's media set is not the pool's current one and has not expired (set_retention keep)"
                .into()
        )
    );
    let only = std::slice::from_ref(&a);
    assert_eq!(
        decide(&p, &a, true, only, NOW, &TimeZone::UTC),
        Decision::Leave("A is full".into())
    );
}

#[test]
fn always_starts_a_new_set_on_an_empty_or_expired_cartridge() {
    let p = policy("always", "overwrite");
    let a = cart("A", "s1", 0, Writable, 10, Some(1));
    // The current set was written: the next job wants a new set, not A.
    assert!(
        matches!(decide(&p, &a, true, std::slice::from_ref(&a), NOW, &TimeZone::UTC), Decision::Leave(w) if w.contains("a new media set is due"))
    );
    // An empty cartridge of the current set starts it.
    let b = cart("B", "s1", 1, Writable, 0, None);
    let pool = [a.clone(), b.clone()];
    assert_eq!(
        decide(&p, &b, false, &pool, NOW, &TimeZone::UTC),
        Decision::Relabel { set: None, seq: 0 }
    );
    // Once s2 is current, s1 (not current, overwrite) is reused for a new set.
    let b = cart("B", "s2", 0, Writable, 0, Some(0));
    let pool = [a.clone(), b.clone()];
    assert_eq!(
        decide(&p, &a, true, &pool, NOW, &TimeZone::UTC),
        Decision::Relabel { set: None, seq: 0 }
    );
    // But a set that filled its cartridge goes on first, even under `always`.
    let b = cart("B", "s2", 0, Full, 0, Some(0));
    let pool = [a.clone(), b];
    assert_eq!(
        decide(&p, &a, true, &pool, NOW, &TimeZone::UTC),
        Decision::Relabel {
            set: Some("s2".into()),
            seq: 1
        }
    );
}

#[test]
fn a_set_expires_whole_after_its_last_write_and_never_while_current() {
    let p = policy("continue", "30d");
    let old1 = cart("O1", "old", 0, Full, 100, Some(40));
    let old2 = cart("O2", "old", 1, Writable, 90, Some(31));
    let cur = cart("C", "cur", 0, Writable, 20, Some(1));
    let pool = [old1.clone(), old2.clone(), cur.clone()];
    let s = sets(&pool);
    assert_eq!(
        s.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["old", "cur"]
    );
    assert!(expired(&p, &s[0], "cur", NOW));
    assert!(!expired(&p, &s[1], "cur", NOW));
    // O1 joins the current set (continue): labelled again after C.
    assert_eq!(
        decide(&p, &old1, true, &pool, NOW, &TimeZone::UTC),
        Decision::Relabel {
            set: Some("cur".into()),
            seq: 1
        }
    );
    // Written to 20 days ago: not expired.
    let old2 = cart("O2", "old", 1, Writable, 90, Some(20));
    let pool = [old1.clone(), old2.clone(), cur.clone()];
    assert!(
        matches!(decide(&p, &old1, true, &pool, NOW, &TimeZone::UTC), Decision::Leave(w) if w.contains("kept 30d"))
    );
}

#[test]
fn every_period_starts_a_new_set_when_the_current_one_is_older() {
    let p = policy("7d", "keep");
    let a = cart("A", "s1", 0, Writable, 3, Some(1));
    assert_eq!(
        decide(&p, &a, true, std::slice::from_ref(&a), NOW, &TimeZone::UTC),
        Decision::Append
    );
    let a = cart("A", "s1", 0, Writable, 8, Some(1));
    assert!(matches!(
        decide(&p, &a, true, std::slice::from_ref(&a), NOW, &TimeZone::UTC),
        Decision::Leave(_)
    ));
    let b = cart("B", "s1", 1, Writable, 0, None);
    assert_eq!(
        decide(&p, &b, false, &[a, b.clone()], NOW, &TimeZone::UTC),
        Decision::Relabel { set: None, seq: 0 }
    );
}

#[test]
fn a_calendar_event_starts_a_set_at_the_first_job_of_each_week() {
    let p = policy("weekly", "keep");
    assert_eq!(p.allocation, Allocation::Calendar(CalendarEvent::Weekly));
    // NOW is Friday 2027-01-15 08:00 UTC: a set started on Monday is this week's.
    let monday = NOW - 4 * D;
    let a = MediumRecord {
        enrolled_ns: monday,
        ..cart("A", "s1", 0, Writable, 0, Some(1))
    };
    assert_eq!(
        decide(&p, &a, true, std::slice::from_ref(&a), NOW, &TimeZone::UTC),
        Decision::Append
    );
    // Started the Sunday before: last week's; the first job this week wants a new set.
    let a = MediumRecord {
        enrolled_ns: NOW - 5 * D - 9 * 3600 * 1_000_000_000,
        ..cart("A", "s1", 0, Writable, 0, Some(1))
    };
    assert!(matches!(
        decide(&p, &a, true, std::slice::from_ref(&a), NOW, &TimeZone::UTC),
        Decision::Leave(w) if w.contains("a new media set is due")
    ));
    assert_eq!(
        policy("daily", "keep").allocation,
        Allocation::Calendar(CalendarEvent::Daily)
    );
}

#[test]
fn retired_and_damaged_cartridges_are_left_alone() {
    let p = PoolPolicy::default();
    for st in [TapeStatus::Retired, TapeStatus::Damaged] {
        let a = cart("A", "s1", 0, st, 1, None);
        assert!(matches!(
            decide(&p, &a, false, std::slice::from_ref(&a), NOW, &TimeZone::UTC),
            Decision::Leave(_)
        ));
    }
}
