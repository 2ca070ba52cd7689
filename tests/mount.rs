//! `bakfs mount` through real FUSE mounts: the mounted snapshot against its source, `latest`,
//! new snapshots appearing, permissions for other users, EIO on damage, concurrent readers,
//! signals, a killed mount, and the mount(8) helper.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bakfs_e2e::{bin, have_root, rich_tree, rsync_diff, sh, write_random, Env};

/// A mount that is taken down when the test ends, pass or fail.
struct Mnt {
    mp: PathBuf,
    pid: Option<u32>,
}

impl Drop for Mnt {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mp)
            .stderr(Stdio::null())
            .status();
        if let Some(pid) = self.pid {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn needs_fuse(test: &str) -> bool {
    if !have_root(test) {
        return false;
    }
    assert!(
        Path::new("/dev/fuse").exists(),
        "{test}: /dev/fuse is missing (modprobe fuse)"
    );
    true
}

fn mounted_type(mp: &Path) -> Option<String> {
    let mp = mp.canonicalize().ok()?;
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .rev()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (Path::new(left.split(' ').nth(4)?) == mp).then(|| right.to_string())
        })
        .next()
}

/// Mounts in the background (the default) and returns the guard.
fn mount(e: &Env, extra: &[&str]) -> Mnt {
    mount_at(e, "mnt", extra)
}

/// As [`mount`], on the directory `name` of the test's scratch directory.
fn mount_at(e: &Env, name: &str, extra: &[&str]) -> Mnt {
    let mp = e.path(name);
    let _ = fs::create_dir(&mp); // exists already, perhaps as a stale mount
    let mut args = vec!["mount", mp.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = e.json(&args);
    let m = Mnt {
        mp: mp.clone(),
        pid: out["pid"].as_u64().map(|p| p as u32),
    };
    let t = mounted_type(&mp).expect("nothing mounted after `bakfs mount` returned");
    assert!(t.starts_with("fuse.bakfs bakfs:"), "mount table says {t:?}");
    m
}

/// A repository with one snapshot of `src/` holding the file `f` with `content`.
fn one_file_snapshot(content: &str) -> (Env, PathBuf) {
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), content).unwrap();
    e.ok(&["backup", src.to_str().unwrap()]);
    (e, src)
}

/// The names in directory `d`, sorted.
fn names(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn snapshot_dirs(mp: &Path) -> Vec<String> {
    names(mp)
        .into_iter()
        .filter(|n| n.starts_with("20"))
        .collect()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every path under `root` (not `root` itself), without following symlinks.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

fn inode_numbers(root: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = vec![(
        root.to_path_buf(),
        fs::symlink_metadata(root).unwrap().ino(),
    )];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].0.clone();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            for d in fs::read_dir(&p).unwrap() {
                let d = d.unwrap();
                out.push((d.path(), d.metadata().unwrap().ino()));
            }
        }
        i += 1;
    }
    out.sort();
    out
}

#[test]
fn mounted_snapshot_is_the_source_tree() {
    if !needs_fuse("mounted_snapshot_is_the_source_tree") {
        return;
    }
    let e = Env::init();
    let src = rich_tree(&e);
    // A stored SELinux label (this host has no SELinux, so it is plain data to the kernel).
    sh(&format!(
        "echo labelled > {0}/labelled && setfattr -n security.selinux -v system_u:object_r:etc_t:s0 {0}/labelled",
        src.display()
    ));
    let snap = e.json(&["backup", src.to_str().unwrap()]);
    let id = snap["id"].as_str().unwrap().to_string();
    let m = mount(&e, &[]);
    // As root, the mount's readahead is raised from FUSE's 128 KiB to 1 MiB (docs/mount.md).
    let dev = sh(&format!("mountpoint -d '{}'", m.mp.display()));
    assert_eq!(
        fs::read_to_string(format!("/sys/class/bdi/{}/read_ahead_kb", dev.trim()))
            .unwrap()
            .trim(),
        "1024"
    );
    let dirs = snapshot_dirs(&m.mp);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let inside = m.mp.join("latest").join(src.strip_prefix("/").unwrap());
    // Contents, modes, owners, times, hard links, ACLs, xattrs, devices, symlinks.
    assert_eq!(
        rsync_diff(&src, &inside),
        "",
        "rsync -aHAXS sees differences through the mount"
    );
    sh(&format!(
        "cd {} && find . -type f -print0 | xargs -0 -I{{}} cmp {{}} {}/{{}}",
        src.display(),
        inside.display()
    ));
    // Hard links share an inode number; the link count is the source's.
    let a = fs::metadata(inside.join("a.txt")).unwrap();
    let h = fs::metadata(inside.join("dir/sub/hardlink")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (h.ino(), 2));
    assert_eq!(
        fs::read_link(inside.join("dir/link")).unwrap(),
        Path::new("../a.txt")
    );
    // xattrs and ACLs with the usual tools.
    let x = sh(&format!(
        "getfattr -n user.note --only-values {}",
        inside.join("a.txt").display()
    ));
    assert_eq!(x, "a note");
    let acl = sh(&format!("getfacl -c {}", inside.join("a.txt").display()));
    assert!(acl.contains("user:nobody:r--"), "{acl}");
    // A stored label reads back; where there is none, labels are "not supported", so `ls -l`
    // asks once per mount instead of once per entry (docs/mount.md).
    let label = sh(&format!(
        "getfattr -n security.selinux --only-values {}",
        inside.join("labelled").display()
    ));
    assert_eq!(label.trim_end_matches('\0'), "system_u:object_r:etc_t:s0");
    let none = sh(&format!(
        "getfattr -n security.selinux {} 2>&1 || true",
        inside.join("dir/big").display()
    ));
    assert!(none.contains("Operation not supported"), "{none}");
    let calls = sh(&format!(
        "strace -f -e trace=getxattr,lgetxattr ls -l {} 2>&1 >/dev/null | grep -c security.selinux || true",
        inside.join("dir").display()
    ));
    // coreutils 9.1 asks once; newer ones ask only entries that list extended attributes.
    let calls: u32 = calls.trim().parse().unwrap();
    assert!(
        calls <= 1,
        "ls -l asked {calls} times for labels in a directory of 3 entries"
    );
    // The other ways in: by id, by host, and statfs.
    let short = &id[..8];
    assert_eq!(
        fs::read_link(m.mp.join("ids").join(short)).unwrap(),
        Path::new("..").join(&dirs[0])
    );
    assert!(m
        .mp
        .join("ids")
        .join(short)
        .join(src.strip_prefix("/").unwrap())
        .join("a.txt")
        .exists());
    let snaps = e.json(&["snapshots"]);
    let host = snaps[0]["host"].as_str().unwrap();
    assert!(m
        .mp
        .join("hosts")
        .join(host)
        .join("latest")
        .join(src.strip_prefix("/").unwrap())
        .join("a.txt")
        .exists());
    // statfs: the repository's size in 4 KiB blocks, nothing free, a file per snapshot.
    let statfs = sh(&format!(
        "stat -f -c '%T %S %b %f %c %l' {}",
        m.mp.display()
    ));
    let f: Vec<&str> = statfs.split_whitespace().collect();
    assert!(f[0].starts_with("fuse"), "{statfs}");
    assert_eq!(
        (f[1], f[3], f[4], f[5]),
        ("4096", "0", "1", "255"),
        "{statfs}"
    );
    let repo_bytes: u64 = sh(&format!("du -sb {} | cut -f1", e.repo.display()))
        .trim()
        .parse()
        .unwrap();
    let blocks: u64 = f[2].parse().unwrap();
    assert!(
        blocks > 0 && blocks * 4096 <= repo_bytes + (1 << 20),
        "{statfs}: {repo_bytes} bytes in the repository"
    );
    // The filesystem is named after the repository.
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(e.repo.join("config")).unwrap()).unwrap();
    let repo_id: String = match &config["id"] {
        serde_json::Value::String(h) => h.clone(),
        v => v
            .as_array()
            .unwrap()
            .iter()
            .map(|b| format!("{:02x}", b.as_u64().unwrap()))
            .collect(),
    };
    let t = mounted_type(&m.mp).unwrap();
    assert_eq!(
        t.split(' ').nth(1),
        Some(format!("bakfs:{repo_id}").as_str()),
        "{t}"
    );
    // Names that are not there: ENOENT, at the top and inside a snapshot.
    for p in [m.mp.join("no-such-snapshot"), inside.join("no-such-file")] {
        let err = fs::symlink_metadata(&p).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(libc::ENOENT),
            "{}: {err}",
            p.display()
        );
    }
    // Every entry's stat fields, to the nanosecond: mode, owner, size, mtime, link count.
    let mut checked = 0;
    for entry in walk(&src) {
        let rel = entry.strip_prefix(&src).unwrap();
        let (a, b) = (
            fs::symlink_metadata(&entry).unwrap(),
            fs::symlink_metadata(inside.join(rel)).unwrap(),
        );
        let key = |m: &fs::Metadata| (m.mode(), m.uid(), m.gid(), m.mtime(), m.mtime_nsec());
        assert_eq!(key(&a), key(&b), "{}", rel.display());
        if !a.is_dir() {
            assert_eq!(
                (a.size(), a.nlink()),
                (b.size(), b.nlink()),
                "{}",
                rel.display()
            );
        }
        checked += 1;
    }
    assert!(checked > 5, "{checked} entries compared");
    // Read-only: every write is EROFS.
    for cmd in [
        "touch {}/new",
        "mkdir {}/newdir",
        "rm -f {}/a.txt",
        "sh -c 'echo x >> {}/a.txt'",
    ] {
        let c = cmd.replace("{}", inside.to_str().unwrap());
        let o = Command::new("bash").arg("-c").arg(&c).output().unwrap();
        assert!(!o.status.success(), "{c} succeeded");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("Read-only file system"),
            "{c}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Inode numbers are the same after a remount.
    let before = inode_numbers(&m.mp.join(&dirs[0]));
    e.ok(&["umount", m.mp.to_str().unwrap()]);
    assert!(
        mounted_type(&m.mp).is_none(),
        "still mounted after bakfs umount"
    );
    if let Some(pid) = m.pid {
        wait_exit(pid, "the mount process to exit");
    }
    let m2 = mount(&e, &[]);
    assert_eq!(
        inode_numbers(&m2.mp.join(&dirs[0])),
        before,
        "inode numbers changed across a remount"
    );
    drop(m);
}

#[test]
fn new_snapshots_appear_without_remounting() {
    if !needs_fuse("new_snapshots_appear_without_remounting") {
        return;
    }
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), "one").unwrap();
    e.ok(&["backup", src.to_str().unwrap(), "--tag", "nightly"]);
    let m = mount(&e, &[]);
    assert_eq!(snapshot_dirs(&m.mp).len(), 1);
    let rel = src.strip_prefix("/").unwrap().join("f");
    assert_eq!(
        fs::read_to_string(m.mp.join("latest").join(&rel)).unwrap(),
        "one"
    );
    // Listed once, so that the kernel holds these listings when the snapshot list changes.
    let tagged = m.mp.join("tags/nightly");
    assert_eq!(names(&tagged).len(), 2, "one snapshot and latest");
    std::thread::sleep(Duration::from_millis(1100)); // a different second, so a different name
    fs::write(src.join("f"), "two").unwrap();
    e.ok(&["backup", src.to_str().unwrap(), "--tag", "nightly"]);
    wait_until("the new snapshot to appear", || {
        snapshot_dirs(&m.mp).len() == 2
    });
    let dirs = snapshot_dirs(&m.mp);
    wait_until("latest to move", || {
        fs::read_link(m.mp.join("latest")).unwrap() == Path::new(&dirs[1])
    });
    assert_eq!(
        fs::read_to_string(m.mp.join("latest").join(&rel)).unwrap(),
        "two"
    );
    assert_eq!(
        fs::read_to_string(m.mp.join(&dirs[0]).join(&rel)).unwrap(),
        "one"
    );
    let listed = names(&tagged);
    assert_eq!(listed.len(), 3, "two snapshots and latest: {listed:?}");
    for (name, target) in [
        (&dirs[0], &dirs[0]),
        (&dirs[1], &dirs[1]),
        (&"latest".to_string(), &dirs[1]),
    ] {
        assert_eq!(
            fs::read_link(tagged.join(name)).unwrap(),
            Path::new("../..").join(target),
            "tags/nightly/{name}"
        );
    }
    assert_eq!(
        fs::read_to_string(tagged.join("latest").join(&rel)).unwrap(),
        "two"
    );

    // Forgetting the older snapshot (the newest stays the same) empties its place too.
    let snaps = e.json(&["snapshots"]);
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 2);
    let older = snaps
        .iter()
        .min_by_key(|s| s["time"].as_str().unwrap().to_string())
        .map(|s| s["id"].as_str().unwrap().to_string())
        .unwrap();
    e.ok(&["forget", &older]);
    wait_until("the forgotten snapshot to go", || {
        snapshot_dirs(&m.mp) == [dirs[1].clone()] && names(&tagged).len() == 2
    });
    assert_eq!(
        fs::read_to_string(m.mp.join("latest").join(&rel)).unwrap(),
        "two"
    );
}

#[test]
fn a_prune_that_repacks_under_a_mount_loses_no_reads() {
    if !needs_fuse("a_prune_that_repacks_under_a_mount_loses_no_reads") {
        return;
    }
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    write_random(&src.join("kept"), 3 << 20, 1);
    write_random(&src.join("sub/kept2"), 1 << 20, 2);
    write_random(&src.join("replaced"), 3 << 20, 3);
    e.ok(&["backup", src.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(1100));
    write_random(&src.join("replaced"), 3 << 20, 4);
    e.ok(&["backup", src.to_str().unwrap()]);
    // Two mounts, read in two orders after the prune: on one the first read to fail is a chunk
    // of `kept`, on the other the tree of `sub` (each rereads the index on its own).
    let chunk_first = mount(&e, &[]);
    let tree_first = mount_at(&e, "mnt2", &[]);
    let inside = |m: &Mnt| m.mp.join("latest").join(src.strip_prefix("/").unwrap());
    for m in [&chunk_first, &tree_first] {
        // Looked at but not read: the mount knows where their chunks were.
        assert_eq!(fs::metadata(inside(m).join("kept")).unwrap().len(), 3 << 20);
    }
    // The first snapshot goes; its version of `replaced` shared packs with `kept`, and its
    // trees shared a pack with the tree of `sub`, so prune rewrites those packs and deletes
    // the old ones.
    // Two JSON documents: forget's, then prune's.
    let out = e.ok(&["--json", "forget", "--keep-last", "1", "--prune"]);
    let prune = serde_json::Deserializer::from_str(&out)
        .into_iter::<serde_json::Value>()
        .last()
        .unwrap()
        .unwrap();
    assert!(
        prune["report"]["packs_repacked"].as_u64().unwrap() > 0,
        "prune repacked nothing, the test proves nothing: {out}"
    );
    for (m, order) in [
        (&chunk_first, ["kept", "sub/kept2", "replaced"]),
        (&tree_first, ["sub/kept2", "kept", "replaced"]),
    ] {
        for f in order {
            assert_eq!(
                fs::read(inside(m).join(f)).unwrap(),
                fs::read(src.join(f)).unwrap(),
                "{f} through {}",
                m.mp.display()
            );
        }
    }
}

#[test]
fn other_users_get_only_what_permissions_allow() {
    if !needs_fuse("other_users_get_only_what_permissions_allow") {
        return;
    }
    let e = Env::init();
    // The scratch directory is 0700; open it so that only the file modes decide.
    fs::set_permissions(e.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = e.path("node");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("staker.key"), "secret key").unwrap();
    fs::set_permissions(src.join("staker.key"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(src.join("config.json"), "{}").unwrap();
    fs::set_permissions(src.join("config.json"), fs::Permissions::from_mode(0o644)).unwrap();
    e.ok(&["backup", src.to_str().unwrap()]);
    let m = mount(&e, &["--allow-other"]);
    let inside = m.mp.join("latest").join(src.strip_prefix("/").unwrap());
    let as_nobody = |cmd: &str| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
            .arg(inside.join(cmd))
            .output()
            .unwrap()
    };
    let denied = as_nobody("staker.key");
    assert!(
        !denied.status.success() && denied.stdout.is_empty(),
        "nobody read the 0600 key"
    );
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    let allowed = as_nobody("config.json");
    assert!(
        allowed.status.success(),
        "nobody cannot read a 0644 file: {}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    assert_eq!(
        fs::read_to_string(inside.join("staker.key")).unwrap(),
        "secret key"
    );
}

#[test]
fn damaged_chunk_is_eio_and_other_files_read() {
    if !needs_fuse("damaged_chunk_is_eio_and_other_files_read") {
        return;
    }
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("victim"), 3_000_000, 1);
    e.ok(&["backup", src.to_str().unwrap()]);
    let first: Vec<PathBuf> = bakfs_e2e::packs(&e.repo);
    write_random(&src.join("healthy"), 3_000_000, 2);
    e.ok(&["backup", src.to_str().unwrap()]);
    // The victim's data is in the largest pack of the first backup (the others hold trees).
    let pack = first
        .iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(pack, bytes).unwrap();
    let m = mount(&e, &[]);
    let inside = m.mp.join("latest").join(src.strip_prefix("/").unwrap());
    let o = Command::new("cat")
        .arg(inside.join("victim"))
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "reading a file with a damaged chunk succeeded"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Input/output error"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Whatever was returned before the error is the file's own bytes.
    let original = fs::read(src.join("victim")).unwrap();
    assert_eq!(
        &original[..o.stdout.len()],
        &o.stdout[..],
        "wrong bytes returned before the error"
    );
    assert_eq!(
        fs::read(inside.join("healthy")).unwrap(),
        fs::read(src.join("healthy")).unwrap()
    );
    let log = fs::read_to_string(e.state.join("mount.log")).unwrap();
    let pack_name = pack.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        log.contains(&pack_name) && log.contains("victim"),
        "the log names neither pack nor path:\n{log}"
    );
}

#[test]
fn thirty_two_concurrent_readers_see_the_same_bytes() {
    if !needs_fuse("thirty_two_concurrent_readers_see_the_same_bytes") {
        return;
    }
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..8 {
        write_random(
            &src.join(format!("f{i}")),
            2_000_000 + i * 777_777,
            i as u64 + 10,
        );
    }
    e.ok(&["backup", src.to_str().unwrap()]);
    // An 8 MiB chunk cache for 38 MB of files: chunks are evicted while others decode them.
    let m = mount(&e, &["--cache-size", "8"]);
    let inside = m.mp.join("latest").join(src.strip_prefix("/").unwrap());
    let expected: Vec<Vec<u8>> = (0..8)
        .map(|i| fs::read(src.join(format!("f{i}"))).unwrap())
        .collect();
    std::thread::scope(|s| {
        for t in 0..32 {
            let (inside, expected) = (&inside, &expected);
            s.spawn(move || {
                for k in 0..8 {
                    let i = (t + k) % 8;
                    // Drop the page cache now and then so that reads reach the filesystem.
                    if t == 0 && k % 3 == 0 {
                        let _ = fs::write("/proc/sys/vm/drop_caches", "1");
                    }
                    let got = fs::read(inside.join(format!("f{i}"))).unwrap();
                    assert!(
                        got == expected[i],
                        "reader {t} got different bytes for f{i}"
                    );
                }
            });
        }
    });
}

#[test]
fn random_reads_are_right_and_leave_whole_chunks_cached() {
    if !needs_fuse("random_reads_are_right_and_leave_whole_chunks_cached") {
        return;
    }
    let e = Env::init();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    write_random(&src.join("db"), 6_000_000, 3);
    e.ok(&["backup", src.to_str().unwrap()]);
    let m = mount(&e, &[]);
    let file =
        m.mp.join("latest")
            .join(src.strip_prefix("/").unwrap())
            .join("db");
    let expected = fs::read(src.join("db")).unwrap();
    let f = fs::File::open(&file).unwrap();
    let resident = || {
        sh(&format!(
            "fincore --bytes --noheadings --output RES {}",
            file.display()
        ))
        .trim()
        .parse::<u64>()
        .unwrap()
    };
    assert_eq!(resident(), 0);
    // One 4 KiB read in the middle: the kernel asks for that page alone, and the mount puts
    // the rest of the chunk (about 1 MiB) in the page cache (docs/mount.md).
    let mut page = vec![0u8; 4096];
    f.read_exact_at(&mut page, 3_002_368).unwrap();
    assert!(page[..] == expected[3_002_368..3_002_368 + 4096]);
    wait_until("the rest of the chunk in the page cache", || {
        resident() >= 256 << 10
    });
    // Random reads of odd sizes and places, from 4 threads, partly from stored pages and
    // partly from the filesystem, return the source's bytes; so does the whole file after.
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (f, expected) = (&f, &expected);
            s.spawn(move || {
                let mut x = t * 7919 + 1;
                let mut buf = vec![0u8; 9000];
                for _ in 0..300 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let off = (x >> 16) as usize % (expected.len() - 9000);
                    let len = 1 + (x >> 40) as usize % 9000;
                    f.read_exact_at(&mut buf[..len], off as u64).unwrap();
                    assert!(
                        buf[..len] == expected[off..off + len],
                        "reader {t}: bytes {off}..{} differ",
                        off + len
                    );
                }
            });
        }
    });
    assert!(fs::read(&file).unwrap() == expected);
}

/// Waits for process `pid` to end (or to be a zombie of ours).
fn wait_exit(pid: u32, what: &str) {
    wait_until(what, || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    });
}

/// `--foreground` tells systemd READY=1 once the mount answers and STOPPING=1 on SIGTERM, then
/// unmounts and exits 0; a background mount unmounts on SIGINT and on SIGHUP.
#[test]
fn signals_unmount_cleanly() {
    if !needs_fuse("signals_unmount_cleanly") {
        return;
    }
    let (e, _src) = one_file_snapshot("x");
    let mp = e.path("mnt");
    fs::create_dir_all(&mp).unwrap();
    let sock_path = e.path("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut child = e
        .cmd()
        .args(["mount", "--foreground", mp.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Mnt {
        mp: mp.clone(),
        pid: Some(child.id()),
    };
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("no READY=1 from bakfs mount");
    assert_eq!(&buf[..n], b"READY=1");
    // READY means mounted and answering.
    assert!(mounted_type(&mp).is_some(), "READY=1 before the mount");
    assert!(mp.join("latest").exists());
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let n = sock.recv(&mut buf).expect("no STOPPING=1 from bakfs mount");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "bakfs mount did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert!(mounted_type(&mp).is_none(), "still mounted after SIGTERM");
    for sig in ["INT", "HUP"] {
        let m = mount(&e, &[]);
        let pid = m.pid.expect("pid in --json output");
        Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap();
        wait_exit(pid, &format!("the mount to end after SIG{sig}"));
        assert!(
            mounted_type(&m.mp).is_none(),
            "still mounted after SIG{sig}"
        );
        assert!(
            m.mp.is_dir(),
            "the mountpoint is usable again after SIG{sig}"
        );
    }
}

#[test]
fn a_killed_mount_is_recovered_by_mounting_again() {
    if !needs_fuse("a_killed_mount_is_recovered_by_mounting_again") {
        return;
    }
    let (e, src) = one_file_snapshot("x");
    let m = mount(&e, &[]);
    let pid = m.pid.expect("pid in --json output");
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    wait_until("the stale mount", || {
        fs::metadata(&m.mp).err().and_then(|e| e.raw_os_error()) == Some(libc::ENOTCONN)
    });
    let m2 = mount(&e, &[]);
    assert_eq!(
        fs::read_to_string(
            m2.mp
                .join("latest")
                .join(src.strip_prefix("/").unwrap())
                .join("f")
        )
        .unwrap(),
        "x"
    );
    // Only one bakfs mount is left on the mount point.
    let n = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(m.mp.to_str().unwrap()))
        .count();
    assert_eq!(n, 1);
}

/// Mounting over the very directory that was backed up hid the live files until unmounted: a
/// mount point that is not empty is refused before anything is mounted, in the background and
/// in the foreground; an empty one works.
#[test]
fn a_mount_point_that_is_not_empty_is_refused() {
    if !needs_fuse("a_mount_point_that_is_not_empty_is_refused") {
        return;
    }
    let (e, src) = one_file_snapshot("live");
    // Taken down if the refusal ever fails, so that the files come back.
    let _guard = Mnt {
        mp: src.clone(),
        pid: None,
    };
    for extra in [None, Some("--foreground")] {
        let mut c = e.cmd();
        c.arg("mount").args(extra).arg(&src);
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("bakfs mount {extra:?} on a non-empty directory did not return");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "mount {extra:?}: {err}");
        assert!(
            err.contains(&format!("{}: not an empty directory", src.display())),
            "mount {extra:?}: the message does not name the directory: {err}"
        );
        assert_eq!(mounted_type(&src), None, "mount {extra:?} mounted anyway");
        assert_eq!(fs::read_to_string(src.join("f")).unwrap(), "live");
        assert_eq!(names(&src), ["f"]);
    }
    // An empty directory still works.
    let m = mount_at(&e, "empty", &[]);
    let rel = src.strip_prefix("/").unwrap().join("f");
    assert_eq!(
        fs::read_to_string(m.mp.join("latest").join(rel)).unwrap(),
        "live"
    );
}

#[test]
fn mount_t_fuse_bakfs_and_fstab_work() {
    if !needs_fuse("mount_t_fuse_bakfs_and_fstab_work") {
        return;
    }
    let helper = Path::new("/sbin/mount.fuse.bakfs");
    let ours = fs::symlink_metadata(helper).is_err();
    if ours {
        std::os::unix::fs::symlink(bin("bakfs"), helper).unwrap();
    }
    struct RemoveHelper(bool);
    impl Drop for RemoveHelper {
        fn drop(&mut self) {
            if self.0 {
                let _ = fs::remove_file("/sbin/mount.fuse.bakfs");
            }
        }
    }
    let _h = RemoveHelper(ours);
    let (e, src) = one_file_snapshot("via mount(8)");
    let pw = e.path("pw");
    fs::write(&pw, "correct horse\n").unwrap();
    let mp = e.path("mnt");
    fs::create_dir_all(&mp).unwrap();
    let _guard = Mnt {
        mp: mp.clone(),
        pid: None,
    };
    let opts = format!(
        "nofail,password_file={},state_dir={}",
        pw.display(),
        e.state.display()
    );
    sh(&format!(
        "mount -t fuse.bakfs {} {} -o {opts}",
        e.repo.display(),
        mp.display()
    ));
    let rel = src.strip_prefix("/").unwrap().join("f");
    assert_eq!(
        fs::read_to_string(mp.join("latest").join(&rel)).unwrap(),
        "via mount(8)"
    );
    sh(&format!("umount {}", mp.display()));
    assert!(mounted_type(&mp).is_none());
    // The same through an fstab line.
    let fstab = e.path("fstab");
    fs::write(
        &fstab,
        format!(
            "{} {} fuse.bakfs {opts},allow_other 0 0\n",
            e.repo.display(),
            mp.display()
        ),
    )
    .unwrap();
    sh(&format!("mount -T {} {}", fstab.display(), mp.display()));
    assert_eq!(
        fs::read_to_string(mp.join("latest").join(&rel)).unwrap(),
        "via mount(8)"
    );
    sh(&format!("umount {}", mp.display()));
}
