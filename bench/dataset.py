#!/usr/bin/env python3
"""Helper for make-dataset.sh: builds the base tree and mutates the changed copy.

  dataset.py base    OUT_BASE SIZE_MB SRC_NAME=SRC_DIR ...
  dataset.py mutate  CHANGED_DIR MANIFEST
  dataset.py stats   DIR

Everything is deterministic: directories are walked in sorted order and the
mutation plan uses a fixed-seed PRNG over the sorted file list.
"""

import os
import random
import shutil
import stat
import sys

MIB = 1 << 20
# No single copied file may exceed this: the only >100 MB file of the dataset
# is the synthetic big file (librustc_driver & co. are skipped from the tree).
MAX_FILE = 32 * MIB
# Share of the (budget - big file) given to each source, in walk order.  What a
# source does not use carries over to the next one; /usr/lib comes last and
# absorbs the rest.
QUOTAS = {"include": 0.10, "share": 0.30, "rust": 0.20, "lib": 1.0}
SEED = 20240601
BIG_NAME = "big/bigfile.bin"


def big_size(size_mb):
    """The big file is 120 MiB on full-size runs, 1/8 of the budget on small ones."""
    if size_mb >= 1024:
        return 120 * MIB
    return max(1, size_mb // 8) * MIB


def walk_sorted(root):
    """Yield (relpath, lstat) for dirs, regular files and symlinks under root,
    sorted, not following symlinks, not crossing file systems, skipping
    unreadable entries, sockets, fifos and devices."""
    try:
        root_dev = os.lstat(root).st_dev
    except OSError:
        return
    stack = [""]
    while stack:
        rel = stack.pop()
        full = os.path.join(root, rel) if rel else root
        try:
            names = sorted(os.listdir(full))
        except OSError:
            continue
        subdirs = []
        for name in names:
            r = os.path.join(rel, name) if rel else name
            p = os.path.join(root, r)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev != root_dev or not os.access(p, os.R_OK | os.X_OK):
                    continue
                yield r, st
                subdirs.append(r)
            elif stat.S_ISREG(st.st_mode):
                if os.access(p, os.R_OK):
                    yield r, st
            elif stat.S_ISLNK(st.st_mode):
                yield r, st
            # sockets, fifos, devices: skipped
        # depth-first, sorted order
        stack.extend(reversed(subdirs))


def copy_entry(src, dst, st):
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
        if os.utime in os.supports_follow_symlinks:
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    else:
        shutil.copyfile(src, dst, follow_symlinks=False)
        shutil.copystat(src, dst, follow_symlinks=False)
    if os.geteuid() == 0:
        os.lchown(dst, st.st_uid, st.st_gid)


def cmd_base(out, size_mb, sources):
    budget = size_mb * MIB
    big = big_size(size_mb)
    tree_budget = max(0, budget - big)
    os.makedirs(out)
    used_total = 0
    carry = 0
    selected = set()
    summary = []
    for name, roots in sources:
        quota = int(tree_budget * QUOTAS.get(name, 0.0)) + carry
        if name == sources[-1][0]:
            quota = tree_budget - used_total
        used = 0
        nfiles = 0
        dirs = []
        full = False
        for root in roots:
            if full:
                break
            # several roots of one source (rust toolchains) go to sub-dirs
            sub = os.path.basename(os.path.dirname(root.rstrip("/"))) if len(roots) > 1 else ""
            top = os.path.join(out, name, sub)
            for rel, st in walk_sorted(root):
                src = os.path.join(root, rel)
                dst = os.path.join(top, rel)
                if stat.S_ISDIR(st.st_mode):
                    dirs.append((src, dst, st))
                    continue
                size = st.st_size if stat.S_ISREG(st.st_mode) else 0
                if size > MAX_FILE:
                    continue
                if used + size > quota:
                    full = True
                    break
                try:
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    copy_entry(src, dst, st)
                except OSError as e:
                    print(f"  skip {src}: {e}", file=sys.stderr)
                    try:
                        os.unlink(dst)
                    except OSError:
                        pass
                    continue
                used += size
                nfiles += 1
                selected.add(os.path.realpath(src))
        # directory metadata, deepest first (only dirs that were created)
        for src, dst, st in reversed(dirs):
            if os.path.isdir(dst) and not os.path.islink(dst):
                try:
                    shutil.copystat(src, dst, follow_symlinks=False)
                    if os.geteuid() == 0:
                        os.lchown(dst, st.st_uid, st.st_gid)
                except OSError:
                    pass
        used_total += used
        carry = max(0, quota - used)
        summary.append(f"{name}: {nfiles} entries, {used / MIB:.1f} MiB")

    # The big file: concatenation of large shared objects / rust libraries that
    # are not already in the tree (so deduplication cannot cheat), real
    # compressible-ish binary data.
    cands = []
    for _, roots in sources:
        for root in roots:
            for rel, st in walk_sorted(root):
                if not stat.S_ISREG(st.st_mode) or st.st_size < MIB:
                    continue
                n = os.path.basename(rel)
                if n.endswith((".rlib", ".a")) or ".so" in n:
                    cands.append(os.path.join(root, rel))
    cands.sort()
    fresh = [c for c in cands if os.path.realpath(c) not in selected]
    reused = [c for c in cands if os.path.realpath(c) in selected]
    bigpath = os.path.join(out, BIG_NAME)
    os.makedirs(os.path.dirname(bigpath), exist_ok=True)
    written = 0
    parts = 0
    with open(bigpath, "wb") as w:
        while written < big:
            progressed = False
            for c in fresh + reused:
                try:
                    with open(c, "rb") as r:
                        parts += 1
                        while written < big:
                            chunk = r.read(min(4 * MIB, big - written))
                            if not chunk:
                                break
                            w.write(chunk)
                            written += len(chunk)
                            progressed = True
                except OSError:
                    continue
                if written >= big:
                    break
            if not progressed:
                # no library at all on this machine: fall back to a text-ish
                # deterministic pattern (still compressible)
                rng = random.Random(SEED)
                words = [b"bakfs", b"bench", b"chunk", b"data", b"\n", b" "]
                while written < big:
                    s = b" ".join(rng.choice(words) for _ in range(4096))[: big - written]
                    w.write(s)
                    written += len(s)
    os.utime(bigpath, (1_700_000_000, 1_700_000_000))
    summary.append(f"big file: {written / MIB:.1f} MiB from {parts} libraries "
                   f"({len(fresh)} candidates not in the tree, {len(reused)} in it)")
    for line in summary:
        print("  " + line)


def list_files(root):
    files = []
    for rel, st in walk_sorted(root):
        if stat.S_ISREG(st.st_mode):
            files.append((rel, st.st_size))
    return files


def cmd_mutate(root, manifest):
    rng = random.Random(SEED)
    files = [f for f in list_files(root) if f[0] != BIG_NAME]
    n = len(files)
    n_mod = max(1, round(n * 0.02))
    n_churn = max(10, min(300, round(n * 0.005)))
    picks = rng.sample(range(n), min(n, n_mod + 2 * n_churn))
    mod = [files[i] for i in picks[:n_mod]]
    rm = [files[i] for i in picks[n_mod : n_mod + n_churn]]
    add_src = [files[i] for i in picks[n_mod + n_churn :]]
    log = []
    for k, (rel, size) in enumerate(mod):
        p = os.path.join(root, rel)
        if k % 2 == 0 or size < 64:
            with open(p, "ab") as f:
                f.write(b"bakfs-bench appended line %d\n" % k)
            log.append(f"append\t{rel}")
        else:
            with open(p, "r+b") as f:
                f.seek(size // 2)
                f.write(b"<bakfs-bench overwrite %06d>" % k)
            log.append(f"overwrite\t{rel}")
    # the big file gets a 4 KiB overwrite in the middle
    bp = os.path.join(root, BIG_NAME)
    if os.path.exists(bp):
        size = os.path.getsize(bp)
        with open(bp, "r+b") as f:
            f.seek(size // 2)
            f.write(bytes((i * 7 + 13) % 256 for i in range(4096)))
        log.append(f"overwrite\t{BIG_NAME}")
    # new files: copies of other files, under new names in other directories
    dirs = sorted({os.path.dirname(r) for r, _ in files})
    for k, (rel, _) in enumerate(add_src):
        d = dirs[rng.randrange(len(dirs))]
        dst = os.path.join(d, f"bench-added-{k:04d}-{os.path.basename(rel)}")
        shutil.copy2(os.path.join(root, rel), os.path.join(root, dst))
        log.append(f"add\t{dst}")
    for rel, _ in rm:
        os.unlink(os.path.join(root, rel))
        log.append(f"remove\t{rel}")
    with open(manifest, "w") as m:
        m.write("\n".join(log) + "\n")
    print(f"  changed: {len(mod) + 1} modified, {len(add_src)} added, {len(rm)} removed (of {n + 1} files)")


def cmd_stats(root):
    nfiles = ndirs = nlinks = nbytes = 0
    for _, st in walk_sorted(root):
        if stat.S_ISREG(st.st_mode):
            nfiles += 1
            nbytes += st.st_size
        elif stat.S_ISDIR(st.st_mode):
            ndirs += 1
        else:
            nlinks += 1
    print(f"files\t{nfiles}\ndirs\t{ndirs}\nsymlinks\t{nlinks}\nbytes\t{nbytes}")


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd = argv[1]
    if cmd == "base":
        out, size_mb = argv[2], int(argv[3])
        sources = []
        for spec in argv[4:]:
            name, _, path = spec.partition("=")
            if sources and sources[-1][0] == name:
                sources[-1][1].append(path)
            else:
                sources.append((name, [path]))
        cmd_base(out, size_mb, sources)
    elif cmd == "mutate":
        cmd_mutate(argv[2], argv[3])
    elif cmd == "stats":
        cmd_stats(argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
