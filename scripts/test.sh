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
# The habits the repository enforces: formatted code and no clippy warning.
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --bins --locked
cargo test --workspace --locked
