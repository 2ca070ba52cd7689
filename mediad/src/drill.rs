//! mediad's own restore drill, only when the operator gives it a password on purpose
//! (`[mediad] drill_password_file`): a medium due for a drill is drilled right after its copy,
//! while it is still mounted, as `bakfs drill --medium LABEL` would (the medium's repository
//! opened alone, a sample restored into a sandbox and read back), and the drill recorded.
//!
//! The trade-off (docs/mediad.md): a daemon that holds a password can read every backup, so by
//! default mediad holds none and only says when a drill is due.

use std::path::PathBuf;
use std::time::Instant;

use bakfs_core::catalog::{
    Catalog, DrillEnd, DrillOutcome, DrillStart, MediumRecord, NewestSnapshot,
};
use bakfs_core::drill::{self, DrillOptions, Sandbox, Scope};
use bakfs_core::repo::backend::Location;
use bakfs_core::repo::Repository;
use bakfs_core::restore::RestoreProgress;
use bakfs_core::timefmt;

/// How mediad drills, when it may.
#[derive(Debug, Clone)]
pub struct DrillSetup {
    pub password_file: PathBuf,
    /// The share of the newest snapshot's files restored, in percent.
    pub sample: f64,
    /// Where sandboxes are made.
    pub sandbox: PathBuf,
}

/// Drills the newest snapshot medium `m` holds from its repository at `repo`, records it in `cat`
/// and returns its outcome and a line saying what it found.
pub fn run(
    cat: &mut Catalog,
    m: &MediumRecord,
    repo: Location,
    d: &DrillSetup,
) -> (DrillOutcome, String) {
    let held: Vec<NewestSnapshot> = match cat.medium_snapshots(&m.id) {
        Ok(v) => v.into_iter().map(NewestSnapshot::from).collect(),
        Err(e) => {
            return (
                DrillOutcome::Failed,
                format!("drill of {}: catalog: {e}", m.label),
            )
        }
    };
    let Ok(want) = drill::pick_snapshot(&held, None, None) else {
        return (
            DrillOutcome::Failed,
            format!("drill of {}: it holds no snapshot", m.label),
        );
    };
    let start = DrillStart {
        repo_id: m.repo_id,
        medium_id: Some(m.id),
        snapshot_id: want.snapshot_id,
        job: want.job.clone(),
        started_ns: timefmt::now_ns(),
        mode: Scope::Sample(d.sample).mode(),
    };
    let id = match cat.begin_drill(&start) {
        Ok(id) => id,
        Err(e) => {
            return (
                DrillOutcome::Failed,
                format!("drill of {}: catalog: {e}", m.label),
            )
        }
    };
    let t0 = Instant::now();
    let mut ready_seconds = 0.0;
    let result = (|| -> bakfs_core::Result<drill::DrillReport> {
        let pw = bakfs_host::paths::read_password_file(&d.password_file)
            .map_err(|e| bakfs_core::Error::io(d.password_file.display().to_string(), e))?;
        let repo = Repository::open(repo.backend()?, &pw)?;
        let (_, snap) = repo.find_snapshot(&want.snapshot_id.to_hex())?;
        ready_seconds = t0.elapsed().as_secs_f64();
        let sb = Sandbox::create(&d.sandbox)?;
        let opts = DrillOptions {
            scope: Scope::Sample(d.sample),
            against_source: None,
        };
        let r = drill::run(
            &repo,
            &snap.tree,
            &sb.target(),
            &opts,
            &RestoreProgress::default(),
        );
        if let Err(e) = sb.remove() {
            tracing::warn!(medium = %m.label, "drill sandbox: {e}");
        }
        r
    })();
    let (outcome, message, files, bytes, seconds) = match &result {
        Ok(r) => {
            let mut what: Vec<&String> = r.damaged.iter().chain(&r.errors).collect();
            what.truncate(3);
            let msg = what
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            (
                r.outcome(),
                (!msg.is_empty()).then_some(msg),
                r.files,
                r.bytes,
                r.seconds,
            )
        }
        Err(e) if e.kind() == bakfs_core::ErrorKind::Damaged => {
            (DrillOutcome::Damaged, Some(e.to_string()), 0, 0, 0.0)
        }
        Err(e) => (DrillOutcome::Failed, Some(e.to_string()), 0, 0, 0.0),
    };
    let end = DrillEnd {
        ended_ns: timefmt::now_ns(),
        outcome,
        files,
        bytes,
        seconds,
        ready_seconds,
        message: message.clone(),
    };
    if let Err(e) = cat.finish_drill(id, &end) {
        tracing::warn!(medium = %m.label, "drill: catalog: {e}");
    }
    let line = match outcome {
        DrillOutcome::Ok => format!(
            "{}: drill {id} of snapshot {} ok: {files} files, {bytes} bytes restored and read back in {seconds:.1} s",
            m.label,
            want.snapshot_id.short()
        ),
        DrillOutcome::Damaged => format!(
            "{}: drill {id} of snapshot {} found DAMAGE: {}; bakfs status no longer counts this copy",
            m.label,
            want.snapshot_id.short(),
            message.unwrap_or_default()
        ),
        _ => format!(
            "{}: drill {id} of snapshot {} could not finish: {}",
            m.label,
            want.snapshot_id.short(),
            message.unwrap_or_default()
        ),
    };
    (outcome, line)
}
