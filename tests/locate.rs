//! `bakfs locate` with the real binary: versions of a file across backups, copies on media
//! that outlive the primary's (media rows recorded through the catalog API, as bakfs-mediad
//! writes them), `--at`, directories, exit codes, and `catalog rebuild` restoring the file
//! table. Every locate runs without the password, most without the repository directory.
#![allow(clippy::unwrap_used)]

use std::process::Output;

use bakfs_core::catalog::{
    Catalog, MediumKind, MediumLocation, MediumRecord, MediumSnapshot, MediumState, Presence,
    Verification,
};
use bakfs_core::format::id::{MediumId, RepoId, SnapshotId};
use bakfs_e2e::{sh, Env};
use serde_json::Value;

/// A backed-up tree: `src/etc/hosts` in two versions, `src/etc/passwd` unchanged.
struct World {
    e: Env,
    src: String,
    hosts: String,
}

impl World {
    fn new() -> World {
        let e = Env::init();
        let src = e.path("src");
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        std::fs::write(src.join("etc/passwd"), "root:x:0:0\n").unwrap();
        let src = src.display().to_string();
        let hosts = format!("{src}/etc/hosts");
        World { e, src, hosts }
    }

    /// `bakfs backup src`; the snapshot's id and time.
    fn backup(&self) -> (SnapshotId, i64) {
        let v = self.e.json(&["backup", &self.src]);
        let id = SnapshotId::from_hex(v["id"].as_str().unwrap()).unwrap();
        let cat = self.catalog();
        let s = cat.snapshot(&self.repo_id(), &id).unwrap().unwrap();
        (id, s.time_ns)
    }

    fn catalog(&self) -> Catalog {
        Catalog::open(&self.e.state.join("catalog.db")).unwrap()
    }

    fn repo_id(&self) -> RepoId {
        Catalog::open(&self.e.state.join("catalog.db"))
            .unwrap()
            .known_repository_ids()
            .unwrap()[0]
    }

    /// `bakfs locate ARGS` without the password.
    fn locate(&self, args: &[&str]) -> Output {
        let mut c = self.e.cmd();
        c.env_remove("BAKFS_PASSWORD").arg("locate").args(args);
        c.output().unwrap()
    }

    /// `bakfs --json locate ARGS`, asserting its exit code.
    fn json(&self, args: &[&str], code: i32) -> Value {
        let mut c = self.e.cmd();
        c.env_remove("BAKFS_PASSWORD")
            .args(["--json", "locate"])
            .args(args);
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(code), "{}", text(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Enrolls `label` and records `snap` verified on it, as bakfs-mediad does; `removed` says
/// whether the daemon saw it go.
fn hold(cat: &mut Catalog, repo: RepoId, label: &str, snap: SnapshotId, time: i64, removed: bool) {
    let id = MediumId::hash_of(label.as_bytes());
    cat.enroll_medium(&MediumRecord {
        state: MediumState::SafeToRemove,
        ..MediumRecord::enrolled(
            id,
            label,
            repo,
            &format!("uuid-{label}"),
            MediumKind::Usb,
            MediumLocation::Offsite,
            time,
        )
    })
    .unwrap();
    let s = MediumSnapshot {
        snapshot_id: snap,
        time_ns: time,
        host: "h".into(),
        paths: vec![],
        job: None,
        verified_ns: time + 1,
    };
    cat.record_medium_verified(&id, &[], &[(s, vec![])], Verification::Written, time + 1)
        .unwrap();
    let p = if removed {
        Presence::Removed
    } else {
        Presence::PluggedIn
    };
    cat.set_medium_presence(&id, p, time + 2).unwrap();
}

#[test]
fn two_versions_their_snapshots_a_directory_and_a_path_never_backed_up() {
    let w = World::new();
    let (s1, t1) = w.backup();
    std::fs::write(&w.hosts, "127.0.0.1 localhost\n10.0.0.1 nas\n").unwrap();
    let (s2, t2) = w.backup();
    let (s3, _) = w.backup();

    let v = w.json(&[&w.hosts], 0);
    let vs = v["versions"].as_array().unwrap();
    assert_eq!(vs.len(), 2, "{v:#}");
    assert_eq!(vs[0]["first"]["id"], s1.to_hex());
    assert_eq!(vs[0]["snapshots"], 1);
    assert_eq!(vs[0]["size"], 20);
    assert_eq!(
        (&vs[1]["first"]["id"], &vs[1]["last"]["id"]),
        (&s2.to_hex().into(), &s3.to_hex().into())
    );
    assert_eq!(vs[1]["snapshots"], 2);
    assert_eq!(vs[1]["copies"][0]["place"], "primary");
    assert_eq!(vs[1]["copies"][0]["snapshots"], 2);
    assert!(v["unrecorded"]["in_primary"] == 0 && v["below"].as_array().unwrap().is_empty());

    let o = w.locate(&[&w.hosts]);
    assert!(o.status.success());
    let out = text(&o.stdout);
    assert!(out.contains("2 version(s) in 3 snapshot(s)"), "{out}");
    assert!(out.contains(&format!("first {} of", s1.short())), "{out}");
    assert!(out.contains(&format!("last {} of", s3.short())), "{out}");

    // --at: between the first and second backup the first version; before any, nothing.
    let between = bakfs_core::timefmt::format_rfc3339_nanos(t1 + (t2 - t1) / 2);
    let v = w.json(&["--at", &between, &w.hosts], 0);
    assert_eq!(v["versions"].as_array().unwrap().len(), 1);
    assert_eq!(v["current"]["id"], s1.to_hex());
    let o = w.locate(&["--at", "2001-01-01", &w.hosts]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("no recorded snapshot at or before 2001-01-01T00:00:00Z"));

    // A relative path is taken from the current directory; a directory lists its files.
    let mut c = w.e.cmd();
    let o = c
        .env_remove("BAKFS_PASSWORD")
        .current_dir(&w.src)
        .args(["--json", "locate", "etc"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let below: Vec<(&str, i64)> = v["below"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["path"].as_str().unwrap(), p["versions"].as_i64().unwrap()))
        .collect();
    let passwd = format!("{}/etc/passwd", w.src);
    assert_eq!(below, [(w.hosts.as_str(), 2), (passwd.as_str(), 1)]);

    // Never backed up: exit 1, a clear message.
    let o = w.locate(&[&format!("{}/etc/shadow", w.src)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("etc/shadow: not found in any recorded snapshot"),
        "{}",
        text(&o.stderr)
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn a_version_the_primary_forgot_is_found_on_the_medium_that_keeps_it() {
    let w = World::new();
    let (s1, t1) = w.backup();
    std::fs::write(&w.hosts, "changed\n").unwrap();
    let (s2, t2) = w.backup();
    let repo = w.repo_id();
    {
        let mut cat = w.catalog();
        hold(&mut cat, repo, "OFFSITE-2", s1, t1, true);
        hold(&mut cat, repo, "SHELF", s2, t2, false);
    }
    // The primary forgets s1 and prunes: OFFSITE-2 (in a safe) still holds it.
    w.e.ok(&["forget", &s1.to_hex(), "--prune"]);
    assert!(w.catalog().snapshot(&repo, &s1).unwrap().is_none());
    // Without the repository or the password.
    std::fs::rename(&w.e.repo, w.e.path("repo.away")).unwrap();
    let v = w.json(&[&w.hosts], 0);
    let vs = v["versions"].as_array().unwrap();
    assert_eq!(vs.len(), 2, "{v:#}");
    let old = vs[0]["copies"].as_array().unwrap();
    assert_eq!(old.len(), 1, "{v:#}");
    assert_eq!(old[0]["place"], "OFFSITE-2");
    assert_eq!(old[0]["presence"], "removed");
    assert_eq!(old[0]["action"], "insert OFFSITE-2");
    let places: Vec<&str> = vs[1]["copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["place"].as_str().unwrap())
        .collect();
    assert_eq!(places, ["primary", "SHELF"]);
    let out = text(&w.locate(&[&w.hosts]).stdout);
    let line = out.lines().find(|l| l.contains("OFFSITE-2")).unwrap();
    assert!(
        line.contains("removed") && line.ends_with("insert OFFSITE-2"),
        "{out}"
    );
    assert!(out.contains("SHELF") && out.contains("plugged in"), "{out}");
    std::fs::rename(w.e.path("repo.away"), &w.e.repo).unwrap();

    // The medium is forgotten: nobody holds s1 any more, and its version goes.
    w.e.ok(&["media", "forget", "OFFSITE-2"]);
    let v = w.json(&[&w.hosts], 0);
    assert_eq!(v["versions"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(v["versions"][0]["first"]["id"], s2.to_hex());
}

#[test]
fn catalog_rebuild_restores_the_file_table() {
    let w = World::new();
    w.backup();
    std::fs::write(&w.hosts, "changed\n").unwrap();
    w.backup();
    // As a catalog of an older bakfs: snapshots recorded, their files not.
    let db = w.e.state.join("catalog.db");
    sh(&format!(
        "sqlite3 {} 'PRAGMA foreign_keys = ON; DELETE FROM file_snapshots; DELETE FROM file_versions; DELETE FROM file_paths'",
        db.display()
    ));
    let o = w.locate(&[&w.hosts]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("the files of 2 snapshot(s) in the repository are not recorded: run bakfs catalog rebuild"),
        "{err}"
    );
    w.e.ok(&["catalog", "rebuild"]);
    let v = w.json(&[&w.hosts], 0);
    assert_eq!(v["versions"].as_array().unwrap().len(), 2);
    assert_eq!(v["unrecorded"]["in_primary"], 0);
    // A catalog lost altogether comes back with its file table too.
    std::fs::remove_dir_all(&w.e.state).unwrap();
    let o = w.locate(&[&w.hosts]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("no catalog at"),
        "{}",
        text(&o.stderr)
    );
    w.e.ok(&["catalog", "rebuild"]);
    assert_eq!(
        w.json(&[&w.hosts], 0)["versions"].as_array().unwrap().len(),
        2
    );
}
