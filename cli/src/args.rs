//! Command-line arguments.

use std::path::PathBuf;

use bakfs_core::catalog::{MediumKind, MediumLocation};
use clap::{Args, Parser, Subcommand};

/// bakfs: deduplicated, compressed, encrypted snapshots you can walk into.
#[derive(Parser, Debug)]
#[command(name = "bakfs", version, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The heading of the options every command takes, shown after the command's own options.
pub const GLOBAL_HEADING: &str = "Global options";

/// Options every command takes. None is required: the repository, for one, can come from
/// `BAKFS_REPO` or the configuration file.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = GLOBAL_HEADING)]
pub struct Global {
    /// Repository directory [default: `repository` in the configuration file].
    #[arg(
        long,
        short = 'r',
        value_name = "PATH",
        env = "BAKFS_REPO",
        global = true
    )]
    pub repo: Option<PathBuf>,
    /// File holding the repository password (first line).
    #[arg(long, value_name = "FILE", env = "BAKFS_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Configuration file [default: $XDG_CONFIG_HOME/bakfs/config.toml, else /etc/bakfs/bakfs.toml].
    #[arg(long, value_name = "FILE", env = "BAKFS_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// State directory holding the catalog [default: $XDG_STATE_HOME/bakfs, else /var/lib/bakfs for root, ~/.local/state/bakfs for others].
    #[arg(long, value_name = "DIR", env = "BAKFS_STATE_DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (repeat for more).
    #[arg(long, short = 'v', action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// No progress display.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a new encrypted repository.
    Init,
    /// Manage the wrappings of the master key.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Make a snapshot.
    Backup(BackupArgs),
    /// List snapshots.
    Snapshots {
        /// Only snapshots of this host.
        #[arg(long)]
        host: Option<String>,
        /// Only snapshots with this tag.
        #[arg(long)]
        tag: Option<String>,
    },
    /// List files in a snapshot.
    Ls {
        /// Snapshot id prefix or `latest`.
        snapshot: String,
        /// Directory or file inside the snapshot.
        path: Option<String>,
        /// Long listing (mode, owner, size, time).
        #[arg(long, short = 'l')]
        long: bool,
        /// List recursively.
        #[arg(long, short = 'R')]
        recursive: bool,
    },
    /// Show paths added, removed and changed between two snapshots.
    Diff {
        /// Older snapshot.
        a: String,
        /// Newer snapshot.
        b: String,
    },
    /// Every stored version of a file, the snapshots holding each and where their copies are
    /// (from the catalog alone).
    #[command(long_about = LOCATE_ABOUT)]
    Locate(LocateArgs),
    /// Restore a snapshot (or SNAPSHOT:SUBPATH) into a directory.
    Restore(RestoreArgs),
    /// Write a file to stdout, or a directory as a tar stream.
    Dump {
        /// Snapshot id prefix or `latest`.
        snapshot: String,
        /// Path inside the snapshot.
        path: String,
    },
    /// Mount the repository read-only: every snapshot as a directory tree.
    Mount(MountArgs),
    /// Unmount a `bakfs mount`.
    Umount {
        /// Where it is mounted.
        mountpoint: PathBuf,
    },
    /// Verify the repository.
    Check {
        /// Read and authenticate every byte of data.
        #[arg(long)]
        read_data: bool,
        /// Read this share of packs, e.g. `10%`.
        #[arg(long, value_name = "N%")]
        read_data_subset: Option<String>,
    },
    /// Remove snapshots according to a retention policy.
    Forget(ForgetArgs),
    /// Remove data that no snapshot needs.
    Prune {
        /// Say what would be removed, remove nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
    /// Remove stale locks left by dead processes.
    Unlock {
        /// Remove every lock, also live ones (dangerous).
        #[arg(long)]
        remove_all: bool,
    },
    /// The local catalog.
    #[command(subcommand)]
    Catalog(CatalogCmd),
    /// Offline media that bakfs-mediad copies snapshots onto.
    #[command(subcommand)]
    Media(MediaCmd),
    /// Tape cartridges as media: label them for a pool, list, load, scan, restore from one.
    #[command(subcommand)]
    Tape(crate::cmd::tape::args::TapeCmd),
    /// Whether each job's backups hold: RPO, copies, media, drills (from the catalog alone).
    #[command(long_about = STATUS_ABOUT)]
    Status(StatusArgs),
    /// The figures of `status` for node_exporter's textfile collector (Prometheus's format).
    #[command(long_about = METRICS_ABOUT)]
    Metrics {
        /// Write them to this file, atomically (for example
        /// /var/lib/prometheus/node-exporter/bakfs.prom) [default: standard output].
        #[arg(long, value_name = "FILE")]
        textfile: Option<PathBuf>,
    },
    /// Prove a copy restorable: restore a snapshot from the primary or one medium alone into a
    /// sandbox and check every byte.
    #[command(long_about = DRILL_ABOUT)]
    Drill(DrillArgs),
    /// Repair a damaged repository.
    #[command(subcommand)]
    Repair(RepairCmd),
    /// Write the recovery runbook: every copy and the commands to restore each job from it.
    Runbook {
        /// Write it to this file (atomically) [default: standard output].
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

const LOCATE_ABOUT: &str = "\
Every stored version of a file (by content), the snapshots holding each, and every copy of \
those snapshots: the primary, and each medium holding a verified copy, offline ones included \
(`insert LABEL`). Answered from the catalog alone (no password, no repository read), also for \
snapshots the primary has forgotten while media keep them. A directory lists the recorded \
files below it. Exit status 0 when found, 1 when not (and says when snapshots' files are not \
recorded: `bakfs catalog rebuild` records those of the repository).";

const METRICS_ABOUT: &str = "\
The figures of `bakfs status` for node_exporter's textfile collector (Prometheus's text \
format), from the configuration and the catalog alone: per job its level, RPO and its state, \
the last success, the last run, verified copies of the newest snapshot, each digit of the \
policy, the last drill and the restore estimates; per medium its level, presence, last \
seen/written/verified/drilled, bytes, free space, rotation due, stale and restore rate. Times \
are _timestamp_seconds, sizes bytes; no snapshot id is a label.

With [metrics] textfile in the config file, every backup and bakfs-mediad refresh that file \
too. docs/design.md §12 lists the metrics.";

const STATUS_ABOUT: &str = "\
Whether each job's backups hold, answered from the configuration and the catalog alone: no \
password, no repository read, fast enough to run every minute from a monitor.

Per job: the newest snapshot's age against the job's rpo (ok, late past it, breached past it \
plus rpo_grace, which is the rpo itself unless set), the last run, the copies of the newest \
snapshot (the primary and each medium holding a verified copy) and the config's [policy] \
digit by digit (copies, kinds, offsite, offline, drill), each shortfall said in words; for a \
pinned job (pin = true), every enrolled medium lacking its newest snapshot. Per medium: last \
seen, written, verified and drilled, size, free space, due for rotation, stale, lacking a \
pinned job's newest snapshot, and the restore time its drills measured.

Exit status: 0 everything holds; else the worst found: 20 a medium due for rotation, stale or \
lacking a pinned job's newest snapshot, 21 a job late, 22 a policy digit short, 23 unknown (the catalog cannot tell), 24 a job's rpo \
breached. Errors keep their codes (1 bad arguments, …).";

const DRILL_ABOUT: &str = "\
Prove a copy restorable, as a new machine would restore it: from the primary repository, or \
from one medium alone (only the medium and the password), restore a random sample of a \
snapshot's files (or all of them) into a fresh sandbox directory, read every restored file back \
against the snapshot, and record the drill in the catalog (`bakfs status` shows it: last \
drilled, the drill digit, the restore time estimate). The sandbox is removed afterwards.

The snapshot: --snapshot, else the newest of --job that the copy holds, else the copy's newest.

Exit status: 0 every restored byte matched; 13 damage found (the damaged files are named, and \
`status` stops counting that copy of the snapshot); 1 the drill could not run (medium not \
plugged in, sandbox without room, more live files changed than --max-changed allows, …); 12 \
wrong password.";

#[derive(Args, Debug)]
pub struct DrillArgs {
    /// Drill the newest snapshot of this job that the copy holds.
    #[arg(long)]
    pub job: Option<String>,
    /// Drill this snapshot: `latest` or an id prefix of at least 4 hex digits.
    #[arg(long)]
    pub snapshot: Option<String>,
    /// Restore from this medium alone, by label (it must be plugged in; it is mounted
    /// read-only unless it is mounted already).
    #[arg(long, value_name = "LABEL", conflicts_with = "primary")]
    pub medium: Option<String>,
    /// The medium is mounted here (its filesystem, or the bakfs directory on it) [default:
    /// found by its filesystem UUID].
    #[arg(long, value_name = "DIR", conflicts_with = "primary")]
    pub medium_path: Option<PathBuf>,
    /// For a tape: the drive it is loaded in, /dev/nst0 or virtual:DIR [default: the first of
    /// `[mediad] tape_drives`].
    #[arg(
        long,
        env = "BAKFS_TAPE_DRIVE",
        value_name = "DEVICE|virtual:DIR",
        conflicts_with = "primary"
    )]
    pub drive: Option<String>,
    /// Restore from the primary repository (the default).
    #[arg(long)]
    pub primary: bool,
    /// Restore this share of the snapshot's files, picked at random, at least one [default: 5%].
    #[arg(long, value_name = "N%", conflicts_with = "full")]
    pub sample: Option<String>,
    /// Restore the whole snapshot.
    #[arg(long)]
    pub full: bool,
    /// Also compare restored files with the live files at their paths: files changed or gone
    /// since the snapshot are counted as expected differences.
    #[arg(long)]
    pub against_source: bool,
    /// With --against-source: fail if more than this share of the compared files differ.
    #[arg(
        long,
        value_name = "N%",
        default_value = "20%",
        requires = "against_source"
    )]
    pub max_changed: String,
    /// Make the sandbox (a new directory bakfs-drill-…) in this directory [default: the
    /// config's [drill] sandbox, else /var/tmp].
    #[arg(long, value_name = "DIR")]
    pub sandbox: Option<PathBuf>,
    /// Keep the sandbox when the drill does not end ok (to look at what was restored).
    #[arg(long)]
    pub keep: bool,
}

#[derive(Args, Debug)]
pub struct LocateArgs {
    /// The file as backed up: an absolute path (a relative one is taken from the current
    /// directory), or a directory to list the recorded files below it.
    pub path: PathBuf,
    /// Only the version current at this time: the one held by the newest snapshot at or
    /// before it that holds the file (RFC 3339, e.g. 2026-11-22T03:04:05Z, or a date, midnight
    /// UTC).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub at: Option<i64>,
}

fn parse_time(s: &str) -> Result<i64, String> {
    bakfs_core::timefmt::parse_rfc3339(s).map_err(|e| e.to_string())
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Only this job (and no media list unless --medium is given too).
    #[arg(long)]
    pub job: Option<String>,
    /// Only this medium, by label (and no jobs unless --job is given too).
    #[arg(long)]
    pub medium: Option<String>,
}

#[derive(Args, Debug)]
pub struct MountArgs {
    /// An empty directory to mount on.
    pub mountpoint: PathBuf,
    /// Let other users in (the kernel still checks each file's own permissions).
    #[arg(long)]
    pub allow_other: bool,
    /// Stay in the foreground until unmounted or signalled (for systemd, Type=notify).
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Threads answering file system requests. More idle threads mean a woken one more often
    /// runs on the caller's CPU: a cold `ls -lR` of 116,000 entries took 8.8 s with 4 and
    /// 7.1-7.6 s with 8 (no change with 16; reads and memory the same).
    #[arg(long, default_value_t = 8, hide = true)]
    pub threads: usize,
    /// MiB of decrypted file data the mount process keeps for random readers (an LRU of chunks;
    /// what reads have returned in full is dropped at once).
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub cache_size: usize,
    /// Internal: the background process started by `bakfs mount`.
    #[arg(long, hide = true)]
    pub daemon_child: bool,
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Add a password (prompted, or from --new-password-file).
    Add {
        /// File holding the new password (first line) [default: asked twice on the terminal].
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
    /// List key wrappings.
    List,
    /// Remove a key wrapping by id prefix.
    Remove {
        /// Id prefix of the key wrapping, as `bakfs key list` shows it.
        id: String,
    },
    /// Change the password in use: add the new one, remove the old one.
    Passwd {
        /// File holding the new password (first line) [default: asked twice on the terminal].
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
    /// Print the master key in a form to keep on paper (whoever holds it reads every backup).
    Export {
        /// As lines of hex with a checksum each, to type back with `key import --paper`.
        #[arg(long, required = true)]
        paper: bool,
    },
    /// Regain access with the master key typed back from paper: adds a new password.
    Import {
        /// The lines printed by `key export --paper`.
        #[arg(long, required = true)]
        paper: bool,
        /// Read the lines from this file [default: standard input].
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// File holding the new password (first line) [default: asked twice on the terminal].
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum RepairCmd {
    /// Rebuild the index from the headers of the pack files (after a damaged or lost index).
    Index,
}

#[derive(Subcommand, Debug)]
pub enum CatalogCmd {
    /// Rebuild the catalog's record of this repository from the repository.
    Rebuild,
    /// Show backup runs recorded in the catalog.
    Runs {
        /// Show at most this many runs, the newest.
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Paths to back up.
    pub paths: Vec<PathBuf>,
    /// Exclude paths matching a glob (repeatable).
    #[arg(long, short = 'e', value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Read exclude globs from a file (one per line, # comments).
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Stay on the filesystem of each path.
    #[arg(long, short = 'x')]
    pub one_file_system: bool,
    /// Tag the snapshot (repeatable).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Host name to record [default: this host].
    #[arg(long)]
    pub host: Option<String>,
    /// Store standard input as one file.
    #[arg(long)]
    pub stdin: bool,
    /// Name of the file for --stdin.
    #[arg(long, default_value = "stdin")]
    pub stdin_name: String,
    /// Run a job from the configuration: its paths, or its command's output, between its
    /// before and after commands.
    #[arg(long)]
    pub job: Option<String>,
    /// Run every job from the configuration.
    #[arg(long)]
    pub all_jobs: bool,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// SNAPSHOT or SNAPSHOT:SUBPATH.
    pub snapshot: String,
    /// Directory to restore into.
    #[arg(long, short = 't')]
    pub target: PathBuf,
    /// Only restore paths matching (repeatable).
    #[arg(long, short = 'i', value_name = "GLOB")]
    pub include: Vec<String>,
    /// Do not restore paths matching (repeatable).
    #[arg(long, short = 'e', value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Read restored files back and compare them with the snapshot.
    #[arg(long)]
    pub verify: bool,
}

#[derive(Args, Debug, Default)]
pub struct ForgetArgs {
    /// Remove exactly these snapshots (id prefixes; works on damaged manifests too).
    pub ids: Vec<String>,
    /// Apply this job's retention to this job's snapshots.
    #[arg(long)]
    pub job: Option<String>,
    /// Only snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Run prune afterwards.
    #[arg(long)]
    pub prune: bool,
    /// Only say what would be removed.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    // Last: a heading given here holds for every option after it.
    #[command(
        flatten,
        next_help_heading = "Retention (a snapshot is kept if any rule keeps it)"
    )]
    pub keep: KeepArgs,
}

/// A retention policy on the command line (bakfs_core::forget says what each rule keeps).
#[derive(Args, Debug, Default, Clone)]
pub struct KeepArgs {
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one (local time).
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days that have one (local time).
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months that have one.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years that have one.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep snapshots newer than DURATION before the newest one (e.g. 30d, 1y6m).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
}

impl KeepArgs {
    pub fn policy(&self) -> anyhow::Result<bakfs_core::forget::KeepPolicy> {
        Ok(bakfs_core::forget::KeepPolicy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self
                .keep_within
                .as_deref()
                .map(bakfs_core::timefmt::parse_duration)
                .transpose()?,
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum MediaCmd {
    /// Prepare a medium (a block device with a filesystem) for bakfs-mediad.
    Enroll(EnrollArgs),
    /// Prepare a NAS share (a mounted NFS, SMB or sshfs directory) as a medium for
    /// bakfs-mediad: it gets its copy whenever it is mounted.
    EnrollShare(EnrollShareArgs),
    /// Prepare a bucket (or a prefix in one) in S3-compatible object storage as a medium for
    /// bakfs-mediad: it gets a copy of every new snapshot, encrypted as it is. The access keys
    /// come from the AWS_* variables or ~/.aws/credentials, here and in bakfs-mediad's
    /// environment.
    EnrollBucket(EnrollBucketArgs),
    /// List enrolled media.
    List,
    /// Show what the catalog knows of one medium (no need to plug it in).
    Show {
        /// The medium's label, as given to `bakfs media enroll`.
        label: String,
    },
    /// Record where a medium is now.
    SetLocation {
        /// The medium's label, as given to `bakfs media enroll`.
        label: String,
        /// Where it is now.
        location: MediumLocation,
    },
    /// Set how often a medium should be brought back and rotated (`bakfs status` says when it
    /// is due); `pool` for its pool's `rotate_every` from the configuration.
    SetRotateEvery {
        /// The medium's label, as given to `bakfs media enroll`.
        label: String,
        /// A duration such as 7d, or `pool`.
        #[arg(value_name = "DURATION|pool")]
        every: String,
    },
    /// Forget a medium and its ledger (its files stay on it).
    Forget {
        /// The medium's label, as given to `bakfs media enroll`.
        label: String,
    },
}

#[derive(Args, Debug)]
pub struct EnrollArgs {
    /// The block device holding the medium's filesystem, e.g. /dev/sdb1.
    pub device: PathBuf,
    /// A unique name, written on the medium's sticker.
    #[arg(long)]
    pub label: String,
    /// A group of media that rotate together.
    #[arg(long, default_value = "default")]
    pub pool: String,
    /// Where the medium is kept (`bakfs media set-location` changes it).
    #[arg(long, default_value = "onsite")]
    pub location: MediumLocation,
    /// What kind of medium it is [default: usb for a device on the USB bus, else disk].
    #[arg(long)]
    pub kind: Option<MediumKind>,
    /// How often it should be brought back and rotated, e.g. 7d [default: its pool's
    /// `rotate_every` in the configuration, if any].
    #[arg(long, value_name = "DURATION")]
    pub rotate_every: Option<String>,
    // Last: a heading given here holds for every option after it.
    #[command(
        flatten,
        next_help_heading = "Retention on the medium (default: --keep-last 3)"
    )]
    pub keep: KeepArgs,
}

#[derive(Args, Debug)]
pub struct EnrollBucketArgs {
    /// Where the copies go: s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]. The bucket is created if
    /// it is missing; the prefix must hold nothing yet.
    #[arg(value_name = "S3_LOCATION")]
    pub url: String,
    /// A unique name for the bucket.
    #[arg(long)]
    pub label: String,
    /// A group of media that rotate together.
    #[arg(long, default_value = "default")]
    pub pool: String,
    /// Where the storage is (`bakfs media set-location` changes it); onsite for a server in
    /// the same place as the primary.
    #[arg(long, default_value = "offsite")]
    pub location: MediumLocation,
    /// How often it should get a copy at the latest, e.g. 1d [default: its pool's
    /// `rotate_every` in the configuration, if any].
    #[arg(long, value_name = "DURATION")]
    pub rotate_every: Option<String>,
    // Last: a heading given here holds for every option after it.
    #[command(
        flatten,
        next_help_heading = "Retention in the bucket (default: --keep-last 3)"
    )]
    pub keep: KeepArgs,
}

#[derive(Args, Debug)]
pub struct EnrollShareArgs {
    /// The directory the share is mounted on now, e.g. /mnt/nas-backup (bakfs never writes to
    /// it while nothing is mounted there).
    pub path: PathBuf,
    /// A unique name for the share.
    #[arg(long)]
    pub label: String,
    /// A group of media that rotate together.
    #[arg(long, default_value = "default")]
    pub pool: String,
    /// Where the share is (`bakfs media set-location` changes it).
    #[arg(long, default_value = "onsite")]
    pub location: MediumLocation,
    /// How often it should get a copy at the latest, e.g. 7d [default: its pool's
    /// `rotate_every` in the configuration, if any].
    #[arg(long, value_name = "DURATION")]
    pub rotate_every: Option<String>,
    /// What bakfs-mediad mounts at PATH itself when nothing is mounted there, e.g.
    /// nas:/export/backup, //nas/backup or root@nas:/backup (with the filesystem type the share
    /// has now); it unmounts what it mounted after the copy. Default: mediad waits for the
    /// system to mount it.
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
    /// Options for mounting SOURCE, e.g. credentials=/etc/bakfs/nas.cred or
    /// IdentityFile=/etc/bakfs/nas_key,port=22.
    #[arg(long, value_name = "OPTIONS", requires = "source")]
    pub mount_options: Option<String>,
    // Last: a heading given here holds for every option after it.
    #[command(
        flatten,
        next_help_heading = "Retention on the share (default: --keep-last 3)"
    )]
    pub keep: KeepArgs,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// clap's own checks of the definition (names, headings, conflicts), for every command.
    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The global options are required by no command: each can come from the environment or
    /// the configuration file.
    #[test]
    fn no_global_option_is_required() {
        fn walk(c: &clap::Command) {
            for a in c.get_arguments() {
                if a.get_help_heading() == Some(GLOBAL_HEADING) {
                    assert!(!a.is_required_set(), "{} {}", c.get_name(), a.get_id());
                }
            }
            c.get_subcommands().for_each(walk);
        }
        let mut c = Cli::command();
        c.build();
        walk(&c);
    }
}
