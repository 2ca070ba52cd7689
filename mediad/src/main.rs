//! bakfs-mediad: copies the newest snapshots onto enrolled media when udev sees them.
//!
//! It reads the same configuration, repository and state directory as `bakfs` and needs no
//! passphrase: packs, index files and manifests are copied as they are (encrypted) and checked
//! against their names. See docs/mediad.md.

mod daemon;
mod drill;
mod error;
mod job;
mod ledger;
mod medium;
mod monitor;
mod plan;
mod primary;
mod reconcile;
mod retention;
mod reverify;
mod rotate;
mod signals;
mod tape;
mod udev;
mod writer;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Result};
use bakfs_core::repo::backend::Location;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "bakfs-mediad",
    version,
    about = "Copies bakfs snapshots onto enrolled media as they are plugged in"
)]
struct Args {
    /// Configuration file (default: $XDG_CONFIG_HOME/bakfs/config.toml, else /etc/bakfs/bakfs.toml).
    #[arg(long, env = "BAKFS_CONFIG")]
    config: Option<PathBuf>,
    /// The primary repository.
    #[arg(long, short = 'r', env = "BAKFS_REPO")]
    repo: Option<PathBuf>,
    /// State directory holding the catalog.
    #[arg(long, env = "BAKFS_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Where media are mounted while they are written.
    #[arg(long, default_value = "/run/bakfs/media")]
    media_root: PathBuf,
    /// Read back files already on a medium once their last check is older than this (e.g.
    /// 30d; 0d: at every insertion). Default: the config's `[mediad] reverify_after`, else 30d.
    #[arg(long, value_name = "DURATION")]
    reverify_after: Option<String>,
    /// Handle the media present now, then exit (no udev monitor).
    #[arg(long)]
    once: bool,
    /// More log output (-v debug, -vv trace); BAKFS_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// The tape drives to watch, from `[mediad] tape_drives`.
fn tape_watch(cfg: &bakfs_core::settings::Config) -> Result<tape::Watch> {
    let auto = cfg
        .mediad
        .tape_drives
        .iter()
        .any(|d| d == tape::discover::AUTO);
    let drives = cfg
        .mediad
        .tape_drives
        .iter()
        .filter(|d| *d != tape::discover::AUTO)
        .map(|d| bakfs_tape::DriveSpec::parse(d).map_err(|e| anyhow!("[mediad] tape_drives: {e}")))
        .collect::<Result<_>>()?;
    let poll = cfg
        .mediad
        .tape_poll
        .as_deref()
        .unwrap_or(bakfs_core::settings::TAPE_POLL);
    Ok(tape::Watch {
        drives,
        auto,
        poll: bakfs_core::timefmt::parse_timeout(poll)
            .map_err(|e| anyhow!("[mediad] tape_poll: {e}"))?,
        eject: cfg.mediad.tape_eject.unwrap_or(true),
        pools: cfg
            .pools
            .iter()
            .map(|(name, p)| {
                bakfs_core::tape_pool::PoolPolicy::of(Some(p))
                    .map(|policy| (name.clone(), policy))
                    .map_err(|e| anyhow!("[pools.{name}] {e}"))
            })
            .collect::<Result<_>>()?,
    })
}

fn setup(a: &Args) -> Result<(job::Setup, tape::Watch)> {
    let (cfg, _) = bakfs_host::paths::load_config(a.config.as_deref())?;
    bakfs_core::repo::backend::configure_s3(&cfg.s3);
    let repo_root = a
        .repo
        .clone()
        .or_else(|| cfg.repository.clone())
        .ok_or_else(|| anyhow!("no repository given: use --repo PATH, BAKFS_REPO or `repository` in the config file"))?;
    let repo = match Location::parse(&repo_root).map_err(|e| anyhow!(e))? {
        Location::Dir(p) => Location::Dir(std::path::absolute(p)?),
        s3 @ Location::S3(_) => s3,
    };
    // Its errors name the location.
    let config = bakfs_core::repo::read_config(repo.backend()?.as_ref())?;
    let state = bakfs_host::paths::state_dir(a.state_dir.as_deref(), &cfg);
    let reverify_after = a
        .reverify_after
        .as_deref()
        .or(cfg.mediad.reverify_after.as_deref())
        .unwrap_or(bakfs_core::settings::REVERIFY_AFTER);
    let reverify_after = bakfs_core::timefmt::parse_duration(reverify_after)
        .map_err(|e| anyhow!("--reverify-after: {e}"))?;
    let duration = |key: &str, v: Option<&String>, default: &str| {
        bakfs_core::timefmt::parse_timeout(v.map_or(default, String::as_str))
            .map_err(|e| anyhow!("[mediad] {key}: {e}"))
    };
    let setup = job::Setup {
        repo,
        repo_id: config.id,
        catalog: state.join("catalog.db"),
        media_root: a.media_root.clone(),
        reverify_after,
        share_timeout: duration(
            "share_timeout",
            cfg.mediad.share_timeout.as_ref(),
            bakfs_core::settings::SHARE_TIMEOUT,
        )?,
        share_retry: duration(
            "share_retry",
            cfg.mediad.share_retry.as_ref(),
            bakfs_core::settings::SHARE_RETRY,
        )?,
        share_read_back: match &cfg.mediad.share_read_back {
            Some(p) => bakfs_core::settings::parse_percent(p)
                .map_err(|e| anyhow!("[mediad] share_read_back {e}"))?,
            None => 100.0,
        },
        pinned: cfg
            .jobs
            .iter()
            .filter(|(_, j)| j.pin)
            .map(|(name, _)| name.clone())
            .collect(),
        tz: bakfs_core::timefmt::TimeZone::system(),
        drill: match &cfg.mediad.drill_password_file {
            Some(p) => Some(drill::DrillSetup {
                password_file: p.clone(),
                sample: match &cfg.drill.sample {
                    Some(s) => bakfs_core::settings::parse_percent(s)
                        .map_err(|e| anyhow!("[drill] sample {e}"))?,
                    None => bakfs_core::drill::DEFAULT_SAMPLE_PERCENT,
                },
                sandbox: cfg
                    .drill
                    .sandbox
                    .clone()
                    .unwrap_or_else(|| bakfs_core::drill::DEFAULT_SANDBOX.into()),
            }),
            None => None,
        },
        runbook: ledger::RunbookInfo {
            jobs: bakfs_core::runbook::JobSummary::of_config(&cfg),
            password_file: cfg.password_file.as_ref().map(|p| p.display().to_string()),
        },
        monitors: monitor::Monitors {
            heartbeats: cfg.mediad.heartbeats.clone(),
            metrics: match &cfg.metrics.textfile {
                Some(p) => Some((p.clone(), bakfs_core::status::Settings::from_config(&cfg)?)),
                None => None,
            },
            drill_within: bakfs_core::status::Settings::from_config(&cfg)?
                .policy
                .drill_within,
            state_dir: state,
        },
    };
    Ok((setup, tape_watch(&cfg)?))
}

/// The daemon with its real event sources: udev and the mount table, the stop signals, a
/// thread per job running [`job::run_attached`].
fn serve(setup: &job::Setup, watch: &tape::Watch, mode: daemon::Mode) -> Result<()> {
    // Before any thread starts, so that every thread has the signals blocked.
    let mut signals = signals::Signals::block()?;
    let mut sources = Sources {
        udev: udev::Udev::new(mode, signals.wake_fd()?)?,
        mounts: bakfs_host::mountinfo::Watch::new()?,
    };
    let s = setup.clone();
    let runner = move |j: &daemon::Job| job::run_attached(&s, j);
    let stop = Arc::new(AtomicBool::new(false));
    // Tape runs a killed daemon left running are closed before the watchers start theirs (the
    // daemon's own start-up closes the other kinds').
    if !watch.drives.is_empty() || watch.auto {
        let n = bakfs_core::catalog::Catalog::open(&setup.catalog)?
            .abandon_tape_runs(bakfs_core::timefmt::now_ns())?;
        if n > 0 {
            tracing::warn!("{n} tape runs were interrupted when the daemon last stopped");
        }
    }
    let tapes = match mode {
        daemon::Mode::Listen => tape::start(setup, watch, &stop),
        daemon::Mode::Once => {
            tape::once(setup, watch);
            Vec::new()
        }
    };
    let r = daemon::run(setup, mode, &mut sources, &mut signals, runner);
    // A tape job stops at its next file; what it wrote has no catalog and is not trusted.
    stop.store(true, Ordering::Relaxed);
    for t in tapes {
        let _ = t.join();
    }
    r
}

/// Block devices from udev, shares from the mount table.
struct Sources {
    udev: udev::Udev,
    mounts: bakfs_host::mountinfo::Watch,
}

impl daemon::Devices for Sources {
    fn present(&mut self) -> Result<Vec<udev::Dev>> {
        self.udev.present()
    }

    fn wait(&mut self, timeout: std::time::Duration) -> Result<Vec<udev::Dev>> {
        self.udev.wait(timeout)
    }

    fn holds(&self, node: &std::path::Path, uuid: &str) -> bool {
        self.udev.holds(node, uuid)
    }
}

impl daemon::Mounts for Sources {
    fn changed_mounts(&mut self) -> Option<std::collections::HashSet<PathBuf>> {
        self.mounts.changed_mounts()
    }
}

fn main() -> ExitCode {
    let a = Args::parse();
    let level = match a.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    bakfs_host::logging::init(level, bakfs_host::logging::Style::Daemon, "bakfs-mediad");
    let mode = if a.once {
        daemon::Mode::Once
    } else {
        daemon::Mode::Listen
    };
    let r = setup(&a).and_then(|(s, w)| serve(&s, &w, mode));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Logged once: stderr is where the log goes (the journal under systemd).
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}
