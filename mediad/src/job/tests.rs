//! Whole rotations without root: a real repository (a `LocalBackend` in a temporary directory,
//! backed up with `bakfs_core::backup`), a real catalog, and a medium that is a plain directory
//! ([`DirMedium`], with a quota where it must fill up). After each rotation the medium is opened
//! as a repository of its own and checked with every byte read.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bakfs_core::backup::{backup, BackupOptions, Progress};
use bakfs_core::catalog::{
    Catalog, CopyOutcome, MediumKind, MediumLocation, MediumRecord, MediumRun, MediumState,
    PackRecord, SnapshotRecord,
};
use bakfs_core::forget::KeepPolicy;
use bakfs_core::format::crypto::KdfParams;
use bakfs_core::format::id::{MediumId, SnapshotId};
use bakfs_core::medium::{self, Identity};
use bakfs_core::repo::backend::{FileKind, Location};
use bakfs_core::repo::Repository;

use super::{run, Setup};
use crate::medium::dir::DirMedium;

const MIB: usize = 1 << 20;

/// `n` bytes of noise from `seed` (zstd cannot shrink them).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct World {
    dir: tempfile::TempDir,
    setup: Setup,
    repo: Repository,
    medium: MediumRecord,
    quota: Option<u64>,
}

impl World {
    /// A repository, a catalog and an enrolled medium keeping `keep_last` snapshots.
    fn new(keep_last: Option<u32>, quota: Option<u64>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo_dir = dir.path().join("repo");
        let location = Location::Dir(repo_dir);
        let repo = Repository::init(
            location.backend().unwrap(),
            b"pw",
            KdfParams::weak_for_tests(),
            "test".into(),
        )
        .unwrap();
        let setup = Setup {
            repo: location,
            repo_id: repo.id(),
            catalog: dir.path().join("state/catalog.db"),
            media_root: dir.path().join("media"),
            reverify_after: Duration::from_secs(30 * 86400),
            pinned: Default::default(),
            tz: bakfs_core::timefmt::TimeZone::UTC,
            monitors: Default::default(),
            runbook: Default::default(),
            drill: None,
            share_timeout: Duration::from_secs(60),
            share_retry: Duration::from_secs(900),
            share_read_back: 100.0,
        };
        let record = MediumRecord {
            fs_type: "none".into(),
            pool: "offsite".into(),
            capacity: 1 << 30,
            retention: KeepPolicy {
                last: keep_last,
                ..KeepPolicy::default()
            },
            ..MediumRecord::enrolled(
                MediumId::random(),
                "DIR1",
                repo.id(),
                "dir-1",
                MediumKind::Disk,
                MediumLocation::Offsite,
                1,
            )
        };
        std::fs::create_dir_all(dir.path().join("medium")).unwrap();
        medium::create(
            &dir.path().join("medium"),
            &Identity {
                format: medium::IDENTITY_FORMAT,
                medium_id: record.id.to_hex(),
                label: record.label.clone(),
                repo_id: repo.id().to_hex(),
                enrolled_ns: 1,
            },
        )
        .unwrap();
        Catalog::open(&setup.catalog)
            .unwrap()
            .enroll_medium(&record)
            .unwrap();
        Self {
            dir,
            setup,
            repo,
            medium: record,
            quota,
        }
    }

    fn src(&self) -> PathBuf {
        self.dir.path().join("src")
    }

    /// Bytes of the files on the medium.
    fn used(&self) -> u64 {
        DirMedium::new(&self.dir.path().join("medium"), None).used()
    }

    /// The medium's repository directory.
    fn on_medium(&self) -> PathBuf {
        self.dir.path().join("medium").join(medium::DIR)
    }

    /// Replaces the source with `files` (name, MiB, seed), backs it up and records the
    /// snapshot in the catalog as `bakfs backup` does.
    fn backup(&self, files: &[(&str, usize, u64)]) -> SnapshotId {
        self.backup_job(None, files, bakfs_core::timefmt::now_ns())
    }

    /// [`Self::backup`] of a job (its own source directory) at `time_ns`.
    fn backup_job(
        &self,
        job: Option<&str>,
        files: &[(&str, usize, u64)],
        time_ns: i64,
    ) -> SnapshotId {
        let src = match job {
            None => self.src(),
            Some(j) => self.dir.path().join(format!("src-{j}")),
        };
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir_all(&src).unwrap();
        for (name, mib, seed) in files {
            std::fs::write(src.join(name), noise(mib * MIB, *seed)).unwrap();
        }
        let opts = BackupOptions {
            paths: vec![src],
            host: "test".into(),
            time_ns,
            job: job.map(String::from),
            ..BackupOptions::default()
        };
        let rep = backup(&self.repo, &opts, &Progress::default()).unwrap();
        let s = &rep.snapshot;
        let rec = SnapshotRecord {
            repo_id: self.repo.id(),
            id: rep.id,
            time: bakfs_core::timefmt::format_rfc3339(s.time_ns),
            time_ns: s.time_ns,
            host: s.host.clone(),
            paths: s.paths.clone(),
            tags: s.tags.clone(),
            tree: s.tree,
            parent: s.parent,
            job: s.job.clone(),
            files: s.summary.files,
            bytes: s.summary.bytes,
        };
        let packs: Vec<PackRecord> = rep
            .packs_needed
            .iter()
            .map(|(id, size)| PackRecord {
                id: *id,
                size: *size,
            })
            .collect();
        self.catalog().record_snapshot(&rec, &packs).unwrap();
        rep.id
    }

    fn catalog(&self) -> Catalog {
        Catalog::open(&self.setup.catalog).unwrap()
    }

    /// One job on the medium: its end state and its run.
    fn rotate(&self) -> (MediumState, MediumRun) {
        let mut m = DirMedium::new(&self.dir.path().join("medium"), self.quota);
        let state = run(&self.setup, &self.medium, &mut m, &AtomicBool::new(false));
        let run = self.catalog().medium_runs(&self.medium.id, 1).unwrap()[0].clone();
        (state, run)
    }

    /// The snapshots the catalog says the medium holds, sorted.
    fn held(&self) -> Vec<SnapshotId> {
        let mut v: Vec<SnapshotId> = self
            .catalog()
            .medium_snapshots(&self.medium.id)
            .unwrap()
            .into_iter()
            .map(|s| s.snapshot_id)
            .collect();
        v.sort();
        v
    }

    /// The packs snapshot `id` needs, by name.
    fn packs_of(&self, id: &SnapshotId) -> Vec<String> {
        self.catalog()
            .snapshot_packs(&self.repo.id(), id)
            .unwrap()
            .into_iter()
            .map(|p| p.id.to_hex())
            .collect()
    }

    /// Checks the medium alone: it opens with the passphrase, `check` reading every byte
    /// passes, and it holds exactly the snapshots the catalog says.
    fn check_medium_alone(&self) {
        let on = Location::Dir(self.on_medium()).backend().unwrap();
        let repo = Repository::open(on, b"pw").unwrap();
        let rep = bakfs_core::check::check(&repo, Some(1.0)).unwrap();
        assert!(rep.ok(), "{rep:?}");
        let mut ids: Vec<SnapshotId> = repo.snapshots().unwrap().into_iter().map(|s| s.0).collect();
        ids.sort();
        assert_eq!(ids, self.held(), "the medium and the catalog agree");
    }
}

fn pack_path(root: &Path, name: &str) -> PathBuf {
    root.join(FileKind::Pack.rel_path(name))
}

/// The largest pack of `names` on the medium.
fn largest(root: &Path, names: &[String]) -> String {
    names
        .iter()
        .max_by_key(|n| std::fs::metadata(pack_path(root, n)).map_or(0, |m| m.len()))
        .unwrap()
        .clone()
}

#[test]
fn a_first_copy_then_only_what_is_new() {
    let w = World::new(None, None);
    let a = w.backup(&[("a", 3, 1), ("b", 1, 2)]);
    let (state, r) = w.rotate();
    assert_eq!(
        (state, r.outcome),
        (MediumState::SafeToRemove, CopyOutcome::Ok),
        "{r:?}"
    );
    assert_eq!(r.snapshots_added, 1);
    assert!(r.bytes_written as usize > 4 * MIB, "{r:?}");
    assert_eq!(w.held(), vec![a]);
    w.check_medium_alone();
    // One new file: only its packs, the new index file and the manifest are written.
    let b = w.backup(&[("a", 3, 1), ("b", 1, 2), ("c", 1, 3)]);
    let (_, r) = w.rotate();
    assert_eq!(
        (r.outcome, r.snapshots_added, r.snapshots_removed),
        (CopyOutcome::Ok, 1, 0)
    );
    assert!(
        (r.bytes_written as usize) < 2 * MIB,
        "wrote {} bytes for 1 MiB of new data",
        r.bytes_written
    );
    let mut both = vec![a, b];
    both.sort();
    assert_eq!(w.held(), both);
    w.check_medium_alone();
    // Nothing new: only `config` is written and read back.
    let (_, r) = w.rotate();
    assert_eq!(
        (r.outcome, r.snapshots_added, r.files_written),
        (CopyOutcome::Ok, 0, 1),
        "{r:?}"
    );
    assert!(r.bytes_verified < 64 << 10, "{r:?}");
    let ledger: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.on_medium().join(medium::LEDGER)).unwrap())
            .unwrap();
    assert_eq!(ledger["runs"][0]["id"], r.id, "{ledger}");
    assert_eq!(ledger["snapshots"].as_array().unwrap().len(), 2);
}

#[test]
fn retention_removes_a_snapshot_and_the_packs_only_it_needed() {
    let w = World::new(Some(1), None);
    let a = w.backup(&[("old", 2, 10)]);
    assert_eq!(w.rotate().1.outcome, CopyOutcome::Ok);
    let b = w.backup(&[("new", 2, 11)]);
    let (_, r) = w.rotate();
    assert_eq!(
        (r.outcome, r.snapshots_added, r.snapshots_removed),
        (CopyOutcome::Ok, 1, 1),
        "{r:?}"
    );
    assert_eq!(w.held(), vec![b]);
    let root = w.on_medium();
    assert!(!root.join(FileKind::Snapshot.rel_path(&a.to_hex())).exists());
    let kept = w.packs_of(&b);
    for p in w.packs_of(&a) {
        assert_eq!(
            pack_path(&root, &p).exists(),
            kept.contains(&p),
            "pack {p} of the removed snapshot"
        );
    }
    for p in &kept {
        assert!(pack_path(&root, p).exists());
    }
    w.check_medium_alone();
}

#[test]
fn a_damaged_or_lost_file_on_the_medium_is_found_and_copied_again() {
    let mut w = World::new(None, None);
    let a = w.backup(&[("a", 3, 20)]);
    assert_eq!(w.rotate().1.outcome, CopyOutcome::Ok);
    let root = w.on_medium();
    let victim = largest(&root, &w.packs_of(&a));
    let path = pack_path(&root, &victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    // Within `reverify_after` the files on the medium are not read again.
    let (_, r) = w.rotate();
    assert_eq!((r.outcome, r.files_written), (CopyOutcome::Ok, 1), "{r:?}");
    assert_eq!(w.held(), vec![a]);
    // Due now: the rotten pack is found, forgotten, deleted, and copied again.
    w.setup.reverify_after = Duration::ZERO;
    let (_, r) = w.rotate();
    assert_eq!(
        (r.outcome, r.snapshots_added),
        (CopyOutcome::Ok, 1),
        "{r:?}"
    );
    // The manifest is still there, unchanged: it is read back, not written again.
    assert_eq!(r.files_written, 2, "config and the pack: {r:?}");
    let total = w.catalog().medium_by_label("DIR1").unwrap().unwrap().bytes;
    assert!(r.bytes_verified >= total, "{r:?}");
    assert_eq!(w.held(), vec![a]);
    w.check_medium_alone();
    // A pack deleted behind bakfs's back: its record is dropped and the pack copied again.
    w.setup.reverify_after = Duration::from_secs(86400);
    std::fs::remove_file(&path).unwrap();
    let (_, r) = w.rotate();
    assert_eq!(
        (r.outcome, r.snapshots_added),
        (CopyOutcome::Ok, 1),
        "{r:?}"
    );
    assert!(path.exists());
    w.check_medium_alone();
}

#[test]
fn a_full_medium_makes_room_only_when_that_frees_enough() {
    let mut w = World::new(Some(1), None);
    w.backup(&[("a", 3, 30)]);
    assert_eq!(w.rotate().1.outcome, CopyOutcome::Ok);
    // A new snapshot sharing nothing with the old one; the medium holds both but for 1 MiB.
    // It fills up after at least one of the new packs: what is left is less than retention
    // frees, though the new snapshot in all is more.
    let b = w.backup(&[("a", 10, 31)]);
    let b_bytes: u64 = w
        .catalog()
        .snapshot_packs(&w.repo.id(), &b)
        .unwrap()
        .iter()
        .map(|p| p.size)
        .sum();
    w.quota = Some(w.used() + b_bytes - MIB as u64);
    let (state, r) = w.rotate();
    assert_eq!(
        (state, r.outcome),
        (MediumState::SafeToRemove, CopyOutcome::Ok),
        "{r:?}"
    );
    assert_eq!((r.snapshots_added, r.snapshots_removed), (1, 1));
    assert!(
        (r.bytes_written as u64) < b_bytes + (512 << 10),
        "packs written before the medium filled up were written again: {r:?}"
    );
    assert_eq!(w.held(), vec![b]);
    // The room left as the job left it is recorded (the ledger written after it is small).
    let m = w.catalog().medium_by_label("DIR1").unwrap().unwrap();
    let left = w.quota.unwrap() - w.used();
    let free = m.free_bytes.unwrap() as u64;
    assert!(
        free.abs_diff(left) < 64 << 10,
        "{free} recorded, {left} left"
    );
    assert!(m.free_ns.is_some());
    w.check_medium_alone();
    // Far too big even once retention ran: reported full, nothing removed.
    w.backup(&[("a", 14, 32)]);
    let (state, r) = w.rotate();
    assert_eq!(
        (state, r.outcome),
        (MediumState::MediumFull, CopyOutcome::MediumFull),
        "{r:?}"
    );
    assert_eq!(r.snapshots_removed, 0);
    let msg = r.message.unwrap_or_default();
    assert!(msg.contains("retention could free"), "{msg}");
    assert_eq!(w.held(), vec![b]);
    w.check_medium_alone();
}

#[test]
fn a_snapshot_damaged_in_the_primary_is_skipped_and_costs_the_medium_nothing() {
    let w = World::new(Some(1), None);
    let a = w.backup(&[("a", 2, 40)]);
    assert_eq!(w.rotate().1.outcome, CopyOutcome::Ok);
    let b = w.backup(&[("a", 2, 40), ("b", 2, 41)]);
    let new: Vec<String> = w
        .packs_of(&b)
        .into_iter()
        .filter(|p| !w.packs_of(&a).contains(p))
        .collect();
    let primary = w.dir.path().join("repo");
    let victim = largest(&primary, &new);
    let path = pack_path(&primary, &victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let (state, r) = w.rotate();
    assert_eq!(
        (state, r.outcome),
        (MediumState::SafeToRemove, CopyOutcome::Incomplete),
        "{r:?}"
    );
    let msg = r.message.unwrap_or_default();
    assert!(
        msg.contains(&b.short()) && msg.contains("primary repository damaged"),
        "{msg}"
    );
    assert_eq!(r.snapshots_removed, 0);
    assert_eq!(w.held(), vec![a], "the older snapshot stays");
    assert!(!pack_path(&w.on_medium(), &victim).exists());
    w.check_medium_alone();
}

/// keep-last 2 on a medium holding s1 and s2 (s2 forgotten in the primary since): s4 cannot be
/// copied, and s3 fills the medium up. Room is made for s3 by the plan made without s4, which
/// removes s1 only: s2 stays, where the plan with s4 in it would have removed it for nothing.
#[test]
fn a_skipped_snapshot_costs_the_medium_nothing_when_room_is_made() {
    let mut w = World::new(Some(2), None);
    let s1 = w.backup(&[("a", 2, 50)]);
    let s2 = w.backup(&[("b", 2, 51)]);
    assert_eq!(w.rotate().1.outcome, CopyOutcome::Ok);
    let mut both = vec![s1, s2];
    both.sort();
    assert_eq!(w.held(), both);
    w.catalog().remove_snapshot(&w.repo.id(), &s2).unwrap();
    let s3 = w.backup(&[("c", 3, 52)]);
    let s4 = w.backup(&[("d", 1, 53)]);
    let s3_packs = w.packs_of(&s3);
    let new: Vec<String> = w
        .packs_of(&s4)
        .into_iter()
        .filter(|p| !s3_packs.contains(p))
        .collect();
    let primary = w.dir.path().join("repo");
    let path = pack_path(&primary, &largest(&primary, &new));
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    w.quota = Some(w.used() + 2 * MIB as u64);
    let (_, r) = w.rotate();
    assert_eq!(r.outcome, CopyOutcome::Incomplete, "{r:?}");
    assert!(
        r.message.as_deref().unwrap_or("").contains(&s4.short()),
        "{r:?}"
    );
    assert_eq!((r.snapshots_added, r.snapshots_removed), (1, 1), "{r:?}");
    let mut want = vec![s2, s3];
    want.sort();
    assert_eq!(
        w.held(),
        want,
        "s2 was removed for a snapshot that was not copied"
    );
    w.check_medium_alone();
}

#[test]
fn a_job_tells_its_monitors_and_refreshes_the_metrics_file() {
    use bakfs_e2e::monitor_server::{server, Answer};
    use bakfs_host::heartbeat::{Kind, Target};

    let srv = server();
    let mut w = World::new(None, None);
    let prom = w.dir.path().join("bakfs.prom");
    w.setup.monitors = crate::monitor::Monitors {
        state_dir: w.dir.path().join("state"),
        heartbeats: vec![Target {
            kind: Kind::Healthchecks,
            url: format!("{}/ping/media", srv.url),
        }],
        metrics: Some((prom.clone(), bakfs_core::status::Settings::default())),
        drill_within: Some(Duration::from_secs(30 * 86_400)),
    };
    w.backup(&[("a", 1, 1)]);
    let (state, _) = w.rotate();
    assert_eq!(state, MediumState::SafeToRemove);
    let seen = srv.seen.lock().unwrap().clone();
    let paths: Vec<&str> = seen
        .iter()
        .map(|s| s.target.split('?').next().unwrap())
        .collect();
    assert_eq!(paths, ["/ping/media/start", "/ping/media"], "{seen:?}");
    assert!(
        seen[1].body.starts_with("safe to remove DIR1"),
        "{:?}",
        seen[1].body
    );
    assert!(
        seen[1]
            .body
            .contains("DIR1 is due for a restore drill (never proven restorable by a drill, wanted within 30d): run `bakfs drill --medium DIR1`"),
        "{:?}",
        seen[1].body
    );
    let m = std::fs::read_to_string(&prom).unwrap();
    assert!(
        m.contains("bakfs_medium_snapshots{medium=\"DIR1\"} 1"),
        "{m}"
    );

    // Drilled: no longer due.
    let mut cat = w.catalog();
    let now = bakfs_core::timefmt::now_ns();
    let id = cat
        .begin_drill(&bakfs_core::catalog::DrillStart {
            repo_id: w.repo.id(),
            medium_id: Some(w.medium.id),
            snapshot_id: w.held()[0],
            job: None,
            started_ns: now,
            mode: bakfs_core::catalog::DrillMode::Full,
        })
        .unwrap();
    cat.finish_drill(
        id,
        &bakfs_core::catalog::DrillEnd {
            ended_ns: now,
            outcome: bakfs_core::catalog::DrillOutcome::Ok,
            files: 1,
            bytes: 1,
            seconds: 1.0,
            ready_seconds: 0.0,
            message: None,
        },
    )
    .unwrap();
    srv.seen.lock().unwrap().clear();
    w.rotate();
    let seen = srv.seen.lock().unwrap().clone();
    assert!(
        !seen[1].body.contains("due for a restore drill"),
        "{seen:?}"
    );

    // A medium that fails (full): a failure ping with the reason.
    srv.seen.lock().unwrap().clear();
    *srv.answer.lock().unwrap() = Answer::Status(200);
    w.quota = Some(1);
    w.backup(&[("b", 2, 2)]);
    let (state, run) = w.rotate();
    assert_eq!(state, MediumState::MediumFull, "{run:?}");
    let seen = srv.seen.lock().unwrap().clone();
    let fail = seen.iter().find(|s| s.target.starts_with("/ping/media/1?"));
    assert!(fail.is_some_and(|f| f.body.contains("DIR1")), "{seen:?}");
}

#[test]
fn each_job_leaves_the_recovery_runbook_on_the_medium() {
    let mut w = World::new(None, None);
    w.setup.runbook = crate::ledger::RunbookInfo {
        jobs: vec![bakfs_core::runbook::JobSummary {
            name: "keys".into(),
            sources: vec!["/var/lib/node".into()],
            rpo: Some("1d".into()),
            pin: false,
        }],
        password_file: Some("/etc/bakfs/password".into()),
    };
    let id = w.backup(&[("a", 1, 1)]);
    let (state, _) = w.rotate();
    assert_eq!(state, MediumState::SafeToRemove);
    let text = std::fs::read_to_string(w.on_medium().join(medium::RUNBOOK)).unwrap();
    for want in [
        "# Recovery runbook",
        "### keys",
        "### DIR1",
        &format!("Holds 1 snapshots; the newest `{}`", &id.to_hex()[..8]),
        "reads it from `/etc/bakfs/password`",
        "bakfs restore latest --repo /mnt/dir1/bakfs",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    // It is informational: the medium still checks as a repository of its own.
    w.check_medium_alone();
}

const DAY: i64 = 86_400_000_000_000;

/// The pinned job `keys` with a big job beside it on a keep-last 1 medium with little room to
/// spare: at every rotation the newest `keys` snapshot is on the medium (copied first, the
/// big one's old snapshot removed to make room), also when a snapshot of `keys` from the future
/// (a clock set wrong) is what keep-last 1 keeps.
#[test]
fn the_newest_pinned_snapshot_is_always_on_a_keep_last_1_medium() {
    let mut w = World::new(Some(1), None);
    w.setup.pinned = ["keys".to_string()].into();
    let now = bakfs_core::timefmt::now_ns;
    // Room for one of each and the next keys, not for the next big one besides.
    w.quota = Some((8 * MIB + MIB / 2) as u64);
    let mut keys = None;
    for round in 0..4u64 {
        // keys changes every other round; big every round.
        if round % 2 == 0 {
            keys = Some(w.backup_job(Some("keys"), &[("staker.key", 1, 100 + round)], now()));
        }
        let big = w.backup_job(Some("big"), &[("db", 4, 200 + round)], now());
        let (state, r) = w.rotate();
        assert_eq!(
            (state, r.outcome),
            (MediumState::SafeToRemove, CopyOutcome::Ok),
            "round {round}: {r:?}"
        );
        let mut want = vec![keys.unwrap(), big];
        want.sort();
        assert_eq!(w.held(), want, "round {round}");
        w.check_medium_alone();
    }
    // A snapshot of keys dated 10 days ahead: keep-last 1 keeps it, and the pin keeps the
    // newest one not dated after now.
    let ahead = w.backup_job(Some("keys"), &[("staker.key", 1, 150)], now() + 10 * DAY);
    w.quota = None;
    let (_, r) = w.rotate();
    assert_eq!(r.outcome, CopyOutcome::Ok, "{r:?}");
    assert_eq!((r.snapshots_added, r.snapshots_removed), (1, 0), "{r:?}");
    let held = w.held();
    assert!(
        held.contains(&ahead) && held.contains(&keys.unwrap()),
        "{held:?}"
    );
    w.check_medium_alone();
    // Without the pin, keep-last 1 would have removed it.
    w.setup.pinned.clear();
    let (_, r) = w.rotate();
    assert_eq!(r.snapshots_removed, 1, "{r:?}");
    assert!(!w.held().contains(&keys.unwrap()));
}

/// A damaged file of the pinned snapshot is found at the next insertion though
/// `reverify_after` is 30 days, and copied again; a damaged file of another job waits for its
/// time.
#[test]
fn a_damaged_pinned_file_is_found_and_copied_again_at_the_next_insertion() {
    let mut w = World::new(None, None);
    w.setup.pinned = ["keys".to_string()].into();
    let keys = w.backup_job(
        Some("keys"),
        &[("staker.key", 2, 300)],
        bakfs_core::timefmt::now_ns(),
    );
    let other = w.backup_job(
        Some("etc"),
        &[("passwd", 2, 301)],
        bakfs_core::timefmt::now_ns(),
    );
    assert_eq!(w.rotate().1.outcome, CopyOutcome::Ok);
    let root = w.on_medium();
    let flip = |path: &Path| {
        let mut bytes = std::fs::read(path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(path, &bytes).unwrap();
    };
    let pinned_pack = pack_path(&root, &largest(&root, &w.packs_of(&keys)));
    let other_pack = pack_path(&root, &largest(&root, &w.packs_of(&other)));
    flip(&pinned_pack);
    flip(&other_pack);
    let manifest = |cat: &Catalog| {
        cat.medium_files(&w.medium.id)
            .unwrap()
            .into_iter()
            .find(|f| f.kind == FileKind::Snapshot && f.name == keys.to_hex())
            .unwrap()
            .verified_ns
    };
    let before = manifest(&w.catalog());
    let (state, r) = w.rotate();
    assert_eq!(
        (state, r.outcome, r.snapshots_added),
        (MediumState::SafeToRemove, CopyOutcome::Ok, 1),
        "{r:?}"
    );
    assert_eq!(r.files_written, 2, "config and the pinned pack: {r:?}");
    let pinned_bytes: i64 = w
        .catalog()
        .snapshot_packs(&w.repo.id(), &keys)
        .unwrap()
        .iter()
        .map(|p| p.size as i64)
        .sum();
    assert!(r.bytes_verified >= pinned_bytes, "{r:?}");
    assert!(
        manifest(&w.catalog()) > before,
        "the pinned manifest was read back again"
    );
    let name = pinned_pack
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        blake3::hash(&std::fs::read(&pinned_pack).unwrap())
            .to_hex()
            .as_str(),
        name,
        "the pinned pack is whole again"
    );
    let name = other_pack
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_ne!(
        blake3::hash(&std::fs::read(&other_pack).unwrap())
            .to_hex()
            .as_str(),
        name,
        "another job's pack waits for reverify_after"
    );
    let mut both = vec![keys, other];
    both.sort();
    assert_eq!(w.held(), both);
    // Every insertion reads it again, with nothing damaged too.
    let before = manifest(&w.catalog());
    let (_, r) = w.rotate();
    assert_eq!(
        (r.outcome, r.snapshots_added),
        (CopyOutcome::Ok, 0),
        "{r:?}"
    );
    assert!(r.bytes_verified >= pinned_bytes, "{r:?}");
    assert!(manifest(&w.catalog()) > before);
    // Once due, the other job's pack is mended too and the medium checks clean.
    w.setup.reverify_after = Duration::ZERO;
    let (_, r) = w.rotate();
    assert_eq!(
        (r.outcome, r.snapshots_added),
        (CopyOutcome::Ok, 1),
        "{r:?}"
    );
    w.check_medium_alone();
}

/// The pinned set goes first: an older pinned snapshot is copied before a newer big one that
/// then does not fit; and a medium too small for the pinned snapshot itself ends `medium full`
/// with the job named in its state and run.
#[test]
fn a_medium_too_small_for_the_pinned_snapshot_fails_loudly() {
    let mut w = World::new(None, Some((4 * MIB + MIB / 2) as u64));
    w.setup.pinned = ["keys".to_string()].into();
    let now = bakfs_core::timefmt::now_ns;
    let keys = w.backup_job(Some("keys"), &[("staker.key", 3, 400)], now());
    w.backup_job(Some("big"), &[("db", 3, 401)], now());
    let (state, r) = w.rotate();
    assert_eq!(
        (state, r.outcome),
        (MediumState::MediumFull, CopyOutcome::MediumFull),
        "{r:?}"
    );
    assert!(
        !r.message.as_deref().unwrap_or("").contains("pinned"),
        "the big one did not fit, not the pinned one: {r:?}"
    );
    assert_eq!(w.held(), vec![keys], "the pinned snapshot got the room");
    w.check_medium_alone();

    // A newer keys snapshot that cannot fit beside the old one, nor alone.
    let mut w = World::new(None, Some((2 * MIB) as u64));
    w.setup.pinned = ["keys".to_string()].into();
    w.backup_job(Some("keys"), &[("staker.key", 3, 402)], now());
    let (state, r) = w.rotate();
    assert_eq!(
        (state, r.outcome),
        (MediumState::MediumFull, CopyOutcome::MediumFull),
        "{r:?}"
    );
    let msg = r.message.clone().unwrap_or_default();
    assert!(msg.contains("pinned job keys does not fit"), "{msg}");
    let m = w.catalog().medium_by_label("DIR1").unwrap().unwrap();
    assert_eq!(m.state, MediumState::MediumFull);
    assert_eq!(m.message.as_deref(), Some(msg.as_str()));
    assert!(w.held().is_empty());
}

/// A medium holding a snapshot the catalog does not know (its row lost): nothing of it is
/// removed, retention frees no pack while it is there, and the medium still restores it alone.
#[test]
fn a_snapshot_the_catalog_does_not_know_is_kept_with_its_packs() {
    let w = World::new(Some(1), None);
    let a = w.backup(&[("old", 2, 10)]);
    assert_eq!(w.rotate().1.outcome, CopyOutcome::Ok);
    // The catalog forgets that the medium holds it; the manifest stays on the medium.
    w.catalog()
        .remove_medium_snapshots(&w.medium.id, &[a])
        .unwrap();
    let b = w.backup(&[("new", 2, 11)]);
    let (_, r) = w.rotate();
    assert_eq!(
        (r.outcome, r.snapshots_removed),
        (CopyOutcome::Ok, 0),
        "{r:?}"
    );
    assert_eq!(w.held(), vec![b]);
    let root = w.on_medium();
    assert!(root.join(FileKind::Snapshot.rel_path(&a.to_hex())).exists());
    for p in w.packs_of(&a) {
        assert!(
            pack_path(&root, &p).exists(),
            "pack {p} of the unknown snapshot"
        );
    }
    // The medium alone: both snapshots there, every byte right.
    let on = Location::Dir(w.on_medium()).backend().unwrap();
    let repo = Repository::open(on, b"pw").unwrap();
    let rep = bakfs_core::check::check(&repo, Some(1.0)).unwrap();
    assert!(rep.ok(), "{rep:?}");
    let mut ids: Vec<SnapshotId> = repo.snapshots().unwrap().into_iter().map(|s| s.0).collect();
    ids.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(ids, want);
}

/// Given a password on purpose, mediad drills a medium due for a drill right after its copy
/// (recorded as a drill from that medium); a wrong password fails the drill, not the copy.
#[test]
fn with_a_password_mediad_drills_a_medium_that_is_due() {
    let mut w = World::new(None, None);
    let pw = w.dir.path().join("password");
    std::fs::write(&pw, "pw\n").unwrap();
    let sandbox = w.dir.path().join("sandbox");
    std::fs::create_dir_all(&sandbox).unwrap();
    w.setup.monitors.drill_within = Some(Duration::from_secs(30 * 86_400));
    w.setup.drill = Some(crate::drill::DrillSetup {
        password_file: pw.clone(),
        sample: 100.0,
        sandbox: sandbox.clone(),
    });
    let id = w.backup(&[("a", 1, 1), ("b", 1, 2)]);
    let (state, _) = w.rotate();
    assert_eq!(state, MediumState::SafeToRemove);
    let drills = w.catalog().drills(&w.repo.id(), 10).unwrap();
    assert_eq!(drills.len(), 1, "{drills:?}");
    let d = &drills[0];
    assert_eq!(d.outcome, bakfs_core::catalog::DrillOutcome::Ok, "{d:?}");
    assert_eq!(
        (d.medium_id, d.snapshot_id, d.files),
        (Some(w.medium.id), id, 2)
    );
    assert!(d.bytes_per_second().is_some(), "a rate for the estimate");
    assert_eq!(
        std::fs::read_dir(&sandbox).unwrap().count(),
        0,
        "sandbox removed"
    );
    // Drilled: not due at the next insertion.
    w.rotate();
    assert_eq!(w.catalog().drills(&w.repo.id(), 10).unwrap().len(), 1);

    // Another medium's worth of time later, a wrong password: the drill fails, the copy holds.
    let mut cat = w.catalog();
    cat.finish_drill(
        d.id,
        &bakfs_core::catalog::DrillEnd {
            ended_ns: 1,
            outcome: bakfs_core::catalog::DrillOutcome::Ok,
            files: d.files,
            bytes: d.bytes,
            seconds: d.seconds,
            ready_seconds: d.ready_seconds,
            message: None,
        },
    )
    .unwrap();
    std::fs::write(&pw, "wrong\n").unwrap();
    let (state, run) = w.rotate();
    assert_eq!(
        (state, run.outcome),
        (MediumState::SafeToRemove, CopyOutcome::Ok)
    );
    let d = &w.catalog().drills(&w.repo.id(), 10).unwrap()[0];
    assert_eq!(
        d.outcome,
        bakfs_core::catalog::DrillOutcome::Failed,
        "{d:?}"
    );
    assert!(d.message.as_deref().unwrap().contains("password"), "{d:?}");
}

#[test]
fn a_share_reads_back_a_sample_of_its_packs_and_the_rest_at_reverify_after() {
    let mut w = World::new(None, None);
    w.medium.kind = MediumKind::Share;
    w.setup.share_read_back = 1.0;
    let a = w.backup(&[("a", 20, 1), ("b", 20, 2)]);
    let packs = w.packs_of(&a);
    assert!(packs.len() >= 4, "{packs:?}");
    let (state, r) = w.rotate();
    assert_eq!(
        (state, r.outcome),
        (MediumState::SafeToRemove, CopyOutcome::Ok)
    );
    assert_eq!(w.held(), vec![a]);
    // 1%: hardly a pack was read back (the manifest, index, keys and config always are).
    assert!(r.bytes_verified < r.bytes_written / 4, "{r:?}");
    // A pack left out of the sample rots on the share: once reverify_after has passed, it is
    // read back, found, and copied again.
    let root = w.on_medium();
    let big = largest(&root, &packs);
    let p = pack_path(&root, &big);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&p, bytes).unwrap();
    w.setup.reverify_after = Duration::ZERO;
    let (state, r) = w.rotate();
    assert_eq!(
        (state, r.outcome),
        (MediumState::SafeToRemove, CopyOutcome::Ok),
        "{r:?}"
    );
    assert!(r.bytes_verified >= r.bytes_written, "{r:?}");
    w.check_medium_alone();
    // Every other medium reads back everything, whatever share_read_back says.
    let mut w = World::new(None, None);
    w.setup.share_read_back = 1.0;
    w.backup(&[("a", 20, 1)]);
    let (_, r) = w.rotate();
    assert!(r.bytes_verified >= r.bytes_written, "{r:?}");
}
