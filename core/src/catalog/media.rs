//! The media ledger (schema version 2): enrolled media, what each one holds (only what was read
//! back and verified), and the history of copy runs. Unlike the snapshot tables this cannot be
//! rebuilt from the repository; a copy of each medium's part is mirrored onto the medium.
//!
//! ```text
//! media(id PK /* medium id, 32 hex */, label UNIQUE, repo_id, fs_uuid UNIQUE, fs_type,
//!       serial NULL, kind, pool, location /* onsite|offsite */, capacity, retention /* JSON */,
//!       enrolled_ns, last_seen_ns NULL, last_written_ns NULL, last_verified_ns NULL,
//!       state, message NULL, bytes)
//! media_snapshots(medium_id, snapshot_id, time_ns, host, paths /* JSON */, job NULL,
//!       verified_ns, PK(medium_id, snapshot_id))
//! media_snapshot_packs(medium_id, snapshot_id, pack_id) -> media_snapshots ON DELETE CASCADE
//! media_files(medium_id, kind /* pack|index|snapshot|key|config */, name, size, verified_ns)
//! media_runs(id PK, medium_id, started_ns, ended_ns NULL, outcome, snapshots_added,
//!       snapshots_removed, files_written, bytes_written, bytes_verified, seconds, message NULL)
//! ```
//! Every table refers to `media` with ON DELETE CASCADE: `bakfs media forget` drops it all.

use std::collections::{HashMap, HashSet};

use rusqlite::{params, OptionalExtension, Row, Transaction};
use serde::Serialize;

use super::{from_json, to_json, Catalog, CatalogResult};

/// An enrolled medium.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediumRecord {
    pub id: String,
    pub label: String,
    pub repo_id: String,
    pub fs_uuid: String,
    pub fs_type: String,
    pub serial: Option<String>,
    /// `usb`, `disk`, `tape` or `nas`.
    pub kind: String,
    pub pool: String,
    /// `onsite` or `offsite`.
    pub location: String,
    /// Bytes of the filesystem when enrolled.
    pub capacity: i64,
    /// The retention policy, as the JSON of [`crate::forget::KeepPolicy`].
    pub retention: String,
    pub enrolled_ns: i64,
    pub last_seen_ns: Option<i64>,
    pub last_written_ns: Option<i64>,
    /// Every file recorded on the medium was read back right at or after this time (the oldest
    /// of their checks); `None` while it holds nothing.
    pub last_verified_ns: Option<i64>,
    /// `enrolled`, `copying`, `safe to remove`, `failed`, `medium full`, `refused`.
    pub state: String,
    pub message: Option<String>,
    /// Bytes of verified bakfs files on the medium.
    pub bytes: i64,
}

/// A snapshot held (and verified) on a medium.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediumSnapshot {
    pub snapshot_id: String,
    pub time_ns: i64,
    pub host: String,
    pub paths: Vec<String>,
    pub job: Option<String>,
    pub verified_ns: i64,
}

/// A repository file held (and verified) on a medium.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct MediumFile {
    /// `pack`, `index`, `snapshot`, `key` or `config`.
    pub kind: String,
    pub name: String,
    pub size: i64,
    pub verified_ns: i64,
}

/// One copy run onto a medium.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MediumRun {
    pub id: i64,
    pub medium_id: String,
    pub started_ns: i64,
    pub ended_ns: Option<i64>,
    /// `running`, `ok`, `incomplete`, `failed`, `refused`, `medium full`, `cancelled`,
    /// `interrupted`.
    pub outcome: String,
    pub snapshots_added: i64,
    pub snapshots_removed: i64,
    pub files_written: i64,
    pub bytes_written: i64,
    pub bytes_verified: i64,
    pub seconds: f64,
    pub message: Option<String>,
}

const MEDIUM_COLUMNS: &str = "id, label, repo_id, fs_uuid, fs_type, serial, kind, pool, location,
    capacity, retention, enrolled_ns, last_seen_ns, last_written_ns, last_verified_ns, state,
    message, bytes";

fn medium_from_row(r: &Row<'_>) -> rusqlite::Result<MediumRecord> {
    Ok(MediumRecord {
        id: r.get(0)?,
        label: r.get(1)?,
        repo_id: r.get(2)?,
        fs_uuid: r.get(3)?,
        fs_type: r.get(4)?,
        serial: r.get(5)?,
        kind: r.get(6)?,
        pool: r.get(7)?,
        location: r.get(8)?,
        capacity: r.get(9)?,
        retention: r.get(10)?,
        enrolled_ns: r.get(11)?,
        last_seen_ns: r.get(12)?,
        last_written_ns: r.get(13)?,
        last_verified_ns: r.get(14)?,
        state: r.get(15)?,
        message: r.get(16)?,
        bytes: r.get(17)?,
    })
}

/// Recomputes a medium's bytes and `last_verified_ns`: the oldest check of any file on it, so
/// "last verified" means every byte recorded on the medium was read back right since then.
fn refresh_totals(tx: &Transaction, medium_id: &str) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE media SET
           bytes = (SELECT COALESCE(SUM(size), 0) FROM media_files WHERE medium_id = ?1),
           last_verified_ns = (SELECT MIN(verified_ns) FROM media_files WHERE medium_id = ?1)
         WHERE id = ?1",
        [medium_id],
    )
    .map(drop)
}

impl Catalog {
    /// Adds a medium. The label and the filesystem UUID must be new.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`] (a UNIQUE constraint if the label or UUID is taken).
    pub fn enroll_medium(&mut self, m: &MediumRecord) -> CatalogResult<()> {
        self.write(|tx| {
            tx.execute(
                &format!("INSERT INTO media ({MEDIUM_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)"),
                params![
                    m.id, m.label, m.repo_id, m.fs_uuid, m.fs_type, m.serial, m.kind, m.pool,
                    m.location, m.capacity, m.retention, m.enrolled_ns, m.last_seen_ns,
                    m.last_written_ns, m.last_verified_ns, m.state, m.message, m.bytes
                ],
            )
            .map(drop)
        })
    }

    /// Every enrolled medium, by label.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn media(&self) -> CatalogResult<Vec<MediumRecord>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {MEDIUM_COLUMNS} FROM media ORDER BY label"
        ))?;
        let rows = st.query_map([], medium_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The medium with this label, if any.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn medium_by_label(&self, label: &str) -> CatalogResult<Option<MediumRecord>> {
        self.medium_where("label", label)
    }

    /// The medium with this filesystem UUID, if any.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn medium_by_uuid(&self, uuid: &str) -> CatalogResult<Option<MediumRecord>> {
        self.medium_where("fs_uuid", uuid)
    }

    fn medium_where(&self, column: &str, value: &str) -> CatalogResult<Option<MediumRecord>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {MEDIUM_COLUMNS} FROM media WHERE {column} = ?1"
        ))?;
        Ok(st.query_row([value], medium_from_row).optional()?)
    }

    /// Sets a medium's location. Returns false if there is no such medium.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn set_medium_location(&mut self, label: &str, location: &str) -> CatalogResult<bool> {
        self.write(|tx| {
            tx.execute(
                "UPDATE media SET location = ?2 WHERE label = ?1",
                params![label, location],
            )
            .map(|n| n > 0)
        })
    }

    /// Forgets a medium and everything recorded about it. Returns false if there is none.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn forget_medium(&mut self, label: &str) -> CatalogResult<bool> {
        self.write(|tx| {
            tx.execute("DELETE FROM media WHERE label = ?1", [label])
                .map(|n| n > 0)
        })
    }

    /// Records a medium's state (and when it was last seen).
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn set_medium_state(
        &mut self,
        id: &str,
        state: &str,
        message: Option<&str>,
        seen_ns: i64,
    ) -> CatalogResult<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE media SET state = ?2, message = ?3, last_seen_ns = ?4 WHERE id = ?1",
                params![id, state, message, seen_ns],
            )
            .map(drop)
        })
    }

    /// The snapshots verified on a medium, oldest first.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn medium_snapshots(&self, medium_id: &str) -> CatalogResult<Vec<MediumSnapshot>> {
        let mut st = self.conn.prepare_cached(
            "SELECT snapshot_id, time_ns, host, paths, job, verified_ns FROM media_snapshots
             WHERE medium_id = ?1 ORDER BY time_ns, snapshot_id",
        )?;
        let rows = st.query_map([medium_id], |r| {
            Ok(MediumSnapshot {
                snapshot_id: r.get(0)?,
                time_ns: r.get(1)?,
                host: r.get(2)?,
                paths: from_json(r, 3)?,
                job: r.get(4)?,
                verified_ns: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The packs each snapshot on a medium needs, by snapshot id.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn medium_packs_by_snapshot(
        &self,
        medium_id: &str,
    ) -> CatalogResult<HashMap<String, HashSet<String>>> {
        let mut st = self.conn.prepare_cached(
            "SELECT snapshot_id, pack_id FROM media_snapshot_packs WHERE medium_id = ?1",
        )?;
        let mut out: HashMap<String, HashSet<String>> = HashMap::new();
        let rows = st.query_map([medium_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        for row in rows {
            let (snap, pack): (String, String) = row?;
            out.entry(snap).or_default().insert(pack);
        }
        Ok(out)
    }

    /// The files verified on a medium.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn medium_files(&self, medium_id: &str) -> CatalogResult<Vec<MediumFile>> {
        let mut st = self.conn.prepare_cached(
            "SELECT kind, name, size, verified_ns FROM media_files WHERE medium_id = ?1
             ORDER BY kind, name",
        )?;
        let rows = st.query_map([medium_id], |r| {
            Ok(MediumFile {
                kind: r.get(0)?,
                name: r.get(1)?,
                size: r.get(2)?,
                verified_ns: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records, in one transaction, files and snapshots that were written to a medium and read
    /// back verified at `verified_ns`. A snapshot's pack list replaces any earlier one.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`] (nothing is recorded then).
    pub fn record_medium_verified(
        &mut self,
        medium_id: &str,
        files: &[MediumFile],
        snapshots: &[(MediumSnapshot, Vec<String>)],
        wrote: bool,
        verified_ns: i64,
    ) -> CatalogResult<()> {
        self.write(|tx| {
            let mut f = tx.prepare_cached(
                "INSERT INTO media_files (medium_id, kind, name, size, verified_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(medium_id, kind, name)
                 DO UPDATE SET size = excluded.size, verified_ns = excluded.verified_ns",
            )?;
            for x in files {
                f.execute(params![medium_id, x.kind, x.name, x.size, x.verified_ns])?;
            }
            let mut s = tx.prepare_cached(
                "INSERT INTO media_snapshots (medium_id, snapshot_id, time_ns, host, paths, job,
                 verified_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(medium_id, snapshot_id) DO UPDATE SET verified_ns = excluded.verified_ns",
            )?;
            let mut p = tx.prepare_cached(
                "INSERT OR IGNORE INTO media_snapshot_packs (medium_id, snapshot_id, pack_id)
                 VALUES (?1, ?2, ?3)",
            )?;
            for (snap, packs) in snapshots {
                s.execute(params![
                    medium_id,
                    snap.snapshot_id,
                    snap.time_ns,
                    snap.host,
                    to_json(&snap.paths)?,
                    snap.job,
                    snap.verified_ns
                ])?;
                tx.execute(
                    "DELETE FROM media_snapshot_packs WHERE medium_id = ?1 AND snapshot_id = ?2",
                    params![medium_id, snap.snapshot_id],
                )?;
                for pack in packs {
                    p.execute(params![medium_id, snap.snapshot_id, pack])?;
                }
            }
            if wrote {
                tx.execute(
                    "UPDATE media SET last_written_ns = ?2 WHERE id = ?1",
                    params![medium_id, verified_ns],
                )?;
            }
            refresh_totals(tx, medium_id)
        })
    }

    /// Forgets that a medium holds these snapshots (before their manifests are deleted from it).
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn remove_medium_snapshots(
        &mut self,
        medium_id: &str,
        ids: &[String],
    ) -> CatalogResult<()> {
        self.write(|tx| {
            for id in ids {
                tx.execute(
                    "DELETE FROM media_snapshots WHERE medium_id = ?1 AND snapshot_id = ?2",
                    params![medium_id, id],
                )?;
                tx.execute(
                    "DELETE FROM media_files WHERE medium_id = ?1 AND kind = 'snapshot' AND name = ?2",
                    params![medium_id, id],
                )?;
            }
            refresh_totals(tx, medium_id)
        })
    }

    /// Forgets that a medium holds these files (before they are deleted from it, or after
    /// they were found missing or wrong).
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn remove_medium_files(
        &mut self,
        medium_id: &str,
        files: &[(String, String)],
    ) -> CatalogResult<()> {
        self.write(|tx| {
            for (kind, name) in files {
                tx.execute(
                    "DELETE FROM media_files WHERE medium_id = ?1 AND kind = ?2 AND name = ?3",
                    params![medium_id, kind, name],
                )?;
            }
            refresh_totals(tx, medium_id)
        })
    }

    /// Records the start of a copy run and returns its id.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn begin_medium_run(&mut self, medium_id: &str, started_ns: i64) -> CatalogResult<i64> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO media_runs (medium_id, started_ns, outcome) VALUES (?1, ?2, 'running')",
                params![medium_id, started_ns],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Records how a copy run ended (`r.id` names it).
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn finish_medium_run(&mut self, r: &MediumRun) -> CatalogResult<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE media_runs SET ended_ns = ?2, outcome = ?3, snapshots_added = ?4,
                 snapshots_removed = ?5, files_written = ?6, bytes_written = ?7,
                 bytes_verified = ?8, seconds = ?9, message = ?10 WHERE id = ?1",
                params![
                    r.id,
                    r.ended_ns,
                    r.outcome,
                    r.snapshots_added,
                    r.snapshots_removed,
                    r.files_written,
                    r.bytes_written,
                    r.bytes_verified,
                    r.seconds,
                    r.message
                ],
            )
            .map(drop)
        })
    }

    /// The newest `limit` copy runs of a medium, newest first. Runs left `running` by a killed
    /// daemon stay so; [`Catalog::abandon_medium_runs`] closes them.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn medium_runs(&self, medium_id: &str, limit: usize) -> CatalogResult<Vec<MediumRun>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, medium_id, started_ns, ended_ns, outcome, snapshots_added,
             snapshots_removed, files_written, bytes_written, bytes_verified, seconds, message
             FROM media_runs WHERE medium_id = ?1 ORDER BY started_ns DESC, id DESC LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = st.query_map(params![medium_id, limit], |r| {
            Ok(MediumRun {
                id: r.get(0)?,
                medium_id: r.get(1)?,
                started_ns: r.get(2)?,
                ended_ns: r.get(3)?,
                outcome: r.get(4)?,
                snapshots_added: r.get(5)?,
                snapshots_removed: r.get(6)?,
                files_written: r.get(7)?,
                bytes_written: r.get(8)?,
                bytes_verified: r.get(9)?,
                seconds: r.get(10)?,
                message: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The newest `limit` copy runs of a medium and how many it has had, read at one moment
    /// (a run starting between two separate reads would make them disagree).
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn medium_runs_and_count(
        &self,
        medium_id: &str,
        limit: usize,
    ) -> CatalogResult<(Vec<MediumRun>, i64)> {
        let tx = self.conn.unchecked_transaction()?;
        let runs = self.medium_runs(medium_id, limit)?;
        let n = self.medium_run_count(medium_id)?;
        tx.finish()?;
        Ok((runs, n))
    }

    /// How many copy runs a medium has had.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn medium_run_count(&self, medium_id: &str) -> CatalogResult<i64> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM media_runs WHERE medium_id = ?1",
            [medium_id],
            |r| r.get(0),
        )?)
    }

    /// Marks runs still `running` as `interrupted` (a daemon starting after a crash).
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn abandon_medium_runs(&mut self, now_ns: i64) -> CatalogResult<usize> {
        self.write(|tx| {
            tx.execute(
                "UPDATE media_runs SET outcome = 'interrupted', ended_ns = ?1,
                 message = 'the daemon stopped during the run' WHERE outcome = 'running'",
                [now_ns],
            )
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn medium(label: &str, uuid: &str) -> MediumRecord {
        MediumRecord {
            id: format!("{label}-id"),
            label: label.into(),
            repo_id: "r".into(),
            fs_uuid: uuid.into(),
            fs_type: "ext4".into(),
            serial: None,
            kind: "usb".into(),
            pool: "offsite".into(),
            location: "offsite".into(),
            capacity: 1 << 30,
            retention: "{\"keep_last\":2}".into(),
            enrolled_ns: 1,
            last_seen_ns: None,
            last_written_ns: None,
            last_verified_ns: None,
            state: "enrolled".into(),
            message: None,
            bytes: 0,
        }
    }

    #[test]
    fn ledger_round_trip_and_cascade() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("c.db")).unwrap();
        c.enroll_medium(&medium("A", "u1")).unwrap();
        assert!(
            c.enroll_medium(&medium("A", "u2")).is_err(),
            "label is unique"
        );
        assert!(
            c.enroll_medium(&medium("B", "u1")).is_err(),
            "uuid is unique"
        );
        let snap = MediumSnapshot {
            snapshot_id: "s1".into(),
            time_ns: 5,
            host: "h".into(),
            paths: vec!["/etc".into()],
            job: None,
            verified_ns: 9,
        };
        let file = |kind: &str, name: &str, size| MediumFile {
            kind: kind.into(),
            name: name.into(),
            size,
            verified_ns: 9,
        };
        c.record_medium_verified(
            "A-id",
            &[file("pack", "p1", 100), file("snapshot", "s1", 10)],
            &[(snap.clone(), vec!["p1".into()])],
            true,
            9,
        )
        .unwrap();
        let m = c.medium_by_uuid("u1").unwrap().unwrap();
        assert_eq!((m.bytes, m.last_written_ns), (110, Some(9)));
        assert_eq!(m.last_verified_ns, Some(9));
        assert_eq!(c.medium_snapshots("A-id").unwrap(), vec![snap]);
        assert!(c.medium_packs_by_snapshot("A-id").unwrap()["s1"].contains("p1"));
        // Checked again later: last verified is the oldest check of any file.
        let mut again = file("pack", "p1", 100);
        again.verified_ns = 20;
        c.record_medium_verified("A-id", &[again], &[], false, 20)
            .unwrap();
        let m = c.medium_by_uuid("u1").unwrap().unwrap();
        assert_eq!((m.last_written_ns, m.last_verified_ns), (Some(9), Some(9)));
        c.remove_medium_snapshots("A-id", &["s1".into()]).unwrap();
        assert!(c.medium_packs_by_snapshot("A-id").unwrap().is_empty());
        assert_eq!(c.medium_files("A-id").unwrap().len(), 1);
        let m = c.medium_by_uuid("u1").unwrap().unwrap();
        assert_eq!(
            (m.bytes, m.last_verified_ns),
            (100, Some(20)),
            "totals follow removals"
        );
        let run = c.begin_medium_run("A-id", 3).unwrap();
        assert_eq!(c.abandon_medium_runs(4).unwrap(), 1);
        assert_eq!(c.medium_runs("A-id", 5).unwrap()[0].id, run);
        assert!(c.forget_medium("A").unwrap());
        assert!(c.medium_files("A-id").unwrap().is_empty());
        assert!(c.medium_runs("A-id", 5).unwrap().is_empty());
        assert!(!c.forget_medium("A").unwrap());
    }
}
