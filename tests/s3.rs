//! Repositories in an S3 bucket, through the real `bakfs` binary against a real S3 server
//! (s3s-fs on 127.0.0.1): round trips, request counts, refused credentials, a missing bucket,
//! unknown schemes, injected 503s and a slow server, the server killed mid-backup, several hosts
//! at once with a prune, locks judged by the server's clock, and an incomplete multipart upload
//! left behind.
#![allow(clippy::unwrap_used)]

#[path = "s3_harness.rs"]
mod s3_harness;

use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use bakfs_e2e::{both, rsync_diff, write_random, Env};
use s3_harness::{age_object, have_s3, FaultProxy, S3Server, ACCESS_KEY, SECRET_KEY};

/// An environment whose repository is `location`, with the server's credentials.
fn s3_env(location: &str) -> Env {
    let mut e = Env::new();
    e.repo = location.into();
    e.vars = vec![
        ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
        ("AWS_REGION".into(), "us-east-1".into()),
    ];
    e
}

/// A small tree: random files (some sharing content), a nested directory, a symlink.
fn tree(e: &Env, name: &str, seed: u64) -> std::path::PathBuf {
    let src = e.path(name);
    fs::create_dir_all(src.join("etc/keys")).unwrap();
    write_random(&src.join("big.bin"), 6 << 20, seed);
    write_random(&src.join("etc/keys/node.skey"), 4096, seed + 1);
    write_random(&src.join("shared.bin"), 2 << 20, 7);
    fs::write(src.join("etc/notes.txt"), format!("host {name}\n")).unwrap();
    std::os::unix::fs::symlink("etc/notes.txt", src.join("link")).unwrap();
    src
}

fn restore_equal(e: &Env, snapshot: &str, src: &Path) {
    let target = e.path(&format!("restore-{snapshot}"));
    e.ok(&[
        "restore",
        snapshot,
        "--target",
        target.to_str().unwrap(),
        "--verify",
    ]);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(rsync_diff(src, &restored), "", "restored tree differs");
}

/// How many files are under `dir`.
fn walk_files(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| if p.is_dir() { walk_files(&p) } else { 1 })
        .sum()
}

/// The request counts the backend logs at `-v` when it is dropped.
fn requests(o: &Output) -> (u64, u64, u64) {
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("requests to s3:"))
        .unwrap_or_else(|| panic!("no request counts in:\n{err}"));
    let count = |k: &str| -> u64 {
        let at = line.find(&format!("{k}=")).unwrap() + k.len() + 1;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (count("get"), count("put"), count("list"))
}

#[test]
fn a_bucket_repository_round_trips() {
    if !have_s3("a_bucket_repository_round_trips") {
        return;
    }
    let s = S3Server::start();
    let e = s3_env(&s.location("backups/hosts/validator-1"));
    let out = e.ok(&["init"]);
    assert!(out.contains("created repository"), "{out}");
    // s3s-fs honours If-None-Match: *, and init asked.
    assert!(out.contains("honours create-only writes"), "{out}");
    assert!(s.root().join("backups").is_dir(), "init made no bucket");
    // A second init into the same prefix is refused.
    let err = e.fails(&["init"], 1);
    assert!(err.contains("already there"), "{err}");

    let src = tree(&e, "src", 1);
    let first = e.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(first["summary"]["incomplete"], false);
    // Objects keep the local layout under the prefix.
    let prefix = s.root().join("backups/hosts/validator-1");
    for d in ["config", "keys", "index", "snapshots", "data"] {
        assert!(prefix.join(d).exists(), "no {d} under the prefix");
    }
    // `bakfs status` counts the primary as a copy in object storage.
    let o = e.run(&["--json", "status"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["policy"]["primary_kind"], "object storage", "{st}");

    // An unchanged re-backup reads little and writes little.
    let o = e
        .cmd()
        .args(["-v", "backup", src.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", both(&o));
    let (get, put, list) = requests(&o);
    // config and key: the manifest and the trees come from this host's cache, kept as they
    // were written.
    assert!(get <= 3, "unchanged backup: {get} GETs");
    assert!(put <= 4, "unchanged backup: {put} PUTs");
    assert!(list <= 8, "unchanged backup: {list} LISTs");

    let o = e.cmd().args(["-v", "ls", "latest"]).output().unwrap();
    assert!(o.status.success(), "{}", both(&o));
    assert!(requests(&o).0 <= 3, "ls read trees again: {}", both(&o));
    let snaps = e.json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 2);
    let check = e.run(&["check", "--read-data"]);
    assert!(check.status.success(), "{}", both(&check));
    restore_equal(&e, "latest", &src);
    // A restore reads each pack once, by the order of the blobs in it: the packs and the config
    // and key, the trees from this host's cache.
    let packs = walk_files(&prefix.join("data"));
    let target = e.path("restore-counted");
    let o = e
        .cmd()
        .args([
            "-v",
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", both(&o));
    let (get, _, _) = requests(&o);
    assert!(get <= packs + 3, "restore: {get} GETs for {packs} packs");

    // Forget and prune remove what only the first snapshot held.
    fs::remove_file(src.join("big.bin")).unwrap();
    e.ok(&["backup", src.to_str().unwrap()]);
    let oldest = snaps[0]["id"].as_str().unwrap().to_string();
    let newer = snaps[1]["id"].as_str().unwrap().to_string();
    e.ok(&["forget", &oldest, &newer]);
    let pruned = e.json(&["prune"]);
    assert!(
        pruned["report"]["bytes_freed"].as_u64().unwrap() > 1 << 20,
        "{pruned}"
    );
    let check = e.run(&["check", "--read-data"]);
    assert!(check.status.success(), "{}", both(&check));
    restore_equal(&e, "latest", &src);
    // No lock left behind.
    assert_eq!(
        fs::read_dir(prefix.join("locks")).map_or(0, |d| d.count()),
        0
    );
}

#[test]
fn refused_credentials_a_missing_bucket_and_unknown_schemes_are_clear() {
    if !have_s3("refused_credentials_a_missing_bucket_and_unknown_schemes_are_clear") {
        return;
    }
    let s = S3Server::start();
    let mut e = s3_env(&s.location("bkt/r"));
    e.ok(&["init"]);

    let mut wrong = s3_env(&s.location("bkt/r"));
    wrong.vars[1].1 = "not-the-secret".into();
    let err = wrong.fails(&["snapshots"], 14);
    assert!(err.contains("refused access key"), "{err}");

    let missing = s3_env(&s.location("no-such-bucket/r"));
    let err = missing.fails(&["snapshots"], 10);
    assert!(err.contains("\"no-such-bucket\" does not exist"), "{err}");

    e.vars.clear();
    let err = e.fails(&["snapshots"], 1);
    assert!(err.contains("no S3 credentials"), "{err}");

    // A scheme bakfs does not know is refused, and nothing is made in the working directory.
    let cwd = e.path("cwd");
    fs::create_dir_all(&cwd).unwrap();
    for loc in ["gs://bucket/repo", "sftp:host:/srv/repo", "rest:http://h/"] {
        let o = e
            .cmd()
            .current_dir(&cwd)
            .env("BAKFS_REPO", loc)
            .arg("init")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{loc}: {}", both(&o));
        assert!(
            both(&o).contains("does not know the repository scheme"),
            "{loc}: {}",
            both(&o)
        );
    }
    assert_eq!(
        fs::read_dir(&cwd).unwrap().count(),
        0,
        "init made a directory"
    );
    // A malformed s3: location is named.
    let err = s3_env("s3:127.0.0.1/bkt").fails(&["snapshots"], 1);
    assert!(err.contains("no endpoint"), "{err}");
}

#[test]
fn credentials_come_from_the_configuration_unless_the_environment_has_them() {
    if !have_s3("credentials_come_from_the_configuration_unless_the_environment_has_them") {
        return;
    }
    let s = S3Server::start();
    let mut e = s3_env(&s.location("bkt/r"));
    e.ok(&["init"]);
    let src = tree(&e, "src", 3);
    let env_keys = std::mem::take(&mut e.vars);
    let secret = e.path("s3.secret");
    let cfg = e.path("bakfs.toml");
    let write_cfg = |secret_line: &str| {
        fs::write(&secret, format!("{secret_line}\n")).unwrap();
        let text = format!(
            "[s3]\naccess_key_id = {ACCESS_KEY:?}\nsecret_access_key_file = {:?}\n\
             region = \"us-east-1\"\n",
            secret.display().to_string()
        );
        fs::write(&cfg, text).unwrap();
    };

    // No AWS_* variables: the configuration's keys.
    write_cfg(SECRET_KEY);
    let o = e.run_with_config(&cfg, &["backup", src.to_str().unwrap()]);
    assert!(o.status.success(), "{}", both(&o));
    let o = e.run_with_config(&cfg, &["--json", "snapshots"]);
    assert!(o.status.success(), "{}", both(&o));

    // A wrong secret in the file: refused, and the message names where the keys came from.
    write_cfg("not-the-secret");
    let o = e.run_with_config(&cfg, &["snapshots"]);
    assert_eq!(o.status.code(), Some(14), "{}", both(&o));
    assert!(both(&o).contains("secret_access_key_file"), "{}", both(&o));

    // The environment wins over the configuration.
    e.vars = env_keys.clone();
    let o = e.run_with_config(&cfg, &["snapshots"]);
    assert!(o.status.success(), "{}", both(&o));
    e.vars.clear();

    // An empty secret file and half a pair are refused before any request.
    write_cfg("");
    let o = e.run_with_config(&cfg, &["snapshots"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(both(&o).contains("the first line is empty"), "{}", both(&o));
    fs::write(&cfg, format!("[s3]\naccess_key_id = {ACCESS_KEY:?}\n")).unwrap();
    let o = e.run_with_config(&cfg, &["snapshots"]);
    assert!(!o.status.success(), "{}", both(&o));
    assert!(both(&o).contains("go together"), "{}", both(&o));
    e.vars = env_keys;
    restore_equal(&e, "latest", &src);
}

#[test]
fn create_only_writes_refuse_an_existing_name() {
    use bakfs_core::repo::backend::{Backend, FileKind, S3Backend, S3Credentials, S3Location};
    if !have_s3("create_only_writes_refuse_an_existing_name") {
        return;
    }
    let s = S3Server::start();
    let loc: S3Location = s.location("cas/r").parse().unwrap();
    let b = S3Backend::new(loc, S3Credentials::new(ACCESS_KEY, SECRET_KEY)).unwrap();
    b.create().unwrap();
    // s3s-fs honours If-None-Match: * (it checks, then writes: not atomic against a write at
    // the same instant, which real servers are; so races are not tested here).
    assert!(b.honours_create_only());
    b.write_new(FileKind::Config, "config", b"first").unwrap();
    let err = b
        .write_new(FileKind::Config, "config", b"second")
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "{err}");
    assert_eq!(b.read(FileKind::Config, "config").unwrap(), b"first");
    // The probe's scratch object is gone.
    assert_eq!(b.list(FileKind::Lock).unwrap(), Vec::<String>::new());
    // An init into that prefix is refused, and writes nothing.
    let e = s3_env(&s.location("cas/r"));
    let err = e.fails(&["init"], 1);
    assert!(err.contains("already there"), "{err}");
    assert_eq!(b.list(FileKind::Key).unwrap(), Vec::<String>::new());
}

#[test]
fn retries_ride_out_503s_and_a_slow_server() {
    if !have_s3("retries_ride_out_503s_and_a_slow_server") {
        return;
    }
    let s = S3Server::start();
    let proxy = FaultProxy::start(s.port());
    let e = s3_env(&proxy.location("bkt/r"));
    e.ok(&["init"]);
    proxy
        .faults
        .every_nth_503
        .store(3, std::sync::atomic::Ordering::Relaxed);
    proxy
        .faults
        .delay_ms
        .store(20, std::sync::atomic::Ordering::Relaxed);
    let src = tree(&e, "src", 3);
    e.ok(&["backup", src.to_str().unwrap()]);
    let check = e.run(&["check", "--read-data"]);
    assert!(check.status.success(), "{}", both(&check));
    restore_equal(&e, "latest", &src);
    let refused = proxy
        .faults
        .refused
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(refused >= 5, "only {refused} requests were refused");
}

#[test]
fn a_server_killed_mid_backup_loses_nothing() {
    if !have_s3("a_server_killed_mid_backup_loses_nothing") {
        return;
    }
    let mut s = S3Server::start();
    let e = s3_env(&s.location("bkt/r"));
    e.ok(&["init"]);
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..12 {
        write_random(&src.join(format!("f{i}")), 8 << 20, 100 + i);
    }
    let child = e
        .cmd()
        .args(["backup", src.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    s.kill();
    std::thread::sleep(Duration::from_millis(1500));
    s.restart();
    let o = child.wait_with_output().unwrap();
    // Retries carry it over a short outage; if they do not, it fails and says why.
    if !o.status.success() {
        assert!(
            both(&o).contains("writing") || both(&o).contains("error"),
            "{}",
            both(&o)
        );
    }
    let check = e.run(&["check", "--read-data"]);
    assert!(check.status.success(), "{}\n{}", both(&check), s.log());
    e.ok(&["unlock"]);
    e.ok(&["backup", src.to_str().unwrap()]);
    restore_equal(&e, "latest", &src);
}

#[test]
fn a_server_killed_mid_prune_loses_nothing() {
    if !have_s3("a_server_killed_mid_prune_loses_nothing") {
        return;
    }
    let mut s = S3Server::start();
    let e = s3_env(&s.location("bkt/r"));
    e.ok(&["init"]);
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    let mut ids = Vec::new();
    for round in 0..4u64 {
        for i in 0..4 {
            write_random(&src.join(format!("f{i}")), 4 << 20, 1000 * round + i);
        }
        let made = e.json(&["backup", src.to_str().unwrap()]);
        ids.push(made["id"].as_str().unwrap().to_string());
    }
    e.ok(&["forget", &ids[0], &ids[1], &ids[2]]);
    // Kill the server at a few points of the prune: each leaves a repository that checks clean
    // and a prune that finishes the work.
    for delay_ms in [150, 400] {
        let child = e
            .cmd()
            .arg("prune")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        s.kill();
        let o = child.wait_with_output().unwrap();
        s.restart();
        eprintln!("prune killed after {delay_ms} ms: {:?}", o.status.code());
        e.ok(&["unlock"]);
        let check = e.run(&["check", "--read-data"]);
        assert!(check.status.success(), "{}", both(&check));
        restore_equal(&e, &ids[3], &src);
    }
    e.ok(&["unlock"]);
    e.ok(&["prune"]);
    let check = e.run(&["check", "--read-data"]);
    assert!(check.status.success(), "{}", both(&check));
    restore_equal(&e, "latest", &src);
}

#[test]
fn hosts_back_up_at_once_while_one_prunes() {
    if !have_s3("hosts_back_up_at_once_while_one_prunes") {
        return;
    }
    let s = S3Server::start();
    let loc = s.location("fleet/repo");
    let admin = s3_env(&loc);
    admin.ok(&["init"]);
    let old = tree(&admin, "old", 50);
    let made = admin.json(&["backup", old.to_str().unwrap(), "--host", "old-host"]);
    admin.ok(&["forget", made["id"].as_str().unwrap()]);

    let hosts: Vec<(Env, std::path::PathBuf, String)> = (0..4)
        .map(|i| {
            let e = s3_env(&loc);
            let src = tree(&e, &format!("src{i}"), 10 + i);
            (e, src, format!("host-{i}"))
        })
        .collect();
    let backups: Vec<_> = hosts
        .iter()
        .map(|(e, src, host)| {
            e.cmd()
                .args(["backup", src.to_str().unwrap(), "--host", host])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // A fifth host's backup holds a shared lock all along (so the prune surely runs beside one).
    let fifth = s.object("fleet", &format!("repo/locks/{}", "cd".repeat(16)));
    let info = serde_json::json!({"exclusive": false, "host": "host-5", "pid": 1,
        "time_ns": 0, "purpose": "backup"});
    fs::write(&fifth, info.to_string()).unwrap();
    // The prune runs beside the backups: neither waits for nor turns away the other.
    std::thread::sleep(Duration::from_millis(200));
    let prune = admin.run(&["--json", "prune"]);
    assert!(prune.status.success(), "{}", both(&prune));
    let report: serde_json::Value = serde_json::from_slice(&prune.stdout).unwrap();
    assert!(
        report["report"]["packs_deferred"].as_u64().unwrap() >= 1,
        "{report}"
    );
    for (b, (_, _, host)) in backups.into_iter().zip(&hosts) {
        let o = b.wait_with_output().unwrap();
        assert!(o.status.success(), "{host}: {}", both(&o));
    }
    let check = admin.run(&["check", "--read-data"]);
    assert!(check.status.success(), "{}", both(&check));
    // Every host's snapshot restores exactly.
    for (e, src, host) in &hosts {
        let listed = e.json(&["snapshots", "--host", host]);
        let snap = listed.as_array().unwrap().last().unwrap();
        restore_equal(e, snap["id"].as_str().unwrap(), src);
    }
    // The fifth host finished. A prune afterwards, with no backup running, deletes what waited
    // (or indexes it again, where a snapshot made beside the first prune needs it) and keeps
    // every snapshot whole.
    fs::remove_file(&fifth).unwrap();
    let again = admin.json(&["prune"]);
    assert_eq!(again["report"]["packs_deferred"], 0, "{again}");
    assert_eq!(
        fs::read_dir(s.root().join("fleet/repo/condemned")).map_or(0, |d| d.count()),
        0,
        "condemned records left"
    );
    let check = admin.run(&["check", "--read-data"]);
    assert!(check.status.success(), "{}", both(&check));
    for (e, src, host) in &hosts {
        let listed = e.json(&["snapshots", "--host", host]);
        let snap = listed.as_array().unwrap().last().unwrap();
        restore_equal(e, snap["id"].as_str().unwrap(), src);
    }
}

#[test]
fn a_stale_lock_is_judged_by_the_servers_clock() {
    if !have_s3("a_stale_lock_is_judged_by_the_servers_clock") {
        return;
    }
    let s = S3Server::start();
    let e = s3_env(&s.location("bkt/r"));
    e.ok(&["init"]);
    // Another host's exclusive lock; its own clock says it was taken now.
    let name = "ab".repeat(16);
    let lock = s.object("bkt", &format!("r/locks/{name}"));
    fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let info = serde_json::json!({"exclusive": true, "host": "far-away", "pid": 1,
        "time_ns": 4_102_444_800_000_000_000i64, "purpose": "prune"});
    fs::write(&lock, info.to_string()).unwrap();
    let src = tree(&e, "src", 9);
    let err = e.fails(&["backup", src.to_str().unwrap()], 11);
    assert!(err.contains("far-away"), "{err}");
    // Not renewed for an hour by the server's clock: stale, whatever its holder's clock said.
    age_object(&lock, Duration::from_secs(3600));
    let o = e.run(&["backup", src.to_str().unwrap()]);
    assert!(o.status.success(), "{}", both(&o));
    assert!(both(&o).contains("ignoring stale lock"), "{}", both(&o));
    e.ok(&["unlock"]);
    assert!(!lock.exists(), "unlock left the stale lock");
}

/// Starts a multipart upload of `key` in `bucket`, sends one 5 MiB part and stops there, as an
/// uploader that crashed would.
fn leave_incomplete_upload(s: &S3Server, bucket: &str, key: &str) {
    use object_store::aws::AmazonS3Builder;
    use object_store::{ObjectStoreExt, PutPayload};
    // The TLS provider reqwest is built without, as bakfs's own client installs it.
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = AmazonS3Builder::new()
        .with_endpoint(s.endpoint())
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_allow_http(true)
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut up = store
            .put_multipart(&object_store::path::Path::from(key))
            .await
            .unwrap();
        up.put_part(PutPayload::from(vec![7u8; 5 << 20]))
            .await
            .unwrap();
        // Neither completed nor aborted.
        std::mem::forget(up);
    });
}

#[test]
fn an_incomplete_multipart_upload_left_behind_changes_nothing() {
    if !have_s3("an_incomplete_multipart_upload_left_behind_changes_nothing") {
        return;
    }
    let s = S3Server::start();
    let e = s3_env(&s.location("backups/mp"));
    e.ok(&["init"]);
    let src = tree(&e, "src", 11);
    let first = e.json(&["backup", src.to_str().unwrap()])["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A pack's upload that never completed: its parts are on the server, no object is.
    let name = "ab".repeat(32);
    leave_incomplete_upload(&s, "backups", &format!("mp/data/ab/{name}"));
    let parts: Vec<String> = fs::read_dir(s.root())
        .unwrap()
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("upload_id") && n.contains("part"))
        .collect();
    assert_eq!(parts.len(), 1, "no part left on the server");
    assert!(!s.object("backups", &format!("mp/data/ab/{name}")).exists());

    // Nothing sees it: check reads every pack, backup and prune go on, restore is whole.
    let out = e.ok(&["check", "--read-data"]);
    assert!(!out.contains(&name), "{out}");
    fs::write(src.join("etc/notes.txt"), "changed\n").unwrap();
    e.ok(&["backup", src.to_str().unwrap()]);
    e.ok(&["forget", &first]);
    let o = e.run(&["prune"]);
    assert!(o.status.success(), "{}", both(&o));
    assert!(!both(&o).contains(&name), "{}", both(&o));
    e.ok(&["check", "--read-data"]);
    restore_equal(&e, "latest", &src);
}
