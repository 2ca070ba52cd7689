//! The catalog's typed values and how each one is stored.
//!
//! Every closed set of strings the catalog stores is an enum here, and every id is its newtype
//! from [`crate::format::id`]. `ToSql`/`FromSql` live in this module (nothing outside
//! `catalog/` touches rusqlite) and store exactly the text earlier versions stored, so existing
//! catalogs read unchanged. A stored value this code does not know is an error naming the
//! column and the value ([`BadValue`]), never accepted silently.
//!
//! | type | columns | stored as |
//! |---|---|---|
//! | [`RepoId`], [`SnapshotId`], [`BlobId`], [`PackId`], [`MediumId`] | every id column | 64 lowercase hex digits |
//! | [`BackupOutcome`] | `runs.outcome` | `running`, `ok`, `incomplete`, `failed` |
//! | [`MediumKind`] | `media.kind` | `usb`, `disk`, `share`, `tape`, `object storage` |
//! | [`TapeStatus`] | `media.tape_status` (schema 6) | `writable`, `full`, `expired`, `damaged`, `retired` |
//! | [`TapePlace`] | `media.tape_place` (schema 6) | `in drive`, `in library`, `offline`, `vault` |
//! | [`MediumLocation`] | `media.location` | `onsite`, `offsite` |
//! | [`MediumState`] | `media.state` | `enrolled`, `copying`, `safe to remove`, `removed during copy`, `failed`, `medium full`, `refused` |
//! | [`CopyOutcome`] | `media_runs.outcome` | `running`, `ok`, `incomplete`, `failed`, `refused`, `medium full`, `cancelled`, `interrupted` |
//! | [`FileKind`] | `media_files.kind` | [`FileKind::as_str`]: `config`, `key`, `index`, `pack`, `snapshot` (`lock` is never recorded) |
//! | [`KeepPolicy`] | `media.retention` | its JSON, e.g. `{"keep_last":3}` |
//! | [`Presence`] | `media.presence` (schema 3) | `plugged in`, `removed` (NULL: not known) |
//! | [`DrillOutcome`] | `drills.outcome` (schema 3) | `running`, `ok`, `damaged`, `failed` |
//! | [`DrillMode`] | `drills.mode` (schema 3) | `sample`, `full` |
//!
//! The enums serialize (serde) to the same text, so JSON output shows what the database holds.
//!
//! ```
//! use bakfs_core::catalog::MediumState;
//!
//! assert_eq!(MediumState::SafeToRemove.as_str(), "safe to remove");
//! assert_eq!("medium full".parse::<MediumState>().unwrap(), MediumState::MediumFull);
//! assert!("exploded".parse::<MediumState>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::Row;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::forget::KeepPolicy;
use crate::format::id::{BlobId, ContentId, MediumId, PackId, RepoId, SnapshotId};
use crate::repo::backend::FileKind;

/// A value in the catalog that this bakfs does not know: written by a newer bakfs, or by hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("catalog: {column} holds {value:?}, expected {expected} (written by a newer bakfs, or edited by hand?)")]
pub struct BadValue {
    /// `table.column`, e.g. `media.state`.
    pub column: String,
    /// The stored text.
    pub value: String,
    /// What the column may hold.
    pub expected: String,
}

/// A name that is none of an enum's values (the error of `FromStr` of the catalog's enums).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a {what}: expected {expected}")]
pub struct UnknownName {
    /// What was parsed, e.g. `medium state`.
    pub what: &'static str,
    /// The name given.
    pub value: String,
    /// The names allowed, e.g. `one of "onsite", "offsite"`.
    pub expected: String,
}

fn one_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = names.map(|n| format!("{n:?}")).collect();
    format!("one of {}", quoted.join(", "))
}

/// Reads a text column with `parse`, which says what was expected when it fails.
fn parse_text<T>(
    v: ValueRef<'_>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> FromSqlResult<T> {
    let s = v.as_str()?;
    parse(s).map_err(|expected| {
        FromSqlError::Other(Box::new(BadValue {
            column: "?".into(), // [`Cols`] names it
            value: s.to_string(),
            expected,
        }))
    })
}

/// Defines an enum stored as text: `as_str`, `ALL`, `Display`, `FromStr`, serde, `ToSql` and
/// `FromSql`, all from one list of (variant, text).
macro_rules! text_enum {
    (
        $(#[$doc:meta])*
        $name:ident ($what:literal) {
            $( $(#[$vdoc:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vdoc])* $variant, )+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as the catalog stores it and JSON output shows it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownName {
                        what: $what,
                        value: s.to_string(),
                        expected: one_of(Self::ALL.iter().map(|v| v.as_str())),
                    })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                parse_text(v, |s| {
                    s.parse::<$name>()
                        .map_err(|e| format!("a {}: {}", e.what, e.expected))
                })
            }
        }
    };
}

text_enum! {
    /// How a backup run ended (`runs.outcome`).
    BackupOutcome ("backup run outcome") {
        /// Started and not ended (yet): a backup killed midway stays so.
        Running = "running",
        /// A snapshot was saved.
        Ok = "ok",
        /// A snapshot was saved, but some files could not be read consistently.
        Incomplete = "incomplete",
        /// No snapshot (or one whose job's `after` command then failed: the run keeps its
        /// id); the run's message says why.
        Failed = "failed",
    }
}

text_enum! {
    /// What kind of device a medium is (`media.kind`).
    MediumKind ("medium kind") {
        /// On the USB bus (udev's `ID_BUS=usb`).
        Usb = "usb",
        /// Any other block device.
        Disk = "disk",
        /// A directory on a network filesystem (NFS, SMB, sshfs) that comes and goes: a NAS
        /// share (`media.share_path`, schema 5).
        Share = "share",
        /// A tape cartridge, written in a drive through Linux `st` or a virtual drive
        /// (`media.tape_*`, schema 6).
        Tape = "tape",
        /// A bucket in S3-compatible object storage (`media.bucket`, schema 8).
        ObjectStorage = "object storage",
    }
}

text_enum! {
    /// Whether a tape cartridge takes more writes (`media.tape_status`, schema 6).
    TapeStatus ("tape status") {
        /// Labelled, with room: the next job of its pool may append to it.
        Writable = "writable",
        /// It filled up (the early warning came); its set went on on another cartridge.
        Full = "full",
        /// Its whole media set is past its retention: it may be labelled again.
        Expired = "expired",
        /// Its label or a record could not be read or written: not used until checked.
        Damaged = "damaged",
        /// Taken out of service by the operator.
        Retired = "retired",
    }
}

text_enum! {
    /// Where a tape cartridge is (`media.tape_place`, schema 6).
    TapePlace ("tape place") {
        /// In a drive.
        InDrive = "in drive",
        /// In a library's slot (or, for a virtual drive, in its library directory).
        InLibrary = "in library",
        /// Out of any drive or library, on site.
        Offline = "offline",
        /// Taken to the vault (off site).
        Vault = "vault",
    }
}

text_enum! {
    /// Where a medium is kept (`media.location`).
    MediumLocation ("medium location") {
        /// Kept with the machine.
        Onsite = "onsite",
        /// Kept elsewhere.
        Offsite = "offsite",
    }
}

text_enum! {
    /// A medium's state (`media.state`), as `bakfs media enroll` and bakfs-mediad leave it.
    MediumState ("medium state") {
        /// Enrolled, never written.
        Enrolled = "enrolled",
        /// A copy run is writing it.
        Copying = "copying",
        /// The last run ended `ok` or `incomplete`; unmounted.
        SafeToRemove = "safe to remove",
        /// It went away (or the daemon stopped) during a run: the run is `cancelled`.
        RemovedDuringCopy = "removed during copy",
        /// The last run failed.
        Failed = "failed",
        /// The last run ran out of space.
        MediumFull = "medium full",
        /// Not written: not the enrolled medium, another repository's, or unsafe to write.
        Refused = "refused",
    }
}

text_enum! {
    /// How a copy run onto a medium ended (`media_runs.outcome`).
    CopyOutcome ("copy run outcome") {
        /// Started and not ended (yet).
        Running = "running",
        /// Everything the medium's policy wants is on it, verified.
        Ok = "ok",
        /// A snapshot was skipped: the primary's copy of one of its files is damaged.
        Incomplete = "incomplete",
        /// An error stopped it.
        Failed = "failed",
        /// Not the enrolled medium, or a symlink where a directory belongs: nothing written.
        Refused = "refused",
        /// The medium ran out of space.
        MediumFull = "medium full",
        /// The medium went away or the daemon was stopped.
        Cancelled = "cancelled",
        /// The daemon was killed during it (set when the next daemon starts).
        Interrupted = "interrupted",
    }
}

text_enum! {
    /// Whether a medium is plugged in (`media.presence`), as bakfs-mediad last saw it: set when
    /// an enrolled medium's filesystem appears, cleared when it goes away. NULL in the catalog
    /// (`None`): no bakfs-mediad has seen it since the column was added.
    Presence ("medium presence") {
        /// Its filesystem is on a device node now: the medium is online.
        PluggedIn = "plugged in",
        /// It went away (or was not there when the daemon started): the medium is offline.
        Removed = "removed",
    }
}

text_enum! {
    /// How a restore drill ended (`drills.outcome`).
    DrillOutcome ("drill outcome") {
        /// Started and not ended (yet).
        Running = "running",
        /// Every restored byte matched the snapshot: the copy is proven restorable.
        Ok = "ok",
        /// A restored file differed from the snapshot or did not restore: the copy is bad.
        Damaged = "damaged",
        /// The drill could not finish (the medium went away, the sandbox filled up): it says
        /// nothing about the copy.
        Failed = "failed",
    }
}

text_enum! {
    /// How much of a snapshot a drill restored (`drills.mode`).
    DrillMode ("drill mode") {
        /// A share of the files, chosen at random.
        Sample = "sample",
        /// Every file.
        Full = "full",
    }
}

/// `clap::ValueEnum` for the enums the CLI takes (`--kind`, `--location`).
#[cfg(feature = "clap")]
macro_rules! value_enum {
    ($($name:ident),+) => {$(
        impl clap::ValueEnum for $name {
            fn value_variants<'a>() -> &'a [Self] {
                Self::ALL
            }
            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(clap::builder::PossibleValue::new(self.as_str()))
            }
        }
    )+};
}

#[cfg(feature = "clap")]
value_enum!(MediumKind, MediumLocation, TapeStatus, TapePlace);

/// `ToSql`/`FromSql` for id newtypes: 64 lowercase hex digits, as `to_hex` writes them.
macro_rules! id_sql {
    ($($id:ident $what:literal),+ $(,)?) => {$(
        impl ToSql for $id {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.to_hex()))
            }
        }

        impl FromSql for $id {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                parse_text(v, |s| match $id::from_hex(s) {
                    Ok(id) if !s.bytes().any(|b| b.is_ascii_uppercase()) => Ok(id),
                    _ => Err(concat!($what, " (64 lowercase hex digits)").to_string()),
                })
            }
        }
    )+};
}

id_sql!(
    RepoId "a repository id",
    SnapshotId "a snapshot id",
    BlobId "a blob id",
    PackId "a pack id",
    MediumId "a medium id",
);

/// A file's content id (schema 4) is stored as its 32 bytes, a BLOB: the file table holds one per
/// version, and the bytes take half the room of the hex.
impl ToSql for ContentId {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(&self.0[..]))
    }
}

impl FromSql for ContentId {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        let b = v.as_blob()?;
        let bytes: [u8; 32] = b.try_into().map_err(|_| {
            FromSqlError::Other(Box::new(BadValue {
                column: "?".into(),
                value: hex::encode(b),
                expected: "a content id (32 bytes)".into(),
            }))
        })?;
        Ok(ContentId(bytes))
    }
}

impl ToSql for FileKind {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for FileKind {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        parse_text(v, |s| {
            s.parse().map_err(|_| {
                format!(
                    "a file kind: {}",
                    one_of(FileKind::ALL.iter().map(|k| k.as_str()))
                )
            })
        })
    }
}

impl ToSql for KeepPolicy {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        serde_json::to_string(self)
            .map(ToSqlOutput::from)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
    }
}

impl FromSql for KeepPolicy {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        parse_text(v, |s| {
            serde_json::from_str(s).map_err(|e| format!("a retention policy as JSON ({e})"))
        })
    }
}

/// A column holding JSON text, for [`Cols::json`].
struct Json<T>(T);

impl<T: DeserializeOwned> FromSql for Json<T> {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        parse_text(v, |s| {
            serde_json::from_str(s)
                .map(Json)
                .map_err(|e| format!("JSON ({e})"))
        })
    }
}

/// Serializes an id as its hex (the id types' own `Serialize` is the byte form of the
/// repository formats), for `#[serde(serialize_with)]` on the records' id fields.
pub(crate) fn hex<S: Serializer, T: fmt::Display>(id: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// [`hex`] of an optional id (`null` when absent).
pub(crate) fn hex_opt<S: Serializer, T: fmt::Display>(
    id: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.collect_str(id),
        None => s.serialize_none(),
    }
}

/// Serializes an optional duration as `format_duration` writes it (`"7d"`; `null` when absent).
pub(crate) fn duration_opt<S: Serializer>(
    d: &Option<std::time::Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&crate::timefmt::format_duration(*d)),
        None => s.serialize_none(),
    }
}

/// A duration as the catalog stores it: whole seconds (a value above `i64::MAX` is refused).
pub(crate) fn secs_opt(d: Option<std::time::Duration>) -> rusqlite::Result<Option<i64>> {
    d.map(|d| {
        i64::try_from(d.as_secs()).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
    })
    .transpose()
}

/// An `s3:` location column, for [`Cols::s3_location`].
struct S3Col(crate::repo::backend::S3Location);

impl FromSql for S3Col {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        let t = v.as_str()?;
        t.parse().map(S3Col).map_err(|e: String| {
            FromSqlError::Other(Box::new(BadValue {
                column: "?".into(),
                value: t.to_string(),
                expected: format!("an s3: location ({e})"),
            }))
        })
    }
}

/// Whole seconds of a duration column, for [`Cols::duration_secs`].
struct Secs(std::time::Duration);

impl FromSql for Secs {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        let n = v.as_i64()?;
        u64::try_from(n)
            .map(|n| Secs(std::time::Duration::from_secs(n)))
            .map_err(|_| {
                FromSqlError::Other(Box::new(BadValue {
                    column: "?".into(),
                    value: n.to_string(),
                    expected: "a number of seconds (0 or more)".into(),
                }))
            })
    }
}

/// One row of `table`, read column by column: a value this code does not know is reported as
/// a [`BadValue`] naming `table.column`.
pub(crate) struct Cols<'a, 'r> {
    row: &'a Row<'r>,
    table: &'static str,
}

impl<'a, 'r> Cols<'a, 'r> {
    pub(crate) fn new(row: &'a Row<'r>, table: &'static str) -> Self {
        Cols { row, table }
    }

    /// Column `idx`, converted by its `FromSql`.
    pub(crate) fn get<T: FromSql>(&self, idx: usize) -> rusqlite::Result<T> {
        self.row.get(idx).map_err(|e| self.name_column(e))
    }

    /// Column `idx`, a JSON text (e.g. `paths`).
    pub(crate) fn json<T: DeserializeOwned>(&self, idx: usize) -> rusqlite::Result<T> {
        self.get::<Json<T>>(idx).map(|j| j.0)
    }

    /// Column `idx`, a duration in whole seconds, or NULL.
    pub(crate) fn duration_secs(
        &self,
        idx: usize,
    ) -> rusqlite::Result<Option<std::time::Duration>> {
        self.get::<Option<Secs>>(idx).map(|d| d.map(|s| s.0))
    }

    /// Column `idx`, an `s3:` location, or NULL.
    pub(crate) fn s3_location(
        &self,
        idx: usize,
    ) -> rusqlite::Result<Option<crate::repo::backend::S3Location>> {
        self.get::<Option<S3Col>>(idx).map(|c| c.map(|c| c.0))
    }

    /// Puts the table and column name into a [`BadValue`] raised by a `FromSql`.
    fn name_column(&self, e: rusqlite::Error) -> rusqlite::Error {
        let rusqlite::Error::FromSqlConversionFailure(idx, ty, err) = e else {
            return e;
        };
        match err.downcast::<BadValue>() {
            Ok(mut bad) => {
                let column = self.row.as_ref().column_name(idx).unwrap_or("?");
                bad.column = format!("{}.{column}", self.table);
                rusqlite::Error::FromSqlConversionFailure(idx, ty, bad)
            }
            Err(err) => rusqlite::Error::FromSqlConversionFailure(idx, ty, err),
        }
    }
}

#[cfg(test)]
mod tests;
