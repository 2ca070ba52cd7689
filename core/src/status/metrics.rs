//! The status report as metrics for node_exporter's textfile collector (Prometheus's text
//! format): base units (seconds, bytes), times as `_timestamp_seconds`, one series per job,
//! copy or medium, and no snapshot ids as labels (each new snapshot would make a new series).
//! docs/design.md §12 lists them.

use std::fmt::Write as _;
use std::path::Path;

use crate::catalog::{BackupOutcome, DrillOutcome, Presence};
use crate::fsio::{self, Durability, Writers};

use super::{DigitState, Level, Report, RpoState};

/// Prometheus's text format of `report`.
pub fn render(report: &Report) -> String {
    let mut m = Metrics::default();
    m.help("bakfs_status_level", "The level of bakfs status: 0 ok, 1 attention, 2 late, 3 short, 4 unknown, 5 breached (its exit code is 0 or 19 + this).");
    m.put("bakfs_status_level", &[], level(report.level));
    m.help(
        "bakfs_status_timestamp_seconds",
        "When these figures were made.",
    );
    m.put("bakfs_status_timestamp_seconds", &[], secs(report.now));

    m.help("bakfs_job_level", "A job's level (as bakfs_status_level).");
    m.help(
        "bakfs_job_rpo_seconds",
        "The job's recovery point objective.",
    );
    m.help(
        "bakfs_job_rpo_state",
        "1 for the state of the job's newest snapshot against its RPO (ok, late, breached, none).",
    );
    m.help(
        "bakfs_job_last_success_timestamp_seconds",
        "When the job's newest snapshot was taken (its last successful backup).",
    );
    m.help(
        "bakfs_job_snapshot_age_seconds",
        "The age of the job's newest snapshot.",
    );
    m.help(
        "bakfs_job_snapshot_bytes",
        "Bytes of the job's newest snapshot's contents.",
    );
    m.help(
        "bakfs_job_last_run_timestamp_seconds",
        "When the job's last backup run began.",
    );
    m.help(
        "bakfs_job_last_run_ok",
        "1 if the job's last backup run ended ok, 0 if not (incomplete, failed, still running).",
    );
    m.help(
        "bakfs_job_verified_copies",
        "Verified copies of the job's newest snapshot that count (the primary's included).",
    );
    m.help(
        "bakfs_job_policy_have",
        "Per digit of the policy (copies, kinds, offsite, offline, drill), what the job has.",
    );
    m.help(
        "bakfs_job_policy_want",
        "Per digit of the policy, what it wants.",
    );
    m.help(
        "bakfs_job_policy_ok",
        "Per digit of the policy, 1 if it holds, 0 if short, -1 if unknown.",
    );
    m.help(
        "bakfs_job_last_drill_timestamp_seconds",
        "When a drill last proved a copy of the job restorable.",
    );
    m.help(
        "bakfs_copy_restore_estimate_seconds",
        "Per copy of the job's newest snapshot (where: primary or a medium's label), the estimated time to restore it.",
    );
    m.help(
        "bakfs_job_pinned_media_missing",
        "Per pinned job (pin = true), the enrolled media lacking a verified copy of its newest snapshot.",
    );
    for j in &report.jobs {
        let l = [("job", j.name.as_str())];
        m.put("bakfs_job_level", &l, level(j.level));
        if let Some(rpo) = j.rpo {
            m.put("bakfs_job_rpo_seconds", &l, rpo.as_secs_f64());
        }
        for s in [
            RpoState::Ok,
            RpoState::Late,
            RpoState::Breached,
            RpoState::None,
        ] {
            let on = f64::from(u8::from(j.rpo_state == s));
            m.put(
                "bakfs_job_rpo_state",
                &[("job", &j.name), ("state", s.as_str())],
                on,
            );
        }
        if let Some(n) = &j.newest {
            m.put("bakfs_job_last_success_timestamp_seconds", &l, secs(n.time));
            m.put("bakfs_job_snapshot_age_seconds", &l, n.age.as_secs_f64());
            if let Some(b) = n.bytes {
                m.put("bakfs_job_snapshot_bytes", &l, b as f64);
            }
        }
        if let Some(r) = &j.last_run {
            m.put("bakfs_job_last_run_timestamp_seconds", &l, secs(r.started));
            let ok = r.ended.is_some() && r.outcome == BackupOutcome::Ok;
            m.put("bakfs_job_last_run_ok", &l, f64::from(u8::from(ok)));
        }
        let counted = j.copies.iter().filter(|c| c.counted).count();
        m.put("bakfs_job_verified_copies", &l, counted as f64);
        for d in &j.digits {
            let dl = [("job", j.name.as_str()), ("digit", d.name)];
            m.put("bakfs_job_policy_have", &dl, f64::from(d.have));
            m.put("bakfs_job_policy_want", &dl, f64::from(d.want));
            let ok = match d.state {
                DigitState::Ok => 1.0,
                DigitState::Short => 0.0,
                DigitState::Unknown => -1.0,
            };
            m.put("bakfs_job_policy_ok", &dl, ok);
        }
        let drilled = j
            .copies
            .iter()
            .filter_map(|c| c.last_drill.as_ref())
            .filter(|d| d.outcome == DrillOutcome::Ok)
            .map(|d| d.time)
            .max();
        if let Some(t) = drilled {
            m.put("bakfs_job_last_drill_timestamp_seconds", &l, secs(t));
        }
        for c in &j.copies {
            if let Some(s) = c.rto_seconds {
                m.put(
                    "bakfs_copy_restore_estimate_seconds",
                    &[("job", &j.name), ("where", &c.place)],
                    s,
                );
            }
        }
        if j.pinned {
            m.put(
                "bakfs_job_pinned_media_missing",
                &l,
                j.pinned_missing.len() as f64,
            );
        }
    }

    for (name, help) in [
        (
            "bakfs_medium_level",
            "A medium's level (as bakfs_status_level).",
        ),
        (
            "bakfs_medium_present",
            "1 if the medium is plugged in, 0 if not, -1 if not known.",
        ),
        (
            "bakfs_medium_last_seen_timestamp_seconds",
            "When bakfs-mediad last saw the medium.",
        ),
        (
            "bakfs_medium_last_written_timestamp_seconds",
            "When the medium was last written.",
        ),
        (
            "bakfs_medium_last_verified_timestamp_seconds",
            "Every file on the medium was read back right at or after this.",
        ),
        (
            "bakfs_medium_last_drill_timestamp_seconds",
            "When a drill from the medium last ended ok.",
        ),
        ("bakfs_medium_snapshots", "Snapshots the medium holds."),
        ("bakfs_medium_bytes", "Bytes of bakfs files on the medium."),
        (
            "bakfs_medium_free_bytes",
            "Free bytes of the medium at the end of its last job.",
        ),
        (
            "bakfs_medium_rotation_due",
            "1 if the medium is due for rotation.",
        ),
        (
            "bakfs_medium_stale",
            "1 if the medium was not seen for longer than stale_after.",
        ),
        (
            "bakfs_medium_restore_bytes_per_second",
            "The restore rate its newest drill measured.",
        ),
        (
            "bakfs_medium_restore_estimate_seconds",
            "The time to restore every job's newest snapshot it holds.",
        ),
        (
            "bakfs_medium_pinned_missing",
            "Pinned jobs (pin = true) whose newest snapshot the medium lacks a verified copy of.",
        ),
    ] {
        m.help(name, help);
    }
    for d in &report.media {
        let l = [("medium", d.label.as_str())];
        m.put("bakfs_medium_level", &l, level(d.level));
        let present = match d.presence {
            Some(Presence::PluggedIn) => 1.0,
            Some(Presence::Removed) => 0.0,
            None => -1.0,
        };
        m.put("bakfs_medium_present", &l, present);
        for (name, t) in [
            ("bakfs_medium_last_seen_timestamp_seconds", d.last_seen),
            (
                "bakfs_medium_last_written_timestamp_seconds",
                d.last_written,
            ),
            (
                "bakfs_medium_last_verified_timestamp_seconds",
                d.last_verified,
            ),
            (
                "bakfs_medium_last_drill_timestamp_seconds",
                d.last_drill
                    .as_ref()
                    .filter(|x| x.outcome == DrillOutcome::Ok)
                    .map(|x| x.time),
            ),
        ] {
            if let Some(t) = t {
                m.put(name, &l, secs(t));
            }
        }
        m.put("bakfs_medium_snapshots", &l, d.snapshots as f64);
        m.put("bakfs_medium_bytes", &l, d.bytes as f64);
        if let Some(f) = d.free_bytes {
            m.put("bakfs_medium_free_bytes", &l, f as f64);
        }
        m.put(
            "bakfs_medium_rotation_due",
            &l,
            f64::from(u8::from(d.rotation_due)),
        );
        m.put("bakfs_medium_stale", &l, f64::from(u8::from(d.stale)));
        if let Some(r) = d.restore_bytes_per_second {
            m.put("bakfs_medium_restore_bytes_per_second", &l, r);
        }
        if let Some(s) = d.rto_seconds {
            m.put("bakfs_medium_restore_estimate_seconds", &l, s);
        }
        m.put(
            "bakfs_medium_pinned_missing",
            &l,
            d.pinned_missing.len() as f64,
        );
    }
    m.text()
}

/// Writes `report`'s metrics to `path` atomically (a collector never reads half a file).
///
/// # Errors
/// The file cannot be written.
pub fn write_textfile(path: &Path, report: &Report) -> std::io::Result<()> {
    let text = render(report);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| std::io::Error::other(format!("{}: not a file name", path.display())))?;
    fsio::write_atomic(dir, name, Durability::Synced, Writers::Many, |out| {
        std::io::Write::write_all(out, text.as_bytes())
    })
}

fn level(l: Level) -> f64 {
    match l {
        Level::Ok => 0.0,
        Level::Attention => 1.0,
        Level::Late => 2.0,
        Level::Short => 3.0,
        Level::Unknown => 4.0,
        Level::Breached => 5.0,
    }
}

fn secs(ns: i64) -> f64 {
    ns as f64 / 1e9
}

/// The series, grouped by metric (the format wants a metric's samples together, after its
/// `# HELP` and `# TYPE`).
#[derive(Default)]
struct Metrics {
    order: Vec<&'static str>,
    help: std::collections::HashMap<&'static str, &'static str>,
    samples: std::collections::HashMap<&'static str, Vec<String>>,
}

impl Metrics {
    fn help(&mut self, name: &'static str, help: &'static str) {
        self.order.push(name);
        self.help.insert(name, help);
    }

    fn put(&mut self, name: &'static str, labels: &[(&str, &str)], value: f64) {
        let mut s = name.to_string();
        if !labels.is_empty() {
            s.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(s, "{k}=\"{}\"", escape(v));
            }
            s.push('}');
        }
        let _ = write!(s, " {value}");
        self.samples.entry(name).or_default().push(s);
    }

    fn text(&self) -> String {
        let mut o = String::new();
        for name in &self.order {
            let Some(samples) = self.samples.get(name) else {
                continue;
            };
            let _ = writeln!(o, "# HELP {name} {}", self.help[name]);
            let _ = writeln!(o, "# TYPE {name} gauge");
            for s in samples {
                o.push_str(s);
                o.push('\n');
            }
        }
        o
    }
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
