//! SIGTERM, SIGINT and SIGHUP as the daemon's [`Shutdown`]: blocked, and read from a signalfd
//! whose readiness also ends the daemon's wait for udev events.

use std::os::fd::{AsFd, OwnedFd};

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::daemon::Shutdown;

/// The stop signals, received through a signalfd.
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks SIGTERM, SIGINT and SIGHUP in this thread, and so in every thread it starts later
    /// (call it before starting any), and opens a signalfd for them.
    ///
    /// # Errors
    /// sigprocmask or signalfd fails.
    pub fn block() -> Result<Self> {
        let mut mask = SigSet::empty();
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            mask.add(s);
        }
        mask.thread_block().context("blocking signals")?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .context("signalfd")?;
        Ok(Self { fd })
    }

    /// A descriptor that reads ready while a stop signal is pending, for the event source to
    /// wake on. Reading the signal is left to [`Shutdown::requested`].
    ///
    /// # Errors
    /// dup fails.
    pub fn wake_fd(&self) -> Result<OwnedFd> {
        self.fd
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating the signalfd")
    }
}

impl Shutdown for Signals {
    fn requested(&mut self) -> Option<String> {
        match self.fd.read_signal() {
            Ok(Some(si)) => Some(format!("signal {}", si.ssi_signo)),
            _ => None,
        }
    }
}
