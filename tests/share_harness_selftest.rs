//! The network-share harness itself (tests/share_harness.rs) and what an sshfs mount does when
//! its server goes away: a mount through sshfs and through `mount -t fuse.sshfs`, read and
//! written both ways; a server killed under a writer; a server frozen under a writer and a
//! reader, long enough to be given up and briefly; a full remote filesystem; which reads go
//! back to the server and which come from the page cache. The facts asserted here are the ones
//! bakfs's share support relies on (sshfs 3.7 with FUSE 3.14 on Debian 12).
#![allow(clippy::unwrap_used)]

#[path = "share_harness.rs"]
mod share_harness;

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bakfs_e2e::{have_root, sh, write_random, Env};
use share_harness::*;

/// A scratch directory, a server, a remote directory `remote` and a mount point `mp` (not yet
/// mounted).
fn world() -> (Env, SshServer, PathBuf, PathBuf) {
    let e = Env::new();
    let remote = e.path("remote");
    let mp = e.path("mp");
    fs::create_dir_all(&remote).unwrap();
    fs::create_dir_all(&mp).unwrap();
    let s = SshServer::start();
    (e, s, remote, mp)
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

/// Polls `cond` every 10 ms until it holds; panics after `limit`.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A process writing (or reading) a file of 64 MiB in 1 MiB steps, round and round, until an
/// operation fails or `seconds` are up; then fsync and close. It prints `going` after 8 MiB,
/// `write ERRNO SECONDS` / `read ERRNO SECONDS` for the failed operation and how long it was
/// blocked, `short BYTES SECONDS` for a read that returned less than asked, `done LONGEST`
/// (the longest operation) if nothing failed, then `fsync ok|ERRNO` and `close ok|ERRNO`.
const LOOP_PY: &str = r#"
import errno, os, sys, time
mode, path, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
N = 1 << 20
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) if mode == "write" else os.open(path, os.O_RDONLY)
buf = b"w" * N
n, longest, t0 = 0, 0.0, time.monotonic()
def name(e): return errno.errorcode.get(e.errno, str(e.errno))
while time.monotonic() - t0 < limit:
    off, t = (n % 64) * N, time.monotonic()
    try:
        if mode == "write":
            os.pwrite(fd, buf, off)
        else:
            os.posix_fadvise(fd, off, N, os.POSIX_FADV_DONTNEED)
            got = len(os.pread(fd, N, off))
            if got != N:
                print(f"short {got} {time.monotonic() - t:.2f}", flush=True)
    except OSError as e:
        print(f"{mode} {name(e)} {time.monotonic() - t:.2f}", flush=True)
        break
    longest = max(longest, time.monotonic() - t)
    n += 1
    if n == 8:
        print("going", flush=True)
else:
    print(f"done {longest:.2f}", flush=True)
for what, f in (("fsync", lambda: os.fsync(fd)), ("close", lambda: os.close(fd))):
    try:
        f()
        print(f"{what} ok", flush=True)
    except OSError as e:
        print(f"{what} {name(e)}", flush=True)
"#;

/// The errors of an operation on an sshfs mount whose connection is gone.
const GONE: [&str; 3] = ["EIO", "ECONNABORTED", "ENOTCONN"];

/// A python3 process running a script; its stdout lines are collected with the time each came.
struct Probe {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Probe {
    fn start(script: &str, args: &[&str]) -> Self {
        let mut child = Command::new("python3")
            .args(["-c", script])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(vec![]));
        let l = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap().push((Instant::now(), line));
            }
        });
        Self {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// Waits for a line starting with `prefix`; returns it and when it came.
    fn wait_for(&self, prefix: &str, limit: Duration) -> (Instant, String) {
        let t = Instant::now();
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.1.starts_with(prefix))
            {
                return l.clone();
            }
            assert!(
                t.elapsed() < limit,
                "no line {prefix:?} in {limit:?}: {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the process to end (up to `limit`); returns all its lines.
    fn finish(&mut self, limit: Duration) -> Vec<String> {
        let t = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                t.elapsed() < limit,
                "probe still running after {limit:?}: {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        self.text()
    }

    fn text(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| l.1.clone())
            .collect()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The words of the first line of `lines` starting with `prefix`.
fn words<'a>(lines: &'a [String], prefix: &str) -> Vec<&'a str> {
    lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {lines:?}"))
        .split(' ')
        .collect()
}

#[test]
fn sshfs_mount_writes_and_reads_both_ways() {
    if !have_root("sshfs_mount_writes_and_reads_both_ways") {
        return;
    }
    let (_e, s, remote, mp) = world();
    let mut m = SshfsMount::mount(&s, &remote, &mp);

    // mountinfo: fstype fuse.sshfs, the source as given, mounted by root.
    let entry = m.entry().unwrap();
    assert_eq!(entry.fstype, "fuse.sshfs", "{entry:?}");
    assert_eq!(entry.source, s.source(&remote), "{entry:?}");
    assert_eq!(entry.mountpoint, m.path(), "{entry:?}");
    assert!(entry.dev.starts_with("0:"), "{entry:?}");
    assert!(
        entry.super_options.contains("user_id=0,group_id=0"),
        "{entry:?}"
    );
    assert!(m.sshfs_alive());
    assert_ne!(
        fs::metadata(&mp).unwrap().dev(),
        fs::metadata(&remote).unwrap().dev()
    );

    // Written through the mount: on the server, the same bytes; and back.
    write_random(&mp.join("a"), 3 << 20, 1);
    assert_eq!(
        fs::read(remote.join("a")).unwrap(),
        fs::read(mp.join("a")).unwrap()
    );
    assert_eq!(fs::metadata(remote.join("a")).unwrap().len(), 3 << 20);
    // Written on the server: seen through the mount.
    fs::write(remote.join("b"), "from the server").unwrap();
    assert_eq!(fs::read_to_string(mp.join("b")).unwrap(), "from the server");
    // Directories, rename, fsync, removal.
    fs::create_dir(mp.join("d")).unwrap();
    fs::rename(mp.join("a"), mp.join("d/a2")).unwrap();
    File::open(mp.join("d/a2")).unwrap().sync_all().unwrap();
    assert!(remote.join("d/a2").exists() && !remote.join("a").exists());
    fs::remove_file(mp.join("b")).unwrap();
    assert!(!remote.join("b").exists());

    let pid = m.sshfs_pid().unwrap();
    m.unmount();
    assert!(!alive(pid), "sshfs {pid} still runs after unmount");
    assert!(mount_at(&mp).is_none());
    assert_eq!(fs::read_dir(&mp).unwrap().count(), 0);
}

#[test]
fn mount_t_fuse_sshfs_mounts_as_the_daemon_would() {
    if !have_root("mount_t_fuse_sshfs_mounts_as_the_daemon_would") {
        return;
    }
    let (_e, mut s, remote, mp) = world();
    fs::write(remote.join("x"), "x").unwrap();
    let mount = |fstype: &str, options: &str, source: &str| {
        Command::new("mount")
            .args(["-t", fstype, "-o", options, source])
            .arg(&mp)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };

    // `mount -t FSTYPE -o OPTIONS SOURCE PATH`, with fuse.sshfs (and the short sshfs: Debian
    // links both /sbin/mount.fuse.sshfs and /sbin/mount.sshfs to sshfs).
    for fstype in ["fuse.sshfs", "sshfs"] {
        let o = mount(fstype, &s.sshfs_options(), &s.source(&remote));
        assert!(o.status.success(), "{fstype}: {o:?}");
        let mut m = SshfsMount::adopt(&mp);
        let entry = mount_at(&mp).unwrap();
        assert_eq!(entry.fstype, "fuse.sshfs");
        assert_eq!(entry.source, s.source(&remote));
        assert_eq!(fs::read_to_string(mp.join("x")).unwrap(), "x");
        assert!(m.sshfs_alive());
        // Unmounted as the daemon would: plain umount, and sshfs exits.
        assert!(Command::new("umount").arg(&mp).status().unwrap().success());
        assert!(mount_at(&mp).is_none());
        wait_until("sshfs to exit", Duration::from_secs(5), || !m.sshfs_alive());
        m.unmount();
    }
    let m = SshfsMount::mount_t(&s, &remote, &mp);
    assert!(m.mounted());
    drop(m);
    assert!(mount_at(&mp).is_none());

    // Failures come back from mount(8) at once, exit status 1, a message on stderr.
    let o = mount(
        "fuse.sshfs",
        &s.sshfs_options(),
        &s.source(&remote.join("missing")),
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No such file or directory"),
        "{o:?}"
    );
    assert!(mount_at(&mp).is_none());
    s.kill();
    let t = Instant::now();
    let o = mount("fuse.sshfs", &s.sshfs_options(), &s.source(&remote));
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(mount_at(&mp).is_none());

    // The server back on the same port: the same source and options mount it.
    s.restart();
    let m = SshfsMount::mount_t(&s, &remote, &mp);
    assert_eq!(fs::read_to_string(mp.join("x")).unwrap(), "x");
    drop(m);
}

#[test]
fn mount_on_a_frozen_server_fails_after_the_connect_timeout() {
    if !have_root("mount_on_a_frozen_server_fails_after_the_connect_timeout") {
        return;
    }
    let (_e, s, remote, mp) = world();
    s.freeze();
    let t = Instant::now();
    let o = Command::new("mount")
        .args([
            "-t",
            "fuse.sshfs",
            "-o",
            &s.sshfs_options(),
            &s.source(&remote),
        ])
        .arg(&mp)
        .output()
        .unwrap();
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        took >= Duration::from_secs(CONNECT_TIMEOUT_S) - Duration::from_millis(500)
            && took < Duration::from_secs(CONNECT_TIMEOUT_S + 5),
        "{took:?}"
    );
    assert!(mount_at(&mp).is_none());
    s.thaw();
    // The sessions of the attempt end; the server mounts again.
    wait_until(
        "the attempt's sessions to end",
        Duration::from_secs(10),
        || s.processes().len() == 1,
    );
    let m = SshfsMount::mount(&s, &remote, &mp);
    assert!(m.mounted());
}

#[test]
fn killed_server_fails_the_writer_at_once_and_the_mount_goes_away() {
    if !have_root("killed_server_fails_the_writer_at_once_and_the_mount_goes_away") {
        return;
    }
    let (_e, mut s, remote, mp) = world();
    fs::write(remote.join("x"), "x").unwrap();
    let m = SshfsMount::mount(&s, &remote, &mp);
    let mounted_dev = fs::metadata(&mp).unwrap().dev();
    let held = File::open(mp.join("x")).unwrap();
    fs::write(remote.join("y"), "y").unwrap();
    let cached = File::open(mp.join("y")).unwrap();
    assert_eq!(cached.read_at(&mut [0u8; 8], 0).unwrap(), 1);
    let big = mp.join("big");
    let mut w = Probe::start(LOOP_PY, &["write", big.to_str().unwrap(), "60"]);
    w.wait_for("going", Duration::from_secs(20));
    assert!(s.processes().len() >= 3, "{:?}", s.processes());

    let t = Instant::now();
    s.kill();
    assert!(s.processes().is_empty());
    let (when, _) = w.wait_for("write ", Duration::from_secs(10));
    let lines = w.finish(Duration::from_secs(10));
    eprintln!(
        "server killed: the writer's failure after {:?}: {lines:?}",
        when - t
    );
    // The write under way fails within moments (the TCP connection is closed): EIO from sshfs
    // mostly, ECONNABORTED or ENOTCONN from the kernel when sshfs's exit overtakes it.
    assert!(GONE.contains(&words(&lines, "write ")[1]), "{lines:?}");
    assert!(when - t < Duration::from_secs(2), "{:?}", when - t);
    // fsync and close on that descriptor fail too (EIO, ECONNABORTED or ENOTCONN, depending
    // on how far sshfs's exit has got).
    assert!(GONE.contains(&words(&lines, "fsync")[1]), "{lines:?}");
    assert!(GONE.contains(&words(&lines, "close")[1]), "{lines:?}");

    // sshfs exits and takes the mount with it (libfuse, as root, unmounts lazily on exit).
    wait_until("sshfs to exit", Duration::from_secs(5), || !m.sshfs_alive());
    wait_until("the mount to go", Duration::from_secs(5), || !m.mounted());
    let gone = t.elapsed();
    eprintln!("server killed: sshfs gone and unmounted after {gone:?}");
    assert!(mount_at(&mp).is_none());

    // What was open on the mount answers ENOTCONN: a read at once; for up to the attribute
    // timeout (1 s) fstat may still be answered from the attribute cache and a read from the
    // page cache, afterwards everything is ENOTCONN.
    let held_read = (&held).read(&mut [0u8; 8]).map_err(|e| errno(&e));
    eprintln!(
        "server killed: at once, fstat of an open file {:?}, a read of cached data {:?}",
        held.metadata().map(|_| ()).map_err(|e| errno(&e)),
        cached.read_at(&mut [0u8; 8], 0).map_err(|e| errno(&e))
    );
    assert_eq!(held_read, Err(libc::ENOTCONN));
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(errno(&held.metadata().unwrap_err()), libc::ENOTCONN);
    assert_eq!(errno(&cached.metadata().unwrap_err()), libc::ENOTCONN);
    assert_eq!(
        errno(&cached.read_at(&mut [0u8; 8], 0).unwrap_err()),
        libc::ENOTCONN
    );
    // The path does not hang: it is the local directory beneath again, and a file created
    // there lands on the local disk, not on the share.
    let under = fs::metadata(&mp).unwrap();
    assert_ne!(under.dev(), mounted_dev);
    assert_eq!(
        under.dev(),
        fs::metadata(mp.parent().unwrap()).unwrap().dev()
    );
    assert_eq!(
        errno(&fs::metadata(mp.join("x")).unwrap_err()),
        libc::ENOENT
    );
    fs::write(mp.join("after"), "local").unwrap();
    assert!(!remote.join("after").exists());
    fs::remove_file(mp.join("after")).unwrap();
}

#[test]
fn frozen_server_hangs_operations_until_the_keepalives_give_up() {
    if !have_root("frozen_server_hangs_operations_until_the_keepalives_give_up") {
        return;
    }
    let (_e, s, remote, mp) = world();
    sh(&format!(
        "head -c 64M /dev/urandom > {}",
        remote.join("r").display()
    ));
    fs::write(remote.join("x"), "x").unwrap();
    let m = SshfsMount::mount(&s, &remote, &mp);
    let mut w = Probe::start(LOOP_PY, &["write", mp.join("w").to_str().unwrap(), "60"]);
    let mut r = Probe::start(LOOP_PY, &["read", mp.join("r").to_str().unwrap(), "60"]);
    w.wait_for("going", Duration::from_secs(20));
    r.wait_for("going", Duration::from_secs(20));
    // Let the attribute cache of the mount's root expire: stat is a round trip then.
    std::thread::sleep(Duration::from_millis(1100));

    s.freeze();
    let t = Instant::now();
    let stat_mp = {
        let mp = mp.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            let r = fs::metadata(&mp);
            (t.elapsed(), r.map(|_| ()).map_err(|e| errno(&e)))
        })
    };
    let (wrote, _) = w.wait_for("write ", Duration::from_secs(15));
    let wl = w.finish(Duration::from_secs(10));
    let rl = r.finish(Duration::from_secs(15));
    let (stat_took, stat) = stat_mp.join().unwrap();
    eprintln!(
        "frozen: writer {:?} after {:?}, reader {rl:?}, stat(mp) {stat:?} after {stat_took:?}",
        wl,
        wrote - t
    );
    // Nothing answers for ServerAliveInterval * ServerAliveCountMax (to one interval more):
    // then the blocked write fails with EIO, the blocked read returns short (what had arrived)
    // and the next one fails, stat of the mount point itself fails with EIO.
    let give_up = Duration::from_secs(ALIVE_INTERVAL_S * ALIVE_COUNT_MAX);
    let late = give_up + Duration::from_secs(ALIVE_INTERVAL_S + 2);
    assert!(
        wrote - t >= give_up - Duration::from_millis(300) && wrote - t < late,
        "{:?}",
        wrote - t
    );
    let ww = words(&wl, "write ");
    assert_eq!(ww[1], "EIO", "{wl:?}");
    assert!(ww[2].parse::<f64>().unwrap() >= 2.5, "{wl:?}");
    assert!(!rl.iter().any(|l| l.starts_with("done")), "{rl:?}");
    let rw = words(&rl, "read ");
    assert!(
        ["ECONNABORTED", "ENOTCONN", "EIO"].contains(&rw[1]),
        "{rl:?}"
    );
    assert!(
        stat_took >= give_up - Duration::from_millis(300) && stat_took < late,
        "{stat_took:?}"
    );
    assert!(
        matches!(stat, Err(libc::EIO) | Err(libc::ENOTCONN)),
        "{stat:?}"
    );
    // Then as after a kill: sshfs gone, the mount gone.
    wait_until("sshfs to exit", Duration::from_secs(5), || !m.sshfs_alive());
    wait_until("the mount to go", Duration::from_secs(5), || !m.mounted());

    // Thawed, the server's sessions see their connections closed and end; it mounts again.
    s.thaw();
    wait_until("the sessions to end", Duration::from_secs(10), || {
        s.processes().len() == 1
    });
    let m2 = SshfsMount::mount(&s, &remote, &mp);
    assert_eq!(fs::read_to_string(mp.join("x")).unwrap(), "x");
    drop(m2);
}

#[test]
fn brief_freeze_is_only_a_stall() {
    if !have_root("brief_freeze_is_only_a_stall") {
        return;
    }
    let (_e, s, remote, mp) = world();
    let m = SshfsMount::mount(&s, &remote, &mp);
    let mut w = Probe::start(LOOP_PY, &["write", mp.join("w").to_str().unwrap(), "5"]);
    w.wait_for("going", Duration::from_secs(20));
    s.freeze();
    std::thread::sleep(Duration::from_millis(1500));
    s.thaw();
    let lines = w.finish(Duration::from_secs(20));
    let longest: f64 = words(&lines, "done")[1].parse().unwrap();
    assert!(longest >= 1.3, "{lines:?}");
    assert_eq!(words(&lines, "fsync")[1], "ok", "{lines:?}");
    assert_eq!(words(&lines, "close")[1], "ok", "{lines:?}");
    assert!(m.mounted() && m.sshfs_alive());
}

/// Writes `size` bytes to `path` in 1 MiB steps (up to the first failure), then fsyncs if
/// `fsync` is 1, then closes: prints `write ok|ERRNO MIB_WRITTEN`, `fsync ok|ERRNO|-` and
/// `close ok|ERRNO`.
const FILL_PY: &str = r#"
import errno, os, sys
path, size, fsync = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
def name(e): return errno.errorcode.get(e.errno, str(e.errno))
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
done, res = 0, "ok"
while done < size:
    try:
        done += os.write(fd, b"f" * min(1 << 20, size - done))
    except OSError as e:
        res = name(e)
        break
print(f"write {res} {done / (1 << 20):.2f}", flush=True)
for what, f, on in (("fsync", lambda: os.fsync(fd), fsync), ("close", lambda: os.close(fd), True)):
    if not on:
        print(f"{what} -", flush=True)
        continue
    try:
        f()
        print(f"{what} ok", flush=True)
    except OSError as e:
        print(f"{what} {name(e)}", flush=True)
"#;

/// `stat -f` of a path: block size, fragment size, blocks, free, available, inodes, free inodes.
fn statvfs(p: &Path) -> Vec<u64> {
    sh(&format!(
        "stat -f -c '%s %S %b %f %a %c %d' {}",
        p.display()
    ))
    .split_whitespace()
    .map(|w| w.parse().unwrap())
    .collect()
}

#[test]
fn full_remote_filesystem_shows_in_statvfs_and_fails_writes_with_eio() {
    if !have_root("full_remote_filesystem_shows_in_statvfs_and_fails_writes_with_eio") {
        return;
    }
    let (e, s, _remote, mp) = world();
    let nas = Tmpfs::mount(&e.path("nas"), 8);
    let _m = SshfsMount::mount(&s, nas.path(), &mp);
    let fill = |name: &str, size: usize, fsync: bool| {
        let o = Command::new("python3")
            .args(["-c", FILL_PY, mp.join(name).to_str().unwrap()])
            .arg(size.to_string())
            .arg(if fsync { "1" } else { "0" })
            .output()
            .unwrap();
        let lines: Vec<String> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        lines
    };

    // statvfs through the mount is the remote filesystem's (statvfs@openssh.com), not cached.
    assert_eq!(statvfs(&mp), statvfs(nas.path()));
    assert_eq!(statvfs(&mp)[2] * statvfs(&mp)[1], 8 << 20);
    fs::write(nas.path().join("two"), vec![0u8; 2 << 20]).unwrap();
    assert_eq!(statvfs(&mp), statvfs(nas.path()));
    assert_eq!(statvfs(&mp)[4] * statvfs(&mp)[1], 6 << 20);
    fs::remove_file(nas.path().join("two")).unwrap();

    // Past the end: writes are sent without waiting for the answer, so write() only fails
    // some MiB later, with EIO (sftp has no "no space" status: ENOSPC becomes SSH_FX_FAILURE).
    let l = fill("big", 32 << 20, true);
    let w = words(&l, "write");
    assert_eq!(w[1], "EIO", "{l:?}");
    assert!(w[2].parse::<f64>().unwrap() >= 8.0, "{l:?}");
    assert_eq!(words(&l, "fsync")[1], "EIO", "{l:?}");
    assert_eq!(words(&l, "close")[1], "ok", "{l:?}");
    assert_eq!(statvfs(&mp)[4], 0);

    // A small file on the full filesystem: write() succeeds, the error comes at fsync (EIO;
    // close then succeeds) or, without fsync, at close (EIO); an empty file is left behind.
    for (name, fsync) in [("small-fsync", true), ("small", false)] {
        let l = fill(name, 1000, fsync);
        assert_eq!(words(&l, "write")[1], "ok", "{l:?}");
        if fsync {
            assert_eq!(words(&l, "fsync")[1], "EIO", "{l:?}");
            assert_eq!(words(&l, "close")[1], "ok", "{l:?}");
        } else {
            assert_eq!(words(&l, "close")[1], "EIO", "{l:?}");
        }
        assert_eq!(fs::metadata(nas.path().join(name)).unwrap().len(), 0);
    }
}

/// For each way of reading a file through the mount: fills the page cache through a descriptor
/// `old`, changes the file on the server behind sshfs's back (same size), reads the way named,
/// prints `WAY fresh|stale`.
const CACHE_PY: &str = r#"
import mmap, os, sys
remote, mnt = sys.argv[1], sys.argv[2]
N = 1 << 20
def buf():
    return mmap.mmap(-1, N)  # page-aligned, for O_DIRECT
def read(fd, off=0, n=N):
    b = buf()
    got = os.preadv(fd, [memoryview(b)[:n]], off)
    return bytes(b[:got])
def direct(p, off=0, n=N):
    fd = os.open(p, os.O_RDONLY | os.O_DIRECT)
    try:
        return read(fd, off, n)
    finally:
        os.close(fd)
def new_open(p):
    fd = os.open(p, os.O_RDONLY)
    try:
        return read(fd)
    finally:
        os.close(fd)
ways = {
    "same-fd": lambda old, p, d: read(old),
    "fadvise-dontneed": lambda old, p, d: (os.posix_fadvise(old, 0, 0, os.POSIX_FADV_DONTNEED), read(old))[1],
    "new-open": lambda old, p, d: new_open(p),
    "o-direct-open": lambda old, p, d: direct(p),
    "o-direct-unaligned": lambda old, p, d: direct(p, 1, N - 3),
    "o-direct-fd-opened-before": lambda old, p, d: read(d),
    "same-fd-after-o-direct": lambda old, p, d: (read(d), read(old))[1],
}
for i, (way, f) in enumerate(ways.items()):
    r, p = f"{remote}/c{i}", f"{mnt}/c{i}"
    with open(r, "wb") as w:
        w.write(b"a" * N)
    d = os.open(p, os.O_RDONLY | os.O_DIRECT)
    old = os.open(p, os.O_RDONLY)
    assert read(old) == b"a" * N
    fd = os.open(r, os.O_WRONLY)
    os.pwrite(fd, b"b" * N, 0)
    os.close(fd)
    got = f(old, p, d)
    print(way, "fresh" if set(got) == {ord("b")} else "stale" if set(got) == {ord("a")} else "mixed", flush=True)
    os.close(old)
    os.close(d)
"#;

#[test]
fn which_reads_go_back_to_the_server() {
    if !have_root("which_reads_go_back_to_the_server") {
        return;
    }
    let (_e, s, remote, mp) = world();
    let _m = SshfsMount::mount(&s, &remote, &mp);
    let o = Command::new("python3")
        .args([
            "-c",
            CACHE_PY,
            remote.to_str().unwrap(),
            mp.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let seen: Vec<(String, String)> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect();
    eprintln!("{seen:?}");
    let want = [
        // The page cache of an open descriptor is not checked against the server...
        ("same-fd", "stale"),
        // ...but dropping it (fadvise DONTNEED) makes the next read go to the server;
        ("fadvise-dontneed", "fresh"),
        // a new open drops it too (sshfs without kernel_cache: FOPEN_KEEP_CACHE not set);
        ("new-open", "fresh"),
        // O_DIRECT is accepted, even unaligned, and reads from the server...
        ("o-direct-open", "fresh"),
        ("o-direct-unaligned", "fresh"),
        ("o-direct-fd-opened-before", "fresh"),
        // ...without dropping the page cache of other descriptors.
        ("same-fd-after-o-direct", "stale"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(seen, want);

    // O_DIRECT from Rust: accepted, unaligned buffer and length.
    fs::write(remote.join("d"), "0123456789").unwrap();
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(mp.join("d"))
        .unwrap();
    let mut v = vec![];
    f.read_to_end(&mut v).unwrap();
    assert_eq!(v, b"0123456789");
}

#[test]
fn server_processes_are_all_found_frozen_and_killed() {
    if !have_root("server_processes_are_all_found_frozen_and_killed") {
        return;
    }
    let (_e, mut s, remote, mp) = world();
    assert_eq!(s.processes().len(), 1);
    let m1 = SshfsMount::mount(&s, &remote, &mp);
    let m2 = SshfsMount::mount(&s, &remote, &mp.with_extension("2"));
    // sshd, and per connection a monitor and an SFTP session (each in a session of its own).
    let procs = s.processes();
    assert_eq!(procs.len(), 5, "{procs:?}");
    s.freeze();
    assert!(procs.iter().all(|&p| state(p) == Some('T')));
    s.thaw();
    assert!(procs.iter().all(|&p| state(p) != Some('T')));
    s.kill();
    assert!(procs.iter().all(|&p| !alive(p)), "{procs:?}");
    wait_until("sshfs to exit", Duration::from_secs(5), || {
        !m1.sshfs_alive() && !m2.sshfs_alive()
    });
    // kill, freeze, thaw of a dead server: nothing.
    s.kill();
    s.freeze();
    s.thaw();
}

#[test]
fn dropped_while_frozen_and_busy_nothing_is_left() {
    if !have_root("dropped_while_frozen_and_busy_nothing_is_left") {
        return;
    }
    let (_e, s, remote, mp) = world();
    let m = SshfsMount::mount(&s, &remote, &mp);
    let mut w = Probe::start(LOOP_PY, &["write", mp.join("w").to_str().unwrap(), "60"]);
    w.wait_for("going", Duration::from_secs(20));
    s.freeze();
    let procs = s.processes();
    let sshfs = m.sshfs_pid().unwrap();
    let t = Instant::now();
    // The writer holds a file open: umount is refused, umount -l detaches; sshfs ends when its
    // keepalives give up.
    drop(m);
    drop(s);
    let took = t.elapsed();
    eprintln!("dropped while frozen and busy: everything gone after {took:?}");
    assert!(took < Duration::from_secs(12), "{took:?}");
    assert!(mount_at(&mp).is_none());
    assert!(!alive(sshfs));
    assert!(procs.iter().all(|&p| !alive(p)), "{procs:?}");
    let lines = w.finish(Duration::from_secs(10));
    assert!(GONE.contains(&words(&lines, "write ")[1]), "{lines:?}");
}
