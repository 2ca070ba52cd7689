//! A job's `drill_check`: a command run on the restored tree and on the live source, whose
//! outputs must be the same (for a validator: the certificate's fingerprint, which gives the
//! node's id). It runs in the root of each tree, with `BAKFS_ROOT` naming it.

use std::io::Read;
use std::path::Path;

use bakfs_core::settings::{CommandLine, HOOK_TIMEOUT};
use bakfs_host::command::{self, Spec};

/// The most of a check's output compared (a fingerprint is a line).
const MAX_OUTPUT: u64 = 1 << 20;

/// Runs `line` in `root` and returns its standard output.
fn output(line: &CommandLine, job: &str, root: &Path, which: &str) -> Result<Vec<u8>, String> {
    let spec = Spec {
        role: format!("drill check on the {which}"),
        line: line.clone(),
        timeout: Some(HOOK_TIMEOUT),
        env: vec![
            ("BAKFS_JOB".into(), job.into()),
            ("BAKFS_ROOT".into(), root.display().to_string()),
        ],
        cwd: Some(root.to_path_buf()),
    };
    tracing::info!("running {} `{}`", spec.role, spec.line);
    let mut out = command::spawn_output(&spec).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    match (&mut out).take(MAX_OUTPUT).read_to_end(&mut buf) {
        Ok(_) => Ok(buf),
        Err(e) => Err(out
            .failure()
            .map_or_else(|| e.to_string(), ToString::to_string)),
    }
}

/// Runs the check on the tree restored at `restored` and on the live source (`/`); `Ok` with
/// the shared output, or why it does not hold.
pub fn run(line: &CommandLine, job: &str, restored: &Path) -> Result<String, String> {
    let got = output(line, job, restored, "restored tree")?;
    let want = output(line, job, Path::new("/"), "live source")?;
    let show = |b: &[u8]| String::from_utf8_lossy(b).trim_end().to_string();
    if got == want {
        Ok(show(&got))
    } else {
        Err(format!(
            "drill check `{line}`: the restored tree gives {:?}, the live source {:?}",
            show(&got),
            show(&want)
        ))
    }
}
