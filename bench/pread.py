#!/usr/bin/env python3
"""pread.py FILE [N]: N (default 1000) random 4 KiB preads at 4 KiB-aligned offsets of FILE,
with a fixed seed so every tool reads the same offsets. Prints the bytes read and, on a second
line, the seconds from opening the file to closing it (the reads alone, without Python's own
start-up, which is 0.02-0.1 s and the same for every tool)."""
import os
import random
import sys
import time

path = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
rng = random.Random(4096)
t0 = time.monotonic()
fd = os.open(path, os.O_RDONLY)
size = os.fstat(fd).st_size
total = 0
for _ in range(n):
    off = rng.randrange(0, max(size - 4096, 1) // 4096 + 1) * 4096
    total += len(os.pread(fd, 4096, off))
os.close(fd)
elapsed = time.monotonic() - t0
print(total)
print(f"{elapsed:.4f}")
