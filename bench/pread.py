#!/usr/bin/env python3
"""pread.py FILE [N]: N (default 1000) random 4 KiB preads at 4 KiB-aligned offsets of FILE,
with a fixed seed so every tool reads the same offsets. Prints the bytes read."""
import os
import random
import sys

path = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
fd = os.open(path, os.O_RDONLY)
size = os.fstat(fd).st_size
rng = random.Random(4096)
total = 0
for _ in range(n):
    off = rng.randrange(0, max(size - 4096, 1) // 4096 + 1) * 4096
    total += len(os.pread(fd, 4096, off))
os.close(fd)
print(total)
