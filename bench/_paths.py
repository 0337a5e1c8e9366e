"""Puts the repository's root on the import path, so the benchmark, run as a script from
``bench/``, reuses the fault suite's processes (``tests/fault_stack.py``)."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
