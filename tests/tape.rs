//! Tapes as media, on the virtual drive, with bakfs-mediad watching it: a cartridge labelled
//! for a pool gets its copy when it is loaded, is ejected, and restores alone (no catalog,
//! the passphrase only) reading only the tape files that hold what is restored; a cartridge
//! that fills up is closed with its catalog and the set goes on on the next one.
#![allow(clippy::unwrap_used)]

#[path = "media_harness.rs"]
mod media_harness;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use bakfs_e2e::{both, have_root, rsync_diff, write_random, Env};
use media_harness::{held, show, wait_run, Mediad};

/// A virtual drive over a library in the test's directory.
fn drive(e: &Env) -> String {
    format!("virtual:{}", e.path("tapes").display())
}

/// `bakfs tape ARGS --drive <the virtual drive>`, asserting success.
fn tape(e: &Env, args: &[&str]) -> String {
    let d = drive(e);
    let mut all = vec!["tape"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--drive", &d]);
    e.ok(&all)
}

/// A mediad configuration watching the virtual drive every second.
fn config(e: &Env) -> PathBuf {
    let p = e.path("mediad.toml");
    fs::write(
        &p,
        format!(
            "[mediad]\ntape_drives = [\"{}\"]\ntape_poll = \"1s\"\n",
            drive(e)
        ),
    )
    .unwrap();
    p
}

fn backup(e: &Env, src: &Path) -> String {
    let v = e.json(&["backup", src.to_str().unwrap()]);
    v["id"].as_str().unwrap().to_string()
}

/// `bakfs tape restore` with its own empty state directory (no catalog): the tape alone.
fn restore_alone(e: &Env, what: &str, target: &Path) -> Output {
    e.cmd()
        .env("BAKFS_STATE_DIR", e.path("fresh-state"))
        .env("BAKFS_LOG", "info")
        .args([
            "tape",
            "restore",
            what,
            "--target",
            target.to_str().unwrap(),
            "--drive",
        ])
        .arg(drive(e))
        .output()
        .unwrap()
}

#[test]
fn a_loaded_tape_gets_its_copy_is_ejected_and_restores_alone() {
    if !have_root("a_loaded_tape_gets_its_copy_is_ejected_and_restores_alone") {
        return;
    }
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(src.join("deep")).unwrap();
    for i in 0..4 {
        write_random(&src.join(format!("f{i}")), 6 << 20, 40 + i);
    }
    fs::write(src.join("deep/key.json"), "{\"validator\": \"secret\"}").unwrap();
    let first = backup(&e, &src);

    tape(&e, &["create", "A00001L9", "--capacity", "1G"]);
    tape(&e, &["load", "A00001L9"]);
    let out = tape(&e, &["label", "A00001L9", "--pool", "OFFSITE"]);
    assert!(out.contains("labelled A00001L9"), "{out}");
    // A labelled cartridge is not labelled again by mistake.
    let d = drive(&e);
    let out = e.fails(&["tape", "label", "B", "--drive", &d], 1);
    assert!(out.contains("--overwrite erases it"), "{out}");

    let cfg = config(&e);
    let mut mediad = Mediad::start_with(&e, None, &["--config", cfg.to_str().unwrap()]);
    let run = wait_run(&e, "A00001L9", 0);
    assert_eq!(run["outcome"], "ok", "{run}");
    assert_eq!(held(&e, "A00001L9"), vec![first.clone()]);
    let m = show(&e, "A00001L9");
    assert_eq!(m["kind"], "tape");
    assert_eq!(m["tape"]["status"], "writable", "{m}");
    assert_eq!(m["tape"]["place"], "in library", "ejected: {m}");
    assert_eq!(m["presence"], "removed", "ejected, offline: {m}");
    assert!(mediad
        .log_text()
        .contains("safe to take A00001L9 to the vault"));

    // A second backup: loading the cartridge again appends it.
    fs::write(src.join("deep/new"), "after the first copy").unwrap();
    let second = backup(&e, &src);
    tape(&e, &["load", "A00001L9"]);
    let run = wait_run(&e, "A00001L9", 1);
    assert_eq!(run["outcome"], "ok", "{run}");
    let mut want = vec![first, second.clone()];
    want.sort();
    assert_eq!(held(&e, "A00001L9"), want);
    let files = e.json(&["tape", "show", "A00001L9"])["tape_files"]
        .as_array()
        .unwrap()
        .len();
    assert!(files >= 8, "{files}");
    assert_eq!(mediad.stop(), Some(0));

    // The tape alone: a catalog that knows nothing, the passphrase, the drive.
    tape(&e, &["load", "A00001L9"]);
    let target = e.path("restore-one");
    let o = restore_alone(
        &e,
        &format!("{}:{}/deep", &second[..8], src.display()),
        &target,
    );
    assert!(o.status.success(), "{}", both(&o));
    assert_eq!(
        fs::read(target.join("key.json")).unwrap(),
        fs::read(src.join("deep/key.json")).unwrap()
    );
    // A directory of two small files: the small files, the manifest, and the packs of its
    // trees and data are read; the packs of the 24 MiB of other files are spaced over.
    let log = both(&o);
    let line = log
        .lines()
        .find(|l| l.contains("repository files ("))
        .unwrap_or_else(|| panic!("{log}"));
    let mib: f64 = line
        .split(" files (")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(mib < 12.0, "{line}");

    let target = e.path("restore-all");
    let o = restore_alone(&e, "latest", &target);
    assert!(o.status.success(), "{}", both(&o));
    assert_eq!(
        rsync_diff(&src, &target.join(src.strip_prefix("/").unwrap())),
        ""
    );

    // A scan reads it without the catalog.
    let v = e
        .cmd()
        .env("BAKFS_STATE_DIR", e.path("fresh-state"))
        .args(["--json", "tape", "scan", "--drive", &d])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", both(&v));
    let v: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(v["label"]["label"], "A00001L9");
    assert_eq!(v["unclosed_jobs"].as_array().unwrap().len(), 0);
    assert_eq!(v["enrolled"], false);

    // A restore drill of the cartridge proves it, and `bakfs status` knows.
    // Its sandbox, the tape's staged files in it, is gone after it (it was left behind once).
    let sandboxes = e.path("drills");
    std::fs::create_dir_all(&sandboxes).unwrap();
    let o = e.run(&[
        "drill",
        "--medium",
        "A00001L9",
        "--full",
        "--drive",
        &d,
        "--sandbox",
        sandboxes.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", both(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ok"),
        "{}",
        both(&o)
    );
    assert!(!both(&o).contains("could not be removed"), "{}", both(&o));
    assert_eq!(
        std::fs::read_dir(&sandboxes).unwrap().count(),
        0,
        "the drill's sandbox was left behind"
    );
    let o = e.run(&["--json", "status"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = v["media"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["label"] == "A00001L9")
        .unwrap()
        .clone();
    assert_eq!(m["kind"], "tape", "{m}");
    assert_eq!(m["last_drill"]["outcome"], "ok", "{m}");

    // Taken to the vault, then retired: recorded by hand.
    e.ok(&["tape", "mark", "A00001L9", "--place", "vault"]);
    let m = show(&e, "A00001L9");
    assert_eq!(
        (&m["tape"]["place"], &m["presence"]),
        (&serde_json::json!("vault"), &serde_json::json!("removed")),
        "{m}"
    );
    e.ok(&["tape", "mark", "A00001L9", "--status", "retired"]);
    assert_eq!(show(&e, "A00001L9")["tape"]["status"], "retired");
    assert!(e.ok(&["tape", "list"]).contains("retired"));
}

#[test]
fn a_full_cartridge_is_closed_and_its_set_goes_on_on_the_next() {
    if !have_root("a_full_cartridge_is_closed_and_its_set_goes_on_on_the_next") {
        return;
    }
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..6 {
        write_random(&src.join(format!("f{i}")), 5 << 20, 70 + i);
    }
    let snap = backup(&e, &src);
    // 16 MiB with the warning 4 MiB before the end: about 12 MiB of the 30 MiB fit.
    tape(
        &e,
        &["create", "S1", "--capacity", "16M", "--early-warning", "4M"],
    );
    tape(&e, &["create", "S2", "--capacity", "64M"]);
    tape(&e, &["load", "S1"]);
    tape(&e, &["label", "S1", "--pool", "VAULT"]);
    let cfg = config(&e);
    let mediad = Mediad::start_with(&e, None, &["--config", cfg.to_str().unwrap()]);
    let run = wait_run(&e, "S1", 0);
    assert_eq!(run["outcome"], "medium full", "{run}");
    assert!(
        run["message"]
            .as_str()
            .unwrap()
            .contains("load another tape of pool VAULT"),
        "{run}"
    );
    assert!(held(&e, "S1").is_empty(), "the snapshot is not whole on S1");
    assert_eq!(show(&e, "S1")["tape"]["status"], "full");
    // `bakfs status` says what the set needs.
    let o = e.run(&["status"]);
    assert!(
        bakfs_e2e::text(&o.stdout).contains("S1: full: load a tape of pool VAULT"),
        "{}",
        both(&o)
    );
    drop(mediad);

    tape(&e, &["load", "S2"]);
    tape(&e, &["label", "S2", "--pool", "VAULT"]);
    let s1 = show(&e, "S1");
    let s2 = show(&e, "S2");
    assert_eq!(
        s1["tape"]["set"], s2["tape"]["set"],
        "S2 continues S1's set"
    );
    assert_eq!(s2["tape"]["seq"], 1);
    let mediad = Mediad::start_with(&e, None, &["--config", cfg.to_str().unwrap()]);
    let run = wait_run(&e, "S2", 0);
    assert_eq!(run["outcome"], "ok", "{run}");
    assert_eq!(held(&e, "S2"), vec![snap]);
    drop(mediad);
    // Each pack is on one cartridge of the set, not both.
    let names = |label: &str| -> Vec<String> {
        e.json(&["tape", "show", label])["tape_files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "pack")
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (a, b) = (names("S1"), names("S2"));
    assert!(!a.is_empty() && !b.is_empty());
    assert!(a.iter().all(|p| !b.contains(p)));

    // The set restores from its cartridges alone: started on S1, the restore loads S2 from the
    // library for the packs that are there.
    tape(&e, &["load", "S1"]);
    let target = e.path("restore-set");
    let o = e
        .cmd()
        .env("BAKFS_LOG", "info")
        .args([
            "tape",
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
            "--drive",
        ])
        .arg(drive(&e))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", both(&o));
    assert!(both(&o).contains("loading cartridge S2"), "{}", both(&o));
    assert_eq!(
        rsync_diff(&src, &target.join(src.strip_prefix("/").unwrap())),
        ""
    );
}

#[test]
fn a_mediad_killed_mid_write_leaves_nothing_trusted_and_the_next_job_appends() {
    if !have_root("a_mediad_killed_mid_write_leaves_nothing_trusted_and_the_next_job_appends") {
        return;
    }
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..5 {
        write_random(&src.join(format!("f{i}")), 5 << 20, 90 + i);
    }
    let snap = backup(&e, &src);
    tape(&e, &["create", "K1", "--capacity", "1G"]);
    tape(&e, &["load", "K1"]);
    tape(&e, &["label", "K1", "--pool", "OFFSITE"]);
    let cfg = config(&e);
    // Half a second after each file written: killed past its small files (a tape file closed
    // by its filemark) and a pack or two, before the manifest.
    let mut mediad = Mediad::start_with(&e, Some(500), &["--config", cfg.to_str().unwrap()]);
    media_harness::wait_until(
        "the job to write",
        std::time::Duration::from_secs(60),
        || mediad.log_text().contains("copying snapshots onto tape K1"),
    );
    std::thread::sleep(std::time::Duration::from_millis(3000));
    assert!(held(&e, "K1").is_empty());
    mediad.kill_and_restart(&e);
    let run = wait_run(&e, "K1", 1);
    assert_eq!(run["outcome"], "ok", "{run}");
    assert_eq!(held(&e, "K1"), vec![snap]);
    drop(mediad);

    // The killed job's files have no catalog: a scan finds them and trusts none of them.
    tape(&e, &["load", "K1"]);
    let d = drive(&e);
    let o = e
        .cmd()
        .env("BAKFS_STATE_DIR", e.path("fresh-state"))
        .args(["--json", "tape", "scan", "--drive", &d])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", both(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["unclosed_jobs"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v}");
    let target = e.path("restore");
    let o = restore_alone(&e, "latest", &target);
    assert!(o.status.success(), "{}", both(&o));
    assert_eq!(
        rsync_diff(&src, &target.join(src.strip_prefix("/").unwrap())),
        ""
    );
}

#[test]
fn a_damaged_primary_pack_is_never_recorded_on_a_tape() {
    if !have_root("a_damaged_primary_pack_is_never_recorded_on_a_tape") {
        return;
    }
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("f"), 3 << 20, 7);
    backup(&e, &src);
    // One byte of a pack turned: its bytes no longer hash to its name.
    let pack = bakfs_e2e::packs(&e.repo)
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&pack, &bytes).unwrap();
    tape(&e, &["create", "D1", "--capacity", "1G"]);
    tape(&e, &["load", "D1"]);
    tape(&e, &["label", "D1", "--pool", "OFFSITE"]);
    let cfg = config(&e);
    let _mediad = Mediad::start_with(&e, None, &["--config", cfg.to_str().unwrap()]);
    let run = wait_run(&e, "D1", 0);
    assert_eq!(run["outcome"], "incomplete", "{run}");
    let name = pack.file_name().unwrap().to_str().unwrap();
    assert!(run["message"].as_str().unwrap().contains(name), "{run}");
    assert!(
        held(&e, "D1").is_empty(),
        "a snapshot with a damaged pack is not on the tape"
    );
    let files = e.json(&["tape", "show", "D1"])["tape_files"].clone();
    assert!(
        !files.as_array().unwrap().iter().any(|f| f["name"] == name),
        "{files}"
    );
}

#[test]
fn a_pool_that_starts_a_set_per_job_reuses_a_cartridge_only_when_its_set_expired() {
    if !have_root("a_pool_that_starts_a_set_per_job_reuses_a_cartridge_only_when_its_set_expired") {
        return;
    }
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("f"), 2 << 20, 3);
    let first = backup(&e, &src);
    // Every job a new set; a set that is not the current one may be written over.
    let cfg = e.path("mediad.toml");
    fs::write(
        &cfg,
        format!(
            "[mediad]\ntape_drives = [\"{}\"]\ntape_poll = \"1s\"\n\n[pools.WEEKLY]\nallocation = \"always\"\nset_retention = \"overwrite\"\n",
            drive(&e)
        ),
    )
    .unwrap();
    let with_cfg = |args: &[&str]| {
        let d = drive(&e);
        let mut all = vec!["--config", cfg.to_str().unwrap(), "tape"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--drive", &d]);
        let o = e.cmd().args(&all).output().unwrap();
        assert!(o.status.success(), "{all:?}: {}", both(&o));
        bakfs_e2e::text(&o.stdout)
    };
    for c in ["W1", "W2"] {
        with_cfg(&["create", c, "--capacity", "1G"]);
    }
    with_cfg(&["load", "W1"]);
    with_cfg(&["label", "W1", "--pool", "WEEKLY"]);
    let mediad = Mediad::start_with(&e, None, &["--config", cfg.to_str().unwrap()]);
    let run = wait_run(&e, "W1", 0);
    assert_eq!(run["outcome"], "ok", "{run}");
    let set1 = show(&e, "W1")["tape"]["set"].clone();

    // The next job wants a new set: W1 holds the current one, so nothing is written to it.
    fs::write(src.join("g"), "second").unwrap();
    let second = backup(&e, &src);
    with_cfg(&["load", "W1"]);
    media_harness::wait_until(
        "mediad to leave W1 alone",
        std::time::Duration::from_secs(30),
        || mediad.log_text().contains("a new media set is due"),
    );
    assert_eq!(held(&e, "W1"), vec![first.clone()]);

    // W2, labelled into the pool, starts the new set.
    with_cfg(&["load", "W2"]);
    with_cfg(&["label", "W2", "--pool", "WEEKLY"]);
    let run = wait_run(&e, "W2", 0);
    assert_eq!(run["outcome"], "ok", "{run}");
    let set2 = show(&e, "W2")["tape"]["set"].clone();
    assert_ne!(set1, set2);
    let mut both_snaps = vec![first, second];
    both_snaps.sort();
    assert_eq!(held(&e, "W2"), both_snaps);
    // W1's set is no longer the current one: `tape list` says it expired, and loading it
    // labels it again into a new set, with what the pool wants now.
    let o = e
        .cmd()
        .args(["--config", cfg.to_str().unwrap(), "tape", "list"])
        .output()
        .unwrap();
    let list = bakfs_e2e::text(&o.stdout);
    let w1 = list.lines().find(|l| l.starts_with("W1")).unwrap();
    assert!(w1.contains("expired"), "{list}");
    fs::write(src.join("h"), "third").unwrap();
    let third = backup(&e, &src);
    with_cfg(&["load", "W1"]);
    let run = wait_run(&e, "W1", 2);
    assert_eq!(run["outcome"], "ok", "{run}");
    let w1 = show(&e, "W1");
    assert_ne!(w1["tape"]["set"], set1);
    assert_ne!(w1["tape"]["set"], set2);
    assert!(held(&e, "W1").contains(&third));
    assert!(mediad.log_text().contains("W1 labelled again"));
}

#[test]
fn a_damaged_record_fails_only_what_needs_it_and_names_the_snapshots_it_costs() {
    if !have_root("a_damaged_record_fails_only_what_needs_it_and_names_the_snapshots_it_costs") {
        return;
    }
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    // The small file first, in a pack of its own; then the big one, in packs of their own.
    fs::write(src.join("small"), "a small file").unwrap();
    let first = backup(&e, &src);
    write_random(&src.join("big"), 6 << 20, 11);
    let snap = backup(&e, &src);
    tape(&e, &["create", "R1", "--capacity", "1G"]);
    tape(&e, &["load", "R1"]);
    tape(&e, &["label", "R1", "--pool", "OFFSITE"]);
    let cfg = config(&e);
    let mediad = Mediad::start_with(&e, None, &["--config", cfg.to_str().unwrap()]);
    assert_eq!(wait_run(&e, "R1", 0)["outcome"], "ok");
    drop(mediad);
    // One byte turned in the middle of the cartridge's records: inside the big file's pack.
    let data = e.path("tapes/R1.tape/data");
    let mut bytes = fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&data, &bytes).unwrap();
    tape(&e, &["load", "R1"]);
    let target = e.path("restore");
    let o = e
        .cmd()
        .args([
            "tape",
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
            "--drive",
        ])
        .arg(drive(&e))
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", both(&o));
    let err = both(&o);
    assert!(err.contains("damaged on tape R1: pack"), "{err}");
    assert!(
        err.contains(&format!("it costs snapshot(s) {}", &snap[..8])),
        "{err}"
    );
    assert!(
        !err.contains(&first[..8]),
        "the first snapshot does not need it: {err}"
    );
    // The rest still restored.
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(fs::read(restored.join("small")).unwrap(), b"a small file");
}

#[test]
fn a_lost_catalog_learns_a_cartridge_again_from_the_tape() {
    if !have_root("a_lost_catalog_learns_a_cartridge_again_from_the_tape") {
        return;
    }
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("f"), 3 << 20, 5);
    let snap = backup(&e, &src);
    tape(&e, &["create", "L1", "--capacity", "1G"]);
    tape(&e, &["load", "L1"]);
    tape(&e, &["label", "L1", "--pool", "VAULT"]);
    let cfg = config(&e);
    let mediad = Mediad::start_with(&e, None, &["--config", cfg.to_str().unwrap()]);
    assert_eq!(wait_run(&e, "L1", 0)["outcome"], "ok");
    drop(mediad);

    // The catalog is lost; its snapshots come back from the primary, the cartridge from itself.
    for f in fs::read_dir(&e.state).unwrap() {
        let p = f.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("catalog.db")
        {
            fs::remove_file(p).unwrap();
        }
    }
    e.ok(&["catalog", "rebuild"]);
    tape(&e, &["load", "L1"]);
    let d = drive(&e);
    let v = e.json(&["tape", "scan", "--enroll", "--verify", "--drive", &d]);
    assert_eq!(v["newly_enrolled"], true, "{v}");
    assert_eq!(v["verified"]["snapshots"], 1, "{v}");
    let m = show(&e, "L1");
    assert_eq!(
        (&m["kind"], &m["pool"]),
        (&serde_json::json!("tape"), &serde_json::json!("VAULT")),
        "{m}"
    );
    assert_eq!(held(&e, "L1"), vec![snap]);
    // It restores through the catalog's positions again.
    let target = e.path("restore");
    e.ok(&[
        "tape",
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--drive",
        &d,
    ]);
    assert_eq!(
        rsync_diff(&src, &target.join(src.strip_prefix("/").unwrap())),
        ""
    );
}
