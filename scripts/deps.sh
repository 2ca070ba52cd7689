#!/usr/bin/env bash
# Installs the Debian packages bakfs needs to build and test (idempotent; root).
set -euo pipefail
# openssh-server and sshfs: the share tests run an sshd of their own on a free port of 127.0.0.1
# (tests/share_harness.rs) and mount it with sshfs; a system sshd the package may start is not used.
want=(gcc pkg-config tzdata rsync acl attr tar python3 time util-linux e2fsprogs xfsprogs fuse3 udev libudev-dev kmod strace systemd faketime sqlite3 openssh-server openssh-client sshfs procps)
missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null; apt-get install -y -q "${missing[@]}" >/dev/null; }
fi
if ! command -v cargo >/dev/null; then
    for d in "$HOME/.cargo/bin" /root/.cargo/bin /usr/local/cargo/bin; do
        [[ -x $d/cargo ]] && export PATH="$d:$PATH" && break
    done
fi
command -v cargo >/dev/null || { echo "cargo not found: install a Rust toolchain (with rustfmt and clippy) first" >&2; exit 1; }
for c in rustfmt clippy; do
    if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null && rustup component add "$c" >/dev/null 2>&1
        cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1 || { echo "cargo $c not found: install the $c component" >&2; exit 1; }
    fi
done
