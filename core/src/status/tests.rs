//! The report against catalogs built through the catalog's own API, at chosen times.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::catalog::{
    CopyOutcome, DrillEnd, DrillMode, DrillStart, MediumFile, MediumRun, MediumSnapshot,
    PackRecord, RunOutcome, SnapshotRecord, Tape, TapePlace, TapeStatus, Verification,
};
use crate::format::id::{BlobId, PackId};
use crate::repo::backend::FileKind;

const S: i64 = 1_000_000_000;
const H: i64 = 3600 * S;
const D: i64 = 24 * H;
/// "Now" in these tests.
const NOW: i64 = 1_800_000_000 * S;

fn repo() -> RepoId {
    RepoId::hash_of(b"repo")
}

fn sid(name: &str) -> SnapshotId {
    SnapshotId::hash_of(name.as_bytes())
}

fn mid(label: &str) -> MediumId {
    MediumId::hash_of(label.as_bytes())
}

struct T {
    _dir: tempfile::TempDir,
    cat: Catalog,
    settings: Settings,
}

impl T {
    /// An empty catalog; one job `etc` with an RPO of 1 day; the default policy without the
    /// drill digit (the tests of the other digits need no drills) unless a test turns it on.
    fn new() -> T {
        let dir = tempfile::tempdir().unwrap();
        let mut cat = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        cat.touch_repository(&repo(), "/srv/repo", NOW - D).unwrap();
        let settings = Settings {
            policy: Policy {
                drill_within: None,
                ..Policy::default()
            },
            jobs: vec![JobSpec {
                name: "etc".into(),
                rpo: Some(Duration::from_secs(86_400)),
                rpo_grace: Duration::from_secs(86_400),
                pin: false,
            }],
            pools: BTreeMap::new(),
        };
        T {
            _dir: dir,
            cat,
            settings,
        }
    }

    /// A snapshot of `job` in the primary at `time`, made by a run that ended `ok`.
    fn backup(&mut self, name: &str, job: &str, time: i64) -> SnapshotId {
        let id = sid(name);
        let s = SnapshotRecord {
            repo_id: repo(),
            id,
            time: timefmt::format_rfc3339(time),
            time_ns: time,
            host: "h".into(),
            paths: vec!["/etc".into()],
            tags: vec![],
            tree: BlobId::hash_of(name.as_bytes()),
            parent: None,
            job: Some(job.into()),
            files: 10,
            bytes: 100 << 20,
        };
        let pack = PackRecord {
            id: PackId::hash_of(name.as_bytes()),
            size: 1000,
        };
        self.cat.record_snapshot(&s, &[pack]).unwrap();
        let run = self.cat.begin_run(&repo(), Some(job), time).unwrap();
        self.cat
            .finish_run(
                run,
                &RunOutcome {
                    ended_ns: time + S,
                    outcome: BackupOutcome::Ok,
                    files: 10,
                    bytes_read: 100,
                    bytes_added: 100,
                    snapshot_id: Some(id),
                    message: None,
                },
            )
            .unwrap();
        id
    }

    fn enroll(&mut self, label: &str, kind: MediumKind, location: MediumLocation) {
        self.cat
            .enroll_medium(&MediumRecord {
                fs_type: "ext4".into(),
                capacity: 1 << 30,
                ..MediumRecord::enrolled(
                    mid(label),
                    label,
                    repo(),
                    &format!("uuid-{label}"),
                    kind,
                    location,
                    NOW - 60 * D,
                )
            })
            .unwrap();
    }

    /// Medium `label` was written at `at` with snapshot `snap` (of `job`, made at `time`) and
    /// a rotation that ended ok.
    fn copy(&mut self, label: &str, snap: &str, job: &str, time: i64, at: i64) {
        let m = mid(label);
        let s = MediumSnapshot {
            snapshot_id: sid(snap),
            time_ns: time,
            host: "h".into(),
            paths: vec!["/etc".into()],
            job: Some(job.into()),
            verified_ns: at,
        };
        let file = MediumFile {
            kind: FileKind::Snapshot,
            name: sid(snap).to_hex(),
            size: 100,
            verified_ns: at,
        };
        self.cat
            .record_medium_verified(
                &m,
                &[file],
                &[(s, vec![PackId::hash_of(snap.as_bytes())])],
                Verification::Written,
                at,
            )
            .unwrap();
        let run = self.cat.begin_medium_run(&m, at - S).unwrap();
        self.cat
            .finish_medium_run(&MediumRun {
                id: run,
                medium_id: m,
                started_ns: at - S,
                ended_ns: Some(at),
                outcome: CopyOutcome::Ok,
                snapshots_added: 1,
                snapshots_removed: 0,
                files_written: 1,
                bytes_written: 100,
                bytes_verified: 100,
                seconds: 1.0,
                message: None,
            })
            .unwrap();
    }

    fn presence(&mut self, label: &str, p: Presence, at: i64) {
        self.cat.set_medium_presence(&mid(label), p, at).unwrap();
    }

    /// A drill from `label` (`None`: the primary) of `snap` ending at `at`.
    fn drill(&mut self, label: Option<&str>, snap: &str, outcome: DrillOutcome, at: i64) {
        let id = self
            .cat
            .begin_drill(&DrillStart {
                repo_id: repo(),
                medium_id: label.map(mid),
                snapshot_id: sid(snap),
                job: Some("etc".into()),
                started_ns: at - 100 * S,
                mode: DrillMode::Full,
            })
            .unwrap();
        self.cat
            .finish_drill(
                id,
                &DrillEnd {
                    ended_ns: at,
                    outcome,
                    files: 10,
                    bytes: 100 << 20,
                    seconds: 10.0,
                    ready_seconds: 2.5,
                    message: (outcome == DrillOutcome::Damaged)
                        .then(|| "etc/passwd differs".into()),
                },
            )
            .unwrap();
    }

    fn report(&self) -> Report {
        self.report_of(&Filter::default())
    }

    fn report_of(&self, f: &Filter) -> Report {
        report(&self.cat, &repo(), &self.settings, f, NOW).unwrap()
    }
}

fn digit<'a>(r: &'a Report, name: &str) -> &'a Digit {
    r.jobs[0].digits.iter().find(|d| d.name == name).unwrap()
}

/// The three copies of 3-2-1-1: the primary (disk, onsite), OFF1 (usb, offsite, in a drawer),
/// ON1 (disk, onsite, plugged in).
fn three_two_one_one() -> T {
    let mut t = T::new();
    t.backup("s1", "etc", NOW - 2 * H);
    t.enroll("OFF1", MediumKind::Usb, MediumLocation::Offsite);
    t.enroll("ON1", MediumKind::Disk, MediumLocation::Onsite);
    t.copy("OFF1", "s1", "etc", NOW - 2 * H, NOW - H);
    t.copy("ON1", "s1", "etc", NOW - 2 * H, NOW - H);
    t.presence("OFF1", Presence::Removed, NOW - H / 2);
    t.presence("ON1", Presence::PluggedIn, NOW - H);
    t
}

#[test]
fn every_digit_holds_with_three_copies_two_kinds_one_offsite_one_offline() {
    let t = three_two_one_one();
    let r = t.report();
    assert_eq!(r.level, Level::Ok, "{r:#?}");
    let j = &r.jobs[0];
    assert_eq!(j.rpo_state, RpoState::Ok);
    assert_eq!(j.newest.as_ref().unwrap().id, sid("s1"));
    assert_eq!(j.newest.as_ref().unwrap().age, Duration::from_secs(7200));
    let places: Vec<&str> = j.copies.iter().map(|c| c.place.as_str()).collect();
    assert_eq!(places, ["primary", "OFF1", "ON1"]);
    let have: Vec<(&str, u32, u32)> = j.digits.iter().map(|d| (d.name, d.have, d.want)).collect();
    assert_eq!(
        have,
        [
            ("copies", 3, 3),
            ("kinds", 2, 2),
            ("offsite", 1, 1),
            ("offline", 1, 1),
            ("drill", 0, 0)
        ]
    );
    assert!(j.copies[1].offline && !j.copies[2].offline);
    assert_eq!(j.last_run.as_ref().unwrap().outcome, BackupOutcome::Ok);
    assert!(r.media.iter().all(|m| m.level == Level::Ok), "{r:#?}");
    // JSON: times as RFC 3339, durations as seconds.
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["level"], "ok");
    assert_eq!(v["jobs"][0]["rpo_seconds"], 86_400);
    assert_eq!(v["jobs"][0]["newest"]["age_seconds"], 7200);
    assert_eq!(v["jobs"][0]["copies"][1]["where"], "OFF1");
    assert_eq!(v["jobs"][0]["copies"][1]["presence"], "removed");
    assert_eq!(
        v["media"][0]["last_seen"],
        timefmt::format_rfc3339(NOW - H / 2)
    );
}

#[test]
fn rpo_ok_late_breached_and_a_job_never_backed_up() {
    for (age, state, level) in [
        (D, RpoState::Ok, Level::Ok),
        (D + S, RpoState::Late, Level::Late),
        (2 * D, RpoState::Late, Level::Late),
        (2 * D + S, RpoState::Breached, Level::Breached),
    ] {
        let mut t = T::new();
        t.settings.policy = Policy {
            copies: 1,
            kinds: 1,
            offsite: 0,
            offline: 0,
            drill_within: None,
            ..Policy::default()
        };
        t.backup("s1", "etc", NOW - age);
        let r = t.report();
        assert_eq!((r.jobs[0].rpo_state, r.level), (state, level), "age {age}");
    }
    // A grace of its own: breached past rpo + grace.
    let mut t = T::new();
    t.settings.jobs[0].rpo_grace = Duration::from_secs(3600);
    t.backup("s1", "etc", NOW - D - 2 * H);
    assert_eq!(t.report().jobs[0].rpo_state, RpoState::Breached);
    // No snapshot: breached; no RPO: none.
    let mut t = T::new();
    let r = t.report();
    assert_eq!(
        (r.jobs[0].rpo_state, r.level),
        (RpoState::Breached, Level::Breached)
    );
    assert!(
        r.jobs[0].notes[0].contains("no run"),
        "{:?}",
        r.jobs[0].notes
    );
    t.settings.jobs[0].rpo = None;
    assert_eq!(t.report().jobs[0].rpo_state, RpoState::None);
}

#[test]
fn a_snapshot_from_the_future_does_not_make_a_job_fresh() {
    let mut t = T::new();
    t.backup("old", "etc", NOW - 3 * D);
    t.backup("future", "etc", NOW + 300 * D);
    let r = t.report();
    let j = &r.jobs[0];
    assert_eq!(j.newest.as_ref().unwrap().id, sid("old"));
    assert_eq!(j.rpo_state, RpoState::Breached);
    assert_eq!(j.future.len(), 1);
    assert_eq!(j.future[0].id, sid("future"));
    assert!(
        j.notes.iter().any(|n| n.contains("after now")),
        "{:?}",
        j.notes
    );
    // Only a future one: as if there were none.
    let mut t = T::new();
    t.backup("future", "etc", NOW + 1);
    let r = t.report();
    assert!(r.jobs[0].newest.is_none());
    assert_eq!(r.jobs[0].rpo_state, RpoState::Breached);
    // A medium holding a future snapshot does not either.
    let mut t = T::new();
    t.backup("old", "etc", NOW - 3 * D);
    t.enroll("OFF1", MediumKind::Usb, MediumLocation::Offsite);
    t.copy("OFF1", "future", "etc", NOW + D, NOW - H);
    let r = t.report();
    assert_eq!(r.jobs[0].newest.as_ref().unwrap().id, sid("old"));
    assert_eq!(r.jobs[0].future.len(), 1);
}

#[test]
fn shortfalls_are_said_in_words() {
    let mut t = three_two_one_one();
    t.settings.policy.offsite = 2;
    t.enroll("OFFSITE-2", MediumKind::Usb, MediumLocation::Offsite);
    t.copy("OFFSITE-2", "s0", "etc", NOW - 20 * D, NOW - 19 * D);
    t.presence("OFFSITE-2", Presence::Removed, NOW - 19 * D);
    let r = t.report();
    assert_eq!(r.level, Level::Short);
    let d = digit(&r, "offsite");
    assert_eq!((d.have, d.want, d.state), (1, 2, DigitState::Short));
    assert_eq!(
        d.reason.as_deref(),
        Some("only 1 offsite copy (2 wanted): OFFSITE-2 last written 19 days ago")
    );
    assert_eq!(digit(&r, "copies").state, DigitState::Ok);

    // OFF1 plugged in: nothing offline holds the newest snapshot.
    t.settings.policy.offsite = 1;
    t.presence("OFF1", Presence::PluggedIn, NOW);
    let r = t.report();
    let d = digit(&r, "offline");
    assert_eq!((d.have, d.state), (0, DigitState::Short));
    let reason = d.reason.as_deref().unwrap();
    assert!(
        reason.starts_with("no offline copy (1 wanted): OFF1 holds it but is plugged in; ON1 holds it but is plugged in; OFFSITE-2 last written 19 days ago"),
        "{reason}"
    );

    // Only USB media hold it and the primary counts as usb too: one kind.
    t.settings.policy.primary_kind = MediumKind::Usb;
    let mut t2 = T::new();
    t2.settings.policy.primary_kind = MediumKind::Usb;
    t2.backup("s1", "etc", NOW - H);
    t2.enroll("OFF1", MediumKind::Usb, MediumLocation::Offsite);
    t2.enroll("DISK1", MediumKind::Disk, MediumLocation::Onsite);
    t2.copy("OFF1", "s1", "etc", NOW - H, NOW - H / 2);
    t2.presence("OFF1", Presence::Removed, NOW - H / 4);
    let r = t2.report();
    let d = digit(&r, "kinds");
    assert_eq!((d.have, d.state), (1, DigitState::Short));
    assert_eq!(
        d.reason.as_deref(),
        Some("only 1 kind of media (usb; 2 wanted): DISK1 never written")
    );
    let d = digit(&r, "copies");
    assert_eq!(
        d.reason.as_deref(),
        Some("only 2 verified copies (3 wanted): DISK1 never written")
    );
}

#[test]
fn a_catalog_without_media_rows_says_unknown_never_ok() {
    let mut t = T::new();
    t.backup("s1", "etc", NOW - H);
    let r = t.report();
    assert_eq!(r.level, Level::Unknown, "{r:#?}");
    for name in ["copies", "kinds", "offsite", "offline"] {
        let d = digit(&r, name);
        assert_eq!(d.state, DigitState::Unknown, "{name}");
        assert!(d.reason.as_deref().unwrap().contains("no media"), "{d:?}");
    }
    assert!(r.notes.iter().any(|n| n.contains("no media")));
    // A policy the primary alone meets needs no media: ok.
    t.settings.policy = Policy {
        copies: 1,
        kinds: 1,
        offsite: 0,
        offline: 0,
        drill_within: None,
        ..Policy::default()
    };
    assert_eq!(t.report().level, Level::Ok);
}

#[test]
fn a_medium_that_lost_its_ledger_makes_a_shortfall_unknown() {
    let mut t = three_two_one_one();
    t.enroll("LOST", MediumKind::Usb, MediumLocation::Offsite);
    t.copy("LOST", "s0", "etc", NOW - 9 * D, NOW - 8 * D);
    // Its rows go, as if the catalog lost them; the media row says it was written.
    t.cat
        .remove_medium_snapshots(&mid("LOST"), &[sid("s0")])
        .unwrap();
    t.settings.policy.offsite = 2;
    let r = t.report();
    let d = digit(&r, "offsite");
    assert_eq!(d.state, DigitState::Unknown, "{d:?}");
    assert!(
        d.reason
            .as_deref()
            .unwrap()
            .contains("LOST may hold a copy"),
        "{d:?}"
    );
    let m = r.media.iter().find(|m| m.label == "LOST").unwrap();
    assert!(m.ledger_lost && m.level == Level::Unknown, "{m:?}");
    assert_eq!(r.level, Level::Unknown);
}

#[test]
fn presence_not_known_does_not_count_as_offline() {
    let mut t = T::new();
    t.backup("s1", "etc", NOW - H);
    t.enroll("OFF1", MediumKind::Usb, MediumLocation::Offsite);
    t.enroll("ON1", MediumKind::Disk, MediumLocation::Onsite);
    t.copy("OFF1", "s1", "etc", NOW - H, NOW - H / 2);
    t.copy("ON1", "s1", "etc", NOW - H, NOW - H / 2);
    // No daemon recorded presence (a catalog migrated from version 2).
    let r = t.report();
    let d = digit(&r, "offline");
    assert_eq!((d.have, d.state), (0, DigitState::Unknown), "{d:?}");
    assert!(d.reason.as_deref().unwrap().contains("not known"), "{d:?}");
    assert_eq!(r.level, Level::Unknown);
}

#[test]
fn drills_prove_copies_and_estimate_restore_times() {
    let mut t = three_two_one_one();
    t.settings.policy.drill_within = Some(Duration::from_secs(30 * 86_400));
    let r = t.report();
    let d = digit(&r, "drill");
    assert_eq!((d.have, d.state), (0, DigitState::Short));
    assert!(d.reason.as_deref().unwrap().starts_with("never drilled"));
    assert!(r.jobs[0].copies.iter().all(|c| c.rto_seconds.is_none()));

    // A drill 40 days ago: too old.
    t.drill(Some("OFF1"), "s0", DrillOutcome::Ok, NOW - 40 * D);
    let r = t.report();
    assert_eq!(
        digit(&r, "drill").reason.as_deref(),
        Some("last proven restorable 40 days ago from OFF1 (30d wanted)")
    );
    // A recent one: ok, and OFF1's restore rate gives its RTO: 100 MiB at 10 MiB/s + 2.5 s.
    t.drill(Some("OFF1"), "s0", DrillOutcome::Ok, NOW - D);
    let r = t.report();
    assert_eq!(r.level, Level::Ok, "{r:#?}");
    let off1 = &r.jobs[0].copies[1];
    assert_eq!(off1.rto_seconds, Some(12.5));
    assert_eq!(off1.last_drill.as_ref().unwrap().outcome, DrillOutcome::Ok);
    let m = r.media.iter().find(|m| m.label == "OFF1").unwrap();
    assert_eq!(m.restore_bytes_per_second, Some((10 << 20) as f64));
    assert_eq!(m.ready_seconds, Some(2.5));
    assert_eq!(m.rto_seconds, Some(12.5));
    assert_eq!(m.restore.len(), 1);
    assert!(
        r.jobs[0].copies[0].rto_seconds.is_none(),
        "the primary was never drilled"
    );

    // A drill of the newest snapshot on ON1 finds damage: ON1's copy no longer counts, and
    // the job's newest drill failed.
    t.drill(Some("ON1"), "s1", DrillOutcome::Damaged, NOW - H / 4);
    let r = t.report();
    let on1 = &r.jobs[0].copies[2];
    assert!(!on1.counted, "{on1:?}");
    assert!(on1.note.as_deref().unwrap().contains("found damage"));
    assert_eq!(digit(&r, "copies").have, 2);
    let d = digit(&r, "drill");
    assert_eq!(d.state, DigitState::Short);
    assert!(
        d.reason
            .as_deref()
            .unwrap()
            .contains("found damage: etc/passwd differs"),
        "{d:?}"
    );
    // A failed drill (could not finish) says nothing of the copy.
    t.drill(Some("ON1"), "s1", DrillOutcome::Failed, NOW - H / 8);
    let r = t.report();
    assert!(!r.jobs[0].copies[2].counted);
}

#[test]
fn media_due_for_rotation_stale_and_their_space() {
    let mut t = three_two_one_one();
    t.settings.pools.insert(
        "default".into(),
        PoolSpec {
            rotate_every: Some(Duration::from_secs(7 * 86_400)),
            stale_after: None,
        },
    );
    assert_eq!(t.report().level, Level::Ok, "both were rotated an hour ago");
    // OFF1 was last rotated 10 days ago and seen 40 days ago; ON1's own period is 30 days.
    let mut t = T::new();
    t.settings.pools.insert(
        "default".into(),
        PoolSpec {
            rotate_every: Some(Duration::from_secs(7 * 86_400)),
            stale_after: None,
        },
    );
    t.backup("s1", "etc", NOW - 2 * H);
    t.enroll("OFF1", MediumKind::Usb, MediumLocation::Offsite);
    t.enroll("ON1", MediumKind::Disk, MediumLocation::Onsite);
    t.copy("OFF1", "s0", "etc", NOW - 11 * D, NOW - 10 * D);
    t.presence("OFF1", Presence::Removed, NOW - 40 * D);
    t.cat
        .set_medium_rotate_every("ON1", Some(Duration::from_secs(30 * 86_400)))
        .unwrap();
    t.presence("ON1", Presence::PluggedIn, NOW - 100 * D);
    t.cat
        .set_medium_free_bytes(&mid("OFF1"), 5 << 20, NOW - 10 * D)
        .unwrap();
    let r = t.report_of(&Filter {
        job: None,
        medium: Some("OFF1".into()),
    });
    assert!(r.jobs.is_empty());
    let m = &r.media[0];
    assert!(m.rotation_due && m.stale, "{m:#?}");
    assert_eq!(m.rotate_every_from, Some("pool"));
    assert_eq!(m.free_bytes, Some(5 << 20));
    assert_eq!(m.snapshots, 1);
    assert_eq!(m.level, Level::Attention);
    assert_eq!(r.level, Level::Attention);
    assert!(
        m.notes
            .iter()
            .any(|n| n == "due for rotation: last rotated 10 days ago (every 7d)"),
        "{:?}",
        m.notes
    );
    assert!(
        m.notes
            .iter()
            .any(|n| n.starts_with("stale: not seen for 40 days")),
        "{:?}",
        m.notes
    );
    // ON1: its own period, never rotated; plugged in, so never stale.
    let r = t.report_of(&Filter {
        job: None,
        medium: Some("ON1".into()),
    });
    let m = &r.media[0];
    assert_eq!(m.rotate_every_from, Some("medium"));
    assert!(m.rotation_due && !m.stale, "{m:#?}");
    // Filters: an unknown job or medium is an error; --job alone shows no media.
    let e = report(
        &t.cat,
        &repo(),
        &t.settings,
        &Filter {
            job: Some("nope".into()),
            medium: None,
        },
        NOW,
    );
    assert!(matches!(e, Err(StatusError::NoSuchJob(_))));
    let e = report(
        &t.cat,
        &repo(),
        &t.settings,
        &Filter {
            job: None,
            medium: Some("NOPE".into()),
        },
        NOW,
    );
    assert!(matches!(e, Err(StatusError::NoSuchMedium(_))));
    let r = t.report_of(&Filter {
        job: Some("etc".into()),
        medium: None,
    });
    assert_eq!((r.jobs.len(), r.media.len()), (1, 0));
}

#[test]
fn the_newest_snapshot_only_a_medium_holds_counts_without_the_primary() {
    let mut t = T::new();
    t.backup("s1", "etc", NOW - 3 * D);
    t.enroll("OFF1", MediumKind::Usb, MediumLocation::Offsite);
    // A snapshot the primary's list does not have (made through another state directory).
    t.copy("OFF1", "s2", "etc", NOW - H, NOW - H / 2);
    t.presence("OFF1", Presence::Removed, NOW);
    let r = t.report();
    let j = &r.jobs[0];
    let n = j.newest.as_ref().unwrap();
    assert_eq!((n.id, n.in_primary, n.bytes), (sid("s2"), false, None));
    assert_eq!(j.rpo_state, RpoState::Ok);
    assert_eq!(j.copies.len(), 1);
    assert_eq!(j.copies[0].place, "OFF1");
    assert!(
        j.notes.iter().any(|n| n.contains("known only from media")),
        "{:?}",
        j.notes
    );
}

#[test]
fn no_jobs_configured_is_unknown() {
    let mut t = T::new();
    t.settings.jobs.clear();
    let r = t.report();
    assert_eq!(r.level, Level::Unknown);
    assert!(r.notes[0].contains("no jobs"));
}

#[test]
fn lost_snapshot_rows_are_unknown_not_breached() {
    let mut t = T::new();
    t.enroll("OFF1", MediumKind::Usb, MediumLocation::Offsite);
    t.backup("s1", "etc", NOW - H);
    t.cat.remove_snapshot(&repo(), &sid("s1")).unwrap();
    let r = t.report();
    assert_eq!(r.jobs[0].level, Level::Unknown, "{r:#?}");
    assert!(r.jobs[0]
        .notes
        .iter()
        .any(|n| n.contains("catalog rebuild")));
}

#[test]
fn settings_from_a_config_file() {
    let cfg: Config = toml::from_str(
        r#"
        [jobs.etc]
        paths = ["/etc"]
        rpo = "1d"
        [jobs.db]
        paths = ["/db"]
        rpo = "1h"
        rpo_grace = "12h"
        [policy]
        copies = 2
        drill_within = "off"
        primary_kind = "usb"
        [pools.vault]
        rotate_every = "7d"
        stale_after = "1y"
        "#,
    )
    .unwrap();
    let s = Settings::from_config(&cfg).unwrap();
    assert_eq!(s.policy.copies, 2);
    assert_eq!(s.policy.kinds, 2);
    assert_eq!(s.policy.drill_within, None);
    assert_eq!(s.policy.primary_kind, MediumKind::Usb);
    let etc = s.jobs.iter().find(|j| j.name == "etc").unwrap();
    assert_eq!(
        etc.rpo_grace,
        Duration::from_secs(86_400),
        "the RPO by default"
    );
    let db = s.jobs.iter().find(|j| j.name == "db").unwrap();
    assert_eq!(db.rpo_grace, Duration::from_secs(12 * 3600));
    assert_eq!(
        s.pools["vault"].rotate_every,
        Some(Duration::from_secs(7 * 86_400))
    );
    let d = Settings::from_config(&Config::default()).unwrap();
    assert_eq!(d.policy, Policy::default());
}

#[test]
fn a_reason_names_the_three_most_recently_written_media_and_counts_the_others() {
    let mut t = T::new();
    t.backup("s1", "etc", NOW - H);
    for (i, label) in ["A", "B", "C", "D", "E"].iter().enumerate() {
        t.enroll(label, MediumKind::Usb, MediumLocation::Offsite);
        if i > 0 {
            t.copy(label, "old", "etc", NOW - 30 * D, NOW - (i as i64) * D);
        }
    }
    let r = t.report();
    assert_eq!(
        digit(&r, "copies").reason.as_deref(),
        Some("only 1 verified copy (3 wanted): B last written 24 hours ago, C last written 2 days ago, D last written 3 days ago, 2 more")
    );
}

/// The value of the series `name{labels}` in a textfile, if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[test]
fn metrics_say_the_report_in_base_units_without_snapshot_ids() {
    let mut t = three_two_one_one();
    t.settings.policy.drill_within = Some(Duration::from_secs(30 * 86_400));
    t.drill(Some("OFF1"), "s1", DrillOutcome::Ok, NOW - D);
    t.enroll("WITH \"QUOTES\"\\", MediumKind::Usb, MediumLocation::Onsite);
    let r = t.report();
    let m = metrics::render(&r);
    assert!(!m.contains(&sid("s1").to_string()), "no snapshot id: {m}");
    assert!(
        !m.contains(&sid("s1").to_string()[..8]),
        "no snapshot id: {m}"
    );
    // Every metric once, with HELP and TYPE before its samples.
    let mut seen = std::collections::HashSet::new();
    for l in m.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            assert!(
                seen.insert(rest.split(' ').next().unwrap().to_string()),
                "{l}"
            );
        } else if !l.starts_with("# HELP ") {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(seen.contains(name), "{name} before its TYPE: {m}");
        }
    }
    assert_eq!(
        sample(&m, "bakfs_status_timestamp_seconds"),
        Some((NOW / S) as f64)
    );
    assert_eq!(
        sample(&m, "bakfs_job_rpo_seconds{job=\"etc\"}"),
        Some(86_400.0)
    );
    assert_eq!(
        sample(&m, "bakfs_job_rpo_state{job=\"etc\",state=\"ok\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "bakfs_job_rpo_state{job=\"etc\",state=\"breached\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "bakfs_job_last_success_timestamp_seconds{job=\"etc\"}"),
        Some(((NOW - 2 * H) / S) as f64)
    );
    assert_eq!(
        sample(&m, "bakfs_job_snapshot_age_seconds{job=\"etc\"}"),
        Some(7200.0)
    );
    assert_eq!(sample(&m, "bakfs_job_last_run_ok{job=\"etc\"}"), Some(1.0));
    assert_eq!(
        sample(&m, "bakfs_job_verified_copies{job=\"etc\"}"),
        Some(3.0)
    );
    assert_eq!(
        sample(&m, "bakfs_job_policy_have{job=\"etc\",digit=\"offsite\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "bakfs_job_policy_ok{job=\"etc\",digit=\"drill\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "bakfs_job_last_drill_timestamp_seconds{job=\"etc\"}"),
        Some(((NOW - D) / S) as f64)
    );
    assert_eq!(
        sample(
            &m,
            "bakfs_copy_restore_estimate_seconds{job=\"etc\",where=\"OFF1\"}"
        ),
        Some(12.5)
    );
    assert_eq!(
        sample(&m, "bakfs_medium_present{medium=\"OFF1\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "bakfs_medium_present{medium=\"ON1\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "bakfs_medium_restore_bytes_per_second{medium=\"OFF1\"}"),
        Some((10 << 20) as f64)
    );
    // Label values escaped as the text format says; a medium never seen: presence unknown.
    assert_eq!(
        sample(
            &m,
            "bakfs_medium_present{medium=\"WITH \\\"QUOTES\\\"\\\\\"}"
        ),
        Some(-1.0),
        "{m}"
    );
    // A shortfall: the offsite digit short once OFF1's copy is found damaged.
    t.drill(Some("OFF1"), "s1", DrillOutcome::Damaged, NOW - H);
    let m = metrics::render(&t.report());
    assert_eq!(
        sample(&m, "bakfs_job_policy_ok{job=\"etc\",digit=\"offsite\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "bakfs_job_verified_copies{job=\"etc\"}"),
        Some(2.0)
    );
    assert_eq!(sample(&m, "bakfs_status_level"), Some(3.0), "short");

    // Written whole by rename.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bakfs.prom");
    metrics::write_textfile(&path, &t.report()).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), m);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary file left");
}

/// 3-2-1-1 for `etc`, and a pinned job `keys` whose newest snapshot k1 only OFF1 holds: ON1
/// holds nothing of it and OFF2, written 19 days ago, an older one. A lenient policy, so that
/// only the pin judges.
fn pinned_keys() -> T {
    let mut t = three_two_one_one();
    t.settings.policy = Policy {
        copies: 1,
        kinds: 1,
        offsite: 0,
        offline: 0,
        drill_within: None,
        ..Policy::default()
    };
    t.settings.jobs.push(JobSpec {
        name: "keys".into(),
        rpo: Some(Duration::from_secs(86_400)),
        rpo_grace: Duration::from_secs(86_400),
        pin: true,
    });
    t.enroll("OFF2", MediumKind::Usb, MediumLocation::Offsite);
    t.presence("OFF2", Presence::Removed, NOW - 19 * D);
    t.backup("k0", "keys", NOW - 20 * D);
    t.copy("OFF2", "k0", "keys", NOW - 20 * D, NOW - 19 * D);
    t.backup("k1", "keys", NOW - 3 * H);
    t.copy("OFF1", "k1", "keys", NOW - 3 * H, NOW - 2 * H);
    t
}

fn job<'a>(r: &'a Report, name: &str) -> &'a JobStatus {
    r.jobs.iter().find(|j| j.name == name).unwrap()
}

fn medium<'a>(r: &'a Report, label: &str) -> &'a MediumStatus {
    r.media.iter().find(|m| m.label == label).unwrap()
}

#[test]
fn a_pinned_job_flags_every_medium_lacking_its_newest_snapshot() {
    let mut t = pinned_keys();
    let r = t.report();
    let keys = job(&r, "keys");
    assert!(keys.pinned);
    let gaps: Vec<&str> = keys
        .pinned_missing
        .iter()
        .map(|g| g.reason.as_str())
        .collect();
    assert_eq!(
        gaps,
        [
            "OFF2 lacks the newest snapshot (last written 19 days ago)",
            "ON1 lacks the newest snapshot (last written 60 minutes ago)",
        ]
    );
    assert_eq!(keys.level, Level::Attention, "{keys:#?}");
    let etc = job(&r, "etc");
    assert!(!etc.pinned && etc.pinned_missing.is_empty());
    assert_eq!(etc.level, Level::Ok);
    assert_eq!(medium(&r, "OFF1").level, Level::Ok);
    assert!(medium(&r, "OFF1").pinned_missing.is_empty());
    for label in ["OFF2", "ON1"] {
        let m = medium(&r, label);
        assert_eq!(m.level, Level::Attention, "{m:#?}");
        assert_eq!(m.pinned_missing, ["keys"]);
        assert!(
            m.notes.iter().any(|n| n
                == &format!(
                    "pinned keys: lacks the newest snapshot {} (plug it in: bakfs-mediad copies it first)",
                    sid("k1").short()
                )),
            "{:?}",
            m.notes
        );
    }
    assert_eq!(r.level, Level::Attention);
    // JSON.
    let v = serde_json::to_value(&r).unwrap();
    let k = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "keys")
        .unwrap();
    assert_eq!(k["pinned"], true);
    assert_eq!(k["pinned_missing"][0]["medium"], "OFF2");
    assert_eq!(k["pinned_missing"][0]["medium_id"], mid("OFF2").to_hex());
    assert_eq!(
        k["pinned_missing"][0]["last_written"],
        timefmt::format_rfc3339(NOW - 19 * D)
    );
    let off2 = v["media"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["label"] == "OFF2")
        .unwrap();
    assert_eq!(off2["pinned_missing"], serde_json::json!(["keys"]));
    // Filtered: the job alone, a medium alone.
    let only = |job: Option<&str>, medium: Option<&str>| Filter {
        job: job.map(String::from),
        medium: medium.map(String::from),
    };
    assert_eq!(
        t.report_of(&only(Some("keys"), None)).level,
        Level::Attention
    );
    assert_eq!(t.report_of(&only(Some("etc"), None)).level, Level::Ok);
    let r2 = t.report_of(&only(None, Some("OFF2")));
    assert_eq!(
        (r2.level, &r2.media[0].pinned_missing[..]),
        (Level::Attention, &["keys".to_string()][..])
    );
    assert_eq!(t.report_of(&only(None, Some("OFF1"))).level, Level::Ok);
    // Metrics: per pinned job the media missing it, per medium the pinned jobs it misses.
    let m = metrics::render(&r);
    assert_eq!(
        sample(&m, "bakfs_job_pinned_media_missing{job=\"keys\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(&m, "bakfs_job_pinned_media_missing{job=\"etc\"}"),
        None,
        "not pinned"
    );
    assert_eq!(
        sample(&m, "bakfs_medium_pinned_missing{medium=\"OFF2\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "bakfs_medium_pinned_missing{medium=\"OFF1\"}"),
        Some(0.0)
    );

    // bakfs-mediad copies it onto both: nothing is missing; a snapshot from the future is not
    // the newest.
    t.copy("ON1", "k1", "keys", NOW - 3 * H, NOW - H / 4);
    t.copy("OFF2", "k1", "keys", NOW - 3 * H, NOW - H / 4);
    t.backup("k9", "keys", NOW + D);
    let r = t.report();
    assert!(job(&r, "keys").pinned_missing.is_empty(), "{r:#?}");
    assert_eq!(r.level, Level::Ok, "{r:#?}");
    assert_eq!(
        sample(
            &metrics::render(&r),
            "bakfs_job_pinned_media_missing{job=\"keys\"}"
        ),
        Some(0.0)
    );
    // A drill that found OFF1's copy damaged: it does not count.
    t.drill(Some("OFF1"), "k1", DrillOutcome::Damaged, NOW - H / 8);
    let r = t.report();
    let gaps: Vec<&str> = job(&r, "keys")
        .pinned_missing
        .iter()
        .map(|g| g.medium.as_str())
        .collect();
    assert_eq!(gaps, ["OFF1"]);
    assert_eq!(medium(&r, "OFF1").level, Level::Attention);
    // A newer snapshot in the primary alone: every medium lacks it.
    t.backup("k2", "keys", NOW - H / 16);
    let r = t.report();
    assert_eq!(job(&r, "keys").pinned_missing.len(), 3);
}

#[test]
fn a_pinned_gap_says_what_the_catalog_knows_of_why() {
    let mut t = pinned_keys();
    // ON1's last job filled it up; OFF2 lost its ledger rows (it may hold the copy).
    t.cat
        .set_medium_state(&mid("ON1"), MediumState::MediumFull, Some("full"), NOW - H)
        .unwrap();
    t.cat
        .remove_medium_snapshots(&mid("OFF2"), &[sid("k0")])
        .unwrap();
    let r = t.report();
    let gaps: Vec<&str> = job(&r, "keys")
        .pinned_missing
        .iter()
        .map(|g| g.reason.as_str())
        .collect();
    assert_eq!(
        gaps,
        [
            "OFF2 lacks the newest snapshot (last written 19 days ago; its ledger was lost: it may hold it)",
            "ON1 lacks the newest snapshot (last written 60 minutes ago; its last job: medium full)",
        ]
    );
    assert_eq!(medium(&r, "OFF2").level, Level::Unknown, "unknown stays");
    assert_eq!(medium(&r, "ON1").level, Level::Attention);
    // A pinned job never backed up: nothing to flag beyond its RPO.
    t.settings.jobs.push(JobSpec {
        name: "cold".into(),
        rpo: None,
        rpo_grace: Duration::ZERO,
        pin: true,
    });
    let r = t.report();
    assert!(job(&r, "cold").pinned_missing.is_empty());
    // `pin = true` in the configuration.
    let cfg: Config = toml::from_str(
        "[jobs.keys]\npaths = [\"/var/lib/node\"]\npin = true\n[jobs.etc]\npaths = [\"/etc\"]\n",
    )
    .unwrap();
    let s = Settings::from_config(&cfg).unwrap();
    let pins: Vec<(&str, bool)> = s.jobs.iter().map(|j| (j.name.as_str(), j.pin)).collect();
    assert_eq!(pins, [("etc", false), ("keys", true)]);
}

#[test]
fn a_full_tape_newest_of_its_set_asks_for_another_cartridge() {
    let mut t = three_two_one_one();
    let tape = |label: &str, seq: u32, status: TapeStatus| MediumRecord {
        pool: "VAULT".into(),
        tape: Some(Tape {
            set: "5e7".into(),
            seq,
            status,
            place: TapePlace::Offline,
        }),
        ..MediumRecord::enrolled(
            mid(label),
            label,
            repo(),
            &format!("tape-{label}"),
            MediumKind::Tape,
            MediumLocation::Offsite,
            NOW - D,
        )
    };
    t.cat
        .enroll_medium(&tape("T1", 0, TapeStatus::Full))
        .unwrap();
    let r = t.report();
    let m = r.media.iter().find(|m| m.label == "T1").unwrap();
    assert!(m.wants_tape && m.level == Level::Attention, "{m:?}");
    assert!(
        m.notes
            .iter()
            .any(|n| n.contains("load a tape of pool VAULT")),
        "{:?}",
        m.notes
    );
    // A second cartridge joined the set: the first asks for nothing.
    t.cat
        .enroll_medium(&tape("T2", 1, TapeStatus::Writable))
        .unwrap();
    let r = t.report();
    let m = r.media.iter().find(|m| m.label == "T1").unwrap();
    assert!(!m.wants_tape, "{m:?}");
}
