//! The one glob compiler, for backup's `--exclude` and restore's `--include`/`--exclude`.
//!
//! A pattern without `/` matches an entry's name at any depth (`*.swp`, `node_modules`); one
//! with a leading `/` matches the whole path from the top (`/var/cache`); any other pattern with
//! a `/` matches at any depth (`.cache/thumbnails` is `**/.cache/thumbnails`). A trailing `/` is
//! ignored. Matching follows `globset`'s defaults (`*` may cross `/`, `**` any number of
//! directories).
//!
//! ```
//! use bakfs_core::glob::Patterns;
//! let p = Patterns::new(&["*.swp".into(), "/var/cache".into()], "exclude")?;
//! assert!(p.matches("/home/a/.x.swp".as_ref()));
//! assert!(p.matches("/var/cache".as_ref()));
//! assert!(!p.matches("/srv/var/cache".as_ref()));
//! # Ok::<(), bakfs_core::Error>(())
//! ```

use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// A compiled list of patterns.
#[derive(Debug, Clone)]
pub struct Patterns {
    /// Patterns without `/`, matched against the name.
    names: GlobSet,
    /// Patterns with `/`, matched against the path.
    paths: GlobSet,
    empty: bool,
}

impl Patterns {
    /// Compiles `patterns`; `what` names them in errors (`exclude`, `include`).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first pattern that is not a valid glob.
    pub fn new(patterns: &[String], what: &str) -> Result<Self> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        let mut empty = true;
        for raw in patterns {
            let p = raw.trim_end_matches('/');
            if p.is_empty() {
                continue;
            }
            let bad = |e: globset::Error| Error::Invalid(format!("{what} pattern {raw:?}: {e}"));
            if p.contains('/') {
                let full = if p.starts_with('/') {
                    p.to_string()
                } else {
                    format!("**/{p}")
                };
                paths.add(Glob::new(&full).map_err(bad)?);
            } else {
                names.add(Glob::new(p).map_err(bad)?);
            }
            empty = false;
        }
        let build = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::Invalid(format!("{what} patterns: {e}")))
        };
        Ok(Self {
            names: build(names)?,
            paths: build(paths)?,
            empty,
        })
    }

    /// Whether no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Whether `path` (absolute, as in the source or the snapshot) matches a pattern.
    pub fn matches(&self, path: &Path) -> bool {
        path.file_name()
            .is_some_and(|n| self.names.is_match(Path::new(n)))
            || self.paths.is_match(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(patterns: &[&str], path: &str) -> bool {
        let v: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        Patterns::new(&v, "test").unwrap().matches(Path::new(path))
    }

    #[test]
    fn names_paths_and_anchors() {
        assert!(m(&["*.tmp"], "/a/b/c.tmp"));
        assert!(!m(&["*.tmp"], "/a/b.tmp/c"));
        assert!(m(&["cache/"], "/home/u/cache"));
        assert!(m(&["/etc/ssh"], "/etc/ssh"));
        assert!(!m(&["/etc/ssh"], "/x/etc/ssh"));
        assert!(m(&["etc/ssh"], "/x/etc/ssh"));
        assert!(m(&["/home/*/cache"], "/home/u/cache"));
        assert!(!m(&[], "/a"));
        assert!(Patterns::new(&["".into(), "/".into()], "x")
            .unwrap()
            .is_empty());
        let e = Patterns::new(&["a[".into()], "exclude").unwrap_err();
        assert!(e.to_string().contains("exclude pattern \"a[\""), "{e}");
    }
}
