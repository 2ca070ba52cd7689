//! The notes mirrored onto each medium for people: the ledger (`ledger.json`: the catalog's
//! record of it, with the run that wrote it) and the recovery runbook (`RUNBOOK.md`, as
//! `bakfs runbook` writes it). Informational: bakfs never reads them back, everything on a
//! medium is checked against names and the catalog.

use bakfs_core::catalog::{Catalog, MediumRecord, MediumRun};
use bakfs_core::runbook::{self, JobSummary, Records};

use crate::error::CopyError;
use crate::medium::{Files, Note};

/// How many runs the mirror lists, newest first.
const RUNS: usize = 20;

/// Mirrors the catalog's ledger of `m` onto its `files`, with `this` run as it ends.
///
/// # Errors
/// Catalog errors; errors writing it.
pub fn write(
    cat: &Catalog,
    files: &dyn Files,
    m: &MediumRecord,
    this: &MediumRun,
) -> Result<(), CopyError> {
    let snaps = cat.medium_snapshots(&m.id).map_err(CopyError::catalog)?;
    let mut runs = cat.medium_runs(&m.id, RUNS).map_err(CopyError::catalog)?;
    match runs.iter_mut().find(|r| r.id == this.id) {
        Some(r) => *r = this.clone(),
        None => runs.insert(0, this.clone()),
    }
    let recorded = cat.medium_files(&m.id).map_err(CopyError::catalog)?;
    let bytes: i64 = recorded.iter().map(|f| f.size).sum();
    let ledger = serde_json::json!({
        "medium_id": m.id.to_hex(),
        "label": m.label,
        "repo_id": m.repo_id.to_hex(),
        "pool": m.pool,
        "kind": m.kind,
        "updated_ns": bakfs_core::timefmt::now_ns(),
        "files": recorded.len(),
        "bytes": bytes,
        "snapshots": snaps,
        "runs": runs,
    });
    let text = serde_json::to_vec_pretty(&ledger).map_err(|e| CopyError::Io(e.to_string()))?;
    files.write_note(Note::Ledger, &text)
}

/// What the runbook needs besides the catalog: the configuration's jobs and where it reads the
/// password from (a path, never the password).
#[derive(Debug, Clone, Default)]
pub struct RunbookInfo {
    pub jobs: Vec<JobSummary>,
    pub password_file: Option<String>,
}

/// Writes the recovery runbook onto the medium, as of now.
///
/// # Errors
/// Catalog errors; errors writing it.
pub fn write_runbook(
    cat: &Catalog,
    files: &dyn Files,
    setup: &crate::job::Setup,
) -> Result<(), CopyError> {
    let records = Records::gather(cat, &setup.repo_id).map_err(CopyError::catalog)?;
    let repository = setup.repo.to_string();
    let host = bakfs_core::repo::lock::hostname();
    let text = runbook::render(&runbook::Input {
        now_ns: bakfs_core::timefmt::now_ns(),
        tz: &setup.tz,
        host: &host,
        repository: &repository,
        repo_id: setup.repo_id,
        password_file: setup.runbook.password_file.as_deref(),
        jobs: &setup.runbook.jobs,
        snapshots: &records.snapshots,
        media: &records.media,
        rates: &records.rates,
    });
    files.write_note(Note::Runbook, text.as_bytes())
}
