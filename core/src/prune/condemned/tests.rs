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

fn check_clean(repo: &Repository) -> crate::check::CheckReport {
    repo.load_index().unwrap();
    let rep = crate::check::check(repo, Some(1.0)).unwrap();
    assert!(rep.ok(), "{rep:?}");
    rep
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
    let rep = check_clean(&repo);
    assert!(
        rep.notes
            .iter()
            .any(|n| n.contains("waits: a prune took it out")),
        "{:?}",
        rep.notes
    );

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

/// A backend over another that runs `hook` once, just before the first write of a `kind` file
/// through it: another host acting at that moment of a prune.
struct Hooked {
    inner: Arc<crate::repo::backend::MemBackend>,
    kind: FileKind,
    hook: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Backend for Hooked {
    fn location(&self) -> String {
        "hooked".into()
    }
    fn persistent(&self) -> bool {
        false
    }
    fn create(&self) -> std::io::Result<()> {
        self.inner.create()
    }
    fn read(&self, k: FileKind, n: &str) -> std::io::Result<Vec<u8>> {
        self.inner.read(k, n)
    }
    fn read_range(&self, k: FileKind, n: &str, o: u64, l: usize) -> std::io::Result<Vec<u8>> {
        self.inner.read_range(k, n, o, l)
    }
    fn write(&self, k: FileKind, n: &str, d: &[u8]) -> std::io::Result<()> {
        if k == self.kind {
            let hook = self.hook.lock().unwrap().take();
            if let Some(h) = hook {
                h();
            }
        }
        self.inner.write(k, n, d)
    }
    fn list(&self, k: FileKind) -> std::io::Result<Vec<String>> {
        self.inner.list(k)
    }
    fn size(&self, k: FileKind, n: &str) -> std::io::Result<u64> {
        self.inner.size(k, n)
    }
    fn modified(&self, k: FileKind, n: &str) -> std::io::Result<std::time::SystemTime> {
        self.inner.modified(k, n)
    }
    fn remove(&self, k: FileKind, n: &str) -> std::io::Result<()> {
        self.inner.remove(k, n)
    }
}

#[test]
fn an_index_file_a_backup_writes_during_the_prune_is_kept() {
    let (_d, src) = source(&[("old", &noise(1 << 20, 11)), ("gone", &noise(2 << 20, 13))]);
    let (_e, other_src) = source(&[("new", &noise(2 << 20, 12))]);
    let (mem, repo) = mem_repo();
    let first = backup_dir(&repo, &src, None);
    std::fs::remove_file(src.join("gone")).unwrap();
    let _ = backup_dir(&repo, &src, Some((first.id, first.snapshot.clone())));
    repo.remove_snapshot(&first.id).unwrap();
    // The prune's own handle goes through the hook; the other host's does not.
    let hooked = Arc::new(Hooked {
        inner: mem.clone(),
        // The repack's first pack: after the prune read the index, before it replaces it.
        kind: FileKind::Pack,
        hook: std::sync::Mutex::new(None),
    });
    let pruner = Repository::open(hooked.clone(), b"pw").unwrap();
    let made = Arc::new(std::sync::Mutex::new(None));
    let (m, dir) = (made.clone(), other_src.clone());
    let inner: Arc<dyn Backend> = mem.clone();
    // Just as the prune writes its first repacked pack, another host completes a backup: its
    // packs, its index file, its manifest.
    *hooked.hook.lock().unwrap() = Some(Box::new(move || {
        let other = Repository::open(inner, b"pw").unwrap();
        *m.lock().unwrap() = Some(backup_dir(&other, &dir, None));
    }));
    let lock = pruner.lock_prune("prune").unwrap();
    prune(&pruner, &lock, PruneMode::Apply).unwrap();
    drop(lock);
    let made = made.lock().unwrap().take().expect("the hook ran");
    check_clean(&repo);
    assert_eq!(
        file_in(&repo, &made.snapshot, &other_src.join("new")),
        noise(2 << 20, 12)
    );
}
