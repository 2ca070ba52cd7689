use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::catalog::NewestSnapshot;
use crate::format::id::SnapshotId;
use crate::repo::backend::{Backend, FileKind};
use crate::testing::{backup_dir, mem_repo, noise, source};

fn opts(scope: Scope) -> DrillOptions {
    DrillOptions {
        scope,
        against_source: None,
    }
}

/// Every path under `dir`, relative, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            if p.symlink_metadata().unwrap().is_dir() {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_sample_restores_a_share_of_the_files_and_full_restores_all_checked() {
    let files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("d{}/f{i}", i % 3), noise(1000 + i, i as u64)))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    let (dir, src) = source(&refs);
    let (_mem, repo) = mem_repo();
    let r = backup_dir(&repo, &src, None);
    let outside = listing(dir.path());

    let sb = Sandbox::create(dir.path()).unwrap();
    let p = RestoreProgress::default();
    let rep = run(
        &repo,
        &r.snapshot.tree,
        &sb.target(),
        &opts(Scope::Sample(5.0)),
        &p,
    )
    .unwrap();
    assert_eq!(rep.outcome(), DrillOutcome::Ok, "{rep:?}");
    assert_eq!(
        (rep.files_in_snapshot, rep.files),
        (40, 2),
        "ceil(5% of 40)"
    );
    let restored: Vec<String> = listing(&sb.target())
        .into_iter()
        .filter(|p| p.contains("/f"))
        .filter(|p| p.rsplit('/').next().unwrap().starts_with('f'))
        .collect();
    assert_eq!(restored.len(), 2, "{restored:?}");
    assert!(rep.bytes > 0 && rep.seconds > 0.0);
    sb.remove().unwrap();
    assert_eq!(
        listing(dir.path()),
        outside,
        "nothing left, nothing outside"
    );

    let sb = Sandbox::create(dir.path()).unwrap();
    let p = RestoreProgress::default();
    let rep = run(
        &repo,
        &r.snapshot.tree,
        &sb.target(),
        &opts(Scope::Full),
        &p,
    )
    .unwrap();
    assert_eq!(rep.outcome(), DrillOutcome::Ok, "{rep:?}");
    assert_eq!(rep.files, 40);
    let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(rep.bytes, total);
    // A directory the snapshot says is read-only does not stop the removal.
    let d0 = sb.target().join(src.strip_prefix("/").unwrap()).join("d0");
    std::fs::set_permissions(&d0, std::fs::Permissions::from_mode(0o555)).unwrap();
    sb.remove().unwrap();
    assert_eq!(listing(dir.path()), outside);
}

#[test]
fn a_damaged_pack_names_the_file_and_the_drill_is_damaged() {
    let (dir, src) = source(&[("big", &noise(1 << 20, 7)), ("small", b"small")]);
    let (mem, repo) = mem_repo();
    let r = backup_dir(&repo, &src, None);
    let big = src.join("big").to_string_lossy().into_owned();
    let node = crate::restore::find_node(&repo, &r.snapshot.tree, &big)
        .unwrap()
        .unwrap();
    let loc = repo.locate(&node.content[0]).unwrap();
    let at = loc.entry.offset as usize + 100;
    mem.tamper(FileKind::Pack, &loc.pack.to_hex(), |b| b[at] ^= 1)
        .unwrap();
    let sb = Sandbox::create(dir.path()).unwrap();
    let p = RestoreProgress::default();
    let rep = run(
        &repo,
        &r.snapshot.tree,
        &sb.target(),
        &opts(Scope::Full),
        &p,
    )
    .unwrap();
    assert_eq!(rep.outcome(), DrillOutcome::Damaged);
    assert_eq!(rep.damaged.len(), 1, "{:?}", rep.damaged);
    assert!(
        rep.damaged[0].starts_with(&format!("{big}:")),
        "named by its snapshot path: {:?}",
        rep.damaged
    );
    assert_eq!(rep.files, 1, "the small file restored right");
    sb.remove().unwrap();
}

#[test]
fn against_the_source_counts_changed_and_gone_files_within_a_tolerance() {
    let (dir, src) = source(&[("a", b"a"), ("b", b"b"), ("c", b"c"), ("d", b"d")]);
    let (_mem, repo) = mem_repo();
    let r = backup_dir(&repo, &src, None);
    std::fs::write(src.join("a"), b"changed").unwrap();
    std::fs::remove_file(src.join("b")).unwrap();
    for (max, within) in [(50.0, true), (20.0, false)] {
        let sb = Sandbox::create(dir.path()).unwrap();
        let o = DrillOptions {
            scope: Scope::Sample(100.0),
            against_source: Some(max),
        };
        let rep = run(
            &repo,
            &r.snapshot.tree,
            &sb.target(),
            &o,
            &Default::default(),
        )
        .unwrap();
        let s = rep.source.clone().unwrap();
        assert_eq!((s.compared, s.same), (4, 2));
        assert_eq!(
            s.changed,
            vec![src.join("a").to_string_lossy().into_owned()]
        );
        assert_eq!(s.gone, vec![src.join("b").to_string_lossy().into_owned()]);
        assert_eq!(s.within, within, "2 of 4 against {max}%");
        let want = if within {
            DrillOutcome::Ok
        } else {
            DrillOutcome::Failed
        };
        assert_eq!(rep.outcome(), want);
        sb.remove().unwrap();
    }
}

#[test]
fn the_snapshot_is_picked_by_job_prefix_or_newest() {
    let id = |b: u8| SnapshotId([b; 32]);
    let c = |b: u8, t: i64, job: Option<&str>| NewestSnapshot {
        snapshot_id: id(b),
        time_ns: t,
        job: job.map(str::to_string),
    };
    let all = [
        c(0xaa, 3, Some("etc")),
        c(0xbb, 2, Some("db")),
        c(0xab, 1, Some("etc")),
    ];
    assert_eq!(
        pick_snapshot(&all, None, None).unwrap().snapshot_id,
        id(0xaa)
    );
    assert_eq!(
        pick_snapshot(&all, Some("db"), None).unwrap().snapshot_id,
        id(0xbb)
    );
    assert_eq!(
        pick_snapshot(&all, None, Some("ABAB")).unwrap().snapshot_id,
        id(0xab)
    );
    let e = pick_snapshot(&all, None, Some("a"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least 4 hex digits"), "{e}");
    let e = pick_snapshot(&all, Some("db"), Some("aaaa"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no snapshot of job db matches"), "{e}");
    assert!(pick_snapshot(&all, Some("www"), None).is_err());
}

#[test]
fn damage_found_reading_back_counts_as_damage_and_names_the_snapshot_path() {
    let t = Path::new("/var/tmp/bakfs-drill-1/restore");
    let bad = format!(
        "damaged restored file {}/etc/a: bytes at offset 0 differ",
        t.display()
    );
    let rep = crate::restore::RestoreReport {
        errors: vec![
            bad.clone(),
            format!("{}/etc/b: No space left on device", t.display()),
        ],
        damaged: true,
        damaged_entries: vec![(t.join("etc/a"), bad)],
        ..Default::default()
    };
    let (damaged, errors) = failures(&rep, t);
    assert_eq!(
        damaged,
        vec!["damaged restored file /etc/a: bytes at offset 0 differ"]
    );
    assert_eq!(errors, vec!["/etc/b: No space left on device"]);
}

/// A copy that goes away mid-drill (a medium pulled out: EIO on every read from then on) fails
/// the drill, which says nothing of the copy; a pack that is not there is damage.
#[test]
fn a_copy_gone_mid_drill_fails_it_and_a_missing_pack_is_damage() {
    let files: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("f{i}"), noise(200_000, i as u64)))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    let (dir, src) = source(&refs);
    let (mem, repo) = mem_repo();
    let r = backup_dir(&repo, &src, None);
    let failing = std::sync::Arc::new(crate::testing::Failing {
        inner: mem.clone(),
        reads_left: 3.into(),
        errno: libc::EIO,
    });
    let pulled = Repository::open(failing, b"pw").unwrap();
    let sb = Sandbox::create(dir.path()).unwrap();
    let rep = run(
        &pulled,
        &r.snapshot.tree,
        &sb.target(),
        &opts(Scope::Full),
        &RestoreProgress::default(),
    );
    // The trees were read (the first reads); files' data fails from the third read on: the
    // drill stops with an I/O error (the command records it `failed`), never damage.
    let e = rep.unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Other, "{e}");
    assert!(e.to_string().contains("Input/output error"), "{e}");
    sb.remove().unwrap();

    // A pack removed from the copy: the files it held are damaged, and named.
    let pack = mem.list(FileKind::Pack).unwrap()[0].clone();
    mem.remove(FileKind::Pack, &pack).unwrap();
    let sb = Sandbox::create(dir.path()).unwrap();
    let rep = run(
        &repo,
        &r.snapshot.tree,
        &sb.target(),
        &opts(Scope::Full),
        &RestoreProgress::default(),
    );
    match rep {
        Err(e) => assert_eq!(e.kind(), crate::ErrorKind::Damaged, "{e}"),
        Ok(rep) => {
            assert_eq!(rep.outcome(), DrillOutcome::Damaged, "{rep:?}");
            assert!(rep.damaged.iter().any(|d| d.contains("missing")), "{rep:?}");
        }
    }
    sb.remove().unwrap();
}
