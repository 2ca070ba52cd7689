//! Backups into a repository in memory.

use super::*;
use crate::format::id::{IndexId, PackId};
use crate::repo::backend::{Backend, FileKind};
use crate::testing::{backup_dir, file_in, mem_repo, noise, source};

#[test]
fn a_backup_in_memory_stores_every_byte_once_under_names_that_are_their_hashes() {
    let big = noise(3 << 20, 1);
    let (_d, src) = source(&[
        ("a/big", &big),
        ("a/copy-of-big", &big),
        ("b/small", b"small"),
        ("empty", b""),
    ]);
    let (mem, repo) = mem_repo();
    let r = backup_dir(&repo, &src, None);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let s = &r.snapshot;
    assert_eq!((s.summary.files, s.summary.dirs), (4, 3), "{:?}", s.summary);
    assert_eq!(s.summary.bytes, 2 * big.len() as u64 + 5);
    // Deduplicated: the second copy adds nothing.
    assert_eq!(s.summary.bytes_added, big.len() as u64 + 5);
    assert_eq!(file_in(&repo, s, &src.join("a/copy-of-big")), big);
    assert_eq!(file_in(&repo, s, &src.join("b/small")), b"small");
    assert_eq!(file_in(&repo, s, &src.join("empty")), b"");
    // One index file for the run; every pack it lists is there, named by its hash, and the
    // snapshot needs exactly the packs written.
    let backend: &dyn Backend = mem.as_ref();
    let index = backend.list(FileKind::Index).unwrap();
    assert_eq!(index.len(), 1);
    let raw = backend.read(FileKind::Index, &index[0]).unwrap();
    assert_eq!(IndexId::hash_of(&raw).to_hex(), index[0]);
    let packs = backend.list(FileKind::Pack).unwrap();
    for p in &packs {
        let bytes = backend.read(FileKind::Pack, p).unwrap();
        assert_eq!(&PackId::hash_of(&bytes).to_hex(), p);
    }
    let written: Vec<String> = r.packs_written.iter().map(|(p, _)| p.to_hex()).collect();
    let mut needed: Vec<String> = r.packs_needed.iter().map(|(p, _)| p.to_hex()).collect();
    needed.sort();
    let mut written_sorted = written.clone();
    written_sorted.sort();
    assert_eq!(needed, written_sorted);
    assert_eq!(packs, written_sorted);
    // The manifest is named by its hash too, and reads back as the report says.
    let snaps = repo.snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].0, r.id);
}

#[test]
fn an_unchanged_tree_is_not_read_again_and_adds_nothing() {
    let (_d, src) = source(&[("x", &noise(1 << 20, 2)), ("d/y", b"y")]);
    let (mem, repo) = mem_repo();
    let first = backup_dir(&repo, &src, None);
    let packs_before = mem.list(FileKind::Pack).unwrap();
    let second = backup_dir(&repo, &src, Some((first.id, first.snapshot.clone())));
    assert_eq!(second.snapshot.summary.bytes_read, 0);
    assert_eq!(second.snapshot.summary.bytes_added, 0);
    // The source's own tree is the same blob (the root tree is not: it holds the source's
    // parent directories, whose times other processes change).
    let src_tree = |s: &Snapshot| {
        crate::restore::find_node(&repo, &s.tree, &src.to_string_lossy())
            .unwrap()
            .unwrap()
            .subtree
    };
    assert_eq!(src_tree(&second.snapshot), src_tree(&first.snapshot));
    assert_eq!(second.snapshot.parent, Some(first.id));
    // Only trees are new (the root's, which holds the source's parent directories).
    assert!(second.packs_written.iter().all(|(p, _)| {
        let bytes = mem.read(FileKind::Pack, &p.to_hex()).unwrap();
        crate::format::read_pack_header(repo.keys(), p, &bytes)
            .unwrap()
            .iter()
            .all(|b| b.kind == crate::format::BlobKind::Tree)
    }));
    assert!(packs_before
        .iter()
        .all(|p| mem.list(FileKind::Pack).unwrap().contains(p)));
    // A changed file is read again; the other is not.
    std::fs::write(src.join("d/y"), b"changed").unwrap();
    let third = backup_dir(&repo, &src, Some((second.id, second.snapshot.clone())));
    assert_eq!(third.snapshot.summary.bytes_read, 7);
    assert_eq!(
        file_in(&repo, &third.snapshot, &src.join("d/y")),
        b"changed"
    );
}

#[test]
fn a_failing_pack_write_writes_no_snapshot() {
    // A backend that refuses packs: the backup fails and no manifest exists.
    struct NoPacks(crate::repo::backend::MemBackend);
    impl Backend for NoPacks {
        fn location(&self) -> String {
            "no packs".into()
        }
        fn create(&self) -> std::io::Result<()> {
            self.0.create()
        }
        fn read(&self, k: FileKind, n: &str) -> std::io::Result<Vec<u8>> {
            self.0.read(k, n)
        }
        fn read_range(&self, k: FileKind, n: &str, o: u64, l: usize) -> std::io::Result<Vec<u8>> {
            self.0.read_range(k, n, o, l)
        }
        fn write(&self, k: FileKind, n: &str, d: &[u8]) -> std::io::Result<()> {
            if k == FileKind::Pack {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.0.write(k, n, d)
        }
        fn list(&self, k: FileKind) -> std::io::Result<Vec<String>> {
            self.0.list(k)
        }
        fn size(&self, k: FileKind, n: &str) -> std::io::Result<u64> {
            self.0.size(k, n)
        }
        fn remove(&self, k: FileKind, n: &str) -> std::io::Result<()> {
            self.0.remove(k, n)
        }
    }
    let (_d, src) = source(&[("x", &noise(100_000, 3))]);
    let backend: std::sync::Arc<dyn Backend> = std::sync::Arc::new(NoPacks(Default::default()));
    let repo = Repository::init(
        backend.clone(),
        b"pw",
        crate::format::crypto::KdfParams::weak_for_tests(),
        "t".into(),
    )
    .unwrap();
    let opts = BackupOptions {
        paths: vec![src],
        host: "t".into(),
        ..Default::default()
    };
    let e = backup(&repo, &opts, &Progress::default()).unwrap_err();
    assert!(e.to_string().contains("No space left"), "{e}");
    assert!(backend.list(FileKind::Snapshot).unwrap().is_empty());
    assert!(backend.list(FileKind::Index).unwrap().is_empty());
}

/// A stream that gives `data` and then, instead of its end, an error: a command that wrote its
/// whole output and exited non-zero.
struct FailsAtEnd<'a>(&'a [u8]);

impl Read for FailsAtEnd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.is_empty() {
            return Err(std::io::Error::other("exited with status 2"));
        }
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn a_stream_whose_end_is_an_error_writes_no_snapshot_and_the_next_one_does() {
    let (mem, repo) = mem_repo();
    let backend: &dyn Backend = mem.as_ref();
    let data = noise(3 << 20, 7);
    let opts = BackupOptions {
        host: "t".into(),
        job: Some("db".into()),
        ..Default::default()
    };
    let e = backup_stdin(
        &repo,
        &mut FailsAtEnd(&data),
        "db.dump",
        &opts,
        &Progress::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("exited with status 2"), "{e}");
    assert!(backend.list(FileKind::Snapshot).unwrap().is_empty());
    // The same open repository makes the next snapshot (`--all-jobs` goes on after a failed job).
    let r = backup_stdin(
        &repo,
        &mut &data[..],
        "db.dump",
        &opts,
        &Progress::default(),
    )
    .unwrap();
    assert_eq!(backend.list(FileKind::Snapshot).unwrap().len(), 1);
    assert_eq!(r.snapshot.paths, ["/db.dump"]);
    assert_eq!(file_in(&repo, &r.snapshot, Path::new("/db.dump")), data);
}
