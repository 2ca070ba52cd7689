//! What `bakfs status` reads (schema version 3): restore drills, and the queries that answer
//! "which copies of a job's newest snapshot exist" from the catalog alone, each one an index
//! lookup so that a catalog of 100 media, 10,000 snapshots and a million recorded files answers
//! in milliseconds.
//!
//! ```text
//! drills(id PK, repo_id, medium_id NULL /* NULL: the primary */, snapshot_id, job NULL,
//!        started_ns, ended_ns NULL, outcome /* DrillOutcome */, mode /* DrillMode */,
//!        files, bytes, seconds REAL, ready_seconds REAL, message NULL)
//!        FK medium_id -> media ON DELETE CASCADE; indexes (medium_id, id), (repo_id, job, id)
//! media: + presence NULL /* Presence */, presence_ns NULL, free_bytes NULL, free_ns NULL,
//!        rotate_every_s NULL
//! indexes: snapshots(repo_id, job, time_ns), runs(repo_id, job, id),
//!          media_snapshots(snapshot_id), media_snapshots(job, time_ns)
//! ```
//!
//! A drill is written by `bakfs drill` (`crate::drill`): [`Catalog::begin_drill`] when it starts,
//! [`Catalog::finish_drill`] when it ends. `files`, `bytes` and `seconds` are what was restored
//! and how long it took; `ready_seconds` how long making the medium ready took (mounting,
//! loading a tape), so that a restore's time is estimated as `ready_seconds + bytes / rate`.

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::types::{self, Cols};
use super::{snapshot_from_row, Catalog, CatalogResult, RunRecord, SnapshotRecord};
use super::{CopyOutcome, DrillMode, DrillOutcome, SNAPSHOT_COLUMNS};
use crate::format::id::{MediumId, RepoId, SnapshotId};

/// A repository the catalog has seen (`repositories`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepositoryRecord {
    #[serde(serialize_with = "types::hex")]
    pub id: RepoId,
    /// Its location as given to the command that recorded it.
    pub location: String,
    pub last_seen_ns: i64,
}

/// The start of a restore drill, for [`Catalog::begin_drill`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillStart {
    #[serde(serialize_with = "types::hex")]
    pub repo_id: RepoId,
    /// The medium restored from; `None`: the primary repository.
    #[serde(serialize_with = "types::hex_opt")]
    pub medium_id: Option<MediumId>,
    #[serde(serialize_with = "types::hex")]
    pub snapshot_id: SnapshotId,
    pub job: Option<String>,
    pub started_ns: i64,
    pub mode: DrillMode,
}

/// How a drill ended, for [`Catalog::finish_drill`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillEnd {
    pub ended_ns: i64,
    /// `Ok`, `Damaged` or `Failed`.
    pub outcome: DrillOutcome,
    /// Files and bytes restored and checked.
    pub files: u64,
    pub bytes: u64,
    /// Seconds the restore took, the medium being ready.
    pub seconds: f64,
    /// Seconds making the medium ready took (mount, tape load).
    pub ready_seconds: f64,
    pub message: Option<String>,
}

/// One drill as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillRecord {
    pub id: i64,
    #[serde(serialize_with = "types::hex")]
    pub repo_id: RepoId,
    #[serde(serialize_with = "types::hex_opt")]
    pub medium_id: Option<MediumId>,
    #[serde(serialize_with = "types::hex")]
    pub snapshot_id: SnapshotId,
    pub job: Option<String>,
    pub started_ns: i64,
    pub ended_ns: Option<i64>,
    pub outcome: DrillOutcome,
    pub mode: DrillMode,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub ready_seconds: f64,
    pub message: Option<String>,
}

impl DrillRecord {
    /// The measured restore rate in bytes per second, if this drill restored something.
    pub fn bytes_per_second(&self) -> Option<f64> {
        (self.outcome == DrillOutcome::Ok && self.bytes > 0 && self.seconds > 0.0)
            .then(|| self.bytes as f64 / self.seconds)
    }
}

/// Which drills [`Catalog::newest_drill`] looks at.
#[derive(Debug, Clone, Default)]
pub struct DrillQuery<'a> {
    /// Where the drill restored from: `Some(None)` the primary, `Some(Some(m))` medium `m`,
    /// `None` anywhere.
    pub source: Option<Option<&'a MediumId>>,
    pub job: Option<&'a str>,
    pub snapshot: Option<&'a SnapshotId>,
    /// Only these outcomes (empty: any but `running`).
    pub outcomes: &'a [DrillOutcome],
    /// Only drills that measured a restore rate (ok, bytes and seconds above 0; `outcomes` is
    /// then ignored).
    pub measured: bool,
}

/// A snapshot the primary or a medium holds, as the status queries see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewestSnapshot {
    #[serde(serialize_with = "types::hex")]
    pub snapshot_id: SnapshotId,
    pub time_ns: i64,
    pub job: Option<String>,
}

impl From<super::MediumSnapshot> for NewestSnapshot {
    fn from(s: super::MediumSnapshot) -> Self {
        NewestSnapshot {
            snapshot_id: s.snapshot_id,
            time_ns: s.time_ns,
            job: s.job,
        }
    }
}

impl From<super::SnapshotRecord> for NewestSnapshot {
    fn from(s: super::SnapshotRecord) -> Self {
        NewestSnapshot {
            snapshot_id: s.id,
            time_ns: s.time_ns,
            job: s.job,
        }
    }
}

/// A medium holding a snapshot, verified at `verified_ns`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediumHolding {
    #[serde(serialize_with = "types::hex")]
    pub medium_id: MediumId,
    pub verified_ns: i64,
}

const DRILL_COLUMNS: &str = "id, repo_id, medium_id, snapshot_id, job, started_ns, ended_ns,
    outcome, mode, files, bytes, seconds, ready_seconds, message";

fn drill_from_row(r: &Row<'_>) -> rusqlite::Result<DrillRecord> {
    let c = Cols::new(r, "drills");
    Ok(DrillRecord {
        id: c.get(0)?,
        repo_id: c.get(1)?,
        medium_id: c.get(2)?,
        snapshot_id: c.get(3)?,
        job: c.get(4)?,
        started_ns: c.get(5)?,
        ended_ns: c.get(6)?,
        outcome: c.get(7)?,
        mode: c.get(8)?,
        files: c.get(9)?,
        bytes: c.get(10)?,
        seconds: c.get(11)?,
        ready_seconds: c.get(12)?,
        message: c.get(13)?,
    })
}

fn newest_from_row(r: &Row<'_>, table: &'static str) -> rusqlite::Result<NewestSnapshot> {
    let c = Cols::new(r, table);
    Ok(NewestSnapshot {
        snapshot_id: c.get(0)?,
        time_ns: c.get(1)?,
        job: c.get(2)?,
    })
}

impl Catalog {
    /// Runs `f` inside one read transaction, so that everything it reads is of one moment
    /// (a writer committing meanwhile is not seen halfway).
    ///
    /// # Errors
    /// Those of `f`, or [`super::CatalogError::Sql`] if the transaction cannot begin.
    pub fn consistent<T>(&self, f: impl FnOnce(&Catalog) -> CatalogResult<T>) -> CatalogResult<T> {
        let tx = self.conn.unchecked_transaction()?;
        let out = f(self)?;
        tx.finish()?;
        Ok(out)
    }

    /// Every repository recorded in `repositories`, by location.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], [`super::CatalogError::BadValue`] for a bad id.
    pub fn repositories(&self) -> CatalogResult<Vec<RepositoryRecord>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, location, last_seen FROM repositories ORDER BY location, id",
        )?;
        let rows = st.query_map([], |r| {
            let c = Cols::new(r, "repositories");
            Ok(RepositoryRecord {
                id: c.get(0)?,
                location: c.get(1)?,
                last_seen_ns: c.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every repository id the catalog holds anything of: `repositories`, snapshots, media.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], [`super::CatalogError::BadValue`] for a bad id.
    pub fn known_repository_ids(&self) -> CatalogResult<Vec<RepoId>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id FROM repositories UNION SELECT DISTINCT repo_id FROM snapshots
             UNION SELECT DISTINCT repo_id FROM media ORDER BY 1",
        )?;
        let rows = st.query_map([], |r| Cols::new(r, "repositories").get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One snapshot of the primary, if the catalog has it.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], [`super::CatalogError::BadValue`].
    pub fn snapshot(
        &self,
        repo_id: &RepoId,
        id: &SnapshotId,
    ) -> CatalogResult<Option<SnapshotRecord>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE repo_id = ?1 AND id = ?2"
        ))?;
        Ok(st
            .query_row(params![repo_id, id], snapshot_from_row)
            .optional()?)
    }

    /// The newest snapshot of `job` in the primary not dated after `not_after_ns`.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], [`super::CatalogError::BadValue`].
    pub fn newest_job_snapshot(
        &self,
        repo_id: &RepoId,
        job: &str,
        not_after_ns: i64,
    ) -> CatalogResult<Option<NewestSnapshot>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, time_ns, job FROM snapshots WHERE repo_id = ?1 AND job = ?2
             AND time_ns <= ?3 ORDER BY time_ns DESC, id DESC LIMIT 1",
        )?;
        Ok(st
            .query_row(params![repo_id, job, not_after_ns], |r| {
                newest_from_row(r, "snapshots")
            })
            .optional()?)
    }

    /// The newest snapshot of `job` held by any medium of `repo_id`, not dated after
    /// `not_after_ns` (media keep snapshots the primary may have forgotten, or never had in
    /// this catalog).
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], [`super::CatalogError::BadValue`].
    pub fn newest_job_snapshot_on_media(
        &self,
        repo_id: &RepoId,
        job: &str,
        not_after_ns: i64,
    ) -> CatalogResult<Option<NewestSnapshot>> {
        let mut st = self.conn.prepare_cached(
            "SELECT ms.snapshot_id, ms.time_ns, ms.job FROM media_snapshots ms
             JOIN media m ON m.id = ms.medium_id
             WHERE ms.job = ?2 AND m.repo_id = ?1 AND ms.time_ns <= ?3
             ORDER BY ms.time_ns DESC, ms.snapshot_id DESC LIMIT 1",
        )?;
        Ok(st
            .query_row(params![repo_id, job, not_after_ns], |r| {
                newest_from_row(r, "media_snapshots")
            })
            .optional()?)
    }

    /// Snapshots of `job` dated after `after_ns`, in the primary or on media of `repo_id`,
    /// oldest first (the same snapshot once).
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], [`super::CatalogError::BadValue`].
    pub fn job_snapshots_after(
        &self,
        repo_id: &RepoId,
        job: &str,
        after_ns: i64,
    ) -> CatalogResult<Vec<NewestSnapshot>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, time_ns, job FROM snapshots WHERE repo_id = ?1 AND job = ?2
               AND time_ns > ?3
             UNION
             SELECT ms.snapshot_id, ms.time_ns, ms.job FROM media_snapshots ms
             JOIN media m ON m.id = ms.medium_id
             WHERE ms.job = ?2 AND m.repo_id = ?1 AND ms.time_ns > ?3
             ORDER BY 2, 1",
        )?;
        let rows = st.query_map(params![repo_id, job, after_ns], |r| {
            newest_from_row(r, "snapshots")
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The media holding a verified copy of `snapshot_id`.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], [`super::CatalogError::BadValue`].
    pub fn snapshot_holders(&self, snapshot_id: &SnapshotId) -> CatalogResult<Vec<MediumHolding>> {
        let mut st = self.conn.prepare_cached(
            "SELECT medium_id, verified_ns FROM media_snapshots WHERE snapshot_id = ?1
             ORDER BY medium_id",
        )?;
        let rows = st.query_map([snapshot_id], |r| {
            let c = Cols::new(r, "media_snapshots");
            Ok(MediumHolding {
                medium_id: c.get(0)?,
                verified_ns: c.get(1)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The newest snapshot of each job a medium holds (`job` `None`: snapshots of no job).
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], [`super::CatalogError::BadValue`].
    pub fn medium_newest_by_job(&self, medium_id: &MediumId) -> CatalogResult<Vec<NewestSnapshot>> {
        // SQLite gives the bare columns of the row holding the MAX.
        let mut st = self.conn.prepare_cached(
            "SELECT snapshot_id, MAX(time_ns), job FROM media_snapshots WHERE medium_id = ?1
             GROUP BY job ORDER BY job",
        )?;
        let rows = st.query_map([medium_id], |r| newest_from_row(r, "media_snapshots"))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// How many snapshots a medium holds, and whether any file is recorded on it.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn medium_counts(&self, medium_id: &MediumId) -> CatalogResult<(i64, bool)> {
        let snaps: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM media_snapshots WHERE medium_id = ?1",
            [medium_id],
            |r| r.get(0),
        )?;
        let files: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM media_files WHERE medium_id = ?1)",
            [medium_id],
            |r| r.get(0),
        )?;
        Ok((snaps, files))
    }

    /// When the last copy run onto a medium that brought it up to date (`ok` or `incomplete`)
    /// ended.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn medium_last_rotated(&self, medium_id: &MediumId) -> CatalogResult<Option<i64>> {
        Ok(self.conn.query_row(
            "SELECT MAX(ended_ns) FROM media_runs WHERE medium_id = ?1 AND outcome IN (?2, ?3)",
            params![medium_id, CopyOutcome::Ok, CopyOutcome::Incomplete],
            |r| r.get(0),
        )?)
    }

    /// The last backup run of `job` (the newest begun: by row id, which a clock set back does
    /// not reorder).
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], [`super::CatalogError::BadValue`].
    pub fn last_job_run(&self, repo_id: &RepoId, job: &str) -> CatalogResult<Option<RunRecord>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id FROM runs WHERE repo_id = ?1 AND job = ?2 ORDER BY id DESC LIMIT 1",
        )?;
        let Some(id) = st
            .query_row(params![repo_id, job], |r| r.get::<_, i64>(0))
            .optional()?
        else {
            return Ok(None);
        };
        Ok(self.run_by_id(id)?)
    }

    /// Records the start of a drill (outcome `running`) and returns its id.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`] (a medium id that is not enrolled fails its foreign key).
    pub fn begin_drill(&mut self, d: &DrillStart) -> CatalogResult<i64> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO drills (repo_id, medium_id, snapshot_id, job, started_ns, outcome,
                 mode) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    d.repo_id,
                    d.medium_id,
                    d.snapshot_id,
                    d.job,
                    d.started_ns,
                    DrillOutcome::Running,
                    d.mode
                ],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Records how drill `id` ended. Returns false if there is no such drill.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn finish_drill(&mut self, id: i64, e: &DrillEnd) -> CatalogResult<bool> {
        self.write(|tx| {
            tx.execute(
                "UPDATE drills SET ended_ns = ?2, outcome = ?3, files = ?4, bytes = ?5,
                 seconds = ?6, ready_seconds = ?7, message = ?8 WHERE id = ?1",
                params![
                    id,
                    e.ended_ns,
                    e.outcome,
                    e.files,
                    e.bytes,
                    e.seconds,
                    e.ready_seconds,
                    e.message
                ],
            )
            .map(|n| n > 0)
        })
    }

    /// The newest drill (by row id: the newest begun) of `repo_id` that `q` selects.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], [`super::CatalogError::BadValue`].
    pub fn newest_drill(
        &self,
        repo_id: &RepoId,
        q: &DrillQuery<'_>,
    ) -> CatalogResult<Option<DrillRecord>> {
        use rusqlite::types::ToSql;
        let mut sql = format!("SELECT {DRILL_COLUMNS} FROM drills WHERE repo_id = ?1");
        let mut args: Vec<&dyn ToSql> = vec![repo_id];
        match q.source {
            None => {}
            Some(None) => sql.push_str(" AND medium_id IS NULL"),
            Some(Some(m)) => {
                args.push(m);
                sql.push_str(&format!(" AND medium_id = ?{}", args.len()));
            }
        }
        if let Some(job) = &q.job {
            args.push(job);
            sql.push_str(&format!(" AND job = ?{}", args.len()));
        }
        if let Some(s) = q.snapshot {
            args.push(s);
            sql.push_str(&format!(" AND snapshot_id = ?{}", args.len()));
        }
        let outcomes: &[DrillOutcome] = if q.measured {
            &[DrillOutcome::Ok]
        } else if q.outcomes.is_empty() {
            &[
                DrillOutcome::Ok,
                DrillOutcome::Damaged,
                DrillOutcome::Failed,
            ]
        } else {
            q.outcomes
        };
        let mut marks = Vec::new();
        for o in outcomes {
            args.push(o);
            marks.push(format!("?{}", args.len()));
        }
        sql.push_str(&format!(" AND outcome IN ({})", marks.join(", ")));
        if q.measured {
            sql.push_str(" AND bytes > 0 AND seconds > 0");
        }
        sql.push_str(" ORDER BY id DESC LIMIT 1");
        let mut st = self.conn.prepare_cached(&sql)?;
        Ok(st.query_row(args.as_slice(), drill_from_row).optional()?)
    }

    /// Every drill of `repo_id`, newest first, at most `limit`.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], [`super::CatalogError::BadValue`].
    pub fn drills(&self, repo_id: &RepoId, limit: usize) -> CatalogResult<Vec<DrillRecord>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {DRILL_COLUMNS} FROM drills WHERE repo_id = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = st.query_map(params![repo_id, limit], drill_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
