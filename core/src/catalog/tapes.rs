//! Tapes as media (schema version 6): a cartridge is a medium of kind `tape` with its media
//! set, its place in the set, its status and where it is (`media.tape_*`), and for every file
//! it holds, where on the tape it is (`tape_files`), so that a restore spaces straight to it.
//!
//! ```text
//! media(..., tape_set NULL, tape_set_seq NULL, tape_status NULL /* TapeStatus */,
//!       tape_place NULL /* TapePlace */)
//! tape_files(medium_id, kind /* FileKind */, name, size, file, block, blake3,
//!       PK(medium_id, kind, name)) -> media ON DELETE CASCADE
//! ```
//! A file is in `tape_files` only once it is in `media_files` too (read back verified);
//! bakfs-mediad records both in one transaction ([`Catalog::record_tape_files`] after
//! [`Catalog::record_medium_verified`] in the same job).

use rusqlite::params;
use serde::Serialize;

use super::types::Cols;
use super::{Catalog, CatalogResult, MediumRecord, TapePlace, TapeStatus};
use crate::format::id::MediumId;
use crate::repo::backend::FileKind;

/// A tape cartridge's part of its medium record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tape {
    /// Its media set (32 random bytes in hex): the cartridges a job filled one after another.
    pub set: String,
    /// Its place in the set, from 0.
    pub seq: u32,
    /// Whether it takes more writes.
    pub status: TapeStatus,
    /// Where it is.
    pub place: TapePlace,
}

pub(super) fn tape_from_cols(
    set: Option<String>,
    seq: Option<u32>,
    status: Option<TapeStatus>,
    place: Option<TapePlace>,
) -> Option<Tape> {
    Some(Tape {
        set: set?,
        seq: seq.unwrap_or(0),
        status: status.unwrap_or(TapeStatus::Writable),
        place: place.unwrap_or(TapePlace::Offline),
    })
}

/// Where a file is on a tape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TapeFile {
    /// Its kind.
    pub kind: FileKind,
    /// Its name.
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
    /// The tape file holding it.
    pub file: u64,
    /// The block of its entry record in that tape file.
    pub block: u64,
    /// The blake3 of its bytes, in hex.
    pub blake3: String,
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Catalog {
    /// Records where files are on a tape (replacing what was recorded for the same names).
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`] (nothing is recorded then).
    pub fn record_tape_files(
        &mut self,
        medium_id: &MediumId,
        files: &[TapeFile],
    ) -> CatalogResult<()> {
        self.write(|tx| {
            let mut st = tx.prepare_cached(
                "INSERT INTO tape_files (medium_id, kind, name, size, file, block, blake3)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(medium_id, kind, name)
                 DO UPDATE SET size = excluded.size, file = excluded.file,
                   block = excluded.block, blake3 = excluded.blake3",
            )?;
            for f in files {
                st.execute(params![
                    medium_id,
                    f.kind,
                    f.name,
                    int(f.size),
                    int(f.file),
                    int(f.block),
                    f.blake3
                ])?;
            }
            Ok(())
        })
    }

    /// Where each file on a tape is, in tape order.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], [`super::CatalogError::BadValue`].
    pub fn tape_files(&self, medium_id: &MediumId) -> CatalogResult<Vec<TapeFile>> {
        let mut st = self.conn.prepare_cached(
            "SELECT kind, name, size, file, block, blake3 FROM tape_files WHERE medium_id = ?1
             ORDER BY file, block",
        )?;
        let rows = st.query_map([medium_id], |r| {
            let c = Cols::new(r, "tape_files");
            Ok(TapeFile {
                kind: c.get(0)?,
                name: c.get(1)?,
                size: c.get::<i64>(2)?.try_into().unwrap_or(0),
                file: c.get::<i64>(3)?.try_into().unwrap_or(0),
                block: c.get::<i64>(4)?.try_into().unwrap_or(0),
                blake3: c.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Sets a tape's status and place, as far as given.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn set_tape_state(
        &mut self,
        medium_id: &MediumId,
        status: Option<TapeStatus>,
        place: Option<TapePlace>,
    ) -> CatalogResult<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE media SET tape_status = COALESCE(?2, tape_status),
                   tape_place = COALESCE(?3, tape_place) WHERE id = ?1",
                params![medium_id, status, place],
            )
            .map(drop)
        })
    }

    /// Forgets everything a tape held (it is being labelled again at `now_ns`): its files,
    /// snapshots and positions; its runs stay in the history. It starts set `set` at `seq`,
    /// writable, never written, labelled (`enrolled_ns`) now.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`].
    pub fn relabel_tape(
        &mut self,
        medium_id: &MediumId,
        set: &str,
        seq: u32,
        now_ns: i64,
    ) -> CatalogResult<()> {
        self.write(|tx| {
            for table in ["tape_files", "media_files", "media_snapshots"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE medium_id = ?1"),
                    [medium_id],
                )?;
            }
            tx.execute(
                "UPDATE media SET tape_set = ?2, tape_set_seq = ?3, tape_status = ?4, bytes = 0,
                   last_verified_ns = NULL, last_written_ns = NULL, enrolled_ns = ?5 WHERE id = ?1",
                params![medium_id, set, seq, TapeStatus::Writable, now_ns],
            )
            .map(drop)
        })
    }

    /// The cartridges of a media set, in set order.
    ///
    /// # Errors
    /// [`super::CatalogError::Sql`], [`super::CatalogError::BadValue`].
    pub fn tape_set(&self, set: &str) -> CatalogResult<Vec<MediumRecord>> {
        let mut v: Vec<MediumRecord> = self
            .media()?
            .into_iter()
            .filter(|m| m.tape.as_ref().is_some_and(|t| t.set == set))
            .collect();
        v.sort_by_key(|m| m.tape.as_ref().map_or(0, |t| t.seq));
        Ok(v)
    }
}
