//! The top of the mounted tree: one directory per snapshot named by its UTC time, `latest`, and
//! `ids/`, `hosts/`, `tags/` of symlinks back to those directories.

use std::collections::BTreeMap;

use crate::format::id::{BlobId, SnapshotId};
use crate::format::{is_safe_name, Snapshot};
use crate::timefmt::format_rfc3339;

/// A synthetic directory above the snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MetaDir {
    /// The mount's root.
    Root,
    /// `ids/`.
    Ids,
    /// `hosts/`.
    Hosts,
    /// `tags/`.
    Tags,
    /// `hosts/<host>/`.
    Host(String),
    /// `tags/<tag>/`.
    Tag(String),
}

/// What a name in a [`MetaDir`] is.
#[derive(Debug, Clone)]
pub enum TopChild {
    /// Another synthetic directory.
    Dir(MetaDir),
    /// A snapshot's root directory.
    Snap(SnapshotId, BlobId, i64),
    /// A symlink with this target.
    Link(Vec<u8>),
}

struct SnapEntry {
    id: SnapshotId,
    dirname: String,
    short: String,
    time_ns: i64,
    tree: BlobId,
}

/// The snapshots, in time order, and their names.
#[derive(Default)]
pub struct Top {
    /// When this view replaced another while mounted (Unix ns); 0 for the first.
    pub changed_ns: i64,
    snaps: Vec<SnapEntry>,
    hosts: BTreeMap<String, Vec<usize>>,
    tags: BTreeMap<String, Vec<usize>>,
}

/// A host or tag made into one safe path component.
fn component(s: &str) -> String {
    let c: String = s
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    if is_safe_name(c.as_bytes()) {
        c
    } else {
        format!("_{c}")
    }
}

impl Top {
    /// Lays out `snaps` (any order).
    pub fn new(snaps: &[(SnapshotId, Snapshot)]) -> Top {
        let mut sorted: Vec<&(SnapshotId, Snapshot)> = snaps.iter().collect();
        sorted.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        let mut top = Top::default();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (id, s) in sorted {
            let base = format_rfc3339(s.time_ns);
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            // Two snapshots in one second: the later ones get `.2`, `.3`, ...
            let dirname = if *n == 1 { base } else { format!("{base}.{n}") };
            let i = top.snaps.len();
            let host = component(&s.host);
            top.hosts.entry(host.clone()).or_default().push(i);
            let mut tags: Vec<String> = s.tags.iter().map(|t| component(t)).collect();
            tags.sort();
            tags.dedup();
            for t in &tags {
                top.tags.entry(t.clone()).or_default().push(i);
            }
            top.snaps.push(SnapEntry {
                id: *id,
                dirname,
                short: id.short(),
                time_ns: s.time_ns,
                tree: s.tree,
            });
        }
        // Ids share 8 digits only by rare chance: then those use the full id.
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for s in &top.snaps {
            *count.entry(s.short.clone()).or_default() += 1;
        }
        for s in &mut top.snaps {
            if count.get(&s.short).copied().unwrap_or(0) > 1 {
                s.short = s.id.to_hex();
            }
        }
        top
    }

    /// Number of snapshots.
    pub fn len(&self) -> usize {
        self.snaps.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.snaps.is_empty()
    }

    fn snap_child(&self, i: usize) -> TopChild {
        let s = &self.snaps[i];
        TopChild::Snap(s.id, s.tree, s.time_ns)
    }

    fn links_into(&self, up: &str, list: &[usize]) -> Vec<(Vec<u8>, TopChild)> {
        let mut v: Vec<(Vec<u8>, TopChild)> = list
            .iter()
            .map(|&i| {
                (
                    self.snaps[i].dirname.clone().into_bytes(),
                    TopChild::Link(format!("{up}{}", self.snaps[i].dirname).into_bytes()),
                )
            })
            .collect();
        if let Some(&last) = list.last() {
            v.push((
                b"latest".to_vec(),
                TopChild::Link(format!("{up}{}", self.snaps[last].dirname).into_bytes()),
            ));
        }
        v
    }

    /// The entries of `dir`, or `None` if it no longer exists.
    pub fn children(&self, dir: &MetaDir) -> Option<Vec<(Vec<u8>, TopChild)>> {
        Some(match dir {
            MetaDir::Root => {
                let mut v: Vec<(Vec<u8>, TopChild)> = vec![
                    (b"ids".to_vec(), TopChild::Dir(MetaDir::Ids)),
                    (b"hosts".to_vec(), TopChild::Dir(MetaDir::Hosts)),
                    (b"tags".to_vec(), TopChild::Dir(MetaDir::Tags)),
                ];
                if let Some(last) = self.snaps.last() {
                    v.push((
                        b"latest".to_vec(),
                        TopChild::Link(last.dirname.clone().into_bytes()),
                    ));
                }
                v.extend((0..self.snaps.len()).map(|i| {
                    (
                        self.snaps[i].dirname.clone().into_bytes(),
                        self.snap_child(i),
                    )
                }));
                v
            }
            MetaDir::Ids => self
                .snaps
                .iter()
                .map(|s| {
                    (
                        s.short.clone().into_bytes(),
                        TopChild::Link(format!("../{}", s.dirname).into_bytes()),
                    )
                })
                .collect(),
            MetaDir::Hosts => self
                .hosts
                .keys()
                .map(|h| {
                    (
                        h.clone().into_bytes(),
                        TopChild::Dir(MetaDir::Host(h.clone())),
                    )
                })
                .collect(),
            MetaDir::Tags => self
                .tags
                .keys()
                .map(|t| {
                    (
                        t.clone().into_bytes(),
                        TopChild::Dir(MetaDir::Tag(t.clone())),
                    )
                })
                .collect(),
            MetaDir::Host(h) => self.links_into("../../", self.hosts.get(h)?),
            MetaDir::Tag(t) => self.links_into("../../", self.tags.get(t)?),
        })
    }

    /// The entry `name` of `dir`.
    pub fn child(&self, dir: &MetaDir, name: &[u8]) -> Option<TopChild> {
        match dir {
            MetaDir::Root => {
                if let Some(i) = self.snaps.iter().position(|s| s.dirname.as_bytes() == name) {
                    return Some(self.snap_child(i));
                }
                self.children(dir)?
                    .into_iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, c)| c)
            }
            MetaDir::Ids => {
                let s = self.snaps.iter().find(|s| s.short.as_bytes() == name)?;
                Some(TopChild::Link(format!("../{}", s.dirname).into_bytes()))
            }
            _ => self
                .children(dir)?
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| c),
        }
    }

    /// The newest snapshot's time, if any.
    pub fn newest_ns(&self) -> Option<i64> {
        self.snaps.last().map(|s| s.time_ns)
    }

    /// The modification time of the synthetic directories and links: it moves whenever the
    /// snapshot list changes (a forgotten snapshot too), which is what tells the kernel that
    /// its cached listing of a top-level directory is stale.
    pub fn mtime_ns(&self) -> i64 {
        self.newest_ns().unwrap_or(0).max(self.changed_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Summary;

    fn snap(t: i64, host: &str, tags: &[&str]) -> (SnapshotId, Snapshot) {
        let s = Snapshot {
            time_ns: t,
            host: host.into(),
            user: "root".into(),
            paths: vec!["/etc".into()],
            tags: tags.iter().map(|s| s.to_string()).collect(),
            tree: BlobId([t as u8; 32]),
            parent: None,
            job: None,
            excludes: vec![],
            summary: Summary::default(),
        };
        (SnapshotId([t as u8 + 1; 32]), s)
    }

    #[test]
    fn names_are_unique_and_latest_is_newest() {
        let sec = 1_000_000_000;
        let v = vec![
            snap(2 * sec + 5, "b", &["x"]),
            snap(2 * sec, "a/../x", &["x", ".."]),
            snap(sec, "a/../x", &[]),
        ];
        let top = Top::new(&v);
        let root = top.children(&MetaDir::Root).expect("root");
        let names: Vec<String> = root
            .iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect();
        assert!(
            names.contains(&"1970-01-01T00:00:02Z".to_string())
                && names.contains(&"1970-01-01T00:00:02Z.2".to_string()),
            "{names:?}"
        );
        match top.child(&MetaDir::Root, b"latest") {
            Some(TopChild::Link(t)) => assert_eq!(t, b"1970-01-01T00:00:02Z.2"),
            other => panic!("{other:?}"),
        }
        let hosts = top.children(&MetaDir::Hosts).expect("hosts");
        for (n, _) in &hosts {
            assert!(is_safe_name(n), "{n:?}");
        }
        let tags = top.children(&MetaDir::Tags).expect("tags");
        assert!(tags.iter().all(|(n, _)| is_safe_name(n)));
        assert!(
            matches!(top.child(&MetaDir::Tag("x".into()), b"latest"), Some(TopChild::Link(t)) if t == b"../../1970-01-01T00:00:02Z.2")
        );
        assert!(top
            .child(&MetaDir::Host("nope".into()), b"latest")
            .is_none());
    }
}
