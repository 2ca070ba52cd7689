//! Heartbeats: telling a monitor that a job started, succeeded or failed, in the conventions
//! monitors already use (healthchecks.io, Uptime Kuma push monitors, ntfy, a JSON webhook).
//!
//! A monitor that is down never fails or delays a backup. Pings go through an outbox in the
//! state directory (`heartbeats.jsonl`): a ping is appended there first, then sent; a ping sent
//! is removed, one that could not be sent (the monitor is down, slow, or answers an error) stays
//! and is sent, in order, before the next ones. Each request has a short timeout, and callers
//! send from a thread of their own ([`Outbox::send_in_background`]) so that a monitor that
//! hangs costs the job nothing; whatever is left unsent when the process ends is still in the
//! outbox.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The outbox's file in the state directory.
pub const OUTBOX: &str = "heartbeats.jsonl";
/// How long one request may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a log sent with a ping (healthchecks.io keeps 100 kB; ntfy 4 kB of message).
const BODY_MAX: usize = 10_000;
/// Pings older than this are dropped from the outbox rather than sent (a monitor told days
/// later that a job once started says nothing true).
const MAX_AGE_NS: i64 = 7 * 24 * 3600 * 1_000_000_000;

/// The conventions a monitor speaks, and where one is: the configuration's types
/// (`heartbeats = [{ kind = "healthchecks", url = "…" }]`).
pub use bakfs_core::settings::{Monitor as Target, MonitorKind as Kind};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Start,
    Success,
    /// With the process's exit status (0 is not a failure).
    Failure(u8),
}

/// One ping, as kept in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    pub target: Target,
    pub event: Event,
    /// What reports: a job's name, or `mediad`.
    pub subject: String,
    /// The run's id (a UUID: healthchecks.io pairs a start with its end by it).
    pub run_id: String,
    pub host: String,
    pub time_ns: i64,
    /// The log's tail or a one-line summary.
    pub message: String,
}

/// A new run id: a random UUID (version 4).
pub fn run_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex_lower(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The last `BODY_MAX` bytes of `s`, cut at a character boundary.
fn tail(s: &str) -> &str {
    if s.len() <= BODY_MAX {
        return s;
    }
    let mut i = s.len() - BODY_MAX;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Why a ping was not delivered (it stays in the outbox).
#[derive(Debug, thiserror::Error)]
#[error("{url}: {msg}")]
pub struct SendError {
    pub url: String,
    pub msg: String,
}

/// Sends one ping. Pings a kind has no use for (a start to ntfy) count as sent.
///
/// # Errors
/// The request failed or the monitor answered with an error status.
pub fn send(agent: &ureq::Agent, p: &Ping) -> Result<(), SendError> {
    let base = p.target.url.trim_end_matches('/');
    let body = tail(&p.message);
    let fail = |msg: String| SendError {
        url: base.to_string(),
        msg,
    };
    let result = match (p.target.kind, p.event) {
        (Kind::Healthchecks, e) => {
            let suffix = match e {
                Event::Start => "/start".to_string(),
                Event::Success => String::new(),
                Event::Failure(code) => format!("/{}", code.max(1)),
            };
            let url = format!("{base}{suffix}?rid={}", p.run_id);
            agent.post(&url).send(body)
        }
        (Kind::UptimeKuma | Kind::Ntfy, Event::Start) => return Ok(()),
        (Kind::UptimeKuma, e) => {
            let status = if e == Event::Success { "up" } else { "down" };
            let first_line = body.lines().next_back().unwrap_or_default();
            let msg = format!("{}: {first_line}", p.subject);
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}status={status}&msg={}", encode(&msg));
            agent.get(&url).call()
        }
        (Kind::Ntfy, e) => {
            let (title, priority, tags) = match e {
                Event::Failure(code) => (
                    format!("bakfs: {} failed on {} (exit {code})", p.subject, p.host),
                    "high",
                    "warning",
                ),
                _ => (
                    format!("bakfs: {} ok on {}", p.subject, p.host),
                    "default",
                    "white_check_mark",
                ),
            };
            agent
                .post(base)
                .header("Title", &title)
                .header("Priority", priority)
                .header("Tags", tags)
                .send(body)
        }
        (Kind::Webhook, e) => {
            let (event, exit) = match e {
                Event::Start => ("start", None),
                Event::Success => ("success", Some(0)),
                Event::Failure(c) => ("failure", Some(c)),
            };
            let json = serde_json::json!({
                "event": event,
                "exit_status": exit,
                "subject": p.subject,
                "run_id": p.run_id,
                "host": p.host,
                "time_ns": p.time_ns,
                "message": body,
            });
            agent
                .post(base)
                .header("Content-Type", "application/json")
                .send(json.to_string())
        }
    };
    match result {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(fail(format!("answered {}", r.status()))),
        Err(e) => Err(fail(e.to_string())),
    }
}

/// The pings of a state directory that are still to be sent.
pub struct Outbox {
    path: PathBuf,
    agent: ureq::Agent,
}

impl Outbox {
    /// The outbox of `state_dir` (created on first use), with requests bounded by `timeout`.
    pub fn new(state_dir: &Path, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("bakfs/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            path: state_dir.join(OUTBOX),
            agent,
        }
    }

    /// Takes the lock file `name` next to the outbox (created on first use).
    fn lock_file(&self, name: &str) -> std::io::Result<File> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(name))?;
        f.lock()?;
        Ok(f)
    }

    /// Locks the outbox's contents (a backup and mediad may ping at the same time), for a short
    /// while: an append, a read, a rewrite. The lock is on a file of its own: the outbox itself
    /// is replaced when it is rewritten.
    fn lock(&self) -> std::io::Result<File> {
        self.lock_file(&format!("{OUTBOX}.lock"))
    }

    /// The outbox's lines.
    fn lines(&self) -> std::io::Result<Vec<String>> {
        match File::open(&self.path) {
            Ok(f) => Ok(BufReader::new(f).lines().map_while(Result::ok).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Appends `pings` to the outbox (durably: they survive the process).
    ///
    /// # Errors
    /// The outbox cannot be written.
    pub fn push(&self, pings: &[Ping]) -> std::io::Result<()> {
        let _lock = self.lock()?;
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)?;
        for p in pings {
            let mut line = serde_json::to_vec(p).map_err(std::io::Error::other)?;
            line.push(b'\n');
            f.write_all(&line)?;
        }
        f.sync_data()
    }

    /// Sends what the outbox holds, in order; stops at the first ping a target does not take
    /// (later pings to the same target wait behind it; pings to other targets are still
    /// sent). Returns how many were sent and the errors met.
    ///
    /// # Errors
    /// The outbox cannot be read or rewritten.
    pub fn flush(&self, now_ns: i64) -> std::io::Result<(usize, Vec<SendError>)> {
        // One sender at a time, for as long as it sends; pushes go on meanwhile (a ping pushed
        // while a monitor hangs is in the outbox before the process may end).
        let _sender = self.lock_file(&format!("{OUTBOX}.send"))?;
        let read = {
            let _lock = self.lock()?;
            self.lines()?
        };
        let mut kept = Vec::new();
        let mut blocked: Vec<Target> = Vec::new();
        let mut errors = Vec::new();
        let mut sent = 0;
        for p in read
            .iter()
            .filter_map(|l| serde_json::from_str::<Ping>(l).ok())
        {
            if now_ns.saturating_sub(p.time_ns) > MAX_AGE_NS {
                continue;
            }
            if blocked.contains(&p.target) {
                kept.push(p);
                continue;
            }
            match send(&self.agent, &p) {
                Ok(()) => sent += 1,
                Err(e) => {
                    blocked.push(p.target.clone());
                    errors.push(e);
                    kept.push(p);
                }
            }
        }
        let mut text = Vec::new();
        for p in &kept {
            text.extend(serde_json::to_vec(p).map_err(std::io::Error::other)?);
            text.push(b'\n');
        }
        let _lock = self.lock()?;
        // What was pushed while sending follows what is kept: only a sender rewrites the
        // outbox, so the lines read are still its first ones.
        for l in self.lines()?.iter().skip(read.len()) {
            text.extend_from_slice(l.as_bytes());
            text.push(b'\n');
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        bakfs_core::fsio::write_atomic(
            dir,
            OUTBOX,
            bakfs_core::fsio::Durability::Synced,
            bakfs_core::fsio::Writers::Many,
            |out| out.write_all(&text),
        )?;
        Ok((sent, errors))
    }

    /// Appends `pings` and sends the outbox from a thread of its own; errors are logged as
    /// warnings (a monitor never fails a job). Join the handle to wait for it, or let the
    /// process end: what was not sent stays in the outbox.
    pub fn send_in_background(self, pings: Vec<Ping>, now_ns: i64) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            if let Err(e) = self.push(&pings) {
                tracing::warn!("heartbeat: cannot write {}: {e}", self.path.display());
            }
            match self.flush(now_ns) {
                Ok((_, errors)) => {
                    for e in errors {
                        tracing::warn!("heartbeat not delivered (kept for later): {e}");
                    }
                }
                Err(e) => tracing::warn!("heartbeat: {}: {e}", self.path.display()),
            }
        })
    }
}

/// The heartbeats of one run (a job, a medium's copy): a start when it begins, then a success or
/// a failure, to every target, each ping sent in the background.
pub struct Run {
    state_dir: PathBuf,
    targets: Vec<Target>,
    subject: String,
    run_id: String,
    host: String,
    sending: Vec<std::thread::JoinHandle<()>>,
}

impl Run {
    /// Begins a run of `subject` and sends its start (nothing at all without targets).
    pub fn start(state_dir: &Path, targets: Vec<Target>, subject: &str, now_ns: i64) -> Run {
        let mut run = Run {
            state_dir: state_dir.to_path_buf(),
            targets,
            subject: subject.to_string(),
            run_id: run_id(),
            host: bakfs_core::repo::lock::hostname(),
            sending: Vec::new(),
        };
        run.send(Event::Start, String::new(), now_ns);
        run
    }

    fn send(&mut self, event: Event, message: String, now_ns: i64) {
        if self.targets.is_empty() {
            return;
        }
        let pings = self
            .targets
            .iter()
            .map(|t| Ping {
                target: t.clone(),
                event,
                subject: self.subject.clone(),
                run_id: self.run_id.clone(),
                host: self.host.clone(),
                time_ns: now_ns,
                message: message.clone(),
            })
            .collect();
        let outbox = Outbox::new(&self.state_dir, TIMEOUT);
        self.sending.push(outbox.send_in_background(pings, now_ns));
    }

    /// Ends the run with `event` and `message` (a summary, the log's tail); returns the
    /// sending threads, for [`wait`].
    pub fn finish(
        mut self,
        event: Event,
        message: String,
        now_ns: i64,
    ) -> Vec<std::thread::JoinHandle<()>> {
        self.send(event, message, now_ns);
        self.sending
    }
}

/// Waits at most `wait` for `sending` to end: a monitor that hangs costs no more; what was not
/// sent stays in the outbox for the next run.
pub fn wait(sending: &[std::thread::JoinHandle<()>], wait: Duration) {
    let deadline = std::time::Instant::now() + wait;
    let done = || sending.iter().all(std::thread::JoinHandle::is_finished);
    while !done() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if !done() {
        tracing::warn!(
            "heartbeat: a monitor did not answer within {} s; its ping stays in the outbox",
            wait.as_secs()
        );
    }
}

#[cfg(test)]
mod tests;
