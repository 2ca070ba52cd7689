//! bakfs-host: what the `bakfs` and `bakfs-mediad` binaries share about the process and the
//! machine they run on, kept out of the library (bakfs-core reads no environment, mounts
//! nothing and runs no program):
//!
//! - [`paths`]: the configuration file and state directory as the environment places them
//!   (`XDG_CONFIG_HOME`, `XDG_STATE_HOME`, `HOME`, the effective user);
//! - [`logging`]: the one `tracing` set-up (stderr, the journal under systemd, `BAKFS_LOG`);
//! - [`notify`]: the systemd notify protocol (`NOTIFY_SOCKET`);
//! - [`mounts`]: mount(2)/umount2(2) of a medium's filesystem and `blkid` probes;
//! - [`heartbeat`]: pings to monitors, through an outbox that survives a monitor being down;
//! - [`command`]: a job's commands, each in a process group of its own, with timeouts.
//!
//! ```no_run
//! let cfg_file = bakfs_host::paths::config_file(None);
//! bakfs_host::notify::notify("READY=1");
//! # let _ = cfg_file;
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod command;
pub mod heartbeat;
pub mod logging;
pub mod mountinfo;
pub mod mounts;
pub mod notify;
pub mod paths;
