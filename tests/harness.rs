//! Helpers for end-to-end tests: run the real `bakfs` binary against real directories.
//!
//! Binaries are looked up next to the test executable's target directory
//! (`target/<profile>/bakfs`), or in `BAKFS_BIN_DIR`. Build them first with
//! `cargo build --workspace --bins`.
#![allow(clippy::unwrap_used)]

pub mod monitor_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Directory holding the built binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BAKFS_BIN_DIR") {
        return PathBuf::from(d);
    }
    // target/<profile>/deps/<test-exe>
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Path of a built binary; panics with a hint if missing.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: build the binaries first (cargo build --workspace --bins)",
        p.display()
    );
    p
}

/// Whether tests needing root may run. Outside CI they skip (with a printed reason) when not
/// root; under CI=true they must run, so not being root is a failure.
pub fn have_root(test: &str) -> bool {
    // SAFETY-free: geteuid has no preconditions; libc call via std is not available.
    let root = effective_uid() == 0;
    if !root {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: needs root, and CI=true forbids skipping");
        }
        eprintln!("SKIP {test}: needs root");
    }
    root
}

fn effective_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(u32::MAX)
}

/// A scratch world: a repository path, a state dir, a password, scratch directories.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub state: PathBuf,
    /// Environment variables every command gets (S3 credentials, say).
    pub vars: Vec<(String, String)>,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    /// A fresh environment (repository not yet created).
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("bakfs-e2e-")
            .tempdir_in(scratch_root())
            .unwrap();
        let repo = dir.path().join("repo");
        let state = dir.path().join("state");
        Self {
            dir,
            repo,
            state,
            vars: Vec::new(),
        }
    }

    /// A fresh environment with an initialised repository.
    pub fn init() -> Self {
        let e = Self::new();
        e.ok(&["init"]);
        e
    }

    /// A path inside the scratch directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A `bakfs` command with repository, password and state dir set.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin("bakfs"));
        c.env("BAKFS_REPO", &self.repo)
            .env("BAKFS_PASSWORD", "correct horse")
            .env("BAKFS_STATE_DIR", &self.state)
            .env("BAKFS_CACHE_DIR", self.dir.path().join("cache"))
            .env("BAKFS_INSECURE_TEST_KDF", "1")
            .env_remove("BAKFS_PASSWORD_FILE")
            .env_remove("BAKFS_CONFIG")
            .env("XDG_CONFIG_HOME", self.dir.path().join("no-config"))
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        c
    }

    /// Runs bakfs with `args`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs bakfs with the configuration file `config` and `args`.
    pub fn run_with_config(&self, config: &Path, args: &[&str]) -> Output {
        self.cmd()
            .arg("--config")
            .arg(config)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs bakfs and asserts exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "bakfs {args:?} failed ({:?}):\n{}\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs bakfs with --json and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// Runs bakfs, asserting exit code `code`; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "bakfs {args:?}: stdout {} stderr {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stderr).unwrap()
    }
}

/// Where scratch directories go (a real disk filesystem, with xattr support).
pub fn scratch_root() -> PathBuf {
    let p = std::env::var_os("BAKFS_TEST_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Runs a shell command, asserting success; returns stdout.
pub fn sh(script: &str) -> String {
    let o = Command::new("bash")
        .arg("-ec")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "sh {script:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// `rsync -aHAXS --dry-run --itemize-changes SRC/ DST/` output (empty means identical).
pub fn rsync_diff(src: &Path, dst: &Path) -> String {
    let o = Command::new("rsync")
        .args([
            "-aHAXS",
            "--numeric-ids",
            "--dry-run",
            "--itemize-changes",
            "--checksum",
        ])
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dst.display()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "rsync failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Writes `len` deterministic pseudo-random bytes (seeded) to `path`.
pub fn write_random(path: &Path, len: usize, seed: u64) {
    let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    std::fs::write(path, data).unwrap();
}

/// The single pack files of a repository.
pub fn packs(repo: &Path) -> Vec<PathBuf> {
    let mut v = vec![];
    for d in std::fs::read_dir(repo.join("data")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            if !p.file_name().unwrap().to_string_lossy().starts_with('.') {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

/// A source tree with every kind of entry and metadata bakfs must keep.
pub fn rich_tree(e: &Env) -> std::path::PathBuf {
    let src = e.path("src");
    let s = src.display();
    sh(&format!(
        r#"
        mkdir -p {s}/dir/sub {s}/emptydir {s}/keys
        echo hello > {s}/a.txt
        : > {s}/empty
        head -c 5000000 /dev/urandom > {s}/dir/big
        ln {s}/a.txt {s}/dir/sub/hardlink
        ln -s ../a.txt {s}/dir/link
        ln -s /nonexistent/target {s}/dangling
        mkfifo {s}/fifo
        mknod {s}/null c 1 3
        mknod {s}/blk b 7 200
        truncate -s 20M {s}/sparse
        printf x | dd of={s}/sparse bs=1 seek=9000000 conv=notrunc status=none
        chmod 4755 {s}/dir/big
        chmod 1777 {s}/emptydir
        chmod 2750 {s}/dir/sub
        echo 'staker key' > {s}/keys/staker.key
        chmod 600 {s}/keys/staker.key
        chown 1234:5678 {s}/empty
        setfattr -n user.note -v 'a note' {s}/a.txt
        setfattr -n security.test -v sec {s}/a.txt
        setfacl -m u:nobody:r {s}/a.txt
        setfacl -d -m u:nobody:rx {s}/dir
        touch -h -d '2001-02-03 04:05:06.123456789' {s}/dir/link
        touch -d '1999-12-31 23:59:59.987654321' {s}/empty
        n=$(printf 'bin\xff\xfename'); echo binary > "{s}/$n"
        long=$(printf 'L%.0s' $(seq 255)); echo long > "{s}/$long"
        "#
    ));
    src
}

/// Asserts that `needle` occurs exactly once in `stderr`: a warning or an error is shown once,
/// not logged by the library and printed again by the command.
pub fn assert_once(stderr: &str, needle: &str) {
    let n = stderr.matches(needle).count();
    assert_eq!(n, 1, "{needle:?} shown {n} times, not once:\n{stderr}");
}

/// Asserts that no line of `stderr` names a thing twice: its `: `-separated parts are all
/// different (not `X: X: No space left on device`).
pub fn assert_named_once(stderr: &str) {
    for line in stderr.lines() {
        let parts: Vec<&str> = line.split(": ").collect();
        for (i, p) in parts.iter().enumerate() {
            assert!(
                !parts[..i].contains(p),
                "{p:?} twice in one message: {line:?}\n{stderr}"
            );
        }
    }
}

/// Bytes as text, for messages and comparisons.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The exit code, stdout and stderr of a run, for messages.
pub fn both(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}
