"""A worker gives freed memory back after a burst: the C allocator's thresholds stay fixed.

Each case runs in a process of its own, so its allocator starts as a worker's does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[1]

BURST = """
import ctypes, ctypes.util, sys
from aftercare.allocator import fix_malloc_thresholds

if sys.argv[1] == "fixed":
    assert fix_malloc_thresholds()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def resident() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096

def touched(size: int) -> int:
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    return block

libc.free(touched(4 << 20))  # one large block freed: glibc raises its thresholds to its size
before = resident()
blocks = [touched(256 << 10) for _ in range(200)]  # a burst of 50 MiB
for block in blocks[:-1]:  # all but the last, which holds the heap's top
    libc.free(block)
print(resident() - before)
"""


def retained_after_burst(thresholds: str) -> int:
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("MALLOC_")}
    run = subprocess.run([sys.executable, "-c", BURST, thresholds], cwd=REPO, env=environment,
                         capture_output=True, text=True, check=True)
    return int(run.stdout)


def test_a_burst_of_large_blocks_freed_goes_back_to_the_system():
    assert retained_after_burst("fixed") < 5 << 20


def test_glibc_alone_keeps_the_burst_this_guards_against():
    assert retained_after_burst("dynamic") > 40 << 20
