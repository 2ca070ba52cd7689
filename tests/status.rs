//! `bakfs status` against real backups, real SQLite catalogs and the real binary: RPO states
//! with the clock moved by faketime (Debian package `faketime`), the policy's digits with media
//! recorded in the catalog in various combinations, unknown where the catalog cannot tell, the
//! filters, the exit codes and the JSON. Every run is without the password, and most without
//! the repository directory: status reads only the configuration and the catalog.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use bakfs_core::catalog::{
    Catalog, CopyOutcome, DrillEnd, DrillMode, DrillOutcome, DrillStart, MediumFile, MediumKind,
    MediumLocation, MediumRecord, MediumRun, MediumSnapshot, Presence, Verification,
};
use bakfs_core::format::id::{MediumId, PackId, RepoId, SnapshotId};
use bakfs_core::repo::backend::FileKind;
use bakfs_e2e::{bin, Env};
use serde_json::Value;

const NS: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * NS;
const DAY: i64 = 24 * HOUR;

/// The exit codes of README's table.
const OK: i32 = 0;
const ATTENTION: i32 = 20;
const LATE: i32 = 21;
const SHORT: i32 = 22;
const UNKNOWN: i32 = 23;
const BREACHED: i32 = 24;

fn now_ns() -> i64 {
    bakfs_core::timefmt::now_ns()
}

/// A repository with a configuration naming it and job `etc` (rpo 1d) over a small source.
struct World {
    e: Env,
    config: PathBuf,
}

impl World {
    /// `policy` is the `[policy]` table's body.
    fn new(policy: &str) -> World {
        let e = Env::init();
        let src = e.path("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("passwd"), "root:x:0:0\n").unwrap();
        let config = e.path("bakfs.toml");
        let w = World { e, config };
        w.write_config(policy, "");
        w
    }

    fn write_config(&self, policy: &str, more: &str) {
        let text = format!(
            "repository = {:?}\n\n[jobs.etc]\npaths = [{:?}]\nrpo = \"1d\"\n\n[policy]\n{policy}\n{more}",
            self.e.repo.display().to_string(),
            self.e.path("src").display().to_string()
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// `bakfs --config F ARGS` with the password and `--repo` (and `BAKFS_REPO`) taken away,
    /// under faketime `offset` (e.g. `+2d`) if given.
    fn status_cmd(&self, offset: Option<&str>, args: &[&str]) -> Command {
        let mut c = match offset {
            Some(o) => {
                let mut c = Command::new("faketime");
                c.args(["-f", o]).arg(bin("bakfs"));
                c
            }
            None => Command::new(bin("bakfs")),
        };
        c.env("BAKFS_STATE_DIR", &self.e.state)
            .env("XDG_CONFIG_HOME", self.e.path("no-config"))
            .env_remove("BAKFS_PASSWORD")
            .env_remove("BAKFS_PASSWORD_FILE")
            .env_remove("BAKFS_REPO")
            .env_remove("BAKFS_CONFIG")
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(std::process::Stdio::null());
        c
    }

    /// `bakfs status ARGS` (at `offset`): its exit code, stdout and stderr.
    fn status_at(&self, offset: Option<&str>, args: &[&str]) -> (i32, String, String) {
        let mut a = vec!["status"];
        a.extend_from_slice(args);
        let o: Output = self.status_cmd(offset, &a).output().unwrap();
        (
            o.status.code().unwrap(),
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8(o.stderr).unwrap(),
        )
    }

    fn status(&self, args: &[&str]) -> (i32, String, String) {
        self.status_at(None, args)
    }

    /// `bakfs status --json ARGS`, asserting exit code `code`.
    fn json(&self, args: &[&str], code: i32) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let (c, out, err) = self.status(&a);
        assert_eq!(c, code, "status {args:?}: {out}\n{err}");
        serde_json::from_str(&out).unwrap()
    }

    /// `bakfs backup --job etc` (at `offset`); returns the snapshot id.
    fn backup_at(&self, offset: Option<&str>) -> SnapshotId {
        let mut c = self.status_cmd(offset, &["--json", "backup", "--job", "etc"]);
        c.env("BAKFS_PASSWORD", "correct horse")
            .env("BAKFS_INSECURE_TEST_KDF", "1");
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        SnapshotId::from_hex(v["id"].as_str().unwrap()).unwrap()
    }

    fn catalog(&self) -> Catalog {
        Catalog::open(&self.e.state.join("catalog.db")).unwrap()
    }

    fn repo_id(&self) -> RepoId {
        self.catalog().known_repository_ids().unwrap()[0]
    }

    /// The repository directory goes away: status must not need it.
    fn remove_repository(&self) {
        std::fs::rename(&self.e.repo, self.e.path("repo.elsewhere")).unwrap();
    }
}

fn mid(label: &str) -> MediumId {
    MediumId::hash_of(label.as_bytes())
}

/// Enrolls medium `label` in the catalog, as `bakfs media enroll` records it.
fn enroll(cat: &mut Catalog, repo: RepoId, label: &str, kind: MediumKind, loc: MediumLocation) {
    cat.enroll_medium(&MediumRecord {
        fs_type: "ext4".into(),
        capacity: 1 << 30,
        ..MediumRecord::enrolled(
            mid(label),
            label,
            repo,
            &format!("uuid-{label}"),
            kind,
            loc,
            now_ns() - 30 * DAY,
        )
    })
    .unwrap();
}

/// Records snapshot `snap` (of job `etc`, made at `time`) verified on `label` at `at`, by a
/// copy run that ended ok, as bakfs-mediad does.
fn hold(cat: &mut Catalog, label: &str, snap: SnapshotId, time: i64, at: i64) {
    let m = mid(label);
    cat.record_medium_verified(
        &m,
        &[MediumFile {
            kind: FileKind::Snapshot,
            name: snap.to_hex(),
            size: 300,
            verified_ns: at,
        }],
        &[(
            MediumSnapshot {
                snapshot_id: snap,
                time_ns: time,
                host: "h".into(),
                paths: vec!["/src".into()],
                job: Some("etc".into()),
                verified_ns: at,
            },
            vec![PackId::hash_of(snap.to_hex().as_bytes())],
        )],
        Verification::Written,
        at,
    )
    .unwrap();
    let run = cat.begin_medium_run(&m, at - NS).unwrap();
    cat.finish_medium_run(&MediumRun {
        id: run,
        medium_id: m,
        started_ns: at - NS,
        ended_ns: Some(at),
        outcome: CopyOutcome::Ok,
        snapshots_added: 1,
        snapshots_removed: 0,
        files_written: 1,
        bytes_written: 300,
        bytes_verified: 300,
        seconds: 1.0,
        message: None,
    })
    .unwrap();
}

fn digit<'a>(v: &'a Value, job: usize, name: &str) -> &'a Value {
    v["jobs"][job]["digits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap()
}

/// The primary alone meets this policy.
const PRIMARY_ONLY: &str =
    "copies = 1\nkinds = 1\noffsite = 0\noffline = 0\ndrill_within = \"off\"";
/// 3-2-1-1 without the drill (no drill command exists yet).
const NO_DRILL: &str = "drill_within = \"off\"";

#[test]
fn a_job_within_its_rpo_then_late_then_breached_without_the_repository_or_password() {
    let w = World::new(PRIMARY_ONLY);
    w.backup_at(None);
    w.remove_repository();
    let (code, out, err) = w.status(&[]);
    assert_eq!(code, OK, "{out}{err}");
    assert!(out.starts_with("status: ok"), "{out}");
    assert!(out.contains("job etc: ok"), "{out}");
    assert!(out.contains("(rpo 1d: ok)"), "{out}");
    // 36 hours on: past the rpo, within the grace (the rpo again).
    let (code, out, _) = w.status_at(Some("+36h"), &[]);
    assert_eq!(code, LATE, "{out}");
    assert!(out.contains("(rpo 1d: late)"), "{out}");
    let (code, out, _) = w.status_at(Some("+3d"), &["--json"]);
    assert_eq!(code, BREACHED, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["jobs"][0]["rpo_state"], "breached");
    assert!(v["jobs"][0]["newest"]["age_seconds"].as_u64().unwrap() >= 3 * 86_400);
    // A grace of its own.
    w.write_config(PRIMARY_ONLY, "");
    std::fs::write(
        &w.config,
        std::fs::read_to_string(&w.config)
            .unwrap()
            .replace("rpo = \"1d\"", "rpo = \"1d\"\nrpo_grace = \"6h\""),
    )
    .unwrap();
    assert_eq!(w.status_at(Some("+36h"), &[]).0, BREACHED);
}

#[test]
fn a_snapshot_from_the_future_does_not_make_the_job_fresh() {
    let w = World::new(PRIMARY_ONLY);
    // Made while the clock was three days behind, then one with the clock a year ahead.
    w.backup_at(Some("-3d"));
    let future = w.backup_at(Some("+365d"));
    w.remove_repository();
    let v = w.json(&[], BREACHED);
    let job = &v["jobs"][0];
    assert_eq!(job["rpo_state"], "breached", "{job}");
    assert_ne!(job["newest"]["id"], future.to_hex().as_str());
    assert_eq!(job["future"][0]["id"], future.to_hex().as_str());
    let (_, out, _) = w.status(&[]);
    assert!(out.contains("(after now): not counted"), "{out}");
}

#[test]
fn verdict_digit_by_digit_with_media_in_various_combinations() {
    let w = World::new(NO_DRILL);
    let s1 = w.backup_at(None);
    let repo = w.repo_id();
    w.remove_repository();
    let now = now_ns();
    let mut cat = w.catalog();
    enroll(
        &mut cat,
        repo,
        "OFF1",
        MediumKind::Usb,
        MediumLocation::Offsite,
    );
    enroll(
        &mut cat,
        repo,
        "ON1",
        MediumKind::Disk,
        MediumLocation::Onsite,
    );
    // Nothing holds the newest snapshot yet: only the primary's copy.
    let v = w.json(&[], SHORT);
    let d = digit(&v, 0, "copies");
    assert_eq!((d["have"].as_u64(), d["want"].as_u64()), (Some(1), Some(3)));
    assert_eq!(
        d["reason"],
        "only 1 verified copy (3 wanted): OFF1 never written, ON1 never written"
    );
    assert_eq!(
        digit(&v, 0, "offsite")["reason"],
        "no offsite copy (1 wanted): OFF1 never written"
    );
    // OFF1 (usb, offsite) holds it and is still plugged in; ON1 too.
    hold(&mut cat, "OFF1", s1, now - HOUR, now - HOUR / 2);
    hold(&mut cat, "ON1", s1, now - HOUR, now - HOUR / 2);
    cat.set_medium_presence(&mid("OFF1"), Presence::PluggedIn, now - HOUR)
        .unwrap();
    cat.set_medium_presence(&mid("ON1"), Presence::PluggedIn, now - HOUR)
        .unwrap();
    let v = w.json(&[], SHORT);
    for (name, have) in [("copies", 3), ("kinds", 2), ("offsite", 1), ("offline", 0)] {
        assert_eq!(digit(&v, 0, name)["have"], have, "{name}: {v}");
    }
    assert_eq!(
        digit(&v, 0, "offline")["reason"],
        "no offline copy (1 wanted): OFF1 holds it but is plugged in; ON1 holds it but is plugged in"
    );
    // OFF1 pulled out and taken away: every digit holds.
    cat.set_medium_presence(&mid("OFF1"), Presence::Removed, now)
        .unwrap();
    let v = w.json(&[], OK);
    assert_eq!(v["level"], "ok");
    let copies: Vec<&str> = v["jobs"][0]["copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["where"].as_str().unwrap())
        .collect();
    assert_eq!(copies, ["primary", "OFF1", "ON1"]);
    assert_eq!(v["jobs"][0]["copies"][1]["offline"], true);
    let (code, out, _) = w.status(&[]);
    assert_eq!(code, OK, "{out}");
    for line in [
        "copies    3/3   ok",
        "offline   1/1   ok",
        "drill     off   ok",
    ] {
        assert!(out.contains(line), "{line:?} in\n{out}");
    }
    // A second offsite copy wanted: OFFSITE-2 was last written 19 days ago.
    enroll(
        &mut cat,
        repo,
        "OFFSITE-2",
        MediumKind::Usb,
        MediumLocation::Offsite,
    );
    let old = SnapshotId::hash_of(b"an older snapshot");
    hold(&mut cat, "OFFSITE-2", old, now - 20 * DAY, now - 19 * DAY);
    cat.set_medium_presence(&mid("OFFSITE-2"), Presence::Removed, now - 19 * DAY)
        .unwrap();
    w.write_config(&format!("{NO_DRILL}\noffsite = 2"), "");
    let (code, out, _) = w.status(&[]);
    assert_eq!(code, SHORT, "{out}");
    assert!(
        out.contains("only 1 offsite copy (2 wanted): OFFSITE-2 last written 19 days ago"),
        "{out}"
    );
    // A medium holding a newer snapshot the catalog's list of the primary does not have.
    let newer = SnapshotId::hash_of(b"made through another state directory");
    let t = now_ns();
    hold(&mut cat, "OFFSITE-2", newer, t, t);
    let v = w.json(&["--job", "etc"], SHORT);
    let job = &v["jobs"][0];
    assert_eq!(job["newest"]["id"], newer.to_hex().as_str());
    assert_eq!(job["newest"]["in_primary"], false);
    assert_eq!(job["copies"].as_array().unwrap().len(), 1, "{job}");
    assert!(
        job["notes"][0]
            .as_str()
            .unwrap()
            .contains("known only from media"),
        "{job}"
    );
    assert!(
        v["media"].as_array().unwrap().is_empty(),
        "--job alone lists no media"
    );
}

#[test]
fn a_catalog_without_media_rows_says_unknown_never_ok() {
    let w = World::new(NO_DRILL);
    w.backup_at(None);
    let repo = w.repo_id();
    w.remove_repository();
    let v = w.json(&[], UNKNOWN);
    assert_eq!(v["level"], "unknown");
    for name in ["copies", "kinds", "offsite", "offline"] {
        let d = digit(&v, 0, name);
        assert_eq!(d["state"], "unknown", "{d}");
        assert!(
            d["reason"].as_str().unwrap().contains("records no media"),
            "{d}"
        );
    }
    // The media rows lost from a catalog that had them: the same.
    let mut cat = w.catalog();
    enroll(
        &mut cat,
        repo,
        "OFF1",
        MediumKind::Usb,
        MediumLocation::Offsite,
    );
    drop(cat);
    let o = Command::new("sqlite3")
        .arg(w.e.state.join("catalog.db"))
        .arg("PRAGMA foreign_keys=ON; DELETE FROM media;")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(w.json(&[], UNKNOWN)["level"], "unknown");
    // No catalog at all: unknown, and none is created.
    std::fs::remove_dir_all(&w.e.state).unwrap();
    let (code, out, _) = w.status(&[]);
    assert_eq!(code, UNKNOWN, "{out}");
    assert!(out.contains("no catalog at"), "{out}");
    assert!(!w.e.state.join("catalog.db").exists());
    // A repository the catalog has no record of: unknown.
    std::fs::create_dir_all(&w.e.state).unwrap();
    w.catalog();
    let (code, out, _) = w.status(&[]);
    assert_eq!(code, UNKNOWN, "{out}");
    assert!(out.contains("no record of the repository"), "{out}");
}

#[test]
fn media_filters_exit_codes_and_the_json_shape() {
    let w = World::new(NO_DRILL);
    let s1 = w.backup_at(None);
    let repo = w.repo_id();
    w.remove_repository();
    let now = now_ns();
    let mut cat = w.catalog();
    enroll(
        &mut cat,
        repo,
        "OFF1",
        MediumKind::Usb,
        MediumLocation::Offsite,
    );
    enroll(
        &mut cat,
        repo,
        "ON1",
        MediumKind::Disk,
        MediumLocation::Onsite,
    );
    hold(&mut cat, "OFF1", s1, now - HOUR, now - 10 * DAY);
    hold(&mut cat, "ON1", s1, now - HOUR, now - HOUR / 2);
    cat.set_medium_presence(&mid("OFF1"), Presence::Removed, now - 10 * DAY)
        .unwrap();
    cat.set_medium_presence(&mid("ON1"), Presence::PluggedIn, now - HOUR)
        .unwrap();
    cat.set_medium_free_bytes(&mid("ON1"), 700 << 20, now - HOUR / 2)
        .unwrap();
    // A drill that measured OFF1's restore rate: 100 MiB in 10 s, 2 s to mount.
    let d = cat
        .begin_drill(&DrillStart {
            repo_id: repo,
            medium_id: Some(mid("OFF1")),
            snapshot_id: s1,
            job: Some("etc".into()),
            started_ns: now - 2 * DAY,
            mode: DrillMode::Full,
        })
        .unwrap();
    cat.finish_drill(
        d,
        &DrillEnd {
            ended_ns: now - 2 * DAY + 12 * NS,
            outcome: DrillOutcome::Ok,
            files: 1,
            bytes: 100 << 20,
            seconds: 10.0,
            ready_seconds: 2.0,
            message: None,
        },
    )
    .unwrap();
    drop(cat);
    let v = w.json(&[], OK);
    for k in [
        "level",
        "now",
        "repository",
        "policy",
        "notes",
        "jobs",
        "media",
    ] {
        assert!(v.get(k).is_some(), "{k}: {v}");
    }
    for k in [
        "copies",
        "kinds",
        "offsite",
        "offline",
        "drill_within_seconds",
        "primary_kind",
        "stale_after_seconds",
    ] {
        assert!(v["policy"].get(k).is_some(), "{k}");
    }
    let job = &v["jobs"][0];
    for k in [
        "name",
        "level",
        "rpo_seconds",
        "rpo_grace_seconds",
        "rpo_state",
        "newest",
        "future",
        "last_run",
        "copies",
        "digits",
        "notes",
    ] {
        assert!(job.get(k).is_some(), "{k}: {job}");
    }
    assert_eq!(job["last_run"]["outcome"], "ok");
    let off1 = &job["copies"][1];
    assert_eq!(
        (&off1["where"], &off1["kind"]),
        (&"OFF1".into(), &"usb".into())
    );
    assert!(off1["verified"].is_string() && off1["last_drill"]["outcome"] == "ok");
    // The snapshot's bytes at OFF1's measured rate, plus its ready time.
    let bytes = job["newest"]["bytes"].as_u64().unwrap() as f64;
    let rto = off1["rto_seconds"].as_f64().unwrap();
    assert!(
        (rto - (2.0 + bytes / (10 << 20) as f64)).abs() < 1e-6,
        "{rto}"
    );
    let m = v["media"].as_array().unwrap();
    assert_eq!(m.len(), 2);
    let on1 = m.iter().find(|m| m["label"] == "ON1").unwrap();
    for k in [
        "label",
        "level",
        "kind",
        "pool",
        "location",
        "presence",
        "last_seen",
        "last_written",
        "last_verified",
        "last_rotated",
        "last_drill",
        "snapshots",
        "bytes",
        "capacity",
        "free_bytes",
        "rotate_every_seconds",
        "rotation_due",
        "stale",
        "restore_bytes_per_second",
        "ready_seconds",
        "rto_seconds",
        "notes",
    ] {
        assert!(on1.get(k).is_some(), "{k}: {on1}");
    }
    assert_eq!(on1["free_bytes"], 700 << 20);
    assert_eq!(on1["presence"], "plugged in");
    let off1 = m.iter().find(|m| m["label"] == "OFF1").unwrap();
    assert_eq!(off1["restore_bytes_per_second"], (10 << 20) as f64);
    assert!(off1["rto_seconds"].as_f64().is_some());

    // OFF1 is to come back every 7 days and was last rotated 10 days ago: attention.
    let o = w
        .status_cmd(None, &["media", "set-rotate-every", "OFF1", "7d"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = w.json(&["--medium", "OFF1"], ATTENTION);
    assert!(
        v["jobs"].as_array().unwrap().is_empty(),
        "--medium alone lists no job"
    );
    let off1 = &v["media"][0];
    assert_eq!(off1["rotation_due"], true);
    assert_eq!(off1["rotate_every_from"], "medium");
    let (_, out, _) = w.status(&["--medium", "OFF1"]);
    assert!(
        out.contains("OFF1: due for rotation: last rotated 10 days ago (every 7d)"),
        "{out}"
    );
    // ON1 alone holds.
    assert_eq!(w.json(&["--medium", "ON1"], OK)["level"], "ok");
    // Without its own period (`pool`), its pool's applies.
    let o = w
        .status_cmd(None, &["media", "set-rotate-every", "OFF1", "pool"])
        .output()
        .unwrap();
    assert!(o.status.success());
    w.write_config(NO_DRILL, "[pools.default]\nrotate_every = \"30d\"\n");
    let v = w.json(&["--medium", "OFF1"], OK);
    assert_eq!(v["media"][0]["rotate_every_from"], "pool");
    w.write_config(NO_DRILL, "[pools.default]\nrotate_every = \"7d\"\n");
    let v = w.json(&["--medium", "OFF1"], ATTENTION);
    assert_eq!(v["media"][0]["rotation_due"], true);
    // Stale: not seen for longer than the pool allows.
    w.write_config(NO_DRILL, "[pools.default]\nstale_after = \"5d\"\n");
    let v = w.json(&["--medium", "OFF1"], ATTENTION);
    assert_eq!(v["media"][0]["stale"], true);
    assert_eq!(v["media"][0]["rotation_due"], false);
    // The whole report: the worst level wins (a medium needing attention, the job ok).
    assert_eq!(w.json(&[], ATTENTION)["jobs"][0]["level"], "ok");
    // Both filters: that job and that medium.
    let v = w.json(&["--job", "etc", "--medium", "ON1"], OK);
    assert_eq!(
        (
            v["jobs"].as_array().unwrap().len(),
            v["media"].as_array().unwrap().len()
        ),
        (1, 1)
    );
    // Errors keep their codes, distinct from the levels'.
    let (code, _, err) = w.status(&["--job", "nope"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no job \"nope\""), "{err}");
    let (code, _, err) = w.status(&["--medium", "NOPE"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no medium labelled \"NOPE\""), "{err}");
    w.write_config("drill_within = \"soon\"", "");
    let (code, _, err) = w.status(&[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("policy: drill_within"), "{err}");
}

/// The repository, read by nobody: `status` under strace opens nothing inside it.
#[test]
fn status_reads_no_repository_file() {
    let w = World::new(PRIMARY_ONLY);
    w.backup_at(None);
    let trace = w.e.path("strace.out");
    let o = Command::new("strace")
        .args(["-f", "-e", "trace=open,openat,stat,statx,newfstatat", "-o"])
        .arg(&trace)
        .arg(bin("bakfs"))
        .args(["--config"])
        .arg(&w.config)
        .arg("status")
        .env("BAKFS_STATE_DIR", &w.e.state)
        .env_remove("BAKFS_PASSWORD")
        .env_remove("BAKFS_REPO")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(OK),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let t = std::fs::read_to_string(&trace).unwrap();
    let repo = w.e.repo.display().to_string();
    let touched: Vec<&str> = t.lines().filter(|l| l.contains(&repo)).collect();
    assert!(touched.is_empty(), "{touched:#?}");
    assert!(t.contains("catalog.db"));
}

/// `pin = true` on job `etc`: a medium lacking its newest snapshot is named on the job and
/// flagged on the medium (exit 20, attention), in the table, the JSON and the metrics; once
/// every medium holds it, all is ok again.
#[test]
fn a_pinned_job_names_the_media_lacking_its_newest_snapshot() {
    let w = World::new(PRIMARY_ONLY);
    let text = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(
        &w.config,
        text.replacen("rpo = \"1d\"\n", "rpo = \"1d\"\npin = true\n", 1),
    )
    .unwrap();
    let s1 = w.backup_at(None);
    let repo = w.repo_id();
    w.remove_repository();
    let now = now_ns();
    let mut cat = w.catalog();
    for label in ["OFF1", "OFF2"] {
        enroll(
            &mut cat,
            repo,
            label,
            MediumKind::Usb,
            MediumLocation::Offsite,
        );
        cat.set_medium_presence(&mid(label), Presence::Removed, now - HOUR)
            .unwrap();
    }
    hold(&mut cat, "OFF1", s1, now - HOUR, now - HOUR / 2);
    let old = SnapshotId::hash_of(b"an older one");
    hold(&mut cat, "OFF2", old, now - 20 * DAY, now - 19 * DAY);
    let (code, out, err) = w.status(&[]);
    assert_eq!(code, ATTENTION, "{out}\n{err}");
    assert!(
        out.contains(
            "\n  pinned    MISSING: OFF2 lacks the newest snapshot (last written 19 days ago)\n"
        ),
        "{out}"
    );
    let line = out.lines().find(|l| l.starts_with("OFF2 ")).unwrap();
    assert!(line.ends_with("lacks pinned"), "{line}");
    assert!(
        out.contains(&format!(
            "  OFF2: pinned etc: lacks the newest snapshot {}",
            s1.short()
        )),
        "{out}"
    );
    let v = w.json(&[], ATTENTION);
    assert_eq!(v["jobs"][0]["level"], "attention");
    assert_eq!(v["jobs"][0]["pinned"], true);
    assert_eq!(v["jobs"][0]["pinned_missing"][0]["medium"], "OFF2");
    let media = v["media"].as_array().unwrap();
    assert_eq!(media[0]["pinned_missing"], serde_json::json!([]));
    assert_eq!(media[1]["pinned_missing"], serde_json::json!(["etc"]));
    assert_eq!(media[1]["level"], "attention");
    assert_eq!(w.json(&["--medium", "OFF1"], OK)["level"], "ok");
    let o = w.status_cmd(None, &["metrics"]).output().unwrap();
    let m = String::from_utf8(o.stdout).unwrap();
    assert!(
        m.contains("\nbakfs_job_pinned_media_missing{job=\"etc\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("\nbakfs_medium_pinned_missing{medium=\"OFF2\"} 1\n"),
        "{m}"
    );
    // bakfs-mediad copied it onto OFF2.
    hold(&mut cat, "OFF2", s1, now - HOUR, now - HOUR / 4);
    let (code, out, err) = w.status(&[]);
    assert_eq!(code, OK, "{out}\n{err}");
    assert!(
        out.contains("\n  pinned    ok: on every enrolled medium\n"),
        "{out}"
    );
}
