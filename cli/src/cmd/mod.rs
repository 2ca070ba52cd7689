//! One module per group of commands.

mod backup;
mod browse;
mod drill;
mod keys;
mod locate;
mod maint;
pub(crate) mod media;
mod mount;
pub(crate) mod restore;
mod runbook;
pub mod status;
pub mod tape;

use anyhow::Result;
use clap::CommandFactory;

use crate::args::{Cli, Cmd};
use crate::context::Ctx;

pub fn run(cli: Cli) -> Result<u8> {
    if let Cmd::Completions { shell } = &cli.cmd {
        clap_complete::generate(*shell, &mut Cli::command(), "bakfs", &mut std::io::stdout());
        return Ok(0);
    }
    let ctx = Ctx::new(cli.global)?;
    match cli.cmd {
        Cmd::Init => keys::init(&ctx),
        Cmd::Key(k) => keys::key(&ctx, k),
        Cmd::Media(m) => media::run(&ctx, m),
        Cmd::Tape(t) => tape::run(&ctx, t),
        Cmd::Status(a) => status::run(&ctx, a),
        Cmd::Metrics { textfile } => status::metrics(&ctx, textfile.as_deref()),
        Cmd::Drill(a) => drill::run(&ctx, a),
        Cmd::Backup(a) => backup::run(&ctx, a),
        Cmd::Snapshots { host, tag } => browse::snapshots(&ctx, host, tag),
        Cmd::Ls {
            snapshot,
            path,
            long,
            recursive,
        } => browse::ls(&ctx, &snapshot, path.as_deref(), long, recursive),
        Cmd::Diff { a, b } => browse::diff(&ctx, &a, &b),
        Cmd::Locate(a) => locate::run(&ctx, a),
        Cmd::Restore(a) => restore::restore(&ctx, a),
        Cmd::Dump { snapshot, path } => restore::dump(&ctx, &snapshot, &path),
        Cmd::Mount(a) => mount::mount(&ctx, a),
        Cmd::Umount { mountpoint } => mount::umount(&ctx, &mountpoint),
        Cmd::Check {
            read_data,
            read_data_subset,
        } => maint::check(&ctx, read_data, read_data_subset),
        Cmd::Forget(a) => maint::forget(&ctx, a),
        Cmd::Prune { dry_run } => maint::prune(&ctx, dry_run),
        Cmd::Unlock { remove_all } => maint::unlock(&ctx, remove_all),
        Cmd::Catalog(c) => maint::catalog(&ctx, c),
        Cmd::Repair(crate::args::RepairCmd::Index) => maint::repair_index(&ctx),
        Cmd::Runbook { output } => runbook::run(&ctx, output.as_deref()),
        Cmd::Completions { .. } => Ok(0),
    }
}
