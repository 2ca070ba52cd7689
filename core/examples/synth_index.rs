//! Adds a synthetic index to a repository, for the fleet-scale benchmark (bench/scale.sh):
//! `synth_index REPO PASSWORD_FILE BLOBS` writes index files listing BLOBS random blobs in
//! packs of 8,192 blobs, 65,536 blobs per index file, the way backups write them. The packs do
//! not exist: opening, looking up, backing up into and mounting the repository never read them,
//! which is what the benchmark measures (`check` would call them missing).

use std::sync::Arc;

use bakfs_core::format::id::{BlobId, PackId};
use bakfs_core::format::{BlobKind, IndexFile, IndexPack, PackEntry};
use bakfs_core::repo::backend::LocalBackend;
use bakfs_core::repo::Repository;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: synth_index REPO PASSWORD_FILE BLOBS");
        std::process::exit(2);
    }
    let pw = std::fs::read(&args[2]).expect("password file");
    let pw = pw.strip_suffix(b"\n").unwrap_or(&pw);
    let blobs: u64 = args[3].parse().expect("BLOBS");
    let repo = Repository::open(Arc::new(LocalBackend::new(&args[1])), pw).expect("open");
    const PER_PACK: u64 = 8_192;
    const PER_FILE: u64 = 65_536;
    let mut done = 0;
    while done < blobs {
        let n = PER_FILE.min(blobs - done);
        let packs = (0..n.div_ceil(PER_PACK))
            .map(|p| {
                let k = PER_PACK.min(n - p * PER_PACK);
                IndexPack {
                    id: PackId::random(),
                    size: k * 1_000,
                    blobs: (0..k as u32)
                        .map(|i| PackEntry {
                            id: BlobId::random(),
                            kind: BlobKind::Data,
                            offset: i * 1_000,
                            length: 1_000,
                            raw_len: 1_500,
                            compressed: true,
                        })
                        .collect(),
                }
            })
            .collect();
        repo.write_index(&IndexFile { packs }).expect("write index");
        done += n;
    }
    eprintln!("{done} synthetic blobs indexed");
}
