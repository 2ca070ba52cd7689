//! Backup → restore round trips, incremental backups, listing, dump, retention, keys, config
//! jobs, the catalog and every command's `--help`, through the real `bakfs` binary.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;

use bakfs_e2e::{
    assert_named_once, assert_once, both, have_root, rich_tree, rsync_diff, sh, text, write_random,
    Env,
};

#[test]
fn round_trip_keeps_every_byte_and_attribute() {
    if !have_root("round_trip_keeps_every_byte_and_attribute") {
        return;
    }
    let e = Env::init();
    let src = rich_tree(&e);
    let out = e.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(out["summary"]["incomplete"], false);
    let target = e.path("restore");
    e.ok(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--verify",
    ]);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        rsync_diff(&src, &restored),
        "",
        "rsync -aHAXS reports differences"
    );
    // holes come back as holes
    let blocks =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::blocks(&fs::metadata(p).unwrap());
    assert!(
        blocks(&restored.join("sparse")) < 64,
        "sparse file restored without holes: {} blocks",
        blocks(&restored.join("sparse"))
    );
    // the whole-tree check by bytes as well
    sh(&format!(
        "cd {} && find . -type f -print0 | xargs -0 -I{{}} cmp {{}} {}/{{}}",
        src.display(),
        restored.display()
    ));
}

#[test]
fn unchanged_files_are_not_read_again() {
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    for i in 0..50 {
        write_random(&src.join(format!("d/f{i}")), 10_000 + i * 100, i as u64);
    }
    write_random(&src.join("big"), 3_000_000, 99);
    let first = e.json(&["backup", src.to_str().unwrap()]);
    assert!(first["summary"]["bytes_read"].as_u64().unwrap() > 3_000_000);
    let second = e.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(
        second["summary"]["bytes_read"], 0,
        "unchanged tree was read again"
    );
    assert_eq!(second["summary"]["bytes_added"], 0);
    // change one file: only it is read
    write_random(&src.join("d/f3"), 10_300, 1000);
    let third = e.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(third["summary"]["bytes_read"], 10_300);
    let snaps = e.json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 3);
    for s in snaps.as_array().unwrap() {
        for k in ["id", "time", "host", "paths", "tags"] {
            assert!(s.get(k).is_some(), "snapshots --json lacks {k}");
        }
    }
    // the restore of the newest snapshot has the new content
    let t = e.path("t");
    e.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(
        fs::read(t.join(src.strip_prefix("/").unwrap()).join("d/f3")).unwrap(),
        fs::read(src.join("d/f3")).unwrap()
    );
}

#[test]
fn dedup_across_files_and_snapshots() {
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("one"), 4_000_000, 7);
    fs::copy(src.join("one"), src.join("two")).unwrap();
    let r = e.json(&["backup", src.to_str().unwrap()]);
    let added = r["summary"]["bytes_added"].as_u64().unwrap();
    assert!(added < 4_200_000, "identical files stored twice: {added}");
}

#[test]
fn stdin_backup_and_dump() {
    let e = Env::init();
    let mut c = e.cmd();
    c.args([
        "--json",
        "backup",
        "--stdin",
        "--stdin-name",
        "db.dump",
        "--tag",
        "db",
    ])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&data).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    let o = e
        .cmd()
        .args(["dump", "latest", "/db.dump"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(o.stdout, data);
    let snaps = e.json(&["snapshots", "--tag", "db"]);
    assert_eq!(snaps[0]["paths"][0], "/db.dump");
}

#[test]
fn dump_directory_as_tar_keeps_modes_and_owners() {
    if !have_root("dump_directory_as_tar_keeps_modes_and_owners") {
        return;
    }
    let e = Env::init();
    let src = e.path("staking");
    sh(&format!("mkdir -p {0}/sub && echo key > {0}/staker.key && chmod 600 {0}/staker.key && echo crt > {0}/sub/staker.crt && chown 4321:4321 {0}/sub/staker.crt && chmod 640 {0}/sub/staker.crt && ln -s staker.key {0}/link", src.display()));
    e.ok(&["backup", src.to_str().unwrap()]);
    let out = e.path("untar");
    fs::create_dir_all(&out).unwrap();
    let tar = e
        .cmd()
        .args(["dump", "latest", src.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        tar.status.success(),
        "{}",
        String::from_utf8_lossy(&tar.stderr)
    );
    fs::write(e.path("x.tar"), &tar.stdout).unwrap();
    sh(&format!(
        "tar --numeric-owner -xpf {} -C {}",
        e.path("x.tar").display(),
        out.display()
    ));
    assert_eq!(rsync_diff(&src, &out.join("staking")), "");
}

#[test]
fn ls_diff_and_restore_filters() {
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(src.join("etc/ssh")).unwrap();
    fs::write(src.join("etc/ssh/sshd_config"), "Port 22\n").unwrap();
    fs::write(src.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    fs::write(src.join("etc/junk.swp"), "x").unwrap();
    e.ok(&["backup", src.to_str().unwrap(), "--exclude", "*.swp"]);
    let ls = e.ok(&["ls", "latest", &format!("{}/etc", src.display())]);
    assert!(
        ls.contains("/etc/hosts") && ls.contains("/etc/ssh") && !ls.contains("junk.swp"),
        "{ls}"
    );
    let lsj = e.json(&["ls", "latest", &format!("{}/etc", src.display()), "-R"]);
    assert!(lsj.as_array().unwrap().iter().any(|n| n["path"]
        .as_str()
        .unwrap()
        .ends_with("/etc/ssh/sshd_config")));

    fs::write(src.join("etc/hosts"), "10.0.0.1 node\n").unwrap();
    fs::write(src.join("etc/new"), "new").unwrap();
    fs::remove_file(src.join("etc/ssh/sshd_config")).unwrap();
    e.ok(&["backup", src.to_str().unwrap(), "--exclude", "*.swp"]);
    let snaps = e.json(&["snapshots"]);
    let (a, b) = (
        snaps[0]["id"].as_str().unwrap(),
        snaps[1]["id"].as_str().unwrap(),
    );
    let d = e.json(&["diff", a, b]);
    let has = |k: &str, suffix: &str| {
        d[k].as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().ends_with(suffix))
    };
    assert!(
        has("added", "/etc/new")
            && has("removed", "/etc/ssh/sshd_config")
            && has("changed", "/etc/hosts"),
        "{d}"
    );

    // SNAPSHOT:SUBPATH restores the contents of that directory into the target
    let t = e.path("sub");
    e.ok(&[
        "restore",
        &format!("{}:{}/etc", &a[..8], src.display()),
        "--target",
        t.to_str().unwrap(),
    ]);
    assert_eq!(
        fs::read_to_string(t.join("ssh/sshd_config")).unwrap(),
        "Port 22\n"
    );
    // --include only restores matches (and the directories leading to them)
    let t2 = e.path("inc");
    e.ok(&[
        "restore",
        a,
        "--target",
        t2.to_str().unwrap(),
        "--include",
        "sshd_config",
    ]);
    let rel = src.strip_prefix("/").unwrap();
    assert!(t2.join(rel).join("etc/ssh/sshd_config").exists());
    assert!(!t2.join(rel).join("etc/hosts").exists());
    // --exclude
    let t3 = e.path("exc");
    e.ok(&[
        "restore",
        a,
        "--target",
        t3.to_str().unwrap(),
        "--exclude",
        "ssh",
    ]);
    assert!(t3.join(rel).join("etc/hosts").exists());
    assert!(!t3.join(rel).join("etc/ssh").exists());
}

#[test]
fn forget_and_prune_free_space_and_keep_the_rest_intact() {
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..5u64 {
        write_random(&src.join("data"), 2_000_000, 100 + i);
        fs::write(src.join("stable"), "stable content").unwrap();
        e.ok(&["backup", src.to_str().unwrap()]);
    }
    let before: u64 = bakfs_e2e::packs(&e.repo)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    let dry = e.json(&["forget", "--keep-last", "2", "--dry-run"]);
    assert_eq!(dry["removed"].as_array().unwrap().len(), 3);
    assert_eq!(
        e.json(&["snapshots"]).as_array().unwrap().len(),
        5,
        "dry run removed something"
    );
    e.ok(&["forget", "--keep-last", "2", "--prune"]);
    assert_eq!(e.json(&["snapshots"]).as_array().unwrap().len(), 2);
    let after: u64 = bakfs_e2e::packs(&e.repo)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        after < before / 2,
        "prune freed too little: {before} -> {after}"
    );
    e.ok(&["check", "--read-data"]);
    let t = e.path("t");
    e.ok(&[
        "restore",
        "latest",
        "--target",
        t.to_str().unwrap(),
        "--verify",
    ]);
    assert_eq!(
        fs::read(t.join(src.strip_prefix("/").unwrap()).join("data")).unwrap(),
        fs::read(src.join("data")).unwrap()
    );
    // an empty policy is refused
    e.fails(&["forget"], 1);
}

#[test]
fn keys_add_list_remove_passwd() {
    let e = Env::init();
    fs::write(e.path("pw2"), "second password\n").unwrap();
    e.ok(&[
        "key",
        "add",
        "--new-password-file",
        e.path("pw2").to_str().unwrap(),
    ]);
    let keys = e.json(&["key", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 2);
    // the second password opens the repository
    let o = e
        .cmd()
        .env_remove("BAKFS_PASSWORD")
        .env("BAKFS_PASSWORD_FILE", e.path("pw2"))
        .args(["snapshots"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // passwd replaces the key in use
    fs::write(e.path("pw3"), "third\n").unwrap();
    e.ok(&[
        "key",
        "passwd",
        "--new-password-file",
        e.path("pw3").to_str().unwrap(),
    ]);
    e.fails(&["snapshots"], 12);
    let o = e
        .cmd()
        .env("BAKFS_PASSWORD", "third")
        .args(["snapshots"])
        .output()
        .unwrap();
    assert!(o.status.success());
    // removing the key in use is refused; removing the other works
    let keys = e
        .cmd()
        .env("BAKFS_PASSWORD", "third")
        .args(["--json", "key", "list"])
        .output()
        .unwrap();
    let keys: serde_json::Value = serde_json::from_slice(&keys.stdout).unwrap();
    let cur = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        e.cmd()
            .env("BAKFS_PASSWORD", "third")
            .args(["key", "remove", &cur])
            .output()
            .unwrap()
            .status
            .code(),
        Some(1)
    );
    assert!(e
        .cmd()
        .env("BAKFS_PASSWORD", "third")
        .args(["key", "remove", &other])
        .output()
        .unwrap()
        .status
        .success());
}

#[test]
fn exit_codes_for_missing_repo_wrong_password_unknown_version() {
    let e = Env::new();
    let err = e.fails(&["snapshots"], 10);
    assert!(err.contains("not a bakfs repository"), "{err}");
    e.ok(&["init"]);
    let err = e
        .cmd()
        .env("BAKFS_PASSWORD", "wrong")
        .args(["snapshots"])
        .output()
        .unwrap();
    assert_eq!(err.status.code(), Some(12));
    assert!(String::from_utf8_lossy(&err.stderr).contains("wrong password"));
    // init refuses an existing repository
    e.fails(&["init"], 1);
    // a newer format version is refused, and nothing is changed
    let cfg = e.repo.join("config");
    let text = fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"version\": 1", "\"version\": 99");
    fs::write(&cfg, &text).unwrap();
    let err = e.fails(&["snapshots"], 1);
    assert!(err.contains("version 99"), "{err}");
    assert_eq!(fs::read_to_string(&cfg).unwrap(), text);
}

#[test]
fn config_jobs_and_catalog() {
    let e = Env::new();
    let src = e.path("etc-like");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("passwd"), "root:x:0:0\n").unwrap();
    fs::write(src.join("skip.tmp"), "x").unwrap();
    fs::write(e.path("pw"), "correct horse\n").unwrap();
    let cfg = e.path("bakfs.toml");
    fs::write(
        &cfg,
        format!(
            "repository = \"{}\"\npassword_file = \"{}\"\n\n[jobs.etc]\npaths = [\"{}\"]\nexclude = [\"*.tmp\"]\ntags = [\"etc\"]\nrpo = \"1d\"\nretention = {{ keep_last = 2 }}\n",
            e.path("cfgrepo").display(),
            e.path("pw").display(),
            src.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let o = e
            .cmd()
            .env_remove("BAKFS_REPO")
            .env_remove("BAKFS_PASSWORD")
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    run(&["init"]);
    for _ in 0..3 {
        run(&["backup", "--job", "etc"]);
    }
    run(&["backup", "--all-jobs"]);
    let snaps: serde_json::Value = serde_json::from_str(&run(&["--json", "snapshots"])).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 4);
    assert_eq!(snaps[0]["tags"][0], "etc");
    assert_eq!(snaps[0]["job"], "etc");
    let ls = run(&["ls", "latest", "-R"]);
    assert!(ls.contains("passwd") && !ls.contains("skip.tmp"));
    run(&["forget", "--job", "etc"]);
    let snaps: serde_json::Value = serde_json::from_str(&run(&["--json", "snapshots"])).unwrap();
    assert_eq!(
        snaps.as_array().unwrap().len(),
        2,
        "job retention keep_last = 2 not applied"
    );
    // the catalog recorded runs and snapshots; rebuild reproduces it from the repository
    let runs: serde_json::Value =
        serde_json::from_str(&run(&["--json", "catalog", "runs"])).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 4);
    assert!(runs
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["outcome"] == "ok"));
    let db = e.state.join("catalog.db");
    assert!(db.exists());
    run(&["catalog", "rebuild"]);
    let n = sh(&format!("python3 -c \"import sqlite3; c=sqlite3.connect('{}'); print(c.execute('select count(*) from snapshots').fetchone()[0], c.execute('select count(*) from snapshot_packs').fetchone()[0])\"", db.display()));
    let parts: Vec<u64> = n.split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(parts[0], 2, "catalog snapshots after rebuild");
    assert!(parts[1] >= 2, "catalog lists the packs each snapshot needs");
    // The runbook names the newest snapshot and how to restore it, and holds no secret; it
    // needs no password.
    let snaps: serde_json::Value = serde_json::from_str(&run(&["--json", "snapshots"])).unwrap();
    let newest = snaps.as_array().unwrap().last().unwrap()["short_id"]
        .as_str()
        .unwrap()
        .to_string();
    fs::write(e.path("pw"), "").unwrap();
    let book = run(&["runbook"]);
    for want in [
        "### etc".to_string(),
        format!("Newest snapshot: `{newest}`"),
        format!(
            "bakfs restore {newest} --repo {} --target /srv/restore",
            e.path("cfgrepo").display()
        ),
        format!("reads it from `{}`", e.path("pw").display()),
        "No medium is enrolled".to_string(),
    ] {
        assert!(
            book.contains(&want),
            "{want:?} missing from the runbook:\n{book}"
        );
    }
    assert!(!book.contains("correct horse"));
    run(&[
        "runbook",
        "--output",
        e.path("runbook.md").to_str().unwrap(),
    ]);
    let written = fs::read_to_string(e.path("runbook.md")).unwrap();
    assert!(
        written.contains(&format!("Newest snapshot: `{newest}`")),
        "{written}"
    );
}

#[test]
fn unreadable_file_gives_incomplete_exit_code_and_one_warning() {
    // Root can read everything: as root, back up as nobody.
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("ok"), "fine").unwrap();
    let secret = src.join("secret");
    fs::write(&secret, "no").unwrap();
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if is_root {
        // The repository and the source open to nobody, but for the secret.
        sh(&format!("chmod -R a+rwX {}", e.dir.path().display()));
    }
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let backup = |json: bool| {
        let mut c = e.cmd();
        if json {
            c.arg("--json");
        }
        c.args(["backup", src.to_str().unwrap()]);
        if is_root {
            c.env("BAKFS_STATE_DIR", e.path("nobody-state"))
                .uid_gid(65534);
        }
        let o = c.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(3), "{err}");
        // One warning, shown once (not logged by the library and printed again), naming the
        // file once.
        assert_once(&err, &secret.display().to_string());
        assert_once(&err, "warning: ");
        assert_named_once(&err);
        o
    };
    let o = backup(false);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("INCOMPLETE"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // --json: the warning is in the output too, as before.
    let o = backup(true);
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let warnings = out["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{out}");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}: ", secret.display())),
        "{out}"
    );
    assert_eq!(out["summary"]["incomplete"], true);
    // the snapshots were still written
    assert_eq!(e.json(&["snapshots"]).as_array().unwrap().len(), 2);
}

trait UidGid {
    fn uid_gid(&mut self, id: u32) -> &mut Self;
}
impl UidGid for std::process::Command {
    fn uid_gid(&mut self, id: u32) -> &mut Self {
        use std::os::unix::process::CommandExt;
        self.uid(id).gid(id)
    }
}

/// The options every command takes (the `Global` arguments).
const GLOBAL_OPTIONS: [&str; 7] = [
    "--repo",
    "--password-file",
    "--config",
    "--state-dir",
    "--json",
    "--verbose",
    "--quiet",
];

/// The `--help` of `bakfs ARGS`, run without BAKFS_REPO and configuration.
fn help_of(e: &Env, args: &[&str]) -> String {
    let o = e
        .cmd()
        .args(args)
        .arg("--help")
        .env_remove("BAKFS_REPO")
        .output()
        .unwrap();
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(o.status.success(), "bakfs {args:?} --help: {out}");
    out
}

/// One `--help` page: (heading, entries) in order, each entry its name (`--repo`, `<DEVICE>`,
/// `init`) and its help text, which must fit on the entry's line or the one after it.
fn help_sections(page: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut sections: Vec<(String, Vec<(String, String)>)> = vec![];
    let lines: Vec<&str> = page.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with(' ') && line.ends_with(':') {
            sections.push((line.trim_end_matches(':').to_string(), vec![]));
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let Some((_, entries)) = sections.last_mut() else {
            continue;
        };
        if line.trim().is_empty() || indent > 6 {
            continue;
        }
        let (spec, help) = line
            .trim_start()
            .split_once("  ")
            .map(|(s, h)| (s, h.trim()))
            .unwrap_or((line.trim(), ""));
        // Help on the next line (clap does that when option names are long).
        let help = match lines.get(i + 1) {
            Some(next) if help.is_empty() && next.len() - next.trim_start().len() > 6 => {
                next.trim()
            }
            _ => help,
        };
        let name = spec
            .split([',', ' '])
            .filter(|w| !w.is_empty())
            .find(|w| w.starts_with("--") || !w.starts_with('-'))
            .unwrap_or(spec)
            .trim_end_matches("...")
            .to_string();
        entries.push((name, help.to_string()));
    }
    sections
}

/// Every command's `--help`, nested ones too: every option and argument has a line of help,
/// the options every command takes come under their own heading after the command's own, and
/// the usage line does not ask for `--repo` (it can come from BAKFS_REPO or the config).
#[test]
fn every_help_page_explains_every_option_and_puts_global_options_last() {
    let e = Env::new();
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    let mut seen = 0;
    while let Some(cmd) = todo.pop() {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let page = help_of(&e, &args);
        seen += 1;
        let usage = page
            .lines()
            .find(|l| l.starts_with("Usage: "))
            .unwrap_or_else(|| panic!("bakfs {args:?} --help has no usage line:\n{page}"));
        assert!(
            !usage.contains("--repo") && !usage.contains("-r "),
            "bakfs {args:?}: --repo in the usage line: {usage}"
        );
        let sections = help_sections(&page);
        let headings: Vec<&str> = sections.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(
            headings.last(),
            Some(&"Global options"),
            "bakfs {args:?}: the global options are not the last section:\n{page}"
        );
        for (heading, entries) in &sections {
            for (name, help) in entries {
                assert!(
                    !help.is_empty(),
                    "bakfs {args:?}: {name} under {heading:?} has no help text:\n{page}"
                );
                let global = GLOBAL_OPTIONS.contains(&name.as_str());
                assert_eq!(
                    global,
                    heading == "Global options",
                    "bakfs {args:?}: {name} under {heading:?}:\n{page}"
                );
            }
            if heading == "Commands" {
                for (name, _) in entries.iter().filter(|(n, _)| n != "help") {
                    let mut sub = cmd.clone();
                    sub.push(name.clone());
                    todo.push(sub);
                }
            }
        }
        let globals = &sections.last().unwrap().1;
        assert_eq!(
            globals.len(),
            GLOBAL_OPTIONS.len(),
            "bakfs {args:?}: global options missing:\n{page}"
        );
    }
    // bakfs, its 24 commands, key's 6, catalog's 2, media's 8, tape's 9, repair's 1.
    assert_eq!(seen, 51, "help pages seen");
}

#[test]
fn completions_are_printed() {
    let e = Env::new();
    let out = e.ok(&["completions", "bash"]);
    assert!(out.contains("bakfs"));
}

#[test]
fn file_changing_while_read_is_reported_and_snapshot_written() {
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("busy.db"), 60_000_000, 5);
    fs::write(src.join("calm"), "calm").unwrap();
    // A writer that keeps changing the file in place for a while.
    let mut writer = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import os,time\nf=os.open('{}',os.O_WRONLY)\nend=time.time()+20\nwhile time.time()<end:\n    os.pwrite(f,os.urandom(64),int.from_bytes(os.urandom(3),'big')*3)\n    time.sleep(0.0005)\n",
            src.join("busy.db").display()
        ))
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let o = e.run(&["backup", src.to_str().unwrap()]);
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("changed while it was read"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let snaps = e.json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_eq!(snaps[0]["summary"]["incomplete"], true);
    // the calm file restores
    let t = e.path("t");
    e.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(
        fs::read_to_string(t.join(src.strip_prefix("/").unwrap()).join("calm")).unwrap(),
        "calm"
    );
}

#[test]
fn one_file_system_and_exclude_file() {
    if !have_root("one_file_system_and_exclude_file") {
        return;
    }
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(src.join("mnt")).unwrap();
    fs::write(src.join("keep"), "k").unwrap();
    fs::write(src.join("drop.log"), "d").unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=1m tmpfs {}",
        src.join("mnt").display()
    ));
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _guard = Umount(src.join("mnt"));
    fs::write(src.join("mnt/other-fs"), "o").unwrap();
    fs::write(e.path("excludes"), "# comment\n*.log\n").unwrap();
    e.ok(&[
        "backup",
        "-x",
        "--exclude-file",
        e.path("excludes").to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    let ls = e.ok(&["ls", "latest", "-R"]);
    assert!(ls.contains("/keep"), "{ls}");
    assert!(ls.contains("/mnt"), "mount point itself is kept: {ls}");
    assert!(
        !ls.contains("other-fs"),
        "crossed into another filesystem: {ls}"
    );
    assert!(!ls.contains("drop.log"), "exclude file ignored: {ls}");
}

#[test]
fn paper_key_brings_access_back_when_every_password_is_lost() {
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("staker.key"), b"the node's key").unwrap();
    e.ok(&["backup", src.to_str().unwrap()]);
    let paper = e.ok(&["key", "export", "--paper"]);
    assert_eq!(paper.lines().count(), 10, "{paper}");
    // Every password lost: the key wrappings are gone.
    for k in fs::read_dir(e.repo.join("keys")).unwrap() {
        fs::remove_file(k.unwrap().path()).unwrap();
    }
    e.fails(&["snapshots"], 12);
    fs::write(e.path("new-pw"), "a new password\n").unwrap();
    let new_pw = e.path("new-pw");
    let import = |text: &str| {
        fs::write(e.path("typed"), text).unwrap();
        e.cmd()
            .env_remove("BAKFS_PASSWORD")
            .args(["key", "import", "--paper", "--from"])
            .arg(e.path("typed"))
            .arg("--new-password-file")
            .arg(&new_pw)
            .output()
            .unwrap()
    };
    // A typo is refused, naming its line; nothing is added.
    let typo: String = paper
        .lines()
        .map(|l| match l.strip_prefix("4: ") {
            Some(rest) => {
                let swap = if rest.starts_with('0') { '1' } else { '0' };
                format!("4: {swap}{}\n", &rest[1..])
            }
            None => format!("{l}\n"),
        })
        .collect();
    let o = import(&typo);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(text(&o.stderr).contains("line 4"), "{}", both(&o));
    assert_eq!(fs::read_dir(e.repo.join("keys")).unwrap().count(), 0);
    // Typed back as a person would (upper case, other spacing): a new password opens it.
    let o = import(&paper.to_uppercase().replace(' ', "   "));
    assert!(o.status.success(), "{}", both(&o));
    let o = e
        .cmd()
        .env("BAKFS_PASSWORD", "a new password")
        .args(["restore", "latest", "--target"])
        .arg(e.path("r"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", both(&o));
    let restored = e
        .path("r")
        .join(src.strip_prefix("/").unwrap())
        .join("staker.key");
    assert_eq!(fs::read(restored).unwrap(), b"the node's key");
    // Another repository's paper is refused.
    let other = Env::init();
    let o = other
        .cmd()
        .args(["key", "import", "--paper", "--from"])
        .arg(e.path("typed"))
        .arg("--new-password-file")
        .arg(&new_pw)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(text(&o.stderr).contains("checksum"), "{}", both(&o));
}

#[test]
fn systemd_units_pass_systemd_analyze_verify_and_their_command_runs_the_job() {
    let e = Env::new();
    let dir = e.path("units");
    fs::create_dir_all(&dir).unwrap();
    let units = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd");
    let bakfs = bakfs_e2e::bin("bakfs");
    let mut exec = std::collections::BTreeMap::new();
    for (file, instance) in [
        ("bakfs-backup@.service", "bakfs-backup@etc.service"),
        ("bakfs-backup@.timer", "bakfs-backup@etc.timer"),
        ("bakfs-drill@.service", "bakfs-drill@etc.service"),
        ("bakfs-drill@.timer", "bakfs-drill@etc.timer"),
    ] {
        let text = fs::read_to_string(units.join(file)).unwrap();
        if let Some(l) = text.lines().find(|l| l.starts_with("ExecStart=")) {
            exec.insert(file, l["ExecStart=".len()..].to_string());
        }
        // The unit as installed, with the binary where this build has it.
        let text = text.replace("/usr/local/bin/bakfs", bakfs.to_str().unwrap());
        fs::write(dir.join(instance), text).unwrap();
    }
    let out = sh(&format!(
        "cd {d} && systemd-analyze verify bakfs-backup@etc.service bakfs-backup@etc.timer bakfs-drill@etc.service bakfs-drill@etc.timer 2>&1; echo rc=$?",
        d = dir.display()
    ));
    assert!(out.trim_end().ends_with("rc=0"), "{out}");
    assert!(!out.contains("bakfs-"), "systemd complains: {out}");
    // What the service runs backs up the job.
    let src = e.path("etc-like");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("hosts"), "127.0.0.1 localhost\n").unwrap();
    fs::write(e.path("pw"), "correct horse\n").unwrap();
    let cfg = e.path("bakfs.toml");
    fs::write(
        &cfg,
        format!(
            "repository = \"{}\"\npassword_file = \"{}\"\n[jobs.etc]\npaths = [\"{}\"]\n",
            e.repo.display(),
            e.path("pw").display(),
            src.display()
        ),
    )
    .unwrap();
    e.ok(&["init"]);
    // What each service runs: the backup backs up the job, the drill proves it restorable.
    for unit in ["bakfs-backup@.service", "bakfs-drill@.service"] {
        let argv: Vec<String> = exec[unit]
            .replace("%i", "etc")
            .split_whitespace()
            .map(String::from)
            .collect();
        assert_eq!(argv[0], "/usr/local/bin/bakfs", "{unit}: {argv:?}");
        let o = e
            .cmd()
            .env_remove("BAKFS_REPO")
            .env_remove("BAKFS_PASSWORD")
            .env("BAKFS_CONFIG", &cfg)
            .args(&argv[1..])
            .output()
            .unwrap();
        assert!(o.status.success(), "{unit}: {}", both(&o));
    }
    let snaps = e.json(&["snapshots"]);
    assert_eq!(snaps[0]["job"], "etc", "{snaps}");
    let status = e
        .cmd()
        .env("BAKFS_CONFIG", &cfg)
        .args(["--json", "status"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        status["jobs"][0]["copies"][0]["last_drill"]["outcome"], "ok",
        "{status}"
    );
}
