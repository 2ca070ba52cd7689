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
//! | [`MediumKind`] | `media.kind` | `usb`, `disk` |
//! | [`MediumLocation`] | `media.location` | `onsite`, `offsite` |
//! | [`MediumState`] | `media.state` | `enrolled`, `copying`, `safe to remove`, `removed during copy`, `failed`, `medium full`, `refused` |
//! | [`CopyOutcome`] | `media_runs.outcome` | `running`, `ok`, `incomplete`, `failed`, `refused`, `medium full`, `cancelled`, `interrupted` |
//! | [`FileKind`] | `media_files.kind` | [`FileKind::as_str`]: `config`, `key`, `index`, `pack`, `snapshot` (`lock` is never recorded) |
//! | [`KeepPolicy`] | `media.retention` | its JSON, e.g. `{"keep_last":3}` |
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
use crate::format::id::{BlobId, MediumId, PackId, RepoId, SnapshotId};
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
        /// No snapshot; the run's message says why.
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
value_enum!(MediumKind, MediumLocation);

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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::catalog::{
        Catalog, CatalogError, CatalogResult, MediumRun, RunOutcome, SCHEMA_VERSION,
    };
    use rusqlite::types::Value;
    use rusqlite::Connection;

    /// The text each value is stored as. Changing one breaks every catalog in use: add a
    /// migration instead (docs/catalog.md).
    #[test]
    fn stored_texts_never_change() {
        fn texts<T: Copy>(all: &[T], f: impl Fn(T) -> &'static str) -> Vec<&'static str> {
            all.iter().map(|v| f(*v)).collect()
        }
        assert_eq!(
            texts(BackupOutcome::ALL, BackupOutcome::as_str),
            ["running", "ok", "incomplete", "failed"]
        );
        assert_eq!(texts(MediumKind::ALL, MediumKind::as_str), ["usb", "disk"]);
        assert_eq!(
            texts(MediumLocation::ALL, MediumLocation::as_str),
            ["onsite", "offsite"]
        );
        assert_eq!(
            texts(MediumState::ALL, MediumState::as_str),
            [
                "enrolled",
                "copying",
                "safe to remove",
                "removed during copy",
                "failed",
                "medium full",
                "refused"
            ]
        );
        assert_eq!(
            texts(CopyOutcome::ALL, CopyOutcome::as_str),
            [
                "running",
                "ok",
                "incomplete",
                "failed",
                "refused",
                "medium full",
                "cancelled",
                "interrupted"
            ]
        );
        assert_eq!(
            texts(&FileKind::ALL, FileKind::as_str),
            ["config", "key", "pack", "index", "snapshot", "lock"]
        );
    }

    /// Writes `v` into a column, reads it back, and checks the stored text.
    fn round_trip<T: ToSql + FromSql + PartialEq + fmt::Debug>(
        conn: &Connection,
        v: &T,
        text: &str,
    ) {
        conn.execute("DELETE FROM t", []).unwrap();
        conn.execute("INSERT INTO t (v) VALUES (?1)", [v]).unwrap();
        let (back, raw): (T, String) = conn
            .query_row("SELECT v, v FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!(&back, v);
        assert_eq!(raw, text);
    }

    #[test]
    fn every_value_round_trips_through_sqlite_as_its_text() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v)").unwrap();
        for v in BackupOutcome::ALL {
            round_trip(&conn, v, v.as_str());
            assert_eq!(v.as_str().parse::<BackupOutcome>().unwrap(), *v);
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
        for v in MediumKind::ALL {
            round_trip(&conn, v, v.as_str());
        }
        for v in MediumLocation::ALL {
            round_trip(&conn, v, v.as_str());
        }
        for v in MediumState::ALL {
            round_trip(&conn, v, v.as_str());
            let json = serde_json::to_string(v).unwrap();
            assert_eq!(serde_json::from_str::<MediumState>(&json).unwrap(), *v);
        }
        for v in CopyOutcome::ALL {
            round_trip(&conn, v, v.as_str());
        }
        for v in FileKind::ALL {
            round_trip(&conn, &v, v.as_str());
        }
        let id = RepoId::random();
        round_trip(&conn, &id, &id.to_hex());
        let id = SnapshotId::random();
        round_trip(&conn, &id, &id.to_hex());
        let id = BlobId::random();
        round_trip(&conn, &id, &id.to_hex());
        let id = PackId::random();
        round_trip(&conn, &id, &id.to_hex());
        let id = MediumId::random();
        round_trip(&conn, &id, &id.to_hex());
        for (policy, text) in [
            (KeepPolicy::default(), "{}"),
            (
                KeepPolicy {
                    last: Some(3),
                    ..Default::default()
                },
                r#"{"keep_last":3}"#,
            ),
            (
                KeepPolicy {
                    daily: Some(7),
                    within: Some(std::time::Duration::from_secs(30 * 86400)),
                    ..Default::default()
                },
                r#"{"keep_daily":7,"keep_within":"30d"}"#,
            ),
        ] {
            round_trip(&conn, &policy, text);
        }
        // Display pads like a string (the CLI's tables align on it).
        assert_eq!(
            format!("[{:<16}]", MediumState::SafeToRemove),
            "[safe to remove  ]"
        );
    }

    /// The catalog of `testdata/catalog-v2.sql`, written before the values were typed.
    fn old_catalog() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let conn = Connection::open(&path).unwrap();
        // The dump creates the tables in alphabetical order, some before those they refer to.
        conn.pragma_update(None, "foreign_keys", false).unwrap();
        conn.execute_batch(include_str!("testdata/catalog-v2.sql"))
            .unwrap();
        drop(conn);
        let c = Catalog::open(&path).unwrap();
        (dir, c)
    }

    fn repo() -> RepoId {
        RepoId::hash_of(b"repo")
    }

    /// The medium of the fixture that holds files, snapshots and runs.
    fn medium() -> MediumId {
        MediumId::hash_of(b"enrolled")
    }

    /// Every row of `table` (all columns but `skip`), in a stable order.
    fn rows(c: &Catalog, table: &str, skip: &str) -> Vec<Vec<Value>> {
        let mut st = c.conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let keep: Vec<usize> = (0..st.column_count())
            .filter(|&i| st.column_name(i).unwrap() != skip)
            .collect();
        let mut out: Vec<Vec<Value>> = st
            .query_map([], |r| keep.iter().map(|&i| r.get(i)).collect())
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        out
    }

    #[test]
    fn a_catalog_written_before_the_types_reads_and_is_written_the_same() {
        let (_d, old) = old_catalog();
        assert_eq!(old.schema_version(), SCHEMA_VERSION, "no migration needed");
        let (repo, m) = (repo(), medium());
        let media = old.media().unwrap();
        let states: Vec<MediumState> = media.iter().map(|m| m.state).collect();
        assert_eq!(states, MediumState::ALL, "M0..M6 hold every state");
        assert!(MediumKind::ALL
            .iter()
            .all(|k| media.iter().any(|m| m.kind == *k)));
        assert!(MediumLocation::ALL
            .iter()
            .all(|l| media.iter().any(|m| m.location == *l)));
        assert_eq!(media[0].retention.last, Some(3));
        let runs = old.runs(&repo, 100).unwrap();
        assert!(BackupOutcome::ALL
            .iter()
            .all(|o| runs.iter().any(|r| r.outcome == *o)));
        let medium_runs = old.medium_runs(&m, 100).unwrap();
        assert!(CopyOutcome::ALL
            .iter()
            .all(|o| medium_runs.iter().any(|r| r.outcome == *o)));
        let files = old.medium_files(&m).unwrap();
        assert_eq!(files.len(), 6);

        // Serialized as that version did (`media show --json`, `catalog runs --json`, ledger.json).
        let s2 = SnapshotId::hash_of(b"s2");
        let json = serde_json::json!({
            "snapshots": old.snapshots(&repo).unwrap(),
            "snapshot_packs": old.snapshot_packs(&repo, &s2).unwrap(),
            "runs": runs,
            "medium_snapshots": old.medium_snapshots(&m).unwrap(),
            "medium_files": files,
            "medium_runs": medium_runs,
        });
        let want: serde_json::Value =
            serde_json::from_str(include_str!("testdata/catalog-v2.json")).unwrap();
        assert_eq!(json, want);

        // Written again by this code, every row holds the same text.
        let dir = tempfile::tempdir().unwrap();
        let mut new = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        new.touch_repository(&repo, "/srv/bakfs", 1_780_000_000_000_000_000)
            .unwrap();
        for s in old.snapshots(&repo).unwrap() {
            let packs = old.snapshot_packs(&repo, &s.id).unwrap();
            new.record_snapshot(&s, &packs).unwrap();
        }
        let mut runs = old.runs(&repo, 100).unwrap();
        runs.reverse();
        for r in runs {
            let id = new
                .begin_run(&r.repo_id, r.job.as_deref(), r.started_ns)
                .unwrap();
            if let Some(ended_ns) = r.ended_ns {
                let o = RunOutcome {
                    ended_ns,
                    outcome: r.outcome,
                    files: r.files,
                    bytes_read: r.bytes_read,
                    bytes_added: r.bytes_added,
                    snapshot_id: r.snapshot_id,
                    message: r.message,
                };
                new.finish_run(id, &o).unwrap();
            }
        }
        for rec in old.media().unwrap() {
            new.enroll_medium(&rec).unwrap();
        }
        let packs = old.medium_packs_by_snapshot(&m).unwrap();
        let snaps: Vec<_> = old
            .medium_snapshots(&m)
            .unwrap()
            .into_iter()
            .map(|s| {
                let p: Vec<PackId> = packs[&s.snapshot_id].iter().copied().collect();
                (s, p)
            })
            .collect();
        let verified = old.medium_by_label("M0").unwrap().unwrap().last_written_ns;
        new.record_medium_verified(
            &m,
            &old.medium_files(&m).unwrap(),
            &snaps,
            crate::catalog::Verification::Written,
            verified.unwrap(),
        )
        .unwrap();
        let mut medium_runs = old.medium_runs(&m, 100).unwrap();
        medium_runs.reverse();
        for r in medium_runs {
            let id = new.begin_medium_run(&r.medium_id, r.started_ns).unwrap();
            if r.outcome != CopyOutcome::Running {
                new.finish_medium_run(&MediumRun { id, ..r }).unwrap();
            }
        }
        for table in [
            "repositories",
            "snapshots",
            "snapshot_packs",
            "packs",
            "runs",
            "media",
            "media_snapshots",
            "media_snapshot_packs",
            "media_files",
            "media_runs",
        ] {
            assert_eq!(rows(&new, table, "id"), rows(&old, table, "id"), "{table}");
        }
        assert_eq!(rows(&new, "media", ""), rows(&old, "media", ""));
    }

    /// A value this code does not know, in each typed column, is an error naming the column
    /// and the value.
    #[test]
    fn an_unknown_value_is_an_error_naming_column_and_value() {
        type Read = fn(&Catalog) -> CatalogResult<()>;
        let media: Read = |c| c.media().map(drop);
        let runs: Read = |c| c.runs(&repo(), 100).map(drop);
        let snapshots: Read = |c| c.snapshots(&repo()).map(drop);
        let cases: [(&str, &str, &str, Read); 16] = [
            ("media", "state", "exploded", media),
            ("media", "kind", "tape", media),
            ("media", "location", "moon", media),
            ("media", "retention", r#"{"keep_forever":1}"#, media),
            ("media", "id", "M0-id", media),
            ("media", "repo_id", &"A".repeat(64), media),
            ("runs", "outcome", "crashed", runs),
            ("runs", "snapshot_id", "s1", runs),
            ("snapshots", "tree", "zz", snapshots),
            ("snapshots", "parent", "", snapshots),
            ("snapshots", "paths", "/etc", snapshots),
            ("snapshot_packs", "pack_id", "p1", |c| {
                for s in [b"s1", b"s2"] {
                    c.snapshot_packs(&repo(), &SnapshotId::hash_of(s))?;
                }
                Ok(())
            }),
            ("media_runs", "outcome", "on fire", |c| {
                c.medium_runs(&medium(), 100).map(drop)
            }),
            ("media_files", "kind", "packs", |c| {
                c.medium_files(&medium()).map(drop)
            }),
            ("media_snapshots", "snapshot_id", "s2", |c| {
                c.medium_snapshots(&medium()).map(drop)
            }),
            ("media_snapshot_packs", "pack_id", "p2", |c| {
                c.medium_packs_by_snapshot(&medium()).map(drop)
            }),
        ];
        for (table, column, bad, read) in cases {
            let (_d, c) = old_catalog();
            c.conn.pragma_update(None, "foreign_keys", false).unwrap();
            // Every row of the table: whichever a reader meets first is bad.
            let sql = format!("UPDATE {table} SET {column} = ?1");
            if c.conn.execute(&sql, [bad]).is_err() {
                // A unique column: one row only.
                let sql = format!(
                    "UPDATE {table} SET {column} = ?1 WHERE rowid IN (SELECT rowid FROM {table} LIMIT 1)"
                );
                c.conn.execute(&sql, [bad]).unwrap();
                if table == "media" {
                    // media() reads by label: make the bad row the first.
                    c.conn
                        .execute(
                            "UPDATE media SET label = '' WHERE rowid IN (SELECT rowid FROM media LIMIT 1)",
                            [],
                        )
                        .unwrap();
                }
            }
            let err = match read(&c) {
                Err(CatalogError::BadValue(b)) => b,
                Err(e) => panic!("{table}.{column} = {bad:?}: unexpected error {e}"),
                Ok(()) => panic!("{table}.{column} = {bad:?} was accepted"),
            };
            assert_eq!(
                (err.column.as_str(), err.value.as_str()),
                (format!("{table}.{column}").as_str(), bad),
                "{err}"
            );
            let msg = CatalogError::BadValue(err).to_string();
            assert!(
                msg.contains(&format!("{table}.{column}")) && msg.contains(&format!("{bad:?}")),
                "{msg}"
            );
        }
        // A value of the wrong type names the column too.
        let (_d, c) = old_catalog();
        c.conn.execute("UPDATE media SET state = 7", []).unwrap();
        let e = c.media().unwrap_err().to_string();
        assert!(e.contains("state"), "{e}");
    }
}
