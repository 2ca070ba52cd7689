//! The `bakfs` command. `main` decides exit codes and how errors are shown.

mod args;
mod cmd;
mod config;
mod context;
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
}

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let level = match cli.global.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BAKFS_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).without_time().init();
    match cmd::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = match e.downcast_ref::<bakfs_core::Error>().map(|c| c.kind()) {
                Some(ErrorKind::NotFound) => exit::NO_REPO,
                Some(ErrorKind::Locked) => exit::LOCKED,
                Some(ErrorKind::WrongPassword) => exit::WRONG_PASSWORD,
                Some(ErrorKind::Damaged) => exit::DAMAGED,
                _ => exit::ERROR,
            };
            eprintln!("bakfs: {e:#}");
            ExitCode::from(code)
        }
    }
}
