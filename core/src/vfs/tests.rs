//! The view reading a real repository: what a read leaves in the chunk cache and the chunk
//! tables, and what it offers to the page sink.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::path::Path;
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
