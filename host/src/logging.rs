//! The one logging set-up of the binaries: `tracing` to the journal with its fields when systemd
//! started the process with its output there, else to stderr (colours only on a terminal);
//! `BAKFS_LOG` (an `EnvFilter` directive) over the `-v` level.
//!
//! In the journal, an event's fields become journal fields without a prefix (`JOB=etc`,
//! `MEDIUM=OFFSITE-1`, `SNAPSHOT=…`), so `journalctl MEDIUM=OFFSITE-1` finds a medium's history.

use std::os::unix::fs::MetadataExt;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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
/// the journal's `SYSLOG_IDENTIFIER`.
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
            tracing_subscriber::registry().with(filter()).with(j).init();
            return;
        }
    }
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        // Colours only on a terminal: not in the journal, a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    match style {
        Style::Command => b.without_time().init(),
        Style::Daemon => b.init(),
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
}
