//! bakfs-fs: the FUSE filesystem over bakfs-core's snapshot view.
//!
//! Not built yet: `bakfs mount` is its own issue. This crate exists so that the workspace has the
//! layout of the design and the dependency direction (fs depends on core) is fixed from the start.
