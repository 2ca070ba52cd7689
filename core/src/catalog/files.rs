//! The file table (schema version 4): which paths each snapshot holds and which version of
//! their content, so that `bakfs locate` answers from the catalog alone, also for snapshots the
//! primary has forgotten while media keep them.
//!
//! ```text
//! file_snapshots(id INTEGER PK AUTOINCREMENT /* never reused */, repo_id, snapshot_id, time_ns, files NULL /* NULL: being
//!                recorded */, UNIQUE(repo_id, snapshot_id))
//! file_paths(id INTEGER PK, path TEXT UNIQUE)                  one row per path ever recorded
//! file_versions(id INTEGER PK, content BLOB /* ContentId */, size, mtime_ns,
//!               UNIQUE(content, size, mtime_ns))               one row per version
//! snapshot_files(snapshot -> file_snapshots ON DELETE CASCADE, path_id, version_id,
//!                PK(snapshot, path_id)) WITHOUT ROWID
//! ```
//!
//! `snapshot_files` has no index by path (schema 7 dropped it): a snapshot's rows are added at
//! the end of the primary key, so recording a snapshot costs the same however many are held,
//! and the snapshots holding a path are found with one primary-key probe per recorded
//! snapshot of the repository (`locate` on 1,000,000 files in 30 snapshots: 30 probes).
//!
//! A path or a version already known is not inserted again, so an unchanged snapshot adds only
//! its `snapshot_files` rows (three integers each). Rows are written by a [`FileRecorder`] in
//! transactions of [`BATCH`] files, so a big snapshot does not hold the catalog's write lock
//! for long; its `file_snapshots.files` is set only by the last one, and until then the
//! snapshot counts as not recorded. [`Catalog::prune_files`] drops the rows of snapshots that
//! neither the primary (`snapshots`) nor a medium (`media_snapshots`) holds any more.

use rusqlite::params;
use serde::Serialize;

use super::types::{self, Cols};
use super::{Catalog, CatalogResult};
use crate::format::id::{ContentId, RepoId, SnapshotId};

#[cfg(doc)]
use super::recorder::{FileRecorder, BATCH};

/// How long [`Catalog::prune_files`] keeps a recording that is not finished (a week).
pub const RECORDING_KEPT_NS: i64 = 7 * 86_400 * 1_000_000_000;

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

impl Catalog {
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
        // A recording under way (`files` not set yet) for a snapshot not made yet is kept: a
        // backup records its files while it runs. One left by a process that died is dropped
        // once it is a week old.
        let under_way = crate::timefmt::now_ns() - RECORDING_KEPT_NS;
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM file_snapshots WHERE repo_id = ?1
                 AND (files IS NOT NULL OR time_ns < ?2)
                 AND NOT EXISTS (SELECT 1 FROM snapshots s
                     WHERE s.repo_id = ?1 AND s.id = file_snapshots.snapshot_id)
                 AND NOT EXISTS (SELECT 1 FROM media_snapshots ms JOIN media m ON m.id = ms.medium_id
                     WHERE ms.snapshot_id = file_snapshots.snapshot_id AND m.repo_id = ?1)",
                params![repo_id, under_way],
            )?;
            if n > 0 {
                tx.execute(
                    "DELETE FROM file_versions WHERE id NOT IN (SELECT version_id FROM snapshot_files)",
                    [],
                )?;
                tx.execute(
                    "DELETE FROM file_paths WHERE id NOT IN (SELECT path_id FROM snapshot_files)",
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
             CROSS JOIN file_snapshots fs
             CROSS JOIN snapshot_files sf ON sf.snapshot = fs.id AND sf.path_id = p.id
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
             CROSS JOIN file_snapshots fs
             CROSS JOIN snapshot_files sf ON sf.snapshot = fs.id AND sf.path_id = p.id
             JOIN file_versions v ON v.id = sf.version_id
             WHERE p.path >= ?2 AND p.path < ?3 AND fs.repo_id = ?1 AND fs.files IS NOT NULL
             GROUP BY p.path ORDER BY p.path LIMIT ?4",
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

    /// The connection, for tests that look at rows directly.
    #[cfg(test)]
    pub(crate) fn conn_for_tests(&self) -> &rusqlite::Connection {
        &self.conn
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
