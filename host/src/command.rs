//! Running a job's commands: the `command` whose standard output is backed up
//! ([`spawn_output`]), and the `before` and `after` commands around it ([`run`]).
//!
//! Every command runs in a process group of its own, with standard input from `/dev/null` and
//! bakfs's environment, less `BAKFS_PASSWORD`, plus the [`Spec`]'s variables. What it writes on
//! standard error is logged line by line as warnings, in the caller's span (the job's name);
//! a `before` or `after` command's standard output is logged as info. A line longer than 4 KiB
//! is logged in pieces.
//!
//! At its timeout the whole group gets SIGTERM, then SIGKILL as soon as the command itself
//! has exited, or [`GRACE`] later: children it left behind in its group go too. A process that
//! left the group (`setsid`) is out of reach; if it keeps the output open, reading still ends
//! at the timeout.
//!
//! ```no_run
//! use std::io::Read;
//! use bakfs_core::settings::CommandLine;
//! use bakfs_host::command::{spawn_output, Spec};
//!
//! let spec = Spec::new("command", CommandLine::Argv(vec!["pg_dump".into(), "-Fc".into(), "db".into()]));
//! let mut out = spawn_output(&spec)?;
//! let mut dump = Vec::new();
//! // An error instead of the end if pg_dump exits non-zero, is killed or times out.
//! out.read_to_end(&mut dump)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdout, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bakfs_core::settings::CommandLine;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How long a command that timed out has between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);

/// The longest line logged at once.
const LINE_MAX: u64 = 4096;

/// How long the output of a command that has ended is still read for the log: a process that
/// left the command's group may hold it open for ever.
const DRAIN: Duration = Duration::from_secs(1);

/// A command to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// What messages call it: `command`, `before command`, `after command`.
    pub role: String,
    /// What to run.
    pub line: CommandLine,
    /// How long it may run; `None`: no limit.
    pub timeout: Option<Duration>,
    /// Variables set for it, besides the environment of bakfs.
    pub env: Vec<(String, String)>,
    /// The directory it runs in; `None`: bakfs's.
    pub cwd: Option<std::path::PathBuf>,
}

impl Spec {
    /// `line`, called `role`, without timeout or variables.
    pub fn new(role: impl Into<String>, line: CommandLine) -> Self {
        Self {
            role: role.into(),
            line,
            timeout: None,
            env: vec![],
            cwd: None,
        }
    }
}

/// How a command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    /// It could not be started (its program does not exist, say).
    NotStarted(String),
    /// It exited with a status other than 0.
    Exit(i32),
    /// A signal killed it (not one bakfs sent).
    Signal(i32),
    /// It ran past its timeout, and its group was killed.
    TimedOut(Duration),
    /// Its output could not be read.
    Read(String),
}

impl std::fmt::Display for How {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            How::NotStarted(e) => write!(f, "could not be started: {e}"),
            How::Exit(c) => write!(f, "exited with status {c}"),
            How::Signal(s) => match Signal::try_from(*s) {
                Ok(sig) => write!(f, "was killed by signal {s} ({})", sig.as_str()),
                Err(_) => write!(f, "was killed by signal {s}"),
            },
            How::TimedOut(d) => write!(f, "timed out after {} and was killed", show(*d)),
            How::Read(e) => write!(f, "output could not be read: {e}"),
        }
    }
}

/// A command that failed: which, how, and the last line it wrote on standard error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{role} `{line}` {how}{}", stderr.as_ref().map(|l| format!(": {l}")).unwrap_or_default())]
pub struct CommandError {
    /// `command`, `before command`, …
    pub role: String,
    /// The command as the configuration gives it.
    pub line: String,
    /// What went wrong.
    pub how: How,
    /// Its last line on standard error, if any.
    pub stderr: Option<String>,
}

/// Runs a `before` or `after` command to its end, or to its timeout.
///
/// # Errors
/// The command could not be started, exited non-zero, was killed, or timed out.
pub fn run(spec: &Spec) -> Result<(), CommandError> {
    let err = |how, stderr| CommandError {
        role: spec.role.clone(),
        line: spec.line.to_string(),
        how,
        stderr,
    };
    let mut g = Group::spawn(spec).map_err(|e| err(e, None))?;
    let out = g
        .child
        .stdout
        .take()
        .map(|o| Pump::start(o, &spec.role, false));
    let errs = g
        .child
        .stderr
        .take()
        .map(|e| Pump::start(e, &spec.role, true));
    let deadline = spec.timeout.map(|t| Instant::now() + t);
    let res = if g.wait_exit(deadline) {
        g.reap()
    } else {
        g.stop();
        Err(How::TimedOut(spec.timeout.unwrap_or_default()))
    };
    if let Some(o) = out {
        o.finish();
    }
    let last = errs.and_then(Pump::finish);
    res.map_err(|how| err(how, last))
}

/// Starts `spec` (a job's `command`) and returns its standard output to read.
///
/// # Errors
/// The command could not be started.
pub fn spawn_output(spec: &Spec) -> Result<CommandOutput, CommandError> {
    let mut g = Group::spawn(spec).map_err(|how| CommandError {
        role: spec.role.clone(),
        line: spec.line.to_string(),
        how,
        stderr: None,
    })?;
    let out = g.child.stdout.take().ok_or_else(|| CommandError {
        role: spec.role.clone(),
        line: spec.line.to_string(),
        how: How::Read("no standard output".into()),
        stderr: None,
    })?;
    let errs = g
        .child
        .stderr
        .take()
        .map(|e| Pump::start(e, &spec.role, true));
    Ok(CommandOutput {
        out,
        errs,
        deadline: spec.timeout.map(|t| Instant::now() + t),
        spec: spec.clone(),
        state: State::Reading,
        group: g,
    })
}

/// The standard output of a running command. It ends (`read` returns `Ok(0)`) only once the
/// command has exited with status 0; if it exits otherwise, is killed or runs past its
/// timeout, `read` returns an error instead (the [`CommandError`], also kept in
/// [`CommandOutput::failure`]). Dropped early, it kills the command's group.
#[derive(Debug)]
pub struct CommandOutput {
    out: ChildStdout,
    errs: Option<Pump>,
    deadline: Option<Instant>,
    spec: Spec,
    state: State,
    group: Group,
}

#[derive(Debug)]
enum State {
    Reading,
    Done,
    Failed(CommandError),
}

impl CommandOutput {
    /// Why the command failed, once reading has returned an error for that reason.
    pub fn failure(&self) -> Option<&CommandError> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Reads into `buf`, waiting no later than the deadline; `Ok(0)`: the output ended and the
    /// command exited with status 0.
    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, How> {
        loop {
            if let Some(d) = self.deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    self.group.stop();
                    return Err(How::TimedOut(self.spec.timeout.unwrap_or_default()));
                }
                let ms = i32::try_from(left.as_millis().saturating_add(1)).unwrap_or(i32::MAX);
                let mut fds = [PollFd::new(self.out.as_fd(), PollFlags::POLLIN)];
                match poll(
                    &mut fds,
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
                ) {
                    Ok(0) | Err(Errno::EINTR) => continue,
                    Ok(_) => {}
                    Err(e) => return Err(How::Read(e.to_string())),
                }
            }
            match self.out.read(buf) {
                Ok(0) => break,
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(How::Read(e.to_string())),
            }
        }
        // The output ended: the data is whole only if the command exits with 0, in time.
        if !self.group.wait_exit(self.deadline) {
            self.group.stop();
            return Err(How::TimedOut(self.spec.timeout.unwrap_or_default()));
        }
        self.group.reap()?;
        Ok(0)
    }
}

impl Read for CommandOutput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &self.state {
            State::Reading if buf.is_empty() => return Ok(0),
            State::Reading => {}
            State::Done => return Ok(0),
            State::Failed(e) => return Err(std::io::Error::other(e.clone())),
        }
        match self.read_some(buf) {
            Ok(0) => {
                if let Some(p) = self.errs.take() {
                    p.finish();
                }
                self.state = State::Done;
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(how) => {
                let e = CommandError {
                    role: self.spec.role.clone(),
                    line: self.spec.line.to_string(),
                    how,
                    stderr: self.errs.take().and_then(Pump::finish),
                };
                self.state = State::Failed(e.clone());
                Err(std::io::Error::other(e))
            }
        }
    }
}

/// A started command, leader of its own process group. Until it is reaped its pid, which is
/// the group's id, cannot be reused: every signal to the group is sent before reaping.
#[derive(Debug)]
struct Group {
    child: Child,
    pid: Pid,
    reaped: bool,
}

impl Group {
    /// Starts `spec` with its standard output and error piped.
    fn spawn(spec: &Spec) -> Result<Group, How> {
        let argv = spec.line.argv();
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| How::NotStarted("empty command".into()))?;
        let mut cmd = std::process::Command::new(program);
        if let Some(d) = &spec.cwd {
            cmd.current_dir(d);
        }
        let child = cmd
            .args(args)
            .env_remove("BAKFS_PASSWORD")
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| How::NotStarted(e.to_string()))?;
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        Ok(Group {
            child,
            pid,
            reaped: false,
        })
    }

    /// Waits until the command exits, without reaping it; `false` if it still runs at
    /// `deadline`.
    fn wait_exit(&self, deadline: Option<Instant>) -> bool {
        let exited = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
        let Some(deadline) = deadline else {
            loop {
                match waitid(Id::Pid(self.pid), exited) {
                    Err(Errno::EINTR) => continue,
                    // Exited (or, ECHILD, not ours to wait for: reaping will tell).
                    _ => return true,
                }
            }
        };
        let mut pause = Duration::from_millis(1);
        loop {
            match waitid(Id::Pid(self.pid), exited | WaitPidFlag::WNOHANG) {
                Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
                _ => return true,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Reaps the command (it has exited) and judges its status.
    fn reap(&mut self) -> Result<(), How> {
        let status = self.child.wait().map_err(|e| How::Read(e.to_string()))?;
        self.reaped = true;
        judge(status)
    }

    /// At the timeout: SIGTERM to the group, SIGKILL once the command has exited or after
    /// [`GRACE`], then reaps.
    fn stop(&mut self) {
        if self.reaped {
            return;
        }
        let _ = killpg(self.pid, Signal::SIGTERM);
        self.wait_exit(Some(Instant::now() + GRACE));
        let _ = killpg(self.pid, Signal::SIGKILL);
        let _ = self.child.wait();
        self.reaped = true;
    }
}

impl Drop for Group {
    /// A command nobody waits for any more (its reader gave up: the repository failed, say) is
    /// killed with its group.
    fn drop(&mut self) {
        if !self.reaped {
            let _ = killpg(self.pid, Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

fn judge(status: ExitStatus) -> Result<(), How> {
    if status.success() {
        Ok(())
    } else if let Some(c) = status.code() {
        Err(How::Exit(c))
    } else {
        Err(How::Signal(status.signal().unwrap_or(0)))
    }
}

/// A thread that logs what a command writes on one pipe, line by line.
#[derive(Debug)]
struct Pump {
    last: mpsc::Receiver<Option<String>>,
}

impl Pump {
    /// Logs each line of `r` as a warning (`warn`) or as info, after `role` and in the
    /// caller's span.
    fn start(r: impl Read + Send + 'static, role: &str, warn: bool) -> Pump {
        let span = tracing::Span::current();
        let role = role.to_string();
        let (tx, last) = mpsc::channel();
        std::thread::spawn(move || {
            let _in_job = span.enter();
            let mut r = BufReader::new(r);
            let mut line = Vec::new();
            let mut seen = None;
            loop {
                line.clear();
                match r.by_ref().take(LINE_MAX).read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        let text = text.trim_end_matches(['\n', '\r']);
                        if text.trim().is_empty() {
                            continue;
                        }
                        if warn {
                            tracing::warn!("{role}: {text}");
                        } else {
                            tracing::info!("{role}: {text}");
                        }
                        seen = Some(text.to_string());
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(seen);
        });
        Pump { last }
    }

    /// Waits (a little) for the pipe's end; the last line logged, if any.
    fn finish(self) -> Option<String> {
        self.last.recv_timeout(DRAIN).ok().flatten()
    }
}

/// A timeout as the configuration writes it: `2h`, `10min`, `30s`.
fn show(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{}min", s / 60),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests;
