//! The file table (schema version 4): which paths each snapshot holds and which version of
//! their content, so that `bakfs locate` answers from the catalog alone, also for snapshots the
//! primary has forgotten while media keep them.
//!
//! ```text
//! file_snapshots(id INTEGER PK, repo_id, snapshot_id, time_ns, files NULL /* NULL: being
//!                recorded */, UNIQUE(repo_id, snapshot_id))
//! file_paths(id INTEGER PK, path TEXT UNIQUE)                  one row per path ever recorded
//! file_versions(id INTEGER PK, content BLOB /* ContentId */, size, mtime_ns,
//!               UNIQUE(content, size, mtime_ns))               one row per version
//! snapshot_files(snapshot -> file_snapshots ON DELETE CASCADE, path_id, version_id,
//!                PK(snapshot, path_id)) WITHOUT ROWID          index (path_id, snapshot, version_id)
//! ```
//!
//! A path or a version already known is not inserted again, so an unchanged snapshot adds only
//! its `snapshot_files` rows (three integers each). Rows are written by a [`FileRecorder`] in
//! transactions of [`BATCH`] files, so a big snapshot does not hold the catalog's write lock
//! for long; its `file_snapshots.files` is set only by the last one, and until then the
//! snapshot counts as not recorded. [`Catalog::prune_files`] drops the rows of snapshots that
//! neither the primary (`snapshots`) nor a medium (`media_snapshots`) holds any more.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::types::{self, Cols};
use super::{Catalog, CatalogResult};
use crate::format::id::{ContentId, RepoId, SnapshotId};

/// Files written per transaction by a [`FileRecorder`].
pub const BATCH: u64 = 50_000;

/// What recording a snapshot's files added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FileCounts {
    /// Files the snapshot holds.
    pub files: u64,
    /// Files written by [`FileRecorder::add`]: all of them, or with
    /// [`FileRecorder::copy_from`] those that changed since the parent.
    pub added: u64,
    /// Paths not known before.
    pub new_paths: u64,
    /// Versions (content, size, mtime) not known before.
    pub new_versions: u64,
}

/// One recorded snapshot holding a path, and the version it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileHit {
    #[serde(serialize_with = "types::hex")]
    pub snapshot_id: SnapshotId,
    pub time_ns: i64,
    #[serde(serialize_with = "types::hex")]
    pub content: ContentId,
    pub size: u64,
    pub mtime_ns: i64,
}

/// A path below a directory, with how often it was recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathSummary {
    pub path: String,
    /// Distinct contents.
    pub versions: u64,
    /// Recorded snapshots holding it.
    pub snapshots: u64,
    /// The newest of them.
    pub newest_ns: i64,
}

/// Snapshots of a repository whose files are not recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Unrecorded {
    /// In the primary: `bakfs catalog rebuild` records them.
    pub in_primary: u64,
    /// Only on media: the primary cannot tell their files any more.
    pub only_on_media: u64,
}

impl Unrecorded {
    /// Whether every snapshot's files are recorded.
    pub fn none(&self) -> bool {
        self.in_primary == 0 && self.only_on_media == 0
    }
}

/// Records the files of one snapshot; see the module docs. Dropped without
/// [`FileRecorder::commit`], it removes what it wrote (as far as it can).
pub struct FileRecorder<'c> {
    conn: &'c Connection,
    snapshot: i64,
    in_batch: u64,
    counts: FileCounts,
    done: bool,
}

impl Catalog {
    /// Starts recording the files of `snapshot_id` (made at `time_ns`), replacing any earlier
    /// record of them.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`] if the write fails.
    pub fn begin_files(
        &mut self,
        repo_id: &RepoId,
        snapshot_id: &SnapshotId,
        time_ns: i64,
    ) -> CatalogResult<FileRecorder<'_>> {
        let conn = &self.conn;
        // The indexes of paths and versions are looked up once per file: a page cache of
        // 32 MiB (SQLite's default is 2 MiB) keeps them in memory.
        conn.pragma_update(None, "cache_size", -32768)?;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let start = || -> CatalogResult<i64> {
            conn.execute(
                "DELETE FROM file_snapshots WHERE repo_id = ?1 AND snapshot_id = ?2",
                params![repo_id, snapshot_id],
            )?;
            conn.execute(
                "INSERT INTO file_snapshots (repo_id, snapshot_id, time_ns) VALUES (?1, ?2, ?3)",
                params![repo_id, snapshot_id, time_ns],
            )?;
            Ok(conn.last_insert_rowid())
        };
        match start() {
            Ok(snapshot) => Ok(FileRecorder {
                conn,
                snapshot,
                in_batch: 0,
                counts: FileCounts::default(),
                done: false,
            }),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Whether the files of `snapshot_id` are recorded (completely).
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn files_recorded(
        &self,
        repo_id: &RepoId,
        snapshot_id: &SnapshotId,
    ) -> CatalogResult<bool> {
        let mut st = self.conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM file_snapshots WHERE repo_id = ?1 AND snapshot_id = ?2
             AND files IS NOT NULL)",
        )?;
        Ok(st.query_row(params![repo_id, snapshot_id], |r| r.get(0))?)
    }

    /// Drops the file rows of `repo_id`'s snapshots that neither the primary nor any medium
    /// holds, then the paths and versions no snapshot uses. Returns the snapshots dropped.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`] if the write fails (nothing is changed then).
    pub fn prune_files(&mut self, repo_id: &RepoId) -> CatalogResult<u64> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM file_snapshots WHERE repo_id = ?1
                 AND NOT EXISTS (SELECT 1 FROM snapshots s
                     WHERE s.repo_id = ?1 AND s.id = file_snapshots.snapshot_id)
                 AND NOT EXISTS (SELECT 1 FROM media_snapshots ms JOIN media m ON m.id = ms.medium_id
                     WHERE ms.snapshot_id = file_snapshots.snapshot_id AND m.repo_id = ?1)",
                [repo_id],
            )?;
            if n > 0 {
                tx.execute(
                    "DELETE FROM file_versions WHERE id NOT IN (SELECT version_id FROM snapshot_files)",
                    [],
                )?;
                tx.execute(
                    "DELETE FROM file_paths WHERE NOT EXISTS
                     (SELECT 1 FROM snapshot_files WHERE path_id = file_paths.id)",
                    [],
                )?;
            }
            Ok(n as u64)
        })
    }

    /// Every recorded snapshot of `repo_id` holding `path`, oldest first, with its version.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], [`super::CatalogError::BadValue`].
    pub fn file_hits(&self, repo_id: &RepoId, path: &str) -> CatalogResult<Vec<FileHit>> {
        let mut st = self.conn.prepare_cached(
            "SELECT fs.snapshot_id, fs.time_ns, v.content, v.size, v.mtime_ns
             FROM file_paths p
             JOIN snapshot_files sf ON sf.path_id = p.id
             JOIN file_snapshots fs ON fs.id = sf.snapshot
             JOIN file_versions v ON v.id = sf.version_id
             WHERE p.path = ?2 AND fs.repo_id = ?1 AND fs.files IS NOT NULL
             ORDER BY fs.time_ns, fs.snapshot_id",
        )?;
        let rows = st.query_map(params![repo_id, path], |r| {
            let c = Cols::new(r, "file_versions");
            Ok(FileHit {
                snapshot_id: c.get(0)?,
                time_ns: c.get(1)?,
                content: c.get(2)?,
                size: c.get(3)?,
                mtime_ns: c.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The recorded paths of `repo_id` below directory `dir` (at any depth), by path, at most
    /// `limit`.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn paths_under(
        &self,
        repo_id: &RepoId,
        dir: &str,
        limit: usize,
    ) -> CatalogResult<Vec<PathSummary>> {
        let lo = if dir.ends_with('/') {
            dir.to_string()
        } else {
            format!("{dir}/")
        };
        // '0' follows '/': every path starting with `lo` sorts below `hi`.
        let hi = format!("{}0", &lo[..lo.len() - 1]);
        let mut st = self.conn.prepare_cached(
            "SELECT p.path, COUNT(DISTINCT v.content), COUNT(*), MAX(fs.time_ns)
             FROM file_paths p
             JOIN snapshot_files sf ON sf.path_id = p.id
             JOIN file_snapshots fs ON fs.id = sf.snapshot
             JOIN file_versions v ON v.id = sf.version_id
             WHERE p.path >= ?2 AND p.path < ?3 AND fs.repo_id = ?1 AND fs.files IS NOT NULL
             GROUP BY p.id ORDER BY p.path LIMIT ?4",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = st.query_map(params![repo_id, lo, hi, limit], |r| {
            let c = Cols::new(r, "file_paths");
            Ok(PathSummary {
                path: c.get(0)?,
                versions: c.get(1)?,
                snapshots: c.get(2)?,
                newest_ns: c.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// How many snapshots of `repo_id`, in the primary or on media, have no complete record of
    /// their files.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn unrecorded_snapshots(&self, repo_id: &RepoId) -> CatalogResult<Unrecorded> {
        let mut st = self.conn.prepare_cached(
            "WITH recorded(sid) AS (SELECT snapshot_id FROM file_snapshots
                 WHERE repo_id = ?1 AND files IS NOT NULL),
             primary_held(sid) AS (SELECT id FROM snapshots WHERE repo_id = ?1),
             media_held(sid) AS (SELECT DISTINCT ms.snapshot_id FROM media_snapshots ms
                 JOIN media m ON m.id = ms.medium_id WHERE m.repo_id = ?1)
             SELECT
               (SELECT COUNT(*) FROM primary_held WHERE sid NOT IN recorded),
               (SELECT COUNT(*) FROM media_held WHERE sid NOT IN recorded
                  AND sid NOT IN primary_held)",
        )?;
        Ok(st.query_row([repo_id], |r| {
            Ok(Unrecorded {
                in_primary: r.get(0)?,
                only_on_media: r.get(1)?,
            })
        })?)
    }
}

#[cfg(test)]
impl Catalog {
    /// The number of rows of `table`.
    pub(crate) fn count_rows_for_tests(&self, table: &str) -> i64 {
        self.conn
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap_or(-1)
    }

    /// Every file recorded for a snapshot: (path, content, size, mtime), by path.
    pub(crate) fn snapshot_files_for_tests(
        &self,
        repo_id: &RepoId,
        snapshot_id: &SnapshotId,
    ) -> Vec<(String, ContentId, u64, i64)> {
        let mut st = self
            .conn
            .prepare(
                "SELECT p.path, v.content, v.size, v.mtime_ns FROM file_snapshots fs
                 JOIN snapshot_files sf ON sf.snapshot = fs.id
                 JOIN file_paths p ON p.id = sf.path_id JOIN file_versions v ON v.id = sf.version_id
                 WHERE fs.repo_id = ?1 AND fs.snapshot_id = ?2 ORDER BY p.path",
            )
            .unwrap_or_else(|e| panic!("{e}"));
        st.query_map(params![repo_id, snapshot_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .and_then(|rows| rows.collect())
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The lines of `EXPLAIN QUERY PLAN sql`, every parameter bound to `"x"`.
    pub(crate) fn query_plan_for_tests(&self, sql: &str) -> Vec<String> {
        let mut st = match self.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")) {
            Ok(st) => st,
            Err(e) => return vec![format!("error: {e}")],
        };
        let n = st.parameter_count();
        let rows = st.query_map(
            rusqlite::params_from_iter(std::iter::repeat_n("x", n)),
            |r| r.get::<_, String>(3),
        );
        match rows {
            Ok(rows) => rows.map(|r| r.unwrap_or_default()).collect(),
            Err(e) => vec![format!("error: {e}")],
        }
    }
}

impl FileRecorder<'_> {
    /// Records one file of the snapshot.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`] if a write fails.
    pub fn add(
        &mut self,
        path: &str,
        content: &ContentId,
        size: u64,
        mtime_ns: i64,
    ) -> CatalogResult<()> {
        let c = self.conn;
        let path_id = match c
            .prepare_cached("SELECT id FROM file_paths WHERE path = ?1")?
            .query_row([path], |r| r.get::<_, i64>(0))
            .optional()?
        {
            Some(id) => id,
            None => {
                c.prepare_cached("INSERT INTO file_paths (path) VALUES (?1)")?
                    .execute([path])?;
                self.counts.new_paths += 1;
                c.last_insert_rowid()
            }
        };
        let version_id = match c
            .prepare_cached(
                "SELECT id FROM file_versions WHERE content = ?1 AND size = ?2 AND mtime_ns = ?3",
            )?
            .query_row(params![content, size, mtime_ns], |r| r.get::<_, i64>(0))
            .optional()?
        {
            Some(id) => id,
            None => {
                c.prepare_cached(
                    "INSERT INTO file_versions (content, size, mtime_ns) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![content, size, mtime_ns])?;
                self.counts.new_versions += 1;
                c.last_insert_rowid()
            }
        };
        c.prepare_cached(
            "INSERT OR REPLACE INTO snapshot_files (snapshot, path_id, version_id)
             VALUES (?1, ?2, ?3)",
        )?
        .execute(params![self.snapshot, path_id, version_id])?;
        self.counts.added += 1;
        self.in_batch += 1;
        if self.in_batch >= BATCH {
            c.execute_batch("COMMIT; BEGIN IMMEDIATE")?;
            self.in_batch = 0;
        }
        Ok(())
    }

    /// Starts from the files recorded for `parent` (an earlier snapshot of the same paths),
    /// so that only what changed since needs [`FileRecorder::add`] and
    /// [`FileRecorder::remove`]. Returns `false`, copying nothing, when `parent`'s files are not
    /// (completely) recorded.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`] if a write fails.
    pub fn copy_from(&mut self, repo_id: &RepoId, parent: &SnapshotId) -> CatalogResult<bool> {
        let c = self.conn;
        let Some(from) = c
            .prepare_cached(
                "SELECT id FROM file_snapshots WHERE repo_id = ?1 AND snapshot_id = ?2
                 AND files IS NOT NULL",
            )?
            .query_row(params![repo_id, parent], |r| r.get::<_, i64>(0))
            .optional()?
        else {
            return Ok(false);
        };
        c.execute(
            "INSERT OR REPLACE INTO snapshot_files (snapshot, path_id, version_id)
             SELECT ?1, path_id, version_id FROM snapshot_files WHERE snapshot = ?2",
            params![self.snapshot, from],
        )?;
        Ok(true)
    }

    /// Removes `path` from the snapshot's files, and with `below` every path under it too (a
    /// directory that went).
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`] if a write fails.
    pub fn remove(&mut self, path: &str, below: bool) -> CatalogResult<()> {
        let c = self.conn;
        c.prepare_cached(
            "DELETE FROM snapshot_files WHERE snapshot = ?1
             AND path_id = (SELECT id FROM file_paths WHERE path = ?2)",
        )?
        .execute(params![self.snapshot, path])?;
        if below {
            let lo = format!("{path}/");
            let hi = format!("{path}0");
            c.prepare_cached(
                "DELETE FROM snapshot_files WHERE snapshot = ?1
                 AND path_id IN (SELECT id FROM file_paths WHERE path >= ?2 AND path < ?3)",
            )?
            .execute(params![self.snapshot, lo, hi])?;
        }
        Ok(())
    }

    /// Marks the snapshot's files recorded and commits.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`] if the write fails.
    pub fn commit(mut self) -> CatalogResult<FileCounts> {
        self.counts.files = self.conn.query_row(
            "SELECT COUNT(*) FROM snapshot_files WHERE snapshot = ?1",
            [self.snapshot],
            |r| r.get(0),
        )?;
        self.conn.execute(
            "UPDATE file_snapshots SET files = ?2 WHERE id = ?1",
            params![self.snapshot, self.counts.files],
        )?;
        self.conn.execute_batch("COMMIT")?;
        self.done = true;
        Ok(self.counts)
    }
}

impl Drop for FileRecorder<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        // Earlier batches were committed: remove them (the rows cascade).
        let _ = self
            .conn
            .execute("DELETE FROM file_snapshots WHERE id = ?1", [self.snapshot]);
    }
}
