//! The one logging set-up of the binaries: `tracing` to the journal with its fields when systemd
//! started the process with its output there, else to stderr (colours only on a terminal);
//! `BAKFS_LOG` (an `EnvFilter` directive) over the `-v` level.
//!
//! In the journal, an event's fields become journal fields without a prefix (`JOB=etc`,
//! `MEDIUM=OFFSITE-1`, `SNAPSHOT=…`), so `journalctl MEDIUM=OFFSITE-1` finds a medium's history.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// How a binary's log lines look on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A command run by hand: no timestamps (the terminal has its own sense of time).
    Command,
    /// A daemon: timestamps (journald adds its own, a log file does not).
    Daemon,
}

/// Whether stderr is the journal stream systemd connected (`JOURNAL_STREAM` names its device and
/// inode, as systemd.exec(5) says to check: a child whose stderr was redirected must not log to
/// the journal).
fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(m) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(m.dev()) && ino.parse() == Ok(m.ino())
}

/// Installs the global subscriber; `level` is the default filter (`warn`, `info`, …) and `name`
/// the journal's `SYSLOG_IDENTIFIER`. bakfs's own lines from `info` up are also kept in
/// memory, whatever the filter, for [`tail_since`].
pub fn init(level: &str, style: Style, name: &str) {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("BAKFS_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level))
    };
    let stream = std::env::var("JOURNAL_STREAM").ok();
    if stderr_is_journal(stream.as_deref()) {
        if let Ok(j) = tracing_journald::layer() {
            let j = j
                .with_field_prefix(None)
                .with_syslog_identifier(name.to_string());
            tracing_subscriber::registry()
                .with(j.with_filter(filter()))
                .with(tail_layer())
                .init();
            return;
        }
    }
    let b = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: not in the journal, a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let registry = tracing_subscriber::registry().with(tail_layer());
    match style {
        Style::Command => registry.with(b.without_time().with_filter(filter())).init(),
        Style::Daemon => registry.with(b.with_filter(filter())).init(),
    }
}

/// [`TailLayer`] with its own filter: bakfs's lines from `info` up, others' from `warn`.
fn tail_layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    TailLayer.with_filter(
        Targets::new()
            .with_default(Level::WARN)
            .with_target("bakfs", Level::INFO),
    )
}

/// How many of the latest lines are kept for [`tail_since`].
const TAIL_LINES: usize = 200;

/// The latest lines logged, numbered.
static TAIL: Mutex<(u64, VecDeque<String>)> = Mutex::new((0, VecDeque::new()));

/// A place in the log: what [`tail_since`] starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(u64);

/// The place the log is at now.
pub fn mark() -> Mark {
    Mark(TAIL.lock().map(|t| t.0).unwrap_or(0))
}

/// The lines logged since `mark` (the latest [`TAIL_LINES`] of them; on every thread, so a run
/// that runs beside another also gets the other's), one per line: what a heartbeat sends as the
/// log's tail.
pub fn tail_since(mark: Mark) -> String {
    let Ok(t) = TAIL.lock() else {
        return String::new();
    };
    let (next, lines) = &*t;
    let wanted = usize::try_from(next.saturating_sub(mark.0)).unwrap_or(usize::MAX);
    let skip = lines.len().saturating_sub(wanted);
    lines.iter().skip(skip).fold(String::new(), |mut o, l| {
        o.push_str(l);
        o.push('\n');
        o
    })
}

fn keep(line: String) {
    if let Ok(mut t) = TAIL.lock() {
        t.0 += 1;
        if t.1.len() == TAIL_LINES {
            t.1.pop_front();
        }
        t.1.push_back(line);
    }
}

/// Keeps each event as a line: `LEVEL message field=value …`.
struct TailLayer;

struct Line(String);

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for TailLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut line = Line(event.metadata().level().to_string());
        event.record(&mut line);
        keep(line.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stream_systemd_connected_counts() {
        let m = std::fs::metadata("/proc/self/fd/2").unwrap();
        assert!(stderr_is_journal(Some(&format!("{}:{}", m.dev(), m.ino()))));
        assert!(!stderr_is_journal(Some(&format!(
            "{}:{}",
            m.dev(),
            m.ino() + 1
        ))));
        assert!(!stderr_is_journal(Some("garbage")));
        assert!(!stderr_is_journal(None));
    }

    #[test]
    fn the_tail_holds_the_lines_since_a_mark_and_only_the_latest() {
        keep("INFO before".into());
        let m = mark();
        keep("WARN one".into());
        keep("ERROR two".into());
        let t = tail_since(m);
        assert!(t.ends_with("WARN one\nERROR two\n"), "{t}");
        assert!(!t.contains("before"), "{t}");
        for i in 0..TAIL_LINES + 10 {
            keep(format!("INFO {i}"));
        }
        let t = tail_since(m);
        assert_eq!(t.lines().count(), TAIL_LINES, "only the latest are kept");
        assert!(t.ends_with(&format!("INFO {}\n", TAIL_LINES + 9)), "{t}");
        assert_eq!(tail_since(mark()), "");
    }
}
