//! A bucket as a medium, through the real binaries against a real S3 server (s3s-fs on
//! 127.0.0.1): `bakfs media enroll-bucket`, bakfs-mediad copying the primary's new snapshots
//! there without the key (once and as a daemon), the medium's retention, a damaged object found
//! and copied again, a restore from the bucket alone, and `bakfs status` counting it.
#![allow(clippy::unwrap_used)]

#[path = "media_harness.rs"]
mod media_harness;
#[path = "s3_harness.rs"]
mod s3_harness;

use std::fs;
use std::path::{Path, PathBuf};

use bakfs_e2e::{both, rsync_diff, write_random, Env};
use media_harness::{held, mediad_cmd, runs, show, wait_run, Mediad};
use s3_harness::{have_s3, S3Server, ACCESS_KEY, SECRET_KEY};

fn creds() -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
        ("AWS_REGION".into(), "us-east-1".into()),
    ]
}

/// A primary repository on disk and the bucket's credentials in every command's environment.
fn primary() -> Env {
    let mut e = Env::init();
    e.vars = creds();
    e
}

/// A configuration with one job, `etc`, backing up `src` (what `bakfs status` judges).
fn config(e: &Env, src: &Path) -> PathBuf {
    let p = e.path("bakfs.toml");
    let text = format!(
        "repository = {:?}\n\n[jobs.etc]\npaths = [{:?}]\nrpo = \"1d\"\n",
        e.repo.display().to_string(),
        src.display().to_string()
    );
    fs::write(&p, text).unwrap();
    p
}

/// `bakfs backup --job etc`; returns the snapshot id.
fn backup(e: &Env, cfg: &Path) -> String {
    let o = e.run_with_config(cfg, &["--json", "backup", "--job", "etc"]);
    assert!(o.status.success(), "{}", both(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// `bakfs-mediad --once`: the copies due now, then exit. Its log is returned.
fn mediad_once(e: &Env, extra: &[&str]) -> String {
    let o = mediad_cmd(e, &e.path("media"))
        .arg("--once")
        .args(extra)
        .output()
        .unwrap();
    let log = both(&o);
    assert!(o.status.success(), "bakfs-mediad --once failed:\n{log}");
    log
}

/// Restores `snapshot` from the bucket alone (no primary, no catalog) and compares it.
fn restores_from_bucket(e: &Env, loc: &str, snapshot: &str, src: &Path) {
    let target = e.path(&format!("from-bucket-{snapshot}"));
    let o = e
        .cmd()
        .env("BAKFS_REPO", loc)
        .env("BAKFS_STATE_DIR", e.path("elsewhere-state"))
        .env("BAKFS_CACHE_DIR", e.path("elsewhere-cache"))
        .args(["restore", snapshot, "--target", target.to_str().unwrap()])
        .arg("--verify")
        .output()
        .unwrap();
    assert!(o.status.success(), "restore from {loc}: {}", both(&o));
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(rsync_diff(src, &restored), "", "restored tree differs");
}

/// Every object file under the bucket's prefix `data/`.
fn packs_in(root: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for d in fs::read_dir(root.join("data")).unwrap().flatten() {
        for f in fs::read_dir(d.path()).unwrap().flatten() {
            v.push(f.path());
        }
    }
    v.sort();
    v
}

fn digit<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["jobs"][0]["digits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap()
}

#[test]
fn a_bucket_gets_new_snapshots_keeps_its_retention_and_restores_alone() {
    if !have_s3("a_bucket_gets_new_snapshots_keeps_its_retention_and_restores_alone") {
        return;
    }
    let s3 = S3Server::start();
    let e = primary();
    let src = e.path("src");
    fs::create_dir_all(src.join("keys")).unwrap();
    write_random(&src.join("big.bin"), 5 << 20, 1);
    write_random(&src.join("keys/node.skey"), 4096, 2);
    fs::write(src.join("notes.txt"), "one\n").unwrap();
    let cfg = config(&e, &src);
    let s1 = backup(&e, &cfg);

    // Refused: another scheme, refused credentials (their own exit code).
    let out = e.fails(&["media", "enroll-bucket", "gs://b/x", "--label", "X"], 1);
    assert!(out.contains("not an s3: location"), "{out}");
    let loc = s3.location("offsite/host-a");
    let o = e
        .cmd()
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .args(["media", "enroll-bucket", &loc, "--label", "CLOUD-1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(14), "{}", both(&o));
    assert!(e.json(&["media", "list"]).as_array().unwrap().is_empty());

    // Enrolled: the bucket did not exist and is created; the identity is an object.
    let v = e.json(&[
        "media",
        "enroll-bucket",
        &loc,
        "--label",
        "CLOUD-1",
        "--keep-last",
        "2",
    ]);
    assert_eq!(
        (&v["kind"], &v["location"], &v["bucket"]),
        (
            &"object storage".into(),
            &"offsite".into(),
            &loc.as_str().into()
        ),
        "{v}"
    );
    let root = s3.object("offsite", "host-a");
    assert!(root.join("medium.json").is_file());
    // Twice the same place, or a place inside it, is refused.
    let out = e.fails(
        &[
            "media",
            "enroll-bucket",
            &format!("{loc}/sub"),
            "--label",
            "CLOUD-2",
        ],
        1,
    );
    assert!(out.contains("already enrolled as CLOUD-1"), "{out}");

    // mediad copies the snapshot there (without the password), verified object by object.
    let log = mediad_once(&e, &[]);
    assert!(log.contains("CLOUD-1 has its copy"), "{log}");
    let run = &runs(&e, "CLOUD-1")[0];
    assert_eq!(run["outcome"], "ok", "{run}");
    assert_eq!(held(&e, "CLOUD-1"), vec![s1.clone()]);
    for note in ["config", "ledger.json", "RUNBOOK.md"] {
        assert!(root.join(note).is_file(), "{note} in the bucket");
    }
    let first_bytes = run["bytes_written"].as_u64().unwrap();
    assert!(first_bytes > 5 << 20, "{run}");
    for p in packs_in(&root) {
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(blake3::hash(&fs::read(&p).unwrap()).to_hex().as_str(), name);
    }
    restores_from_bucket(&e, &loc, &s1, &src);

    // Two more snapshots, one changed file each: only what the bucket lacks is sent, and its
    // retention (the last 2) removes the first.
    fs::write(src.join("notes.txt"), "two\n").unwrap();
    let s2 = backup(&e, &cfg);
    fs::write(src.join("notes.txt"), "three\n").unwrap();
    let s3id = backup(&e, &cfg);
    mediad_once(&e, &[]);
    let run = &runs(&e, "CLOUD-1")[0];
    assert_eq!(run["outcome"], "ok", "{run}");
    assert!(run["bytes_written"].as_u64().unwrap() < 1 << 20, "{run}");
    let mut want = vec![s2.clone(), s3id.clone()];
    want.sort();
    assert_eq!(held(&e, "CLOUD-1"), want);
    assert!(!root.join("snapshots").join(&s1).exists());

    // A pack damaged in the bucket (same size, other bytes) is found when its check is due,
    // and copied again.
    let pack = packs_in(&root)
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    bytes[1000] ^= 0xff;
    fs::write(&pack, &bytes).unwrap();
    let log = mediad_once(&e, &["--reverify-after", "0d"]);
    let run = &runs(&e, "CLOUD-1")[0];
    assert_eq!(run["outcome"], "ok", "{run}\n{log}");
    let name = pack.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        blake3::hash(&fs::read(&pack).unwrap()).to_hex().as_str(),
        name,
        "the damaged pack was not copied again:\n{log}"
    );
    restores_from_bucket(&e, &loc, &s3id, &src);

    // A drill of the bucket alone (the password, no primary) is recorded for it.
    let o = e.run_with_config(&cfg, &["--json", "drill", "--medium", "CLOUD-1"]);
    assert!(o.status.success(), "{}", both(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&v["drill"]["outcome"], &v["from"]),
        (&"ok".into(), &"CLOUD-1".into()),
        "{v}"
    );

    // `bakfs status`: an offsite copy of its own kind, online (not an offline copy).
    let o = e.run_with_config(&cfg, &["--json", "status"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = &st["media"][0];
    assert_eq!(
        (&m["kind"], &m["presence"]),
        (&"object storage".into(), &"plugged in".into()),
        "{st}"
    );
    assert_eq!(digit(&st, "offsite")["have"], 1, "{st}");
    assert_eq!(digit(&st, "kinds")["have"], 2, "{st}");
    assert_eq!(digit(&st, "offline")["have"], 0, "{st}");
}

#[test]
fn the_daemon_copies_each_new_snapshot_and_retries_a_bucket_that_was_down() {
    if !have_s3("the_daemon_copies_each_new_snapshot_and_retries_a_bucket_that_was_down") {
        return;
    }
    let mut s3 = S3Server::start();
    let mut e = primary();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("a.bin"), 1 << 20, 3);
    let bcfg = config(&e, &src);
    let s1 = backup(&e, &bcfg);
    let loc = s3.location("fleet/copies");
    e.ok(&["media", "enroll-bucket", &loc, "--label", "CLOUD-1"]);
    // The daemon's keys are in its configuration, not its environment.
    let secret = e.path("s3.secret");
    fs::write(&secret, format!("{SECRET_KEY}\n")).unwrap();
    let cfg = e.path("mediad.toml");
    let text = format!(
        "[mediad]\nshare_retry = \"2s\"\n\n[s3]\naccess_key_id = {ACCESS_KEY:?}\n\
         secret_access_key_file = {:?}\nregion = \"us-east-1\"\n",
        secret.display().to_string()
    );
    fs::write(&cfg, text).unwrap();
    let vars = std::mem::take(&mut e.vars);
    let mut d = Mediad::start_with(&e, None, &["--config", cfg.to_str().unwrap()]);
    e.vars = vars;
    // At start: its copy.
    let run = wait_run(&e, "CLOUD-1", 0);
    assert_eq!(run["outcome"], "ok", "{run}");
    assert_eq!(held(&e, "CLOUD-1"), vec![s1.clone()]);

    // The server is down when a snapshot is made: the job fails and is tried again.
    s3.kill();
    fs::write(src.join("b.txt"), "second").unwrap();
    let s2 = backup(&e, &bcfg);
    let run = wait_run(&e, "CLOUD-1", 1);
    assert_ne!(run["outcome"], "ok", "{run}");
    assert_eq!(show(&e, "CLOUD-1")["state"], "failed");
    s3.restart();
    let run = wait_run(&e, "CLOUD-1", 2);
    assert_eq!(run["outcome"], "ok", "{run}\n{}", d.log_text());
    let mut want = vec![s1, s2];
    want.sort();
    assert_eq!(held(&e, "CLOUD-1"), want);
    assert_eq!(d.stop(), Some(0));
    let log = d.log_text();
    assert!(log.contains("CLOUD-1 has its copy"), "{log}");
}

/// Hosts enrolling one bucket location at once, the bucket not made yet: none trips over the
/// bucket another made a moment before (409 BucketAlreadyExists was an error), each gets a clear
/// answer, and the identity in the bucket is a winner's. s3s-fs checks If-None-Match and then
/// writes, not atomically, so two could both win here; on servers that write create-only
/// atomically (AWS S3, MinIO) one does (design.md §4.4).
#[test]
fn hosts_enrolling_one_bucket_at_once_get_clear_answers() {
    if !have_s3("hosts_enrolling_one_bucket_at_once_get_clear_answers") {
        return;
    }
    let s3 = S3Server::start();
    // Four hosts, each with its own primary and catalog.
    let hosts: Vec<Env> = (0..4).map(|_| primary()).collect();
    for round in 0..3 {
        let loc = s3.location(&format!("shared-{round}/copies"));
        let children: Vec<_> = hosts
            .iter()
            .enumerate()
            .map(|(i, e)| {
                e.cmd()
                    .args(["media", "enroll-bucket", &loc])
                    .args(["--label", &format!("CLOUD-{round}-{i}")])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outs: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let all = || outs.iter().map(both).collect::<Vec<_>>();
        let won: Vec<usize> = (0..4).filter(|&i| outs[i].status.success()).collect();
        assert!(!won.is_empty(), "round {round}: {:?}", all());
        for o in outs.iter().filter(|o| !o.status.success()) {
            let err = both(o);
            assert!(
                err.contains("already there") || err.contains("first"),
                "round {round}: {err}"
            );
        }
        let ident =
            fs::read_to_string(s3.root().join(format!("shared-{round}/copies/medium.json")))
                .unwrap();
        assert!(
            won.iter()
                .any(|i| ident.contains(&format!("\"CLOUD-{round}-{i}\""))),
            "round {round}: {ident}\n{:?}",
            all()
        );
    }
}
