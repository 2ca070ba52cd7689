//! `bakfs drill --medium`: a loop-backed ext4 medium written by bakfs-mediad, drilled alone
//! (with the primary moved away), not plugged in, mounted by someone else, and damaged (a flipped
//! byte, missing packs). Part of the `drill` test binary.

use std::fs;
use std::path::PathBuf;

use bakfs_core::catalog::DrillOutcome;
use bakfs_e2e::{have_root, packs, sh, write_random, Env};
use serde_json::Value;

use super::media_harness::*;
use super::{back_up_job, drill, drills, flip_a_byte, listing, status, text};

/// A snapshot of a 3 MiB file and two small ones copied by bakfs-mediad onto a new medium.
fn on_a_medium(label: &str) -> (Env, PathBuf, Medium) {
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("big"), 3 << 20, 1);
    fs::write(src.join("a"), "a\n").unwrap();
    fs::write(src.join("b"), "b\n").unwrap();
    back_up_job(&e, &src);
    let mut m = Medium::create(&e, label, 64, "ext4");
    let dev = m.plug();
    e.ok(&["media", "enroll", &dev, "--label", label]);
    m.unplug();
    let d = Mediad::start(&e);
    m.plug();
    assert_eq!(wait_run(&e, label, 0)["outcome"], "ok");
    m.unplug();
    drop(d);
    (e, src, m)
}

fn medium_status(e: &Env, label: &str) -> Value {
    status(e)["media"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["label"] == label)
        .unwrap()
        .clone()
}

#[test]
fn a_medium_alone_is_drilled_and_damage_on_it_is_found() {
    if !have_root("a_medium_alone_is_drilled_and_damage_on_it_is_found") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let (e, src, mut m) = on_a_medium("DRILL1");
    let sb = e.path("sandbox");
    fs::create_dir(&sb).unwrap();

    // Not plugged in: failed, recorded, nothing lost.
    let o = drill(&e, &sb, &["--medium", "DRILL1"], 1);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("insert DRILL1"),
        "{}",
        text(&o)
    );
    assert_eq!(drills(&e)[0].outcome, DrillOutcome::Failed);
    assert!(listing(&sb).is_empty());

    // Plugged in, with the primary moved away: the medium and the password alone restore.
    m.plug();
    settle();
    let away = e.path("primary-away");
    fs::rename(&e.repo, &away).unwrap();
    let o = drill(&e, &sb, &["--medium", "DRILL1", "--full"], 0);
    fs::rename(&away, &e.repo).unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("3 of 3 files"),
        "{}",
        text(&o)
    );
    let d = &drills(&e)[0];
    assert_eq!(d.outcome, DrillOutcome::Ok);
    assert!(d.medium_id.is_some() && d.bytes >= 3 << 20 && d.ready_seconds > 0.0);
    assert!(listing(&sb).is_empty(), "{:?}", listing(&sb));
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(sb.to_str().unwrap()),
        "the medium was unmounted"
    );
    let ms = medium_status(&e, "DRILL1");
    assert_eq!(ms["last_drill"]["outcome"], "ok", "{ms:#}");
    assert!(
        ms["restore_bytes_per_second"].as_f64().unwrap() > 0.0,
        "{ms:#}"
    );
    assert!(ms["rto_seconds"].as_f64().unwrap() > 0.0, "{ms:#}");
    // Already mounted (read-write, by the operator): that mount is used, and left as it was.
    let mnt = e.path("mnt");
    fs::create_dir(&mnt).unwrap();
    let dev = m.dev.clone().unwrap();
    sh(&format!("mount {dev} {}", mnt.display()));
    drill(&e, &sb, &["--medium", "DRILL1"], 0);
    let still = sh(&format!("findmnt -n -o SOURCE {}", mnt.display()));
    sh(&format!("umount {}", mnt.display()));
    assert_eq!(still.trim(), dev, "the operator's mount stays");
    m.unplug();

    // Mounted by someone else: --medium-path, the filesystem's root or its bakfs directory.
    {
        let i = m.inspect(&e.path("ro"));
        let root = e.path("ro");
        for p in [root.to_str().unwrap(), i.repo().to_str().unwrap()] {
            drill(&e, &sb, &["--medium-path", p, "--sample", "50%"], 0);
        }
        let o = drill(
            &e,
            &sb,
            &[
                "--medium",
                "NOT-IT",
                "--medium-path",
                root.to_str().unwrap(),
            ],
            1,
        );
        assert!(String::from_utf8_lossy(&o.stderr).contains("no medium is labelled"));
    }

    // A flipped byte in the big file's pack on the medium.
    {
        let i = m.tamper(&e.path("tamper"));
        flip_a_byte(&i.repo());
    }
    m.plug();
    settle();
    let o = drill(&e, &sb, &["--medium", "DRILL1", "--full"], 13);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{}/big: damaged", src.display())),
        "{err}"
    );
    assert!(!err.contains(&format!("{}/a:", src.display())), "{err}");
    assert_eq!(drills(&e)[0].outcome, DrillOutcome::Damaged);
    let s = status(&e);
    let copies = s["jobs"][0]["copies"].as_array().unwrap();
    let on_m = copies.iter().find(|c| c["where"] == "DRILL1").unwrap();
    assert_eq!(on_m["counted"], false, "{on_m:#}");
    let primary = copies.iter().find(|c| c["where"] == "primary").unwrap();
    assert_eq!(primary["counted"], true, "the primary's copy still counts");
    m.unplug();

    // A pack missing on the medium.
    {
        let i = m.tamper(&e.path("tamper"));
        for p in packs(&i.repo()) {
            fs::remove_file(p).unwrap();
        }
    }
    m.plug();
    settle();
    let o = drill(&e, &sb, &["--medium", "DRILL1", "--full", "--json"], 13);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["drill"]["outcome"], "damaged", "{v:#}");
    assert!(listing(&sb).is_empty());
    m.unplug();
}

/// A medium that goes away once the drill has it open (its device cut to nothing under the
/// mounted filesystem, as a pulled stick reads: EIO): the drill fails, says nothing of the
/// copy (status still counts it), and leaves nothing behind.
#[test]
fn a_medium_pulled_out_mid_drill_fails_the_drill_not_the_copy() {
    if !have_root("a_medium_pulled_out_mid_drill_fails_the_drill_not_the_copy") {
        return;
    }
    let _s = serial();
    let _u = Udev::start();
    let (e, _src, m) = on_a_medium("PULLED");
    let sb = e.path("sandbox");
    fs::create_dir(&sb).unwrap();
    {
        let i = m.inspect(&e.path("ro"));
        // What opening the medium reads is in the page cache; the packs are not.
        sh(&format!(
            "cat {r}/medium.json {r}/config {r}/keys/* {r}/index/* {r}/snapshots/* > /dev/null",
            r = i.repo().display()
        ));
        let dev = sh(&format!("losetup -j {} -O NAME -n", m.image.display()));
        let dev = dev.trim();
        assert!(dev.starts_with("/dev/loop"), "{dev:?}");
        sh(&format!(
            "truncate -s 0 {} && losetup -c {dev}",
            m.image.display()
        ));
        let o = drill(
            &e,
            &sb,
            &["--medium-path", e.path("ro").to_str().unwrap(), "--full"],
            1,
        );
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("Input/output error"),
            "{}",
            text(&o)
        );
    }
    let d = &drills(&e)[0];
    assert_eq!(d.outcome, DrillOutcome::Failed, "{d:?}");
    assert!(listing(&sb).is_empty(), "{:?}", listing(&sb));
    let job = &status(&e)["jobs"][0];
    let copy = job["copies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["where"] == "PULLED")
        .unwrap()
        .clone();
    assert_eq!(
        copy["counted"], true,
        "a pulled medium is no damaged copy: {copy}"
    );
}
