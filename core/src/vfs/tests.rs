//! The view reading a real repository: what a read leaves in the chunk cache and the chunk
//! tables, and what it offers to the page sink; what the inode table keeps, and answers for
//! entries whose directories have left the tree cache.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use super::*;
use crate::backup::{backup, BackupOptions, Progress};
use crate::format::crypto::KdfParams;

/// A file's inode and the bytes it should read.
type Viewed = (u64, Vec<u8>);

/// A 5 MB file of noise (several chunks) and a small one, backed up and viewed; returns the view,
/// the big file and the small one.
fn viewed(dir: &Path) -> (Arc<Vfs>, Viewed, Viewed) {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let big: Vec<u8> = (0..5_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(src.join("big"), &big).unwrap();
    std::fs::write(src.join("small"), b"a small file").unwrap();
    let repo = Repository::init(
        std::sync::Arc::new(crate::repo::backend::LocalBackend::new(dir.join("repo"))),
        b"pw",
        KdfParams::weak_for_tests(),
        "test".into(),
    )
    .unwrap();
    let opts = BackupOptions {
        paths: vec![src.clone()],
        host: "test".into(),
        ..BackupOptions::default()
    };
    backup(&repo, &opts, &Progress::default()).unwrap();
    let vfs = Arc::new(Vfs::new(repo, Options::default()).unwrap());
    let snap = vfs
        .readlink(vfs.lookup(ROOT_INO, b"latest").unwrap().ino)
        .unwrap();
    let mut ino = vfs.lookup(ROOT_INO, &snap).unwrap().ino;
    for part in src.iter().skip(1) {
        ino = vfs.lookup(ino, part.as_encoded_bytes()).unwrap().ino;
    }
    let big_ino = vfs.lookup(ino, b"big").unwrap().ino;
    let small_ino = vfs.lookup(ino, b"small").unwrap().ino;
    (vfs, (big_ino, big), (small_ino, b"a small file".to_vec()))
}

fn cached_chunks(v: &Vfs) -> usize {
    lock(&v.blobs).bytes()
}

fn open_files(v: &Vfs) -> usize {
    lock(&v.files).len()
}

fn sink(v: &Vfs) -> Receiver<Decoded> {
    let (tx, rx) = sync_channel(64);
    v.set_page_sink(tx);
    rx
}

#[test]
fn a_file_read_through_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (v, (big_ino, big), (small_ino, small)) = viewed(dir.path());
    let stores = sink(&v);
    // Sequential 128 KiB reads, answered out of order in pairs as the kernel's readahead may,
    // with the background decoding ahead.
    let step = 128 << 10;
    let mut got = vec![0u8; big.len()];
    let mut off = 0;
    while off < big.len() {
        for o in [off + step, off] {
            if o < big.len() {
                let d = v.read(big_ino, o as u64, step as u32).unwrap();
                got[o..o + d.len()].copy_from_slice(&d);
                v.read_ahead(big_ino, o as u64, (o + d.len()) as u64);
            }
        }
        off += 2 * step;
    }
    assert!(got == big);
    assert_eq!(v.read(small_ino, 0, 4096).unwrap(), small);
    // The kernel has all the bytes: no chunk is kept, no chunk table, nothing stored twice
    // (once the background decodes still running have ended).
    let t = Instant::now();
    while (cached_chunks(&v), open_files(&v)) != (0, 0) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{} bytes of chunks and {} chunk tables kept",
            cached_chunks(&v),
            open_files(&v)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(stores.try_recv().is_err(), "a sequential read was stored");
    // Read again (the kernel dropped its pages): the same bytes.
    assert!(v.read(big_ino, 0, 5_000_000).unwrap() == big);
}

#[test]
fn a_random_read_keeps_its_chunk_and_offers_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (v, (big_ino, big), _) = viewed(dir.path());
    let stores = sink(&v);
    let at = 4_001_792u64; // page-aligned, far from where reads start (so random)
    let d = v.read(big_ino, at, 4096).unwrap();
    assert!(d[..] == big[at as usize..at as usize + 4096]);
    v.read_ahead(big_ino, at, at + 4096);
    // The chunk is cached for the pages of it the kernel may still ask for.
    assert!(cached_chunks(&v) > 0);
    let (start, len) = {
        let f = lock(&v.files).get(&big_ino).cloned().unwrap();
        let c = f
            .chunks
            .iter()
            .find(|c| c.start <= at && at < c.start + c.len)
            .unwrap();
        (c.start, c.len)
    };
    // Offered: whole pages of the file's own bytes, never the page just returned; every other
    // whole page of the chunk (and, read-around, pages of the next one).
    let first = start.next_multiple_of(4096);
    let last = (start + len) / 4096 * 4096;
    let has_next = start + len < 5_000_000;
    let done = |pages: &std::collections::BTreeSet<u64>| {
        (first..last)
            .step_by(4096)
            .filter(|&p| p != at)
            .all(|p| pages.contains(&p))
            && (!has_next || pages.iter().any(|&p| p >= start + len))
    };
    // Offers come from background decodes: wait for them as long as a loaded machine needs.
    let mut pages = std::collections::BTreeSet::new();
    let t = Instant::now();
    loop {
        let Ok(dec) = stores.recv_timeout(Duration::from_millis(100)) else {
            if done(&pages) || t.elapsed() > Duration::from_secs(60) {
                break;
            }
            continue;
        };
        assert_eq!(dec.ino, big_ino);
        for (o, b) in dec.pieces() {
            assert!(o % 4096 == 0 && (b.len() % 4096 == 0 || o + b.len() as u64 == 5_000_000));
            assert!(
                o + b.len() as u64 <= at || o >= at + 4096,
                "the read page was offered"
            );
            assert!(b == &big[o as usize..o as usize + b.len()]);
            pages.extend((o..o + b.len() as u64).step_by(4096));
        }
    }
    for p in (first..last).step_by(4096).filter(|&p| p != at) {
        assert!(
            pages.contains(&p),
            "page {p} of the chunk {start}+{len} was not offered"
        );
    }
    if has_next {
        assert!(
            pages.iter().any(|&p| p >= start + len),
            "the next chunk was not offered"
        );
    }
}

/// A source tree of directories of small files, with a symlink, a hard link, an extended
/// attribute and a file of its own permissions; returns its path.
fn source(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    for d in 0..8 {
        let sub = src.join(format!("d{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..40 {
            let body = format!("file {d}/{f}\n").repeat(f + 1);
            std::fs::write(sub.join(format!("f{f}")), body).unwrap();
        }
    }
    std::os::unix::fs::symlink("d0/f1", src.join("link")).unwrap();
    std::fs::hard_link(src.join("d0/f0"), src.join("d1/hard")).unwrap();
    std::fs::write(src.join("x"), b"with an xattr").unwrap();
    xattr::set(src.join("x"), "user.bakfs-test", b"value").unwrap();
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o640);
    std::fs::set_permissions(src.join("x"), mode).unwrap();
    src
}

/// `src` backed up `times` times into a new repository, viewed with `opts`.
fn backed_up(dir: &Path, src: &Path, times: usize, opts: Options) -> Vfs {
    let repo = Repository::init(
        Arc::new(crate::repo::backend::LocalBackend::new(dir.join("repo"))),
        b"pw",
        KdfParams::weak_for_tests(),
        "test".into(),
    )
    .unwrap();
    let bopts = BackupOptions {
        paths: vec![src.to_path_buf()],
        host: "test".into(),
        ..BackupOptions::default()
    };
    for _ in 0..times {
        backup(&repo, &bopts, &Progress::default()).unwrap();
    }
    Vfs::new(repo, opts).unwrap()
}

/// The inode of each snapshot's root, oldest first.
fn snapshot_roots(v: &Vfs) -> Vec<u64> {
    let top = v.top().children(&MetaDir::Root).unwrap();
    top.iter()
        .filter(|(_, c)| matches!(c, TopChild::Snap(..)))
        .map(|(name, _)| v.lookup(ROOT_INO, name).unwrap().ino)
        .collect()
}

/// Looks up every entry below directory `ino`, depth first, as `ls -lR` makes the kernel do;
/// the path (below `path`) and inode of each.
fn walk(v: &Vfs, ino: u64, path: &Path, out: &mut Vec<(PathBuf, u64)>) {
    for it in v.readdir(ino, 0, usize::MAX).unwrap() {
        if it.name == b"." || it.name == b".." {
            continue;
        }
        let a = v.lookup(ino, &it.name).unwrap();
        assert_eq!(a.ino, it.ino, "readdir and lookup disagree");
        let p = path.join(OsStr::from_bytes(&it.name));
        out.push((p.clone(), a.ino));
        if a.kind == NodeKind::Dir {
            walk(v, a.ino, &p, out);
        }
    }
}

#[test]
fn forgotten_entries_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let v = backed_up(dir.path(), &src, 2, Options::default());
    let roots = snapshot_roots(&v);
    assert_eq!(roots.len(), 2);
    let mut first = Vec::new();
    walk(&v, roots[0], Path::new("/"), &mut first);
    let trees = lock(&v.trees).bytes();
    let mut second = Vec::new();
    walk(&v, roots[1], Path::new("/"), &mut second);
    // The second snapshot of an unchanged tree: other inodes, the same decoded trees (but for
    // the directories above it, of one entry each, whose times other tests may change).
    assert_eq!(first.len(), second.len());
    assert!(first
        .iter()
        .zip(&second)
        .all(|(a, b)| a.0 == b.0 && a.1 != b.1));
    let subtree = |walked: &[(PathBuf, u64)]| {
        let ino = walked.iter().find(|(p, _)| *p == src).unwrap().1;
        match &*v.entry(ino).unwrap() {
            What::Node { node, .. } => node.subtree.unwrap(),
            _ => panic!("not a snapshot entry"),
        }
    };
    assert_eq!(subtree(&first), subtree(&second));
    let grown = lock(&v.trees).bytes() - trees;
    assert!(
        grown * 4 < trees,
        "{grown} bytes of trees more for the second snapshot"
    );
    // Hard links share an inode: two lookups of it, one entry.
    let ino = |p: &str| first.iter().find(|(q, _)| q.ends_with(p)).unwrap().1;
    assert_eq!(ino("d0/f0"), ino("d1/hard"));
    let held = v.inode_count();
    assert_eq!(held, 1 + 2 + first.len() - 1 + second.len() - 1);
    for (_, ino) in first.iter().chain(&second) {
        v.forget(*ino, 1);
    }
    for ino in roots {
        v.forget(ino, 1);
    }
    assert_eq!(v.inode_count(), 1, "only the root is left");
    assert_eq!(lock(&v.inodes).dir_count(), 0, "no directory is left");
}

#[test]
fn answers_do_not_need_the_tree_cache() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let opts = Options {
        tree_cache_bytes: 0,
        ..Options::default()
    };
    let v = backed_up(dir.path(), &src, 1, opts);
    let roots = snapshot_roots(&v);
    let mut all = Vec::new();
    walk(&v, roots[0], Path::new("/"), &mut all);
    assert_eq!(lock(&v.trees).bytes(), 0, "a tree was cached");
    let mut seen = 0;
    for (path, ino) in all.iter().filter(|(p, _)| p.starts_with(&src)) {
        let m = std::fs::symlink_metadata(path).unwrap();
        let a = v.getattr(*ino).unwrap();
        assert_eq!(a.ino, *ino);
        assert_eq!(a.perm, m.mode() & 0o7777, "{path:?}");
        assert_eq!((a.uid, a.gid), (m.uid(), m.gid()));
        assert_eq!(a.mtime_ns, m.mtime() * 1_000_000_000 + m.mtime_nsec());
        if m.is_dir() {
            assert_eq!(a.kind, NodeKind::Dir);
        } else if m.is_symlink() {
            assert_eq!(a.kind, NodeKind::Symlink);
            let target = std::fs::read_link(path).unwrap();
            assert_eq!(v.readlink(*ino).unwrap(), target.as_os_str().as_bytes());
            assert_eq!(a.size, target.as_os_str().len() as u64);
        } else {
            assert_eq!(
                (a.kind, a.size, u64::from(a.nlink)),
                (NodeKind::File, m.len(), m.nlink())
            );
            let want = std::fs::read(path).unwrap();
            assert_eq!(v.read(*ino, 0, 1 << 20).unwrap(), want, "{path:?}");
        }
        let names = xattr::list(path).unwrap();
        let user: Vec<_> = names
            .filter(|n| n.as_bytes().starts_with(b"user."))
            .collect();
        for n in &user {
            let want = xattr::get(path, n).unwrap().unwrap();
            assert_eq!(v.getxattr(*ino, n.as_bytes()).unwrap(), want);
        }
        if path.ends_with("x") {
            assert_eq!(user.len(), 1);
            assert!(v.listxattr(*ino).unwrap().starts_with(b"user.bakfs-test\0"));
        } else {
            assert_eq!(v.getxattr(*ino, b"user.bakfs-test"), Err(VfsError::NoData));
        }
        seen += 1;
    }
    assert_eq!(seen, 1 + 8 * 41 + 3);
    assert_eq!(lock(&v.trees).bytes(), 0, "a tree was cached");
}

#[test]
fn an_inode_costs_a_few_bytes() {
    // What the kernel holds after an `ls -lR` of a million entries: one of these each, in a
    // hash table (at most half full).
    assert!(std::mem::size_of::<inodes::Slot>() <= 16);
    assert!(std::mem::size_of::<(u64, inodes::Slot)>() <= 24);
}
