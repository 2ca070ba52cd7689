//! bakfs-mediad with real udev events: loop-backed ext4 and xfs filesystems stand in for USB
//! sticks, systemd-udevd runs with the bakfs rule, and each medium is checked and restored from
//! alone afterwards.
#![allow(clippy::unwrap_used)]

#[path = "media_harness.rs"]
mod media_harness;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bakfs_e2e::{have_root, rsync_diff, sh, write_random, Env};
use media_harness::*;

fn enroll(e: &Env, m: &mut Medium, label: &str, extra: &[&str]) {
    let dev = m.plug();
    let mut args = vec!["media", "enroll", dev.as_str(), "--label", label];
    args.extend_from_slice(extra);
    e.ok(&args);
    m.unplug();
}

fn backup(e: &Env, src: &Path) -> String {
    let v = e.json(&["backup", src.to_str().unwrap()]);
    v["id"]
        .as_str()
        .or(v["snapshot"].as_str())
        .unwrap()
        .to_string()
}

/// A 3 MiB file backed up and copied onto a new enrolled medium `label` by a daemon that is
/// stopped again: the scratch directory, the source, the snapshot id and the medium.
fn copied_once(label: &str, seed: u64) -> (Env, PathBuf, String, Medium) {
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("a"), 3 << 20, seed);
    let id = backup(&e, &src);
    let mut m = Medium::create(&e, label, 64, "ext4");
    enroll(&e, &mut m, label, &[]);
    let d = Mediad::start(&e);
    m.plug();
    assert_eq!(wait_run(&e, label, 0)["outcome"], "ok");
    m.unplug();
    drop(d);
    (e, src, id, m)
}

/// The name of the largest of `packs`.
fn largest(packs: impl IntoIterator<Item = PathBuf>) -> String {
    let p = packs
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    p.file_name().unwrap().to_str().unwrap().to_string()
}

/// Where pack `name` lives in a repository directory.
fn pack_path(repo: &Path, name: &str) -> PathBuf {
    repo.join("data").join(&name[..2]).join(name)
}

/// Checks a medium alone: `check --read-data` passes, its snapshots are what the catalog says,
/// and `latest` restores equal to a restore of the same snapshot from the primary.
fn check_medium_alone(e: &Env, m: &Medium, label: &str, src: &Path) {
    let mp = e.path(&format!("inspect-{label}"));
    let i = m.inspect(&mp);
    let repo = i.repo();
    let o = on_medium(e, &repo, &["check", "--read-data"]);
    assert!(
        o.status.success(),
        "{label}: check: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let o = on_medium(e, &repo, &["--json", "snapshots"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let snaps: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut ids: Vec<String> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, held(e, label), "{label}: medium and catalog agree");
    let newest = snaps
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|s| s["time"].as_str().unwrap().to_string())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let from_medium = e.path(&format!("restore-{label}"));
    let o = on_medium(
        e,
        &repo,
        &[
            "restore",
            &newest,
            "--target",
            from_medium.to_str().unwrap(),
        ],
    );
    assert!(
        o.status.success(),
        "{label}: restore: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let from_primary = e.path(&format!("restore-primary-{label}"));
    e.ok(&[
        "restore",
        &newest,
        "--target",
        from_primary.to_str().unwrap(),
    ]);
    let rel = src.strip_prefix("/").unwrap();
    assert_eq!(
        rsync_diff(&from_primary.join(rel), &from_medium.join(rel)),
        "",
        "{label}: restored bytes differ"
    );
    sh(&format!(
        "rm -rf {} {}",
        from_medium.display(),
        from_primary.display()
    ));
}

#[test]
fn udev_rule_passes_udevadm_test_and_tags_filesystems() {
    if !have_root("udev_rule_passes_udevadm_test_and_tags_filesystems") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let e = Env::new();
    let mut m = Medium::create(&e, "LINT", 32, "ext4");
    let dev = m.plug();
    let name = devname(&dev);
    let out = sh(&format!(
        "udevadm test --action=add /sys/class/block/{name} 2>&1"
    ));
    assert!(out.contains("70-bakfs.rules"), "rule not read:\n{out}");
    let complaints: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("70-bakfs.rules:"))
        .collect();
    assert!(complaints.is_empty(), "udevadm complains: {complaints:?}");
    let tags = out.lines().find(|l| l.starts_with("TAGS=")).unwrap_or("");
    assert!(tags.contains(":bakfs:"), "not tagged: {tags}");
    m.unplug();
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    if !have_root("systemd_unit_passes_systemd_analyze_verify") {
        return;
    }
    let e = Env::new();
    let unit = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../udev-rules/bakfs-mediad.service"),
    )
    .unwrap();
    assert!(unit.contains("\nType=notify\n") && unit.contains("\nPrivateMounts=yes\n"));
    // As installed, but with the binary where this build put it.
    let unit = unit.replace(
        "/usr/local/bin/bakfs-mediad",
        bakfs_e2e::bin("bakfs-mediad").to_str().unwrap(),
    );
    let path = e.path("bakfs-mediad.service");
    fs::write(&path, unit).unwrap();
    let out = sh(&format!(
        "systemd-analyze verify {} 2>&1; echo rc=$?",
        path.display()
    ));
    assert!(out.trim_end().ends_with("rc=0"), "{out}");
    assert!(
        !out.contains("bakfs-mediad.service:"),
        "systemd complains: {out}"
    );
}

#[test]
fn three_media_rotate_and_each_restores_alone() {
    if !have_root("three_media_rotate_and_each_restores_alone") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(src.join("keys")).unwrap();
    write_random(&src.join("chain.db"), 12 << 20, 1);
    fs::write(src.join("keys/staker.key"), "secret\n").unwrap();
    let mut off1 = Medium::create(&e, "OFF1", 96, "ext4");
    let mut off2 = Medium::create(&e, "OFF2", 300, "xfs");
    let mut on1 = Medium::create(&e, "ON1", 96, "ext4");
    enroll(
        &e,
        &mut off1,
        "OFF1",
        &[
            "--location",
            "offsite",
            "--pool",
            "offsite",
            "--keep-last",
            "2",
            "--kind",
            "usb",
        ],
    );
    enroll(
        &e,
        &mut off2,
        "OFF2",
        &["--location", "offsite", "--keep-last", "2"],
    );
    enroll(
        &e,
        &mut on1,
        "ON1",
        &["--pool", "onsite", "--keep-daily", "7"],
    );
    // What enroll recorded, from the catalog alone.
    let o = show(&e, "OFF1");
    assert_eq!(
        (&o["kind"], &o["pool"], &o["location"], &o["state"]),
        (
            &"usb".into(),
            &"offsite".into(),
            &"offsite".into(),
            &"enrolled".into()
        ),
        "{o}"
    );
    assert_eq!(o["fs_uuid"], off1.uuid().as_str());
    assert_eq!(o["fs_type"], "ext4");
    assert_eq!(o["retention"], serde_json::json!({"keep_last": 2}));
    let cap = o["capacity"].as_u64().unwrap();
    assert!(cap > 80 << 20 && cap <= 96 << 20, "capacity {cap}");
    assert!(
        o["last_written"].is_null() && o["last_verified"].is_null(),
        "{o}"
    );
    let o = show(&e, "ON1");
    assert_eq!(
        (&o["kind"], &o["pool"], &o["location"]),
        (&"disk".into(), &"onsite".into(), &"onsite".into()),
        "{o}"
    );
    assert_eq!(o["retention"], serde_json::json!({"keep_daily": 7}));
    assert_eq!(show(&e, "OFF2")["fs_type"], "xfs");
    // A device nobody enrolled: left alone.
    let mut stranger = Medium::create(&e, "STRANGER", 32, "ext4");
    let before = sh(&format!("sha256sum {}", stranger.image.display()));

    let mut d = Mediad::start(&e);
    let s1 = backup(&e, &src);
    off1.plug();
    let r = wait_run(&e, "OFF1", 0);
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(show(&e, "OFF1")["state"], "safe to remove");
    assert!(d.log_text().contains("safe to remove OFF1"));
    off1.unplug();

    write_random(&src.join("chain.db.1"), 3 << 20, 2);
    let s2 = backup(&e, &src);
    off2.plug();
    on1.plug();
    stranger.plug();
    assert_eq!(wait_run(&e, "OFF2", 0)["outcome"], "ok");
    assert_eq!(wait_run(&e, "ON1", 0)["outcome"], "ok");
    off2.unplug();
    on1.unplug();
    stranger.unplug();
    let after = sh(&format!("sha256sum {}", stranger.image.display()));
    assert_eq!(before, after, "an unenrolled device was written to");

    // A small change, then OFF1 again: it gains s2 and s3, keeps two, and writes about the new
    // data rather than the whole snapshot.
    write_random(&src.join("chain.db.2"), 1 << 20, 3);
    let s3 = backup(&e, &src);
    off1.plug();
    let r = wait_run(&e, "OFF1", 1);
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(r["snapshots_added"], 2);
    assert_eq!(r["snapshots_removed"], 1);
    let written = r["bytes_written"].as_u64().unwrap();
    assert!(
        written < 8 << 20,
        "rotation wrote {written} bytes for ~4 MiB of new data"
    );
    off1.unplug();

    let mut want = vec![s2.clone(), s3.clone()];
    want.sort();
    assert_eq!(held(&e, "OFF1"), want);
    let mut want2 = vec![s1.clone(), s2.clone()];
    want2.sort();
    assert_eq!(held(&e, "OFF2"), want2);
    // keep-daily keeps the newest snapshot of each day: s1 and s2 share one.
    assert_eq!(held(&e, "ON1"), vec![s2.clone()]);
    assert!(d.alive());
    assert!(d.leftover_mounts().is_empty(), "{:?}", d.leftover_mounts());
    assert_eq!(d.stop(), Some(0));

    check_medium_alone(&e, &off1, "OFF1", &src);
    check_medium_alone(&e, &off2, "OFF2", &src);
    check_medium_alone(&e, &on1, "ON1", &src);
    // The latest snapshot on OFF1 is the live source.
    let mp = e.path("inspect-live");
    let i = off1.inspect(&mp);
    let out = e.path("live");
    let o = on_medium(
        &e,
        &i.repo(),
        &["restore", "latest", "--target", out.to_str().unwrap()],
    );
    assert!(o.status.success());
    let restored = out.join(src.strip_prefix("/").unwrap());
    assert_eq!(rsync_diff(&src, &restored), "");
    // The ledger mirror on the medium: what the catalog says, with the run that wrote it.
    let ledger: serde_json::Value =
        serde_json::from_slice(&fs::read(i.repo().join("ledger.json")).unwrap()).unwrap();
    let o = show(&e, "OFF1");
    assert_eq!(ledger["label"], "OFF1");
    assert_eq!(ledger["medium_id"], o["id"]);
    assert_eq!(ledger["bytes"], o["bytes"]);
    let mut on_ledger: Vec<String> = ledger["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot_id"].as_str().unwrap().to_string())
        .collect();
    on_ledger.sort();
    assert_eq!(on_ledger, held(&e, "OFF1"));
    let last = &runs(&e, "OFF1")[0];
    assert_eq!(ledger["runs"][0]["id"], last["id"], "{ledger}");
    assert_eq!(ledger["runs"][0]["outcome"], "ok", "{ledger}");
    assert_eq!(ledger["runs"][0]["bytes_written"], last["bytes_written"]);
    // What show says of a written medium, without it.
    assert!(o["bytes"].as_u64().unwrap() > 12 << 20, "{o}");
    for k in ["last_seen", "last_written", "last_verified"] {
        assert!(o[k].is_string(), "{k}: {o}");
    }
    assert!(
        o["last_verified"].as_str() <= o["last_written"].as_str(),
        "{o}"
    );
    assert!(o["snapshots"][0]["time"].is_string() && o["snapshots"][0]["verified"].is_string());

    // list (text and JSON) and set-location
    let list = e.json(&["media", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 3);
    let text = e.ok(&["media", "list"]);
    let row = text.lines().find(|l| l.starts_with("OFF1 ")).unwrap_or("");
    assert!(
        row.contains("usb") && row.contains("offsite") && row.ends_with("safe to remove"),
        "{text}"
    );
    e.ok(&["media", "set-location", "ON1", "offsite"]);
    assert_eq!(show(&e, "ON1")["location"], "offsite");
}

/// A job caught in the middle of its copy: six 6 MiB files backed up, an enrolled medium
/// `label`, a daemon pausing 400 ms after each file, the medium plugged in, the state
/// `copying`, and `settle_ms` more; with `packs` > 0, until that many packs are on the medium
/// (written, not yet read back). Fields drop in order: daemon, medium, then the scratch dir.
struct MidCopy {
    d: Mediad,
    m: Medium,
    dev: String,
    id: String,
    src: PathBuf,
    e: Env,
}

fn mid_copy(
    label: &str,
    mib: u64,
    fs_type: &str,
    seed: u64,
    settle_ms: u64,
    packs: usize,
) -> MidCopy {
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..6 {
        write_random(&src.join(format!("f{i}")), 6 << 20, seed + i);
    }
    let mut m = Medium::create(&e, label, mib, fs_type);
    enroll(&e, &mut m, label, &[]);
    let id = backup(&e, &src);
    let d = Mediad::start_paced(&e, Some(400));
    let dev = m.plug();
    wait_until("the copy to start", Duration::from_secs(30), || {
        show(&e, label)["state"] == "copying"
    });
    std::thread::sleep(Duration::from_millis(settle_ms));
    let data = d.media_root.join(m.uuid()).join("bakfs/data");
    wait_until("packs on the medium", Duration::from_secs(30), || {
        let n = sh(&format!(
            "find {} -type f ! -name '.tmp-*' 2>/dev/null | wc -l",
            data.display()
        ));
        n.trim().parse::<usize>().unwrap_or(0) >= packs
    });
    assert_eq!(
        show(&e, label)["state"],
        "copying",
        "the copy ended too soon"
    );
    // Mounted where docs/mediad.md says, with what it says.
    let mp = d.media_root.join(m.uuid());
    let line = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == mp.to_str())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{} is not mounted", mp.display()));
    let opts = line.split(' ').nth(5).unwrap_or("");
    for o in ["nosuid", "nodev", "noexec", "noatime"] {
        assert!(opts.split(',').any(|x| x == o), "{o} missing: {line}");
    }
    MidCopy {
        d,
        m,
        dev,
        id,
        src,
        e,
    }
}

/// Asserts that run `r`, which completed an interrupted copy, wrote fewer files than the
/// medium's repository holds: what was written before was read back, not written again.
fn assert_resumed(e: &Env, m: &Medium, r: &serde_json::Value) {
    let i = m.inspect(&e.path("count"));
    let files = sh(&format!(
        "find {} -type f ! -name medium.json ! -name ledger.json ! -name RUNBOOK.md | wc -l",
        i.repo().display()
    ));
    let files: u64 = files.trim().parse().unwrap();
    let written = r["files_written"].as_u64().unwrap();
    assert!(
        written < files,
        "the run after the interruption wrote {written} of {files} files: nothing was resumed"
    );
}

impl MidCopy {
    /// After a failed run: the daemon lives on and unmounts; unplugged and plugged in again,
    /// the medium gets the whole snapshot and checks clean on its own. With `resumes`, files
    /// written before the interruption are read back, not written again.
    fn next_insertion_completes(mut self, label: &str, resumes: bool) {
        let e = &self.e;
        assert!(
            held(e, label).is_empty(),
            "an unverified snapshot is listed"
        );
        assert!(self.d.alive());
        wait_until(
            "the medium to be unmounted",
            Duration::from_secs(20),
            || self.d.leftover_mounts().is_empty(),
        );
        self.m.unplug();
        std::thread::sleep(Duration::from_millis(500));
        self.m.plug();
        let r = wait_run(e, label, 1);
        assert_eq!(r["outcome"], "ok", "{r}");
        assert_eq!(held(e, label), vec![self.id.clone()]);
        self.m.unplug();
        drop(self.d);
        if resumes {
            assert_resumed(e, &self.m, &r);
        }
        check_medium_alone(e, &self.m, label, &self.src);
    }
}

#[test]
fn medium_pulled_mid_copy_then_next_insertion_completes() {
    if !have_root("medium_pulled_mid_copy_then_next_insertion_completes") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let mc = mid_copy("PULL", 128, "ext4", 10, 0, 1);
    // The stick goes away: udev says remove.
    let name = devname(&mc.dev);
    sh(&format!(
        "udevadm trigger --action=remove /sys/class/block/{name}"
    ));
    let r = wait_run(&mc.e, "PULL", 0);
    assert_eq!(r["outcome"], "cancelled", "{r}");
    assert_eq!(show(&mc.e, "PULL")["state"], "removed during copy");
    // Plugged in again: the copy completes (what was written before is not copied again).
    mc.next_insertion_completes("PULL", true);
}

#[test]
fn medium_not_ready_mid_copy_then_next_insertion_completes() {
    if !have_root("medium_not_ready_mid_copy_then_next_insertion_completes") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let mc = mid_copy("NOTREADY", 128, "ext4", 15, 0, 1);
    let name = devname(&mc.dev);
    // A real `change` event from udevd, carrying SYSTEMD_READY=0 (and still ID_FS_UUID).
    {
        let _rule = UdevEnv::set(&name, "SYSTEMD_READY", "0");
        let props = sh(&format!(
            "udevadm trigger --action=change --settle /sys/class/block/{name} && udevadm info -q property /sys/class/block/{name}"
        ));
        assert!(
            props.contains("SYSTEMD_READY=0") && props.contains("ID_FS_UUID="),
            "{props}"
        );
        let r = wait_run(&mc.e, "NOTREADY", 0);
        assert_eq!(r["outcome"], "cancelled", "{r}");
        assert_eq!(show(&mc.e, "NOTREADY")["state"], "removed during copy");
    }
    mc.next_insertion_completes("NOTREADY", true);
}

#[test]
fn device_failing_mid_write_loses_nothing() {
    if !have_root("device_failing_mid_write_loses_nothing") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let mc = mid_copy("FAIL", 300, "xfs", 20, 600, 0);
    // The device fails: every further write gets EIO.
    let mp = mc.d.media_root.join(mc.m.uuid());
    sh(&format!("xfs_io -x -c 'shutdown -f' {}", mp.display()));
    let r = wait_run(&mc.e, "FAIL", 0);
    assert_eq!(r["outcome"], "failed", "{r}");
    mc.next_insertion_completes("FAIL", false);
}

#[test]
fn full_medium_makes_room_by_retention_or_reports_full() {
    if !have_root("full_medium_makes_room_by_retention_or_reports_full") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    let mut m = Medium::create(&e, "SMALL", 48, "ext4");
    enroll(&e, &mut m, "SMALL", &["--keep-last", "1"]);
    let _d = Mediad::start(&e);
    write_random(&src.join("a"), 14 << 20, 30);
    let _a = backup(&e, &src);
    m.plug();
    assert_eq!(wait_run(&e, "SMALL", 0)["outcome"], "ok");
    m.unplug();
    // New data, twice the old (the filesystem holds 40 MiB): both do not fit, so retention
    // removes the old one first. That frees less than the new one needs in all, but more than
    // what is left to write when the medium fills up.
    write_random(&src.join("a"), 30 << 20, 31);
    let b = backup(&e, &src);
    std::thread::sleep(Duration::from_millis(300));
    m.plug();
    let r = wait_run(&e, "SMALL", 1);
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(held(&e, "SMALL"), vec![b.clone()]);
    m.unplug();
    // Far too big: reported as full, nothing removed, the medium still checks clean.
    write_random(&src.join("a"), 70 << 20, 32);
    backup(&e, &src);
    std::thread::sleep(Duration::from_millis(300));
    m.plug();
    let r = wait_run(&e, "SMALL", 2);
    assert_eq!(r["outcome"], "medium full", "{r}");
    assert_eq!(show(&e, "SMALL")["state"], "medium full");
    assert_eq!(held(&e, "SMALL"), vec![b]);
    m.unplug();
    drop(_d);
    check_medium_alone(&e, &m, "SMALL", &src);
}

#[test]
fn hostile_medium_is_not_trusted() {
    if !have_root("hostile_medium_is_not_trusted") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("a"), 2 << 20, 40);
    let id = backup(&e, &src);
    let outside = e.path("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), "do not touch\n").unwrap();
    let mut m = Medium::create(&e, "EVIL", 64, "ext4");
    enroll(&e, &mut m, "EVIL", &[]);
    // Plant: a pack-named symlink to a file outside, the name of a real pack of the snapshot
    // as a symlink too, a huge sparse "pack", a crafted ledger.
    let packs = bakfs_e2e::packs(&e.repo);
    let real = packs[0].file_name().unwrap().to_str().unwrap().to_string();
    {
        let t = m.tamper(&e.path("tamper"));
        let r = t.repo();
        fs::create_dir_all(r.join(format!("data/{}", &real[..2]))).unwrap();
        std::os::unix::fs::symlink(
            outside.join("secret"),
            r.join(format!("data/{}/{real}", &real[..2])),
        )
        .unwrap();
        let fake = "ab".repeat(32);
        fs::create_dir_all(r.join("data/ab")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", r.join(format!("data/ab/{fake}"))).unwrap();
        let huge = "cd".repeat(32);
        fs::create_dir_all(r.join("data/cd")).unwrap();
        let f = fs::File::create(r.join(format!("data/cd/{huge}"))).unwrap();
        f.set_len(1 << 40).unwrap();
        fs::write(
            r.join("ledger.json"),
            "{\"snapshots\": [\"../../etc\"], \"trust\": \"me\"}",
        )
        .unwrap(); // The runbook bakfs writes there, a link out of the medium: replaced, never followed.
        std::os::unix::fs::symlink(outside.join("secret"), r.join("RUNBOOK.md")).unwrap();
    }
    let d = Mediad::start(&e);
    m.plug();
    let r = wait_run(&e, "EVIL", 0);
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(held(&e, "EVIL"), vec![id]);
    assert_eq!(
        fs::read_to_string(outside.join("secret")).unwrap(),
        "do not touch\n"
    );
    assert!(
        d.log_text().contains("not bakfs files"),
        "planted entries not reported"
    );
    m.unplug();
    drop(d);
    check_medium_alone(&e, &m, "EVIL", &src);
    // Now the snapshots directory itself is a symlink out of the medium: refused.
    {
        let t = m.tamper(&e.path("tamper"));
        let r = t.repo();
        fs::rename(r.join("snapshots"), r.join("old-snapshots")).unwrap();
        std::os::unix::fs::symlink(&outside, r.join("snapshots")).unwrap();
    }
    write_random(&src.join("b"), 1 << 20, 41);
    backup(&e, &src);
    let d = Mediad::start(&e);
    m.plug();
    let r = wait_run(&e, "EVIL", 1);
    assert_eq!(r["outcome"], "refused", "{r}");
    assert!(r["message"].as_str().unwrap().contains("symlink"), "{r}");
    m.unplug();
    let names: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .flatten()
        .map(|x| x.file_name())
        .collect();
    assert_eq!(
        names.len(),
        1,
        "something was written outside the medium: {names:?}"
    );
    // The medium's bakfs directory itself a symlink (here to a copy of it elsewhere, with a
    // valid identity): refused, nothing written there. (No daemon while the image is mounted
    // by hand: a loop mount is announced like an insertion.)
    drop(d);
    let elsewhere = e.path("elsewhere");
    {
        let t = m.tamper(&e.path("tamper"));
        let r = t.repo();
        fs::remove_file(r.join("snapshots")).unwrap();
        fs::rename(r.join("old-snapshots"), r.join("snapshots")).unwrap();
        sh(&format!("cp -a {} {}", r.display(), elsewhere.display()));
        fs::rename(&r, t.repo().with_file_name("bakfs.real")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &r).unwrap();
    }
    let before = sh(&format!(
        "find {} -type f | sort | xargs sha256sum",
        elsewhere.display()
    ));
    let d = Mediad::start(&e);
    m.plug();
    let r = wait_run(&e, "EVIL", 2);
    assert_eq!(r["outcome"], "refused", "{r}");
    assert!(r["message"].as_str().unwrap().contains("symlink"), "{r}");
    m.unplug();
    let after = sh(&format!(
        "find {} -type f | sort | xargs sha256sum",
        elsewhere.display()
    ));
    assert_eq!(before, after, "written through a symlinked bakfs directory");
    drop(d);
}

/// Starts udevd's event queue again when dropped (a failed test must not leave it stopped).
struct HeldQueue;

impl HeldQueue {
    fn hold() -> Self {
        sh("udevadm control --stop-exec-queue");
        HeldQueue
    }
}

impl Drop for HeldQueue {
    fn drop(&mut self) {
        let _ = std::process::Command::new("udevadm")
            .args(["control", "--start-exec-queue"])
            .status();
        settle();
    }
}

/// A medium pulled out after udev recorded it but before mediad mounted it (here: udevd holds
/// the removal's event while mediad starts) is not a failed copy, and the next insertion copies.
#[test]
fn medium_gone_before_its_mount_is_not_a_failure() {
    if !have_root("medium_gone_before_its_mount_is_not_a_failure") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("a"), 1 << 20, 50);
    let id = backup(&e, &src);
    let mut m = Medium::create(&e, "BRIEF", 32, "ext4");
    enroll(&e, &mut m, "BRIEF", &[]);
    let dev = m.plug();
    settle();
    {
        let _q = HeldQueue::hold();
        // Detached, but udev's database still says the loop holds BRIEF's filesystem.
        sh(&format!("losetup -d {dev}"));
        m.dev = None;
        let d = Mediad::start(&e);
        let r = wait_run(&e, "BRIEF", 0);
        assert_eq!(r["outcome"], "cancelled", "{r}");
        assert_ne!(show(&e, "BRIEF")["state"], "failed");
        assert!(
            d.log_text()
                .contains("went away before it could be mounted"),
            "{}",
            d.log_text()
        );
        assert!(held(&e, "BRIEF").is_empty());
        drop(d);
    }
    let d = Mediad::start(&e);
    m.plug();
    let r = wait_run(&e, "BRIEF", 1);
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(held(&e, "BRIEF"), vec![id]);
    m.unplug();
    drop(d);
    check_medium_alone(&e, &m, "BRIEF", &src);
}

#[test]
fn clones_and_impostors_are_refused() {
    if !have_root("clones_and_impostors_are_refused") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), "a\n").unwrap();
    backup(&e, &src);
    let mut m = Medium::create(&e, "REAL", 32, "ext4");
    enroll(&e, &mut m, "REAL", &[]);
    let uuid = m.uuid();
    // Same UUID, no bakfs identity (a filesystem made with -U, or a wiped stick).
    let impostor_img = e.path("impostor.img");
    fs::File::create(&impostor_img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    sh(&format!(
        "mkfs.ext4 -q -U {uuid} {}",
        impostor_img.display()
    ));
    let mut impostor = Medium {
        image: impostor_img,
        dev: None,
    };
    let d = Mediad::start(&e);
    impostor.plug();
    let r = wait_run(&e, "REAL", 0);
    assert_eq!(r["outcome"], "refused", "{r}");
    assert_eq!(show(&e, "REAL")["state"], "refused");
    assert!(r["message"].as_str().unwrap().contains("identity"), "{r}");
    impostor.unplug();
    // Looked at with debugfs on the image: a loop mount would be announced to mediad again.
    let root = sh(&format!(
        "debugfs -R 'ls -l /' {} 2>/dev/null",
        impostor.image.display()
    ));
    assert!(
        !root.contains("bakfs"),
        "the impostor was written to: {root}"
    );
    // A byte-for-byte clone plugged in beside the real one: the second is refused.
    let clone_img = e.path("clone.img");
    fs::copy(&m.image, &clone_img).unwrap();
    let mut clone = Medium {
        image: clone_img,
        dev: None,
    };
    m.plug();
    let r = wait_run(&e, "REAL", 1);
    assert_eq!(r["outcome"], "ok", "{r}");
    let runs_before = run_count(&e, "REAL");
    clone.plug();
    wait_until("the clone to be refused", Duration::from_secs(20), || {
        d.log_text().contains("both claim medium REAL")
    });
    assert_eq!(run_count(&e, "REAL"), runs_before, "a job ran on the clone");
    clone.unplug();
    m.unplug();
    drop(d);
    // A new filesystem labelled REAL (fs label) but with its own UUID: left alone, with a word.
    let namesake_img = e.path("namesake.img");
    fs::File::create(&namesake_img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    sh(&format!("mkfs.ext4 -q -L REAL {}", namesake_img.display()));
    let mut namesake = Medium {
        image: namesake_img,
        dev: None,
    };
    let d = Mediad::start(&e);
    namesake.plug();
    wait_until(
        "the namesake to be noticed",
        Duration::from_secs(20),
        || d.log_text().contains("like enrolled medium REAL"),
    );
    namesake.unplug();
    drop(d);
    // The same catalog, but a daemon serving another repository: REAL is not its medium.
    let mut other = Env::new();
    other.state = e.state.clone();
    other.ok(&["init"]);
    let d = Mediad::start(&other);
    m.plug();
    wait_until(
        "the foreign medium to be refused",
        Duration::from_secs(20),
        || d.log_text().contains("belongs to repository"),
    );
    assert_eq!(
        run_count(&e, "REAL"),
        runs_before,
        "a job ran for another repository"
    );
    m.unplug();
    drop(d);
}

/// A medium enrolled with a udev serial: a byte clone of its filesystem on a device with
/// another serial is refused even when it is plugged in alone.
#[test]
fn a_clone_with_another_serial_is_refused() {
    if !have_root("a_clone_with_another_serial_is_refused") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), "a\n").unwrap();
    backup(&e, &src);
    let mut m = Medium::create(&e, "SER", 32, "ext4");
    let dev = m.plug();
    {
        let _serial = UdevEnv::set(&devname(&dev), "ID_SERIAL_SHORT", "GOOD0001");
        sh(&format!("udevadm trigger --action=change --settle {dev}"));
        e.ok(&["media", "enroll", &dev, "--label", "SER"]);
    }
    m.unplug();
    assert_eq!(show(&e, "SER")["serial"], "GOOD0001");
    let clone_img = e.path("clone.img");
    fs::copy(&m.image, &clone_img).unwrap();
    let mut clone = Medium {
        image: clone_img,
        dev: None,
    };
    // Plugged in (alone) with another serial; the daemon starts and finds it present.
    let cdev = clone.plug();
    let _serial = UdevEnv::set(&devname(&cdev), "ID_SERIAL_SHORT", "EVIL0002");
    sh(&format!("udevadm trigger --action=change --settle {cdev}"));
    let d = Mediad::start(&e);
    wait_until("the clone to be refused", Duration::from_secs(20), || {
        d.log_text()
            .contains("serial EVIL0002 (enrolled: GOOD0001)")
    });
    assert_eq!(run_count(&e, "SER"), 0, "a job ran on the clone");
    assert_eq!(show(&e, "SER")["state"], "refused");
    clone.unplug();
    drop(d);
}

#[test]
fn sigkill_mid_copy_then_restart_finishes() {
    if !have_root("sigkill_mid_copy_then_restart_finishes") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let mut mc = mid_copy("KILL", 128, "ext4", 50, 0, 1);
    let e = &mc.e;
    mc.d.kill_and_restart(e);
    // The restarted daemon sees the medium present, closes the killed run, finishes the copy.
    let r = wait_run(e, "KILL", 1);
    assert_eq!(r["outcome"], "ok", "{r}");
    let all = runs(e, "KILL");
    assert!(all.iter().any(|x| x["outcome"] == "interrupted"), "{all:?}");
    assert_eq!(held(e, "KILL"), vec![mc.id.clone()]);
    assert!(mc.d.leftover_mounts().is_empty());
    mc.m.unplug();
    drop(mc.d);
    assert_resumed(e, &mc.m, &r);
    check_medium_alone(e, &mc.m, "KILL", &mc.src);
}

#[test]
fn fifty_quick_insert_remove_cycles() {
    if !have_root("fifty_quick_insert_remove_cycles") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("a"), 4 << 20, 60);
    let id = backup(&e, &src);
    let mut m = Medium::create(&e, "FLAKY", 64, "ext4");
    enroll(&e, &mut m, "FLAKY", &[]);
    let mut d = Mediad::start(&e);
    for _ in 0..50 {
        m.plug();
        std::thread::sleep(Duration::from_millis(30));
        m.unplug();
        std::thread::sleep(Duration::from_millis(30));
    }
    sh("udevadm settle -t 30");
    wait_until("the daemon to go idle", Duration::from_secs(60), || {
        show(&e, "FLAKY")["state"] != "copying" && d.leftover_mounts().is_empty()
    });
    // One job per insertion mediad saw (an insertion undone before udev probed it is not
    // seen), none failed, none left running.
    let n = run_count(&e, "FLAKY");
    let seen = d.log_text().matches("is medium FLAKY").count();
    assert!((1..=50).contains(&n), "{n} jobs for 50 insertions");
    assert_eq!(n, seen, "{n} jobs for {seen} insertions seen");
    let errors: Vec<String> = d
        .log_text()
        .lines()
        .filter(|l| l.contains("ERROR"))
        .map(str::to_string)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_ne!(runs(&e, "FLAKY")[0]["outcome"], "running");
    assert!(d.alive());
    assert!(d.leftover_mounts().is_empty());
    let leftover_loops = sh(&format!("losetup -j {} -n", m.image.display()));
    assert_eq!(leftover_loops.trim(), "", "loop devices leaked");
    // One calm insertion finishes whatever the quick ones left.
    let before = run_count(&e, "FLAKY");
    m.plug();
    let r = wait_run(&e, "FLAKY", before);
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(held(&e, "FLAKY"), vec![id]);
    m.unplug();
    drop(d);
    check_medium_alone(&e, &m, "FLAKY", &src);
}

#[test]
fn zram_present_at_start_and_real_remove_events() {
    if !have_root("zram_present_at_start_and_real_remove_events") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("a"), 3 << 20, 70);
    let id = backup(&e, &src);
    let mut z = Zram::create(64, "ZRAM1", None);
    e.ok(&["media", "enroll", &z.dev(), "--label", "ZRAM1"]);
    let uuid = sh(&format!("blkid -p -s UUID -o value {}", z.dev()))
        .trim()
        .to_string();
    // Already plugged in when the daemon starts: handled at start.
    let d = Mediad::start(&e);
    let r = wait_run(&e, "ZRAM1", 0);
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(held(&e, "ZRAM1"), vec![id]);
    wait_until(
        "the medium to be unmounted",
        Duration::from_secs(20),
        || d.leftover_mounts().is_empty(),
    );
    // A real remove event, then a new device with the same UUID but none of the medium's
    // content: a new insertion, refused for its missing identity.
    z.remove();
    let mut z2 = Zram::create(64, "ZRAM1", Some(&uuid));
    let r = wait_run(&e, "ZRAM1", 1);
    assert_eq!(r["outcome"], "refused", "{r}");
    assert!(r["message"].as_str().unwrap().contains("identity"), "{r}");
    assert!(d.leftover_mounts().is_empty());
    drop(d);
    z2.remove();
}

#[test]
fn enroll_refuses_what_it_cannot_safely_take() {
    if !have_root("enroll_refuses_what_it_cannot_safely_take") {
        return;
    }
    let _s = serial();
    let e = Env::init();
    let mut a = Medium::create(&e, "A", 32, "ext4");
    let mut b = Medium::create(&e, "B", 32, "ext4");
    let not_dev = e.path("plain-file");
    fs::write(&not_dev, "x").unwrap();
    let err = e.fails(
        &["media", "enroll", not_dev.to_str().unwrap(), "--label", "X"],
        1,
    );
    assert!(err.contains("not a block device"), "{err}");
    let da = a.plug();
    e.ok(&["media", "enroll", &da, "--label", "A"]);
    // The same filesystem again, under another label: already enrolled.
    let err = e.fails(&["media", "enroll", &da, "--label", "A2"], 1);
    assert!(err.contains("already enrolled as A"), "{err}");
    // Another filesystem under a label in use.
    let db = b.plug();
    let err = e.fails(&["media", "enroll", &db, "--label", "A"], 1);
    assert!(err.contains("label A is taken"), "{err}");
    // A filesystem that carries another catalog's bakfs directory.
    e.ok(&["media", "forget", "A"]);
    let err = e.fails(&["media", "enroll", &da, "--label", "A"], 1);
    assert!(err.contains("already enrolled as A"), "{err}");
    // No filesystem at all.
    let raw = e.path("raw.img");
    fs::File::create(&raw).unwrap().set_len(8 << 20).unwrap();
    let dr = sh(&format!("losetup -f --show {}", raw.display()))
        .trim()
        .to_string();
    let err = e.fails(&["media", "enroll", &dr, "--label", "R"], 1);
    sh(&format!("losetup -d {dr}"));
    assert!(err.contains("no filesystem"), "{err}");
    let err = e.fails(&["media", "show", "NOPE"], 1);
    assert!(err.contains("no medium labelled"), "{err}");
    a.unplug();
    b.unplug();
    assert!(e.json(&["media", "list"]).as_array().unwrap().is_empty());
}

/// A snapshot whose pack is damaged in the primary is not copied, and does not count for the
/// medium's retention: the older snapshot it was to replace stays (keep-last 1).
#[test]
fn damaged_primary_pack_is_not_copied() {
    if !have_root("damaged_primary_pack_is_not_copied") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("a"), 2 << 20, 80);
    let s1 = backup(&e, &src);
    let mut m = Medium::create(&e, "DMG", 32, "ext4");
    enroll(&e, &mut m, "DMG", &["--keep-last", "1"]);
    let d = Mediad::start(&e);
    m.plug();
    assert_eq!(wait_run(&e, "DMG", 0)["outcome"], "ok");
    m.unplug();
    // A new snapshot; flip a byte in the middle of the biggest pack it added.
    let old = bakfs_e2e::packs(&e.repo);
    write_random(&src.join("b"), 2 << 20, 81);
    let s2 = backup(&e, &src);
    let name = largest(
        bakfs_e2e::packs(&e.repo)
            .into_iter()
            .filter(|p| !old.contains(p)),
    );
    let victim = pack_path(&e.repo, &name);
    let mut bytes = fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&victim, bytes).unwrap();
    m.plug();
    let r = wait_run(&e, "DMG", 1);
    assert_eq!(r["outcome"], "incomplete", "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains(&s2[..8]) && msg.contains("primary repository damaged"),
        "{r}"
    );
    assert_eq!(r["snapshots_removed"], 0, "{r}");
    assert_eq!(
        held(&e, "DMG"),
        vec![s1],
        "the older snapshot was removed for one that could not be copied"
    );
    assert!(
        d.log_text().contains("primary repository damaged"),
        "{}",
        d.log_text()
    );
    m.unplug();
    drop(d);
    {
        let i = m.inspect(&e.path("look"));
        assert!(
            !pack_path(&i.repo(), &name).exists(),
            "the damaged pack was left on the medium"
        );
    }
    // What the medium holds restores; the snapshot 'latest' of the medium is s1, not the source.
    let mp = e.path("inspect-dmg");
    let i = m.inspect(&mp);
    let o = on_medium(&e, &i.repo(), &["check", "--read-data"]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_pack_lost_from_a_medium_is_copied_again() {
    if !have_root("a_pack_lost_from_a_medium_is_copied_again") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let (e, src, id, mut m) = copied_once("LOSS", 90);
    // Someone deletes a pack on the medium behind bakfs's back.
    let name = largest(bakfs_e2e::packs(&e.repo));
    {
        let t = m.tamper(&e.path("tamper"));
        fs::remove_file(pack_path(&t.repo(), &name)).unwrap();
    }
    // The next insertion notices, drops the snapshot from the ledger and copies the pack back.
    let d = Mediad::start(&e);
    m.plug();
    let r = wait_run(&e, "LOSS", 1);
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(r["snapshots_added"], 1, "{r}");
    assert!(r["files_written"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(held(&e, "LOSS"), vec![id]);
    m.unplug();
    drop(d);
    check_medium_alone(&e, &m, "LOSS", &src);
}

/// A pack that rots on a medium (same size, one byte changed) is found when the medium's files
/// are due for a second read (`[mediad] reverify_after` in the file given with `--config`), is
/// forgotten, and is copied again; "last verified" moves only when every file was read again.
#[test]
fn a_rotten_pack_on_a_medium_is_found_and_copied_again() {
    if !have_root("a_rotten_pack_on_a_medium_is_found_and_copied_again") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let (e, src, id, mut m) = copied_once("ROT", 95);
    let first = show(&e, "ROT");
    assert!(first["last_verified"].is_string(), "{first}");
    // Within reverify_after (30 days by default) the files are not read again.
    let d = Mediad::start(&e);
    m.plug();
    let r = wait_run(&e, "ROT", 1);
    assert_eq!(r["outcome"], "ok", "{r}");
    // Only the small config file is copied and checked at every insertion.
    assert!(
        r["bytes_verified"].as_u64().unwrap() < 64 << 10,
        "read again too early: {r}"
    );
    m.unplug();
    drop(d);
    let name = largest(bakfs_e2e::packs(&e.repo));
    {
        let t = m.tamper(&e.path("tamper"));
        let p = pack_path(&t.repo(), &name);
        let mut b = fs::read(&p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x01;
        fs::write(&p, b).unwrap();
    }
    let config = e.path("mediad.toml");
    fs::write(&config, "[mediad]\nreverify_after = \"0d\"\n").unwrap();
    let d = Mediad::start_with(&e, None, &["--config", config.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(1100));
    m.plug();
    let r = wait_run(&e, "ROT", 2);
    assert_eq!(r["outcome"], "ok", "{r}");
    assert!(r["files_written"].as_u64().unwrap() >= 2, "{r}");
    let total = show(&e, "ROT")["bytes"].as_u64().unwrap();
    assert!(r["bytes_verified"].as_u64().unwrap() >= total, "{r}");
    assert!(
        d.log_text().contains(&format!(
            "pack {name} on the medium no longer reads back right"
        )),
        "{}",
        d.log_text()
    );
    assert_eq!(held(&e, "ROT"), vec![id]);
    let now = show(&e, "ROT");
    assert!(
        now["last_verified"].as_str() > first["last_verified"].as_str(),
        "{first} {now}"
    );
    m.unplug();
    drop(d);
    check_medium_alone(&e, &m, "ROT", &src);
}

/// A pinned job (`pin = true` in the configuration the daemon reads): its snapshot's files are
/// read back at every insertion though `reverify_after` (30 days) is far off, and a pack of it
/// rotten on the medium is found at the next insertion and copied again.
#[test]
fn a_pinned_snapshot_is_read_back_at_every_insertion() {
    if !have_root("a_pinned_snapshot_is_read_back_at_every_insertion") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let e = Env::init();
    let keys = e.path("keys");
    fs::create_dir_all(&keys).unwrap();
    write_random(&keys.join("staker.key"), 2 << 20, 97);
    let config = e.path("bakfs.toml");
    fs::write(
        &config,
        format!(
            "[jobs.keys]\npaths = [{:?}]\npin = true\n\n[policy]\ncopies = 1\nkinds = 1\n\
             offsite = 0\noffline = 0\ndrill_within = \"off\"\n",
            keys.display().to_string()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let id = e.json(&["--config", cfg, "backup", "--job", "keys"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut m = Medium::create(&e, "PIN", 64, "ext4");
    enroll(&e, &mut m, "PIN", &["--keep-last", "1"]);
    let d = Mediad::start_with(&e, None, &["--config", cfg]);
    m.plug();
    assert_eq!(wait_run(&e, "PIN", 0)["outcome"], "ok");
    m.unplug();
    m.plug();
    let r = wait_run(&e, "PIN", 1);
    assert_eq!(r["outcome"], "ok", "{r}");
    assert!(
        r["bytes_verified"].as_u64().unwrap() >= 2 << 20,
        "the pinned snapshot was not read back: {r}"
    );
    assert!(
        d.log_text().contains("of the pinned set"),
        "{}",
        d.log_text()
    );
    m.unplug();
    drop(d);
    let name = largest(bakfs_e2e::packs(&e.repo));
    {
        let t = m.tamper(&e.path("tamper"));
        let p = pack_path(&t.repo(), &name);
        let mut b = fs::read(&p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x01;
        fs::write(&p, b).unwrap();
    }
    let d = Mediad::start_with(&e, None, &["--config", cfg]);
    m.plug();
    let r = wait_run(&e, "PIN", 2);
    assert_eq!(r["outcome"], "ok", "{r}");
    assert!(r["files_written"].as_u64().unwrap() >= 2, "{r}");
    assert!(
        d.log_text().contains(&format!(
            "pack {name} of the pinned set no longer reads back right on PIN"
        )),
        "{}",
        d.log_text()
    );
    assert_eq!(held(&e, "PIN"), vec![id]);
    m.unplug();
    drop(d);
    let o = e.run(&["--config", cfg, "--json", "status"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["jobs"][0]["pinned_missing"], serde_json::json!([]), "{v}");
    assert_eq!(o.status.code(), Some(0), "{v}");
    check_medium_alone(&e, &m, "PIN", &keys);
}

/// bakfs-mediad started as systemd starts a service: with a notify socket, and `READY=1`
/// received. Killed if the test fails before it stops.
struct Notified {
    child: std::process::Child,
    sock: std::os::unix::net::UnixDatagram,
}

impl Drop for Notified {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Notified {
    fn start(e: &Env, stderr: std::process::Stdio, env: &[(&str, String)]) -> Notified {
        let sock_path = e.path("notify");
        let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let child = std::process::Command::new(bakfs_e2e::bin("bakfs-mediad"))
            .arg("--media-root")
            .arg(e.path("media"))
            .env("BAKFS_REPO", &e.repo)
            .env("BAKFS_STATE_DIR", &e.state)
            .env("XDG_CONFIG_HOME", e.path("no-config"))
            .env("NOTIFY_SOCKET", &sock_path)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stderr(stderr)
            .spawn()
            .unwrap();
        let n = Notified { child, sock };
        assert_eq!(n.next(), "READY=1");
        n
    }

    /// The next notification.
    fn next(&self) -> String {
        let mut buf = [0u8; 64];
        let n = self
            .sock
            .recv(&mut buf)
            .expect("no notification from bakfs-mediad");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Asks it to stop (SIGTERM) and returns its exit code.
    fn stop(&mut self) -> Option<i32> {
        sh(&format!("kill -TERM {}", self.child.id()));
        self.child.wait().unwrap().code()
    }
}

#[test]
fn tells_systemd_when_ready_and_when_stopping() {
    if !have_root("tells_systemd_when_ready_and_when_stopping") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let e = Env::init();
    let mut d = Notified::start(&e, std::process::Stdio::null(), &[]);
    sh(&format!("kill -TERM {}", d.child.id()));
    assert_eq!(d.next(), "STOPPING=1");
    assert_eq!(d.child.wait().unwrap().code(), Some(0));
}

#[test]
fn logs_reach_the_journal_with_their_fields() {
    if !have_root("logs_reach_the_journal_with_their_fields") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let journal = Journald::start();
    let e = Env::init();
    // As systemd starts a service whose output goes to the journal: JOURNAL_STREAM names the
    // stderr it was given.
    let stderr_path = e.path("stderr");
    let stderr = fs::File::create(&stderr_path).unwrap();
    let meta = std::os::unix::fs::MetadataExt::ino(&stderr.metadata().unwrap());
    let dev = std::os::unix::fs::MetadataExt::dev(&stderr.metadata().unwrap());
    let mut d = Notified::start(
        &e,
        stderr.into(),
        &[("JOURNAL_STREAM", format!("{dev}:{meta}"))],
    );
    let pid = d.child.id();
    let mut listening = None;
    wait_until(
        "the journal to hold the start",
        Duration::from_secs(30),
        || {
            listening = journal.entries_of(pid).into_iter().find(|j| {
                j["MESSAGE"]
                    .as_str()
                    .is_some_and(|m| m.contains("listening for media"))
            });
            listening.is_some()
        },
    );
    let j = listening.unwrap();
    assert_eq!(j["SYSLOG_IDENTIFIER"], "bakfs-mediad", "{j}");
    assert_eq!(j["REPOSITORY"], e.repo.display().to_string(), "{j}");
    assert_eq!(j["PRIORITY"], "5", "info is notice: {j}");
    assert_eq!(d.stop(), Some(0));
    let on_stderr = fs::read_to_string(&stderr_path).unwrap();
    assert!(
        !on_stderr.contains("listening for media"),
        "logged twice: {on_stderr}"
    );
}

/// `bakfs status` with a real daemon: the medium is online while plugged in (so it is no
/// offline copy, and its free space is known), offline once pulled out, and still offline for a
/// daemon started while it is away.
#[test]
fn status_sees_a_medium_online_while_plugged_and_offline_once_pulled() {
    if !have_root("status_sees_a_medium_online_while_plugged_and_offline_once_pulled") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("a"), 1 << 20, 80);
    let config = e.path("bakfs.toml");
    fs::write(
        &config,
        format!(
            "[jobs.etc]\npaths = [{:?}]\nrpo = \"1d\"\n\n[policy]\ncopies = 2\nkinds = 1\n\
             offsite = 1\noffline = 1\ndrill_within = \"off\"\n",
            src.display().to_string()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    e.ok(&["--config", cfg, "backup", "--job", "etc"]);
    let mut m = Medium::create(&e, "PULLME", 64, "ext4");
    enroll(&e, &mut m, "PULLME", &["--location", "offsite"]);
    let status = || {
        let o = e.run(&["--config", cfg, "--json", "status"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (o.status.code().unwrap(), v)
    };
    let offline = |v: &serde_json::Value| {
        v["jobs"][0]["digits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == "offline")
            .unwrap()
            .clone()
    };
    let mut d = Mediad::start(&e);
    m.plug();
    assert_eq!(wait_run(&e, "PULLME", 0)["outcome"], "ok");
    // Copied and still plugged in: online, so not the offline copy the policy wants.
    let (code, v) = status();
    let pm = &v["media"][0];
    assert_eq!(pm["presence"], "plugged in", "{v}");
    assert!(pm["free_bytes"].as_u64().unwrap() > 32 << 20, "{pm}");
    assert_eq!(pm["snapshots"], 1);
    let o = offline(&v);
    assert_eq!((code, &o["have"]), (22, &0.into()), "{v}");
    assert_eq!(
        o["reason"],
        "no offline copy (1 wanted): PULLME holds it but is plugged in"
    );
    m.unplug();
    wait_until(
        "the medium to be seen going",
        Duration::from_secs(20),
        || status().1["media"][0]["presence"] == "removed",
    );
    let (code, v) = status();
    assert_eq!(code, 0, "{v}");
    assert_eq!(offline(&v)["have"], 1);
    assert_eq!(v["jobs"][0]["copies"][1]["offline"], true);
    // A daemon started while it is away leaves it offline; plugged in again, it is online.
    d.stop();
    drop(d);
    let d = Mediad::start(&e);
    assert_eq!(status().1["media"][0]["presence"], "removed");
    m.plug();
    wait_until(
        "the medium to be seen again",
        Duration::from_secs(20),
        || status().1["media"][0]["presence"] == "plugged in",
    );
    assert_eq!(wait_run(&e, "PULLME", 1)["outcome"], "ok");
    m.unplug();
    drop(d);
}
