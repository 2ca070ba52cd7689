#!/usr/bin/env bash
# Installs the Debian packages bakfs needs to build and test (idempotent; root).
set -euo pipefail
want=(gcc pkg-config rsync acl attr tar python3 util-linux e2fsprogs xfsprogs fuse3 udev libudev-dev kmod strace systemd)
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
command -v cargo >/dev/null || { echo "cargo not found: install a Rust toolchain (1.80 or newer) first" >&2; exit 1; }
