//! Telling someone, through the real `bakfs` binary: heartbeats around each configured job to a
//! real HTTP monitor on 127.0.0.1 (success, a failed job, a repository that cannot be opened, a
//! monitor that is down and one that hangs), and the metrics textfile (`bakfs metrics`, and
//! refreshed by every backup).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use bakfs_e2e::monitor_server::{server, Answer, Seen, Server};
use bakfs_e2e::{both, Env};

/// A repository, a tree to back up and a configuration whose job `etc` tells the healthchecks
/// check at `{hc}` and whose every job tells the webhook at `{hook}`; metrics go to
/// `metrics/bakfs.prom`.
struct World {
    e: Env,
    cfg: PathBuf,
    srv: Server,
}

impl World {
    fn new(extra: &str) -> World {
        let e = Env::init();
        let srv = server();
        fs::create_dir_all(e.path("src/sub")).unwrap();
        fs::write(e.path("src/a.conf"), b"alpha\n").unwrap();
        fs::write(e.path("src/sub/b.conf"), b"beta\n").unwrap();
        fs::create_dir_all(e.path("metrics")).unwrap();
        let cfg = e.path("bakfs.toml");
        fs::write(
            &cfg,
            format!(
                r#"heartbeats = [{{ kind = "webhook", url = "{url}/hook" }}]
[jobs.etc]
paths = ["{src}"]
rpo = "1d"
heartbeats = [{{ kind = "healthchecks", url = "{url}/ping/etc" }}]
[policy]
drill_within = "off"
[metrics]
textfile = "{metrics}"
{extra}"#,
                url = srv.url,
                src = e.path("src").display(),
                metrics = e.path("metrics/bakfs.prom").display(),
            ),
        )
        .unwrap();
        World { e, cfg, srv }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.e.run_with_config(&self.cfg, args)
    }

    fn seen(&self) -> Vec<Seen> {
        self.srv.seen.lock().unwrap().clone()
    }

    /// Waits until the monitor has seen `n` requests.
    fn wait_for(&self, n: usize) -> Vec<Seen> {
        let until = Instant::now() + Duration::from_secs(30);
        while self.seen().len() < n {
            assert!(Instant::now() < until, "only {:?}", self.seen());
            std::thread::sleep(Duration::from_millis(20));
        }
        self.seen()
    }

    fn metrics(&self) -> String {
        fs::read_to_string(self.e.path("metrics/bakfs.prom")).unwrap()
    }
}

fn path_of(s: &Seen) -> &str {
    s.target.split('?').next().unwrap()
}

fn rid(s: &Seen) -> &str {
    s.target.split_once("rid=").unwrap().1
}

#[test]
fn a_job_pings_start_and_success_with_its_run_id_and_the_metrics_follow() {
    let w = World::new("");
    let o = w.run(&["backup", "--job", "etc"]);
    assert!(o.status.success(), "{}", both(&o));
    let seen = w.wait_for(4);
    let hc: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.target.starts_with("/ping/etc"))
        .collect();
    assert_eq!(hc.len(), 2, "{seen:?}");
    assert_eq!(path_of(hc[0]), "/ping/etc/start");
    assert_eq!(path_of(hc[1]), "/ping/etc", "success is the bare URL");
    assert_eq!(rid(hc[0]), rid(hc[1]), "one run id pairs start and end");
    assert!(
        hc[1].body.contains("snapshot ") && hc[1].body.contains("saved for job etc"),
        "the body says what happened: {:?}",
        hc[1].body
    );
    let hooks: Vec<serde_json::Value> = seen
        .iter()
        .filter(|s| s.target == "/hook")
        .map(|s| serde_json::from_str(&s.body).unwrap())
        .collect();
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[0]["event"], "start");
    assert_eq!(hooks[1]["event"], "success");
    assert_eq!(hooks[1]["subject"], "etc");
    assert_eq!(hooks[1]["exit_status"], 0);
    // Nothing left in the outbox.
    let outbox = w.e.state.join("heartbeats.jsonl");
    assert_eq!(fs::read_to_string(outbox).unwrap_or_default(), "");

    // The backup refreshed the metrics file; `bakfs metrics` prints the same figures.
    let m = w.metrics();
    assert!(
        m.contains("bakfs_job_rpo_state{job=\"etc\",state=\"ok\"} 1"),
        "{m}"
    );
    assert!(m.contains("bakfs_job_last_run_ok{job=\"etc\"} 1"), "{m}");
    assert!(
        m.contains("bakfs_job_verified_copies{job=\"etc\"} 1"),
        "{m}"
    );
    let o = w.run(&["metrics"]);
    assert!(o.status.success(), "{}", both(&o));
    let printed = String::from_utf8(o.stdout).unwrap();
    assert!(
        printed.contains("# TYPE bakfs_job_level gauge"),
        "{printed}"
    );
    let other = w.e.path("other.prom");
    let o = w.run(&["metrics", "--textfile", other.to_str().unwrap()]);
    assert!(o.status.success(), "{}", both(&o));
    assert!(fs::read_to_string(other)
        .unwrap()
        .contains("bakfs_job_rpo_seconds{job=\"etc\"} 86400"));
    // A drill refreshes them too.
    let o = w.run(&[
        "drill",
        "--job",
        "etc",
        "--full",
        "--sandbox",
        w.e.path("").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", both(&o));
    let m = w.metrics();
    assert!(
        m.contains("bakfs_job_last_drill_timestamp_seconds{job=\"etc\"}"),
        "{m}"
    );
    assert!(
        m.contains("bakfs_copy_restore_estimate_seconds{job=\"etc\",where=\"primary\"}"),
        "{m}"
    );
}

#[test]
fn a_failed_job_pings_its_exit_status_with_the_reason_and_a_missing_repository_too() {
    let w = World::new(
        r#"[jobs.dump]
command = ["sh", "-c", "echo half; echo 'pg_dump: connection refused' >&2; exit 2"]
heartbeats = [{ kind = "healthchecks", url = "URL/ping/dump" }]
"#,
    );
    let cfg = fs::read_to_string(&w.cfg)
        .unwrap()
        .replace("URL", &w.srv.url);
    fs::write(&w.cfg, cfg).unwrap();
    let o = w.run(&["backup", "--job", "dump"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let seen = w.wait_for(4);
    let fail = seen
        .iter()
        .find(|s| s.target.starts_with("/ping/dump/1?"))
        .unwrap_or_else(|| panic!("no /fail with exit status 1: {seen:?}"));
    assert!(
        fail.body.contains("exited with status 2"),
        "the reason: {:?}",
        fail.body
    );
    assert!(
        fail.body.contains("pg_dump: connection refused"),
        "the log's tail: {:?}",
        fail.body
    );
    let hook = seen
        .iter()
        .filter(|s| s.target == "/hook")
        .map(|s| serde_json::from_str::<serde_json::Value>(&s.body).unwrap())
        .find(|v| v["event"] == "failure")
        .unwrap();
    assert_eq!(hook["subject"], "dump");
    assert_eq!(hook["exit_status"], 1);

    // The repository is gone: the job never starts, and its monitors hear why, with the exit
    // status bakfs exits with (10: no repository).
    fs::rename(&w.e.repo, w.e.path("repo.away")).unwrap();
    w.srv.seen.lock().unwrap().clear();
    let o = w.run(&["backup", "--job", "etc"]);
    assert_eq!(o.status.code(), Some(10), "{}", both(&o));
    let seen = w.wait_for(3);
    let fail = seen
        .iter()
        .find(|s| s.target.starts_with("/ping/etc/10?"))
        .unwrap_or_else(|| panic!("no failure ping with status 10: {seen:?}"));
    assert!(fail.body.contains("repo"), "{:?}", fail.body);
}

#[test]
fn a_monitor_down_or_hanging_never_fails_or_holds_a_backup_and_its_pings_go_later() {
    let w = World::new("");
    // Down: every request answered 503. The backup succeeds; the pings wait in the outbox.
    *w.srv.answer.lock().unwrap() = Answer::Status(503);
    let o = w.run(&["backup", "--job", "etc"]);
    assert!(o.status.success(), "{}", both(&o));
    let outbox = w.e.state.join("heartbeats.jsonl");
    let kept = fs::read_to_string(&outbox).unwrap();
    assert_eq!(
        kept.lines().count(),
        4,
        "start and success, to two monitors: {kept}"
    );

    // Hanging: the backup still ends within the bounded wait (5 s) beyond its own time.
    *w.srv.answer.lock().unwrap() = Answer::Hold;
    let t = Instant::now();
    let o = w.run(&["backup", "--job", "etc"]);
    let took = t.elapsed();
    assert!(o.status.success(), "{}", both(&o));
    assert!(
        took < Duration::from_secs(30),
        "a hanging monitor held the backup for {took:?}"
    );
    // Let the held request go, then the monitor is back: the next run sends everything kept,
    // oldest first.
    *w.srv.answer.lock().unwrap() = Answer::Status(200);
    w.srv.release.send(()).unwrap();
    w.srv.seen.lock().unwrap().clear();
    let o = w.run(&["backup", "--job", "etc"]);
    assert!(o.status.success(), "{}", both(&o));
    let until = Instant::now() + Duration::from_secs(30);
    while fs::read_to_string(&outbox).unwrap_or_default() != "" {
        assert!(
            Instant::now() < until,
            "{}",
            fs::read_to_string(&outbox).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let starts = w
        .seen()
        .iter()
        .filter(|s| s.target.starts_with("/ping/etc/start"))
        .count();
    assert!(starts >= 2, "the kept starts went out: {:?}", w.seen());
}
