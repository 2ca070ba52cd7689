//! The set of index tables of one repository in a local cache directory (design.md §3.7.1): which
//! tables there are and which index files each covers (`tables.json`), kept in step with the
//! repository's `index/` listing, merged when they accumulate.
//!
//! The cache is derived data: a missing, stale or damaged table is dropped and built again from
//! the index files it covered. Several processes may share it (a mount while a backup runs):
//! every change is made under an exclusive `flock` of `lock`, tables are immutable once
//! written, and `tables.json` is replaced atomically, so a crash at any point leaves the old set
//! or the new one; files no manifest lists are removed by the next change.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::table::{Damage, Record, Table, TableWriter};
use crate::error::{Error, Result};
use crate::format::id::PackId;
use crate::format::{IndexFile, PackEntry};
use crate::fsio::{write_atomic, Durability, Writers};

/// More tables than this are merged (the smallest first), so a lookup reads at most this many
/// runs.
pub(super) const MAX_TABLES: usize = 8;
/// Records gathered in memory before they are written as a table when index files are read
/// (about 12 MB decoded, and as much again sorted).
pub(super) const BATCH_RECORDS: usize = 250_000;
const MANIFEST: &str = "tables.json";

/// What became of one index file when it was read.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub(super) struct FileNote {
    /// Why it could not be used (it authenticates or decodes badly), if so.
    pub damaged: Option<String>,
    /// The blake3 of its bytes, where that is not its name.
    pub misnamed: Option<String>,
}

/// One table and the index files it covers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Meta {
    pub file: String,
    pub records: u64,
    /// The index files it covers, with what was noted reading them.
    pub covers: Vec<(String, FileNote)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Manifest {
    tables: Vec<Meta>,
}

#[cfg(test)]
thread_local! {
    /// A test's way to stop a change half way, as a crash would.
    pub(super) static CRASH_BEFORE_MANIFEST: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// One index file read: its name, then its packs or what went wrong.
pub(super) type ReadFile = (String, std::result::Result<IndexFile, String>, FileNote);

/// The tables of one repository.
pub(super) struct Store {
    dir: PathBuf,
    /// Removed when the store is dropped (a repository in memory, or no cache directory).
    temporary: bool,
    /// Open tables, newest first, with their manifest entries.
    pub tables: Vec<(Arc<Table>, Meta)>,
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Holds the store's lock until dropped.
struct Locked(#[allow(dead_code)] nix::fcntl::Flock<File>);

impl Store {
    /// The store in `dir` (created if missing); `temporary` ones are removed on drop.
    ///
    /// # Errors
    /// The directory cannot be made.
    pub fn open(dir: PathBuf, temporary: bool) -> io::Result<Store> {
        std::fs::create_dir_all(&dir)?;
        Ok(Store {
            dir,
            temporary,
            tables: Vec::new(),
        })
    }

    /// A temporary store under the system's temporary directory.
    ///
    /// # Errors
    /// The directory cannot be made.
    pub fn temporary() -> io::Result<Store> {
        let dir = std::env::temp_dir().join(format!(
            "bakfs-index-{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 8]>())
        ));
        Store::open(dir, true)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> io::Result<Locked> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("lock"))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map(Locked)
            .map_err(|(_, e)| io::Error::from(e))
    }

    fn read_manifest(&self) -> Manifest {
        match std::fs::read(self.dir.join(MANIFEST)) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(
                    "{}: unreadable ({e}); the index tables are built again",
                    self.dir.join(MANIFEST).display()
                );
                Manifest::default()
            }),
            Err(_) => Manifest::default(),
        }
    }

    /// Writes the manifest, removes every file it does not list, and opens its tables.
    fn commit(&mut self, m: Manifest) -> Result<()> {
        #[cfg(test)]
        if CRASH_BEFORE_MANIFEST.with(|c| c.replace(false)) {
            return Err(Error::Invalid("crash injected before the manifest".into()));
        }
        let bytes = serde_json::to_vec(&m).map_err(|e| Error::Invalid(e.to_string()))?;
        write_atomic(
            &self.dir,
            MANIFEST,
            Durability::Synced,
            Writers::Many,
            |f| io::Write::write_all(f, &bytes),
        )
        .map_err(|e| self.io(e))?;
        let listed: HashSet<&str> = m.tables.iter().map(|t| t.file.as_str()).collect();
        for e in std::fs::read_dir(&self.dir).map_err(|e| self.io(e))? {
            let Ok(e) = e else { continue };
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = name.ends_with(".tbl") || name.starts_with(".tmp-");
            if ours && !listed.contains(name.as_str()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        self.tables = self.open_tables(m)?;
        Ok(())
    }

    /// Opens the tables `m` lists, newest first; those already open are kept as they are (a
    /// table never changes), so adding one table does not read the others' fences and filters
    /// again.
    fn open_tables(&self, m: Manifest) -> Result<Vec<(Arc<Table>, Meta)>> {
        let open: HashMap<&str, &Arc<Table>> = self
            .tables
            .iter()
            .map(|(t, meta)| (meta.file.as_str(), t))
            .collect();
        let mut out = Vec::with_capacity(m.tables.len());
        for meta in m.tables.into_iter().rev() {
            let t = match open.get(meta.file.as_str()) {
                Some(t) => Arc::clone(t),
                None => {
                    let f = File::open(self.dir.join(&meta.file)).map_err(|e| self.io(e))?;
                    Arc::new(Table::open(f).map_err(|e| self.io(e))?)
                }
            };
            out.push((t, meta));
        }
        Ok(out)
    }

    fn io(&self, e: io::Error) -> Error {
        Error::io(format!("index cache {}", self.dir.display()), e)
    }

    /// Brings the tables in step with the repository's index files `names`: tables covering a
    /// file that is gone, or that cannot be opened, are dropped; files no table covers are read
    /// with `read` (in groups, `BATCH_RECORDS` records per new table) and written as new
    /// tables; then tables are merged down to [`MAX_TABLES`].
    ///
    /// # Errors
    /// What `read` returns for a file that is not merely damaged; I/O errors of the cache.
    pub fn sync(
        &mut self,
        names: &[String],
        read: &(dyn Fn(&[String]) -> Result<Vec<ReadFile>> + Sync),
    ) -> Result<()> {
        let _lock = self.lock().map_err(|e| self.io(e))?;
        let present: HashSet<&str> = names.iter().map(String::as_str).collect();
        let mut m = self.read_manifest();
        m.tables.retain(|t| {
            let whole = t.covers.iter().all(|(n, _)| present.contains(n.as_str()))
                && File::open(self.dir.join(&t.file))
                    .and_then(|f| Table::counts(&f))
                    .is_ok_and(|c| c.records == t.records);
            if !whole {
                tracing::debug!("index table {} is stale or unreadable: dropped", t.file);
            }
            whole
        });
        let covered: HashSet<&str> = m
            .tables
            .iter()
            .flat_map(|t| t.covers.iter().map(|(n, _)| n.as_str()))
            .collect();
        let mut missing: Vec<String> = names
            .iter()
            .filter(|n| !covered.contains(n.as_str()))
            .cloned()
            .collect();
        missing.sort();
        let mut batch: Vec<ReadFile> = Vec::new();
        let mut in_batch = 0;
        for group in missing.chunks(4) {
            for f in read(group)? {
                in_batch += f.1.as_ref().map_or(0, records_of);
                batch.push(f);
            }
            if in_batch >= BATCH_RECORDS {
                m.tables.push(self.write_files(std::mem::take(&mut batch))?);
                in_batch = 0;
            }
        }
        if !batch.is_empty() {
            m.tables.push(self.write_files(batch)?);
        }
        self.merge_down(&mut m)?;
        self.commit(m)
    }

    /// Adds a table for one index file just written (a backup's, named `name`).
    ///
    /// # Errors
    /// I/O errors of the cache.
    pub fn add(&mut self, name: String, file: IndexFile) -> Result<()> {
        let _lock = self.lock().map_err(|e| self.io(e))?;
        let mut m = self.read_manifest();
        m.tables
            .push(self.write_files(vec![(name, Ok(file), FileNote::default())])?);
        self.merge_down(&mut m)?;
        self.commit(m)
    }

    /// Drops every table (the next sync builds them again).
    ///
    /// # Errors
    /// I/O errors of the cache.
    pub fn clear(&mut self) -> Result<()> {
        let _lock = self.lock().map_err(|e| self.io(e))?;
        self.commit(Manifest::default())
    }

    /// Writes one table from index files read.
    fn write_files(&self, files: Vec<ReadFile>) -> Result<Meta> {
        let mut packs: Vec<(PackId, u64)> = Vec::new();
        let total = files
            .iter()
            .map(|f| f.1.as_ref().map_or(0, records_of))
            .sum();
        let mut records: Vec<(u32, PackEntry)> = Vec::with_capacity(total);
        let mut covers = Vec::with_capacity(files.len());
        let mut seen: HashMap<PackId, u32> = HashMap::new();
        for (name, r, mut note) in files {
            match r {
                Ok(f) => {
                    for p in f.packs {
                        let n = *seen.entry(p.id).or_insert_with(|| {
                            packs.push((p.id, p.size));
                            (packs.len() - 1) as u32
                        });
                        records.extend(p.blobs.into_iter().map(|e| (n, e)));
                    }
                }
                Err(why) => note.damaged = Some(why),
            }
            covers.push((name, note));
        }
        records.sort_unstable_by_key(|a| (a.1.id, a.0));
        records.dedup_by(|a, b| a.1.id == b.1.id && a.0 == b.0);
        let (file, name) = self.new_table_file()?;
        let mut w = TableWriter::new(file, records.len() as u64);
        for (p, e) in &records {
            w.push(*p, e).map_err(|e| self.io(e))?;
        }
        w.finish(&packs).map_err(|e| self.io(e))?;
        Ok(Meta {
            file: name,
            records: records.len() as u64,
            covers,
        })
    }

    fn new_table_file(&self) -> Result<(File, String)> {
        let name = format!("{}.tbl", hex::encode(rand::random::<[u8; 12]>()));
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.dir.join(&name))
            .map_err(|e| self.io(e))?;
        Ok((f, name))
    }

    /// Merges the smallest tables into one while there are more than [`MAX_TABLES`].
    fn merge_down(&self, m: &mut Manifest) -> Result<()> {
        if m.tables.len() <= MAX_TABLES {
            return Ok(());
        }
        let mut order: Vec<usize> = (0..m.tables.len()).collect();
        order.sort_by_key(|&i| m.tables[i].records);
        let take: HashSet<usize> = order[..m.tables.len() - MAX_TABLES / 2 + 1]
            .iter()
            .copied()
            .collect();
        let mut chosen = Vec::new();
        let mut kept = Vec::new();
        for (i, t) in std::mem::take(&mut m.tables).into_iter().enumerate() {
            if take.contains(&i) {
                chosen.push(t);
            } else {
                kept.push(t);
            }
        }
        let merged = self.merge(&chosen)?;
        // The merged table takes the place of the newest it replaces.
        kept.push(merged);
        m.tables = kept;
        Ok(())
    }

    /// Writes one table holding every record of `metas` (newest last), a blob's records in
    /// newest-first order, each (blob, pack) once.
    fn merge(&self, metas: &[Meta]) -> Result<Meta> {
        let tables: Vec<Table> = metas
            .iter()
            .map(|t| {
                File::open(self.dir.join(&t.file))
                    .and_then(Table::open)
                    .map_err(|e| self.io(e))
            })
            .collect::<Result<_>>()?;
        let mut packs: Vec<(PackId, u64)> = Vec::new();
        let mut seen: HashMap<PackId, u32> = HashMap::new();
        let renumber: Vec<Vec<u32>> = tables
            .iter()
            .map(|t| {
                t.packs()
                    .iter()
                    .map(|(id, size)| {
                        *seen.entry(*id).or_insert_with(|| {
                            packs.push((*id, *size));
                            (packs.len() - 1) as u32
                        })
                    })
                    .collect()
            })
            .collect();
        let damaged =
            |i: usize, d: Damage| Error::damaged(format!("index table {}", metas[i].file), d.0);
        let mut iters: Vec<_> = tables.iter().map(|t| t.records()).collect();
        // Newest first among equal ids: the heap orders by id, then by age (newest = highest i).
        let mut heap = BinaryHeap::new();
        for (i, it) in iters.iter_mut().enumerate() {
            if let Some(r) = it.next() {
                let r = r.map_err(|d| damaged(i, d))?;
                heap.push(Head(std::cmp::Reverse(r.entry.id), i, i, r));
            }
        }
        let (file, name) = self.new_table_file()?;
        let mut w = TableWriter::new(file, tables.iter().map(Table::len).sum());
        let mut count = 0u64;
        let mut last: Option<(crate::format::id::BlobId, Vec<u32>)> = None;
        while let Some(Head(_, _, i, r)) = heap.pop() {
            let pack = renumber[i][r.pack as usize];
            let dup = match &mut last {
                Some((id, ps)) if *id == r.entry.id => {
                    let d = ps.contains(&pack);
                    ps.push(pack);
                    d
                }
                _ => {
                    last = Some((r.entry.id, vec![pack]));
                    false
                }
            };
            if !dup {
                w.push(pack, &r.entry).map_err(|e| self.io(e))?;
                count += 1;
            }
            if let Some(n) = iters[i].next() {
                let n = n.map_err(|d| damaged(i, d))?;
                heap.push(Head(std::cmp::Reverse(n.entry.id), i, i, n));
            }
        }
        w.finish(&packs).map_err(|e| self.io(e))?;
        Ok(Meta {
            file: name,
            records: count,
            covers: metas.iter().flat_map(|t| t.covers.clone()).collect(),
        })
    }
}

impl Store {
    /// Whether a table holds `entry` in `pack` exactly.
    pub fn holds(&self, pack: &PackId, entry: &PackEntry) -> bool {
        self.tables.iter().any(|(t, _)| {
            let packs = t.packs();
            matches!(
                t.find(&entry.id, |r| packs[r.pack as usize].0 == *pack
                    && r.entry == *entry),
                Ok(Some(_))
            )
        })
    }

    /// Calls `f` with every record of every table in blob id order, a blob's records newest
    /// table first (the order lookups try them in), with the table's index and the record's
    /// position in it.
    ///
    /// # Errors
    /// A damaged table.
    pub fn each_record(&self, mut f: impl FnMut(PackId, PackEntry, (usize, u64))) -> Result<()> {
        let damaged = |i: usize, d: Damage| {
            Error::damaged(
                format!(
                    "index table {}/{}",
                    self.dir.display(),
                    self.tables[i].1.file
                ),
                format!("{}; run `bakfs check`, which builds it again", d.0),
            )
        };
        let mut iters: Vec<_> = self.tables.iter().map(|(t, _)| t.records()).collect();
        let mut heap = BinaryHeap::new();
        // Newest first among equal ids: tables are newest first here, so the lowest i wins.
        let rank = |i: usize| usize::MAX - i;
        for (i, it) in iters.iter_mut().enumerate() {
            if let Some(r) = it.next() {
                let r = r.map_err(|d| damaged(i, d))?;
                heap.push(Head(std::cmp::Reverse(r.entry.id), rank(i), i, r));
            }
        }
        let mut pos = vec![0u64; self.tables.len()];
        while let Some(Head(_, _, i, r)) = heap.pop() {
            f(
                self.tables[i].0.packs()[r.pack as usize].0,
                r.entry,
                (i, pos[i]),
            );
            pos[i] += 1;
            if let Some(n) = iters[i].next() {
                let n = n.map_err(|d| damaged(i, d))?;
                heap.push(Head(std::cmp::Reverse(n.entry.id), rank(i), i, n));
            }
        }
        Ok(())
    }
}

/// A merge's next record: blob id, rank among equal ids (highest first), table, record.
struct Head(
    std::cmp::Reverse<crate::format::id::BlobId>,
    usize,
    usize,
    Record,
);

impl PartialEq for Head {
    fn eq(&self, o: &Self) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Head {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(o.0, o.1))
    }
}

fn records_of(f: &IndexFile) -> usize {
    f.packs.iter().map(|p| p.blobs.len()).sum()
}
