//! The searched index against the in-memory map it replaced, on random operations; a merge
//! stopped half way; a damaged table found on use and by `check`.

use std::collections::{HashMap, HashSet};

use rand::{Rng, SeedableRng};

use super::store::{FileNote, ReadFile, Store, CRASH_BEFORE_MANIFEST, MAX_TABLES};
use crate::format::id::{BlobId, PackId};
use crate::format::{BlobKind, IndexFile, IndexPack, PackEntry};
use crate::repo::backend::{Backend, FileKind};
use crate::testing::mem_repo;

fn entry(id: BlobId, rng: &mut impl Rng) -> PackEntry {
    PackEntry {
        id,
        kind: if rng.gen_bool(0.1) {
            BlobKind::Tree
        } else {
            BlobKind::Data
        },
        offset: rng.gen(),
        length: rng.gen_range(1..1 << 26),
        raw_len: rng.gen(),
        compressed: rng.gen(),
    }
}

/// An index file of `packs` packs of up to 200 blobs, a fifth of them blobs listed before.
fn random_file(rng: &mut impl Rng, known: &[BlobId], packs: usize) -> IndexFile {
    IndexFile {
        packs: (0..packs)
            .map(|_| IndexPack {
                id: PackId(rng.gen()),
                size: rng.gen_range(1..1 << 24),
                blobs: (0..rng.gen_range(1..200))
                    .map(|_| {
                        let id = if !known.is_empty() && rng.gen_bool(0.2) {
                            known[rng.gen_range(0..known.len())]
                        } else {
                            BlobId(rng.gen())
                        };
                        (id, entry(id, rng))
                    })
                    .collect::<HashMap<_, _>>()
                    .into_values()
                    .collect(),
            })
            .collect(),
    }
}

/// What the old in-memory index held: every (pack, entry) of every index file present.
#[derive(Default)]
struct Model {
    files: HashMap<String, IndexFile>,
}

impl Model {
    /// Every blob's records.
    fn by_blob(&self) -> HashMap<BlobId, Vec<(PackId, PackEntry)>> {
        let mut m: HashMap<BlobId, Vec<(PackId, PackEntry)>> = HashMap::new();
        for p in self.files.values().flat_map(|f| &f.packs) {
            for e in &p.blobs {
                m.entry(e.id).or_default().push((p.id, *e));
            }
        }
        m
    }
}

#[test]
fn lookups_match_the_in_memory_index_over_random_operations() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let (mem, repo) = mem_repo();
    let mut model = Model::default();
    let mut known: Vec<BlobId> = Vec::new();
    let mut excluded: HashSet<PackId> = HashSet::new();
    for round in 0..60 {
        match rng.gen_range(0..10) {
            // A backup's index file, added by this process or found by the next load.
            0..=5 => {
                let packs = rng.gen_range(1..4);
                let f = random_file(&mut rng, &known, packs);
                known.extend(f.packs.iter().flat_map(|p| p.blobs.iter().map(|e| e.id)));
                let id = repo.write_index(&f).unwrap();
                if rng.gen_bool(0.5) {
                    repo.index_added(id.to_hex(), f.clone()).unwrap();
                } else {
                    repo.load_index().unwrap();
                    excluded.clear();
                }
                model.files.insert(id.to_hex(), f);
            }
            // Index files removed, as a prune replaces them.
            6 => {
                let names: Vec<String> = model.files.keys().cloned().collect();
                for n in names.iter().filter(|_| rng.gen_bool(0.3)) {
                    mem.remove(FileKind::Index, n).unwrap();
                    model.files.remove(n);
                }
                repo.load_index().unwrap();
                excluded.clear();
            }
            // Packs passed over, as prune does with those it repacks.
            7 => {
                let packs: HashSet<PackId> = model
                    .files
                    .values()
                    .flat_map(|f| &f.packs)
                    .map(|p| p.id)
                    .filter(|_| rng.gen_bool(0.2))
                    .collect();
                repo.drop_packs_from_index(&packs);
                excluded.extend(packs);
            }
            // Built again from the files.
            _ => {
                repo.reload_index_from_files().unwrap();
                excluded.clear();
            }
        }
        let tables = repo.index_state().store.as_ref().unwrap().tables.len();
        assert!(tables <= MAX_TABLES, "round {round}: {tables} tables");
        let by_blob = model.by_blob();
        let records = |id: &BlobId| by_blob.get(id).cloned().unwrap_or_default();
        let mut probe: Vec<BlobId> = (0..400)
            .filter_map(|_| known.get(rng.gen_range(0..known.len().max(1))).copied())
            .collect();
        probe.extend((0..50).map(|_| BlobId(rng.gen())));
        for id in &probe {
            let usable: Vec<(PackId, PackEntry)> = records(id)
                .into_iter()
                .filter(|(p, _)| !excluded.contains(p))
                .collect();
            match repo.locate(id) {
                None => assert!(usable.is_empty(), "round {round}: {id} not found"),
                Some(l) => assert!(
                    usable.contains(&(l.pack, l.entry)),
                    "round {round}: {id} at a location no index file gives"
                ),
            }
        }
        let mut seen = HashSet::new();
        let mut listed = Vec::new();
        repo.each_blob(|l| {
            assert!(seen.insert(l.entry.id), "listed twice");
            if rng.gen_bool(0.05) {
                listed.push(l);
            }
        })
        .unwrap();
        for l in listed {
            let found = repo.locate(&l.entry.id).unwrap();
            assert_eq!((found.pack, found.entry), (l.pack, l.entry));
        }
        let expected: HashSet<BlobId> = known
            .iter()
            .filter(|id| records(id).iter().any(|(p, _)| !excluded.contains(p)))
            .copied()
            .collect();
        assert_eq!(seen, expected, "round {round}");
        // Marks: a random share of the blobs marked in use, then read back with every blob.
        let mut marks = repo.index_marks();
        let mut marked = HashSet::new();
        for id in known.iter().filter(|_| rng.gen_bool(0.3)) {
            if repo.mark_used(&mut marks, id) {
                marked.insert(*id);
            }
        }
        let mut seen_marked = HashSet::new();
        repo.each_blob_marked(&marks, |l, m| {
            if m {
                seen_marked.insert(l.entry.id);
            }
        })
        .unwrap();
        assert_eq!(seen_marked, marked, "round {round}: marks");
        let sizes: HashMap<PackId, u64> = model
            .files
            .values()
            .flat_map(|f| &f.packs)
            .map(|p| (p.id, p.size))
            .collect();
        assert_eq!(repo.indexed_packs(), sizes, "round {round}");
    }
}

fn read_from(
    files: &HashMap<String, IndexFile>,
) -> impl Fn(&[String]) -> crate::Result<Vec<ReadFile>> + Sync + '_ {
    move |names| {
        Ok(names
            .iter()
            .map(|n| (n.clone(), Ok(files[n].clone()), FileNote::default()))
            .collect())
    }
}

#[test]
fn a_merge_stopped_half_way_leaves_the_old_tables_and_no_stray_file() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let dir = tempfile::tempdir().unwrap();
    let mut files = HashMap::new();
    let mut store = Store::open(dir.path().join("t"), false).unwrap();
    // One table per file, up to the most there may be.
    for i in 0..MAX_TABLES {
        let f = random_file(&mut rng, &[], 2);
        files.insert(format!("{i:064x}"), f.clone());
        store.add(format!("{i:064x}"), f).unwrap();
    }
    assert_eq!(store.tables.len(), MAX_TABLES);
    let listing = |d: &std::path::Path| -> HashSet<String> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let before = listing(store.dir());
    // The next file makes a merge; the process "dies" after writing the merged table, before
    // the manifest names it.
    let f = random_file(&mut rng, &[], 2);
    files.insert(format!("{:064x}", 99), f.clone());
    CRASH_BEFORE_MANIFEST.with(|c| c.set(true));
    assert!(store.add(format!("{:064x}", 99), f).is_err());
    drop(store);
    let after = listing(&dir.path().join("t"));
    assert!(after.len() > before.len(), "the merge wrote nothing");
    // A table half written by a process that died.
    std::fs::write(dir.path().join("t/0123.tbl"), b"half a table").unwrap();
    // The next process finds the old set whole, builds what it lacks, and sweeps the rest.
    let mut store = Store::open(dir.path().join("t"), false).unwrap();
    let names: Vec<String> = files.keys().cloned().collect();
    store.sync(&names, &read_from(&files)).unwrap();
    assert!(store.tables.len() <= MAX_TABLES);
    let left = listing(store.dir());
    let tables: HashSet<String> = store.tables.iter().map(|(_, m)| m.file.clone()).collect();
    for n in &left {
        assert!(
            tables.contains(n) || ["lock", "tables.json"].contains(&n.as_str()),
            "stray file {n}"
        );
    }
    for f in files.values() {
        for p in &f.packs {
            for e in &p.blobs {
                assert!(store.holds(&p.id, e));
            }
        }
    }
}

#[test]
fn a_damaged_table_is_found_on_use_and_by_check_which_builds_it_again() {
    let (_d, src) =
        crate::testing::source(&[("a", &crate::testing::noise(300_000, 1)), ("b", b"bee")]);
    let (_mem, repo) = mem_repo();
    let snap = crate::testing::backup_dir(&repo, &src, None);
    assert!(crate::check::check(&repo, None).unwrap().ok());
    let table = {
        let st = repo.index_state();
        let store = st.store.as_ref().unwrap();
        store.dir().join(&store.tables[0].1.file)
    };
    // Every record's pack number turned: each run no longer matches its fence.
    let mut bytes = std::fs::read(&table).unwrap();
    for r in bytes.chunks_exact_mut(48).take(3) {
        r[33] ^= 0x40;
    }
    std::fs::write(&table, &bytes).unwrap();
    // As the next process finds it: a table open here keeps the runs it checked as checked.
    repo.index_state_mut()
        .store
        .as_mut()
        .unwrap()
        .tables
        .clear();
    repo.load_index().unwrap();
    assert!(
        repo.locate(&snap.snapshot.tree).is_none(),
        "a damaged run was used"
    );
    let rep = crate::check::check(&repo, None).unwrap();
    assert!(
        rep.errors.iter().any(|e| e.contains("index table")),
        "{:?}",
        rep.errors
    );
    let again = crate::check::check(&repo, None).unwrap();
    assert!(again.ok(), "{:?}", again.errors);
    assert!(repo.locate(&snap.snapshot.tree).is_some());
}
