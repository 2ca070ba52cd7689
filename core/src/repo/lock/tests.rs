use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;
use crate::format::BlobKind;
use crate::repo::backend::LocalBackend;

/// A lock of another host, written to `locks/` of `dir`, last written `age` ago by the
/// storage's clock (the file's mtime). Its own `time_ns` says it was taken just now, so a test
/// that finds it stale shows that the storage's clock decided, not the holder's.
fn foreign_lock(dir: &Path, name: &str, exclusive: bool, age: Duration) {
    let info = LockInfo {
        exclusive,
        prune: false,
        host: "another-host".into(),
        pid: 1,
        time_ns: crate::timefmt::now_ns(),
        purpose: "backup".into(),
    };
    let path = dir.join("locks").join(name);
    std::fs::write(&path, serde_json::to_vec(&info).unwrap()).unwrap();
    set_age(&path, age);
}

fn set_age(path: &Path, age: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

fn local(dir: &Path) -> Arc<dyn Backend> {
    let b: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir));
    b.create().unwrap();
    b
}

#[test]
fn a_lock_not_renewed_is_stale_by_the_storage_clock() {
    let d = tempfile::tempdir().unwrap();
    let b = local(d.path());
    let other = "ab".repeat(16);
    foreign_lock(
        d.path(),
        &other,
        false,
        stale_after() + Duration::from_secs(60),
    );
    let g = exclusive(&b, "prune").expect("a lock not renewed for longer than stale_after");
    drop(g);
    // The same lock written a minute ago is live, whatever host holds it.
    set_age(
        &d.path().join("locks").join(&other),
        Duration::from_secs(60),
    );
    match exclusive(&b, "prune") {
        Err(Error::Locked(m)) => assert!(m.contains("another-host"), "{m}"),
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
    // Only this process's lock is gone from the listing: nothing left behind.
    assert_eq!(b.list(FileKind::Lock).unwrap(), vec![other]);
}

#[test]
fn unlock_removes_locks_not_renewed_and_keeps_live_ones() {
    let d = tempfile::tempdir().unwrap();
    let b = local(d.path());
    let (old, fresh) = ("01".repeat(16), "02".repeat(16));
    foreign_lock(d.path(), &old, true, stale_after() * 2);
    foreign_lock(d.path(), &fresh, false, Duration::ZERO);
    assert_eq!(unlock(b.as_ref(), Unlock::Stale).unwrap(), vec![old]);
    // The probe that read the storage's clock is gone too.
    assert_eq!(b.list(FileKind::Lock).unwrap(), vec![fresh]);
}

#[test]
fn a_held_lock_is_renewed_and_a_lost_one_stops_writes() {
    let d = tempfile::tempdir().unwrap();
    let t = Timing {
        stale: Duration::from_secs(5),
        refresh: Duration::from_millis(100),
    };
    let repo = Repository::init(
        Arc::new(LocalBackend::new(d.path())),
        b"pw",
        crate::format::crypto::KdfParams::weak_for_tests(),
        String::new(),
    )
    .unwrap();
    let g = acquire_timed(repo.backend(), LockMode::Shared, "backup", t).unwrap();
    repo.hold(&g);
    let name = repo.backend().list(FileKind::Lock).unwrap().remove(0);
    let path = d.path().join("locks").join(&name);
    set_age(&path, Duration::from_secs(3600));
    std::thread::sleep(Duration::from_millis(500));
    let age = SystemTime::now()
        .duration_since(std::fs::metadata(&path).unwrap().modified().unwrap())
        .unwrap_or_default();
    assert!(age < Duration::from_secs(60), "not renewed: {age:?} old");
    g.check().unwrap();
    repo.save_blob(BlobKind::Data, b"before").unwrap();
    repo.flush().unwrap();

    // Another host judged it stale and removed it.
    std::fs::remove_file(&path).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(matches!(g.check(), Err(Error::Locked(_))));
    repo.save_blob(BlobKind::Data, b"after").unwrap();
    match repo.flush() {
        Err(Error::Locked(m)) => assert!(m.contains("was lost"), "{m}"),
        other => panic!("a flush without the lock: {other:?}"),
    }
    drop(g);
    // A lost lock is not removed on drop: the name may be another holder's by now.
    assert!(repo.backend().list(FileKind::Lock).unwrap().is_empty());
}
