//! A repository in memory: real unit tests of backup, check and prune without a disk.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use super::{check_name, Backend, FileKind};

/// An in-memory backend. Writes are "durable" as soon as they return; nothing survives the
/// value.
#[derive(Default)]
pub struct MemBackend {
    files: Mutex<BTreeMap<(FileKind, String), Vec<u8>>>,
    /// When each file was written.
    written: Mutex<BTreeMap<(FileKind, String), SystemTime>>,
}

impl MemBackend {
    fn files(&self) -> MutexGuard<'_, BTreeMap<(FileKind, String), Vec<u8>>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes a stored file in place (tests of damage): `f` gets its bytes.
    ///
    /// # Errors
    /// `NotFound` if there is no such file.
    pub fn tamper(
        &self,
        kind: FileKind,
        name: &str,
        f: impl FnOnce(&mut Vec<u8>),
    ) -> io::Result<()> {
        let mut files = self.files();
        let bytes = files
            .get_mut(&(kind, name.to_string()))
            .ok_or(io::ErrorKind::NotFound)?;
        f(bytes);
        Ok(())
    }
}

impl Backend for MemBackend {
    fn location(&self) -> String {
        "memory".into()
    }
    fn persistent(&self) -> bool {
        false
    }
    fn create(&self) -> io::Result<()> {
        if self.files().is_empty() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "memory: not empty",
            ))
        }
    }
    fn read(&self, kind: FileKind, name: &str) -> io::Result<Vec<u8>> {
        check_name(kind, name)?;
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
        check_name(kind, name)?;
        let files = self.files();
        let f = files
            .get(&(kind, name.to_string()))
            .ok_or(io::ErrorKind::NotFound)?;
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        start
            .checked_add(len)
            .and_then(|end| f.get(start..end))
            .map(|s| s.to_vec())
            .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
    }
    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
        check_name(kind, name)?;
        self.files().insert((kind, name.to_string()), data.to_vec());
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((kind, name.to_string()), SystemTime::now());
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
        check_name(kind, name)?;
        self.files()
            .get(&(kind, name.to_string()))
            .map(|f| f.len() as u64)
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }
    fn modified(&self, kind: FileKind, name: &str) -> io::Result<SystemTime> {
        check_name(kind, name)?;
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(kind, name.to_string()))
            .copied()
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }
    fn remove(&self, kind: FileKind, name: &str) -> io::Result<()> {
        check_name(kind, name)?;
        self.files().remove(&(kind, name.to_string()));
        Ok(())
    }
}
