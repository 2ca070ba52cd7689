//! Writes every file of a repository directory to a fresh virtual cartridge through the tape
//! layout (a label, one job's data file, its catalog), as bakfs-mediad does without its
//! read-back, and prints the throughput: the figure to hold against `dd` writing the same
//! bytes to the same filesystem (bench/tape.sh).
//!
//! ```text
//! cargo run --release -p bakfs-tape --example write_repo -- REPO LIBRARY_DIR
//! ```

use std::error::Error;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bakfs_core::repo::backend::FileKind;
use bakfs_tape::layout::{label_tape, JobId, Label, Placement, TapeWriter, LABEL_FORMAT};
use bakfs_tape::{CartridgeName, DriveConfig, TapeDrive, TapeError, VirtualDrive};

/// The repository's files, small ones first, as a job writes them.
fn files(repo: &Path) -> std::io::Result<Vec<(FileKind, String, PathBuf)>> {
    let mut v = vec![(FileKind::Config, "config".to_string(), repo.join("config"))];
    for kind in [
        FileKind::Key,
        FileKind::Index,
        FileKind::Snapshot,
        FileKind::Pack,
    ] {
        let mut dirs = vec![repo.join(kind.dir())];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d)? {
                let e = e?;
                if e.file_type()?.is_dir() {
                    dirs.push(e.path());
                } else {
                    v.push((kind, e.file_name().to_string_lossy().into_owned(), e.path()));
                }
            }
        }
    }
    Ok(v)
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args_os().skip(1);
    let usage = "usage: write_repo REPO LIBRARY_DIR";
    let repo = PathBuf::from(args.next().ok_or(usage)?);
    let library = PathBuf::from(args.next().ok_or(usage)?);
    let files = files(&repo)?;
    let size: u64 = files
        .iter()
        .map(|f| f.2.metadata().map_or(0, |m| m.len()))
        .sum();
    let mut drive = VirtualDrive::open(&library, DriveConfig::default())?;
    let name = CartridgeName::new("bench")?;
    if drive.loaded_cartridge().is_some() {
        drive.unload()?;
    }
    match drive.remove_cartridge(&name) {
        Ok(()) | Err(TapeError::NoSuchCartridge(_)) => {}
        Err(e) => return Err(e.into()),
    }
    drive.create_cartridge(&name, size + (1 << 30))?;
    drive.load(&name)?;

    let start = Instant::now();
    let label = Label {
        format: LABEL_FORMAT,
        medium_id: "bench".into(),
        label: "bench".into(),
        pool: "bench".into(),
        repo_id: "bench".into(),
        media_set: "bench".into(),
        set_seq: 0,
        labelled_ns: 0,
    };
    label_tape(&mut drive, &label)?;
    let mut w = TapeWriter::after_label(&mut drive, JobId(1));
    for (kind, name, path) in &files {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        if w.write(*kind, name, len, &mut f)? == Placement::Full {
            return Err("the cartridge filled up".into());
        }
    }
    w.close(false, 0)?;
    drive.write_filemarks(0)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{size} bytes in {} files: {secs:.3} s, {:.1} MiB/s",
        files.len(),
        size as f64 / secs / f64::from(1 << 20)
    );
    drive.close()?;
    Ok(())
}
