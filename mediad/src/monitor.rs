//! What the daemon tells monitors about each medium's job: heartbeats (`[mediad] heartbeats`:
//! a start, then a success or a failure with the job's last line and log) and the metrics
//! textfile (`[metrics] textfile`), refreshed after every job. A monitor never fails a job.

use std::path::PathBuf;
use std::time::Duration;

use bakfs_core::catalog::{Catalog, DrillOutcome, DrillQuery, MediumRecord};
use bakfs_core::format::id::RepoId;
use bakfs_core::status::{self, metrics, Filter, Settings};
use bakfs_core::timefmt;
use bakfs_host::heartbeat::{self, Event, Target};
use bakfs_host::logging::{self, Mark};

/// How long a job waits at its end for its pings to go out.
const WAIT: Duration = Duration::from_secs(5);

/// Where the daemon reports to.
#[derive(Debug, Clone, Default)]
pub struct Monitors {
    /// Where the heartbeats' outbox is.
    pub state_dir: PathBuf,
    pub heartbeats: Vec<Target>,
    /// The textfile and what status judges by.
    pub metrics: Option<(PathBuf, Settings)>,
    /// A medium whose last ok drill is older than this (or that was never drilled) is due for
    /// one (`[policy] drill_within`; `None`: "off").
    pub drill_within: Option<Duration>,
}

/// A job's heartbeats, begun.
pub struct Beat(Option<(heartbeat::Run, Mark)>);

impl Monitors {
    /// Tells the monitors that the job on medium `label` starts.
    pub fn start(&self, label: &str) -> Beat {
        if self.heartbeats.is_empty() {
            return Beat(None);
        }
        let run = heartbeat::Run::start(
            &self.state_dir,
            self.heartbeats.clone(),
            &format!("medium {label}"),
            timefmt::now_ns(),
        );
        Beat(Some((run, logging::mark())))
    }

    /// Tells them how it ended (`ok`: the medium got its copy), with `summary` and the log since
    /// the start, and waits a little for the pings to go out.
    pub fn finish(&self, beat: Beat, ok: bool, summary: &str) {
        let Some((run, mark)) = beat.0 else {
            return;
        };
        let event = if ok {
            Event::Success
        } else {
            Event::Failure(1)
        };
        let message = format!("{summary}\n\n{}", logging::tail_since(mark));
        let sending = run.finish(event, message, timefmt::now_ns());
        heartbeat::wait(&sending, WAIT);
    }

    /// Whether `m` is due for a restore drill, said in words: mediad holds no key, so it tells
    /// the operator to drill while the medium is plugged in.
    pub fn drill_due(&self, catalog: &Catalog, m: &MediumRecord, now_ns: i64) -> Option<String> {
        let within = self.drill_within?;
        let q = DrillQuery {
            source: Some(Some(&m.id)),
            outcomes: &[DrillOutcome::Ok],
            ..DrillQuery::default()
        };
        let last = catalog.newest_drill(&m.repo_id, &q).ok()?;
        let when = last.as_ref().and_then(|d| d.ended_ns);
        let age = when.map(|t| Duration::from_nanos(u64::try_from(now_ns - t).unwrap_or(0)));
        if age.is_some_and(|a| a <= within) {
            return None;
        }
        let last = match age {
            Some(a) => format!("last proven restorable {} ago", timefmt::format_age(a)),
            None => "never proven restorable by a drill".to_string(),
        };
        Some(format!(
            "{} is due for a restore drill ({last}, wanted within {}): run `bakfs drill --medium {}` while it is plugged in",
            m.label,
            timefmt::format_duration(within),
            m.label
        ))
    }

    /// Rewrites the metrics textfile from `catalog`, if one is configured.
    pub fn refresh_metrics(&self, catalog: &Catalog, repo_id: &RepoId) {
        let Some((path, settings)) = &self.metrics else {
            return;
        };
        let r = status::report(
            catalog,
            repo_id,
            settings,
            &Filter::default(),
            timefmt::now_ns(),
        )
        .map_err(|e| e.to_string())
        .and_then(|report| metrics::write_textfile(path, &report).map_err(|e| e.to_string()));
        if let Err(e) = r {
            tracing::warn!("metrics: cannot write {}: {e}", path.display());
        }
    }
}
