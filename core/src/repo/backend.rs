//! Storage backends: where repository files live.
//!
//! Durability contract: when [`Backend::write`] returns `Ok`, the file is in stable storage under
//! its final name, and a crash at any moment leaves either no file or the complete file under
//! that name (never a partial one). Names are checked: only hex ids and fixed names are accepted,
//! so a crafted listing cannot make a backend touch a path outside the repository.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The kinds of files in a repository, each in its own directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    /// The plaintext `config` (name ignored).
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
}

impl FileKind {
    fn dir(self) -> &'static str {
        match self {
            FileKind::Config => "",
            FileKind::Key => "keys",
            FileKind::Pack => "data",
            FileKind::Index => "index",
            FileKind::Snapshot => "snapshots",
            FileKind::Lock => "locks",
        }
    }
}

/// Access to a repository's files. Implementations are safe to share between threads.
pub trait Backend: Send + Sync {
    /// A human-readable location, for messages.
    fn location(&self) -> String;
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
    /// Removes a file (durably).
    ///
    /// # Errors
    /// I/O errors; removing a missing file is not an error.
    fn remove(&self, kind: FileKind, name: &str) -> io::Result<()>;
}

fn check_name(kind: FileKind, name: &str) -> io::Result<()> {
    let ok = match kind {
        FileKind::Config => true,
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

/// A repository in a local directory.
pub struct LocalBackend {
    root: PathBuf,
    /// Open pack files for range reads (packs are immutable once named).
    open_packs: Mutex<lru_fds::Fds>,
}

mod lru_fds {
    use std::collections::HashMap;
    use std::fs::File;
    use std::sync::Arc;

    /// A small cache of open files, emptied when full.
    #[derive(Default)]
    pub struct Fds(HashMap<String, Arc<File>>);

    impl Fds {
        pub fn get(&self, name: &str) -> Option<Arc<File>> {
            self.0.get(name).cloned()
        }
        pub fn put(&mut self, name: &str, f: Arc<File>) {
            if self.0.len() >= 64 {
                self.0.clear();
            }
            self.0.insert(name.to_string(), f);
        }
        pub fn forget(&mut self, name: &str) {
            self.0.remove(name);
        }
    }
}

impl LocalBackend {
    /// A backend rooted at `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            open_packs: Mutex::new(lru_fds::Fds::default()),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the directory layout (with `data/00`..`data/ff`).
    ///
    /// # Errors
    /// I/O errors.
    pub fn create_layout(&self) -> io::Result<()> {
        fs::create_dir_all(&self.root)?;
        for k in [
            FileKind::Key,
            FileKind::Pack,
            FileKind::Index,
            FileKind::Snapshot,
            FileKind::Lock,
        ] {
            fs::create_dir_all(self.root.join(k.dir()))?;
        }
        for i in 0..=255u8 {
            fs::create_dir_all(self.root.join("data").join(format!("{i:02x}")))?;
        }
        sync_dir(&self.root)?;
        sync_dir(&self.root.join("data"))
    }

    /// Path of a file.
    pub fn path(&self, kind: FileKind, name: &str) -> PathBuf {
        match kind {
            FileKind::Config => self.root.join("config"),
            FileKind::Pack => self
                .root
                .join("data")
                .join(name.get(..2).unwrap_or("00"))
                .join(name),
            _ => self.root.join(kind.dir()).join(name),
        }
    }
}

/// fsyncs a directory so that renames and unlinks in it are durable.
///
/// # Errors
/// I/O errors.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn read(&self, kind: FileKind, name: &str) -> io::Result<Vec<u8>> {
        check_name(kind, name)?;
        let mut f = open_nofollow(&self.path(kind, name))?;
        let mut v = Vec::new();
        f.read_to_end(&mut v)?;
        Ok(v)
    }

    fn read_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        check_name(kind, name)?;
        let mut v = vec![0u8; len];
        if kind == FileKind::Pack {
            let cached = self
                .open_packs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(name);
            let f = match cached {
                Some(f) => f,
                None => {
                    let f = std::sync::Arc::new(open_nofollow(&self.path(kind, name))?);
                    self.open_packs
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .put(name, f.clone());
                    f
                }
            };
            f.read_exact_at(&mut v, offset)?;
            return Ok(v);
        }
        let mut f = open_nofollow(&self.path(kind, name))?;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(&mut v)?;
        Ok(v)
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
        check_name(kind, name)?;
        let path = self.path(kind, name);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &path)?;
            sync_dir(&dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn list(&self, kind: FileKind) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        let dirs: Vec<PathBuf> = match kind {
            FileKind::Config => {
                return Ok(if self.root.join("config").exists() {
                    vec!["config".into()]
                } else {
                    vec![]
                })
            }
            FileKind::Pack => (0..=255u8)
                .map(|i| self.root.join("data").join(format!("{i:02x}")))
                .collect(),
            _ => vec![self.root.join(kind.dir())],
        };
        for d in dirs {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for e in rd {
                let e = e?;
                if !e.file_type()?.is_file() {
                    continue;
                }
                if let Some(n) = e.file_name().to_str() {
                    if check_name(kind, n).is_ok() {
                        out.push(n.to_string());
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn size(&self, kind: FileKind, name: &str) -> io::Result<u64> {
        check_name(kind, name)?;
        Ok(fs::symlink_metadata(self.path(kind, name))?.len())
    }

    fn remove(&self, kind: FileKind, name: &str) -> io::Result<()> {
        check_name(kind, name)?;
        self.open_packs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget(name);
        let path = self.path(kind, name);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().unwrap_or(&self.root)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// An in-memory backend, for tests.
#[derive(Default)]
pub struct MemBackend {
    files: Mutex<BTreeMap<(FileKind, String), Vec<u8>>>,
}

impl MemBackend {
    fn files(&self) -> std::sync::MutexGuard<'_, BTreeMap<(FileKind, String), Vec<u8>>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Backend for MemBackend {
    fn location(&self) -> String {
        "memory".into()
    }
    fn read(&self, kind: FileKind, name: &str) -> io::Result<Vec<u8>> {
        self.files()
            .get(&(kind, name.to_string()))
            .cloned()
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }
    fn read_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        let f = self.read(kind, name)?;
        let o = offset as usize;
        f.get(o..o + len)
            .map(|s| s.to_vec())
            .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
    }
    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
        check_name(kind, name)?;
        self.files().insert((kind, name.to_string()), data.to_vec());
        Ok(())
    }
    fn list(&self, kind: FileKind) -> io::Result<Vec<String>> {
        Ok(self
            .files()
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n.clone())
            .collect())
    }
    fn size(&self, kind: FileKind, name: &str) -> io::Result<u64> {
        Ok(self.read(kind, name)?.len() as u64)
    }
    fn remove(&self, kind: FileKind, name: &str) -> io::Result<()> {
        self.files().remove(&(kind, name.to_string()));
        Ok(())
    }
}
