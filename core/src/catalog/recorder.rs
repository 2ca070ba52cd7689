//! Writing the file table (schema version 4, see `files.rs`): one snapshot's files, in
//! transactions of [`BATCH`] files. No transaction is held between them: a recording that
//! lasts as long as a backup (`locate::record_during`) does not keep the catalog's write lock
//! from the other processes meanwhile.

use rusqlite::{
    params, CachedStatement, Connection, OptionalExtension, ToSql, Transaction, TransactionBehavior,
};

use super::files::FileCounts;
use super::{Catalog, CatalogResult};
use crate::format::id::{ContentId, RepoId, SnapshotId};

/// Files written per transaction by a [`FileRecorder`].
pub const BATCH: u64 = 100_000;

/// Records the files of one snapshot; see the module docs. Dropped without
/// [`FileRecorder::commit`], it removes what it wrote (as far as it can).
pub struct FileRecorder<'c> {
    conn: &'c Connection,
    snapshot: i64,
    /// Files added and not yet written.
    pending: Vec<Pending>,
    counts: FileCounts,
    done: bool,
}

/// A file added, and its path and version ids once looked up.
struct Pending {
    path: String,
    content: ContentId,
    size: u64,
    mtime_ns: i64,
    path_id: i64,
    version_id: i64,
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
        // The indexes are looked up once per file, in order within a batch: a page cache of
        // 32 MiB (SQLite's default is 2 MiB) keeps much of them in memory.
        self.begin_files_cached(repo_id, snapshot_id, time_ns, 32)
    }

    /// As [`Catalog::begin_files`], with a page cache of `cache_mib` MiB: smaller while a
    /// backup runs alongside and holds memory of its own.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`] if the write fails.
    pub fn begin_files_cached(
        &mut self,
        repo_id: &RepoId,
        snapshot_id: &SnapshotId,
        time_ns: i64,
        cache_mib: i64,
    ) -> CatalogResult<FileRecorder<'_>> {
        self.conn
            .pragma_update(None, "cache_size", -1024 * cache_mib)?;
        let snapshot = self.write(|tx| {
            tx.execute(
                "DELETE FROM file_snapshots WHERE repo_id = ?1 AND snapshot_id = ?2",
                params![repo_id, snapshot_id],
            )?;
            tx.execute(
                "INSERT INTO file_snapshots (repo_id, snapshot_id, time_ns) VALUES (?1, ?2, ?3)",
                params![repo_id, snapshot_id, time_ns],
            )?;
            Ok(tx.last_insert_rowid())
        })?;
        Ok(FileRecorder {
            conn: &self.conn,
            snapshot,
            pending: Vec::new(),
            counts: FileCounts::default(),
            done: false,
        })
    }
}

impl FileRecorder<'_> {
    /// Records one file of the snapshot. Files are written in batches of [`BATCH`], each
    /// looked up in the order of its index (paths, then versions by content), so that a first
    /// recording of a million files walks each index once per batch rather than jumping about
    /// it once per file (content ids are random).
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
        self.pending.push(Pending {
            path: path.to_owned(),
            content: *content,
            size,
            mtime_ns,
            path_id: 0,
            version_id: 0,
        });
        if self.pending.len() as u64 >= BATCH {
            self.in_transaction(Self::write_pending)?;
        }
        Ok(())
    }

    /// Runs `f` in a transaction of its own.
    fn in_transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> CatalogResult<T>,
    ) -> CatalogResult<T> {
        // Rolled back when dropped uncommitted (an error of `f`).
        let tx = Transaction::new_unchecked(self.conn, TransactionBehavior::Immediate)?;
        let v = f(self)?;
        tx.commit()?;
        Ok(v)
    }

    /// Writes the files added and not yet written.
    fn write_pending(&mut self) -> CatalogResult<()> {
        let c = self.conn;
        let mut p = std::mem::take(&mut self.pending);
        p.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        {
            let mut insert = c.prepare_cached(
                "INSERT INTO file_paths (path) VALUES (?1) ON CONFLICT (path) DO NOTHING",
            )?;
            let mut find = c.prepare_cached("SELECT id FROM file_paths WHERE path = ?1")?;
            let mut insert_first = true;
            for f in &mut p {
                f.path_id = row_id(
                    c,
                    (&mut insert, &mut find),
                    params![f.path],
                    &mut insert_first,
                    &mut self.counts.new_paths,
                )?;
            }
        }
        p.sort_unstable_by(|a, b| {
            (a.content.0, a.size, a.mtime_ns).cmp(&(b.content.0, b.size, b.mtime_ns))
        });
        {
            let mut insert = c.prepare_cached(
                "INSERT INTO file_versions (content, size, mtime_ns) VALUES (?1, ?2, ?3)
                 ON CONFLICT (content, size, mtime_ns) DO NOTHING",
            )?;
            let mut find = c.prepare_cached(
                "SELECT id FROM file_versions WHERE content = ?1 AND size = ?2 AND mtime_ns = ?3",
            )?;
            let mut insert_first = true;
            for f in &mut p {
                f.version_id = row_id(
                    c,
                    (&mut insert, &mut find),
                    params![f.content, f.size, f.mtime_ns],
                    &mut insert_first,
                    &mut self.counts.new_versions,
                )?;
            }
        }
        p.sort_unstable_by_key(|f| f.path_id);
        let mut insert = c.prepare_cached(
            "INSERT INTO snapshot_files (snapshot, path_id, version_id) VALUES (?1, ?2, ?3)
             ON CONFLICT (snapshot, path_id) DO UPDATE SET version_id = excluded.version_id",
        )?;
        for f in &p {
            insert.execute(params![self.snapshot, f.path_id, f.version_id])?;
        }
        self.counts.added += p.len() as u64;
        // The buffer is kept for the next batch.
        p.clear();
        self.pending = p;
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
        // What was added before is written first: a path added, then removed, is gone.
        if !self.pending.is_empty() {
            self.in_transaction(Self::write_pending)?;
        }
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

    /// Gives the recording the snapshot's id, for a recording begun under a stand-in id
    /// before the snapshot was made (see `locate::record_during`); an earlier record of `id`
    /// is replaced.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`] if a write fails.
    pub fn rename(&mut self, id: &SnapshotId) -> CatalogResult<()> {
        let c = self.conn;
        c.execute(
            "DELETE FROM file_snapshots WHERE snapshot_id = ?2 AND id != ?1
             AND repo_id = (SELECT repo_id FROM file_snapshots WHERE id = ?1)",
            params![self.snapshot, id],
        )?;
        c.execute(
            "UPDATE file_snapshots SET snapshot_id = ?2 WHERE id = ?1",
            params![self.snapshot, id],
        )?;
        Ok(())
    }

    /// Marks the snapshot's files recorded and commits.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`] if the write fails.
    pub fn commit(mut self) -> CatalogResult<FileCounts> {
        let counts = self.in_transaction(|r| {
            r.write_pending()?;
            r.counts.files = r.conn.query_row(
                "SELECT COUNT(*) FROM snapshot_files WHERE snapshot = ?1",
                [r.snapshot],
                |row| row.get(0),
            )?;
            r.conn.execute(
                "UPDATE file_snapshots SET files = ?2 WHERE id = ?1",
                params![r.snapshot, r.counts.files],
            )?;
            Ok(r.counts)
        })?;
        self.done = true;
        Ok(counts)
    }
}

/// The id of the row `key` names (a path, a version): inserted if new, else looked up.
/// `insert_first` says which to try first and follows what the last row needed: a first
/// recording inserts nearly every row and a later one finds nearly every row, so a row costs
/// one statement either way.
fn row_id(
    c: &Connection,
    (insert, find): (&mut CachedStatement<'_>, &mut CachedStatement<'_>),
    key: &[&dyn ToSql],
    insert_first: &mut bool,
    new: &mut u64,
) -> CatalogResult<i64> {
    if !*insert_first {
        if let Some(id) = find.query_row(key, |r| r.get(0)).optional()? {
            return Ok(id);
        }
    }
    if insert.execute(key)? == 1 {
        *insert_first = true;
        *new += 1;
        return Ok(c.last_insert_rowid());
    }
    *insert_first = false;
    Ok(find.query_row(key, |r| r.get(0))?)
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
