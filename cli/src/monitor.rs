//! What a command tells monitors: each job's heartbeats (config `heartbeats`, per job and for
//! every job) and the metrics textfile (`[metrics] textfile`). A monitor never fails a job: what
//! goes wrong here is a warning.

use std::collections::BTreeMap;
use std::thread::JoinHandle;
use std::time::Duration;

use bakfs_core::status::{metrics, Filter};
use bakfs_core::timefmt;
use bakfs_host::heartbeat::{self, Event};
use bakfs_host::logging::{self, Mark};

use crate::context::Ctx;

/// How long a command waits at its end for its last pings to go out.
const WAIT: Duration = Duration::from_secs(5);

/// The heartbeats of the jobs one command runs.
pub struct Beats {
    running: BTreeMap<String, (heartbeat::Run, Mark)>,
    sending: Vec<JoinHandle<()>>,
}

impl Beats {
    /// Sends each job's start to its monitors (the configuration's `heartbeats` and the job's).
    pub fn start<'a>(ctx: &Ctx, jobs: impl Iterator<Item = &'a str>) -> Beats {
        let state = ctx.state_dir();
        let now = timefmt::now_ns();
        let running = jobs
            .map(|name| {
                let mut targets = ctx.config.heartbeats.clone();
                if let Some(j) = ctx.config.jobs.get(name) {
                    targets.extend(j.heartbeats.iter().cloned());
                }
                let run = heartbeat::Run::start(&state, targets, name, now);
                (name.to_string(), (run, logging::mark()))
            })
            .collect();
        Beats {
            running,
            sending: Vec::new(),
        }
    }

    /// Job `name` begins its work now: its pings carry the log from here.
    pub fn begin(&mut self, name: &str) {
        if let Some((_, mark)) = self.running.get_mut(name) {
            *mark = logging::mark();
        }
    }

    /// Job `name` ended with exit status `code` (0: success); `summary` leads the message, the
    /// job's log follows.
    pub fn finish(&mut self, name: &str, code: u8, summary: &str) {
        let Some((run, mark)) = self.running.remove(name) else {
            return;
        };
        let event = if code == 0 {
            Event::Success
        } else {
            Event::Failure(code)
        };
        let log = logging::tail_since(mark);
        let message = if log.is_empty() {
            summary.to_string()
        } else {
            format!("{summary}\n\n{log}")
        };
        self.sending
            .extend(run.finish(event, message, timefmt::now_ns()));
    }

    /// Ends the jobs that did not get to finish (the command failed before them) with `code`
    /// and `why`, and waits a little for the pings to go out.
    pub fn close(mut self, code: u8, why: &str) {
        let left: Vec<String> = self.running.keys().cloned().collect();
        for name in left {
            self.finish(&name, code.max(1), why);
        }
        heartbeat::wait(&self.sending, WAIT);
    }
}

/// Writes the metrics textfile if the configuration names one (after a backup, a drill, …).
pub fn refresh_metrics(ctx: &Ctx) {
    let Some(path) = &ctx.config.metrics.textfile else {
        return;
    };
    let r = crate::cmd::status::settings(ctx)
        .and_then(|s| crate::cmd::status::report(ctx, &s, &Filter::default(), timefmt::now_ns()))
        .and_then(|report| Ok(metrics::write_textfile(path, &report)?));
    if let Err(e) = r {
        tracing::warn!("metrics: cannot write {}: {e:#}", path.display());
    }
}
