//! NAS shares as media, with bakfs-mediad running: a share is a directory that a filesystem is
//! mounted on now and then. The fast paths use a local stand-in (a directory of a tmpfs, the
//! "NAS", bind-mounted on the share's path); the network paths use a real network filesystem,
//! sshfs from an OpenSSH server of the test's own on 127.0.0.1 (`share_harness.rs`).
#![allow(clippy::unwrap_used)]

#[path = "media_harness.rs"]
mod media_harness;
#[path = "share_harness.rs"]
mod share_harness;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bakfs_e2e::{have_root, rsync_diff, sh, write_random, Env};
use media_harness::{held, on_medium, run_count, show, wait_run, wait_until, Mediad};
use share_harness::{SshServer, SshfsMount, Tmpfs};

/// A NAS stand-in: a tmpfs of `mib` MiB (the NAS's disk, which keeps its files while the share
/// is not mounted) whose `export` directory is bind-mounted on the share's path.
struct Nas {
    store: PathBuf,
    export: PathBuf,
    mp: PathBuf,
}

impl Nas {
    fn new(e: &Env, mib: u64) -> Self {
        let store = e.path("nas-disk");
        let mp = e.path("mnt/nas");
        fs::create_dir_all(&store).unwrap();
        fs::create_dir_all(&mp).unwrap();
        sh(&format!(
            "mount -t tmpfs -o size={mib}m bakfs-test-nas {}",
            store.display()
        ));
        let export = store.join("export");
        fs::create_dir(&export).unwrap();
        Self { store, export, mp }
    }

    fn mount(&self) {
        sh(&format!(
            "mount --bind {} {}",
            self.export.display(),
            self.mp.display()
        ));
    }

    fn unmount(&self) {
        sh(&format!("umount -l {}", self.mp.display()));
    }
}

impl Drop for Nas {
    fn drop(&mut self) {
        for p in [&self.mp, &self.store] {
            while is_mounted(p) {
                if !std::process::Command::new("umount")
                    .arg("-l")
                    .arg(p)
                    .status()
                    .is_ok_and(|s| s.success())
                {
                    break;
                }
            }
        }
    }
}

/// Whether something is mounted on `p` (the mount table, which never touches the share).
fn is_mounted(p: &Path) -> bool {
    let want = p.to_string_lossy().replace(' ', "\\040");
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

fn backup(e: &Env, src: &Path) -> String {
    e.json(&["backup", src.to_str().unwrap()])["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Names in a directory (empty if it is not there).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A mediad config with short share timings, and its path.
fn config(e: &Env, extra: &str) -> PathBuf {
    let p = e.path("mediad.toml");
    fs::write(&p, format!("[mediad]\nshare_retry = \"2s\"\n{extra}")).unwrap();
    p
}

/// Restores `latest` from the share's repository alone (no primary, no catalog) and compares
/// it with `src`; `check --read-data` passes there too.
fn restores_alone(e: &Env, share_repo: &Path, src: &Path, tag: &str) {
    let o = on_medium(e, share_repo, &["check", "--read-data"]);
    assert!(o.status.success(), "check: {}", bakfs_e2e::both(&o));
    let target = e.path(&format!("restore-{tag}"));
    let o = on_medium(
        e,
        share_repo,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    assert!(o.status.success(), "restore: {}", bakfs_e2e::both(&o));
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(rsync_diff(src, &restored), "", "restored from the share");
}

/// A source tree of a few packs' worth, backed up: the scratch world, the tree, the snapshot.
fn backed_up(files: u64, mib: usize) -> (Env, PathBuf, String) {
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..files {
        write_random(&src.join(format!("f{i}")), mib << 20, 20 + i);
    }
    fs::write(src.join("small"), "a small file").unwrap();
    let id = backup(&e, &src);
    (e, src, id)
}

/// Enrolls the share mounted on `mp` as NAS-1, with `extra` options.
fn enroll_share(e: &Env, mp: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "media",
        "enroll-share",
        mp.to_str().unwrap(),
        "--label",
        "NAS-1",
    ];
    args.extend_from_slice(extra);
    e.json(&args)
}

#[test]
fn a_share_gets_its_copy_whenever_it_is_mounted_and_never_while_it_is_not() {
    if !have_root("a_share_gets_its_copy_whenever_it_is_mounted_and_never_while_it_is_not") {
        return;
    }
    let (e, src, first) = backed_up(1, 3);
    let nas = Nas::new(&e, 64);
    nas.mount();
    let mp = nas.mp.to_str().unwrap();
    let v = enroll_share(&e, &nas.mp, &["--location", "offsite"]);
    assert_eq!(v["kind"], "share");
    assert_eq!(v["share"]["path"], mp);
    // A second enrolment of the same path, or of a bare mount point, is refused.
    let out = e.fails(&["media", "enroll-share", mp, "--label", "NAS-2"], 1);
    assert!(out.contains("already enrolled"), "{out}");
    nas.unmount();
    let bare = e.path("mnt/bare");
    fs::create_dir_all(&bare).unwrap();
    let out = e.fails(
        &[
            "media",
            "enroll-share",
            bare.to_str().unwrap(),
            "--label",
            "B",
        ],
        1,
    );
    assert!(out.contains("nothing is mounted"), "{out}");
    assert!(names(&bare).is_empty());

    // The daemon starts while the share is not mounted: its path is a bare mount point, the
    // local disk. Nothing is written there, and no job starts.
    let cfg = config(&e, "");
    let mut d = Mediad::start_with(&e, None, &["--config", cfg.to_str().unwrap()]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(names(&nas.mp).is_empty(), "{:?}", names(&nas.mp));
    assert_eq!(run_count(&e, "NAS-1"), 0);
    assert_eq!(show(&e, "NAS-1")["presence"], "removed");

    // Mounted: the copy follows by itself, the share holds the snapshot, verified.
    nas.mount();
    let run = wait_run(&e, "NAS-1", 0);
    assert_eq!(run["outcome"], "ok", "{run}");
    assert_eq!(held(&e, "NAS-1"), vec![first.clone()]);
    assert_eq!(show(&e, "NAS-1")["presence"], "plugged in");
    restores_alone(&e, &nas.mp.join("bakfs"), &src, "1");

    // It stays mounted: a new snapshot is copied without any event.
    fs::write(src.join("c"), "third file").unwrap();
    let second = backup(&e, &src);
    let run = wait_run(&e, "NAS-1", 1);
    assert_eq!(run["outcome"], "ok", "{run}");
    let mut want = vec![first, second];
    want.sort();
    assert_eq!(held(&e, "NAS-1"), want);
    // No more runs without a reason.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(run_count(&e, "NAS-1"), 2);

    // Unmounted: the catalog says so; the daemon lives on.
    nas.unmount();
    wait_until("the share to be seen gone", Duration::from_secs(10), || {
        show(&e, "NAS-1")["presence"] == "removed"
    });
    assert!(names(&nas.mp).is_empty());
    // `bakfs status` shows it as a medium of its own kind, offline while unmounted.
    let o = e.run(&["--json", "status"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = &st["media"][0];
    assert_eq!(
        (&m["kind"], &m["presence"], &m["snapshots"]),
        (&"share".into(), &"removed".into(), &2.into()),
        "{st}"
    );
    assert_eq!(d.stop(), Some(0));
    let log = d.log_text();
    assert!(log.contains("share NAS-1 is mounted on"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn a_share_unmounted_mid_copy_is_a_cancelled_job_and_nothing_lands_underneath() {
    if !have_root("a_share_unmounted_mid_copy_is_a_cancelled_job_and_nothing_lands_underneath") {
        return;
    }
    let (e, src, id) = backed_up(4, 9);
    let nas = Nas::new(&e, 128);
    nas.mount();
    enroll_share(&e, &nas.mp, &[]);
    let cfg = config(&e, "");
    // A pause after each file written: time to pull the share out mid-copy.
    let mut d = Mediad::start_with(&e, Some(700), &["--config", cfg.to_str().unwrap()]);
    wait_until("a pack on the share", Duration::from_secs(30), || {
        !names(&nas.export.join("bakfs/data")).is_empty()
    });
    nas.unmount();
    let run = wait_run(&e, "NAS-1", 0);
    assert_eq!(run["outcome"], "cancelled", "{run}");
    assert_eq!(show(&e, "NAS-1")["state"], "removed during copy");
    assert!(held(&e, "NAS-1").is_empty(), "nothing half-recorded");
    // The directory underneath (the local disk) got nothing.
    assert!(names(&nas.mp).is_empty(), "{:?}", names(&nas.mp));
    // Mounted again: the copy resumes and ends.
    nas.mount();
    let run = wait_run(&e, "NAS-1", 1);
    assert_eq!(run["outcome"], "ok", "{run}");
    assert_eq!(held(&e, "NAS-1"), vec![id]);
    restores_alone(&e, &nas.mp.join("bakfs"), &src, "resumed");
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_share_of_another_repository_or_medium_is_refused_and_left_alone() {
    if !have_root("a_share_of_another_repository_or_medium_is_refused_and_left_alone") {
        return;
    }
    let (e, _src, _id) = backed_up(1, 1);
    let nas = Nas::new(&e, 64);
    nas.mount();
    enroll_share(&e, &nas.mp, &[]);
    // Another repository's share is mounted there now (same path, its own identity).
    let other = Env::init();
    let other_nas = Nas::new(&other, 16);
    other_nas.mount();
    other.ok(&[
        "media",
        "enroll-share",
        other_nas.mp.to_str().unwrap(),
        "--label",
        "THEIRS",
    ]);
    other_nas.unmount();
    nas.unmount();
    sh(&format!(
        "mount --bind {} {}",
        other_nas.export.display(),
        nas.mp.display()
    ));
    let before = names(&other_nas.export.join("bakfs"));
    let cfg = config(&e, "");
    let mut d = Mediad::start_with(&e, None, &["--config", cfg.to_str().unwrap()]);
    let run = wait_run(&e, "NAS-1", 0);
    assert_eq!(run["outcome"], "refused", "{run}");
    assert!(run["message"].as_str().unwrap().contains("THEIRS"), "{run}");
    assert_eq!(names(&other_nas.export.join("bakfs")), before, "left alone");
    assert_eq!(d.stop(), Some(0));
    sh(&format!("umount -l {}", nas.mp.display()));
}

#[test]
fn a_full_share_ends_its_job_as_medium_full() {
    if !have_root("a_full_share_ends_its_job_as_medium_full") {
        return;
    }
    let (e, _src, _id) = backed_up(1, 12);
    let nas = Nas::new(&e, 6);
    nas.mount();
    enroll_share(&e, &nas.mp, &[]);
    let cfg = config(&e, "");
    let mut d = Mediad::start_with(&e, None, &["--config", cfg.to_str().unwrap()]);
    let run = wait_run(&e, "NAS-1", 0);
    assert_eq!(run["outcome"], "medium full", "{run}");
    assert!(held(&e, "NAS-1").is_empty());
    assert_eq!(show(&e, "NAS-1")["state"], "medium full");
    // No retry storm: a full share is tried again only after share_retry, with the same end.
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    assert!(run_count(&e, "NAS-1") <= 1 + t.elapsed().as_secs() as usize / 2);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn an_sshfs_share_mediad_mounts_itself_gets_its_copy_and_is_unmounted_again() {
    if !have_root("an_sshfs_share_mediad_mounts_itself_gets_its_copy_and_is_unmounted_again") {
        return;
    }
    let (e, src, id) = backed_up(2, 3);
    let server = SshServer::start();
    let export = e.path("nas/export");
    fs::create_dir_all(&export).unwrap();
    let mp = e.path("mnt/nas");
    let mut m = SshfsMount::mount(&server, &export, &mp);
    let v = enroll_share(
        &e,
        &mp,
        &[
            "--location",
            "offsite",
            "--source",
            &server.source(&export),
            "--mount-options",
            &server.sshfs_options(),
        ],
    );
    assert_eq!(v["fs_type"], "fuse.sshfs", "{v}");
    m.unmount();
    let cfg = config(&e, "");
    let mut d = Mediad::start_with(&e, None, &["--config", cfg.to_str().unwrap()]);
    // Whatever happens, the test unmounts what mediad mounted.
    let _guard = SshfsMount::adopt(&mp);
    let run = wait_run(&e, "NAS-1", 0);
    assert_eq!(run["outcome"], "ok", "{run} {}", d.log_text());
    assert_eq!(held(&e, "NAS-1"), vec![id]);
    wait_until(
        "mediad to unmount the share",
        Duration::from_secs(10),
        || !is_mounted(&mp),
    );
    // Nothing new: no job, no mount, however often share_retry comes round.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(run_count(&e, "NAS-1"), 1);
    assert!(!is_mounted(&mp));
    assert!(names(&mp).is_empty(), "nothing underneath");
    // The NAS's directory restores alone.
    restores_alone(&e, &export.join("bakfs"), &src, "export");
    // A new snapshot: mediad mounts the share again for it.
    fs::write(src.join("new"), "new file").unwrap();
    backup(&e, &src);
    let run = wait_run(&e, "NAS-1", 1);
    assert_eq!(run["outcome"], "ok", "{run}");
    assert_eq!(held(&e, "NAS-1").len(), 2);
    wait_until(
        "mediad to unmount the share",
        Duration::from_secs(10),
        || !is_mounted(&mp),
    );
    assert_eq!(d.stop(), Some(0));
    let log = d.log_text();
    assert!(log.contains("mounting root@127.0.0.1:"), "{log}");
    assert!(log.contains("NAS-1 has its copy"), "{log}");
}

#[test]
fn the_ssh_server_killed_mid_copy_cancels_the_job_and_the_copy_resumes_later() {
    if !have_root("the_ssh_server_killed_mid_copy_cancels_the_job_and_the_copy_resumes_later") {
        return;
    }
    let (e, src, id) = backed_up(4, 9);
    let mut server = SshServer::start();
    let export = e.path("nas/export");
    fs::create_dir_all(&export).unwrap();
    let mp = e.path("mnt/nas");
    let mut m = SshfsMount::mount(&server, &export, &mp);
    enroll_share(&e, &mp, &[]);
    let cfg = config(&e, "");
    let mut d = Mediad::start_with(&e, Some(700), &["--config", cfg.to_str().unwrap()]);
    wait_until("a pack on the share", Duration::from_secs(60), || {
        !names(&export.join("bakfs/data")).is_empty()
    });
    let t = Instant::now();
    server.kill();
    let run = wait_run(&e, "NAS-1", 0);
    assert!(
        ["cancelled", "failed"].contains(&run["outcome"].as_str().unwrap()),
        "{run}"
    );
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    assert!(held(&e, "NAS-1").is_empty(), "nothing half-recorded");
    assert!(d.alive());
    // The NAS is back: mount it again; the copy resumes and ends verified.
    m.unmount();
    server.restart();
    let _m = SshfsMount::mount(&server, &export, &mp);
    let run = wait_run(&e, "NAS-1", 1);
    assert_eq!(run["outcome"], "ok", "{run}");
    assert_eq!(held(&e, "NAS-1"), vec![id]);
    restores_alone(&e, &export.join("bakfs"), &src, "resumed");
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_hung_share_is_abandoned_forced_off_and_copied_when_it_answers_again() {
    if !have_root("a_hung_share_is_abandoned_forced_off_and_copied_when_it_answers_again") {
        return;
    }
    let (e, src, id) = backed_up(4, 9);
    let server = SshServer::start();
    let export = e.path("nas/export");
    fs::create_dir_all(&export).unwrap();
    let mp = e.path("mnt/nas");
    // Mounted without keepalives, as many a NAS is: a frozen server hangs every operation for
    // as long as TCP does not give up (hours).
    let opts: Vec<String> = server
        .sshfs_options()
        .split(',')
        .filter(|o| !o.starts_with("ServerAlive"))
        .map(str::to_string)
        .collect();
    let opts = opts.join(",");
    let mut m = SshfsMount::mount_with(&server, &export, &mp, &opts);
    enroll_share(
        &e,
        &mp,
        &[
            "--source",
            &server.source(&export),
            "--mount-options",
            &opts,
        ],
    );
    m.unmount();
    let cfg = config(&e, "share_timeout = \"3s\"\n");
    let mut d = Mediad::start_with(&e, Some(700), &["--config", cfg.to_str().unwrap()]);
    let _guard = SshfsMount::adopt(&mp);
    wait_until("a pack on the share", Duration::from_secs(60), || {
        !names(&export.join("bakfs/data")).is_empty()
    });
    server.freeze();
    let t = Instant::now();
    // The job ends interrupted, with why. (Tries that follow while the server is frozen fail
    // too: the first run is the one abandoned.)
    wait_until("the job to be abandoned", Duration::from_secs(60), || {
        first_run(&e).0 != "running"
    });
    let (outcome, message) = first_run(&e);
    assert_eq!(outcome, "interrupted", "{message}");
    assert!(message.contains("stopped answering"), "{message}");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert!(held(&e, "NAS-1").is_empty());
    // mediad forced its own mount off: the blocked job came back, and what it recorded is
    // still the abandonment.
    wait_until(
        "the hung mount to be forced off",
        Duration::from_secs(20),
        || !is_mounted(&mp) && d.log_text().contains("forced the hung share off"),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(first_run(&e).0, "interrupted");
    assert!(d.alive());
    // The NAS answers again: at the next try (share_retry) mediad mounts it and the copy
    // completes.
    server.thaw();
    wait_until("the copy to complete", Duration::from_secs(120), || {
        held(&e, "NAS-1") == vec![id.clone()]
            && media_harness::runs(&e, "NAS-1")[0]["outcome"] == "ok"
    });
    assert!(
        names(&mp).is_empty() || is_mounted(&mp),
        "nothing underneath"
    );
    restores_alone(&e, &export.join("bakfs"), &src, "after-hang");
    let t = Instant::now();
    assert_eq!(d.stop(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
}

/// The outcome and message of NAS-1's first run, from the catalog (`media show` lists the last
/// five).
fn first_run(e: &Env) -> (String, String) {
    let out = sh(&format!(
        "sqlite3 {} \"SELECT outcome || '|' || coalesce(message, '') FROM media_runs ORDER BY id LIMIT 1\"",
        e.state.join("catalog.db").display()
    ));
    let (o, m) = out.trim().split_once('|').unwrap_or(("none", ""));
    (o.to_string(), m.to_string())
}

#[test]
fn a_full_sshfs_share_ends_its_job_as_medium_full() {
    if !have_root("a_full_sshfs_share_ends_its_job_as_medium_full") {
        return;
    }
    // 3 x 4 MiB of packs onto an 8 MiB NAS volume: SFTP reports the full disk as a failure
    // (sshfs: EIO), which the share's free space makes `medium full`.
    let (e, _src, _id) = backed_up(3, 4);
    let server = SshServer::start();
    let nas = Tmpfs::mount(&e.path("nas"), 8);
    let mp = e.path("mnt/nas");
    let _m = SshfsMount::mount(&server, nas.path(), &mp);
    enroll_share(&e, &mp, &[]);
    let cfg = config(&e, "");
    let mut d = Mediad::start_with(&e, None, &["--config", cfg.to_str().unwrap()]);
    let run = wait_run(&e, "NAS-1", 0);
    assert_eq!(run["outcome"], "medium full", "{run}");
    assert!(held(&e, "NAS-1").is_empty());
    assert_eq!(d.stop(), Some(0));
}
