"""The C allocator's thresholds for a long-running process.

glibc's malloc starts by serving blocks of 128 KiB and more with their own mappings, given
back to the system when freed, and trimming the heap's free top past 128 KiB. But each time
such a block is freed it raises both thresholds to the block's size (up to 32 MiB), so after
a burst (a thousand follow-ups starting, the workflow cache turning over) large blocks come
from the heap and what is freed there stays with the process. Setting the thresholds fixes
them at their starting values, as ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``
would: a worker holding 10,000 open follow-ups keeps about 8 MB less (see the README,
"Benchmark").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt's parameter numbers, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
GLIBC_STARTING_THRESHOLD = 128 * 1024


def fix_malloc_thresholds(threshold: int = GLIBC_STARTING_THRESHOLD) -> bool:
    """Fix glibc's mmap and trim thresholds at ``threshold`` bytes, unless the environment
    sets either (an operator's choice wins); False where they were not set here."""
    if {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} & os.environ.keys():
        return False
    library = ctypes.util.find_library("c")
    if library is None:
        return False
    mallopt = getattr(ctypes.CDLL(library), "mallopt", None)
    if mallopt is None:
        return False
    return all(mallopt(parameter, threshold) == 1
               for parameter in (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD))
