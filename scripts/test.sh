#!/usr/bin/env bash
# Runs every test of bakfs: installs what the tests need, builds the binaries once, runs the
# unit tests of each crate and the end-to-end tests of the real binaries. Run as root (the
# end-to-end tests restore owners, device nodes and security.* xattrs, and mount filesystems).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/deps.sh
source scripts/deps.sh
if [[ $(id -u) -ne 0 ]]; then
    echo "warning: not root: tests that need root will be skipped (they may not skip when CI=true)" >&2
fi
# s3s-fs: a real S3 server for the object-storage tests (tests/s3.rs), from crates.io, built
# into ~/.cargo/bin once (about 3 minutes on 2 cores); the tests find it there.
if ! command -v s3s-fs >/dev/null && [[ ! -x "$HOME/.cargo/bin/s3s-fs" ]]; then
    echo "installing s3s-fs 0.14.1 (cargo install)"
    cargo install s3s-fs --version 0.14.1 --features binary --locked --quiet
fi
# The habits the repository enforces: formatted code and no clippy warning.
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --bins --locked
cargo test --workspace --locked
