use std::sync::Arc;

use crate::prune::{prune, PruneMode};
use crate::repo::backend::{Backend, FileKind};
use crate::repo::Repository;
use crate::testing::{backup_dir, file_in, mem_repo, noise, source};

/// Packs on the backend that no index lists.
fn unindexed(mem: &dyn Backend, repo: &Repository) -> usize {
    repo.reload_index_from_files().unwrap();
    let indexed = repo.indexed_packs();
    mem.list(FileKind::Pack)
        .unwrap()
        .iter()
        .filter(|n| !indexed.keys().any(|p| p.to_hex() == **n))
        .count()
}

fn check_clean(repo: &Repository) {
    repo.load_index().unwrap();
    let rep = crate::check::check(repo, Some(1.0)).unwrap();
    assert!(rep.ok(), "{rep:?}");
}

#[test]
fn a_prune_beside_a_backup_defers_deletion_to_a_later_prune() {
    let (_d, src) = source(&[("keep", &noise(1 << 20, 1)), ("gone", &noise(2 << 20, 2))]);
    let (mem, repo) = mem_repo();
    let first = backup_dir(&repo, &src, None);
    std::fs::remove_file(src.join("gone")).unwrap();
    let second = backup_dir(&repo, &src, Some((first.id, first.snapshot.clone())));
    repo.remove_snapshot(&first.id).unwrap();
    let packs_before = mem.list(FileKind::Pack).unwrap();

    // Another process holds a shared lock (a backup running on another host).
    let backend: Arc<dyn Backend> = mem.clone();
    let backup_lock = crate::repo::lock::shared(&backend, "backup").unwrap();
    let lock = repo.lock_prune("prune").unwrap();
    let rep = prune(&repo, &lock, PruneMode::Apply).unwrap();
    drop(lock);
    assert!(rep.packs_deferred >= 1, "{rep:?}");
    let now = mem.list(FileKind::Pack).unwrap();
    assert!(
        packs_before.iter().all(|p| now.contains(p)),
        "a pack was deleted while the backup runs"
    );
    assert!(
        unindexed(mem.as_ref(), &repo) >= 1,
        "the pack left the index"
    );
    assert_eq!(mem.list(FileKind::Condemned).unwrap().len(), 1);
    check_clean(&repo);

    // The backup ended: the next prune deletes what waited.
    drop(backup_lock);
    let lock = repo.lock_prune("prune").unwrap();
    let rep = prune(&repo, &lock, PruneMode::Apply).unwrap();
    drop(lock);
    assert_eq!(rep.packs_deferred, 0, "{rep:?}");
    let now = mem.list(FileKind::Pack).unwrap();
    assert!(
        packs_before.iter().any(|p| !now.contains(p)),
        "nothing deleted"
    );
    assert_eq!(unindexed(mem.as_ref(), &repo), 0);
    assert!(mem.list(FileKind::Condemned).unwrap().is_empty());
    check_clean(&repo);
    assert_eq!(
        file_in(&repo, &second.snapshot, &src.join("keep")),
        noise(1 << 20, 1)
    );
}

#[test]
fn a_snapshot_made_from_an_index_read_before_the_prune_keeps_its_blobs() {
    let data = noise(3 << 20, 7);
    let (_d, src) = source(&[("f", &data)]);
    let (mem, repo) = mem_repo();
    let first = backup_dir(&repo, &src, None);
    repo.remove_snapshot(&first.id).unwrap();

    // A backup on another host read the index while `f`'s blobs were still listed...
    let backend: Arc<dyn Backend> = mem.clone();
    let other = Repository::open(backend, b"pw").unwrap();
    let other_lock = other.lock_shared("backup").unwrap();
    // ...then the prune takes them out of the index (they are unused: no snapshot left).
    let lock = repo.lock_prune("prune").unwrap();
    let rep = prune(&repo, &lock, PruneMode::Apply).unwrap();
    drop(lock);
    assert!(rep.packs_deferred >= 1, "{rep:?}");
    // ...and the backup, deduplicating against the index it read, stores nothing new.
    let made = backup_dir(&other, &src, None);
    let stored = made.snapshot.summary.bytes_stored;
    assert!(stored < 4096, "it stored the data again: {stored} bytes");
    drop(other_lock);
    drop(other);

    // The next prune finds that the new snapshot needs the condemned pack, and keeps it.
    let lock = repo.lock_prune("prune").unwrap();
    let rep = prune(&repo, &lock, PruneMode::Apply).unwrap();
    drop(lock);
    assert!(rep.packs_restored >= 1, "{rep:?}");
    assert!(mem.list(FileKind::Condemned).unwrap().is_empty());
    check_clean(&repo);
    assert_eq!(file_in(&repo, &made.snapshot, &src.join("f")), data);
}
