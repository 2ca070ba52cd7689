//! Every typed value through SQLite, and catalogs written before the types.

#![allow(clippy::unwrap_used)]
use super::*;
use crate::catalog::{Catalog, CatalogError, CatalogResult, MediumRun, RunOutcome, SCHEMA_VERSION};
use rusqlite::types::Value;
use rusqlite::Connection;

/// The text each value is stored as. Changing one breaks every catalog in use: add a
/// migration instead (docs/catalog.md).
#[test]
fn stored_texts_never_change() {
    fn texts<T: Copy>(all: &[T], f: impl Fn(T) -> &'static str) -> Vec<&'static str> {
        all.iter().map(|v| f(*v)).collect()
    }
    assert_eq!(
        texts(BackupOutcome::ALL, BackupOutcome::as_str),
        ["running", "ok", "incomplete", "failed"]
    );
    assert_eq!(
        texts(MediumKind::ALL, MediumKind::as_str),
        ["usb", "disk", "share", "tape", "object storage"]
    );
    assert_eq!(
        texts(TapeStatus::ALL, TapeStatus::as_str),
        ["writable", "full", "expired", "damaged", "retired"]
    );
    assert_eq!(
        texts(TapePlace::ALL, TapePlace::as_str),
        ["in drive", "in library", "offline", "vault"]
    );
    assert_eq!(
        texts(MediumLocation::ALL, MediumLocation::as_str),
        ["onsite", "offsite"]
    );
    assert_eq!(
        texts(MediumState::ALL, MediumState::as_str),
        [
            "enrolled",
            "copying",
            "safe to remove",
            "removed during copy",
            "failed",
            "medium full",
            "refused"
        ]
    );
    assert_eq!(
        texts(CopyOutcome::ALL, CopyOutcome::as_str),
        [
            "running",
            "ok",
            "incomplete",
            "failed",
            "refused",
            "medium full",
            "cancelled",
            "interrupted"
        ]
    );
    assert_eq!(
        texts(Presence::ALL, Presence::as_str),
        ["plugged in", "removed"]
    );
    assert_eq!(
        texts(DrillOutcome::ALL, DrillOutcome::as_str),
        ["running", "ok", "damaged", "failed"]
    );
    assert_eq!(texts(DrillMode::ALL, DrillMode::as_str), ["sample", "full"]);
    assert_eq!(
        texts(&FileKind::ALL, FileKind::as_str),
        [
            "config",
            "key",
            "pack",
            "index",
            "snapshot",
            "lock",
            "condemned"
        ]
    );
}

/// Writes `v` into a column, reads it back, and checks the stored text.
fn round_trip<T: ToSql + FromSql + PartialEq + fmt::Debug>(conn: &Connection, v: &T, text: &str) {
    conn.execute("DELETE FROM t", []).unwrap();
    conn.execute("INSERT INTO t (v) VALUES (?1)", [v]).unwrap();
    let (back, raw): (T, String) = conn
        .query_row("SELECT v, v FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(&back, v);
    assert_eq!(raw, text);
}

#[test]
fn every_value_round_trips_through_sqlite_as_its_text() {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE t (v)").unwrap();
    for v in BackupOutcome::ALL {
        round_trip(&conn, v, v.as_str());
        assert_eq!(v.as_str().parse::<BackupOutcome>().unwrap(), *v);
        assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
    }
    for v in MediumKind::ALL {
        round_trip(&conn, v, v.as_str());
    }
    for v in MediumLocation::ALL {
        round_trip(&conn, v, v.as_str());
    }
    for v in MediumState::ALL {
        round_trip(&conn, v, v.as_str());
        let json = serde_json::to_string(v).unwrap();
        assert_eq!(serde_json::from_str::<MediumState>(&json).unwrap(), *v);
    }
    for v in CopyOutcome::ALL {
        round_trip(&conn, v, v.as_str());
    }
    for v in FileKind::ALL {
        round_trip(&conn, &v, v.as_str());
    }
    for v in Presence::ALL {
        round_trip(&conn, v, v.as_str());
    }
    for v in DrillOutcome::ALL {
        round_trip(&conn, v, v.as_str());
    }
    for v in DrillMode::ALL {
        round_trip(&conn, v, v.as_str());
    }
    let id = RepoId::random();
    round_trip(&conn, &id, &id.to_hex());
    let id = SnapshotId::random();
    round_trip(&conn, &id, &id.to_hex());
    let id = BlobId::random();
    round_trip(&conn, &id, &id.to_hex());
    let id = PackId::random();
    round_trip(&conn, &id, &id.to_hex());
    let id = MediumId::random();
    round_trip(&conn, &id, &id.to_hex());
    for (policy, text) in [
        (KeepPolicy::default(), "{}"),
        (
            KeepPolicy {
                last: Some(3),
                ..Default::default()
            },
            r#"{"keep_last":3}"#,
        ),
        (
            KeepPolicy {
                daily: Some(7),
                within: Some(std::time::Duration::from_secs(30 * 86400)),
                ..Default::default()
            },
            r#"{"keep_daily":7,"keep_within":"30d"}"#,
        ),
    ] {
        round_trip(&conn, &policy, text);
    }
    // Display pads like a string (the CLI's tables align on it).
    assert_eq!(
        format!("[{:<16}]", MediumState::SafeToRemove),
        "[safe to remove  ]"
    );
}

/// The catalog of `testdata/catalog-v2.sql`, written before the values were typed.
fn old_catalog() -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let conn = Connection::open(&path).unwrap();
    // The dump creates the tables in alphabetical order, some before those they refer to.
    conn.pragma_update(None, "foreign_keys", false).unwrap();
    conn.execute_batch(include_str!("../testdata/catalog-v2.sql"))
        .unwrap();
    drop(conn);
    let c = Catalog::open(&path).unwrap();
    (dir, c)
}

fn repo() -> RepoId {
    RepoId::hash_of(b"repo")
}

/// The medium of the fixture that holds files, snapshots and runs.
fn medium() -> MediumId {
    MediumId::hash_of(b"enrolled")
}

/// Every row of `table` (all columns but `skip`), in a stable order.
fn rows(c: &Catalog, table: &str, skip: &str) -> Vec<Vec<Value>> {
    let mut st = c.conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
    let keep: Vec<usize> = (0..st.column_count())
        .filter(|&i| st.column_name(i).unwrap() != skip)
        .collect();
    let mut out: Vec<Vec<Value>> = st
        .query_map([], |r| keep.iter().map(|&i| r.get(i)).collect())
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    out
}

#[test]
fn a_catalog_written_before_the_types_reads_and_is_written_the_same() {
    let (_d, old) = old_catalog();
    assert_eq!(old.schema_version(), SCHEMA_VERSION, "migrated on open");
    // Migration 3 added what status needs, not known for the old rows.
    assert!(old
        .media()
        .unwrap()
        .iter()
        .all(|m| m.presence.is_none() && m.free_bytes.is_none() && m.rotate_every.is_none()));
    let (repo, m) = (repo(), medium());
    let media = old.media().unwrap();
    let states: Vec<MediumState> = media.iter().map(|m| m.state).collect();
    assert_eq!(states, MediumState::ALL, "M0..M6 hold every state");
    // Every kind there was then (shares came with schema 5, tapes with 6, buckets with 8), and
    // no share path, tape or bucket.
    assert!(MediumKind::ALL
        .iter()
        .filter(|k| {
            !matches!(
                k,
                MediumKind::Share | MediumKind::Tape | MediumKind::ObjectStorage
            )
        })
        .all(|k| media.iter().any(|m| m.kind == *k)));
    assert!(media
        .iter()
        .all(|m| m.share.is_none() && m.tape.is_none() && m.bucket.is_none()));
    assert!(MediumLocation::ALL
        .iter()
        .all(|l| media.iter().any(|m| m.location == *l)));
    assert_eq!(media[0].retention.last, Some(3));
    let runs = old.runs(&repo, 100).unwrap();
    assert!(BackupOutcome::ALL
        .iter()
        .all(|o| runs.iter().any(|r| r.outcome == *o)));
    let medium_runs = old.medium_runs(&m, 100).unwrap();
    assert!(CopyOutcome::ALL
        .iter()
        .all(|o| medium_runs.iter().any(|r| r.outcome == *o)));
    let files = old.medium_files(&m).unwrap();
    assert_eq!(files.len(), 6);

    // Serialized as that version did (`media show --json`, `catalog runs --json`, ledger.json).
    let s2 = SnapshotId::hash_of(b"s2");
    let json = serde_json::json!({
        "snapshots": old.snapshots(&repo).unwrap(),
        "snapshot_packs": old.snapshot_packs(&repo, &s2).unwrap(),
        "runs": runs,
        "medium_snapshots": old.medium_snapshots(&m).unwrap(),
        "medium_files": files,
        "medium_runs": medium_runs,
    });
    let want: serde_json::Value =
        serde_json::from_str(include_str!("../testdata/catalog-v2.json")).unwrap();
    assert_eq!(json, want);

    // Written again by this code, every row holds the same text.
    let dir = tempfile::tempdir().unwrap();
    let mut new = Catalog::open(&dir.path().join("catalog.db")).unwrap();
    new.touch_repository(&repo, "/srv/bakfs", 1_780_000_000_000_000_000)
        .unwrap();
    for s in old.snapshots(&repo).unwrap() {
        let packs = old.snapshot_packs(&repo, &s.id).unwrap();
        new.record_snapshot(&s, &packs).unwrap();
    }
    let mut runs = old.runs(&repo, 100).unwrap();
    runs.reverse();
    for r in runs {
        let id = new
            .begin_run(&r.repo_id, r.job.as_deref(), r.started_ns)
            .unwrap();
        if let Some(ended_ns) = r.ended_ns {
            let o = RunOutcome {
                ended_ns,
                outcome: r.outcome,
                files: r.files,
                bytes_read: r.bytes_read,
                bytes_added: r.bytes_added,
                snapshot_id: r.snapshot_id,
                message: r.message,
            };
            new.finish_run(id, &o).unwrap();
        }
    }
    for rec in old.media().unwrap() {
        new.enroll_medium(&rec).unwrap();
    }
    let packs = old.medium_packs_by_snapshot(&m).unwrap();
    let snaps: Vec<_> = old
        .medium_snapshots(&m)
        .unwrap()
        .into_iter()
        .map(|s| {
            let p: Vec<PackId> = packs[&s.snapshot_id].iter().copied().collect();
            (s, p)
        })
        .collect();
    let verified = old.medium_by_label("M0").unwrap().unwrap().last_written_ns;
    new.record_medium_verified(
        &m,
        &old.medium_files(&m).unwrap(),
        &snaps,
        crate::catalog::Verification::Written,
        verified.unwrap(),
    )
    .unwrap();
    let mut medium_runs = old.medium_runs(&m, 100).unwrap();
    medium_runs.reverse();
    for r in medium_runs {
        let id = new.begin_medium_run(&r.medium_id, r.started_ns).unwrap();
        if r.outcome != CopyOutcome::Running {
            new.finish_medium_run(&MediumRun { id, ..r }).unwrap();
        }
    }
    for table in [
        "repositories",
        "snapshots",
        "snapshot_packs",
        "packs",
        "runs",
        "media",
        "media_snapshots",
        "media_snapshot_packs",
        "media_files",
        "media_runs",
    ] {
        assert_eq!(rows(&new, table, "id"), rows(&old, table, "id"), "{table}");
    }
    assert_eq!(rows(&new, "media", ""), rows(&old, "media", ""));
}

/// A value this code does not know, in each typed column, is an error naming the column
/// and the value.
#[test]
fn an_unknown_value_is_an_error_naming_column_and_value() {
    type Read = fn(&Catalog) -> CatalogResult<()>;
    let media: Read = |c| c.media().map(drop);
    let runs: Read = |c| c.runs(&repo(), 100).map(drop);
    let snapshots: Read = |c| c.snapshots(&repo()).map(drop);
    let cases: [(&str, &str, &str, Read); 18] = [
        ("media", "state", "exploded", media),
        ("media", "kind", "cassette", media),
        ("media", "location", "moon", media),
        ("media", "retention", r#"{"keep_forever":1}"#, media),
        ("media", "id", "M0-id", media),
        ("media", "repo_id", &"A".repeat(64), media),
        ("media", "presence", "maybe", media),
        ("media", "rotate_every_s", "-1", media),
        ("runs", "outcome", "crashed", runs),
        ("runs", "snapshot_id", "s1", runs),
        ("snapshots", "tree", "zz", snapshots),
        ("snapshots", "parent", "", snapshots),
        ("snapshots", "paths", "/etc", snapshots),
        ("snapshot_packs", "pack_id", "p1", |c| {
            for s in [b"s1", b"s2"] {
                c.snapshot_packs(&repo(), &SnapshotId::hash_of(s))?;
            }
            Ok(())
        }),
        ("media_runs", "outcome", "on fire", |c| {
            c.medium_runs(&medium(), 100).map(drop)
        }),
        ("media_files", "kind", "packs", |c| {
            c.medium_files(&medium()).map(drop)
        }),
        ("media_snapshots", "snapshot_id", "s2", |c| {
            c.medium_snapshots(&medium()).map(drop)
        }),
        ("media_snapshot_packs", "pack_id", "p2", |c| {
            c.medium_packs_by_snapshot(&medium()).map(drop)
        }),
    ];
    for (table, column, bad, read) in cases {
        let (_d, c) = old_catalog();
        c.conn.pragma_update(None, "foreign_keys", false).unwrap();
        // Every row of the table: whichever a reader meets first is bad.
        let sql = format!("UPDATE {table} SET {column} = ?1");
        if c.conn.execute(&sql, [bad]).is_err() {
            // A unique column: one row only.
            let sql = format!(
                "UPDATE {table} SET {column} = ?1 WHERE rowid IN (SELECT rowid FROM {table} LIMIT 1)"
            );
            c.conn.execute(&sql, [bad]).unwrap();
            if table == "media" {
                // media() reads by label: make the bad row the first.
                c.conn
                    .execute(
                        "UPDATE media SET label = '' WHERE rowid IN (SELECT rowid FROM media LIMIT 1)",
                        [],
                    )
                    .unwrap();
            }
        }
        let err = match read(&c) {
            Err(CatalogError::BadValue(b)) => b,
            Err(e) => panic!("{table}.{column} = {bad:?}: unexpected error {e}"),
            Ok(()) => panic!("{table}.{column} = {bad:?} was accepted"),
        };
        assert_eq!(
            (err.column.as_str(), err.value.as_str()),
            (format!("{table}.{column}").as_str(), bad),
            "{err}"
        );
        let msg = CatalogError::BadValue(err).to_string();
        assert!(
            msg.contains(&format!("{table}.{column}")) && msg.contains(&format!("{bad:?}")),
            "{msg}"
        );
    }
    // A value of the wrong type names the column too.
    let (_d, c) = old_catalog();
    c.conn.execute("UPDATE media SET state = 7", []).unwrap();
    let e = c.media().unwrap_err().to_string();
    assert!(e.contains("state"), "{e}");
}
