//! The format-v1 fixture (`tests/fixtures/repo-v1`, see its README): a repository made once and
//! committed. Every run opens, lists, diffs, checks and restores those bytes and compares the
//! result with the committed expected output, so a change that would make existing repositories
//! unreadable (a reordered field of a serialized struct, a renamed JSON field, a new enum order)
//! fails here even though every round-trip test still passes.
//!
//! The tests work on a copy in a scratch directory: nothing ever writes into the committed tree.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use bakfs_e2e::{both, have_root, text, Env};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/repo-v1");
/// The snapshots of the fixture, oldest first.
const S1: &str = "c652069d7bbcbf0868cc8dbfc072f3adcfa2c9164531c6b4735898bb19313da5";
const S2: &str = "0fcc34005622fd925ec44648e40b478ecc1dde3a367afd5d8aa19cba10400ea6";

/// Copies the files under `src` (not empty directories, which a git checkout does not have).
fn copy_files(src: &Path, dst: &Path) {
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_files(&e.path(), &to);
        } else {
            fs::create_dir_all(dst).unwrap();
            fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// A scratch copy of the fixture repository, exactly as committed (git keeps no empty
/// directories, so most of `data/xx` and `locks/` are missing).
fn as_committed() -> Env {
    let e = Env::new();
    copy_files(&Path::new(FIXTURE).join("repo"), &e.repo);
    e
}

/// A scratch copy of the fixture with the layout `init` makes (`data/00`..`ff`, `locks/`).
fn fixture() -> Env {
    let e = as_committed();
    for i in 0..=255u8 {
        fs::create_dir_all(e.repo.join("data").join(format!("{i:02x}"))).unwrap();
    }
    fs::create_dir_all(e.repo.join("locks")).unwrap();
    e
}

/// Runs bakfs on the copy with the fixture's password file.
fn run(e: &Env, args: &[&str]) -> Output {
    e.cmd()
        .env_remove("BAKFS_PASSWORD")
        .env("BAKFS_PASSWORD_FILE", Path::new(FIXTURE).join("password"))
        .env("TZ", "UTC")
        .args(args)
        .output()
        .unwrap()
}

/// Runs bakfs, asserting exit 0; returns stdout.
fn ok(e: &Env, args: &[&str]) -> Vec<u8> {
    let o = run(e, args);
    assert_eq!(o.status.code(), Some(0), "bakfs {args:?}: {}", both(&o));
    o.stdout
}

/// Asserts that `actual` equals the committed `expected/<name>`.
fn assert_as_made(name: &str, actual: &[u8]) {
    let path = Path::new(FIXTURE).join("expected").join(name);
    let want = fs::read(&path).unwrap();
    if want == actual {
        return;
    }
    let (w, a) = (text(&want), text(actual));
    let line = w
        .lines()
        .zip(a.lines())
        .position(|(x, y)| x != y)
        .unwrap_or_else(|| w.lines().count().min(a.lines().count()));
    panic!(
        "{name} differs from {} (the format-v1 fixture reads differently: see its README)\n\
         first difference at line {}:\n  expected: {:?}\n  actual:   {:?}\n--- actual\n{a}",
        path.display(),
        line + 1,
        w.lines().nth(line).unwrap_or("<end>"),
        a.lines().nth(line).unwrap_or("<end>"),
    );
}

/// Escapes bytes like `list.py` in tests/fixtures/make-repo-v1.sh: printable ASCII as is,
/// `\\`, `\"`, `\n`, other bytes as `\xHH`, runs of 8 or more zero bytes as `\0{N}`.
fn esc(b: &[u8]) -> String {
    let mut out = String::from("\"");
    let mut i = 0;
    while i < b.len() {
        let zeros = b[i..].iter().take_while(|&&c| c == 0).count();
        if zeros >= 8 {
            out.push_str(&format!("\\0{{{zeros}}}"));
            i += zeros;
            continue;
        }
        match b[i] {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            c @ 0x20..=0x7e => out.push(c as char),
            c => out.push_str(&format!("\\x{c:02x}")),
        }
        i += 1;
    }
    out.push('"');
    out
}

fn walk(p: &Path, out: &mut Vec<PathBuf>) {
    out.push(p.to_path_buf());
    if fs::symlink_metadata(p).unwrap().is_dir() {
        for e in fs::read_dir(p).unwrap() {
            walk(&e.unwrap().path(), out);
        }
    }
}

/// Lists everything under `root`, named from `root`'s parent, the way `list.py` in
/// tests/fixtures/make-repo-v1.sh listed the source trees (expected/restore-N.txt).
fn listing(root: &Path) -> Vec<u8> {
    let base = root.parent().unwrap();
    let mut paths = vec![];
    walk(root, &mut paths);
    let rel = |p: &Path| {
        p.strip_prefix(base)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec()
    };
    paths.sort_by_key(|p| rel(p));
    let mut first: HashMap<u64, Vec<u8>> = HashMap::new();
    for p in &paths {
        first
            .entry(fs::symlink_metadata(p).unwrap().ino())
            .or_insert_with(|| rel(p));
    }
    let mut out = String::new();
    for p in &paths {
        let m = fs::symlink_metadata(p).unwrap();
        let t = m.file_type();
        let kind = if t.is_file() {
            "file"
        } else if t.is_dir() {
            "dir"
        } else if t.is_symlink() {
            "symlink"
        } else if t.is_fifo() {
            "fifo"
        } else if t.is_char_device() {
            "chardev"
        } else if t.is_block_device() {
            "blockdev"
        } else {
            "socket"
        };
        out.push_str(&format!(
            "{} {kind} mode={:04o} owner={}:{} mtime={}",
            esc(&rel(p)),
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            m.mtime() * 1_000_000_000 + m.mtime_nsec()
        ));
        match kind {
            "file" => {
                out.push_str(&format!(" size={}", m.size()));
                if m.nlink() > 1 {
                    out.push_str(&format!(
                        " links={} first={}",
                        m.nlink(),
                        esc(&first[&m.ino()])
                    ));
                }
                out.push_str(&format!(" content={}", esc(&fs::read(p).unwrap())));
            }
            "symlink" => {
                let t = fs::read_link(p).unwrap();
                out.push_str(&format!(" target={}", esc(t.as_os_str().as_bytes())));
            }
            "chardev" | "blockdev" => {
                let r = m.rdev();
                out.push_str(&format!(" rdev={}:{}", libc::major(r), libc::minor(r)));
            }
            _ => {}
        }
        let mut names: Vec<_> = xattr::list(p).unwrap().collect();
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for n in names {
            let v = xattr::get(p, &n).unwrap().unwrap_or_default();
            out.push_str(&format!(" xattr:{}={}", n.to_string_lossy(), esc(&v)));
        }
        out.push('\n');
    }
    out.into_bytes()
}

#[test]
fn v1_snapshots_list_as_when_made() {
    let e = fixture();
    assert_as_made("snapshots.txt", &ok(&e, &["snapshots"]));
    assert_as_made("snapshots.json", &ok(&e, &["--json", "snapshots"]));
}

#[test]
fn v1_ls_shows_every_node_kind_and_its_metadata_as_when_made() {
    let e = fixture();
    for (n, s) in [(1, S1), (2, S2)] {
        assert_as_made(&format!("ls-l-{n}.txt"), &ok(&e, &["ls", "-l", "-R", s]));
        assert_as_made(&format!("ls-{n}.json"), &ok(&e, &["--json", "ls", "-R", s]));
    }
}

#[test]
fn v1_diff_of_parent_and_child_is_as_when_made() {
    let e = fixture();
    assert_as_made("diff.txt", &ok(&e, &["diff", S1, S2]));
    assert_as_made("diff.json", &ok(&e, &["--json", "diff", S1, S2]));
}

#[test]
fn v1_check_read_data_finds_every_pack_index_and_manifest_intact() {
    let e = fixture();
    assert_as_made("check.txt", &ok(&e, &["check", "--read-data"]));
}

#[test]
fn v1_reads_without_the_empty_directories_git_does_not_keep() {
    let e = as_committed();
    assert!(!e.repo.join("locks").exists() && !e.repo.join("data/00").exists());
    // check reads without a lock when it cannot write one.
    assert_as_made("check.txt", &ok(&e, &["check", "--read-data"]));
    assert_as_made("snapshots.txt", &ok(&e, &["snapshots"]));
}

#[test]
fn v1_restore_gives_back_every_byte_owner_mode_time_xattr_and_link() {
    if !have_root("v1_restore_gives_back_every_byte_owner_mode_time_xattr_and_link") {
        return;
    }
    let e = fixture();
    for (n, s) in [(1, S1), (2, S2)] {
        let t = e.path(&format!("restore-{n}"));
        ok(
            &e,
            &["restore", s, "--target", t.to_str().unwrap(), "--verify"],
        );
        let entries: Vec<_> = fs::read_dir(&t)
            .unwrap()
            .map(|d| d.unwrap().path())
            .collect();
        assert_eq!(entries, vec![t.join("srv")], "restore wrote more than /srv");
        assert_as_made(&format!("restore-{n}.txt"), &listing(&t.join("srv")));
    }
    // dump reads a file by its path in the snapshot
    assert_eq!(
        ok(&e, &["dump", S1, "/srv/regular.txt"]),
        b"hello, format v1\n"
    );
    assert_eq!(
        ok(&e, &["dump", S2, "/srv/regular.txt"]),
        b"hello again, format v1\n"
    );
}
