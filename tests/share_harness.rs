//! Helpers for the network-share tests: an OpenSSH server of our own on 127.0.0.1 serving the
//! filesystem over SFTP, sshfs mounts of it (FUSE), and a small tmpfs to stand for a NAS volume
//! that fills up; each undone when the test ends, pass or fail.
//!
//! The server runs as the init of a PID namespace of its own (`unshare --pid --fork`): the
//! processes sshd forks for each connection (each in a session of its own) are exactly the
//! processes of that namespace, an orphan is reparented to sshd instead of escaping to the
//! system's init, and SIGKILL to sshd takes the whole namespace down at once (the kernel kills
//! the rest before sshd is reaped). Needs root (sshd, FUSE mounts, unshare) and the Debian
//! packages openssh-server, openssh-client, sshfs, fuse3, util-linux and procps, which
//! scripts/deps.sh installs.
#![allow(clippy::unwrap_used, dead_code)]

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bakfs_e2e::scratch_root;

/// sshd's privilege separation directory (Debian's sshd refuses to start without it).
const PRIVSEP_DIR: &str = "/run/sshd";
const SSHD: &str = "/usr/sbin/sshd";
const SSHFS: &str = "/usr/bin/sshfs";

/// Seconds between the client's keepalive probes, and how many unanswered probes make it give
/// up: a frozen server is noticed after `ALIVE_INTERVAL_S * ALIVE_COUNT_MAX` to one interval
/// more (3-4 s), and then every operation on the mount fails.
pub const ALIVE_INTERVAL_S: u64 = 1;
pub const ALIVE_COUNT_MAX: u64 = 3;
/// Seconds a mount waits for a server that does not answer (TCP connect and SSH banner).
pub const CONNECT_TIMEOUT_S: u64 = 5;

/// An sshd of our own on 127.0.0.1:<free port>, root login by a generated ed25519 key only,
/// serving the whole filesystem over SFTP (internal-sftp), with its host key, configuration and
/// log (`sshd.log`, for a failing test's message) in a tempdir. The system's /etc/ssh and any
/// sshd on port 22 play no part.
pub struct SshServer {
    dir: tempfile::TempDir,
    port: u16,
    identity: PathBuf,
    /// `unshare`, whose one child is sshd; `None` once killed.
    child: Option<Child>,
    /// sshd: the host's pid of the namespace's init.
    sshd: u32,
    /// What `/proc/<sshd>/ns/pid` links to (`pid:[4026532174]`): the mark of its processes.
    ns: PathBuf,
}

impl SshServer {
    /// Generates the keys, starts sshd and waits until it accepts connections (it has sent an
    /// SSH banner on a test connection, and the process serving that one has ended).
    pub fn start() -> Self {
        if !Path::new(PRIVSEP_DIR).exists() {
            std::fs::create_dir_all(PRIVSEP_DIR).unwrap();
            std::fs::set_permissions(PRIVSEP_DIR, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let dir = tempfile::Builder::new()
            .prefix("bakfs-sshd-")
            .tempdir_in(scratch_root())
            .unwrap();
        keygen(&dir.path().join("host_key"));
        keygen(&dir.path().join("id"));
        std::fs::copy(
            dir.path().join("id.pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        let mut s = Self {
            identity: dir.path().join("id"),
            dir,
            port: 0,
            child: None,
            sshd: 0,
            ns: PathBuf::new(),
        };
        s.spawn(None);
        s
    }

    /// Starts sshd again after `kill` (the NAS coming back), on the same port with the same
    /// keys, so that the same source and options mount it.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn(Some(self.port));
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The client's private key.
    pub fn identity(&self) -> &Path {
        &self.identity
    }

    /// What sshd has logged (`-e`, LogLevel VERBOSE).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The sshfs source for a remote directory: `root@127.0.0.1:/abs/dir`.
    pub fn source(&self, remote: &Path) -> String {
        assert!(remote.is_absolute(), "{} is not absolute", remote.display());
        format!("root@127.0.0.1:{}", remote.display())
    }

    /// The `-o` options an sshfs mount of this server needs, comma-separated, for
    /// `sshfs SRC MP -o ...` and `mount -t fuse.sshfs -o ... SRC MP` alike: the port and key
    /// (only that key: IdentitiesOnly), no host key check and no known_hosts file, no prompts
    /// (BatchMode), no connection sharing a user's ssh_config might ask for, errors only on
    /// stderr (not the "Permanently added" warning), a connect and banner timeout, and
    /// keepalives that give a frozen server up after 3-4 s. sshfs's `reconnect` is off by
    /// default (it has no option to say so): a lost connection ends the sshfs process and with
    /// it the mount.
    ///
    /// sshfs's caches keep their defaults, as a NAS is mounted: a file changed on the server
    /// behind the mount shows its new size (and a removed one goes) only after the attribute
    /// timeout (1 s; until then reads stop at the old size), a new name shows in a listing only
    /// after dcache_timeout (20 s; a lookup by name finds it at once). A test that changes the
    /// remote directory directly and lists it through the mount adds `,dir_cache=no`.
    pub fn sshfs_options(&self) -> String {
        [
            format!("port={}", self.port),
            format!("IdentityFile={}", self.identity().display()),
            "IdentitiesOnly=yes".into(),
            "StrictHostKeyChecking=no".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "BatchMode=yes".into(),
            "ControlMaster=no".into(),
            "ControlPath=none".into(),
            "LogLevel=ERROR".into(),
            format!("ConnectTimeout={CONNECT_TIMEOUT_S}"),
            format!("ServerAliveInterval={ALIVE_INTERVAL_S}"),
            format!("ServerAliveCountMax={ALIVE_COUNT_MAX}"),
        ]
        .join(",")
    }

    /// The host's pids of sshd and every process it has forked (listener, per-connection
    /// monitors, SFTP sessions).
    pub fn processes(&self) -> Vec<u32> {
        if self.child.is_none() {
            return vec![];
        }
        pids()
            .into_iter()
            .filter(|p| std::fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|l| l == self.ns))
            .collect()
    }

    /// SIGKILL to the server and every session process it forked, at once: the network share
    /// dies mid-operation (its TCP connections are closed by the kernel). Returns when they
    /// are all gone.
    pub fn kill(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // The namespace's init: the kernel kills every other process in it, and sshd is only
        // reaped (so unshare only exits) when they are all gone. Before sshd is known (a start
        // that failed), SIGKILL to unshare: --kill-child passes it on to sshd.
        if self.sshd > 1 {
            signal("KILL", &[self.sshd]);
        } else {
            let _ = c.kill();
        }
        let t = Instant::now();
        while c.try_wait().ok().flatten().is_none() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// SIGSTOP to the server and its session processes: a hung NAS. TCP connections stay open
    /// (the kernel still acknowledges), nothing answers. Returns when every one of them is
    /// stopped (one forked in the meantime is stopped too).
    pub fn freeze(&self) {
        let t = Instant::now();
        loop {
            let running: Vec<u32> = self
                .processes()
                .into_iter()
                .filter(|&p| !matches!(state(p), None | Some('T' | 't' | 'Z' | 'X')))
                .collect();
            if running.is_empty() {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "sshd processes {running:?} did not stop"
            );
            signal("STOP", &running);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGCONT to the server and its session processes.
    pub fn thaw(&self) {
        signal("CONT", &self.processes());
    }

    fn spawn(&mut self, port: Option<u16>) {
        let log_path = self.dir.path().join("sshd.log");
        for _ in 0..10 {
            let fixed = port.is_some();
            let port = port.unwrap_or_else(free_port);
            let config = self.write_config(port);
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .unwrap();
            let logged = log.metadata().unwrap().len() as usize;
            self.sshd = 0;
            let child = Command::new("unshare")
                .args(["--pid", "--fork", "--kill-child", SSHD, "-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("unshare (Debian package util-linux) must be installed");
            let unshare = child.id();
            // Ours from now on: killed on drop even if a check below fails.
            self.child = Some(child);
            // sshd logs this once it listens; a port taken meanwhile makes it exit instead.
            let listening = format!("Server listening on 127.0.0.1 port {port}.");
            let t = Instant::now();
            let up = loop {
                let log = std::fs::read(&log_path).unwrap_or_default();
                if String::from_utf8_lossy(&log[logged.min(log.len())..]).contains(&listening) {
                    break true;
                }
                if self.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                    break false;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(20),
                    "sshd did not start listening:\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(10));
            };
            if !up {
                self.kill();
                assert!(!fixed, "sshd did not start again:\n{}", self.log());
                continue;
            }
            self.sshd = child_of(unshare);
            self.ns = std::fs::read_link(format!("/proc/{}/ns/pid", self.sshd)).unwrap();
            self.port = port;
            assert!(
                banner(port).starts_with("SSH-2.0-"),
                "no SSH banner on port {port}:\n{}",
                self.log()
            );
            // The process sshd forked for that connection ends: afterwards sshd is alone.
            let t = Instant::now();
            while self.processes().len() > 1 {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "sshd's processes {:?} after the banner:\n{}",
                    self.processes(),
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            return;
        }
        panic!("sshd found no free port:\n{}", self.log());
    }

    /// Writes `sshd_config` for `port`; returns its path. Nothing of /etc/ssh is included.
    fn write_config(&self, port: u16) -> PathBuf {
        let d = self.dir.path().display();
        let text = format!(
            "# bakfs test sshd: 127.0.0.1 only, root by key only, SFTP served in-process\n\
             ListenAddress 127.0.0.1:{port}\n\
             HostKey {d}/host_key\n\
             PidFile none\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             AuthenticationMethods publickey\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             UsePAM no\n\
             StrictModes no\n\
             UseDNS no\n\
             PermitTTY no\n\
             AllowTcpForwarding no\n\
             X11Forwarding no\n\
             PrintMotd no\n\
             MaxStartups 100\n\
             Subsystem sftp internal-sftp\n\
             LogLevel VERBOSE\n"
        );
        let config = self.dir.path().join("sshd_config");
        // OpenSSH 9.8 and later hold back clients whose sessions crashed (SIGKILL) or that
        // connected without logging in (the start-up probe); older ones do not know the word.
        std::fs::write(&config, format!("{text}PerSourcePenalties no\n")).unwrap();
        let check = Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(&config)
            .output()
            .expect("sshd (Debian package openssh-server) must be installed");
        if !check.status.success() {
            assert!(
                String::from_utf8_lossy(&check.stderr).contains("PerSourcePenalties"),
                "sshd -t: {}",
                String::from_utf8_lossy(&check.stderr)
            );
            std::fs::write(&config, text).unwrap();
        }
        config
    }
}

impl Drop for SshServer {
    /// Thaws, then kills sshd and every process it forked.
    fn drop(&mut self) {
        self.thaw();
        self.kill();
    }
}

/// An ed25519 key pair without a passphrase at `path` and `path.pub`.
fn keygen(path: &Path) {
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bakfs-test", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (Debian package openssh-client) must be installed");
    assert!(
        o.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A TCP port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first bytes a server on 127.0.0.1:`port` sends (an SSH server: its version banner).
fn banner(port: u16) -> String {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The pids in /proc.
fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// A process's state letter and parent pid from /proc/PID/stat (`None` once it is gone).
fn stat(pid: u32) -> Option<(char, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    let mut f = s[s.rfind(')')? + 1..].split_whitespace();
    let state = f.next()?.chars().next()?;
    Some((state, f.next()?.parse().ok()?))
}

/// A process's state letter (`R`, `S`, `D`, `T`, `Z`...), `None` once it is gone.
pub fn state(pid: u32) -> Option<char> {
    stat(pid).map(|s| s.0)
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    !matches!(state(pid), None | Some('Z' | 'X'))
}

/// The one child of `parent` (waits up to 10 s for it to appear).
fn child_of(parent: u32) -> u32 {
    let t = Instant::now();
    loop {
        if let Some(p) = pids()
            .into_iter()
            .find(|&p| stat(p).is_some_and(|s| s.1 == parent))
        {
            return p;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "process {parent} has no child"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends signal `sig` (`KILL`, `STOP`, `CONT`...) to `pids`; ones gone already are no error.
/// 0 and 1 are left out (to kill(1) they mean the process group and init).
pub fn signal(sig: &str, pids: &[u32]) {
    let pids: Vec<u32> = pids.iter().copied().filter(|&p| p > 1).collect();
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u64,
    /// `major:minor` of the filesystem (FUSE: `0:N`, N also names /sys/fs/fuse/connections/N).
    pub dev: String,
    pub mountpoint: PathBuf,
    /// Per-mount options (`rw,nosuid,nodev,relatime`).
    pub options: String,
    pub fstype: String,
    pub source: String,
    /// Per-superblock options (`rw,user_id=0,group_id=0`).
    pub super_options: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every mount of this process's namespace, in mountinfo's order (a mount over another comes
/// after it).
pub fn mounts() -> Vec<MountEntry> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(" - ")?;
            let a: Vec<&str> = a.split(' ').collect();
            let b: Vec<&str> = b.split(' ').collect();
            Some(MountEntry {
                id: a.first()?.parse().ok()?,
                dev: a.get(2)?.to_string(),
                mountpoint: PathBuf::from(unescape(a.get(4)?)),
                options: a.get(5)?.to_string(),
                fstype: b.first()?.to_string(),
                source: unescape(b.get(1)?),
                super_options: b.get(2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// The topmost mount at `mp` (compared after resolving symlinks), if any.
pub fn mount_at(mp: &Path) -> Option<MountEntry> {
    let mp = canonical(mp);
    mounts().into_iter().rev().find(|m| m.mountpoint == mp)
}

/// The mount with id `id`, if it is still mounted.
pub fn mount_by_id(id: u64) -> Option<MountEntry> {
    mounts().into_iter().find(|m| m.id == id)
}

/// `p` with symlinks resolved through its parent (the mount point itself is not looked at: on a
/// hung mount that would hang).
fn canonical(p: &Path) -> PathBuf {
    match (p.parent(), p.file_name()) {
        (Some(d), Some(n)) => std::fs::canonicalize(d)
            .unwrap_or_else(|_| d.to_path_buf())
            .join(n),
        _ => p.to_path_buf(),
    }
}

/// An sshfs mount of a server's directory, unmounted on drop (lazily if it is busy).
pub struct SshfsMount {
    mp: PathBuf,
    /// Its id in mountinfo: unmounting leaves any other mount at the same path alone.
    id: Option<u64>,
    /// The sshfs process serving it.
    pid: Option<u32>,
}

impl SshfsMount {
    /// `sshfs SOURCE MP -o OPTIONS` (`mp` is created if missing). sshfs connects, mounts and
    /// goes to the background; it exits when the mount is unmounted or the connection is lost.
    pub fn mount(server: &SshServer, remote: &Path, mp: &Path) -> Self {
        let mut c = Command::new(SSHFS);
        c.arg(server.source(remote))
            .arg(mp)
            .arg("-o")
            .arg(server.sshfs_options());
        Self::run(c, mp)
    }

    /// As [`Self::mount`] with other `-o` options (a mount without keepalives, say).
    pub fn mount_with(server: &SshServer, remote: &Path, mp: &Path, options: &str) -> Self {
        let mut c = Command::new(SSHFS);
        c.arg(server.source(remote)).arg(mp).arg("-o").arg(options);
        Self::run(c, mp)
    }

    /// `mount -t fuse.sshfs -o OPTIONS SOURCE MP`, as bakfs's daemon mounts a share (mount(8)
    /// runs /sbin/mount.fuse.sshfs, Debian's link to sshfs).
    pub fn mount_t(server: &SshServer, remote: &Path, mp: &Path) -> Self {
        let mut c = Command::new("mount");
        c.args(["-t", "fuse.sshfs", "-o"])
            .arg(server.sshfs_options())
            .arg(server.source(remote))
            .arg(mp);
        Self::run(c, mp)
    }

    /// Takes charge of an sshfs mount someone else made at `mp` (bakfs's daemon), so that the
    /// test unmounts it in the end whatever happens.
    pub fn adopt(mp: &Path) -> Self {
        let m = mount_at(mp).filter(|m| m.fstype == "fuse.sshfs");
        Self {
            mp: canonical(mp),
            id: m.map(|m| m.id),
            pid: sshfs_serving(&canonical(mp)),
        }
    }

    fn run(mut c: Command, mp: &Path) -> Self {
        std::fs::create_dir_all(mp).unwrap();
        let o = c.stdin(Stdio::null()).output().unwrap();
        assert!(
            o.status.success(),
            "{c:?} failed ({:?}): {}{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let m = mount_at(mp).unwrap_or_else(|| panic!("{c:?}: nothing mounted"));
        let mounted = Self {
            mp: canonical(mp),
            id: Some(m.id),
            pid: sshfs_serving(&canonical(mp)),
        };
        assert_eq!(m.fstype, "fuse.sshfs", "{c:?} mounted {m:?}");
        assert!(mounted.pid.is_some(), "no sshfs process for {m:?}");
        mounted
    }

    pub fn path(&self) -> &Path {
        &self.mp
    }

    /// Its line of mountinfo while it is mounted.
    pub fn entry(&self) -> Option<MountEntry> {
        mount_by_id(self.id?)
    }

    /// Whether it is still in mountinfo (after the connection is lost, sshfs unmounts it).
    pub fn mounted(&self) -> bool {
        self.entry().is_some()
    }

    /// The sshfs process that served it when it was mounted.
    pub fn sshfs_pid(&self) -> Option<u32> {
        self.pid
    }

    /// Whether that sshfs process still runs.
    pub fn sshfs_alive(&self) -> bool {
        self.pid.is_some_and(|p| alive(p) && is_sshfs(p))
    }

    /// Unmounts (`umount`, or `umount -l` while it is busy) and waits up to 10 s for sshfs to
    /// exit (it does once nothing holds the connection, at once when nothing is open).
    /// Asserts that the mount is gone.
    pub fn unmount(&mut self) {
        self.undo();
        assert!(!self.mounted(), "{} still mounted", self.mp.display());
    }

    fn undo(&mut self) {
        if let Some(id) = self.id {
            if mount_by_id(id).is_some() {
                // -c: the path as given, not resolved (which would look at a hung mount).
                let _ = Command::new("umount")
                    .arg("-c")
                    .arg(&self.mp)
                    .stderr(Stdio::null())
                    .status();
            }
            if mount_by_id(id).is_some() {
                let _ = Command::new("umount")
                    .args(["-l", "-c"])
                    .arg(&self.mp)
                    .status();
            }
        }
        let t = Instant::now();
        while self.sshfs_alive() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SshfsMount {
    fn drop(&mut self) {
        self.undo();
    }
}

/// Whether process `pid` runs sshfs (`sshfs`, or `mount.fuse.sshfs` as mount(8) starts it).
fn is_sshfs(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == Path::new(SSHFS))
}

/// The running sshfs process that has `mp` among its arguments.
fn sshfs_serving(mp: &Path) -> Option<u32> {
    pids().into_iter().find(|&p| {
        is_sshfs(p)
            && alive(p)
            && std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                c.split(|&b| b == 0)
                    .any(|a| a == mp.as_os_str().as_encoded_bytes())
            })
    })
}

/// A tmpfs of a few MiB mounted at a directory: a NAS volume that fills up. Unmounted
/// (lazily) on drop.
pub struct Tmpfs {
    dir: PathBuf,
    id: u64,
}

impl Tmpfs {
    pub fn mount(dir: &Path, mib: u64) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={mib}m"))
            .arg("bakfs-test")
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "mount tmpfs: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let id = mount_at(dir).unwrap().id;
        Self {
            dir: canonical(dir),
            id,
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if mount_by_id(self.id).is_some() {
            let _ = Command::new("umount")
                .args(["-l", "-c"])
                .arg(&self.dir)
                .status();
        }
    }
}
