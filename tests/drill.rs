//! `bakfs drill` with the real binaries: from the primary (sample and full), from a medium alone
//! (a loop-backed ext4 filesystem written by bakfs-mediad, drilled with the primary moved away),
//! a medium not plugged in, damaged copies (a flipped byte, a missing pack), a sandbox on a full
//! filesystem; each drill read back from the catalog and through `bakfs status`, and nothing
//! left outside the sandbox or in it afterwards.
#![allow(clippy::unwrap_used)]

#[path = "media_harness.rs"]
mod media_harness;
#[path = "drill_medium.rs"]
mod medium;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use bakfs_core::catalog::{Catalog, DrillOutcome, DrillRecord};
use bakfs_e2e::{have_root, packs, sh, write_random, Env};
use serde_json::Value;

/// A source of `n` files of different sizes, backed up by job `etc` under a configuration that
/// wants one copy and a drill within 30 days.
fn job_world(n: usize) -> (Env, PathBuf) {
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..n {
        write_random(&src.join(format!("sub/f{i}")), 20_000 + i * 3_000, i as u64);
    }
    back_up_job(&e, &src);
    (e, src)
}

/// Writes the configuration of job `etc` over `src` and backs it up.
fn back_up_job(e: &Env, src: &Path) {
    let config = e.path("bakfs.toml");
    fs::write(
        &config,
        format!(
            "repository = {:?}\n\n[jobs.etc]\npaths = [{:?}]\nrpo = \"1d\"\n\n[policy]\n\
             copies = 1\nkinds = 1\noffsite = 0\noffline = 0\ndrill_within = \"30d\"\n",
            e.repo.display().to_string(),
            src.display().to_string()
        ),
    )
    .unwrap();
    e.ok(&[
        "--config",
        config.to_str().unwrap(),
        "backup",
        "--job",
        "etc",
    ]);
}

/// `bakfs --config … ARGS`.
fn run(e: &Env, args: &[&str]) -> Output {
    let config = e.path("bakfs.toml");
    let mut c = e.cmd();
    if config.exists() {
        c.arg("--config").arg(config);
    }
    c.args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `bakfs drill ARGS --sandbox SB`, asserting exit code `code`.
fn drill(e: &Env, sb: &Path, args: &[&str], code: i32) -> Output {
    let mut a = vec!["drill", "--sandbox", sb.to_str().unwrap()];
    a.extend_from_slice(args);
    let o = run(e, &a);
    assert_eq!(o.status.code(), Some(code), "drill {args:?}: {}", text(&o));
    o
}

/// `bakfs --json status` (whatever its level).
fn status(e: &Env) -> Value {
    let o = run(e, &["--json", "status"]);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)))
}

/// The drills recorded, newest first.
fn drills(e: &Env) -> Vec<DrillRecord> {
    let cat = Catalog::open(&e.state.join("catalog.db")).unwrap();
    let repo = cat.repositories().unwrap()[0].id;
    cat.drills(&repo, 100).unwrap()
}

/// Every path under `dir`, relative, sorted (empty if it does not exist).
fn listing(dir: &Path) -> Vec<String> {
    let out = sh(&format!(
        "cd {} 2>/dev/null && find . -mindepth 1 | sort || true",
        dir.display()
    ));
    out.lines().map(str::to_string).collect()
}

/// The largest pack of a repository directory, with one byte in its middle flipped.
fn flip_a_byte(repo: &Path) -> PathBuf {
    let p = packs(repo)
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut b = fs::read(&p).unwrap();
    let at = b.len() / 2;
    b[at] ^= 1;
    fs::write(&p, b).unwrap();
    p
}

fn digit<'a>(job: &'a Value, name: &str) -> &'a Value {
    job["digits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap()
}

#[test]
fn a_drill_from_the_primary_is_recorded_and_status_shows_it() {
    let (e, src) = job_world(40);
    let sb = e.path("sandbox");
    fs::create_dir(&sb).unwrap();
    let repo_before = listing(&e.repo);
    let src_before = listing(&src);
    let s = status(&e);
    assert_eq!(digit(&s["jobs"][0], "drill")["state"], "short", "{s:#}");

    let o = drill(&e, &sb, &["--sample", "10%"], 0);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(": ok"), "{out}");
    assert!(out.contains("4 of 40 files"), "ceil(10% of 40): {out}");
    let d = &drills(&e)[0];
    assert_eq!(
        (d.outcome, d.files, d.job.as_deref()),
        (DrillOutcome::Ok, 4, Some("etc"))
    );
    assert!(d.medium_id.is_none() && d.bytes > 0 && d.seconds > 0.0);
    assert!(
        listing(&sb).is_empty(),
        "sandbox removed: {:?}",
        listing(&sb)
    );

    let v: Value =
        serde_json::from_slice(&drill(&e, &sb, &["--json", "--full"], 0).stdout).unwrap();
    assert_eq!(v["drill"]["outcome"], "ok");
    assert_eq!(v["drill"]["mode"], "full");
    assert_eq!(v["drill"]["files"], 40);
    assert_eq!(v["report"]["files_in_snapshot"], 40);
    assert_eq!(v["from"], "primary");
    assert!(listing(&sb).is_empty());

    // The default sample is 5%, at least one file; against the source, nothing changed.
    let o = drill(&e, &sb, &["--against-source"], 0);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("2 of 40 files"), "{out}");
    assert!(
        out.contains("2 compared, 2 same, 0 changed, 0 gone"),
        "{out}"
    );

    let s = status(&e);
    let job = &s["jobs"][0];
    assert_eq!(digit(job, "drill")["state"], "ok", "{job:#}");
    assert_eq!(s["level"], "ok", "{s:#}");
    let primary = &job["copies"][0];
    assert_eq!(primary["where"], "primary");
    assert!(
        primary["rto_seconds"].as_f64().unwrap() > 0.0,
        "{primary:#}"
    );
    assert_eq!(primary["last_drill"]["outcome"], "ok");
    let table = String::from_utf8_lossy(&run(&e, &["status"]).stdout).into_owned();
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with("primary"))
        .unwrap();
    assert!(
        !row.contains("unknown") && !row.contains("never"),
        "{table}"
    );

    // Nothing was left in the repository or the source.
    assert_eq!(listing(&e.repo), repo_before);
    assert_eq!(listing(&src), src_before);
}

#[test]
fn against_the_source_counts_changes_and_fails_past_the_tolerance() {
    let (e, src) = job_world(10);
    let sb = e.path("sandbox");
    fs::create_dir(&sb).unwrap();
    fs::write(src.join("sub/f0"), "changed").unwrap();
    fs::remove_file(src.join("sub/f1")).unwrap();
    let args = [
        "--sample",
        "100%",
        "--against-source",
        "--max-changed",
        "30%",
    ];
    let o = drill(&e, &sb, &args, 0);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("10 compared, 8 same, 1 changed, 1 gone"),
        "{out}"
    );
    let args = [
        "--sample",
        "100%",
        "--against-source",
        "--max-changed",
        "10%",
    ];
    let o = drill(&e, &sb, &args, 1);
    assert!(String::from_utf8_lossy(&o.stdout).contains("(more than 10% differ)"));
    let d = &drills(&e)[0];
    assert_eq!(d.outcome, DrillOutcome::Failed);
    assert!(d.message.as_deref().unwrap().contains("1 changed, 1 gone"));
    assert!(listing(&sb).is_empty());
}

#[test]
fn a_damaged_primary_fails_the_drill_names_the_file_and_is_not_counted() {
    let (e, src) = job_world(3);
    let sb = e.path("sandbox");
    fs::create_dir(&sb).unwrap();
    drill(&e, &sb, &["--full"], 0);
    flip_a_byte(&e.repo);
    let o = drill(&e, &sb, &["--full", "--keep"], 13);
    let err = String::from_utf8_lossy(&o.stderr);
    let named = (0..3).any(|i| err.contains(&format!("{}/sub/f{i}: damaged", src.display())));
    assert!(named, "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("DAMAGED"));
    assert!(err.contains("the sandbox is kept at"), "--keep: {err}");
    assert!(
        listing(&sb)[0].starts_with("./bakfs-drill-"),
        "{:?}",
        listing(&sb)
    );
    let d = &drills(&e)[0];
    assert_eq!(d.outcome, DrillOutcome::Damaged);
    assert!(d.message.as_deref().unwrap().contains("damaged"), "{d:?}");
    let s = status(&e);
    let primary = &s["jobs"][0]["copies"][0];
    assert_eq!(primary["counted"], false, "{primary:#}");
    assert_eq!(digit(&s["jobs"][0], "copies")["have"], 0);
    assert_eq!(digit(&s["jobs"][0], "drill")["state"], "short");
}

/// A tmpfs of 1 MiB, unmounted on drop.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_sandbox_on_a_full_filesystem_fails_clearly_and_leaves_nothing() {
    if !have_root("a_sandbox_on_a_full_filesystem_fails_clearly_and_leaves_nothing") {
        return;
    }
    let (e, _src) = job_world(40);
    let small = e.path("small");
    fs::create_dir(&small).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=1m tmpfs {}",
        small.display()
    ));
    let _t = Tmpfs(small.clone());
    let o = drill(&e, &small, &["--full"], 1);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bytes free"),
        "{}",
        text(&o)
    );
    let d = &drills(&e)[0];
    assert_eq!(d.outcome, DrillOutcome::Failed);
    assert!(d
        .message
        .as_deref()
        .unwrap()
        .contains("choose a sandbox with room"));
    assert!(listing(&small).is_empty(), "{:?}", listing(&small));
    // A drill that fits still runs there.
    drill(&e, &small, &["--sample", "1%"], 0);
    assert!(listing(&small).is_empty());
}

#[test]
fn a_wrong_password_fails_the_drill_and_is_recorded() {
    let (e, _src) = job_world(2);
    let sb = e.path("sandbox");
    fs::create_dir(&sb).unwrap();
    let o = e
        .cmd()
        .env("BAKFS_PASSWORD", "wrong")
        .args(["--config", e.path("bakfs.toml").to_str().unwrap()])
        .args(["drill", "--sandbox", sb.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(12), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("wrong password"));
    let d = &drills(&e)[0];
    assert_eq!(d.outcome, DrillOutcome::Failed);
    assert!(d.message.as_deref().unwrap().contains("wrong password"));
    assert!(listing(&sb).is_empty());
    let s = status(&e);
    assert_eq!(
        digit(&s["jobs"][0], "drill")["state"],
        "short",
        "a failed drill proves nothing"
    );
}

/// A job's `drill_check` runs in the restored tree and in the live source; the drill is full by
/// default, ok while both say the same, and fails (exit 1, recorded `failed`, the outputs named)
/// once the live key differs from the backed up one.
#[test]
fn a_jobs_drill_check_must_say_the_same_on_the_restored_tree_and_the_live_source() {
    let e = Env::init();
    let src = e.path("keys");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("node.key"), b"the node's secret key\n").unwrap();
    for i in 0..30 {
        write_random(&src.join(format!("other{i}")), 1_000, i);
    }
    let config = e.path("bakfs.toml");
    fs::write(
        &config,
        format!(
            "[jobs.keys]\npaths = [{src:?}]\n\
             drill_check = 'sha256sum < \"$BAKFS_ROOT\"/{rel:?}/node.key'\n",
            src = src.display().to_string(),
            rel = src.strip_prefix("/").unwrap().display().to_string(),
        ),
    )
    .unwrap();
    e.ok(&[
        "--config",
        config.to_str().unwrap(),
        "backup",
        "--job",
        "keys",
    ]);
    let sb = e.path("sandbox");
    fs::create_dir_all(&sb).unwrap();
    let o = drill(&e, &sb, &["--job", "keys"], 0);
    let t = text(&o);
    assert!(
        t.contains("drill check `sha256sum")
            && t.contains("the same on the restored tree and the live source"),
        "{t}"
    );
    let d = &drills(&e)[0];
    assert_eq!(
        d.mode,
        bakfs_core::catalog::DrillMode::Full,
        "full by default"
    );
    assert_eq!(d.files, 31, "{d:?}");

    // The live key changed (a new key never backed up): the check tells.
    fs::write(src.join("node.key"), b"another key\n").unwrap();
    let o = drill(&e, &sb, &["--job", "keys"], 1);
    let t = text(&o);
    assert!(t.contains("the restored tree gives"), "{t}");
    let d = &drills(&e)[0];
    assert_eq!(d.outcome, DrillOutcome::Failed, "{d:?}");
    assert!(
        d.message.as_deref().unwrap().contains("drill check"),
        "{d:?}"
    );
    assert_eq!(listing(&sb), Vec::<String>::new(), "the sandbox is removed");
    // A sample drill does not run it, and says so.
    let o = drill(&e, &sb, &["--job", "keys", "--sample", "10%"], 0);
    assert!(
        text(&o).contains("drill_check runs on full drills only"),
        "{}",
        text(&o)
    );
}
