//! Opening a repository while a prune replaces its index files (no lock held while opening).
//!
//! Prune writes the new index file before it removes the old ones; a reader that listed the old
//! names must list again rather than fail on a file that vanished.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bakfs_core::format::crypto::KdfParams;
use bakfs_core::format::id::{BlobId, PackId};
use bakfs_core::format::{BlobKind, IndexFile, IndexPack, PackEntry};
use bakfs_core::repo::backend::{FileKind, LocalBackend};
use bakfs_core::repo::Repository;

fn index_with(n: u32, packs: u32) -> IndexFile {
    IndexFile {
        packs: (0..packs)
            .map(|p| IndexPack {
                id: PackId::hash_of(format!("pack {n} {p}").as_bytes()),
                size: 1000,
                blobs: vec![PackEntry {
                    id: BlobId::hash_of(format!("blob {p}").as_bytes()),
                    kind: BlobKind::Data,
                    offset: 0,
                    length: 100,
                    raw_len: 100,
                    compressed: false,
                }],
            })
            .collect(),
    }
}

#[test]
fn open_while_index_files_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let pw = b"index race";
    let repo = Repository::init(
        Arc::new(LocalBackend::new(&root)),
        pw,
        KdfParams::weak_for_tests(),
        "test".into(),
    )
    .unwrap();
    for n in 0..8 {
        repo.write_index(&index_with(n, 50)).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Replace all index files by one new file, the way prune does, over and over.
            let mut n = 100;
            while !stop.load(Ordering::Relaxed) {
                let old = repo.backend().list(FileKind::Index).unwrap();
                repo.write_index(&index_with(n, 50)).unwrap();
                for o in old {
                    repo.backend().remove(FileKind::Index, &o).unwrap();
                }
                for k in 1..4 {
                    repo.write_index(&index_with(n + k, 50)).unwrap();
                }
                n += 4;
            }
            n
        })
    };
    for round in 0..300 {
        let r = Repository::open(Arc::new(LocalBackend::new(&root)), pw)
            .unwrap_or_else(|e| panic!("open in round {round} while the index changed: {e}"));
        // Every index written holds the same 50 blob ids.
        let mut n = 0;
        r.each_blob(|_| n += 1).unwrap();
        assert_eq!(n, 50, "round {round}");
    }
    stop.store(true, Ordering::Relaxed);
    let replaced = writer.join().unwrap();
    assert!(
        replaced > 104,
        "the index was never replaced during the test"
    );
}
