//! The ledger mirrored onto each medium (`ledger.json`): the catalog's record of it, with the
//! run that wrote it. Informational: bakfs never reads it back, everything on a medium is checked
//! against names and the catalog.

use bakfs_core::catalog::{Catalog, MediumRecord, MediumRun};

use crate::error::CopyError;
use crate::medium::Files;

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
    files.write_ledger(&text)
}
