//! The local SQLite catalog: what bakfs knows about its repositories without opening them.
//!
//! This is the only module that touches `rusqlite`. The catalog of snapshots and packs is a cache
//! that `bakfs catalog rebuild` can recreate from a repository
//! ([`Catalog::replace_repository_contents`]); the `runs` history exists only here.
//!
//! # Schema (version 1; version 2 adds the media ledger, see `media.rs`; version 3 what
//! `bakfs status` needs, see `assurance.rs`; version 4 the file table of `bakfs locate`, see
//! `files.rs`)
//!
//! ```text
//! repositories(id TEXT PK, location TEXT, last_seen INTEGER /* unix ns */)
//! snapshots(repo_id, id, time TEXT /* RFC 3339 UTC */, time_ns INTEGER /* unix ns */, host,
//!           paths TEXT /* JSON array */, tags TEXT /* JSON array */, tree, parent NULL, job NULL,
//!           files INTEGER, bytes INTEGER, PK(repo_id, id))          index (repo_id, time_ns)
//! snapshot_packs(repo_id, snapshot_id, pack_id, PK(repo_id, snapshot_id, pack_id),
//!           FK(repo_id, snapshot_id) -> snapshots ON DELETE CASCADE) index (pack_id)
//! packs(repo_id, id, size INTEGER, PK(repo_id, id))
//! runs(id INTEGER PK AUTOINCREMENT, repo_id, job NULL, started_ns, ended_ns NULL,
//!      outcome TEXT /* BackupOutcome */, files, bytes_read,
//!      bytes_added, snapshot_id NULL, message NULL)                  index (repo_id, started_ns)
//! ```
//!
//! Ids are 64 lowercase hex digits, read and written as their newtypes
//! ([`crate::format::id`]); states, kinds and outcomes are enums; see `types.rs` for how each is
//! stored. A stored value this code does not know is a [`CatalogError::BadValue`] naming the
//! column and the value. Counters are stored as SQLite integers (`u64` values above `i64::MAX`
//! are refused by rusqlite rather than wrapped).
//!
//! # Rules
//!
//! - The schema version lives in `PRAGMA user_version`; [`SCHEMA_VERSION`] is `MIGRATIONS.len()`.
//! - Migrations are forward only and append-only: never edit or reorder an entry of `MIGRATIONS`,
//!   add a new one at the end (e.g. the media tables). Migration `n` (1-based) is
//!   `MIGRATIONS[n - 1]`; each runs in its own IMMEDIATE transaction together with the
//!   `user_version = n` bump, after re-reading the version inside the transaction, so concurrent
//!   openers never apply one twice.
//! - A catalog whose version is newer than this code knows gives [`CatalogError::TooNew`]; the
//!   version is checked before any pragma that could write (such as `journal_mode=WAL`), so the
//!   file is left byte-for-byte untouched.
//! - Connections use WAL, a 10 s `busy_timeout` and `foreign_keys=ON`; every write is a single
//!   IMMEDIATE transaction, so concurrent writers wait for each other instead of failing.

mod assurance;
mod files;
mod media;
mod recorder;
mod tapes;
mod types;
pub use assurance::{
    DrillEnd, DrillQuery, DrillRecord, DrillStart, MediumHolding, NewestSnapshot, RepositoryRecord,
};
pub use files::{FileCounts, FileHit, PathSummary, Unrecorded, RECORDING_KEPT_NS};
pub use media::{
    MediumFile, MediumRecord, MediumRun, MediumSnapshot, Share, ShareMount, Verification,
};
pub use recorder::{FileRecorder, BATCH};
pub use tapes::{Tape, TapeFile};
pub use types::{
    BackupOutcome, BadValue, CopyOutcome, DrillMode, DrillOutcome, MediumKind, MediumLocation,
    MediumState, Presence, TapePlace, TapeStatus, UnknownName,
};

use rusqlite::{
    params, Connection, OptionalExtension, Result as SqlResult, Row, Transaction,
    TransactionBehavior,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::format::id::{BlobId, PackId, RepoId, SnapshotId};
use types::Cols;
pub(crate) use types::{hex as hex_id, hex_opt as hex_id_opt};

/// Schema migrations, applied in order. Append only; see the module docs.
const MIGRATIONS: &[&str] = &[
    // 1: repositories, snapshots, snapshot_packs, packs, runs.
    "CREATE TABLE repositories (id TEXT PRIMARY KEY NOT NULL, location TEXT NOT NULL,
        last_seen INTEGER NOT NULL);
    CREATE TABLE snapshots (repo_id TEXT NOT NULL, id TEXT NOT NULL, time TEXT NOT NULL,
        time_ns INTEGER NOT NULL, host TEXT NOT NULL, paths TEXT NOT NULL, tags TEXT NOT NULL,
        tree TEXT NOT NULL, parent TEXT NULL, job TEXT NULL, files INTEGER NOT NULL,
        bytes INTEGER NOT NULL, PRIMARY KEY (repo_id, id));
    CREATE INDEX snapshots_by_time ON snapshots(repo_id, time_ns);
    CREATE TABLE snapshot_packs (repo_id TEXT NOT NULL, snapshot_id TEXT NOT NULL,
        pack_id TEXT NOT NULL, PRIMARY KEY (repo_id, snapshot_id, pack_id),
        FOREIGN KEY (repo_id, snapshot_id) REFERENCES snapshots(repo_id, id) ON DELETE CASCADE);
    CREATE INDEX snapshot_packs_by_pack ON snapshot_packs(pack_id);
    CREATE TABLE packs (repo_id TEXT NOT NULL, id TEXT NOT NULL, size INTEGER NOT NULL,
        PRIMARY KEY (repo_id, id));
    CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, repo_id TEXT NOT NULL, job TEXT NULL,
        started_ns INTEGER NOT NULL, ended_ns INTEGER NULL, outcome TEXT NOT NULL,
        files INTEGER NOT NULL, bytes_read INTEGER NOT NULL, bytes_added INTEGER NOT NULL,
        snapshot_id TEXT NULL, message TEXT NULL);
    CREATE INDEX runs_by_repo ON runs(repo_id, started_ns);",
    // 2: the media ledger (see media.rs).
    "CREATE TABLE media (id TEXT PRIMARY KEY NOT NULL, label TEXT NOT NULL UNIQUE,
        repo_id TEXT NOT NULL, fs_uuid TEXT NOT NULL UNIQUE, fs_type TEXT NOT NULL,
        serial TEXT NULL, kind TEXT NOT NULL, pool TEXT NOT NULL, location TEXT NOT NULL,
        capacity INTEGER NOT NULL, retention TEXT NOT NULL, enrolled_ns INTEGER NOT NULL,
        last_seen_ns INTEGER NULL, last_written_ns INTEGER NULL, last_verified_ns INTEGER NULL,
        state TEXT NOT NULL, message TEXT NULL, bytes INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE media_snapshots (medium_id TEXT NOT NULL, snapshot_id TEXT NOT NULL,
        time_ns INTEGER NOT NULL, host TEXT NOT NULL, paths TEXT NOT NULL, job TEXT NULL,
        verified_ns INTEGER NOT NULL, PRIMARY KEY (medium_id, snapshot_id),
        FOREIGN KEY (medium_id) REFERENCES media(id) ON DELETE CASCADE);
    CREATE TABLE media_snapshot_packs (medium_id TEXT NOT NULL, snapshot_id TEXT NOT NULL,
        pack_id TEXT NOT NULL, PRIMARY KEY (medium_id, snapshot_id, pack_id),
        FOREIGN KEY (medium_id, snapshot_id) REFERENCES media_snapshots(medium_id, snapshot_id)
            ON DELETE CASCADE);
    CREATE TABLE media_files (medium_id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
        size INTEGER NOT NULL, verified_ns INTEGER NOT NULL, PRIMARY KEY (medium_id, kind, name),
        FOREIGN KEY (medium_id) REFERENCES media(id) ON DELETE CASCADE);
    CREATE TABLE media_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, medium_id TEXT NOT NULL,
        started_ns INTEGER NOT NULL, ended_ns INTEGER NULL, outcome TEXT NOT NULL,
        snapshots_added INTEGER NOT NULL DEFAULT 0, snapshots_removed INTEGER NOT NULL DEFAULT 0,
        files_written INTEGER NOT NULL DEFAULT 0, bytes_written INTEGER NOT NULL DEFAULT 0,
        bytes_verified INTEGER NOT NULL DEFAULT 0, seconds REAL NOT NULL DEFAULT 0,
        message TEXT NULL,
        FOREIGN KEY (medium_id) REFERENCES media(id) ON DELETE CASCADE);
    CREATE INDEX media_runs_by_medium ON media_runs(medium_id, started_ns);",
    // 3: what `bakfs status` needs (see assurance.rs): whether a medium is plugged in, its free
    // space at the last job, its own rotation period, restore drills; indexes for its queries.
    "ALTER TABLE media ADD COLUMN presence TEXT NULL;
    ALTER TABLE media ADD COLUMN presence_ns INTEGER NULL;
    ALTER TABLE media ADD COLUMN free_bytes INTEGER NULL;
    ALTER TABLE media ADD COLUMN free_ns INTEGER NULL;
    ALTER TABLE media ADD COLUMN rotate_every_s INTEGER NULL;
    CREATE TABLE drills (id INTEGER PRIMARY KEY AUTOINCREMENT, repo_id TEXT NOT NULL,
        medium_id TEXT NULL, snapshot_id TEXT NOT NULL, job TEXT NULL,
        started_ns INTEGER NOT NULL, ended_ns INTEGER NULL, outcome TEXT NOT NULL,
        mode TEXT NOT NULL, files INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0,
        seconds REAL NOT NULL DEFAULT 0, ready_seconds REAL NOT NULL DEFAULT 0,
        message TEXT NULL,
        FOREIGN KEY (medium_id) REFERENCES media(id) ON DELETE CASCADE);
    CREATE INDEX drills_by_medium ON drills(medium_id, id);
    CREATE INDEX drills_by_job ON drills(repo_id, job, id);
    CREATE INDEX snapshots_by_job ON snapshots(repo_id, job, time_ns);
    CREATE INDEX runs_by_job ON runs(repo_id, job, id);
    CREATE INDEX media_snapshots_by_snapshot ON media_snapshots(snapshot_id);
    CREATE INDEX media_snapshots_by_job ON media_snapshots(job, time_ns);",
    // 4: the file table of `bakfs locate` (see files.rs): each snapshot's paths and the version
    // of each file's content, each path and version stored once.
    "CREATE TABLE file_snapshots (id INTEGER PRIMARY KEY AUTOINCREMENT, repo_id TEXT NOT NULL,
        snapshot_id TEXT NOT NULL, time_ns INTEGER NOT NULL, files INTEGER NULL,
        UNIQUE (repo_id, snapshot_id));
    CREATE TABLE file_paths (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
    CREATE TABLE file_versions (id INTEGER PRIMARY KEY, content BLOB NOT NULL,
        size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, UNIQUE (content, size, mtime_ns));
    CREATE TABLE snapshot_files (snapshot INTEGER NOT NULL
            REFERENCES file_snapshots(id) ON DELETE CASCADE,
        path_id INTEGER NOT NULL, version_id INTEGER NOT NULL,
        PRIMARY KEY (snapshot, path_id)) WITHOUT ROWID;
    CREATE INDEX snapshot_files_by_path ON snapshot_files(path_id, snapshot, version_id);",
    // 5: NAS shares as media (see media.rs): the directory a share is mounted on and, if
    // bakfs-mediad mounts it itself, what it mounts there and with which options.
    "ALTER TABLE media ADD COLUMN share_path TEXT NULL;
    ALTER TABLE media ADD COLUMN share_source TEXT NULL;
    ALTER TABLE media ADD COLUMN share_options TEXT NULL;
    CREATE UNIQUE INDEX media_by_share_path ON media(share_path);",
    // 6: tapes as media (see tapes.rs): each cartridge's media set, its place in the set, its
    // status and where it is; and where on the tape each file it holds is.
    "ALTER TABLE media ADD COLUMN tape_set TEXT NULL;
    ALTER TABLE media ADD COLUMN tape_set_seq INTEGER NULL;
    ALTER TABLE media ADD COLUMN tape_status TEXT NULL;
    ALTER TABLE media ADD COLUMN tape_place TEXT NULL;
    CREATE TABLE tape_files (medium_id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
        size INTEGER NOT NULL, file INTEGER NOT NULL, block INTEGER NOT NULL,
        blake3 TEXT NOT NULL,
        PRIMARY KEY (medium_id, kind, name),
        FOREIGN KEY (medium_id) REFERENCES media(id) ON DELETE CASCADE);
    CREATE INDEX media_by_tape_set ON media(tape_set, tape_set_seq);",
    // 7: the file table without its index by path. Each new snapshot's rows went into it at
    // every path's place among the earlier snapshots' rows, so recording an unchanged snapshot
    // rewrote the whole index: its time grew with the snapshots held (1,000,000 files: 1.0 s
    // with 2 snapshots, 2.5 s with 6), its size doubled the table's. A path's snapshots are
    // found by the primary key instead, one probe per recorded snapshot (files.rs).
    "DROP INDEX snapshot_files_by_path;",
    // 8: buckets as media (see media.rs): the `s3:` location of a bucket enrolled as a medium.
    "ALTER TABLE media ADD COLUMN bucket TEXT NULL;
    CREATE UNIQUE INDEX media_by_bucket ON media(bucket);",
];

/// The newest schema version this code knows (the number of migrations).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Errors from the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The database could not be opened, configured or migrated.
    #[error("catalog {path}: {err}")]
    Open { path: PathBuf, err: rusqlite::Error },
    /// The catalog was written by a newer bakfs; nothing was changed.
    #[error("catalog {path} has schema version {found}, this bakfs knows up to {supported}; upgrade bakfs (the catalog was left untouched)")]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// A query or write failed.
    #[error("catalog: {0}")]
    Sql(rusqlite::Error),
    /// A stored value (a state, kind, outcome, id or policy) that this bakfs does not know.
    #[error(transparent)]
    BadValue(BadValue),
    /// `PRAGMA integrity_check` reported problems.
    #[error("catalog is damaged: {0}")]
    Corrupt(String),
    /// Creating the catalog's directory failed.
    #[error("catalog {path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
}

impl From<rusqlite::Error> for CatalogError {
    /// A [`BadValue`] raised while reading a row becomes [`CatalogError::BadValue`].
    fn from(e: rusqlite::Error) -> Self {
        let rusqlite::Error::FromSqlConversionFailure(idx, ty, err) = e else {
            return CatalogError::Sql(e);
        };
        match err.downcast::<BadValue>() {
            Ok(bad) => CatalogError::BadValue(*bad),
            Err(err) => CatalogError::Sql(rusqlite::Error::FromSqlConversionFailure(idx, ty, err)),
        }
    }
}

/// Result type of this module.
pub type CatalogResult<T> = std::result::Result<T, CatalogError>;

/// One snapshot of a repository.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotRecord {
    #[serde(serialize_with = "types::hex")]
    pub repo_id: RepoId,
    #[serde(serialize_with = "types::hex")]
    pub id: SnapshotId,
    /// RFC 3339, UTC.
    pub time: String,
    /// Unix time in nanoseconds; the sort key.
    pub time_ns: i64,
    pub host: String,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    /// The root tree.
    #[serde(serialize_with = "types::hex")]
    pub tree: BlobId,
    #[serde(serialize_with = "types::hex_opt")]
    pub parent: Option<SnapshotId>,
    pub job: Option<String>,
    pub files: u64,
    pub bytes: u64,
}

/// A pack file of a repository.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackRecord {
    #[serde(serialize_with = "types::hex")]
    pub id: PackId,
    pub size: u64,
}

/// One backup run, as recorded by [`Catalog::begin_run`] and [`Catalog::finish_run`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: i64,
    #[serde(serialize_with = "types::hex")]
    pub repo_id: RepoId,
    pub job: Option<String>,
    pub started_ns: i64,
    pub ended_ns: Option<i64>,
    pub outcome: BackupOutcome,
    pub files: u64,
    pub bytes_read: u64,
    pub bytes_added: u64,
    #[serde(serialize_with = "types::hex_opt")]
    pub snapshot_id: Option<SnapshotId>,
    pub message: Option<String>,
}

/// How a run ended; see [`Catalog::finish_run`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunOutcome {
    pub ended_ns: i64,
    /// `Ok`, `Incomplete` or `Failed`.
    pub outcome: BackupOutcome,
    pub files: u64,
    pub bytes_read: u64,
    pub bytes_added: u64,
    #[serde(serialize_with = "types::hex_opt")]
    pub snapshot_id: Option<SnapshotId>,
    pub message: Option<String>,
}

/// An open catalog database.
pub struct Catalog {
    conn: Connection,
}

fn user_version(conn: &Connection) -> SqlResult<u32> {
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    // user_version is a signed 32-bit field; a negative one is not ours, so treat it as too new.
    Ok(u32::try_from(v).unwrap_or(u32::MAX))
}

fn to_json(v: &[String]) -> SqlResult<String> {
    serde_json::to_string(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

const SNAPSHOT_COLUMNS: &str =
    "repo_id, id, time, time_ns, host, paths, tags, tree, parent, job, files, bytes";

fn snapshot_from_row(row: &Row<'_>) -> SqlResult<SnapshotRecord> {
    let c = Cols::new(row, "snapshots");
    Ok(SnapshotRecord {
        repo_id: c.get(0)?,
        id: c.get(1)?,
        time: c.get(2)?,
        time_ns: c.get(3)?,
        host: c.get(4)?,
        paths: c.json(5)?,
        tags: c.json(6)?,
        tree: c.get(7)?,
        parent: c.get(8)?,
        job: c.get(9)?,
        files: c.get(10)?,
        bytes: c.get(11)?,
    })
}

const RUN_COLUMNS: &str = "id, repo_id, job, started_ns, ended_ns, outcome, files, bytes_read,
    bytes_added, snapshot_id, message";

fn run_from_row(r: &Row<'_>) -> SqlResult<RunRecord> {
    let c = Cols::new(r, "runs");
    Ok(RunRecord {
        id: c.get(0)?,
        repo_id: c.get(1)?,
        job: c.get(2)?,
        started_ns: c.get(3)?,
        ended_ns: c.get(4)?,
        outcome: c.get(5)?,
        files: c.get(6)?,
        bytes_read: c.get(7)?,
        bytes_added: c.get(8)?,
        snapshot_id: c.get(9)?,
        message: c.get(10)?,
    })
}

/// Upserts `s` and `packs` and makes `packs` exactly the snapshot's pack list.
fn put_snapshot(tx: &Transaction, s: &SnapshotRecord, packs: &[PackRecord]) -> SqlResult<()> {
    tx.execute(
        &format!(
            "INSERT INTO snapshots ({SNAPSHOT_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)
             ON CONFLICT(repo_id, id) DO UPDATE SET time=excluded.time, time_ns=excluded.time_ns,
               host=excluded.host, paths=excluded.paths, tags=excluded.tags, tree=excluded.tree,
               parent=excluded.parent, job=excluded.job, files=excluded.files, bytes=excluded.bytes"
        ),
        params![
            s.repo_id, s.id, s.time, s.time_ns, s.host, to_json(&s.paths)?, to_json(&s.tags)?,
            s.tree, s.parent, s.job, s.files, s.bytes
        ],
    )?;
    tx.execute(
        "DELETE FROM snapshot_packs WHERE repo_id = ?1 AND snapshot_id = ?2",
        params![s.repo_id, s.id],
    )?;
    let mut pack = tx.prepare_cached(
        "INSERT INTO packs (repo_id, id, size) VALUES (?1, ?2, ?3)
         ON CONFLICT(repo_id, id) DO UPDATE SET size = excluded.size",
    )?;
    let mut link = tx.prepare_cached(
        "INSERT OR IGNORE INTO snapshot_packs (repo_id, snapshot_id, pack_id) VALUES (?1, ?2, ?3)",
    )?;
    for p in packs {
        pack.execute(params![s.repo_id, p.id, p.size])?;
        link.execute(params![s.repo_id, s.id, p.id])?;
    }
    Ok(())
}

impl Catalog {
    /// Opens (creating if needed) the catalog at `path` and migrates it to [`SCHEMA_VERSION`].
    ///
    /// Missing parent directories are created with mode 0700. The schema version is checked
    /// before anything is written, so a catalog from a newer bakfs is left untouched.
    ///
    /// # Errors
    /// [`CatalogError::Io`] if the directory cannot be created, [`CatalogError::TooNew`] if the
    /// catalog's schema is newer than this code, [`CatalogError::Open`] if SQLite fails to open,
    /// configure or migrate the database (including a file that is not a database).
    pub fn open(path: &Path) -> CatalogResult<Catalog> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|err| CatalogError::Io {
                    path: parent.to_path_buf(),
                    err,
                })?;
        }
        let open_err = |err| CatalogError::Open {
            path: path.to_path_buf(),
            err,
        };
        let too_new = |found| CatalogError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(open_err)?;
        // Check before journal_mode=WAL, which rewrites the header of a rollback-journal file.
        let found = user_version(&conn).map_err(open_err)?;
        if found > SCHEMA_VERSION {
            return Err(too_new(found));
        }
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "catalog is not in WAL mode");
        }
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_err)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let target = i as u32 + 1;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(open_err)?;
            // Another process may have migrated (or upgraded) meanwhile.
            let now = user_version(&tx).map_err(open_err)?;
            if now > SCHEMA_VERSION {
                return Err(too_new(now)); // dropping `tx` rolls back; nothing was written
            }
            if now >= target {
                continue;
            }
            tx.execute_batch(sql).map_err(open_err)?;
            tx.pragma_update(None, "user_version", target)
                .map_err(open_err)?;
            tx.commit().map_err(open_err)?;
            tracing::debug!(path = %path.display(), version = target, "catalog migrated");
        }
        Ok(Catalog { conn })
    }

    /// The schema version stored in the file (normally [`SCHEMA_VERSION`]; 0 if it can't be read).
    pub fn schema_version(&self) -> u32 {
        user_version(&self.conn).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read catalog schema version");
            0
        })
    }

    /// Runs `f` inside one IMMEDIATE transaction and commits it.
    fn write<T>(&mut self, f: impl FnOnce(&Transaction) -> SqlResult<T>) -> CatalogResult<T> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Records that repository `repo_id` was seen at `location` at `now_ns` (unix nanoseconds).
    ///
    /// # Errors
    /// [`CatalogError::Sql`] if the write fails.
    pub fn touch_repository(
        &mut self,
        repo_id: &RepoId,
        location: &str,
        now_ns: i64,
    ) -> CatalogResult<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO repositories (id, location, last_seen) VALUES (?1, ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET location = excluded.location, last_seen = excluded.last_seen",
                params![repo_id, location, now_ns],
            )
            .map(drop)
        })
    }

    /// Inserts or updates snapshot `s`, upserts `packs`, and makes `packs` its exact pack list.
    ///
    /// # Errors
    /// [`CatalogError::Sql`] if the write fails (nothing is changed then).
    pub fn record_snapshot(
        &mut self,
        s: &SnapshotRecord,
        packs: &[PackRecord],
    ) -> CatalogResult<()> {
        self.write(|tx| put_snapshot(tx, s, packs))
    }

    /// Removes a snapshot and its pack links (the packs themselves stay). Absent ids are no-ops.
    ///
    /// # Errors
    /// [`CatalogError::Sql`] if the write fails.
    pub fn remove_snapshot(&mut self, repo_id: &RepoId, id: &SnapshotId) -> CatalogResult<()> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM snapshots WHERE repo_id = ?1 AND id = ?2",
                params![repo_id, id],
            )
            .map(drop)
        })
    }

    /// The snapshots of `repo_id`, oldest first (by `time_ns`, then id).
    ///
    /// # Errors
    /// [`CatalogError::Sql`] if the query fails, [`CatalogError::BadValue`] if a stored value is
    /// not one this code knows.
    pub fn snapshots(&self, repo_id: &RepoId) -> CatalogResult<Vec<SnapshotRecord>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE repo_id = ?1 ORDER BY time_ns, id"
        ))?;
        let rows = st.query_map([repo_id], snapshot_from_row)?;
        Ok(rows.collect::<SqlResult<_>>()?)
    }

    /// How many snapshots of `repo_id` the catalog records and the time of the newest: a pair
    /// that changes when a backup adds one or forget removes some (bakfs-mediad copies onto a
    /// share that stays mounted when it changes).
    ///
    /// # Errors
    /// [`CatalogError::Sql`].
    pub fn snapshot_generation(&self, repo_id: &RepoId) -> CatalogResult<(i64, Option<i64>)> {
        let mut st = self
            .conn
            .prepare_cached("SELECT COUNT(*), MAX(time_ns) FROM snapshots WHERE repo_id = ?1")?;
        Ok(st.query_row([repo_id], |r| Ok((r.get(0)?, r.get(1)?)))?)
    }

    /// The packs a snapshot uses, by id. A pack missing from `packs` is reported with size 0.
    ///
    /// # Errors
    /// [`CatalogError::Sql`] if the query fails, [`CatalogError::BadValue`] if a stored pack id
    /// is not one.
    pub fn snapshot_packs(
        &self,
        repo_id: &RepoId,
        snapshot_id: &SnapshotId,
    ) -> CatalogResult<Vec<PackRecord>> {
        let mut st = self.conn.prepare_cached(
            "SELECT sp.pack_id, COALESCE(p.size, 0) FROM snapshot_packs sp
             LEFT JOIN packs p ON p.repo_id = sp.repo_id AND p.id = sp.pack_id
             WHERE sp.repo_id = ?1 AND sp.snapshot_id = ?2 ORDER BY sp.pack_id",
        )?;
        let rows = st.query_map(params![repo_id, snapshot_id], |r| {
            let c = Cols::new(r, "snapshot_packs");
            Ok(PackRecord {
                id: c.get(0)?,
                size: c.get(1)?,
            })
        })?;
        Ok(rows.collect::<SqlResult<_>>()?)
    }

    /// Records the start of a run (outcome `running`) and returns its id.
    ///
    /// # Errors
    /// [`CatalogError::Sql`] if the write fails.
    pub fn begin_run(
        &mut self,
        repo_id: &RepoId,
        job: Option<&str>,
        started_ns: i64,
    ) -> CatalogResult<i64> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO runs (repo_id, job, started_ns, outcome, files, bytes_read, bytes_added)
                 VALUES (?1, ?2, ?3, ?4, 0, 0, 0)",
                params![repo_id, job, started_ns, BackupOutcome::Running],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Records how run `run_id` ended.
    ///
    /// # Errors
    /// [`CatalogError::Sql`] if the write fails, or wrapping
    /// [`rusqlite::Error::QueryReturnedNoRows`] if there is no such run.
    pub fn finish_run(&mut self, run_id: i64, o: &RunOutcome) -> CatalogResult<()> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE runs SET ended_ns = ?2, outcome = ?3, files = ?4, bytes_read = ?5,
                 bytes_added = ?6, snapshot_id = ?7, message = ?8 WHERE id = ?1",
                params![
                    run_id,
                    o.ended_ns,
                    o.outcome,
                    o.files,
                    o.bytes_read,
                    o.bytes_added,
                    o.snapshot_id,
                    o.message
                ],
            )?;
            if n == 0 {
                return Err(rusqlite::Error::QueryReturnedNoRows);
            }
            Ok(())
        })
    }

    /// The newest `limit` runs of `repo_id`, newest first.
    ///
    /// # Errors
    /// [`CatalogError::Sql`] if the query fails, [`CatalogError::BadValue`] if a stored value is
    /// not one this code knows.
    pub fn runs(&self, repo_id: &RepoId, limit: usize) -> CatalogResult<Vec<RunRecord>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE repo_id = ?1
             ORDER BY started_ns DESC, id DESC LIMIT ?2"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = st.query_map(params![repo_id, limit], run_from_row)?;
        Ok(rows.collect::<SqlResult<_>>()?)
    }

    /// The run with this id, if any.
    fn run_by_id(&self, id: i64) -> SqlResult<Option<RunRecord>> {
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))?;
        st.query_row([id], run_from_row).optional()
    }

    /// Replaces everything known about `repo_id`'s snapshots and packs with `items`, in one
    /// transaction (for `bakfs catalog rebuild`). Runs and other repositories are kept.
    ///
    /// # Errors
    /// [`CatalogError::Sql`] if the write fails (nothing is changed then).
    pub fn replace_repository_contents(
        &mut self,
        repo_id: &RepoId,
        items: &[(SnapshotRecord, Vec<PackRecord>)],
    ) -> CatalogResult<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM snapshot_packs WHERE repo_id = ?1", [repo_id])?;
            tx.execute("DELETE FROM snapshots WHERE repo_id = ?1", [repo_id])?;
            tx.execute("DELETE FROM packs WHERE repo_id = ?1", [repo_id])?;
            for (s, packs) in items {
                put_snapshot(tx, s, packs)?;
            }
            Ok(())
        })
    }

    /// Runs `PRAGMA integrity_check`.
    ///
    /// # Errors
    /// [`CatalogError::Corrupt`] with SQLite's report unless it says `ok`;
    /// [`CatalogError::Sql`] if the check itself cannot run.
    pub fn integrity_check(&self) -> CatalogResult<()> {
        let mut st = self.conn.prepare("PRAGMA integrity_check")?;
        let lines = st
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<SqlResult<Vec<_>>>()?;
        if lines.len() == 1 && lines[0] == "ok" {
            Ok(())
        } else {
            Err(CatalogError::Corrupt(lines.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests;
