#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use super::*;
use crate::repo::backend::{Backend, FileKind, MemBackend};
use crate::testing::{backup_dir, mem_repo, noise, source};

/// A backend over another that records each range read of a pack: (pack, offset).
struct Recording {
    inner: Arc<MemBackend>,
    reads: Mutex<Vec<(String, u64)>>,
}

impl Backend for Recording {
    fn location(&self) -> String {
        "recording".into()
    }
    fn create(&self) -> std::io::Result<()> {
        self.inner.create()
    }
    fn read(&self, k: FileKind, n: &str) -> std::io::Result<Vec<u8>> {
        self.inner.read(k, n)
    }
    fn read_range(&self, k: FileKind, n: &str, o: u64, l: usize) -> std::io::Result<Vec<u8>> {
        if k == FileKind::Pack {
            self.reads.lock().unwrap().push((n.to_string(), o));
        }
        self.inner.read_range(k, n, o, l)
    }
    fn write(&self, k: FileKind, n: &str, d: &[u8]) -> std::io::Result<()> {
        self.inner.write(k, n, d)
    }
    fn list(&self, k: FileKind) -> std::io::Result<Vec<String>> {
        self.inner.list(k)
    }
    fn size(&self, k: FileKind, n: &str) -> std::io::Result<u64> {
        self.inner.size(k, n)
    }
    fn remove(&self, k: FileKind, n: &str) -> std::io::Result<()> {
        self.inner.remove(k, n)
    }
}

/// Three contents, each held by three files in different directories, and a file of its own.
fn shared_tree() -> (tempfile::TempDir, PathBuf, Vec<(String, Vec<u8>)>) {
    let mut files = Vec::new();
    // noise() takes seed | 1: odd seeds, so that no two contents share a chunk.
    for (c, seed) in ["a", "b", "c"].iter().zip([11u64, 13, 15]) {
        let bytes = noise(700_000 + seed as usize * 1000, seed);
        for d in 1..=3 {
            files.push((format!("d{d}/{c}{d}"), bytes.clone()));
        }
    }
    files.push(("own/z".into(), noise(3 << 20, 9)));
    files.push(("own/empty".into(), Vec::new()));
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    let (dir, src) = source(&refs);
    (dir, src, files)
}

fn restore_all(repo: &Repository, root: &BlobId, target: &Path) -> RestoreReport {
    let opts = RestoreOptions {
        verify: true,
        ..RestoreOptions::default()
    };
    restore(repo, root, None, target, &opts, &RestoreProgress::default()).unwrap()
}

#[test]
fn each_blob_is_read_once_whatever_the_files_share() {
    // In one batch, as they would be outside the unit tests.
    data::TEST_SCALE.with(|s| s.set(Some(data::Scale::real(false))));
    let (dir, src, files) = shared_tree();
    let (mem, repo) = mem_repo();
    let snap = backup_dir(&repo, &src, None).snapshot;
    let rec = Arc::new(Recording {
        inner: mem,
        reads: Mutex::new(Vec::new()),
    });
    let repo = Repository::open(rec.clone(), b"pw").unwrap();

    let target = dir.path().join("restored");
    let rep = restore_all(&repo, &snap.tree, &target);
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    let restored = target.join(src.strip_prefix("/").unwrap());
    for (p, bytes) in &files {
        assert_eq!(&fs::read(restored.join(p)).unwrap(), bytes, "{p}");
    }
    // Nine files hold three contents: each blob was read once, not once per file (the
    // read-back of --verify reads the restored files, not the repository).
    let mut seen: HashMap<(String, u64), usize> = HashMap::new();
    for r in rec.reads.lock().unwrap().iter() {
        *seen.entry(r.clone()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "read more than once: {twice:?}");
    assert_eq!(
        rep.bytes,
        files.iter().map(|f| f.1.len() as u64).sum::<u64>()
    );
}

#[test]
fn a_damaged_shared_blob_fails_every_file_holding_it_and_no_other() {
    let (dir, src, files) = shared_tree();
    let (mem, repo) = mem_repo();
    let snap = backup_dir(&repo, &src, None).snapshot;
    let b1 = find_node(&repo, &snap.tree, &src.join("d1/b1").to_string_lossy())
        .unwrap()
        .unwrap();
    let loc = repo.locate(&b1.content[0]).unwrap();
    let at = loc.entry.offset as usize + 50;
    mem.tamper(FileKind::Pack, &loc.pack.to_hex(), |b| b[at] ^= 1)
        .unwrap();

    let target = dir.path().join("restored");
    // What an earlier restore left where a damaged file goes is removed too.
    let restored = target.join(src.strip_prefix("/").unwrap());
    fs::create_dir_all(restored.join("d2")).unwrap();
    fs::write(restored.join("d2/b2"), b"older").unwrap();
    let rep = restore_all(&repo, &snap.tree, &target);
    assert!(rep.damaged, "{:?}", rep.errors);
    let mut damaged: Vec<_> = rep
        .damaged_entries
        .iter()
        .map(|(p, _)| p.strip_prefix(&restored).unwrap().display().to_string())
        .collect();
    damaged.sort();
    assert_eq!(damaged, ["d1/b1", "d2/b2", "d3/b3"], "{:?}", rep.errors);
    assert_eq!(
        rep.errors.len(),
        3,
        "each file is reported once: {:?}",
        rep.errors
    );
    for (p, bytes) in &files {
        match fs::read(restored.join(p)) {
            Ok(got) => assert_eq!(&got, bytes, "{p}"),
            Err(e) => {
                assert!(p.contains('b'), "{p}: {e}");
                assert_eq!(e.kind(), io::ErrorKind::NotFound, "{p}");
            }
        }
    }
}

#[test]
fn directories_and_hard_links_come_out_whole_across_batches() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // Unit tests restore in batches of 3 files: these cross several.
    let mut files: Vec<(String, Vec<u8>)> = (0..7)
        .map(|i| (format!("ro/f{i}"), noise(5000 + i, 2 * i as u64 + 21)))
        .collect();
    files.push(("other/x".into(), b"x".to_vec()));
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    let (dir, src) = source(&refs);
    fs::hard_link(src.join("ro/f1"), src.join("other/link")).unwrap();
    let times = nix::sys::time::TimeSpec::new(1_600_000_000, 0);
    for d in ["ro", "other"] {
        nix::sys::stat::utimensat(
            None,
            &src.join(d),
            &times,
            &times,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
    fs::set_permissions(src.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    let (_mem, repo) = mem_repo();
    let snap = backup_dir(&repo, &src, None).snapshot;
    fs::set_permissions(src.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();

    let target = dir.path().join("restored");
    let rep = restore_all(&repo, &snap.tree, &target);
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    let restored = target.join(src.strip_prefix("/").unwrap());
    for (p, bytes) in &files {
        assert_eq!(&fs::read(restored.join(p)).unwrap(), bytes, "{p}");
    }
    let ro = fs::metadata(restored.join("ro")).unwrap();
    assert_eq!(ro.mode() & 0o777, 0o555);
    for d in ["ro", "other"] {
        let m = fs::metadata(restored.join(d)).unwrap();
        assert_eq!(
            m.mtime(),
            1_600_000_000,
            "{d}: its files changed its time after"
        );
    }
    let a = fs::metadata(restored.join("ro/f1")).unwrap();
    let b = fs::metadata(restored.join("other/link")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2), "not linked");
    fs::set_permissions(restored.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
}
