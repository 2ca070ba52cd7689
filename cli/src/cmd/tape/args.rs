//! The arguments of `bakfs tape`.

use std::path::PathBuf;

use bakfs_core::catalog::{MediumLocation, TapePlace, TapeStatus};
use clap::{Args, Subcommand};

use crate::args::{KeepArgs, RestoreArgs};

#[derive(Subcommand, Debug)]
pub enum TapeCmd {
    /// Label the cartridge in the drive for a pool and enroll it: bakfs-mediad then copies
    /// snapshots onto it whenever it is loaded.
    Label(LabelArgs),
    /// List enrolled cartridges: pool, media set, status, where they are.
    List,
    /// Record a cartridge's status or place by hand: retired (no more writes), writable again
    /// after a check, taken to the vault.
    Mark {
        /// The cartridge's label.
        label: String,
        /// Its status now.
        #[arg(long)]
        status: Option<TapeStatus>,
        /// Where it is now (quote the values with a space: "in library").
        #[arg(long)]
        place: Option<TapePlace>,
    },
    /// Show what the catalog knows of one cartridge (no need to load it).
    Show {
        /// The cartridge's label.
        label: String,
    },
    /// Load a cartridge into the drive (from a virtual library, by name; a real drive loads the
    /// cartridge in its slot).
    Load {
        /// The cartridge to load (a virtual library's cartridge name).
        name: Option<String>,
        #[command(flatten)]
        drive: DriveArg,
    },
    /// Make a new cartridge in a virtual drive's library (virtual:DIR), to try tapes
    /// without hardware.
    Create {
        /// The cartridge's name in the library, e.g. A00001L9.
        name: String,
        /// How much it holds, e.g. 800M or 12T (K, M, G, T: powers of 1024).
        #[arg(long, value_name = "SIZE")]
        capacity: String,
        /// How long before the end the early warning comes, e.g. 32M [default: 32M, or an
        /// eighth of a smaller cartridge].
        #[arg(long, value_name = "SIZE")]
        early_warning: Option<String>,
        #[command(flatten)]
        drive: DriveArg,
    },
    /// Rewind and eject the cartridge in the drive.
    Unload {
        #[command(flatten)]
        drive: DriveArg,
    },
    /// Read the cartridge in the drive without the catalog: its label, jobs and files, and
    /// record where its files are for an enrolled cartridge.
    Scan(ScanArgs),
    /// Restore from the cartridge in the drive alone (with the passphrase): only the tape
    /// files that hold what is restored are read.
    Restore(TapeRestoreArgs),
}

/// Which drive.
#[derive(Args, Debug, Clone)]
pub struct DriveArg {
    /// The tape drive: a non-rewinding device (/dev/nst0) or virtual:DIR for a virtual drive
    /// over a library directory [default: the first of `[mediad] tape_drives`].
    #[arg(long, env = "BAKFS_TAPE_DRIVE", value_name = "DEVICE|virtual:DIR")]
    pub drive: Option<String>,
}

#[derive(Args, Debug)]
pub struct LabelArgs {
    /// The text on the cartridge's sticker, e.g. A00001L9.
    pub label: String,
    /// The media pool it joins.
    #[arg(long, default_value = "default")]
    pub pool: String,
    /// Where the cartridge is kept once written.
    #[arg(long, default_value = "offsite")]
    pub location: MediumLocation,
    /// Start a new media set with it [default: it continues the pool's newest set].
    #[arg(long)]
    pub new_set: bool,
    /// Erase a cartridge that holds something (another bakfs label, other data).
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub drive: DriveArg,
    // Last: a heading given here holds for every option after it.
    #[command(
        flatten,
        next_help_heading = "Which snapshots the set gets (default: --keep-last 3)"
    )]
    pub keep: KeepArgs,
}

#[derive(Args, Debug)]
pub struct TapeRestoreArgs {
    #[command(flatten)]
    pub restore: RestoreArgs,
    #[command(flatten)]
    pub drive: DriveArg,
    /// Where files read from the tape are staged [default: a directory in the state
    /// directory, removed afterwards].
    #[arg(long, value_name = "DIR")]
    pub staging: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    #[command(flatten)]
    pub drive: DriveArg,
    /// Enroll the cartridge from its label if this catalog does not know it (a catalog lost
    /// and rebuilt, another machine's tape of this repository).
    #[arg(long)]
    pub enroll: bool,
    /// Also read every file back and record what matched as held on the cartridge: its files,
    /// and the snapshots whose packs the set holds (the catalog must know the snapshots:
    /// `bakfs catalog rebuild`).
    #[arg(long)]
    pub verify: bool,
}
