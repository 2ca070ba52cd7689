//! Storage backends: where repository files live, and the one factory that turns a location
//! (`--repo`, the config's `repository`) into a backend.
//!
//! Durability contract: when [`Backend::write`] returns `Ok`, the file is in stable storage under
//! its final name, and a crash at any moment leaves either no file or the complete file under
//! that name (never a partial one). Names are checked: only hex ids and fixed names are accepted,
//! so a crafted listing cannot make a backend touch a path outside the repository.

mod local;
mod mem;
mod s3;

pub use local::LocalBackend;
pub use mem::MemBackend;
pub use s3::{configure as configure_s3, RequestCounts, S3Backend, S3Credentials, S3Location};

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// The kinds of files in a repository, each in its own directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    /// Plaintext files at the repository's root: `config`, and on a medium's copy
    /// `medium.json` and `ledger.json` ([`ROOT_FILES`]).
    Config,
    /// `keys/`: wrappings of the master key.
    Key,
    /// `data/xx/`: pack files.
    Pack,
    /// `index/`.
    Index,
    /// `snapshots/`.
    Snapshot,
    /// `locks/`.
    Lock,
    /// `condemned/`: packs a prune took out of the index, deleted by a later step once no
    /// process that could still use them runs (design.md §4.3).
    Condemned,
}

/// The names a [`FileKind::Config`] file may have.
pub const ROOT_FILES: [&str; 3] = ["config", "medium.json", "ledger.json"];

impl FileKind {
    /// Every kind.
    pub const ALL: [FileKind; 7] = [
        FileKind::Config,
        FileKind::Key,
        FileKind::Pack,
        FileKind::Index,
        FileKind::Snapshot,
        FileKind::Lock,
        FileKind::Condemned,
    ];

    /// The kind's directory under the repository root (`""` for the root itself).
    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Config => "",
            FileKind::Key => "keys",
            FileKind::Pack => "data",
            FileKind::Index => "index",
            FileKind::Snapshot => "snapshots",
            FileKind::Lock => "locks",
            FileKind::Condemned => "condemned",
        }
    }

    /// The kind's name in messages and in the catalog (`media_files.kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Config => "config",
            FileKind::Key => "key",
            FileKind::Pack => "pack",
            FileKind::Index => "index",
            FileKind::Snapshot => "snapshot",
            FileKind::Lock => "lock",
            FileKind::Condemned => "condemned",
        }
    }

    /// Whether files of this kind are named by the blake3 of their bytes, so that anyone can
    /// check a copy without the key (design.md §2).
    pub fn content_addressed(self) -> bool {
        matches!(
            self,
            FileKind::Pack | FileKind::Index | FileKind::Snapshot | FileKind::Condemned
        )
    }

    /// Where a file of this kind lives relative to the repository root: `data/<xx>/<id>` for
    /// packs, `<dir>/<name>` for the others, the name itself at the root. The name must have
    /// passed [`check_name`].
    pub fn rel_path(self, name: &str) -> PathBuf {
        match self {
            FileKind::Config => PathBuf::from(name),
            FileKind::Pack => Path::new("data")
                .join(name.get(..2).unwrap_or("00"))
                .join(name),
            _ => Path::new(self.dir()).join(name),
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// As its name ([`FileKind::as_str`]).
impl serde::Serialize for FileKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::str::FromStr for FileKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FileKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown file kind {s:?}"))
    }
}

/// Access to a repository's files. Implementations are safe to share between threads.
pub trait Backend: Send + Sync {
    /// A human-readable location, for messages.
    fn location(&self) -> String;

    /// Whether what is written outlives the process (a repository in memory does not: its
    /// index tables go to a temporary directory rather than the cache).
    fn persistent(&self) -> bool {
        true
    }
    /// Whether each read is a request over a network (a bucket): the repository then keeps
    /// copies of manifests and tree packs in this host's cache (design.md §4.4).
    fn remote(&self) -> bool {
        false
    }
    /// Makes the place ready for a new repository (a local directory gets its layout).
    ///
    /// # Errors
    /// `AlreadyExists` if it holds a repository or any other file; I/O errors.
    fn create(&self) -> io::Result<()>;
    /// Reads a whole file.
    ///
    /// # Errors
    /// `NotFound` if missing; other I/O errors.
    fn read(&self, kind: FileKind, name: &str) -> io::Result<Vec<u8>>;
    /// Reads `len` bytes at `offset`; fails with `UnexpectedEof` if the file is shorter.
    ///
    /// # Errors
    /// I/O errors.
    fn read_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>>;
    /// Writes a file durably and atomically (see the module docs).
    ///
    /// # Errors
    /// I/O errors (ENOSPC included); on error no file of that name was created.
    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()>;
    /// As [`Self::write`], for a file that must not exist yet (a repository's `config`):
    /// `AlreadyExists` if it does. Storage that can refuse an existing name in the write itself
    /// does (a bucket whose server honours `If-None-Match: *`); elsewhere this looks first and
    /// then writes, and two writers racing between the two may both succeed.
    ///
    /// # Errors
    /// `AlreadyExists`; as [`Self::write`].
    fn write_new(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
        match self.size(kind, name) {
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{}: {} is already there",
                    self.location(),
                    kind.rel_path(name).display()
                ),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.write(kind, name, data),
            Err(e) => Err(e),
        }
    }
    /// Whether [`Self::write_new`] is one atomic write here: `None` where that was not asked
    /// (not a bucket), else what the server answered when asked.
    fn conditional_writes(&self) -> Option<bool> {
        None
    }
    /// As [`Self::write`], taking the buffer and giving it back for reuse: a backend that must
    /// own what it sends (the S3 client) then needs no copy of a pack.
    ///
    /// # Errors
    /// As [`Self::write`].
    fn write_buf(&self, kind: FileKind, name: &str, data: Vec<u8>) -> io::Result<Vec<u8>> {
        self.write(kind, name, &data).map(|()| data)
    }
    /// Lists names of a kind (sorted).
    ///
    /// # Errors
    /// I/O errors.
    fn list(&self, kind: FileKind) -> io::Result<Vec<String>>;
    /// Size of a file.
    ///
    /// # Errors
    /// `NotFound` if missing.
    fn size(&self, kind: FileKind, name: &str) -> io::Result<u64>;
    /// When the file was last written, by the storage's clock (a file's mtime, an object's
    /// `Last-Modified`): locks are judged by it, not by the clocks of the hosts that hold them.
    ///
    /// # Errors
    /// `NotFound` if missing; `Unsupported` (the default) where the storage keeps no time.
    fn modified(&self, kind: FileKind, name: &str) -> io::Result<SystemTime> {
        check_name(kind, name)?;
        Err(io::ErrorKind::Unsupported.into())
    }
    /// How many pack writes a backup keeps in flight: 1 for a disk, more where each write
    /// waits on a network round trip.
    fn write_concurrency(&self) -> usize {
        1
    }
    /// Removes a file (durably).
    ///
    /// # Errors
    /// I/O errors; removing a missing file is not an error.
    fn remove(&self, kind: FileKind, name: &str) -> io::Result<()>;
    /// The file opened for reading as a local file (without following a symlink), when this
    /// backend keeps its files on a local filesystem; `None` (the default) when it does not.
    /// A copier uses it to copy in the kernel (`copy_file_range`) and reads through
    /// [`Self::read_range`] otherwise, so a backend without local files needs nothing here.
    ///
    /// # Errors
    /// `NotFound` if missing; other I/O errors.
    fn local_file(&self, kind: FileKind, name: &str) -> io::Result<Option<File>> {
        check_name(kind, name)?;
        Ok(None)
    }
}

/// Refuses names that are not a repository file's: a hex id (with `-`, 1–128 characters), or
/// one of [`ROOT_FILES`] at the root.
///
/// # Errors
/// `InvalidInput` naming the refused name.
pub fn check_name(kind: FileKind, name: &str) -> io::Result<()> {
    let ok = match kind {
        FileKind::Config => ROOT_FILES.contains(&name),
        _ => {
            !name.is_empty()
                && name.len() <= 128
                && name.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        }
    };
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing file name {name:?}"),
        ))
    }
}

/// Where a repository is, as an operator writes it (`--repo`, `BAKFS_REPO`, the config's
/// `repository`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on a local (or locally mounted) filesystem.
    Dir(PathBuf),
    /// An S3-compatible bucket: `s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]`.
    S3(S3Location),
}

impl Location {
    /// Reads a location: `s3:…`, else a directory path. A relative path whose first component
    /// looks like a scheme (`sftp:host`, `b2:bucket`) is refused rather than taken for a
    /// directory of that name; `./name:x` is such a directory.
    ///
    /// # Errors
    /// An unknown scheme, a malformed `s3:` location, an empty location.
    pub fn parse(s: &Path) -> Result<Location, String> {
        let text = s.to_string_lossy();
        if text.is_empty() {
            return Err("the repository location is empty".into());
        }
        if let Some(rest) = text.strip_prefix("s3:") {
            return S3Location::parse(rest).map(Location::S3);
        }
        let first = text.split('/').next().unwrap_or("");
        if let Some((scheme, _)) = first.split_once(':') {
            let schemeish = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
            if schemeish {
                return Err(format!(
                    "{text}: bakfs does not know the repository scheme {scheme:?}: give \
                     s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX] or a directory (./{text} for a \
                     directory whose name has a colon)"
                ));
            }
        }
        Ok(Location::Dir(s.to_path_buf()))
    }

    /// The backend that reaches this location. An S3 location takes its credentials from the
    /// environment or a credentials file ([`S3Credentials::from_env`]).
    ///
    /// # Errors
    /// No S3 credentials; an S3 client that cannot be built.
    pub fn backend(&self) -> crate::Result<Arc<dyn Backend>> {
        Ok(match self {
            Location::Dir(p) => Arc::new(LocalBackend::new(p)),
            Location::S3(l) => Arc::new(S3Backend::connect(l)?),
        })
    }

    /// The directory, for a local location.
    pub fn as_dir(&self) -> Option<&Path> {
        match self {
            Location::Dir(p) => Some(p),
            Location::S3(_) => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Dir(p) => write!(f, "{}", p.display()),
            Location::S3(l) => write!(f, "{l}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_init_that_loses_the_race_for_the_config_withdraws_its_key() {
        let mem = Arc::new(MemBackend::default());
        let raced = Arc::new(crate::testing::RacedInit { inner: mem.clone() });
        let err = crate::repo::Repository::init(
            raced,
            b"pw",
            crate::format::crypto::KdfParams::weak_for_tests(),
            "test".into(),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string()
                .contains("another init made a repository there first"),
            "{err}"
        );
        assert_eq!(mem.list(FileKind::Key).unwrap(), Vec::<String>::new());
        assert_eq!(
            mem.read(FileKind::Config, "config").unwrap(),
            b"the other init's config"
        );
        // A second create-only write of the same name is refused by the fallback too.
        let err = mem.write_new(FileKind::Config, "config", b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn names_outside_the_repository_are_refused() {
        for bad in ["..", "../x", "a/b", "", "config/..", "x.json"] {
            assert!(check_name(FileKind::Key, bad).is_err(), "{bad:?}");
        }
        for bad in ["../config", "keys", "medium.json/"] {
            assert!(check_name(FileKind::Config, bad).is_err(), "{bad:?}");
        }
        assert!(check_name(FileKind::Config, "medium.json").is_ok());
        assert!(check_name(FileKind::Pack, &"ab".repeat(32)).is_ok());
    }

    #[test]
    fn kinds_round_trip_their_names_and_paths() {
        for k in FileKind::ALL {
            assert_eq!(k.as_str().parse::<FileKind>(), Ok(k));
        }
        let id = "ab".to_string() + &"0".repeat(62);
        assert_eq!(
            FileKind::Pack.rel_path(&id),
            Path::new("data").join("ab").join(&id)
        );
        assert_eq!(FileKind::Config.rel_path("config"), Path::new("config"));
        assert_eq!(FileKind::Snapshot.rel_path("x"), Path::new("snapshots/x"));
    }

    #[test]
    fn only_a_local_backend_offers_local_files() {
        use std::io::Read;
        let d = tempfile::tempdir().unwrap();
        let name = "ab".repeat(32);
        for b in [
            Location::Dir(d.path().into()).backend().unwrap(),
            Arc::new(MemBackend::default()),
        ] {
            assert!(
                b.local_file(FileKind::Pack, "../x").is_err(),
                "{}",
                b.location()
            );
            b.create().unwrap();
            b.write(FileKind::Pack, &name, b"bytes").unwrap();
            match b.local_file(FileKind::Pack, &name).unwrap() {
                Some(mut f) => {
                    let mut v = Vec::new();
                    f.read_to_end(&mut v).unwrap();
                    assert_eq!(v, b"bytes");
                }
                None => assert!(b.location().starts_with("mem")),
            }
        }
    }

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse(Path::new("/srv/repo")),
            Ok(Location::Dir("/srv/repo".into()))
        );
        assert!(matches!(
            Location::parse(Path::new("s3:http://127.0.0.1:9000/bkt/x")),
            Ok(Location::S3(l)) if l.bucket == "bkt" && l.prefix == "x"
        ));
        assert!(Location::parse(Path::new("s3:127.0.0.1/bkt")).is_err());
        for unknown in ["sftp:host:/r", "b2:bucket/x", "rest:http://h/", "gs://b/x"] {
            let e = Location::parse(Path::new(unknown)).unwrap_err();
            assert!(e.contains("does not know the repository scheme"), "{e}");
        }
        for dir in ["./b2:bucket", "/srv/a:b", "repo", "../r:x", "a/b:c"] {
            assert_eq!(
                Location::parse(Path::new(dir)),
                Ok(Location::Dir(dir.into()))
            );
        }
        assert!(Location::parse(Path::new("")).is_err());
    }
}
