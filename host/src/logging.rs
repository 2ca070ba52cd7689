//! The one logging set-up of the binaries: `tracing` to stderr (the journal under systemd),
//! colours only on a terminal, `BAKFS_LOG` (an `EnvFilter` directive) over the `-v` level.

/// How a binary's log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A command run by hand: no timestamps (the terminal has its own sense of time).
    Command,
    /// A daemon: timestamps (journald adds its own, a log file does not).
    Daemon,
}

/// Installs the global subscriber; `level` is the default filter (`warn`, `info`, …).
pub fn init(level: &str, style: Style) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BAKFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: not in the journal, a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    match style {
        Style::Command => b.without_time().init(),
        Style::Daemon => b.init(),
    }
}
