//! The file table and `locate` against real SQLite files: recording, versions shared across
//! snapshots, copies on media, pruning, `--at`, the migration from schema 3.

#![allow(clippy::unwrap_used)]
use super::*;
use crate::catalog::{
    Catalog, FileCounts, MediumKind, MediumLocation, MediumRecord, MediumSnapshot, PackRecord,
    SnapshotRecord, Verification,
};
use crate::format::id::{BlobId, MediumId, RepoId, SnapshotId};
use crate::repo::walk::{for_each_change, Change};

fn rid() -> RepoId {
    RepoId::hash_of(b"repo")
}

fn sid(s: &str) -> SnapshotId {
    SnapshotId::hash_of(s.as_bytes())
}

fn content(s: &str) -> ContentId {
    ContentId::of(&[BlobId::hash_of(s.as_bytes())])
}

fn open() -> (tempfile::TempDir, Catalog) {
    let d = tempfile::tempdir().unwrap();
    let c = Catalog::open(&d.path().join("catalog.db")).unwrap();
    (d, c)
}

/// A snapshot `id` at time `t` in the primary, holding `files` (path, content text, mtime).
fn backup(c: &mut Catalog, id: &str, t: i64, files: &[(&str, &str, i64)]) -> FileCounts {
    let rec = SnapshotRecord {
        repo_id: rid(),
        id: sid(id),
        time: crate::timefmt::format_rfc3339(t),
        time_ns: t,
        host: "h".into(),
        paths: vec!["/etc".into()],
        tags: vec![],
        tree: BlobId::hash_of(id.as_bytes()),
        parent: None,
        job: Some("etc".into()),
        files: files.len() as u64,
        bytes: 0,
    };
    c.record_snapshot(&rec, &[] as &[PackRecord]).unwrap();
    let mut r = c.begin_files(&rid(), &sid(id), t).unwrap();
    for (p, text, mtime) in files {
        r.add(p, &content(text), text.len() as u64, *mtime).unwrap();
    }
    let n = r.commit().unwrap();
    c.prune_files(&rid()).unwrap();
    n
}

fn medium(c: &mut Catalog, label: &str, presence: Option<Presence>) -> MediumId {
    let id = MediumId::hash_of(label.as_bytes());
    c.enroll_medium(&MediumRecord::enrolled(
        id,
        label,
        rid(),
        &format!("uuid-{label}"),
        MediumKind::Usb,
        MediumLocation::Offsite,
        1,
    ))
    .unwrap();
    if let Some(p) = presence {
        c.set_medium_presence(&id, p, 5).unwrap();
    }
    id
}

fn hold(c: &mut Catalog, m: &MediumId, snap: &str, t: i64) {
    let s = MediumSnapshot {
        snapshot_id: sid(snap),
        time_ns: t,
        host: "h".into(),
        paths: vec!["/etc".into()],
        job: Some("etc".into()),
        verified_ns: t + 1,
    };
    c.record_medium_verified(m, &[], &[(s, vec![])], Verification::Written, t + 1)
        .unwrap();
}

fn count(c: &Catalog, table: &str) -> i64 {
    c.count_rows_for_tests(table)
}

#[test]
fn versions_are_stored_once_and_grouped_by_content() {
    let (_d, mut c) = open();
    let a = [("/etc/hosts", "v1", 10), ("/etc/passwd", "p", 10)];
    assert_eq!(
        backup(&mut c, "s1", 100, &a),
        FileCounts {
            files: 2,
            added: 2,
            new_paths: 2,
            new_versions: 2
        }
    );
    // Unchanged: nothing new but the snapshot's rows.
    assert_eq!(
        backup(&mut c, "s2", 200, &a),
        FileCounts {
            files: 2,
            added: 2,
            new_paths: 0,
            new_versions: 0
        }
    );
    // hosts changes, then is touched (same content, new mtime): one new version row each, but
    // locate shows two contents.
    backup(&mut c, "s3", 300, &[("/etc/hosts", "v2", 20), a[1]]);
    backup(&mut c, "s4", 400, &[("/etc/hosts", "v2", 30), a[1]]);
    assert_eq!(count(&c, "file_versions"), 4);
    assert_eq!(count(&c, "file_paths"), 2);
    assert_eq!(count(&c, "snapshot_files"), 8);

    let l = locate(&c, &rid(), "/etc/hosts", None).unwrap();
    assert!(l.found() && l.unrecorded.none());
    assert_eq!(l.versions.len(), 2);
    let (v1, v2) = (&l.versions[0], &l.versions[1]);
    assert_eq!((v1.content, v1.snapshots), (content("v1"), 2));
    assert_eq!((v1.first.id, v1.last.id), (sid("s1"), sid("s2")));
    assert_eq!((v2.snapshots, v2.mtime_ns, v2.size), (2, 30, 2));
    assert_eq!(v2.copies.len(), 1);
    assert_eq!(
        (v2.copies[0].place.as_str(), v2.copies[0].snapshots),
        ("primary", 2)
    );

    // --at: the version of the newest snapshot at or before the time.
    let at = locate(&c, &rid(), "/etc/hosts", Some(250)).unwrap();
    assert_eq!(at.versions.len(), 1);
    assert_eq!(at.versions[0].content, content("v1"));
    assert_eq!(at.current.as_ref().unwrap().id, sid("s2"));
    assert!(!locate(&c, &rid(), "/etc/hosts", Some(99)).unwrap().found());

    // A directory lists what is below it; an unknown path finds nothing.
    let dir = locate(&c, &rid(), "/etc", None).unwrap();
    let paths: Vec<&str> = dir.below.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["/etc/hosts", "/etc/passwd"]);
    assert_eq!((dir.below[0].versions, dir.below[0].snapshots), (2, 4));
    assert!(!locate(&c, &rid(), "/etc/shadow", None).unwrap().found());
    assert!(!locate(&c, &rid(), "/et", None).unwrap().found());
    // Another repository sees none of it.
    assert!(!locate(&c, &RepoId::hash_of(b"other"), "/etc/hosts", None)
        .unwrap()
        .found());
}

#[test]
fn rows_stay_while_a_medium_holds_the_snapshot_and_go_with_the_last_copy() {
    let (_d, mut c) = open();
    let m = medium(&mut c, "OFFSITE-2", Some(Presence::Removed));
    let shelf = medium(&mut c, "SHELF", Some(Presence::PluggedIn));
    backup(&mut c, "s1", 100, &[("/etc/hosts", "v1", 10)]);
    hold(&mut c, &m, "s1", 100);
    backup(&mut c, "s2", 200, &[("/etc/hosts", "v2", 20)]);
    hold(&mut c, &shelf, "s2", 200);

    // The primary forgets s1: the medium still holds it.
    c.remove_snapshot(&rid(), &sid("s1")).unwrap();
    assert_eq!(c.prune_files(&rid()).unwrap(), 0);
    let l = locate(&c, &rid(), "/etc/hosts", None).unwrap();
    assert_eq!(l.versions.len(), 2);
    let old = &l.versions[0].copies;
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].place, "OFFSITE-2");
    assert_eq!(old[0].action.as_deref(), Some("insert OFFSITE-2"));
    assert_eq!(old[0].verified_ns, Some(101));
    let new: Vec<(&str, Option<&str>)> = l.versions[1]
        .copies
        .iter()
        .map(|c| (c.place.as_str(), c.action.as_deref()))
        .collect();
    assert_eq!(new, [("primary", None), ("SHELF", None)]);

    // The medium lets s1 go too: its rows, and the version only it used, go.
    c.remove_medium_snapshots(&m, &[sid("s1")]).unwrap();
    assert_eq!(c.prune_files(&rid()).unwrap(), 1);
    assert_eq!(count(&c, "file_versions"), 1);
    assert_eq!(count(&c, "snapshot_files"), 1);
    assert_eq!(
        locate(&c, &rid(), "/etc/hosts", None)
            .unwrap()
            .versions
            .len(),
        1
    );
    // The primary forgets s2 while SHELF holds it; then SHELF is forgotten: all rows go.
    c.remove_snapshot(&rid(), &sid("s2")).unwrap();
    assert_eq!(c.prune_files(&rid()).unwrap(), 0);
    c.forget_medium("SHELF").unwrap();
    assert_eq!(c.prune_files(&rid()).unwrap(), 1);
    for t in [
        "file_snapshots",
        "snapshot_files",
        "file_versions",
        "file_paths",
    ] {
        assert_eq!(count(&c, t), 0, "{t}");
    }
}

#[test]
fn unrecorded_snapshots_are_counted_and_an_interrupted_record_leaves_nothing() {
    let (_d, mut c) = open();
    let m = medium(&mut c, "M", None);
    backup(&mut c, "s1", 100, &[("/etc/hosts", "v1", 10)]);
    // A snapshot recorded without its files (as by an older bakfs), one only on a medium.
    let mut rec = c.snapshots(&rid()).unwrap()[0].clone();
    rec.id = sid("s2");
    c.record_snapshot(&rec, &[]).unwrap();
    hold(&mut c, &m, "s0", 50);
    let u = c.unrecorded_snapshots(&rid()).unwrap();
    assert_eq!((u.in_primary, u.only_on_media), (1, 1));
    // A recorder dropped halfway records nothing, and the snapshot stays unrecorded.
    {
        let mut r = c.begin_files(&rid(), &sid("s2"), 100).unwrap();
        r.add("/etc/x", &content("x"), 1, 1).unwrap();
    }
    assert!(!c.files_recorded(&rid(), &sid("s2")).unwrap());
    assert_eq!(c.unrecorded_snapshots(&rid()).unwrap().in_primary, 1);
    assert_eq!(count(&c, "file_snapshots"), 1);
    // Recording again replaces the earlier record.
    backup(&mut c, "s1", 100, &[("/etc/hosts", "v1", 10)]);
    assert_eq!(count(&c, "snapshot_files"), 1);
}

#[test]
fn locate_searches_the_indexes() {
    let (_d, c) = open();
    // As in files.rs: the path, then each recorded snapshot, probed by the primary key (there
    // is no index by path since schema 7).
    for sql in [
        "SELECT fs.snapshot_id, fs.time_ns, v.content, v.size, v.mtime_ns
         FROM file_paths p CROSS JOIN file_snapshots fs
         CROSS JOIN snapshot_files sf ON sf.snapshot = fs.id AND sf.path_id = p.id
         JOIN file_versions v ON v.id = sf.version_id
         WHERE p.path = ?2 AND fs.repo_id = ?1 AND fs.files IS NOT NULL",
        "SELECT p.path, COUNT(DISTINCT v.content), COUNT(*), MAX(fs.time_ns)
         FROM file_paths p CROSS JOIN file_snapshots fs
         CROSS JOIN snapshot_files sf ON sf.snapshot = fs.id AND sf.path_id = p.id
         JOIN file_versions v ON v.id = sf.version_id
         WHERE p.path >= ?2 AND p.path < ?3 AND fs.repo_id = ?1 AND fs.files IS NOT NULL
         GROUP BY p.path ORDER BY p.path LIMIT 10",
    ] {
        let plan = c.query_plan_for_tests(sql);
        assert!(
            plan.iter()
                .any(|l| l.contains("sf USING PRIMARY KEY (snapshot=? AND path_id=?)")),
            "{sql}: {plan:?}"
        );
        assert!(
            !plan
                .iter()
                .any(|l| l.contains("B-TREE FOR GROUP BY") || l.contains("B-TREE FOR ORDER BY")),
            "the listing is taken in path order: {sql}: {plan:?}"
        );
        assert!(
            !plan.iter().any(|l| l.starts_with("SCAN")),
            "{sql}: {plan:?}"
        );
    }
}

/// Every file of a snapshot, walking all its trees: (path, content, size, mtime), by path.
fn all_files(
    repo: &crate::repo::Repository,
    s: &crate::format::Snapshot,
) -> Vec<(String, ContentId, u64, i64)> {
    let mut v = vec![];
    for_each_change::<crate::error::Error>(repo, s.tree, None, |c| {
        if let Change::File(p, n) = c {
            v.push((p.to_string(), ContentId::of(&n.content), n.size, n.mtime_ns));
        }
        Ok(())
    })
    .unwrap();
    v.sort();
    v
}

/// Recorded from the parent's rows and the changed directories only, a snapshot's files are
/// exactly those a full walk finds: changed, touched, removed files, a directory removed, a
/// directory become a file and a file become a directory, a new directory.
#[test]
fn recording_from_the_parent_gives_what_a_full_walk_gives() {
    use crate::testing::{backup_dir, mem_repo, source, write_tree};
    let (_d, src) = source(&[
        ("a/same", b"same"),
        ("a/changes", b"one"),
        ("a/touched", b"t"),
        ("a/goes", b"g"),
        ("gone/x", b"x"),
        ("gone/deep/y", b"y"),
        ("dir-to-file/z", b"z"),
        ("file-to-dir", b"f"),
        ("same-dir/k", b"k"),
    ]);
    let (_mem, repo) = mem_repo();
    let (_cd, mut c) = open();
    let r1 = backup_dir(&repo, &src, None);
    let rec = |c: &mut Catalog, r: &crate::backup::BackupReport| {
        c.record_snapshot(&snapshot_record(&repo, r), &[]).unwrap();
        record_files(c, &repo, &r.id, &r.snapshot).unwrap()
    };
    let n1 = rec(&mut c, &r1);
    assert_eq!((n1.files, n1.added), (9, 9));
    assert_eq!(
        c.snapshot_files_for_tests(&repo.id(), &r1.id),
        all_files(&repo, &r1.snapshot)
    );

    std::fs::write(src.join("a/changes"), b"two").unwrap();
    let t = std::fs::File::options()
        .write(true)
        .open(src.join("a/touched"))
        .unwrap();
    t.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
        .unwrap();
    std::fs::remove_file(src.join("a/goes")).unwrap();
    std::fs::remove_dir_all(src.join("gone")).unwrap();
    std::fs::remove_dir_all(src.join("dir-to-file")).unwrap();
    std::fs::write(src.join("dir-to-file"), b"now a file").unwrap();
    std::fs::remove_file(src.join("file-to-dir")).unwrap();
    write_tree(&src, &[("file-to-dir/inner", b"i"), ("new/n", b"n")]);
    let r2 = backup_dir(&repo, &src, Some((r1.id, r1.snapshot.clone())));
    assert_eq!(r2.snapshot.parent, Some(r1.id));
    let n2 = rec(&mut c, &r2);
    let want = all_files(&repo, &r2.snapshot);
    assert_eq!(c.snapshot_files_for_tests(&repo.id(), &r2.id), want);
    assert_eq!(n2.files, want.len() as u64);
    // Only the changed files were written: changes, touched, dir-to-file, inner, n.
    assert_eq!(n2.added, 5, "{n2:?}");
    // The first snapshot's record is untouched.
    assert_eq!(
        c.snapshot_files_for_tests(&repo.id(), &r1.id),
        all_files(&repo, &r1.snapshot)
    );

    // Unchanged: nothing written but the copy.
    let r3 = backup_dir(&repo, &src, Some((r2.id, r2.snapshot.clone())));
    let n3 = rec(&mut c, &r3);
    assert_eq!(
        (n3.files, n3.added, n3.new_paths, n3.new_versions),
        (want.len() as u64, 0, 0, 0)
    );
    assert_eq!(c.snapshot_files_for_tests(&repo.id(), &r3.id), want);
}

fn snapshot_record(
    repo: &crate::repo::Repository,
    r: &crate::backup::BackupReport,
) -> SnapshotRecord {
    SnapshotRecord {
        repo_id: repo.id(),
        id: r.id,
        time: String::new(),
        time_ns: r.snapshot.time_ns,
        host: "h".into(),
        paths: vec![],
        tags: vec![],
        tree: r.snapshot.tree,
        parent: r.snapshot.parent,
        job: None,
        files: 0,
        bytes: 0,
    }
}

/// Recorded while the backup runs, a snapshot's files are exactly those a walk of its trees
/// finds: nested directories, a name that is not UTF-8, an excluded file, a file given as a
/// path of its own; a later snapshot is recorded from that record as from any other.
#[test]
fn recording_during_the_backup_gives_what_a_full_walk_gives() {
    use crate::testing::{backup_dir, mem_repo, source};
    use std::os::unix::ffi::OsStrExt;
    let (_d, src) = source(&[
        ("a/one", b"1"),
        ("a/b/c/deep", b"deep"),
        ("a/skip.tmp", b"excluded"),
        ("top", b"top"),
        ("empty-dir/.keep", b""),
    ]);
    std::fs::write(src.join(std::ffi::OsStr::from_bytes(b"a/bad-\xff")), b"b").unwrap();
    let lone = tempfile::tempdir().unwrap();
    std::fs::write(lone.path().join("lone"), b"lone file").unwrap();
    let (_mem, repo) = mem_repo();
    let (_cd, mut c) = open();
    let opts = crate::backup::BackupOptions {
        paths: vec![src.clone(), lone.path().join("lone")],
        excludes: vec!["*.tmp".into()],
        host: "h".into(),
        time_ns: crate::timefmt::now_ns(),
        ..Default::default()
    };
    let (r, live) = record_during(
        &mut c,
        &repo.id(),
        opts.time_ns,
        |sink| {
            let mut o = opts.clone();
            o.on_tree = Some(sink);
            crate::backup::backup(&repo, &o, &crate::backup::Progress::default())
        },
        |r| r.id,
    );
    let r = r.unwrap();
    let n = live.unwrap().unwrap();
    c.record_snapshot(&snapshot_record(&repo, &r), &[]).unwrap();
    c.prune_files(&repo.id()).unwrap();
    let want = all_files(&repo, &r.snapshot);
    assert_eq!(want.len(), 6, "{want:?}");
    assert!(want.iter().any(|f| f.0.ends_with("/a/bad-\u{fffd}")));
    assert!(want.iter().any(|f| f.0.ends_with("/lone")));
    assert_eq!(c.snapshot_files_for_tests(&repo.id(), &r.id), want);
    assert_eq!((n.files, n.added, n.new_paths), (6, 6, 6));
    assert!(c.files_recorded(&repo.id(), &r.id).unwrap());

    // The next snapshot starts from this record: a/one changed, a/skip.tmp no longer excluded
    // and the lone file not backed up.
    std::fs::write(src.join("a/one"), b"changed").unwrap();
    let r2 = backup_dir(&repo, &src, Some((r.id, r.snapshot.clone())));
    c.record_snapshot(&snapshot_record(&repo, &r2), &[])
        .unwrap();
    let n2 = record_files(&mut c, &repo, &r2.id, &r2.snapshot).unwrap();
    assert_eq!((n2.added, n2.files), (2, 6));
    assert_eq!(
        c.snapshot_files_for_tests(&repo.id(), &r2.id),
        all_files(&repo, &r2.snapshot)
    );
}

/// A backup that fails leaves nothing recorded; a recording under way survives another
/// process's `prune_files` (it is not a snapshot yet), and one left by a process that died is
/// dropped once it is old.
#[test]
fn a_failed_backup_records_nothing_and_a_recording_under_way_is_kept() {
    use crate::testing::{mem_repo, source};
    let (_d, src) = source(&[("a/x", b"x"), ("b/y", b"y")]);
    let (_mem, repo) = mem_repo();
    let (cd, mut c) = open();
    let opts = crate::backup::BackupOptions {
        paths: vec![src.clone()],
        host: "h".into(),
        time_ns: crate::timefmt::now_ns(),
        ..Default::default()
    };
    let db = cd.path().join("catalog.db");
    let (r, live) = record_during(
        &mut c,
        &repo.id(),
        opts.time_ns,
        |sink| {
            let mut o = opts.clone();
            o.on_tree = Some(sink);
            crate::backup::backup(&repo, &o, &crate::backup::Progress::default())?;
            // Another process prunes the file table while this recording is under way.
            let mut other = Catalog::open(&db).unwrap();
            other.prune_files(&repo.id()).unwrap();
            let rows: i64 = other
                .conn_for_tests()
                .query_row("SELECT COUNT(*) FROM file_snapshots", [], |r| r.get(0))
                .unwrap();
            assert_eq!(rows, 1, "the recording under way was pruned");
            Err::<crate::backup::BackupReport, _>(crate::error::Error::Invalid("failed".into()))
        },
        |r| r.id,
    );
    assert!(r.is_err());
    assert!(live.is_none());
    let left: i64 = c
        .conn_for_tests()
        .query_row(
            "SELECT (SELECT COUNT(*) FROM file_snapshots) + (SELECT COUNT(*) FROM snapshot_files)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "a failed backup's recording was kept");

    // A recording a dead process left: kept while young, dropped when a week old.
    let mut rec = c
        .begin_files(&repo.id(), &sid("dead"), opts.time_ns)
        .unwrap();
    rec.add("/x", &content("x"), 1, 1).unwrap();
    std::mem::forget(rec);
    assert_eq!(c.prune_files(&repo.id()).unwrap(), 0);
    c.conn_for_tests()
        .execute(
            "UPDATE file_snapshots SET time_ns = ?1",
            [opts.time_ns - crate::catalog::RECORDING_KEPT_NS - 1],
        )
        .unwrap();
    assert_eq!(c.prune_files(&repo.id()).unwrap(), 1);
}
