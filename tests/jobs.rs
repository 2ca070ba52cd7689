//! Jobs that make their own data: a job's `command` whose output is its snapshot's one file, and
//! the `before` and `after` commands around a job, through the real `bakfs` binary and real
//! processes (exit statuses, signals, timeouts, process groups, memory on a large stream).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use bakfs_e2e::{both, text, Env};

/// A generator of deterministic bytes: `gen.py LENGTH SEED [EXIT]` writes LENGTH bytes drawn
/// from SEED in 1 MiB pieces, then exits with EXIT (0 by default).
const GEN: &str = r#"
import random, sys
n, seed = int(sys.argv[1]), int(sys.argv[2])
r, out = random.Random(seed), sys.stdout.buffer
while n > 0:
    k = min(n, 1 << 20)
    out.write(r.randbytes(k))
    n -= k
out.flush()
sys.exit(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
"#;

/// A scratch world whose configuration holds `jobs` (TOML, `{gen}` standing for the generator's
/// path and `{dir}` for the scratch directory); the repository is initialised.
struct Jobs {
    e: Env,
    cfg: PathBuf,
}

impl Jobs {
    fn new(jobs: &str) -> Jobs {
        let e = Env::init();
        let gen = e.path("gen.py");
        fs::write(&gen, GEN).unwrap();
        let cfg = e.path("bakfs.toml");
        let jobs = jobs
            .replace("{gen}", &gen.display().to_string())
            .replace("{dir}", &e.dir.path().display().to_string());
        fs::write(&cfg, jobs).unwrap();
        Jobs { e, cfg }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.e.path(rel)
    }

    /// Runs bakfs with the configuration (repository and password from the environment).
    fn run(&self, args: &[&str]) -> Output {
        self.e.run_with_config(&self.cfg, args)
    }

    fn ok(&self, args: &[&str]) -> Output {
        let o = self.run(args);
        assert!(o.status.success(), "bakfs {args:?}: {}", both(&o));
        o
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_slice(&self.ok(&a).stdout).unwrap()
    }

    fn snapshots(&self) -> Vec<serde_json::Value> {
        self.json(&["snapshots"]).as_array().unwrap().clone()
    }

    /// The newest run in the catalog.
    fn last_run(&self) -> serde_json::Value {
        self.json(&["catalog", "runs", "--limit", "1"])[0].clone()
    }
}

/// What `gen.py len seed` writes.
fn generated(j: &Jobs, len: usize, seed: u64) -> Vec<u8> {
    let o = std::process::Command::new("python3")
        .arg(j.path("gen.py"))
        .args([len.to_string(), seed.to_string()])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(o.stdout.len(), len);
    o.stdout
}

/// Whether process `pid` still runs (a zombie does not).
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => false,
    }
}

fn pid_in(file: &Path) -> i32 {
    fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_dump_job_stores_the_commands_output_byte_for_byte() {
    let j = Jobs::new(
        r#"
[jobs.production]
command = ["python3", "{gen}", "20000000", "7"]
stdin_name = "production.dump"
tags = ["db"]
env = { WHERE = "the job's env" }
before = [{ command = "printf '%s|%s|%s' \"$WHERE\" \"$BAKFS_JOB\" \"${BAKFS_PASSWORD-no password}\" > {dir}/before-saw" }]
"#,
    );
    let out = text(&j.ok(&["backup", "--job", "production"]).stdout);
    assert!(out.contains("saved for job production"), "{out}");
    let snaps = j.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["paths"], serde_json::json!(["/production.dump"]));
    assert_eq!(snaps[0]["job"], "production");
    assert_eq!(snaps[0]["tags"], serde_json::json!(["db"]));
    // Restored byte for byte, as a file of the snapshot.
    let target = j.path("restored");
    j.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let want = generated(&j, 20_000_000, 7);
    assert!(fs::read(target.join("production.dump")).unwrap() == want);
    let run = j.last_run();
    assert_eq!(run["outcome"], "ok");
    assert_eq!(run["bytes_read"], 20_000_000);
    assert_eq!(run["snapshot_id"], snaps[0]["id"]);
    // The commands get the job's variables and its name, never bakfs's password.
    assert_eq!(
        fs::read_to_string(j.path("before-saw")).unwrap(),
        "the job's env|production|no password"
    );
}

#[test]
fn a_command_that_exits_2_after_half_its_output_leaves_no_snapshot() {
    let j = Jobs::new(
        r#"
[jobs.db]
command = "python3 {gen} 8000000 3 2; echo 'pg_dump: error: query failed' >&2; exit 2"
"#,
    );
    let o = j.run(&["backup", "--job", "db"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let err = text(&o.stderr);
    assert!(err.contains("bakfs: job db: command `python3"), "{err}");
    assert!(
        err.contains("exited with status 2: pg_dump: error: query failed"),
        "{err}"
    );
    assert!(!text(&o.stdout).contains("saved"), "{}", both(&o));
    // No manifest: the repository has no snapshot, and is healthy (the packs written before
    // the failure are left for prune).
    assert!(j.snapshots().is_empty());
    assert!(fs::read_dir(j.e.repo.join("snapshots"))
        .unwrap()
        .next()
        .is_none());
    j.ok(&["check", "--read-data"]);
    let run = j.last_run();
    assert_eq!(run["outcome"], "failed");
    assert_eq!(run["snapshot_id"], serde_json::Value::Null);
    let msg = run["message"].as_str().unwrap();
    assert!(msg.starts_with("command `python3 "), "{msg}");
    assert!(msg.contains("exited with status 2"), "{msg}");
    // `catalog runs` shows it.
    let table = text(&j.ok(&["catalog", "runs"]).stdout);
    assert!(
        table.contains("failed") && table.contains("exited with status 2"),
        "{table}"
    );
}

#[test]
fn a_command_killed_by_a_signal_fails_the_job() {
    let j = Jobs::new(
        r#"
[jobs.db]
command = "python3 {gen} 3000000 4; kill -KILL $$"
"#,
    );
    let o = j.run(&["backup", "--job", "db"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        text(&o.stderr).contains("was killed by signal 9 (SIGKILL)"),
        "{}",
        both(&o)
    );
    assert!(j.snapshots().is_empty());
    let run = j.last_run();
    assert_eq!(run["outcome"], "failed");
    assert!(run["message"]
        .as_str()
        .unwrap()
        .ends_with("was killed by signal 9 (SIGKILL)"));
}

#[test]
fn a_command_past_its_timeout_is_killed_with_its_process_group() {
    let j = Jobs::new(
        r#"
[jobs.db]
command = "echo $$ > {dir}/child; sleep 600 & echo $! > {dir}/grandchild; printf 'some of it'; wait"
timeout = "2s"
"#,
    );
    let t = Instant::now();
    let o = j.run(&["backup", "--job", "db"]);
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        text(&o.stderr).contains("timed out after 2s and was killed"),
        "{}",
        both(&o)
    );
    // About the timeout: SIGTERM at 2 s ends both at once (SIGKILL would follow 5 s later).
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    for who in ["child", "grandchild"] {
        let pid = pid_in(&j.path(who));
        assert!(!alive(pid), "the {who} {pid} survived the timeout");
    }
    assert!(j.snapshots().is_empty());
    let run = j.last_run();
    assert_eq!(run["outcome"], "failed");
    assert!(run["message"]
        .as_str()
        .unwrap()
        .ends_with("timed out after 2s and was killed"));
}

#[test]
fn a_failing_before_command_stops_the_job_and_after_still_runs() {
    let j = Jobs::new(
        r#"
[jobs.db]
command = "touch {dir}/dumped; printf data"
before = [
    { command = "echo 'stopping the service'; echo 'service will not stop' >&2; exit 5" },
    { command = "touch {dir}/second-before" },
]
after = [{ command = "echo \"$BAKFS_OUTCOME ${BAKFS_SNAPSHOT-none}\" > {dir}/after-saw" }]
"#,
    );
    let o = j.run(&["backup", "--job", "db"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let err = text(&o.stderr);
    assert!(
        err.contains("before command `echo 'stopping the service'; echo 'service will not stop' >&2; exit 5` exited with status 5: service will not stop"),
        "{err}"
    );
    assert!(!j.path("second-before").exists(), "the next before ran");
    assert!(!j.path("dumped").exists(), "the command ran");
    assert_eq!(
        fs::read_to_string(j.path("after-saw")).unwrap(),
        "failed none\n"
    );
    assert!(j.snapshots().is_empty());
    let run = j.last_run();
    assert_eq!(run["outcome"], "failed");
    assert!(run["message"]
        .as_str()
        .unwrap()
        .starts_with("before command `echo 'stopping"));
}

#[test]
fn after_runs_after_a_success_and_after_a_failure_with_its_output_in_the_log() {
    let j = Jobs::new(
        r#"
[jobs.good]
command = ["printf", "good data"]
before = [{ command = "echo \"pausing for $BAKFS_JOB\"" }]
after = [{ command = "echo \"after $BAKFS_JOB: $BAKFS_OUTCOME $BAKFS_SNAPSHOT\"" }]

[jobs.bad]
command = "printf half; exit 2"
after = [{ command = "echo \"after $BAKFS_JOB: $BAKFS_OUTCOME\"; echo 'resumed, with a warning' >&2" }]

[jobs.unlucky]
command = ["printf", "fine data"]
after = [{ command = "echo 'could not restart the service' >&2; exit 7", timeout = "1min" }]
"#,
    );
    // Every job runs, the failed ones too; the log (-v) has the commands' output, each line
    // under its job's name.
    let o = j.run(&["-v", "backup", "--all-jobs"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let log = text(&o.stderr);
    let snaps = j.snapshots();
    assert_eq!(snaps.len(), 2, "good and unlucky saved a snapshot");
    let good = snaps.iter().find(|s| s["job"] == "good").unwrap();
    let good_id = good["id"].as_str().unwrap();
    for line in [
        "INFO backup{job=good}: before command: pausing for good".to_string(),
        format!("INFO backup{{job=good}}: after command: after good: ok {good_id}"),
        "INFO backup{job=bad}: after command: after bad: failed".into(),
        "WARN backup{job=bad}: after command: resumed, with a warning".into(),
        "WARN backup{job=unlucky}: after command: could not restart the service".into(),
        "bakfs: job bad: command `printf half; exit 2` exited with status 2".into(),
        "bakfs: job unlucky: after command `echo 'could not restart the service' >&2; exit 7` exited with status 7: could not restart the service".into(),
    ] {
        assert!(log.contains(&line), "{line:?} not in the log:\n{log}");
    }
    // The runs: an after command that fails fails the run, but its snapshot stands.
    let runs = j.json(&["catalog", "runs"]);
    let run = |job: &str| {
        runs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["job"] == job)
            .unwrap()
            .clone()
    };
    assert_eq!(run("good")["outcome"], "ok");
    assert_eq!(run("bad")["outcome"], "failed");
    let unlucky = run("unlucky");
    assert_eq!(unlucky["outcome"], "failed");
    assert!(unlucky["snapshot_id"].is_string());
    assert!(unlucky["message"]
        .as_str()
        .unwrap()
        .starts_with("after command `echo 'could not restart"));
    let o = j.ok(&["dump", good_id, "/good"]);
    assert_eq!(o.stdout, b"good data");
}

#[test]
fn a_one_gib_dump_is_stored_in_bounded_memory() {
    // Peak RSS bounds memory, not time: the run may take minutes on a slow machine.
    let j = Jobs::new(
        r#"
[jobs.big]
command = ["python3", "{gen}", "1073741824", "11"]
"#,
    );
    let rss = j.path("rss");
    let o = std::process::Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&rss)
        .arg(bakfs_e2e::bin("bakfs"))
        .arg("--config")
        .arg(&j.cfg)
        .args(["backup", "--job", "big"])
        .envs(j.e.cmd().get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .env_remove("BAKFS_PASSWORD_FILE")
        .env_remove("BAKFS_CONFIG")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", both(&o));
    let kib: u64 = fs::read_to_string(&rss)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eprintln!("peak RSS of a 1 GiB dump job: {} MiB", kib / 1024);
    assert!(
        kib < 300 * 1024,
        "peak RSS {} MiB for a 1 GiB dump",
        kib / 1024
    );
    let run = j.last_run();
    assert_eq!(run["outcome"], "ok");
    assert_eq!(run["bytes_read"], 1u64 << 30);
}
