//! Decodes the committed format-v1 fixture (`tests/fixtures/repo-v1`, see its README) with this
//! module's decoders, field by field, and compares everything decoded with
//! `expected/decoded.txt`, written when the fixture was made. A reordered or retyped field of
//! `Node`, `PackEntry` or `IndexPack`, a reordered enum, a renamed field of `Snapshot`,
//! `Config` or `WrappedKey`, or a changed associated-data string or key-derivation context
//! fails here, though every round-trip test still passes.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::chunker::ChunkerParams;
use super::crypto::{CryptoError, WrappedKey};
use super::id::{BlobId, IndexId, KeyId, PackId, SnapshotId};
use super::*;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/repo-v1")
}

fn read(rel: &str) -> Vec<u8> {
    let p = fixture().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Names in a directory of the fixture repository, sorted.
fn names(dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixture().join("repo").join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn password() -> Vec<u8> {
    let p = read("password");
    p.split(|&b| b == b'\n').next().unwrap().to_vec()
}

/// Bytes as in the fixture's listings: printable ASCII as is, `\\`, `\"`, `\n`, other bytes as
/// `\xHH`, runs of 8 or more zero bytes as `\0{N}`.
fn esc(b: &[u8]) -> String {
    let mut out = String::from("\"");
    let mut i = 0;
    while i < b.len() {
        let zeros = b[i..].iter().take_while(|&&c| c == 0).count();
        if zeros >= 8 {
            write!(out, "\\0{{{zeros}}}").unwrap();
            i += zeros;
            continue;
        }
        match b[i] {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            c @ 0x20..=0x7e => out.push(c as char),
            c => write!(out, "\\x{c:02x}").unwrap(),
        }
        i += 1;
    }
    out.push('"');
    out
}

/// The JSON value of `plain` is exactly the JSON value of what it decodes to: no field renamed,
/// added or dropped, none ignored.
fn assert_json_fields<T: Serialize>(what: &str, plain: &[u8], decoded: &T) {
    let file: serde_json::Value = serde_json::from_slice(plain).unwrap();
    let back = serde_json::to_value(decoded).unwrap();
    assert_eq!(
        file, back,
        "{what}: the fields of the struct no longer match the file"
    );
}

fn pack_entry_line(e: &PackEntry) -> String {
    let PackEntry {
        id,
        kind,
        offset,
        length,
        raw_len,
        compressed,
    } = e;
    format!(
        "blob {id} kind={kind:?} offset={offset} length={length} raw_len={raw_len} compressed={compressed}"
    )
}

fn node_line(n: &Node) -> String {
    let Node {
        name,
        kind,
        mode,
        uid,
        gid,
        user,
        group,
        size,
        mtime_ns,
        ctime_ns,
        inode,
        dev,
        nlink,
        rdev,
        target,
        xattrs,
        content,
        subtree,
    } = n;
    let xattrs: Vec<String> = xattrs
        .iter()
        .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
        .collect();
    let content: Vec<String> = content.iter().map(|c| c.to_hex()).collect();
    format!(
        "node name={} kind={kind:?} mode={mode:o} uid={uid} gid={gid} user={user:?} group={group:?} \
         size={size} mtime_ns={mtime_ns} ctime_ns={ctime_ns} inode={inode} dev={dev} nlink={nlink} \
         rdev={rdev} target={} xattrs=[{}] content=[{}] subtree={}",
        esc(name),
        target.as_deref().map(esc).unwrap_or_else(|| "None".into()),
        xattrs.join(" "),
        content.join(" "),
        subtree.map(|s| s.to_hex()).unwrap_or_else(|| "None".into()),
    )
}

fn snapshot_lines(s: &Snapshot) -> String {
    let Snapshot {
        time_ns,
        host,
        user,
        paths,
        tags,
        tree,
        parent,
        job,
        excludes,
        summary,
    } = s;
    let Summary {
        files,
        dirs,
        bytes,
        bytes_read,
        bytes_added,
        bytes_stored,
        errors,
        incomplete,
        duration_s,
    } = summary;
    format!(
        "  time_ns={time_ns} host={host:?} user={user:?} paths={paths:?} tags={tags:?} job={job:?} \
         excludes={excludes:?}\n  tree={tree} parent={}\n  summary files={files} dirs={dirs} \
         bytes={bytes} bytes_read={bytes_read} bytes_added={bytes_added} \
         bytes_stored={bytes_stored} errors={errors} incomplete={incomplete} duration_s={duration_s}\n",
        parent.map(|p| p.to_hex()).unwrap_or_else(|| "None".into()),
    )
}

/// Everything the fixture holds, decoded; asserts what must hold on the way.
fn decode_all() -> String {
    let mut out = String::new();

    // config (plaintext JSON)
    let raw = read("repo/config");
    let c: Config = serde_json::from_slice(&raw).unwrap();
    assert_json_fields("config", &raw, &c);
    let Config {
        version,
        id,
        chunker,
        zstd_level,
    } = &c;
    let ChunkerParams { min, avg, max } = chunker;
    writeln!(
        out,
        "config version={version} id={id} chunker={min}/{avg}/{max} zstd_level={zstd_level}"
    )
    .unwrap();

    // the key wrapping, opened with the committed password
    let key_names = names("keys");
    assert_eq!(key_names.len(), 1);
    let raw = read(&format!("repo/keys/{}", key_names[0]));
    let w: WrappedKey = serde_json::from_slice(&raw).unwrap();
    assert_json_fields("key", &raw, &w);
    KeyId::from_hex(&key_names[0]).unwrap();
    let WrappedKey {
        version,
        created,
        comment,
        kdf,
        wrapped,
    } = &w;
    writeln!(
        out,
        "key {} version={version} created={created} comment={comment:?} kdf m_kib={} t={} p={} \
         salt={} wrapped_len={}",
        key_names[0],
        kdf.m_kib,
        kdf.t,
        kdf.p,
        kdf.salt,
        wrapped.len()
    )
    .unwrap();
    assert!(matches!(
        w.unwrap_key(b"not the password"),
        Err(CryptoError::WrongPassword)
    ));
    let keys = w.unwrap_key(&password()).unwrap().derive();

    // index files: name = blake3 of the bytes; postcard re-encodes to the same plaintext
    let mut all_blobs: Vec<(PackId, PackEntry)> = vec![];
    let mut pack_sizes = vec![];
    for n in names("index") {
        let raw = read(&format!("repo/index/{n}"));
        assert_eq!(IndexId::hash_of(&raw).to_hex(), n, "index {n}: name");
        let idx = open_index(&keys, &n, &raw).unwrap();
        let plain = zstd::stream::decode_all(&keys.open(&raw, INDEX_AD).unwrap()[..]).unwrap();
        assert_eq!(postcard::to_stdvec(&idx).unwrap(), plain, "index {n}");
        writeln!(out, "index {n}").unwrap();
        let IndexFile { packs } = idx;
        for p in packs {
            let IndexPack { id, size, blobs } = p;
            writeln!(out, "  pack {id} size={size}").unwrap();
            for e in blobs {
                writeln!(out, "    {}", pack_entry_line(&e)).unwrap();
                all_blobs.push((id, e));
            }
            pack_sizes.push((id, size));
        }
    }

    // packs: name = blake3; size as indexed; the header lists what the index lists
    let mut pack_files = BTreeSet::new();
    for d in names("data") {
        for n in names(&format!("data/{d}")) {
            assert_eq!(&n[..2], d);
            pack_files.insert(n);
        }
    }
    let indexed: BTreeSet<String> = pack_sizes.iter().map(|(p, _)| p.to_hex()).collect();
    assert_eq!(pack_files, indexed, "packs on disk and in the index");
    for (id, size) in &pack_sizes {
        let hex = id.to_hex();
        let bytes = read(&format!("repo/data/{}/{hex}", &hex[..2]));
        assert_eq!(PackId::hash_of(&bytes), *id, "pack {id}: name");
        assert_eq!(bytes.len() as u64, *size, "pack {id}: size");
        let header = read_pack_header(&keys, id, &bytes).unwrap();
        let from_index: Vec<PackEntry> = all_blobs
            .iter()
            .filter(|(p, _)| p == id)
            .map(|(_, e)| *e)
            .collect();
        assert_eq!(header, from_index, "pack {id}: header and index differ");
        let h = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap()) as usize;
        let sealed = &bytes[bytes.len() - 4 - h..bytes.len() - 4];
        let plain = keys.open(sealed, PACK_HEADER_AD).unwrap();
        assert_eq!(postcard::to_stdvec(&header).unwrap(), plain, "pack {id}");
    }
    let blob = |id: &BlobId, kind: BlobKind| -> Vec<u8> {
        let (p, e) = all_blobs
            .iter()
            .find(|(_, e)| e.id == *id)
            .unwrap_or_else(|| panic!("blob {id} not in the index"));
        assert_eq!(e.kind, kind, "blob {id}");
        let hex = p.to_hex();
        let bytes = read(&format!("repo/data/{}/{hex}", &hex[..2]));
        let mut sealed = bytes[e.offset as usize..(e.offset + e.length) as usize].to_vec();
        open_blob_into(&keys, e, &mut sealed, |n| Ok(vec![0; n])).unwrap()
    };

    // manifests, then every tree and data blob they reach
    let mut snaps = vec![];
    for n in names("snapshots") {
        let raw = read(&format!("repo/snapshots/{n}"));
        assert_eq!(SnapshotId::hash_of(&raw).to_hex(), n, "snapshot {n}: name");
        let s = open_snapshot(&keys, &n, &raw).unwrap();
        assert_json_fields(
            &format!("snapshot {n}"),
            &keys.open(&raw, SNAPSHOT_AD).unwrap(),
            &s,
        );
        snaps.push((n, s));
    }
    snaps.sort_by_key(|(_, s)| s.time_ns);
    let mut seen = BTreeSet::new();
    for (n, s) in &snaps {
        writeln!(out, "snapshot {n}").unwrap();
        out.push_str(&snapshot_lines(s));
        let mut stack = vec![s.tree];
        while let Some(t) = stack.pop() {
            if !seen.insert(t) {
                continue;
            }
            let plain = blob(&t, BlobKind::Tree);
            let tree = Tree::decode(&t, &plain).unwrap();
            assert_eq!(tree.encode(), plain, "tree {t}");
            writeln!(out, "tree {t}").unwrap();
            for node in &tree.nodes {
                writeln!(out, "  {}", node_line(node)).unwrap();
                for c in &node.content {
                    if seen.insert(*c) {
                        let data = blob(c, BlobKind::Data);
                        writeln!(out, "data {c} {}", esc(&data)).unwrap();
                    }
                }
            }
            // depth first, in name order
            stack.extend(tree.nodes.iter().rev().filter_map(|n| n.subtree));
        }
    }
    let indexed: BTreeSet<BlobId> = all_blobs.iter().map(|(_, e)| e.id).collect();
    assert_eq!(
        seen, indexed,
        "blobs reachable from the snapshots and blobs indexed"
    );
    out
}

#[test]
fn v1_fixture_decodes_field_by_field_as_when_made() {
    let actual = decode_all();
    let path = fixture().join("expected/decoded.txt");
    let want = String::from_utf8(read("expected/decoded.txt")).unwrap();
    if actual != want {
        let line = want
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| want.lines().count().min(actual.lines().count()));
        let dump = std::env::temp_dir().join("bakfs-format-v1-decoded.txt");
        std::fs::write(&dump, &actual).unwrap();
        panic!(
            "the format-v1 fixture decodes differently from {} (see its README); first \
             difference at line {}:\n  expected: {:?}\n  actual:   {:?}\nall of it: {}",
            path.display(),
            line + 1,
            want.lines().nth(line).unwrap_or("<end>"),
            actual.lines().nth(line).unwrap_or("<end>"),
            dump.display()
        );
    }
}
