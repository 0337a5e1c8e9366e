"""What the dev sinks and ``make run`` keep on disk holds clients' names, numbers and words:
the data folder is its owner's alone (0700) and every file in it 0600."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700
PRIVATE_UMASK = 0o077
"""For processes writing into the data folder: what they create is private from the start."""


def private_file(path: str, flags: int) -> int:
    """An ``opener`` for ``open()``: a new file is created 0600, an older one made 0600."""
    descriptor = os.open(path, flags, PRIVATE_FILE)
    os.fchmod(descriptor, PRIVATE_FILE)
    return descriptor


def private_folder(folder: Path) -> None:
    """Create ``folder`` 0700, and make it and everything already in it private."""
    folder.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
    folder.chmod(PRIVATE_FOLDER)
    for path in folder.rglob("*"):
        if path.is_symlink():
            continue
        path.chmod(PRIVATE_FOLDER if path.is_dir() else PRIVATE_FILE)
