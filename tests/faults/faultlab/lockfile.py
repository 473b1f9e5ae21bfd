"""Lock-file tampering, as an operator's script, a backup restore or a confused admin would do it.

Each function acts on ``<kahaDB>/lock`` and returns what it did; none of
them touches the epoch file (deleting or replacing the lock file must never
reset the fencing token, and the tests check that it does not).
"""

from __future__ import annotations

import os
from pathlib import Path


def lock_path(kahadb: Path) -> Path:
    return Path(kahadb) / "lock"


def delete(kahadb: Path) -> str:
    lock_path(kahadb).unlink()
    return "deleted"


def replace_empty(kahadb: Path) -> str:
    """A new, empty file (new inode) in the lock file's place."""
    _replace(kahadb, b"")
    return "replaced by an empty file"


def replace_copy(kahadb: Path) -> str:
    """A byte-identical copy (same holder record, new inode) in the lock file's place."""
    _replace(kahadb, lock_path(kahadb).read_bytes())
    return "replaced by a byte-identical copy"


def _replace(kahadb: Path, data: bytes) -> None:
    tmp = Path(kahadb) / "lock.tampered"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, lock_path(kahadb))


TAMPERINGS = {"delete": delete, "empty": replace_empty, "copy": replace_copy}


def inode(kahadb: Path) -> int:
    return lock_path(kahadb).stat().st_ino
