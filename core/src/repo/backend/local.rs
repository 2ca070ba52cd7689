//! A repository in a local directory (design.md §2, §4.1).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{check_name, Backend, FileKind};
use crate::fsio::{self, Durability, Writers};

/// A repository in a local directory.
pub struct LocalBackend {
    root: PathBuf,
    /// Open pack files for range reads (packs are immutable once named).
    open_packs: Mutex<OpenPacks>,
}

/// A small cache of open pack files, emptied when full.
#[derive(Default)]
struct OpenPacks(HashMap<String, Arc<File>>);

impl OpenPacks {
    const MAX: usize = 64;

    fn get(&self, name: &str) -> Option<Arc<File>> {
        self.0.get(name).cloned()
    }
    fn put(&mut self, name: &str, f: Arc<File>) {
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        self.0.insert(name.to_string(), f);
    }
    fn forget(&mut self, name: &str) {
        self.0.remove(name);
    }
}

impl LocalBackend {
    /// A backend rooted at `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            open_packs: Mutex::new(OpenPacks::default()),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of a file.
    pub fn path(&self, kind: FileKind, name: &str) -> PathBuf {
        self.root.join(kind.rel_path(name))
    }

    fn packs(&self) -> std::sync::MutexGuard<'_, OpenPacks> {
        self.open_packs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_pack(&self, name: &str) -> io::Result<Arc<File>> {
        if let Some(f) = self.packs().get(name) {
            return Ok(f);
        }
        let f = Arc::new(fsio::open_nofollow(&self.path(FileKind::Pack, name))?);
        self.packs().put(name, f.clone());
        Ok(f)
    }
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    /// Creates the directory layout (with `data/00`..`data/ff`) in a missing or empty
    /// directory.
    fn create(&self) -> io::Result<()> {
        let exists = |msg: &str| {
            Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: {msg}", self.root.display()),
            ))
        };
        if self.root.join("config").exists() {
            return exists("a repository already exists here");
        }
        if let Ok(mut rd) = fs::read_dir(&self.root) {
            if rd.next().is_some() {
                return exists("directory is not empty");
            }
        }
        fs::create_dir_all(&self.root)?;
        for k in FileKind::ALL {
            if k != FileKind::Config {
                fs::create_dir_all(self.root.join(k.dir()))?;
            }
        }
        for i in 0..=255u8 {
            fs::create_dir_all(self.root.join("data").join(format!("{i:02x}")))?;
        }
        fsio::sync_dir(&self.root)?;
        fsio::sync_dir(&self.root.join("data"))
    }

    fn read(&self, kind: FileKind, name: &str) -> io::Result<Vec<u8>> {
        check_name(kind, name)?;
        let mut f = fsio::open_nofollow(&self.path(kind, name))?;
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
        check_name(kind, name)?;
        let mut v = vec![0u8; len];
        if kind == FileKind::Pack {
            self.open_pack(name)?.read_exact_at(&mut v, offset)?;
        } else {
            fsio::open_nofollow(&self.path(kind, name))?.read_exact_at(&mut v, offset)?;
        }
        Ok(v)
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
        check_name(kind, name)?;
        let path = self.path(kind, name);
        let dir = path.parent().unwrap_or(&self.root);
        // `condemned/` is newer than the layout of older repositories: made on first use.
        if kind == FileKind::Condemned && !dir.exists() {
            fs::create_dir_all(dir)?;
            fsio::sync_dir(&self.root)?;
        }
        fsio::write_atomic(dir, name, Durability::Synced, Writers::Many, |f| {
            f.write_all(data)
        })
    }

    fn list(&self, kind: FileKind) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        let dirs: Vec<PathBuf> = match kind {
            FileKind::Config => {
                return Ok(super::ROOT_FILES
                    .into_iter()
                    .filter(|n| fs::symlink_metadata(self.root.join(n)).is_ok_and(|m| m.is_file()))
                    .map(String::from)
                    .collect())
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

    fn modified(&self, kind: FileKind, name: &str) -> io::Result<std::time::SystemTime> {
        check_name(kind, name)?;
        fs::symlink_metadata(self.path(kind, name))?.modified()
    }

    fn local_file(&self, kind: FileKind, name: &str) -> io::Result<Option<File>> {
        check_name(kind, name)?;
        fsio::open_nofollow(&self.path(kind, name)).map(Some)
    }

    fn remove(&self, kind: FileKind, name: &str) -> io::Result<()> {
        check_name(kind, name)?;
        self.packs().forget(name);
        let path = self.path(kind, name);
        match fs::remove_file(&path) {
            Ok(()) => fsio::sync_dir(path.parent().unwrap_or(&self.root)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}
