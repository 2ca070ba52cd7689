//! The `bakfs` command. `main` decides exit codes and how errors are shown.

mod args;
mod cmd;
mod context;
mod monitor;
mod mount_helper;
mod progress;

use std::process::ExitCode;

use bakfs_core::ErrorKind;
use clap::Parser;

/// Exit codes (documented in README.md).
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const INCOMPLETE: u8 = 3;
    pub const NO_REPO: u8 = 10;
    pub const LOCKED: u8 = 11;
    pub const WRONG_PASSWORD: u8 = 12;
    pub const DAMAGED: u8 = 13;
    /// The storage refused access (wrong S3 credentials, a bucket policy, permissions).
    pub const ACCESS_DENIED: u8 = 14;
    /// `bakfs status`, one code per level, the worst found: a medium due for rotation, stale, or
    /// lacking the newest snapshot of a pinned job.
    pub const STATUS_ATTENTION: u8 = 20;
    /// A job's newest snapshot is older than its RPO.
    pub const STATUS_LATE: u8 = 21;
    /// A digit of the policy is short for a job.
    pub const STATUS_SHORT: u8 = 22;
    /// The catalog cannot tell.
    pub const STATUS_UNKNOWN: u8 = 23;
    /// A job's newest snapshot is older than its RPO and the grace, or it has none.
    pub const STATUS_BREACHED: u8 = 24;
}

/// The exit code for an error (see [`exit`]).
pub fn exit_code_of(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<bakfs_core::Error>().map(|c| c.kind()) {
        Some(ErrorKind::NotFound) => exit::NO_REPO,
        Some(ErrorKind::Locked) => exit::LOCKED,
        Some(ErrorKind::WrongPassword) => exit::WRONG_PASSWORD,
        Some(ErrorKind::Damaged) => exit::DAMAGED,
        Some(ErrorKind::AccessDenied) => exit::ACCESS_DENIED,
        _ => exit::ERROR,
    }
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Called by mount(8) as `mount.fuse.bakfs REPO DIR -o OPTIONS` (`mount -t fuse.bakfs`, fstab).
    let helper = argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "mount.fuse.bakfs");
    let cli = if helper {
        match mount_helper::translate(&argv[1..]) {
            Ok(a) => args::Cli::parse_from(a),
            Err(e) => {
                eprintln!("mount.fuse.bakfs: {e}");
                return ExitCode::from(exit::ERROR);
            }
        }
    } else {
        args::Cli::parse_from(argv)
    };
    let level = match cli.global.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    bakfs_host::logging::init(level, bakfs_host::logging::Style::Command, "bakfs");
    match cmd::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = exit_code_of(&e);
            eprintln!("bakfs: {e:#}");
            ExitCode::from(code)
        }
    }
}
