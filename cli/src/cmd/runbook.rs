//! `runbook`: the recovery runbook from the configuration and the catalog (no password needed).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use bakfs_core::fsio::{self, Durability, Writers};
use bakfs_core::runbook::{self, JobSummary};
use bakfs_core::timefmt::{self, TimeZone};

use crate::context::Ctx;

pub fn run(ctx: &Ctx, output: Option<&Path>) -> Result<u8> {
    let location = ctx.location()?;
    // The repository's plaintext config gives its id: no key is read.
    let config = bakfs_core::repo::read_config(location.backend()?.as_ref())?;
    let cat = ctx.catalog()?;
    let records = runbook::Records::gather(&cat, &config.id)?;
    let jobs = JobSummary::of_config(&ctx.config);
    let password_file = ctx
        .global
        .password_file
        .as_ref()
        .or(ctx.config.password_file.as_ref())
        .map(|p| p.display().to_string());
    let repository = location.to_string();
    let host = bakfs_core::repo::lock::hostname();
    let tz = TimeZone::system();
    let text = runbook::render(&runbook::Input {
        now_ns: timefmt::now_ns(),
        tz: &tz,
        host: &host,
        repository: &repository,
        repo_id: config.id,
        password_file: password_file.as_deref(),
        jobs: &jobs,
        snapshots: &records.snapshots,
        media: &records.media,
        rates: &records.rates,
    });
    match output {
        None => std::io::stdout().write_all(text.as_bytes())?,
        Some(p) => {
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("{}: not a file name", p.display()))?;
            fsio::write_atomic(
                dir.unwrap_or(Path::new(".")),
                name,
                Durability::Synced,
                Writers::Many,
                |f| f.write_all(text.as_bytes()),
            )
            .with_context(|| format!("writing {}", p.display()))?;
        }
    }
    Ok(0)
}
