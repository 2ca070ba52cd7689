//! Writes a file to a virtual cartridge in fixed-size records, as a backup going to tape
//! would, and prints the throughput: the figure to hold against `dd` writing the same file to
//! the same filesystem (`dd if=SOURCE of=OUT bs=256K`).
//!
//! ```text
//! cargo run --release -p bakfs-tape --example throughput -- SOURCE LIBRARY_DIR [RECORD_KIB]
//! ```
//!
//! The cartridge `bench` in LIBRARY_DIR is made afresh each run. Nothing is fsynced (dd does
//! not either); the closing filemark writes out what is buffered.

use std::error::Error;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use bakfs_tape::{CartridgeName, DriveConfig, TapeDrive, TapeError, VirtualDrive};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args_os().skip(1);
    let usage = "usage: throughput SOURCE LIBRARY_DIR [RECORD_KIB]";
    let source = PathBuf::from(args.next().ok_or(usage)?);
    let library = PathBuf::from(args.next().ok_or(usage)?);
    let record_kib: usize = match args.next() {
        Some(s) => s.to_str().ok_or(usage)?.parse()?,
        None => 256,
    };

    let mut src = File::open(&source)?;
    let size = src.metadata()?.len();
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

    // A page-aligned buffer, as dd's: the kernel copies a misaligned one more slowly.
    let mut storage = vec![0u8; (record_kib << 10) + 4096];
    let skip = storage.as_ptr().align_offset(4096);
    let buf = &mut storage[skip..skip + (record_kib << 10)];
    let start = Instant::now();
    let mut records = 0u64;
    loop {
        let n = read_full(&mut src, buf)?;
        if n == 0 {
            break;
        }
        drive.write_record(&buf[..n])?;
        records += 1;
    }
    drive.write_filemarks(1)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{size} bytes in {records} records of {record_kib} KiB: {secs:.3} s, {:.1} MiB/s",
        size as f64 / secs / f64::from(1 << 20)
    );
    drive.close()?;
    Ok(())
}

/// Fills `buf` from `r` unless the file ends first; the count read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..])? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}
