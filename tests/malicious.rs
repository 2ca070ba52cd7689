//! Malicious repositories and restore targets: snapshots crafted through the library (unsafe
//! names, duplicates, symlink tricks, fake hard links) and targets holding symlinks that point
//! outside. Restore and dump must never write outside the target, must refuse (naming) what is
//! unsafe, and must still restore the safe entries beside it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use bakfs_core::format::id::BlobId;
use bakfs_core::format::{BlobKind, Node, NodeKind, Snapshot, Summary, Tree};
use bakfs_core::repo::Repository;
use bakfs_e2e::{both, sh, text, Env};

fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The message restore gives for a refused name.
fn refusal(name: &[u8]) -> String {
    format!("refusing entry name {:?}", String::from_utf8_lossy(name))
}

/// Builds crafted trees and snapshots in a repository made by `bakfs init`.
struct Crafter {
    repo: Repository,
    /// A real file node (from a real backup), used as the template of every crafted node, so
    /// that owner and other fields are sane.
    template: Node,
    seq: std::cell::Cell<i64>,
}

impl Crafter {
    fn new(e: &Env) -> Self {
        let src = e.path("template-src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("t"), "template").unwrap();
        e.ok(&["backup", src.to_str().unwrap()]);
        let repo = Repository::open(
            std::sync::Arc::new(bakfs_core::repo::backend::LocalBackend::new(&e.repo)),
            b"correct horse",
        )
        .unwrap();
        let (_, snap) = repo.find_snapshot("latest").unwrap();
        let template =
            bakfs_core::restore::find_node(&repo, &snap.tree, src.join("t").to_str().unwrap())
                .unwrap()
                .unwrap();
        assert_eq!(template.kind, NodeKind::File);
        Self {
            repo,
            template,
            seq: std::cell::Cell::new(0),
        }
    }

    fn node(&self, name: &[u8], kind: NodeKind, mode: u32) -> Node {
        let mut n = self.template.clone();
        n.name = name.to_vec();
        n.kind = kind;
        n.mode = mode;
        n.size = 0;
        n.mtime_ns = 1_500_000_000_123_456_789;
        n.inode = 0;
        n.dev = 0;
        n.nlink = 1;
        n.rdev = 0;
        n.target = None;
        n.xattrs = vec![];
        n.content = vec![];
        n.subtree = None;
        n
    }

    fn file(&self, name: &[u8], data: &[u8]) -> Node {
        let mut n = self.node(name, NodeKind::File, 0o644);
        n.content = if data.is_empty() {
            vec![]
        } else {
            vec![self.repo.save_blob(BlobKind::Data, data).unwrap().0]
        };
        n.size = data.len() as u64;
        n
    }

    /// A file node claiming to be one of `nlink` links of inode (dev 4242, `inode`).
    fn linked_file(&self, name: &[u8], data: &[u8], inode: u64, nlink: u64) -> Node {
        let mut n = self.file(name, data);
        n.dev = 4242;
        n.inode = inode;
        n.nlink = nlink;
        n
    }

    fn symlink(&self, name: &[u8], target: &[u8]) -> Node {
        let mut n = self.node(name, NodeKind::Symlink, 0o777);
        n.target = Some(target.to_vec());
        n.size = target.len() as u64;
        n
    }

    /// A directory with these children, in exactly this order (no sorting, no deduplication).
    fn dir(&self, name: &[u8], children: Vec<Node>) -> Node {
        let mut n = self.node(name, NodeKind::Dir, 0o755);
        n.subtree = Some(self.tree(children));
        n
    }

    fn tree(&self, nodes: Vec<Node>) -> BlobId {
        self.repo
            .save_blob(BlobKind::Tree, &Tree { nodes }.encode())
            .unwrap()
            .0
    }

    /// A snapshot whose root tree holds `nodes` (in this order). Returns its id.
    fn snapshot(&self, nodes: Vec<Node>) -> String {
        let tree = self.tree(nodes);
        self.repo.flush().unwrap();
        self.seq.set(self.seq.get() + 1);
        let s = Snapshot {
            time_ns: bakfs_core::timefmt::now_ns() + self.seq.get(),
            host: "crafted".into(),
            user: "mallory".into(),
            paths: vec!["/crafted".into()],
            tags: vec![],
            tree,
            parent: None,
            job: None,
            excludes: vec![],
            summary: Summary::default(),
        };
        self.repo.save_snapshot(&s).unwrap().to_hex()
    }
}

/// Sorted by name (stable: entries with equal names keep their order).
fn sorted(mut v: Vec<Node>) -> Vec<Node> {
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// A place to restore into: `base/target`, with an empty sentinel directory `base/sentinel`
/// beside it, and an "outside" directory in /tmp that symlinks point to.
struct Scene {
    base: PathBuf,
    target: PathBuf,
    sentinel: PathBuf,
    outside: tempfile::TempDir,
    /// What the outside directory holds before the restore: name -> (bytes, mode, mtime, uid).
    outside_before: Vec<(String, Vec<u8>, u32, i64, u32)>,
}

impl Scene {
    fn new(e: &Env, name: &str) -> Self {
        let base = e.path(name);
        let target = base.join("target");
        let sentinel = base.join("sentinel");
        fs::create_dir_all(&target).unwrap();
        fs::create_dir_all(&sentinel).unwrap();
        let outside = tempfile::Builder::new()
            .prefix("outside-")
            .tempdir_in("/tmp")
            .unwrap();
        Self {
            base,
            target,
            sentinel,
            outside,
            outside_before: vec![],
        }
    }

    fn outside(&self) -> &Path {
        self.outside.path()
    }

    fn outside_bytes(&self) -> Vec<u8> {
        self.outside().as_os_str().as_bytes().to_vec()
    }

    /// Puts a victim file outside (and remembers it).
    fn victim(&mut self, name: &str, content: &str) -> PathBuf {
        let p = self.outside().join(name);
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        sh(&format!("touch -d '2001-01-01 00:00:00' {}", p.display()));
        self.snapshot_outside();
        p
    }

    fn snapshot_outside(&mut self) {
        self.outside_before = Self::describe(self.outside());
    }

    fn describe(dir: &Path) -> Vec<(String, Vec<u8>, u32, i64, u32)> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|d| {
                let p = d.unwrap().path();
                let m = fs::symlink_metadata(&p).unwrap();
                let bytes = if m.is_file() {
                    fs::read(&p).unwrap()
                } else {
                    vec![]
                };
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    bytes,
                    m.mode(),
                    m.mtime(),
                    m.uid(),
                )
            })
            .collect();
        v.sort();
        v
    }

    fn restore(&self, e: &Env, snap: &str) -> Output {
        e.run(&["restore", snap, "--target", self.target.to_str().unwrap()])
    }

    /// Nothing outside the target changed: the base holds only target and the empty sentinel,
    /// and the outside directory is as it was (no new entries, same bytes, modes, times, owners,
    /// and no extended attributes added).
    fn assert_contained(&self, ctx: &str) {
        let names: BTreeSet<String> = fs::read_dir(&self.base)
            .unwrap()
            .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            BTreeSet::from(["sentinel".to_string(), "target".to_string()]),
            "{ctx}: something was written beside the target"
        );
        assert_eq!(
            fs::read_dir(&self.sentinel).unwrap().count(),
            0,
            "{ctx}: something was written into the sentinel directory"
        );
        assert_eq!(
            Self::describe(self.outside()),
            self.outside_before,
            "{ctx}: the outside directory changed"
        );
        let x = sh(&format!(
            "getfattr -d -m - --absolute-names -R {} 2>/dev/null || true",
            self.outside().display()
        ));
        assert!(
            !x.contains("evil"),
            "{ctx}: extended attributes were set outside: {x}"
        );
    }

    /// Every file below the target, relative, with its kind: "f", "d", "l".
    fn listing(&self) -> BTreeSet<String> {
        sh(&format!(
            "cd {} && find . -mindepth 1 -printf '%y %P\\n'",
            self.target.display()
        ))
        .lines()
        .map(String::from)
        .collect()
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn unsafe_names_are_refused_and_siblings_restored() {
    let e = Env::init();
    let c = Crafter::new(&e);
    let sc = Scene::new(&e, "names");
    let abs = [sc.outside_bytes(), b"/pwned-abs".to_vec()].concat();
    let unsafe_names: Vec<Vec<u8>> = vec![
        b"..".to_vec(),
        b".".to_vec(),
        b"a/b".to_vec(),
        abs.clone(),
        b"".to_vec(),
        b"evil\0name".to_vec(),
        b"../escaped".to_vec(),
    ];
    let mut root = vec![
        c.file(b"safe.txt", b"safe\n"),
        c.dir(b"a", vec![c.file(b"ok", b"ok in a\n")]),
        // the same attacks one level down
        c.dir(
            b"sub",
            sorted(vec![
                c.file(b"inner.txt", b"inner\n"),
                c.dir(b"..", vec![c.file(b"escaped-from-sub", b"x")]),
                c.file(b"x/y", b"x"),
            ]),
        ),
    ];
    for n in &unsafe_names {
        root.push(match n.as_slice() {
            b".." | b"." => c.dir(
                n,
                vec![
                    c.file(b"escaped", b"escaped\n"),
                    c.file(b"dotted", b"dotted\n"),
                ],
            ),
            _ => c.file(n, b"pwned\n"),
        });
    }
    let snap = c.snapshot(sorted(root));
    let o = sc.restore(&e, &snap);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let err = text(&o.stderr);
    for n in unsafe_names.iter().chain([b"x/y".to_vec()].iter()) {
        assert!(
            err.contains(&refusal(n)),
            "no refusal naming {:?}: {}",
            text(n),
            both(&o)
        );
    }
    assert_eq!(
        sc.listing(),
        set(&["f safe.txt", "d a", "f a/ok", "d sub", "f sub/inner.txt"]),
        "{}",
        both(&o)
    );
    assert_eq!(
        fs::read(sc.target.join("sub/inner.txt")).unwrap(),
        b"inner\n"
    );
    assert_eq!(fs::read(sc.target.join("a/ok")).unwrap(), b"ok in a\n");
    sc.assert_contained("restore of unsafe names");

    // Sub-paths resolving through crafted ".." directories stay inside the target.
    for sub in ["/..", "/sub/..", "/../escaped"] {
        let o = e.run(&[
            "restore",
            &format!("{snap}:{sub}"),
            "--target",
            sc.target.to_str().unwrap(),
        ]);
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "restore {sub}: {}",
            both(&o)
        );
        sc.assert_contained(&format!("restore of {sub}"));
    }
    // A sub-path naming a crafted file ".." is refused: it would be written at target/.. .
    let sc2 = Scene::new(&e, "names-subpath");
    let snap2 = c.snapshot(vec![
        c.file(b"..", b"pwned\n"),
        c.dir(b"d", vec![c.file(b"..", b"pwned\n")]),
    ]);
    for sub in ["/..", "/d/.."] {
        let o = e.run(&[
            "restore",
            &format!("{snap2}:{sub}"),
            "--target",
            sc2.target.to_str().unwrap(),
        ]);
        assert!(!o.status.success(), "restore {sub}: {}", both(&o));
        assert!(
            text(&o.stderr).contains(".."),
            "restore {sub}: {}",
            both(&o)
        );
        sc2.assert_contained(&format!("restore of file {sub}"));
        assert_eq!(fs::read_dir(&sc2.target).unwrap().count(), 0);
    }
}

#[test]
fn duplicate_names_with_a_symlink_write_nothing_outside() {
    let e = Env::init();
    let c = Crafter::new(&e);
    // (what comes first, what comes second) under the same name
    type MakeNodes<'a> = Box<dyn Fn(&[u8]) -> Vec<Node> + 'a>;
    let cases: Vec<(&str, MakeNodes)> = vec![
        (
            "symlink then directory",
            Box::new(|out: &[u8]| {
                vec![
                    c.symlink(b"link", out),
                    c.dir(b"link", vec![c.file(b"pwned", b"pwned\n")]),
                ]
            }),
        ),
        (
            "directory then symlink",
            Box::new(|out: &[u8]| {
                vec![
                    c.dir(b"link", vec![c.file(b"pwned", b"pwned\n")]),
                    c.symlink(b"link", out),
                ]
            }),
        ),
        (
            "symlink then file",
            Box::new(|out: &[u8]| {
                vec![
                    c.symlink(b"link", &[out, b"/pwned"].concat()),
                    c.file(b"link", b"pwned\n"),
                ]
            }),
        ),
        (
            "directory with a symlink, then directory with a directory of that name",
            Box::new(|out: &[u8]| {
                vec![
                    c.dir(b"link", vec![c.symlink(b"x", out)]),
                    c.dir(
                        b"link",
                        vec![c.dir(b"x", vec![c.file(b"pwned", b"pwned\n")])],
                    ),
                ]
            }),
        ),
        // not adjacent: the tree is not sorted
        (
            "symlink, other, directory",
            Box::new(|out: &[u8]| {
                vec![
                    c.symlink(b"link", out),
                    c.file(b"m", b"m\n"),
                    c.dir(b"link", vec![c.file(b"pwned", b"pwned\n")]),
                ]
            }),
        ),
    ];
    for (i, (what, make)) in cases.iter().enumerate() {
        let sc = Scene::new(&e, &format!("dup{i}"));
        let mut nodes = vec![c.file(b"a-safe", b"safe\n")];
        nodes.extend(make(&sc.outside_bytes()));
        nodes.push(c.file(b"z-safe", b"safe too\n"));
        let snap = c.snapshot(nodes);
        let o = sc.restore(&e, &snap);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", both(&o));
        assert!(
            text(&o.stderr).contains(&refusal(b"link")),
            "{what}: duplicate not named: {}",
            both(&o)
        );
        sc.assert_contained(what);
        assert_eq!(
            fs::read(sc.target.join("a-safe")).unwrap(),
            b"safe\n",
            "{what}"
        );
        assert_eq!(
            fs::read(sc.target.join("z-safe")).unwrap(),
            b"safe too\n",
            "{what}"
        );
        // whatever came first is what is there
        let l = sc.listing();
        assert!(
            l.contains("l link") || l.contains("d link"),
            "{what}: {l:?}"
        );
        // a second restore into the same target (with the symlink now present) changes nothing outside
        let o = sc.restore(&e, &snap);
        assert_eq!(o.status.code(), Some(1), "{what}, again: {}", both(&o));
        sc.assert_contained(&format!("{what}, again"));
    }
}

#[test]
fn symlinks_already_in_the_target_are_not_followed() {
    let e = Env::init();
    let c = Crafter::new(&e);
    let mut sc = Scene::new(&e, "target-links");
    let victim = sc.victim("victim", "original\n");
    sc.victim("victim2", "original 2\n");
    let out = sc.outside().to_path_buf();
    std::os::unix::fs::symlink(&out, sc.target.join("dir")).unwrap();
    std::os::unix::fs::symlink(&victim, sc.target.join("file")).unwrap();
    fs::create_dir(sc.target.join("real")).unwrap();
    std::os::unix::fs::symlink(out.join("victim2"), sc.target.join("real/inner")).unwrap();
    std::os::unix::fs::symlink(out.join("new-file"), sc.target.join("dangling")).unwrap();
    // named as in the outside directory, to catch a write through target/dir
    let snap = c.snapshot(vec![
        c.file(b"dangling", b"through a dangling link?\n"),
        c.dir(
            b"dir",
            vec![
                c.file(b"file", b"new\n"),
                c.file(b"victim", b"overwritten?\n"),
            ],
        ),
        c.file(b"file", b"new content\n"),
        c.dir(b"real", vec![c.file(b"inner", b"new inner\n")]),
    ]);
    let o = sc.restore(&e, &snap);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    sc.assert_contained("restore over symlinks in the target");
    assert_eq!(
        sc.listing(),
        set(&[
            "f dangling",
            "d dir",
            "f dir/file",
            "f dir/victim",
            "f file",
            "d real",
            "f real/inner"
        ])
    );
    assert_eq!(fs::read(sc.target.join("file")).unwrap(), b"new content\n");
    assert_eq!(
        fs::read(sc.target.join("dir/victim")).unwrap(),
        b"overwritten?\n"
    );
    assert_eq!(
        fs::read(sc.target.join("real/inner")).unwrap(),
        b"new inner\n"
    );
    assert_eq!(fs::read(&victim).unwrap(), b"original\n");
}

#[test]
fn hard_links_only_join_files_of_the_restore() {
    let e = Env::init();
    let c = Crafter::new(&e);
    let mut sc = Scene::new(&e, "hardlinks");
    let victim = sc.victim("victim", "original\n");
    // target/pre2 is a symlink to the victim before the restore
    std::os::unix::fs::symlink(&victim, sc.target.join("pre2")).unwrap();
    let snap = c.snapshot(vec![
        c.linked_file(b"a", b"linked content\n", 7, 2),
        c.linked_file(b"c", b"different content\n", 7, 3),
        c.dir(b"d", vec![c.linked_file(b"b", b"linked content\n", 7, 2)]),
        c.linked_file(b"lonely", b"lonely\n", 99, 2),
        c.linked_file(b"pre1", b"pre\n", 8, 2),
        c.linked_file(b"pre2", b"pre\n", 8, 2),
        // the inode of the template (a real file elsewhere) on its real device: still only
        // files of this restore can be joined
        {
            let mut n = c.file(b"real-inode", b"real\n");
            n.dev = c.template.dev;
            n.inode = c.template.inode;
            n.nlink = 2;
            n
        },
    ]);
    let o = sc.restore(&e, &snap);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    sc.assert_contained("restore of hard links");
    assert_eq!(
        sc.listing(),
        set(&[
            "f a",
            "f c",
            "d d",
            "f d/b",
            "f lonely",
            "f pre1",
            "f pre2",
            "f real-inode"
        ])
    );
    let m = |p: &str| fs::symlink_metadata(sc.target.join(p)).unwrap();
    // every link of every restored file is inside the target
    let files: Vec<String> = sc
        .listing()
        .iter()
        .filter_map(|l| l.strip_prefix("f ").map(String::from))
        .collect();
    for f in &files {
        let ino = m(f).ino();
        let inside = files.iter().filter(|g| m(g).ino() == ino).count() as u64;
        assert_eq!(m(f).nlink(), inside, "{f} has links outside the target");
    }
    assert_eq!(m("a").ino(), m("d/b").ino());
    assert_eq!(
        m("a").ino(),
        m("c").ino(),
        "c claims a's inode: it joins a (a file of this restore)"
    );
    // which of the claimed links came first decides the content
    let content = fs::read(sc.target.join("a")).unwrap();
    assert!(content == b"linked content\n" || content == b"different content\n");
    assert_eq!(fs::read(sc.target.join("lonely")).unwrap(), b"lonely\n");
    assert_eq!(
        m("lonely").nlink(),
        1,
        "a link whose partner is absent is a plain file"
    );
    assert_eq!(m("real-inode").nlink(), 1);
    assert_eq!(fs::read(sc.target.join("real-inode")).unwrap(), b"real\n");
    assert_eq!(m("pre1").ino(), m("pre2").ino());
    assert_eq!(fs::read(sc.target.join("pre2")).unwrap(), b"pre\n");

    // The first of two links has damaged data: neither is left behind, the rest is restored.
    let sc2 = Scene::new(&e, "hardlinks-damaged");
    let mut x1 = c.linked_file(b"x1", b"", 55, 2);
    x1.content = vec![BlobId([7; 32])];
    x1.size = 10;
    let mut x2 = x1.clone();
    x2.name = b"x2".to_vec();
    let snap = c.snapshot(vec![c.file(b"ok", b"ok\n"), x1, x2]);
    let o = sc2.restore(&e, &snap);
    assert_eq!(o.status.code(), Some(13), "{}", both(&o));
    assert!(
        text(&o.stderr).contains("x1") && text(&o.stderr).contains("x2"),
        "{}",
        both(&o)
    );
    assert_eq!(sc2.listing(), set(&["f ok"]));
    sc2.assert_contained("damaged hard link");
}

#[test]
fn dump_refuses_unsafe_names() {
    let e = Env::init();
    let c = Crafter::new(&e);
    let snap = c.snapshot(sorted(vec![
        c.file(b"a.txt", b"plain text\n"),
        c.dir(b"..", vec![c.file(b"escaped", b"escaped\n")]),
        c.dir(
            b"sub",
            sorted(vec![
                c.file(b"ok", b"ok\n"),
                c.dir(b"..", vec![c.file(b"up", b"up\n")]),
            ]),
        ),
        c.dir(b"slash", vec![c.file(b"x/y", b"x\n")]),
    ]));
    for (path, bad) in [("/", ".."), ("/sub", ".."), ("/slash", "x/y")] {
        let o = e.run(&["dump", &snap, path]);
        assert_eq!(o.status.code(), Some(1), "dump {path}: {}", both(&o));
        assert!(
            text(&o.stderr).contains(&format!("refusing entry name {bad:?}")),
            "dump {path}: {}",
            both(&o)
        );
        assert!(
            !o.stdout.windows(2).any(|w| w == b".."),
            "dump {path} wrote a '..' path"
        );
        assert!(
            !o.stdout.windows(3).any(|w| w == b"x/y"),
            "dump {path} wrote x/y"
        );
    }
    // the safe file still dumps
    let o = e.run(&["dump", &snap, "/a.txt"]);
    assert!(o.status.success(), "{}", both(&o));
    assert_eq!(o.stdout, b"plain text\n");
}

#[test]
fn absolute_symlinks_are_restored_as_symlinks_and_never_followed() {
    let e = Env::init();
    let c = Crafter::new(&e);
    let mut sc = Scene::new(&e, "abs-links");
    let victim = sc.victim("victim", "original\n");
    let out = sc.outside_bytes();
    let mut to_file = c.symlink(b"absfile", victim.as_os_str().as_bytes());
    // metadata on the link must go to the link, not to what it points to
    to_file.xattrs = vec![
        (b"trusted.evil".to_vec(), b"1".to_vec()),
        (b"user.evil".to_vec(), b"1".to_vec()),
    ];
    to_file.mode = 0o4777;
    to_file.mtime_ns = 0;
    to_file.uid = 65534;
    to_file.gid = 65534;
    let snap = c.snapshot(vec![
        c.symlink(b"abs", &out),
        to_file,
        c.dir(
            b"d",
            vec![c.file(b"f", b"in d\n"), c.symlink(b"up", b"../../..")],
        ),
        c.file(b"z", b"zzz\n"),
    ]);
    for round in ["first restore", "restore over the restored symlinks"] {
        let o = sc.restore(&e, &snap);
        assert_eq!(o.status.code(), Some(0), "{round}: {}", both(&o));
        sc.assert_contained(round);
        assert_eq!(
            sc.listing(),
            set(&["l abs", "l absfile", "d d", "f d/f", "l d/up", "f z"]),
            "{round}"
        );
        assert_eq!(fs::read_link(sc.target.join("abs")).unwrap(), sc.outside());
        assert_eq!(fs::read_link(sc.target.join("absfile")).unwrap(), victim);
        assert_eq!(
            fs::read_link(sc.target.join("d/up")).unwrap(),
            Path::new("../../..")
        );
        if is_root() {
            assert_eq!(
                fs::symlink_metadata(sc.target.join("absfile"))
                    .unwrap()
                    .uid(),
                65534,
                "{round}: owner of the link itself"
            );
        }
        assert_eq!(
            fs::symlink_metadata(sc.target.join("absfile"))
                .unwrap()
                .mtime(),
            0,
            "{round}: time of the link itself"
        );
    }
    // A later snapshot with a directory and a file under those names: written into the target,
    // not through the symlinks left by the previous restore.
    let snap2 = c.snapshot(vec![
        c.dir(
            b"abs",
            vec![
                c.file(b"pwned", b"pwned\n"),
                c.file(b"victim", b"overwritten?\n"),
            ],
        ),
        c.file(b"absfile", b"overwritten?\n"),
        c.dir(b"d", vec![c.dir(b"up", vec![c.file(b"pwned", b"pwned\n")])]),
    ]);
    let o = sc.restore(&e, &snap2);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    sc.assert_contained("restore over absolute symlinks");
    let l = sc.listing();
    for want in [
        "d abs",
        "f abs/pwned",
        "f abs/victim",
        "f absfile",
        "d d/up",
        "f d/up/pwned",
    ] {
        assert!(l.contains(want), "{want} missing: {l:?}");
    }
    assert_eq!(fs::read(&victim).unwrap(), b"original\n");
    assert_eq!(
        fs::read(sc.target.join("absfile")).unwrap(),
        b"overwritten?\n"
    );
}
