"""The journal as files on disk: segments, batches, seals, damage and quarantine.

Only the on-disk format is used (``hamq.store.codec``: the segment header and
the batch header with its checksum), never the store's own recovery code, so
these tools keep telling the truth while the store is rewritten.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from hamq.store.codec import (
    BATCH_FIELDS,
    BATCH_HEADER_SIZE,
    BATCH_MAGIC,
    BATCH_PREFIX_SIZE,
    SEGMENT_HEADER_SIZE,
    SegmentHeader,
    crc32,
    unpack_segment_header,
)

SEGMENT_RE = re.compile(r"^db-(\d+)\.log$")


@dataclass
class Batch:
    segment: int
    offset: int  # of the batch header in the file
    total: int  # header + payload bytes
    epoch: int
    lsn: int

    @property
    def end(self) -> int:
        return self.offset + self.total


def segments(directory: Path) -> List[Tuple[int, Path, Optional[SegmentHeader]]]:
    """(number, path, header or None) of every ``db-<N>.log`` in ``directory``, in order."""
    out = []
    for p in Path(directory).iterdir():
        m = SEGMENT_RE.match(p.name)
        if m:
            with open(p, "rb") as f:
                out.append((int(m.group(1)), p, unpack_segment_header(f.read(SEGMENT_HEADER_SIZE))))
    return sorted(out, key=lambda s: s[0])


def _batch_at(data: bytes, pos: int) -> Optional[Tuple[int, int, int]]:
    """(total, epoch, lsn) of a valid batch (checksum verified) at ``pos``, else None."""
    if pos + BATCH_HEADER_SIZE > len(data):
        return None
    magic, length, epoch, lsn, crc = BATCH_FIELDS.unpack_from(data, pos)
    if magic != BATCH_MAGIC:
        return None
    total = BATCH_HEADER_SIZE + length
    if pos + total > len(data):
        return None
    payload = data[pos + BATCH_HEADER_SIZE:pos + total]
    if crc32(payload, crc32(data[pos:pos + BATCH_PREFIX_SIZE])) != crc:
        return None
    return total, epoch, lsn


def batches(path: Path, start: int = SEGMENT_HEADER_SIZE, limit: Optional[int] = None) -> List[Batch]:
    """The valid batches of a segment from ``start``, stopping at the first position that is not one."""
    data = Path(path).read_bytes()
    if limit is not None:
        data = data[:limit]
    m = SEGMENT_RE.match(Path(path).name)
    seg = int(m.group(1)) if m else -1
    out, pos = [], start
    while True:
        found = _batch_at(data, pos)
        if found is None:
            return out
        total, epoch, lsn = found
        out.append(Batch(seg, pos, total, epoch, lsn))
        pos += total


def scan_valid_batches(data: bytes, start: int) -> List[Tuple[int, int, int, int]]:
    """Every valid batch anywhere in ``data`` from ``start`` (a search by magic): (offset, total, epoch, lsn)."""
    out = []
    pos = data.find(BATCH_MAGIC, start)
    while pos >= 0:
        found = _batch_at(data, pos)
        if found is not None:
            out.append((pos, *found))
            pos = data.find(BATCH_MAGIC, pos + found[0])
        else:
            pos = data.find(BATCH_MAGIC, pos + 1)
    return out


def batches_past_seals(directory: Path) -> List[Tuple[int, int, int, int]]:
    """Valid batches lying past the seal of their segment: (segment, offset, lsn, epoch).

    Segment N+1's header says "segment N ends at byte L"; a valid batch beyond L
    in segment N was written by a master that had already lost the store.
    """
    segs = segments(directory)
    out = []
    for (n, path, _h), (_m, _p, nxt) in zip(segs, segs[1:]):
        if nxt is None or nxt.prev_segment != n:
            continue
        data = path.read_bytes()
        for off, _total, epoch, lsn in scan_valid_batches(data, nxt.sealed_length):
            out.append((n, off, lsn, epoch))
    return out


def data_end(path: Path) -> int:
    """The end of the last valid batch of a segment (the header's end when it has none)."""
    found = batches(path)
    return found[-1].end if found else SEGMENT_HEADER_SIZE


# ---------------------------------------------------------------------------- damage
def flip_bit(path: Path, offset: int, bit: int) -> Tuple[int, int]:
    """Flip one bit in place; returns (old byte, new byte)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(1)[0]
        new = old ^ (1 << bit)
        f.seek(offset)
        f.write(bytes([new]))
        f.flush()
        os.fsync(f.fileno())
    return old, new


def truncate(path: Path, offset: int) -> None:
    os.truncate(path, offset)


def random_offset(rng: random.Random, path: Path) -> int:
    """A random byte offset inside the batches of a segment (past its header, before the end of its data)."""
    return rng.randrange(SEGMENT_HEADER_SIZE, data_end(path))


def batch_containing(found: List[Batch], offset: int) -> Optional[int]:
    for i, b in enumerate(found):
        if b.offset <= offset < b.end:
            return i
    return None


# ---------------------------------------------------------------------------- quarantine
def quarantine(directory: Path) -> List[Path]:
    q = Path(directory) / "quarantine"
    return sorted(q.iterdir()) if q.is_dir() else []


def quarantined_segment_epochs(directory: Path) -> List[Tuple[str, int]]:
    """(file name, epoch) of every whole segment file moved to quarantine/ (by its header)."""
    out = []
    for p in quarantine(directory):
        if not p.name.startswith("db-") or ".from-" in p.name:
            continue
        with open(p, "rb") as f:
            h = unpack_segment_header(f.read(SEGMENT_HEADER_SIZE))
        if h is not None:
            out.append((p.name, h.epoch))
    return out
