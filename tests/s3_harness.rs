//! Helpers for the object-storage tests: a real S3 server (`s3s-fs`, from crates.io, which
//! scripts/deps.sh installs) on a free port of 127.0.0.1 with its data in a tempdir, and a small
//! HTTP proxy in front of it that answers some requests with `503 SlowDown` or delays them. Both
//! are stopped when the test ends, pass or fail.
//!
//! Their bakfs commands run by hand against Garage or MinIO: see docs/object-storage.md.
#![allow(clippy::unwrap_used, dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bakfs_e2e::scratch_root;

pub const ACCESS_KEY: &str = "bakfs-test";
pub const SECRET_KEY: &str = "bakfs-test-secret";

/// The s3s-fs binary: `$S3S_FS`, else on PATH, else in `~/.cargo/bin`.
fn s3s_fs() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("S3S_FS") {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin"));
    std::env::split_paths(&path)
        .chain(home)
        .map(|d| d.join("s3s-fs"))
        .find(|p| p.is_file())
}

/// Whether the S3 tests can run. Outside CI they skip (with a printed reason) without
/// s3s-fs; under CI=true they must run.
pub fn have_s3(test: &str) -> bool {
    if s3s_fs().is_some() {
        return true;
    }
    let why = "s3s-fs not found (cargo install s3s-fs --version 0.14.1 --features binary --locked)";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {why}, and CI=true forbids skipping");
    }
    eprintln!("SKIP {test}: {why}");
    false
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16) {
    let t = Instant::now();
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "nothing listens on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// s3s-fs on 127.0.0.1:<free port>, serving `root` (a bucket is a directory of it, an object a
/// file whose mtime is its `Last-Modified`).
pub struct S3Server {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl S3Server {
    /// Starts the server and waits until it accepts connections.
    pub fn start() -> S3Server {
        let dir = tempfile::Builder::new()
            .prefix("bakfs-s3-")
            .tempdir_in(scratch_root())
            .unwrap();
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        let mut s = S3Server {
            dir,
            port: free_port(),
            child: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("s3s-fs.log"))
            .unwrap();
        let child = Command::new(s3s_fs().expect("s3s-fs"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_listening(self.port);
    }

    /// Where its buckets are.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `s3:http://127.0.0.1:PORT/<bucket>/<prefix>`.
    pub fn location(&self, bucket_and_prefix: &str) -> String {
        format!("s3:{}/{bucket_and_prefix}", self.endpoint())
    }

    /// The file of an object.
    pub fn object(&self, bucket: &str, key: &str) -> PathBuf {
        self.root().join(bucket).join(key)
    }

    /// Kills the server (SIGKILL: a crash, not a shutdown).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The server's log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("s3s-fs.log")).unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the proxy does to requests.
#[derive(Default)]
pub struct Faults {
    /// Every n-th request is answered `503 SlowDown` without reaching the server (0: none).
    pub every_nth_503: AtomicU64,
    /// Milliseconds each request waits before it is forwarded.
    pub delay_ms: AtomicU64,
    /// Requests seen, and 503s sent.
    pub requests: AtomicU64,
    pub refused: AtomicU64,
}

/// An HTTP proxy on 127.0.0.1:<free port> in front of `upstream`: one request per connection
/// (it asks both sides to close after it), so that it can refuse or delay each request alone.
pub struct FaultProxy {
    port: u16,
    pub faults: Arc<Faults>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    pub fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let faults = Arc::new(Faults::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (faults.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let f = f.clone();
                        std::thread::spawn(move || {
                            let _ = serve(conn, upstream_port, &f);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy {
            port,
            faults,
            stop,
            thread: Some(thread),
        }
    }

    /// `s3:http://127.0.0.1:PORT/<bucket>/<prefix>` through the proxy.
    pub fn location(&self, bucket_and_prefix: &str) -> String {
        format!("s3:http://127.0.0.1:{}/{bucket_and_prefix}", self.port)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Proxies one request of `conn`.
fn serve(conn: TcpStream, upstream_port: u16, f: &Faults) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut head = Vec::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("connection:") {
            continue;
        }
        if line == "\r\n" {
            head.extend_from_slice(b"connection: close\r\n\r\n");
            break;
        }
        head.extend_from_slice(line.as_bytes());
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let n = f.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let every = f.every_nth_503.load(Ordering::Relaxed);
    let mut conn = conn;
    if every > 0 && n.is_multiple_of(every) {
        f.refused.fetch_add(1, Ordering::Relaxed);
        let msg = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                   <Message>Please reduce your request rate.</Message></Error>";
        write!(
            conn,
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/xml\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{msg}",
            msg.len()
        )?;
        return Ok(());
    }
    let delay = f.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        std::thread::sleep(Duration::from_millis(delay));
    }
    let mut up = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, upstream_port)))?;
    up.write_all(&head)?;
    up.write_all(&body)?;
    std::io::copy(&mut up, &mut conn)?;
    Ok(())
}

/// Sets an object's `Last-Modified` (its file's mtime) to `age` ago.
pub fn age_object(path: &Path, age: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - age)
        .unwrap();
}
