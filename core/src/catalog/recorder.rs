//! Writing the file table (schema version 4, see `files.rs`): one snapshot's files, in
//! transactions of [`BATCH`] files.

use rusqlite::{params, Connection, OptionalExtension};

use super::files::FileCounts;
use super::{Catalog, CatalogResult};
use crate::format::id::{ContentId, RepoId, SnapshotId};

/// Files written per transaction by a [`FileRecorder`].
pub const BATCH: u64 = 50_000;

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
            "INSERT INTO snapshot_files (snapshot, path_id, version_id) VALUES (?1, ?2, ?3)
             ON CONFLICT (snapshot, path_id) DO UPDATE SET version_id = excluded.version_id",
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
