//! The catalog against real SQLite files: migrations, concurrency, replacement of contents.

#![allow(clippy::unwrap_used)]
use super::*;
use crate::format::id::MediumId;
use std::time::Duration;

fn rid(s: &str) -> RepoId {
    RepoId::hash_of(s.as_bytes())
}

fn sid(s: &str) -> SnapshotId {
    SnapshotId::hash_of(s.as_bytes())
}

fn outcome(ended_ns: i64, snapshot: SnapshotId) -> RunOutcome {
    let snapshot_id = Some(snapshot);
    RunOutcome {
        ended_ns,
        outcome: BackupOutcome::Ok,
        files: 3,
        bytes_read: 4,
        bytes_added: 5,
        snapshot_id,
        message: None,
    }
}

fn snap(repo: &str, id: &str, t: i64) -> SnapshotRecord {
    SnapshotRecord {
        repo_id: rid(repo),
        id: sid(id),
        time: format!("2024-01-01T00:00:{:02}Z", t),
        time_ns: t,
        host: "h".into(),
        paths: vec!["/home".into(), "/etc \"x\"".into()],
        tags: vec!["daily".into()],
        tree: BlobId::hash_of(b"t"),
        parent: (t > 1).then(|| sid("p")),
        job: Some("job1".into()),
        files: 7,
        bytes: 1 << 40,
    }
}

fn pk(id: &str, size: u64) -> PackRecord {
    PackRecord {
        id: PackId::hash_of(id.as_bytes()),
        size,
    }
}

/// Packs as the catalog lists them: by id.
fn by_id(mut v: Vec<PackRecord>) -> Vec<PackRecord> {
    v.sort_by_key(|p| p.id);
    v
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a/b/catalog.db");
    (d, p)
}

#[test]
fn round_trip_and_order() {
    let (_d, p) = tmp();
    let mut c = Catalog::open(&p).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(c.schema_version(), SCHEMA_VERSION);
    c.touch_repository(&rid("r"), "/mnt/repo", 5).unwrap();
    c.touch_repository(&rid("r"), "/mnt/repo2", 6).unwrap();
    let (s2, s1) = (snap("r", "s2", 2), snap("r", "s1", 1));
    c.record_snapshot(&s2, &[pk("p1", 10), pk("p2", 20)])
        .unwrap();
    c.record_snapshot(&s1, &[pk("p1", 11)]).unwrap();
    assert_eq!(
        c.snapshots(&rid("r")).unwrap(),
        vec![s1.clone(), s2.clone()]
    );
    assert_eq!(
        c.snapshot_packs(&rid("r"), &sid("s2")).unwrap(),
        by_id(vec![pk("p1", 11), pk("p2", 20)])
    );
    // Re-recording replaces the pack list.
    let mut s2b = s2.clone();
    s2b.tags.push("x".into());
    c.record_snapshot(&s2b, &[pk("p3", 30)]).unwrap();
    assert_eq!(
        c.snapshot_packs(&rid("r"), &sid("s2")).unwrap(),
        vec![pk("p3", 30)]
    );
    assert_eq!(c.snapshots(&rid("r")).unwrap()[1], s2b);
    assert!(c.snapshots(&rid("other")).unwrap().is_empty());

    let r1 = c.begin_run(&rid("r"), Some("job1"), 100).unwrap();
    let r2 = c.begin_run(&rid("r"), None, 200).unwrap();
    let o = outcome(150, sid("s2"));
    c.finish_run(r1, &o).unwrap();
    assert!(c.finish_run(9999, &o).is_err());
    let runs = c.runs(&rid("r"), 10).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (runs[0].id, runs[0].outcome, runs[0].ended_ns),
        (r2, BackupOutcome::Running, None)
    );
    let want = RunRecord {
        id: r1,
        repo_id: rid("r"),
        job: Some("job1".into()),
        started_ns: 100,
        ended_ns: Some(150),
        outcome: BackupOutcome::Ok,
        files: 3,
        bytes_read: 4,
        bytes_added: 5,
        snapshot_id: Some(sid("s2")),
        message: None,
    };
    assert_eq!(runs[1], want);
    assert_eq!(c.runs(&rid("r"), 1).unwrap().len(), 1);
    c.integrity_check().unwrap();
}

#[test]
fn remove_cascades() {
    let (_d, p) = tmp();
    let mut c = Catalog::open(&p).unwrap();
    c.record_snapshot(&snap("r", "s1", 1), &[pk("p1", 1), pk("p2", 2)])
        .unwrap();
    c.record_snapshot(&snap("r", "s2", 2), &[pk("p1", 1)])
        .unwrap();
    c.remove_snapshot(&rid("r"), &sid("s1")).unwrap();
    let links: i64 = c
        .conn
        .query_row(
            "SELECT count(*) FROM snapshot_packs WHERE snapshot_id = ?1",
            [sid("s1")],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(links, 0);
    assert_eq!(
        c.snapshot_packs(&rid("r"), &sid("s2")).unwrap(),
        vec![pk("p1", 1)]
    );
    assert_eq!(c.snapshots(&rid("r")).unwrap().len(), 1);
    c.remove_snapshot(&rid("r"), &sid("nope")).unwrap();
}

#[test]
fn reopen_keeps_data_and_version() {
    let (_d, p) = tmp();
    let s = snap("r", "s1", 1);
    {
        let mut c = Catalog::open(&p).unwrap();
        c.record_snapshot(&s, &[pk("p1", 1)]).unwrap();
        c.begin_run(&rid("r"), None, 1).unwrap();
    }
    let c = Catalog::open(&p).unwrap();
    assert_eq!(c.schema_version(), SCHEMA_VERSION);
    assert_eq!(c.snapshots(&rid("r")).unwrap(), vec![s]);
    assert_eq!(c.runs(&rid("r"), 5).unwrap().len(), 1);
}

#[test]
fn too_new_is_refused_untouched() {
    let (_d, p) = tmp();
    // A rollback-journal file (journal_mode=WAL would rewrite its header) and a WAL one.
    let other = p.with_file_name("other.db");
    drop(Catalog::open(&p).unwrap());
    {
        let conn = Connection::open(&p).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
    }
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    {
        let conn = Connection::open(&other).unwrap();
        conn.execute_batch("CREATE TABLE snapshots(x); PRAGMA user_version=999;")
            .unwrap();
    }
    for f in [&p, &other] {
        let before = std::fs::read(f).unwrap();
        match Catalog::open(f) {
            Err(CatalogError::TooNew {
                found: 999,
                supported,
                ..
            }) => {
                assert_eq!(supported, SCHEMA_VERSION)
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("opened a too-new catalog"),
        }
        assert_eq!(std::fs::read(f).unwrap(), before, "{} changed", f.display());
    }
}

#[test]
fn replace_keeps_runs_and_other_repos() {
    let (_d, p) = tmp();
    let mut c = Catalog::open(&p).unwrap();
    c.record_snapshot(&snap("r", "old", 1), &[pk("pa", 1)])
        .unwrap();
    c.record_snapshot(&snap("q", "keep", 1), &[pk("pa", 9)])
        .unwrap();
    let run = c.begin_run(&rid("r"), None, 1).unwrap();
    let new = snap("r", "new", 3);
    c.replace_repository_contents(&rid("r"), &[(new.clone(), vec![pk("pb", 2)])])
        .unwrap();
    assert_eq!(c.snapshots(&rid("r")).unwrap(), vec![new]);
    assert_eq!(
        c.snapshot_packs(&rid("r"), &sid("new")).unwrap(),
        vec![pk("pb", 2)]
    );
    let r_packs: i64 = c
        .conn
        .query_row(
            "SELECT count(*) FROM packs WHERE repo_id = ?1",
            [rid("r")],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(r_packs, 1);
    assert_eq!(c.snapshots(&rid("q")).unwrap(), vec![snap("q", "keep", 1)]);
    assert_eq!(
        c.snapshot_packs(&rid("q"), &sid("keep")).unwrap(),
        vec![pk("pa", 9)]
    );
    assert_eq!(c.runs(&rid("r"), 10).unwrap()[0].id, run);
}

#[test]
fn concurrent_writers_wait() {
    let (_d, p) = tmp();
    drop(Catalog::open(&p).unwrap());
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let handles: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|who| {
            let (p, barrier) = (p.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = Catalog::open(&p).unwrap();
                barrier.wait();
                for i in 0..50 {
                    let s = snap("r", &format!("{who}{i}"), i);
                    c.record_snapshot(&s, &[pk(&format!("p{i}"), 1)]).unwrap();
                    let run = c.begin_run(&rid("r"), Some(who), i).unwrap();
                    c.finish_run(run, &outcome(i + 1, s.id)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let c = Catalog::open(&p).unwrap();
    assert_eq!(c.snapshots(&rid("r")).unwrap().len(), 100);
    assert_eq!(c.runs(&rid("r"), 1000).unwrap().len(), 100);
    c.integrity_check().unwrap();
}

/// A medium of repository `r` for the assurance tests.
fn medium(label: &str, r: &str) -> MediumRecord {
    MediumRecord {
        fs_type: "ext4".into(),
        pool: "p".into(),
        capacity: 1 << 30,
        ..MediumRecord::enrolled(
            MediumId::hash_of(label.as_bytes()),
            label,
            rid(r),
            &format!("uuid-{label}"),
            MediumKind::Usb,
            MediumLocation::Offsite,
            1,
        )
    }
}

#[test]
fn presence_free_space_and_rotation_period_of_a_medium() {
    let (_d, p) = tmp();
    let mut c = Catalog::open(&p).unwrap();
    c.enroll_medium(&medium("A", "r")).unwrap();
    c.enroll_medium(&medium("B", "r")).unwrap();
    let (a, b) = (MediumId::hash_of(b"A"), MediumId::hash_of(b"B"));
    c.set_medium_presence(&a, Presence::PluggedIn, 10).unwrap();
    c.set_medium_presence(&b, Presence::PluggedIn, 11).unwrap();
    let m = c.medium_by_label("A").unwrap().unwrap();
    assert_eq!(
        (m.presence, m.presence_ns, m.last_seen_ns),
        (Some(Presence::PluggedIn), Some(10), Some(10))
    );
    // A daemon starting with only A present: B went away unseen; its last sight stays.
    assert_eq!(c.set_media_removed_except(&[a], 20).unwrap(), 1);
    let m = c.medium_by_label("B").unwrap().unwrap();
    assert_eq!(
        (m.presence, m.presence_ns, m.last_seen_ns),
        (Some(Presence::Removed), Some(20), Some(11))
    );
    assert_eq!(c.set_media_removed_except(&[a], 21).unwrap(), 0);
    c.set_medium_presence(&a, Presence::Removed, 30).unwrap();
    assert_eq!(
        c.medium_by_label("A").unwrap().unwrap().last_seen_ns,
        Some(30)
    );
    c.set_medium_free_bytes(&a, 12345, 31).unwrap();
    assert!(c
        .set_medium_rotate_every("A", Some(Duration::from_secs(7 * 86400)))
        .unwrap());
    assert!(!c.set_medium_rotate_every("Z", None).unwrap());
    let m = c.medium_by_label("A").unwrap().unwrap();
    assert_eq!((m.free_bytes, m.free_ns), (Some(12345), Some(31)));
    assert_eq!(m.rotate_every, Some(Duration::from_secs(7 * 86400)));
    let v = serde_json::to_value(&m).unwrap();
    assert_eq!(
        (&v["rotate_every"], &v["presence"]),
        (&"7d".into(), &"removed".into())
    );
    c.set_medium_rotate_every("A", None).unwrap();
    assert_eq!(c.medium_by_label("A").unwrap().unwrap().rotate_every, None);
}

#[test]
fn drills_are_recorded_and_the_newest_one_found() {
    let (_d, p) = tmp();
    let mut c = Catalog::open(&p).unwrap();
    c.enroll_medium(&medium("A", "r")).unwrap();
    let a = MediumId::hash_of(b"A");
    let start = |medium_id, snap: &str, t| DrillStart {
        repo_id: rid("r"),
        medium_id,
        snapshot_id: sid(snap),
        job: Some("job1".into()),
        started_ns: t,
        mode: DrillMode::Sample,
    };
    let end = |t, outcome, bytes| DrillEnd {
        ended_ns: t,
        outcome,
        files: 2,
        bytes,
        seconds: 4.0,
        ready_seconds: 1.5,
        message: None,
    };
    let d1 = c.begin_drill(&start(Some(a), "s1", 10)).unwrap();
    assert!(c.finish_drill(d1, &end(11, DrillOutcome::Ok, 400)).unwrap());
    let d2 = c.begin_drill(&start(Some(a), "s2", 20)).unwrap();
    c.finish_drill(d2, &end(21, DrillOutcome::Damaged, 0))
        .unwrap();
    let d3 = c.begin_drill(&start(None, "s2", 30)).unwrap();
    assert!(!c.finish_drill(999, &end(1, DrillOutcome::Ok, 0)).unwrap());
    let r = rid("r");
    let on_a = |q: DrillQuery| c.newest_drill(&r, &q).unwrap().map(|d| d.id);
    assert_eq!(
        on_a(DrillQuery {
            source: Some(Some(&a)),
            ..Default::default()
        }),
        Some(d2)
    );
    let measured = c
        .newest_drill(
            &r,
            &DrillQuery {
                source: Some(Some(&a)),
                measured: true,
                ..Default::default()
            },
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        (measured.id, measured.bytes_per_second()),
        (d1, Some(100.0))
    );
    assert_eq!(
        on_a(DrillQuery {
            snapshot: Some(&sid("s1")),
            ..Default::default()
        }),
        Some(d1)
    );
    // A running drill is no result; the primary's are apart.
    assert_eq!(
        on_a(DrillQuery {
            source: Some(None),
            ..Default::default()
        }),
        None
    );
    assert_eq!(
        on_a(DrillQuery {
            source: Some(None),
            outcomes: &[DrillOutcome::Running],
            ..Default::default()
        }),
        Some(d3)
    );
    assert_eq!(c.drills(&r, 10).unwrap().len(), 3);
    // Forgetting the medium forgets its drills, not the primary's.
    c.forget_medium("A").unwrap();
    assert_eq!(c.drills(&r, 10).unwrap().len(), 1);
    // A drill from a medium that is not enrolled is refused.
    assert!(c.begin_drill(&start(Some(a), "s1", 40)).is_err());
}

#[test]
fn a_version_2_catalog_is_migrated_and_keeps_its_rows() {
    let (_d, p) = tmp();
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    {
        let conn = Connection::open(&p).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(MIGRATIONS[1]).unwrap();
        conn.execute_batch(
            "INSERT INTO media (id, label, repo_id, fs_uuid, fs_type, kind, pool, location,
             capacity, retention, enrolled_ns, state) VALUES
             ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'OLD',
              'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'u', 'ext4',
              'usb', 'p', 'offsite', 1, '{}', 1, 'safe to remove');
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let c = Catalog::open(&p).unwrap();
    assert_eq!(c.schema_version(), SCHEMA_VERSION);
    let m = c.medium_by_label("OLD").unwrap().unwrap();
    assert_eq!(
        (m.state, m.presence, m.free_bytes),
        (MediumState::SafeToRemove, None, None)
    );
    let indexes: Vec<String> = c
        .conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<SqlResult<_>>()
        .unwrap();
    for want in [
        "snapshots_by_job",
        "runs_by_job",
        "media_snapshots_by_snapshot",
        "drills_by_job",
    ] {
        assert!(indexes.iter().any(|i| i == want), "{want} in {indexes:?}");
    }
}

/// The status queries use their indexes, not scans of the big tables.
#[test]
fn status_queries_search_their_indexes() {
    let (_d, p) = tmp();
    let c = Catalog::open(&p).unwrap();
    for (sql, index) in [
        (
            "SELECT id, time_ns, job FROM snapshots WHERE repo_id = ?1 AND job = ?2
             AND time_ns <= ?3 ORDER BY time_ns DESC, id DESC LIMIT 1",
            "snapshots_by_job",
        ),
        (
            "SELECT medium_id, verified_ns FROM media_snapshots WHERE snapshot_id = ?1",
            "media_snapshots_by_snapshot",
        ),
        (
            "SELECT id FROM runs WHERE repo_id = ?1 AND job = ?2 ORDER BY id DESC LIMIT 1",
            "runs_by_job",
        ),
        (
            "SELECT EXISTS (SELECT 1 FROM media_files WHERE medium_id = ?1)",
            "sqlite_autoindex_media_files_1",
        ),
    ] {
        let plan: Vec<String> = c
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(
                rusqlite::params_from_iter(std::iter::repeat_n("x", sql.matches('?').count())),
                |r| r.get::<_, String>(3),
            )
            .unwrap()
            .collect::<SqlResult<_>>()
            .unwrap();
        assert!(plan.iter().any(|l| l.contains(index)), "{sql}: {plan:?}");
    }
}

/// A schema-3 catalog written by the bakfs before the file table (testdata/catalog-v3.sql)
/// migrates to 4, keeps its rows, and counts its snapshots' files as not recorded.
#[test]
fn a_version_3_catalog_is_migrated_and_its_snapshots_files_are_unrecorded() {
    let (_d, p) = tmp();
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let conn = Connection::open(&p).unwrap();
    // The dump creates the tables in alphabetical order, some before those they refer to.
    conn.pragma_update(None, "foreign_keys", false).unwrap();
    conn.execute_batch(include_str!("testdata/catalog-v3.sql"))
        .unwrap();
    drop(conn);
    let mut c = Catalog::open(&p).unwrap();
    assert_eq!(c.schema_version(), SCHEMA_VERSION);
    let repo = c.known_repository_ids().unwrap()[0];
    let snaps = c.snapshots(&repo).unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(c.runs(&repo, 10).unwrap().len(), 1);
    let m = c.medium_by_label("OFFSITE-1").unwrap().unwrap();
    assert_eq!(m.presence, Some(Presence::Removed));
    assert_eq!(c.medium_snapshots(&m.id).unwrap().len(), 1);
    assert!(c
        .file_hits(&repo, "/tmp/v3fix/src/etc/hosts")
        .unwrap()
        .is_empty());
    let u = c.unrecorded_snapshots(&repo).unwrap();
    assert_eq!((u.in_primary, u.only_on_media), (1, 1));
    // Recording the primary's snapshot (as `catalog rebuild` does) leaves only the medium's.
    let mut r = c
        .begin_files(&repo, &snaps[0].id, snaps[0].time_ns)
        .unwrap();
    r.add(
        "/tmp/v3fix/src/etc/hosts",
        &crate::format::id::ContentId::of(&[]),
        6,
        1,
    )
    .unwrap();
    r.commit().unwrap();
    assert_eq!(c.prune_files(&repo).unwrap(), 0);
    let u = c.unrecorded_snapshots(&repo).unwrap();
    assert_eq!((u.in_primary, u.only_on_media), (0, 1));
    assert_eq!(
        c.file_hits(&repo, "/tmp/v3fix/src/etc/hosts")
            .unwrap()
            .len(),
        1
    );
}

/// A content id is stored as its 32 bytes; any other blob is a `BadValue` naming the column.
#[test]
fn a_content_id_is_32_bytes_and_anything_else_is_refused() {
    let (_d, p) = tmp();
    let mut c = Catalog::open(&p).unwrap();
    let r = rid("r");
    c.record_snapshot(&snap("r", "s1", 1), &[]).unwrap();
    let content = crate::format::id::ContentId::of(&[BlobId::hash_of(b"x")]);
    let mut rec = c.begin_files(&r, &sid("s1"), 1).unwrap();
    rec.add("/a", &content, 1, 2).unwrap();
    rec.commit().unwrap();
    let stored: Vec<u8> = c
        .conn
        .query_row("SELECT content FROM file_versions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, content.0);
    assert_eq!(c.file_hits(&r, "/a").unwrap()[0].content, content);
    c.conn
        .execute("UPDATE file_versions SET content = x'0102'", [])
        .unwrap();
    let e = c.file_hits(&r, "/a").unwrap_err().to_string();
    assert!(e.contains("file_versions") && e.contains("0102"), "{e}");
}

#[test]
fn a_share_is_stored_with_its_path_and_mount_and_a_hung_run_is_closed() {
    let (_d, p) = tmp();
    let mut c = Catalog::open(&p).unwrap();
    let id = MediumId::hash_of(b"NAS");
    let share = Share {
        path: "/mnt/nas".into(),
        mount: Some(ShareMount {
            source: "root@nas:/backup".into(),
            options: "IdentityFile=/etc/bakfs/key".into(),
        }),
    };
    let rec = MediumRecord {
        fs_type: "fuse.sshfs".into(),
        share: Some(share.clone()),
        ..MediumRecord::enrolled(
            id,
            "NAS",
            rid("r"),
            &Share::fs_uuid(&id),
            MediumKind::Share,
            MediumLocation::Offsite,
            1,
        )
    };
    c.enroll_medium(&rec).unwrap();
    c.enroll_medium(&medium("USB", "r")).unwrap();
    assert_eq!(c.medium_by_label("NAS").unwrap().unwrap(), rec);
    assert_eq!(c.medium_by_label("USB").unwrap().unwrap().share, None);
    // Two shares cannot have one path.
    let twin = MediumRecord {
        share: Some(Share {
            mount: None,
            ..share
        }),
        ..MediumRecord::enrolled(
            MediumId::hash_of(b"NAS2"),
            "NAS2",
            rid("r"),
            "share-2",
            MediumKind::Share,
            MediumLocation::Onsite,
            1,
        )
    };
    assert!(c.enroll_medium(&twin).is_err());
    // A job that hangs on the share: its run is closed and the medium failed, with the reason.
    let run = c.begin_medium_run(&id, 5).unwrap();
    assert!(run > 0);
    assert_eq!(
        c.abandon_medium_run(&id, "stopped answering", 9).unwrap(),
        1
    );
    let r = &c.medium_runs(&id, 1).unwrap()[0];
    assert_eq!(
        (r.outcome, r.ended_ns, r.message.as_deref()),
        (CopyOutcome::Interrupted, Some(9), Some("stopped answering"))
    );
    let m = c.medium_by_label("NAS").unwrap().unwrap();
    assert_eq!(
        (m.state, m.message.as_deref()),
        (MediumState::Failed, Some("stopped answering"))
    );
    // The snapshot generation moves with backups.
    assert_eq!(c.snapshot_generation(&rid("r")).unwrap(), (0, None));
}

#[test]
fn a_tape_is_stored_with_its_set_status_place_and_file_positions() {
    let (_d, p) = tmp();
    let mut c = Catalog::open(&p).unwrap();
    let tape = |label: &str, seq: u32| MediumRecord {
        pool: "OFFSITE".into(),
        tape: Some(Tape {
            set: "5e7".into(),
            seq,
            status: TapeStatus::Writable,
            place: TapePlace::InDrive,
        }),
        ..MediumRecord::enrolled(
            MediumId::hash_of(label.as_bytes()),
            label,
            rid("r"),
            &format!("tape-{label}"),
            MediumKind::Tape,
            MediumLocation::Offsite,
            1,
        )
    };
    let (a, b) = (tape("A00002L9", 1), tape("A00001L9", 0));
    c.enroll_medium(&a).unwrap();
    c.enroll_medium(&b).unwrap();
    c.enroll_medium(&medium("USB", "r")).unwrap();
    assert_eq!(c.medium_by_label("A00002L9").unwrap().unwrap(), a);
    assert_eq!(c.medium_by_label("USB").unwrap().unwrap().tape, None);
    let set: Vec<String> = c
        .tape_set("5e7")
        .unwrap()
        .into_iter()
        .map(|m| m.label)
        .collect();
    assert_eq!(set, ["A00001L9", "A00002L9"]);

    let pack = |n: &str, file, block| TapeFile {
        kind: crate::repo::backend::FileKind::Pack,
        name: n.into(),
        size: 7,
        file,
        block,
        blake3: n.into(),
    };
    c.record_tape_files(
        &b.id,
        &[pack("bb", 3, 1), pack("aa", 1, 9), pack("cc", 1, 1)],
    )
    .unwrap();
    c.record_tape_files(&b.id, &[pack("bb", 5, 2)]).unwrap();
    let at: Vec<(String, u64, u64)> = c
        .tape_files(&b.id)
        .unwrap()
        .into_iter()
        .map(|f| (f.name, f.file, f.block))
        .collect();
    assert_eq!(
        at,
        [
            ("cc".into(), 1, 1),
            ("aa".into(), 1, 9),
            ("bb".into(), 5, 2)
        ]
    );

    // A daemon's start-up closes the runs of other media; its tape watchers close tapes'.
    let usb = c.medium_by_label("USB").unwrap().unwrap();
    c.begin_medium_run(&usb.id, 1).unwrap();
    c.begin_medium_run(&b.id, 1).unwrap();
    assert_eq!(c.abandon_medium_runs(2).unwrap(), 1);
    assert_eq!(
        c.medium_runs(&b.id, 1).unwrap()[0].outcome,
        CopyOutcome::Running
    );
    assert_eq!(c.abandon_tape_runs(3).unwrap(), 1);
    assert_eq!(
        c.medium_runs(&b.id, 1).unwrap()[0].outcome,
        CopyOutcome::Interrupted
    );

    c.set_tape_state(&b.id, Some(TapeStatus::Full), None)
        .unwrap();
    c.set_tape_state(&b.id, None, Some(TapePlace::Vault))
        .unwrap();
    let t = c
        .medium_by_label("A00001L9")
        .unwrap()
        .unwrap()
        .tape
        .unwrap();
    assert_eq!((t.status, t.place), (TapeStatus::Full, TapePlace::Vault));

    c.relabel_tape(&b.id, "n3w", 0, 99).unwrap();
    assert!(c.tape_files(&b.id).unwrap().is_empty());
    let t = c
        .medium_by_label("A00001L9")
        .unwrap()
        .unwrap()
        .tape
        .unwrap();
    assert_eq!((t.set.as_str(), t.status), ("n3w", TapeStatus::Writable));
    let m = c.medium_by_label("A00001L9").unwrap().unwrap();
    assert_eq!((m.enrolled_ns, m.last_written_ns, m.bytes), (99, None, 0));
    assert!(c.forget_medium("A00001L9").unwrap());
    assert!(c.tape_files(&b.id).unwrap().is_empty());
}
