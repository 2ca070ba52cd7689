//! The media ledger (schema version 2): enrolled media, what each one holds (only what was read
//! back and verified), and the history of copy runs. Unlike the snapshot tables this cannot be
//! rebuilt from the repository; a copy of each medium's part is mirrored onto the medium.
//!
//! ```text
//! media(id PK /* MediumId */, label UNIQUE, repo_id, fs_uuid UNIQUE, fs_type,
//!       serial NULL, kind /* MediumKind */, pool, location /* MediumLocation */, capacity,
//!       retention /* KeepPolicy as JSON */, enrolled_ns, last_seen_ns NULL,
//!       last_written_ns NULL, last_verified_ns NULL, state /* MediumState */, message NULL, bytes,
//!       /* schema 3: */ presence NULL /* Presence */, presence_ns NULL, free_bytes NULL,
//!       free_ns NULL, rotate_every_s NULL,
//!       /* schema 5: */ share_path NULL UNIQUE, share_source NULL, share_options NULL,
//!       /* schema 6: */ tape_set NULL, tape_set_seq NULL, tape_status NULL /* TapeStatus */,
//!       tape_place NULL /* TapePlace */,
//!       /* schema 8: */ bucket NULL UNIQUE /* s3: location */)
//! media_snapshots(medium_id, snapshot_id, time_ns, host, paths /* JSON */, job NULL,
//!       verified_ns, PK(medium_id, snapshot_id))
//! media_snapshot_packs(medium_id, snapshot_id, pack_id) -> media_snapshots ON DELETE CASCADE
//! media_files(medium_id, kind /* FileKind */, name, size, verified_ns)
//! media_runs(id PK, medium_id, started_ns, ended_ns NULL, outcome /* CopyOutcome */,
//!       snapshots_added, snapshots_removed, files_written, bytes_written, bytes_verified,
//!       seconds, message NULL)
//! ```
//! The values each typed column may hold are in `types.rs`.
//! Every table refers to `media` with ON DELETE CASCADE: `bakfs media forget` drops it all.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rusqlite::{params, OptionalExtension, Row, Transaction};
use serde::Serialize;

use super::types::{self, Cols};
use super::{
    to_json, Catalog, CatalogResult, CopyOutcome, MediumKind, MediumLocation, MediumState, Presence,
};
use crate::forget::KeepPolicy;
use crate::format::id::{MediumId, PackId, RepoId, SnapshotId};
use crate::repo::backend::{FileKind, S3Location};

/// How the files given to [`Catalog::record_medium_verified`] came to be verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Written onto the medium and read back: its last-written time moves to theirs.
    Written,
    /// Already on the medium and read again: only their check times move.
    Reread,
}

/// An enrolled medium.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediumRecord {
    #[serde(serialize_with = "types::hex")]
    pub id: MediumId,
    pub label: String,
    #[serde(serialize_with = "types::hex")]
    pub repo_id: RepoId,
    pub fs_uuid: String,
    pub fs_type: String,
    pub serial: Option<String>,
    pub kind: MediumKind,
    pub pool: String,
    pub location: MediumLocation,
    /// Bytes of the filesystem when enrolled.
    pub capacity: i64,
    /// Which snapshots the medium keeps (stored as its JSON).
    pub retention: KeepPolicy,
    pub enrolled_ns: i64,
    pub last_seen_ns: Option<i64>,
    pub last_written_ns: Option<i64>,
    /// Every file recorded on the medium was read back right at or after this time (the oldest
    /// of their checks); `None` while it holds nothing.
    pub last_verified_ns: Option<i64>,
    pub state: MediumState,
    pub message: Option<String>,
    /// Bytes of verified bakfs files on the medium.
    pub bytes: i64,
    /// Whether it is plugged in, as bakfs-mediad last saw it (schema 3); `None`: not known.
    pub presence: Option<Presence>,
    /// When bakfs-mediad recorded `presence`.
    pub presence_ns: Option<i64>,
    /// Free bytes of its filesystem at the end of the last job that made it ready.
    pub free_bytes: Option<i64>,
    /// When `free_bytes` was measured.
    pub free_ns: Option<i64>,
    /// How often it should be brought back and rotated (its own setting; `None`: its pool's
    /// from the configuration, if any). Stored as whole seconds.
    #[serde(serialize_with = "types::duration_opt")]
    pub rotate_every: Option<Duration>,
    /// Where a share ([`MediumKind::Share`]) is mounted, and how bakfs-mediad mounts it if it
    /// does (schema 5); `None` for other kinds.
    pub share: Option<Share>,
    /// A tape cartridge's media set, place in it, status and whereabouts (schema 6); `None`
    /// for other kinds.
    pub tape: Option<super::Tape>,
    /// Where a bucket ([`MediumKind::ObjectStorage`]) is: `s3:http(s)://HOST/BUCKET[/PREFIX]`
    /// (schema 8); `None` for other kinds. Its `fs_uuid` is a placeholder, `bucket-<medium id>`;
    /// its `fs_type` is `s3`.
    pub bucket: Option<S3Location>,
}

/// A NAS share as a medium: the directory its network filesystem is mounted on. Its
/// `fs_type` is the filesystem type the share had when enrolled (`nfs4`, `cifs`,
/// `fuse.sshfs`); its `fs_uuid` is a placeholder, `share-<medium id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Share {
    /// The mount point (absolute, no symlink in it).
    pub path: std::path::PathBuf,
    /// What bakfs-mediad mounts there itself when it is not mounted, if anything.
    pub mount: Option<ShareMount>,
}

/// How bakfs-mediad mounts a share: `mount -t <fs_type> -o <options> <source> <path>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShareMount {
    /// `nas:/export/backup`, `//nas/backup`, `user@nas:/backup`.
    pub source: String,
    /// Mount options (`credentials=/etc/bakfs/nas.cred`, `IdentityFile=...`); may be empty.
    pub options: String,
}

impl Share {
    /// The placeholder stored as a share's `fs_uuid` (the column is unique and not null).
    pub fn fs_uuid(id: &MediumId) -> String {
        format!("share-{}", id.to_hex())
    }
}

impl MediumRecord {
    /// A medium as enrolment records it: nothing seen, written or verified since, in pool
    /// `default`, keeping everything; the rest is filled in by struct update where it differs.
    pub fn enrolled(
        id: MediumId,
        label: &str,
        repo_id: RepoId,
        fs_uuid: &str,
        kind: MediumKind,
        location: MediumLocation,
        enrolled_ns: i64,
    ) -> MediumRecord {
        MediumRecord {
            id,
            label: label.to_string(),
            repo_id,
            fs_uuid: fs_uuid.to_string(),
            fs_type: String::new(),
            serial: None,
            kind,
            pool: "default".to_string(),
            location,
            capacity: 0,
            retention: KeepPolicy::default(),
            enrolled_ns,
            last_seen_ns: None,
            last_written_ns: None,
            last_verified_ns: None,
            state: MediumState::Enrolled,
            message: None,
            bytes: 0,
            presence: None,
            presence_ns: None,
            free_bytes: None,
            free_ns: None,
            rotate_every: None,
            share: None,
            tape: None,
            bucket: None,
        }
    }

    /// The placeholder stored as a bucket's `fs_uuid` (the column is unique and not null).
    pub fn bucket_fs_uuid(id: &MediumId) -> String {
        format!("bucket-{}", id.to_hex())
    }
}

/// A snapshot held (and verified) on a medium.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediumSnapshot {
    #[serde(serialize_with = "types::hex")]
    pub snapshot_id: SnapshotId,
    pub time_ns: i64,
    pub host: String,
    pub paths: Vec<String>,
    pub job: Option<String>,
    pub verified_ns: i64,
}

/// A repository file held (and verified) on a medium.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct MediumFile {
    /// `Pack`, `Index`, `Snapshot`, `Key` or `Config`.
    pub kind: FileKind,
    /// The file's name in its directory (`config` for the config).
    pub name: String,
    pub size: i64,
    pub verified_ns: i64,
}

/// One copy run onto a medium.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediumRun {
    pub id: i64,
    #[serde(serialize_with = "types::hex")]
    pub medium_id: MediumId,
    pub started_ns: i64,
    pub ended_ns: Option<i64>,
    pub outcome: CopyOutcome,
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
    message, bytes, presence, presence_ns, free_bytes, free_ns, rotate_every_s, share_path,
    share_source, share_options, tape_set, tape_set_seq, tape_status, tape_place, bucket";

fn medium_from_row(r: &Row<'_>) -> rusqlite::Result<MediumRecord> {
    let c = Cols::new(r, "media");
    Ok(MediumRecord {
        id: c.get(0)?,
        label: c.get(1)?,
        repo_id: c.get(2)?,
        fs_uuid: c.get(3)?,
        fs_type: c.get(4)?,
        serial: c.get(5)?,
        kind: c.get(6)?,
        pool: c.get(7)?,
        location: c.get(8)?,
        capacity: c.get(9)?,
        retention: c.get(10)?,
        enrolled_ns: c.get(11)?,
        last_seen_ns: c.get(12)?,
        last_written_ns: c.get(13)?,
        last_verified_ns: c.get(14)?,
        state: c.get(15)?,
        message: c.get(16)?,
        bytes: c.get(17)?,
        presence: c.get(18)?,
        presence_ns: c.get(19)?,
        free_bytes: c.get(20)?,
        free_ns: c.get(21)?,
        rotate_every: c.duration_secs(22)?,
        share: share_from_cols(c.get(23)?, c.get(24)?, c.get(25)?),
        tape: super::tapes::tape_from_cols(c.get(26)?, c.get(27)?, c.get(28)?, c.get(29)?),
        bucket: c.s3_location(30)?,
    })
}

fn share_from_cols(
    path: Option<String>,
    source: Option<String>,
    options: Option<String>,
) -> Option<Share> {
    Some(Share {
        path: path?.into(),
        mount: source.map(|source| ShareMount {
            source,
            options: options.unwrap_or_default(),
        }),
    })
}

/// Recomputes a medium's bytes and `last_verified_ns`: the oldest check of any file on it, so
/// "last verified" means every byte recorded on the medium was read back right since then.
fn refresh_totals(tx: &Transaction, medium_id: &MediumId) -> rusqlite::Result<()> {
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
        let share = m.share.as_ref();
        let mount = share.and_then(|s| s.mount.as_ref());
        self.write(|tx| {
            tx.execute(
                &format!("INSERT INTO media ({MEDIUM_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26,?27,?28,?29,?30,?31)"),
                params![
                    m.id, m.label, m.repo_id, m.fs_uuid, m.fs_type, m.serial, m.kind, m.pool,
                    m.location, m.capacity, m.retention, m.enrolled_ns, m.last_seen_ns,
                    m.last_written_ns, m.last_verified_ns, m.state, m.message, m.bytes,
                    m.presence, m.presence_ns, m.free_bytes, m.free_ns,
                    types::secs_opt(m.rotate_every)?,
                    share.map(|s| s.path.to_string_lossy().into_owned()),
                    mount.map(|x| x.source.as_str()),
                    mount.map(|x| x.options.as_str()),
                    m.tape.as_ref().map(|t| t.set.as_str()),
                    m.tape.as_ref().map(|t| t.seq),
                    m.tape.as_ref().map(|t| t.status),
                    m.tape.as_ref().map(|t| t.place),
                    m.bucket.as_ref().map(|b| b.to_string()),
                ],
            )
            .map(drop)
        })
    }

    /// Every enrolled medium, by label.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], or [`super::CatalogError::BadValue`] for a stored value
    /// this code does not know.
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
    /// [`super::CatalogError::Sql`], or [`super::CatalogError::BadValue`] for a stored value
    /// this code does not know.
    pub fn medium_by_label(&self, label: &str) -> CatalogResult<Option<MediumRecord>> {
        self.medium_where("label", label)
    }

    /// The medium with this filesystem UUID, if any.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], or [`super::CatalogError::BadValue`] for a stored value
    /// this code does not know.
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
    pub fn set_medium_location(
        &mut self,
        label: &str,
        location: MediumLocation,
    ) -> CatalogResult<bool> {
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
        id: &MediumId,
        state: MediumState,
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

    /// Records whether a medium is plugged in, as bakfs-mediad sees it at `now_ns`. Plugged in
    /// or removed, it was seen until now: `last_seen_ns` moves too.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn set_medium_presence(
        &mut self,
        id: &MediumId,
        presence: Presence,
        now_ns: i64,
    ) -> CatalogResult<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE media SET presence = ?2, presence_ns = ?3, last_seen_ns = ?3 WHERE id = ?1",
                params![id, presence, now_ns],
            )
            .map(drop)
        })
    }

    /// Marks every medium recorded as plugged in, other than `present`, as removed (a daemon
    /// starting: what is not there now went away while no daemon watched). `last_seen_ns` stays:
    /// when it went is not known. Returns how many were marked.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn set_media_removed_except(
        &mut self,
        present: &[MediumId],
        now_ns: i64,
    ) -> CatalogResult<usize> {
        self.write(|tx| {
            let mut plugged = Vec::new();
            {
                let mut st = tx.prepare("SELECT id FROM media WHERE presence = ?1")?;
                let rows = st.query_map([Presence::PluggedIn], |r| {
                    Cols::new(r, "media").get::<MediumId>(0)
                })?;
                for id in rows {
                    plugged.push(id?);
                }
            }
            let mut n = 0;
            for id in plugged.iter().filter(|id| !present.contains(id)) {
                n += tx.execute(
                    "UPDATE media SET presence = ?2, presence_ns = ?3 WHERE id = ?1",
                    params![id, Presence::Removed, now_ns],
                )?;
            }
            Ok(n)
        })
    }

    /// Records a medium's free space, measured at `now_ns` (the end of a job).
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn set_medium_free_bytes(
        &mut self,
        id: &MediumId,
        free_bytes: u64,
        now_ns: i64,
    ) -> CatalogResult<()> {
        let free = i64::try_from(free_bytes).unwrap_or(i64::MAX);
        self.write(|tx| {
            tx.execute(
                "UPDATE media SET free_bytes = ?2, free_ns = ?3 WHERE id = ?1",
                params![id, free, now_ns],
            )
            .map(drop)
        })
    }

    /// Sets how often a medium should be rotated (`None`: as its pool). Returns false if there
    /// is no such medium.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn set_medium_rotate_every(
        &mut self,
        label: &str,
        every: Option<Duration>,
    ) -> CatalogResult<bool> {
        self.write(|tx| {
            tx.execute(
                "UPDATE media SET rotate_every_s = ?2 WHERE label = ?1",
                params![label, types::secs_opt(every)?],
            )
            .map(|n| n > 0)
        })
    }

    /// The snapshots verified on a medium, oldest first.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], or [`super::CatalogError::BadValue`] for a stored value
    /// this code does not know.
    pub fn medium_snapshots(&self, medium_id: &MediumId) -> CatalogResult<Vec<MediumSnapshot>> {
        let mut st = self.conn.prepare_cached(
            "SELECT snapshot_id, time_ns, host, paths, job, verified_ns FROM media_snapshots
             WHERE medium_id = ?1 ORDER BY time_ns, snapshot_id",
        )?;
        let rows = st.query_map([medium_id], |r| {
            let c = Cols::new(r, "media_snapshots");
            Ok(MediumSnapshot {
                snapshot_id: c.get(0)?,
                time_ns: c.get(1)?,
                host: c.get(2)?,
                paths: c.json(3)?,
                job: c.get(4)?,
                verified_ns: c.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The packs each snapshot on a medium needs, by snapshot id.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], or [`super::CatalogError::BadValue`] for a stored value
    /// this code does not know.
    pub fn medium_packs_by_snapshot(
        &self,
        medium_id: &MediumId,
    ) -> CatalogResult<HashMap<SnapshotId, HashSet<PackId>>> {
        let mut st = self.conn.prepare_cached(
            "SELECT snapshot_id, pack_id FROM media_snapshot_packs WHERE medium_id = ?1",
        )?;
        let mut out: HashMap<SnapshotId, HashSet<PackId>> = HashMap::new();
        let rows = st.query_map([medium_id], |r| {
            let c = Cols::new(r, "media_snapshot_packs");
            Ok((c.get(0)?, c.get(1)?))
        })?;
        for row in rows {
            let (snap, pack): (SnapshotId, PackId) = row?;
            out.entry(snap).or_default().insert(pack);
        }
        Ok(out)
    }

    /// The files verified on a medium.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], or [`super::CatalogError::BadValue`] for a stored value
    /// this code does not know.
    pub fn medium_files(&self, medium_id: &MediumId) -> CatalogResult<Vec<MediumFile>> {
        let mut st = self.conn.prepare_cached(
            "SELECT kind, name, size, verified_ns FROM media_files WHERE medium_id = ?1
             ORDER BY kind, name",
        )?;
        let rows = st.query_map([medium_id], |r| {
            let c = Cols::new(r, "media_files");
            Ok(MediumFile {
                kind: c.get(0)?,
                name: c.get(1)?,
                size: c.get(2)?,
                verified_ns: c.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records, in one transaction, files and snapshots that were read back verified on a medium
    /// at `verified_ns`, `how` says after what. A snapshot's pack list replaces any earlier one.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`] (nothing is recorded then).
    pub fn record_medium_verified(
        &mut self,
        medium_id: &MediumId,
        files: &[MediumFile],
        snapshots: &[(MediumSnapshot, Vec<PackId>)],
        how: Verification,
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
            if how == Verification::Written {
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
        medium_id: &MediumId,
        ids: &[SnapshotId],
    ) -> CatalogResult<()> {
        self.write(|tx| {
            for id in ids {
                tx.execute(
                    "DELETE FROM media_snapshots WHERE medium_id = ?1 AND snapshot_id = ?2",
                    params![medium_id, id],
                )?;
                tx.execute(
                    "DELETE FROM media_files WHERE medium_id = ?1 AND kind = ?2 AND name = ?3",
                    params![medium_id, FileKind::Snapshot, id.to_hex()],
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
        medium_id: &MediumId,
        files: &[(FileKind, String)],
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
    pub fn begin_medium_run(
        &mut self,
        medium_id: &MediumId,
        started_ns: i64,
    ) -> CatalogResult<i64> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO media_runs (medium_id, started_ns, outcome) VALUES (?1, ?2, ?3)",
                params![medium_id, started_ns, CopyOutcome::Running],
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
    /// [`super::CatalogError::Sql`], or [`super::CatalogError::BadValue`] for a stored value
    /// this code does not know.
    pub fn medium_runs(&self, medium_id: &MediumId, limit: usize) -> CatalogResult<Vec<MediumRun>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, medium_id, started_ns, ended_ns, outcome, snapshots_added,
             snapshots_removed, files_written, bytes_written, bytes_verified, seconds, message
             FROM media_runs WHERE medium_id = ?1 ORDER BY started_ns DESC, id DESC LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = st.query_map(params![medium_id, limit], |r| {
            let c = Cols::new(r, "media_runs");
            Ok(MediumRun {
                id: c.get(0)?,
                medium_id: c.get(1)?,
                started_ns: c.get(2)?,
                ended_ns: c.get(3)?,
                outcome: c.get(4)?,
                snapshots_added: c.get(5)?,
                snapshots_removed: c.get(6)?,
                files_written: c.get(7)?,
                bytes_written: c.get(8)?,
                bytes_verified: c.get(9)?,
                seconds: c.get(10)?,
                message: c.get(11)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The newest `limit` copy runs of a medium and how many it has had, read at one moment
    /// (a run starting between two separate reads would make them disagree).
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], or [`super::CatalogError::BadValue`] for a stored value
    /// this code does not know.
    pub fn medium_runs_and_count(
        &self,
        medium_id: &MediumId,
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
    pub fn medium_run_count(&self, medium_id: &MediumId) -> CatalogResult<i64> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM media_runs WHERE medium_id = ?1",
            [medium_id],
            |r| r.get(0),
        )?)
    }

    /// Marks runs still `running` as `interrupted` (a daemon starting after a crash), but those
    /// of tapes: their watchers close them ([`Catalog::abandon_tape_runs`]) before they start
    /// the jobs that a daemon's start-up must not close.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn abandon_medium_runs(&mut self, now_ns: i64) -> CatalogResult<usize> {
        self.abandon_by_kind(false, now_ns)
    }

    /// Marks the runs of tapes still `running` as `interrupted` (a daemon starting after a
    /// crash, before its tape watchers start).
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn abandon_tape_runs(&mut self, now_ns: i64) -> CatalogResult<usize> {
        self.abandon_by_kind(true, now_ns)
    }

    fn abandon_by_kind(&mut self, tapes: bool, now_ns: i64) -> CatalogResult<usize> {
        self.write(|tx| {
            tx.execute(
                "UPDATE media_runs SET outcome = ?2, ended_ns = ?1, message = ?4
                 WHERE outcome = ?3
                   AND (medium_id IN (SELECT id FROM media WHERE kind = ?5)) = ?6",
                params![
                    now_ns,
                    CopyOutcome::Interrupted,
                    CopyOutcome::Running,
                    "the daemon stopped during the run",
                    MediumKind::Tape,
                    tapes
                ],
            )
        })
    }

    /// Closes the running run of one medium whose job stopped answering (a hung network
    /// share): `interrupted`, with `why`; its state becomes `failed` with `why`. If the job
    /// comes back later, what it records then replaces this.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn abandon_medium_run(
        &mut self,
        medium_id: &MediumId,
        why: &str,
        now_ns: i64,
    ) -> CatalogResult<usize> {
        let n = self.abandon_runs_where(Some(medium_id), why, now_ns)?;
        self.set_medium_state(medium_id, MediumState::Failed, Some(why), now_ns)?;
        Ok(n)
    }

    fn abandon_runs_where(
        &mut self,
        medium_id: Option<&MediumId>,
        why: &str,
        now_ns: i64,
    ) -> CatalogResult<usize> {
        self.write(|tx| {
            tx.execute(
                "UPDATE media_runs SET outcome = ?2, ended_ns = ?1, message = ?4
                 WHERE outcome = ?3 AND (?5 IS NULL OR medium_id = ?5)",
                params![
                    now_ns,
                    CopyOutcome::Interrupted,
                    CopyOutcome::Running,
                    why,
                    medium_id
                ],
            )
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mid(label: &str) -> MediumId {
        MediumId::hash_of(label.as_bytes())
    }

    fn sid(s: &str) -> SnapshotId {
        SnapshotId::hash_of(s.as_bytes())
    }

    fn pid(s: &str) -> PackId {
        PackId::hash_of(s.as_bytes())
    }

    fn medium(label: &str, uuid: &str) -> MediumRecord {
        MediumRecord {
            id: mid(label),
            label: label.into(),
            repo_id: RepoId::hash_of(b"r"),
            fs_uuid: uuid.into(),
            fs_type: "ext4".into(),
            serial: None,
            kind: MediumKind::Usb,
            pool: "offsite".into(),
            location: MediumLocation::Offsite,
            capacity: 1 << 30,
            retention: KeepPolicy {
                last: Some(2),
                ..Default::default()
            },
            enrolled_ns: 1,
            last_seen_ns: None,
            last_written_ns: None,
            last_verified_ns: None,
            state: MediumState::Enrolled,
            message: None,
            bytes: 0,
            presence: None,
            presence_ns: None,
            free_bytes: None,
            free_ns: None,
            rotate_every: None,
            share: None,
            tape: None,
            bucket: None,
        }
    }

    #[test]
    fn a_bucket_is_recorded_with_its_location_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("c.db")).unwrap();
        let loc: S3Location = "s3:http://127.0.0.1:9000/offsite/host-a".parse().unwrap();
        let bucket = |label: &str| MediumRecord {
            kind: MediumKind::ObjectStorage,
            fs_type: "s3".into(),
            bucket: Some(loc.clone()),
            ..medium(label, &MediumRecord::bucket_fs_uuid(&mid(label)))
        };
        c.enroll_medium(&bucket("CLOUD-1")).unwrap();
        let m = c.medium_by_label("CLOUD-1").unwrap().unwrap();
        assert_eq!(m, bucket("CLOUD-1"));
        assert_eq!(m.kind.as_str(), "object storage");
        assert!(
            c.enroll_medium(&bucket("CLOUD-2")).is_err(),
            "a location is enrolled once"
        );
        // A location this code cannot read is named, not taken for another.
        c.conn
            .execute(
                "UPDATE media SET bucket = 'ftp://x' WHERE label = 'CLOUD-1'",
                [],
            )
            .unwrap();
        let e = c.medium_by_label("CLOUD-1").unwrap_err().to_string();
        assert!(e.contains("media.bucket"), "{e}");
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
        let a = mid("A");
        let snap = MediumSnapshot {
            snapshot_id: sid("s1"),
            time_ns: 5,
            host: "h".into(),
            paths: vec!["/etc".into()],
            job: None,
            verified_ns: 9,
        };
        let file = |kind, name: String, size| MediumFile {
            kind,
            name,
            size,
            verified_ns: 9,
        };
        c.record_medium_verified(
            &a,
            &[
                file(FileKind::Pack, pid("p1").to_hex(), 100),
                file(FileKind::Snapshot, sid("s1").to_hex(), 10),
            ],
            &[(snap.clone(), vec![pid("p1")])],
            Verification::Written,
            9,
        )
        .unwrap();
        let m = c.medium_by_uuid("u1").unwrap().unwrap();
        assert_eq!((m.bytes, m.last_written_ns), (110, Some(9)));
        assert_eq!(m.last_verified_ns, Some(9));
        assert_eq!(c.medium_snapshots(&a).unwrap(), vec![snap]);
        assert!(c.medium_packs_by_snapshot(&a).unwrap()[&sid("s1")].contains(&pid("p1")));
        // Checked again later: last verified is the oldest check of any file.
        let mut again = file(FileKind::Pack, pid("p1").to_hex(), 100);
        again.verified_ns = 20;
        c.record_medium_verified(&a, &[again], &[], Verification::Reread, 20)
            .unwrap();
        let m = c.medium_by_uuid("u1").unwrap().unwrap();
        assert_eq!((m.last_written_ns, m.last_verified_ns), (Some(9), Some(9)));
        c.remove_medium_snapshots(&a, &[sid("s1")]).unwrap();
        assert!(c.medium_packs_by_snapshot(&a).unwrap().is_empty());
        assert_eq!(c.medium_files(&a).unwrap().len(), 1);
        let m = c.medium_by_uuid("u1").unwrap().unwrap();
        assert_eq!(
            (m.bytes, m.last_verified_ns),
            (100, Some(20)),
            "totals follow removals"
        );
        let run = c.begin_medium_run(&a, 3).unwrap();
        assert_eq!(c.abandon_medium_runs(4).unwrap(), 1);
        assert_eq!(c.medium_runs(&a, 5).unwrap()[0].id, run);
        assert!(c.forget_medium("A").unwrap());
        assert!(c.medium_files(&a).unwrap().is_empty());
        assert!(c.medium_runs(&a, 5).unwrap().is_empty());
        assert!(!c.forget_medium("A").unwrap());
    }
}
