//! Faults: damaged data, crashes, full disks, concurrent prune — through the real `bakfs` binary.
//!
//! Every test asserts the exit code and the message, and that nothing else is lost: the files
//! and snapshots not touched by the fault still restore bit-exact.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use bakfs_core::repo::Repository;
use bakfs_e2e::{assert_named_once, assert_once, both, have_root, sh, text, write_random, Env};

const PASSWORD: &[u8] = b"correct horse";

/// Where a restore puts the source path `src`.
fn under(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

/// `count` files of `size` random bytes named f0.. in `dir`.
fn random_tree(dir: &Path, count: usize, size: usize) {
    fs::create_dir_all(dir).unwrap();
    sh(&format!(
        "for i in $(seq 0 {}); do head -c {size} /dev/urandom > {}/f$i; done",
        count - 1,
        dir.display()
    ));
}

/// Asserts that two trees are identical (names, types, bytes).
fn assert_same_tree(expected: &Path, actual: &Path) {
    let o = std::process::Command::new("diff")
        .args(["-r", "-q", "--no-dereference"])
        .arg(expected)
        .arg(actual)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "restored tree {} differs from {}:\n{}{}",
        actual.display(),
        expected.display(),
        text(&o.stdout),
        text(&o.stderr)
    );
}

/// Restores `snap` into a fresh directory, asserting exit 0, and compares the restored copy of
/// `src` with `expected`.
fn restore_exact(e: &Env, snap: &str, src: &Path, expected: &Path) {
    let t = tempfile::Builder::new()
        .prefix("restore-")
        .tempdir_in(e.dir.path())
        .unwrap();
    let o = e.run(&[
        "restore",
        snap,
        "--target",
        t.path().to_str().unwrap(),
        "--verify",
    ]);
    assert!(o.status.success(), "restore of {snap} failed: {}", both(&o));
    assert_same_tree(expected, &under(t.path(), src));
}

/// Backs up `path` (asserting exit 0) and returns the snapshot id.
fn backup(e: &Env, path: &Path) -> String {
    e.json(&["backup", path.to_str().unwrap()])["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `cp -a src dst`.
fn copy_tree(src: &Path, dst: &Path) {
    sh(&format!(
        "rm -rf {1} && cp -a {0} {1}",
        src.display(),
        dst.display()
    ));
}

/// Path of pack file `hex` in the repository.
fn pack_path(repo: &Path, hex: &str) -> PathBuf {
    repo.join("data").join(&hex[..2]).join(hex)
}

/// The pack(s) holding the content of `file` in snapshot `snap`, read through the library.
fn packs_of_file(e: &Env, snap: &str, file: &Path) -> BTreeSet<String> {
    let repo = Repository::open(
        std::sync::Arc::new(bakfs_core::repo::backend::LocalBackend::new(&e.repo)),
        PASSWORD,
    )
    .unwrap();
    let (_, s) = repo.find_snapshot(snap).unwrap();
    let node = bakfs_core::restore::find_node(&repo, &s.tree, file.to_str().unwrap())
        .unwrap()
        .unwrap();
    assert!(
        !node.content.is_empty(),
        "{} has no content",
        file.display()
    );
    node.content
        .iter()
        .map(|b| repo.locate(b).unwrap().pack.to_hex())
        .collect()
}

fn flip_byte(path: &Path, offset: usize) {
    let mut b = fs::read(path).unwrap();
    b[offset] ^= 0x20;
    fs::write(path, b).unwrap();
}

fn lock_files(e: &Env) -> BTreeSet<String> {
    fs::read_dir(e.repo.join("locks"))
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

fn snapshot_ids(e: &Env) -> Vec<String> {
    e.json(&["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

fn index_files(e: &Env) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(e.repo.join("index"))
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    v.sort();
    v
}

/// Spawns bakfs with `args`, output discarded (so that a full pipe never blocks it).
fn spawn_quiet(e: &Env, args: &[&str]) -> Child {
    e.cmd()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// SIGKILLs `child` after `ms` milliseconds; returns whether it was still running then.
fn kill_after(mut child: Child, ms: u64) -> bool {
    std::thread::sleep(Duration::from_millis(ms));
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill(); // SIGKILL
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    if running {
        assert!(
            status.signal() == Some(9) || status.success(),
            "unexpected end of the killed process: {status:?}"
        );
    }
    running && status.signal() == Some(9)
}

/// `check --read-data` exits 0; notes (unreferenced packs) are allowed.
fn assert_check_clean(e: &Env) {
    let o = e.run(&["check", "--read-data"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "check --read-data found damage: {}",
        both(&o)
    );
    let out = text(&o.stdout);
    assert!(out.contains("no errors found"), "{out}");
    for l in out.lines() {
        assert!(
            l.starts_with("note: ") || l.starts_with("no errors found"),
            "unexpected check output line {l:?}\n{out}"
        );
    }
}

/// A repository with two snapshots: the first holds the files A (a1, docs/a2, docs/a3.txt), the
/// second adds file B, whose chunks live in a pack of their own.
struct TwoSnapshots {
    e: Env,
    src: PathBuf,
    s1: String,
    s2: String,
    a_files: Vec<PathBuf>,
    a_bytes: Vec<Vec<u8>>,
    b: PathBuf,
    b_bytes: Vec<u8>,
    /// B's pack: hex id and file.
    pack: String,
    pack_file: PathBuf,
}

fn two_snapshots() -> TwoSnapshots {
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(src.join("docs")).unwrap();
    write_random(&src.join("a1"), 300_000, 1);
    write_random(&src.join("docs/a2"), 50_000, 2);
    fs::write(src.join("docs/a3.txt"), "small text\n").unwrap();
    let a_files: Vec<PathBuf> = ["a1", "docs/a2", "docs/a3.txt"]
        .iter()
        .map(|f| src.join(f))
        .collect();
    let a_bytes = a_files.iter().map(|f| fs::read(f).unwrap()).collect();
    let s1 = backup(&e, &src);
    let b = src.join("b");
    write_random(&b, 2_000_000, 3);
    let b_bytes = fs::read(&b).unwrap();
    let s2 = backup(&e, &src);
    let b_packs = packs_of_file(&e, &s2, &b);
    assert_eq!(b_packs.len(), 1, "B spans several packs: {b_packs:?}");
    let pack = b_packs.into_iter().next().unwrap();
    for f in &a_files {
        assert!(
            !packs_of_file(&e, &s2, f).contains(&pack),
            "{} shares B's pack",
            f.display()
        );
    }
    let pack_file = pack_path(&e.repo, &pack);
    assert!(pack_file.exists());
    TwoSnapshots {
        e,
        src,
        s1,
        s2,
        a_files,
        a_bytes,
        b,
        b_bytes,
        pack,
        pack_file,
    }
}

impl TwoSnapshots {
    /// Restores `snap`; asserts the A files are bit-exact. Returns the run and whether B came back
    /// (if so, with the right bytes: a damaged file is never left with wrong bytes).
    fn restore(&self, snap: &str) -> (Output, bool) {
        let t = tempfile::Builder::new()
            .prefix("restore-")
            .tempdir_in(self.e.dir.path())
            .unwrap();
        let o = self
            .e
            .run(&["restore", snap, "--target", t.path().to_str().unwrap()]);
        for (f, want) in self.a_files.iter().zip(&self.a_bytes) {
            let got = fs::read(under(t.path(), f)).unwrap_or_else(|err| {
                panic!(
                    "unaffected file {} not restored ({err}): {}",
                    f.display(),
                    both(&o)
                )
            });
            assert!(
                got == *want,
                "unaffected file {} restored with wrong bytes",
                f.display()
            );
        }
        let rb = under(t.path(), &self.b);
        let b_there = rb.exists();
        if b_there {
            assert!(
                fs::read(&rb).unwrap() == self.b_bytes,
                "damaged file B restored with wrong bytes: {}",
                both(&o)
            );
        }
        // no stray temporary files either
        let entries = sh(&format!(
            "cd {} && find . -mindepth 1 -type f | sort",
            under(t.path(), &self.src).display()
        ));
        let expected_files = if b_there { 4 } else { 3 };
        assert_eq!(
            entries.lines().count(),
            expected_files,
            "unexpected files in the target:\n{entries}"
        );
        (o, b_there)
    }

    /// Snapshot 1 does not need B's pack: it restores completely.
    fn assert_first_snapshot_intact(&self) {
        let (o, b) = self.restore(&self.s1);
        assert_eq!(o.status.code(), Some(0), "{}", both(&o));
        assert!(!b);
    }
}

#[test]
fn flipped_byte_in_a_pack_is_found_and_only_that_file_is_lost() {
    let w = two_snapshots();
    let e = &w.e;
    let len = fs::metadata(&w.pack_file).unwrap().len() as usize;
    flip_byte(&w.pack_file, len / 2);

    // The structure check only compares sizes: it cannot see a flipped byte.
    let o = e.run(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));

    // Reading the data finds it, names the pack and the file that needs it.
    let o = e.run(&["check", "--read-data"]);
    assert_eq!(o.status.code(), Some(13), "{}", both(&o));
    let out = text(&o.stdout);
    assert!(
        out.contains(&format!("damaged pack {}", w.pack)),
        "check does not name the damaged pack: {}",
        both(&o)
    );
    assert!(
        out.contains(&format!("{}:{}", &w.s2[..8], w.b.display())),
        "check does not name the affected file: {}",
        both(&o)
    );
    assert!(out.contains("REPOSITORY DAMAGED"), "{out}");
    for f in &w.a_files {
        assert!(
            !out.contains(&format!("{}\n", f.display())),
            "check lists unaffected file {}: {out}",
            f.display()
        );
    }

    // Restore: exit 13, B is not written with wrong bytes, the rest is restored.
    let (o, b_there) = w.restore(&w.s2);
    assert_eq!(o.status.code(), Some(13), "{}", both(&o));
    assert!(
        !b_there,
        "B restored although its only chunk is damaged: {}",
        both(&o)
    );
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!("{}", w.b.strip_prefix("/").unwrap().display()))
            && err.contains(&w.pack),
        "restore does not name the file and pack: {}",
        both(&o)
    );
    // Shown once (not logged by the library and printed again), naming each thing once.
    assert_once(&err, &w.pack);
    assert_eq!(err.lines().count(), 1, "{}", both(&o));
    assert_named_once(&err);
    assert!(text(&o.stdout).contains("FAILED"), "{}", both(&o));

    w.assert_first_snapshot_intact();
}

#[test]
fn truncated_pack_is_found_without_reading_data() {
    let w = two_snapshots();
    let e = &w.e;
    let len = fs::metadata(&w.pack_file).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&w.pack_file)
        .unwrap()
        .set_len(len - 100)
        .unwrap();

    for args in [&["check"][..], &["check", "--read-data"]] {
        let o = e.run(args);
        assert_eq!(o.status.code(), Some(13), "{args:?}: {}", both(&o));
        let out = text(&o.stdout);
        assert!(
            out.contains(&format!("damaged pack {}", w.pack)),
            "{args:?} does not name the pack: {}",
            both(&o)
        );
        assert!(
            out.contains("truncated"),
            "{args:?} does not say the pack is truncated: {}",
            both(&o)
        );
        assert!(
            out.contains(&format!("{}:{}", &w.s2[..8], w.b.display())),
            "{args:?} does not name the affected file: {}",
            both(&o)
        );
    }

    // Only the pack header was cut: B's chunk still authenticates, so B may come back, but only
    // with the right bytes; the exit code says whether something failed.
    let (o, b_there) = w.restore(&w.s2);
    assert_eq!(
        o.status.code(),
        Some(if b_there { 0 } else { 13 }),
        "{}",
        both(&o)
    );
    w.assert_first_snapshot_intact();
}

#[test]
fn missing_pack_is_found_without_reading_data() {
    let w = two_snapshots();
    let e = &w.e;
    fs::remove_file(&w.pack_file).unwrap();

    for args in [&["check"][..], &["check", "--read-data"]] {
        let o = e.run(args);
        assert_eq!(o.status.code(), Some(13), "{args:?}: {}", both(&o));
        let out = text(&o.stdout);
        assert!(
            out.contains(&format!("damaged pack {}: missing", w.pack)),
            "{args:?} does not name the missing pack: {}",
            both(&o)
        );
        assert!(
            out.contains(&format!("{}:{}", &w.s2[..8], w.b.display())),
            "{args:?} does not name the affected file: {}",
            both(&o)
        );
    }

    let (o, b_there) = w.restore(&w.s2);
    assert_eq!(o.status.code(), Some(13), "{}", both(&o));
    assert!(!b_there);
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!("pack {}", w.pack)) && err.contains("missing"),
        "restore does not say which pack is missing: {}",
        both(&o)
    );
    w.assert_first_snapshot_intact();
}

#[test]
fn damaged_index_file_is_named() {
    let e = Env::init();
    let src = e.path("src");
    random_tree(&src, 3, 100_000);
    let s1 = backup(&e, &src);
    let idx = index_files(&e);
    assert_eq!(idx.len(), 1);
    let name = idx[0].file_name().unwrap().to_string_lossy().into_owned();
    let good = fs::read(&idx[0]).unwrap();
    flip_byte(&idx[0], good.len() / 2);
    let packs_before = bakfs_e2e::packs(&e.repo);
    // Check reads every index file again, so it names the damage while this host's index tables
    // (built when the file was whole) still serve restores.
    let o = e.run(&["check"]);
    assert_eq!(o.status.code(), Some(13), "{}", both(&o));
    assert!(
        text(&o.stdout).contains(&format!("index {name}")),
        "{}",
        both(&o)
    );
    restore_exact(&e, &s1, &src, &src);
    // Another host, or this one without its cache, has only the files.
    fs::remove_dir_all(e.path("cache")).unwrap();

    // Opening skips the damaged index with a warning that names it.
    let o = e.run(&["snapshots"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        text(&o.stderr).contains(&format!("damaged index {name}")),
        "no warning naming the index: {}",
        both(&o)
    );
    // check names it and exits 13.
    let o = e.run(&["check"]);
    assert_eq!(o.status.code(), Some(13), "{}", both(&o));
    assert!(
        text(&o.stdout).contains(&format!("index {name}")),
        "check does not name the index: {}",
        both(&o)
    );
    // The blobs only it listed are unreachable: restore fails with 13 and writes no wrong bytes.
    let t = e.path("t");
    let o = e.run(&["restore", &s1, "--target", t.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(13), "{}", both(&o));
    assert!(text(&o.stderr).contains("not in the index"), "{}", both(&o));
    assert_eq!(
        sh(&format!("find {} -type f 2>/dev/null | wc -l", t.display())).trim(),
        "0"
    );
    // prune refuses to run (it could delete what only the damaged index knows); nothing deleted.
    let err = e.fails(&["prune"], 13);
    assert!(
        err.contains(&format!("index {name}")) && err.contains("repair index"),
        "{err}"
    );
    assert_eq!(bakfs_e2e::packs(&e.repo), packs_before);
    assert!(idx[0].exists());

    // Nothing is lost: `repair index` rebuilds the index from the pack headers.
    e.ok(&["repair", "index"]);
    assert_check_clean(&e);
    restore_exact(&e, &s1, &src, &src);
    assert_eq!(bakfs_e2e::packs(&e.repo), packs_before);
}

#[test]
fn damaged_index_table_is_found_by_check_and_built_again() {
    let e = Env::init();
    let src = e.path("src");
    random_tree(&src, 3, 100_000);
    let s1 = backup(&e, &src);
    let tables: Vec<PathBuf> = sh(&format!("find {} -name '*.tbl'", e.path("cache").display()))
        .lines()
        .map(PathBuf::from)
        .collect();
    assert_eq!(tables.len(), 1, "one backup, one index table: {tables:?}");
    // The first record's pack number: the run no longer matches its fence.
    flip_byte(&tables[0], 33);
    let o = e.run(&["check"]);
    assert_eq!(o.status.code(), Some(13), "{}", both(&o));
    assert!(
        text(&o.stdout).contains("index table") && text(&o.stdout).contains("built again"),
        "check does not name the table: {}",
        both(&o)
    );
    // Built again: the next check is clean and the snapshot restores byte for byte.
    assert_check_clean(&e);
    restore_exact(&e, &s1, &src, &src);
}

#[test]
fn damaged_snapshot_manifest_is_named() {
    let e = Env::init();
    let src = e.path("src");
    random_tree(&src, 3, 100_000);
    let s1 = backup(&e, &src);
    let keep = e.path("keep");
    copy_tree(&src, &keep);
    fs::write(src.join("new"), "new file").unwrap();
    let s2 = backup(&e, &src);
    let manifest = e.repo.join("snapshots").join(&s2);
    let len = fs::metadata(&manifest).unwrap().len() as usize;
    flip_byte(&manifest, len / 2);
    let packs_before = bakfs_e2e::packs(&e.repo);

    let o = e.run(&["check"]);
    assert_eq!(o.status.code(), Some(13), "{}", both(&o));
    assert!(
        text(&o.stdout).contains(&format!("damaged snapshot {s2}")),
        "check does not name the manifest: {}",
        both(&o)
    );
    // the intact snapshot is still walked
    assert!(text(&o.stdout).contains("1 snapshots"), "{}", both(&o));

    // Listing skips it with a warning naming it.
    let o = e.run(&["--json", "snapshots"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        text(&o.stderr).contains(&format!("damaged snapshot {s2}")),
        "no warning naming the manifest: {}",
        both(&o)
    );
    assert_eq!(snapshot_ids(&e), vec![s1.clone()]);
    // The other snapshot still restores.
    restore_exact(&e, &s1, &src, &keep);
    // prune refuses while a manifest is damaged (it could delete what only it refers to).
    let err = e.fails(&["prune"], 13);
    assert!(err.contains(&format!("snapshot {s2}")), "{err}");
    assert_eq!(bakfs_e2e::packs(&e.repo), packs_before);

    // `forget ID` removes the damaged manifest without decrypting it; then all is clean.
    e.ok(&["forget", &s2[..12]]);
    assert!(!manifest.exists());
    assert_check_clean(&e);
    e.ok(&["prune"]);
    assert_check_clean(&e);
    restore_exact(&e, &s1, &src, &keep);
}

/// Regression: `check` compared only pack names with their hashes, so a manifest or an index
/// file copied under another name went unnoticed (docs/design.md §2, §8.2).
#[test]
fn manifest_or_index_file_under_another_name_is_named_by_check() {
    let e = Env::init();
    let src = e.path("src");
    random_tree(&src, 2, 10_000);
    let s1 = backup(&e, &src);
    let idx = index_files(&e);
    assert_eq!(idx.len(), 1);
    let index_name = idx[0].file_name().unwrap().to_string_lossy().into_owned();
    assert_check_clean(&e);

    // A valid hex name, and the file's own name in capitals (the backend accepts both).
    let other = "0123456789abcdef".repeat(4);
    let copies = [
        (
            e.repo.join("snapshots").join(&other),
            format!("snapshot {other}"),
            &s1,
        ),
        (
            e.repo.join("snapshots").join(s1.to_uppercase()),
            format!("snapshot {}", s1.to_uppercase()),
            &s1,
        ),
        (
            e.repo.join("index").join(&other),
            format!("index {other}"),
            &index_name,
        ),
    ];
    for (copy, what, original) in &copies {
        let dir = copy.parent().unwrap();
        fs::copy(dir.join(original), copy).unwrap();
        let o = e.run(&["check"]);
        assert_eq!(o.status.code(), Some(13), "{what}: {}", both(&o));
        let out = text(&o.stdout);
        let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(
            errors,
            vec![format!(
                "error: {what}: not named by the blake3 of its bytes ({original}): a copy or a \
                 renamed file, or its bytes changed"
            )],
            "{}",
            both(&o)
        );
        // --json says the same
        let o = e.run(&["--json", "check"]);
        assert_eq!(o.status.code(), Some(13), "{what}: {}", both(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(j["ok"], false);
        assert!(j["report"]["errors"][0]
            .as_str()
            .unwrap()
            .starts_with(what.as_str()));
        fs::remove_file(copy).unwrap();
        assert_check_clean(&e);
    }
    // The copy of a manifest is a snapshot of its own to every other command.
    fs::copy(
        e.repo.join("snapshots").join(&s1),
        e.repo.join("snapshots").join(&other),
    )
    .unwrap();
    let ids: BTreeSet<String> = snapshot_ids(&e).into_iter().collect();
    assert_eq!(ids, BTreeSet::from([other.clone(), s1.clone()]));
    e.ok(&["forget", &other[..12]]);
    assert_check_clean(&e);
    restore_exact(&e, &s1, &src, &src);
}

#[test]
fn damaged_key_file_is_named() {
    let e = Env::init();
    let src = e.path("src");
    random_tree(&src, 2, 10_000);
    let s1 = backup(&e, &src);
    let keys: Vec<PathBuf> = fs::read_dir(e.repo.join("keys"))
        .unwrap()
        .map(|d| d.unwrap().path())
        .collect();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    let kid = key.file_name().unwrap().to_string_lossy().into_owned();
    let good = fs::read(key).unwrap();

    // The only key is garbage: damaged (13), not "wrong password" (12), and the key is named.
    fs::write(key, b"{ this is not json").unwrap();
    for args in [&["snapshots"][..], &["check"], &["key", "list"]] {
        let err = e.fails(args, 13);
        assert!(
            err.contains(&format!("damaged key {kid}")),
            "{args:?} does not name the key: {err}"
        );
    }
    // Truncated JSON is just as damaged.
    fs::write(key, &good[..good.len() / 2]).unwrap();
    let err = e.fails(&["snapshots"], 13);
    assert!(err.contains(&format!("damaged key {kid}")), "{err}");

    // With a second, intact key, its password opens the repository; the damaged one is reported
    // to the password that only the damaged key would have opened.
    fs::write(key, &good).unwrap();
    fs::write(e.path("pw2"), "second password\n").unwrap();
    e.ok(&[
        "key",
        "add",
        "--new-password-file",
        e.path("pw2").to_str().unwrap(),
    ]);
    fs::write(key, b"garbage").unwrap();
    let o = e
        .cmd()
        .env("BAKFS_PASSWORD", "second password")
        .args(["snapshots"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", both(&o));
    let err = e.fails(&["snapshots"], 13);
    assert!(err.contains(&format!("damaged key {kid}")), "{err}");

    fs::write(key, &good).unwrap();
    restore_exact(&e, &s1, &src, &src);
}

#[test]
fn damaged_config_is_named() {
    let e = Env::init();
    let src = e.path("src");
    random_tree(&src, 2, 10_000);
    let s1 = backup(&e, &src);
    let cfg = e.repo.join("config");
    let good = fs::read(&cfg).unwrap();
    for garbage in [
        &b"\x00\x01garbage"[..],
        b"",
        b"{\"version\": 1",
        b"{\"version\": 1}",
        b"[1, 2, 3]",
    ] {
        fs::write(&cfg, garbage).unwrap();
        for args in [
            &["snapshots"][..],
            &["check"],
            &["backup", src.to_str().unwrap()],
        ] {
            let err = e.fails(args, 13);
            assert!(
                err.contains("damaged config"),
                "{args:?} with config {:?}: {err}",
                text(garbage)
            );
        }
        // init does not overwrite a damaged repository
        e.fails(&["init"], 1);
        assert_eq!(fs::read(&cfg).unwrap(), garbage);
    }
    fs::write(&cfg, &good).unwrap();
    assert_eq!(snapshot_ids(&e), vec![s1.clone()]);
    restore_exact(&e, &s1, &src, &src);
}

#[test]
fn sigkill_during_backup_loses_nothing() {
    let e = Env::init();
    let early = e.path("early");
    random_tree(&early, 4, 500_000);
    let s0 = backup(&e, &early);
    let big = e.path("big");
    random_tree(&big, 15, 10_000_000);
    let mut killed_runs = 0;
    for (round, ms) in [50u64, 200, 500, 1000].into_iter().enumerate() {
        if round > 0 {
            // Give the next run fresh data to store (unchanged files are not read again).
            sh(&format!(
                "for i in 0 5 10; do head -c 10000000 /dev/urandom > {}/f$i; done",
                big.display()
            ));
        }
        let killed = kill_after(spawn_quiet(&e, &["backup", big.to_str().unwrap()]), ms);
        killed_runs += usize::from(killed);
        let stale = lock_files(&e);
        assert!(stale.len() <= 1, "{stale:?}");

        // Locks of dead processes on this host are ignored: a backup works without unlock.
        let o = e.run(&["backup", early.to_str().unwrap()]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "backup after a killed backup ({ms} ms): {}",
            both(&o)
        );
        assert_eq!(
            lock_files(&e),
            stale,
            "the second backup left or removed a lock"
        );

        // unlock recognises the stale lock of the dead process and removes exactly it.
        let removed: BTreeSet<String> = e
            .json(&["unlock"])
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(removed, stale, "unlock after kill at {ms} ms");
        assert!(lock_files(&e).is_empty());

        assert_check_clean(&e);
        restore_exact(&e, &s0, &early, &early);

        // The next backup of the big tree succeeds and restores exactly.
        let s = backup(&e, &big);
        if round == 3 {
            assert_check_clean(&e);
            restore_exact(&e, &s, &big, &big);
        }
    }
    assert!(
        killed_runs >= 2,
        "only {killed_runs} backups were still running when killed: the tree is too small"
    );
}

#[test]
fn sigkill_during_prune_loses_nothing() {
    let e = Env::init();
    let src = e.path("data");
    random_tree(&src, 16, 2_000_000);
    let copies = e.path("copies");
    fs::create_dir_all(&copies).unwrap();
    // snapshot id -> copy of the source at that time
    let mut expected: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut round = 0usize;
    // A backup after rewriting every file (`all`) or every odd one. Packs mix the chunks of
    // several files, so when the snapshot of an `all` round is forgotten while the following
    // `odd` round is kept, half of each of its packs is unused: prune repacks them.
    let mut new_round = |e: &Env, expected: &mut BTreeMap<String, PathBuf>, all: bool| {
        let (start, step) = if all { (0, 1) } else { (1, 2) };
        sh(&format!(
            "for i in $(seq {start} {step} 15); do head -c 2000000 /dev/urandom > {}/f$i; done",
            src.display()
        ));
        let id = backup(e, &src);
        let c = copies.join(format!("r{round}"));
        copy_tree(&src, &c);
        expected.insert(id, c);
        round += 1;
    };
    new_round(&e, &mut expected, true);
    let mut killed_runs = 0;
    for ms in [20u64, 150, 400, 900] {
        new_round(&e, &mut expected, false);
        new_round(&e, &mut expected, true);
        e.ok(&["forget", "--keep-last", "2"]);
        let ids = snapshot_ids(&e);
        expected.retain(|id, c| {
            let keep = ids.contains(id);
            if !keep {
                fs::remove_dir_all(&*c).unwrap();
            }
            keep
        });
        assert_eq!(expected.len(), 2);
        let dry = e.json(&["prune", "--dry-run"]);
        assert!(
            dry["report"]["packs_repacked"].as_u64().unwrap() > 0,
            "no repack work for prune: {dry}"
        );

        let killed = kill_after(spawn_quiet(&e, &["prune"]), ms);
        eprintln!("prune killed after {ms} ms: {killed}");
        killed_runs += usize::from(killed);

        assert_check_clean(&e);
        for (id, c) in &expected {
            restore_exact(&e, id, &src, c);
        }
        // A stale exclusive lock of the killed prune does not stop the next prune.
        let o = e.run(&["prune"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "prune after a prune killed at {ms} ms: {}",
            both(&o)
        );
    }
    assert_check_clean(&e);
    for (id, c) in &expected {
        restore_exact(&e, id, &src, c);
    }
    e.ok(&["unlock"]);
    assert!(lock_files(&e).is_empty());
    assert!(
        killed_runs >= 2,
        "only {killed_runs} prunes were still running when killed: too little work"
    );
}

/// Unmounts (lazily) on drop, also when the test panics.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn full_disk_fails_cleanly_and_loses_nothing() {
    if !have_root("full_disk_fails_cleanly_and_loses_nothing") {
        return;
    }
    let e = Env::new();
    fs::create_dir_all(&e.repo).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=20m tmpfs {}",
        e.repo.display()
    ));
    let _mount = MountGuard(e.repo.clone());
    e.ok(&["init"]);
    let src = e.path("src");
    random_tree(&src.join("small"), 5, 200_000);
    fs::write(src.join("note.txt"), "before the disk filled\n").unwrap();
    let s0 = backup(&e, &src);
    let keep = e.path("keep");
    copy_tree(&src, &keep);

    // 60 MB; and 52 MB: three full 16 MiB packs, of which the second and third cannot be
    // written, and a last small pack that still fits.
    for (files, size) in [(6, 10_000_000), (4, 13_000_000)] {
        random_tree(&src.join("big"), files, size);
        let o = e.run(&["backup", src.to_str().unwrap()]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "backup of {} MB onto a full disk: {}",
            files * size / 1_000_000,
            both(&o)
        );
        assert!(
            text(&o.stderr).contains("No space left"),
            "no ENOSPC message: {}",
            both(&o)
        );
        // One message, naming the pack that could not be written once.
        assert_once(&text(&o.stderr), "No space left");
        assert_named_once(&text(&o.stderr));
        assert_eq!(
            snapshot_ids(&e),
            vec![s0.clone()],
            "a snapshot was written by the failed backup"
        );
        assert!(lock_files(&e).is_empty(), "the failed backup left its lock");
        fs::remove_dir_all(src.join("big")).unwrap();
        // prune removes the packs the failed backup left behind
        e.ok(&["prune"]);
        assert_check_clean(&e);
    }

    // With the big files gone, a backup fits again.
    fs::write(src.join("note.txt"), "after the disk filled\n").unwrap();
    let s1 = backup(&e, &src);
    assert_check_clean(&e);
    restore_exact(&e, &s0, &src, &keep);
    restore_exact(&e, &s1, &src, &src);
}

/// The restore's failure is shown once and names the file once (it was
/// `error: F: F: No space left on device`, after the same as a log line).
#[test]
fn restore_onto_a_full_disk_names_the_file_once() {
    if !have_root("restore_onto_a_full_disk_names_the_file_once") {
        return;
    }
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("big"), 3_000_000, 1);
    backup(&e, &src);
    let target = e.path("target");
    fs::create_dir_all(&target).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=1m tmpfs {}",
        target.display()
    ));
    let _mount = MountGuard(target.clone());
    let o = e.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let err = text(&o.stderr);
    let big = under(&target, &src.join("big"));
    assert_once(&err, &big.display().to_string());
    assert_once(&err, "No space left");
    assert_eq!(err.lines().count(), 1, "{}", both(&o));
    assert_named_once(&err);
    assert!(text(&o.stdout).contains("1 FAILED"), "{}", both(&o));
    assert!(!big.exists(), "a partly written file was left");
}

#[test]
fn backup_and_prune_started_together() {
    let e = Env::init();
    let src = e.path("data");
    random_tree(&src, 25, 2_000_000);
    let copies = e.path("copies");
    fs::create_dir_all(&copies).unwrap();
    let mut expected: BTreeMap<String, PathBuf> = BTreeMap::new();
    let id = backup(&e, &src);
    copy_tree(&src, &copies.join("r0"));
    expected.insert(id, copies.join("r0"));
    let mut outcomes = vec![];
    for round in 1..=5usize {
        sh(&format!(
            "for i in $(seq {} 3 24); do head -c 2000000 /dev/urandom > {}/f$i; done",
            round % 3,
            src.display()
        ));
        let c = copies.join(format!("r{round}"));
        copy_tree(&src, &c);
        // Started at the same moment; in later rounds forget gets a small head start, so that
        // both orders of taking the locks are exercised.
        let head_start = [0u64, 0, 30, 80, 200][round - 1];
        let p = e
            .cmd()
            .args(["forget", "--keep-last", "1", "--prune"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(head_start));
        let b = e
            .cmd()
            .args(["--json", "backup", src.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (b, p) = (b.wait_with_output().unwrap(), p.wait_with_output().unwrap());
        for (what, o) in [("backup", &b), ("forget --prune", &p)] {
            match o.status.code() {
                Some(0) => {}
                Some(11) => assert!(
                    text(&o.stderr).contains("repository is locked:")
                        && text(&o.stderr).contains(" lock held by pid "),
                    "{what}: unclear lock message: {}",
                    both(o)
                ),
                _ => panic!(
                    "{what} in round {round}: neither success nor locked: {}",
                    both(o)
                ),
            }
        }
        outcomes.push((b.status.code(), p.status.code()));
        if b.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
            expected.insert(v["id"].as_str().unwrap().to_string(), c);
        }
        assert!(lock_files(&e).is_empty(), "round {round} left locks");
    }
    eprintln!("(backup, forget --prune) exit codes: {outcomes:?}");
    assert_check_clean(&e);
    let ids = snapshot_ids(&e);
    assert!(!ids.is_empty());
    for id in &ids {
        let c = expected
            .get(id)
            .unwrap_or_else(|| panic!("snapshot {id} was not made by a successful backup"));
        restore_exact(&e, id, &src, c);
    }
    // And a last prune leaves the same.
    e.ok(&["forget", "--keep-last", "1", "--prune"]);
    assert_check_clean(&e);
    let last = snapshot_ids(&e);
    assert_eq!(last.len(), 1);
    restore_exact(&e, &last[0], &src, &expected[&last[0]]);
}

fn write_lock(e: &Env, exclusive: bool, pid: u32) -> PathBuf {
    write_lock_as(e, exclusive, false, pid)
}

fn write_lock_as(e: &Env, exclusive: bool, prune: bool, pid: u32) -> PathBuf {
    let info = bakfs_core::repo::lock::LockInfo {
        exclusive,
        prune,
        host: bakfs_core::repo::lock::hostname(),
        pid,
        time_ns: bakfs_core::timefmt::now_ns(),
        purpose: "e2e test".into(),
    };
    let name = format!(
        "{:032x}",
        u128::from(pid) * 7919 + u128::from(exclusive) + 2 * u128::from(prune)
    );
    let p = e.repo.join("locks").join(name);
    fs::write(&p, serde_json::to_vec(&info).unwrap()).unwrap();
    p
}

#[test]
fn lock_of_a_live_process_blocks_and_a_dead_one_does_not() {
    let e = Env::init();
    let src = e.path("src");
    random_tree(&src, 2, 10_000);
    let s0 = backup(&e, &src);
    let me = std::process::id();

    // An exclusive lock of a live process (this one) stops backups and forget.
    let lock = write_lock(&e, true, me);
    let err = e.fails(&["backup", src.to_str().unwrap()], 11);
    assert!(
        err.contains(&format!(
            "an exclusive lock held by pid {me} on {} for e2e test",
            bakfs_core::repo::lock::hostname()
        )),
        "{err}"
    );
    let err = e.fails(&["forget", "--keep-last", "1", "--prune"], 11);
    assert!(err.contains(&format!("pid {me}")), "{err}");
    assert_eq!(snapshot_ids(&e), vec![s0.clone()]);
    // The refused commands removed their own locks, not the holder's.
    // Readers take a shared lock too: restore and check are refused the same way.
    for args in [
        &["restore", &s0, "--target", e.path("t").to_str().unwrap()][..],
        &["check"],
    ] {
        let err = e.fails(args, 11);
        assert!(err.contains(&format!("pid {me}")), "{args:?}: {err}");
    }
    assert!(!e.path("t").exists());
    assert_eq!(
        lock_files(&e),
        BTreeSet::from([lock.file_name().unwrap().to_string_lossy().into_owned()])
    );
    // unlock leaves a live lock alone; --remove-all removes it.
    assert_eq!(e.json(&["unlock"]).as_array().unwrap().len(), 0);
    assert!(lock.exists());
    assert_eq!(
        e.json(&["unlock", "--remove-all"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(!lock.exists());

    // A shared lock of a live process lets backups and prune run: what its holder may still
    // use waits for a later prune (design.md §4.3).
    let lock = write_lock(&e, false, me);
    backup(&e, &src);
    restore_exact(&e, &s0, &src, &src);
    e.ok(&["prune"]);
    fs::remove_file(&lock).unwrap();
    // A prune lock of a live process lets backups run and stops another prune.
    let lock = write_lock_as(&e, false, true, me);
    backup(&e, &src);
    let err = e.fails(&["prune"], 11);
    assert!(
        err.contains(&format!("a prune lock held by pid {me}")),
        "{err}"
    );
    fs::remove_file(&lock).unwrap();

    // A lock of a dead process on this host is stale: ignored, and removed by unlock.
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let dead = c.id();
    c.wait().unwrap();
    let lock = write_lock(&e, true, dead);
    let o = e.run(&["backup", src.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        text(&o.stderr).contains("stale lock"),
        "no warning about the stale lock: {}",
        both(&o)
    );
    e.ok(&["prune"]);
    assert_eq!(e.json(&["unlock"]).as_array().unwrap().len(), 1);
    assert!(!lock.exists());

    // A lock file that cannot be parsed blocks nothing; plain unlock leaves it (its holder is
    // unknown), unlock --remove-all removes it like every other lock.
    let junk = e.repo.join("locks").join("ab".repeat(16));
    fs::write(&junk, "{ garbage").unwrap();
    backup(&e, &src);
    e.ok(&["prune"]);
    e.ok(&["unlock"]);
    assert!(junk.exists());
    let removed = e.json(&["unlock", "--remove-all"]);
    assert!(
        !junk.exists(),
        "unlock --remove-all left the unreadable lock file (removed {removed})"
    );
    assert!(lock_files(&e).is_empty());
    assert_check_clean(&e);
}
