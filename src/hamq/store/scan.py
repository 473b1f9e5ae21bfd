"""The recovery scanner: the valid batches of one segment, and where to resume after damage.

A scan walks batch by batch.  When a batch does not verify, what follows it
decides what the damage is:

* exactly the fill pattern up to the end: the clean end of the data (no problem);
* zeros and fill only: a torn tail, the incomplete last write of a crash;
* anything else: the scan looks for a place to *resynchronise*: the next
  position holding a batch whose checksum verifies, of this segment's epoch,
  with an lsn after the one expected, no further ahead than the skipped bytes
  could hold batches, and followed by the next lsn (or by the end of the
  data).  Replay resumes there; the skipped range is reported (``skips``) so
  recovery can copy it to quarantine.  Only when no such batch exists does the
  scan stop with ``problem`` set.

Why a resync cannot accept garbage: a false header (random bytes that happen
to spell the magic) must also pass the crc32 over its header and payload,
hold this segment's epoch and a plausible lsn, and be followed by a batch
with the next lsn; a batch left from an older lap (an lsn at or below the
expected one) or from another epoch is never replayed.  The damaged batch's
own header is tried first: when only its payload was hit, its length still
points at the next batch, so a batch-shaped message body inside the damaged
batch is never preferred to the real successor.
"""

from __future__ import annotations

import os
from typing import Iterator, List, NamedTuple, Optional, Tuple

from hamq.store.codec import BATCH_FIELDS, BATCH_HEADER_SIZE, BATCH_MAGIC, BATCH_PREFIX_SIZE, crc32, iter_ops
from hamq.store.errors import StoreError
from hamq.store.journal import SCAN_CHUNK, is_blank, is_fill


class Skip(NamedTuple):
    """A damaged range replay stepped over: file bytes [start, end), lsns [first_lost, resumed) lost."""

    start: int
    end: int
    why: str
    first_lost: int
    resumed: int


class Batch(NamedTuple):
    epoch: int
    lsn: int
    total: int  # header + payload


def verified_batch(data, i: int) -> Optional[Batch]:
    """The batch at ``data[i:]`` if it is whole and its checksum verifies, else None."""
    if i + BATCH_HEADER_SIZE > len(data):
        return None
    magic, length, epoch, lsn, crc = BATCH_FIELDS.unpack_from(data, i)
    if magic != BATCH_MAGIC:
        return None
    total = BATCH_HEADER_SIZE + length
    if i + total > len(data):
        return None
    view = memoryview(data)
    if crc32(view[i + BATCH_HEADER_SIZE : i + total], crc32(view[i : i + BATCH_PREFIX_SIZE])) != crc:
        return None
    return Batch(epoch, lsn, total)


def find_resync(rest: bytes, pos: int, epoch: int, next_lsn: int) -> Optional[Tuple[int, int]]:
    """Where replay may resume after the damaged batch at file offset ``pos``; see the module docstring.

    ``rest`` holds the file bytes [pos, end of the segment's data).  Returns
    (file offset, lsn) of the batch to resume at, or None.
    """

    def acceptable(i: int) -> Optional[int]:
        b = verified_batch(rest, i)
        if b is None or b.epoch != epoch or b.lsn <= next_lsn:
            return None
        if (b.lsn - next_lsn) * BATCH_HEADER_SIZE > i:
            return None  # more lost batches than the skipped bytes could hold: not ours
        j = i + b.total
        if j < len(rest) and not is_blank(rest[j:], pos + j):
            after = verified_batch(rest, j)
            if after is None or after.epoch != epoch or after.lsn != b.lsn + 1:
                return None
        return b.lsn

    if len(rest) >= BATCH_HEADER_SIZE and rest[:4] == BATCH_MAGIC:
        claimed = BATCH_HEADER_SIZE + BATCH_FIELDS.unpack_from(rest, 0)[1]
        if claimed < len(rest):
            lsn = acceptable(claimed)
            if lsn == next_lsn + 1:
                return pos + claimed, lsn
    i = 0
    while True:
        i = rest.find(BATCH_MAGIC, i + 1)
        if i < 0:
            return None
        lsn = acceptable(i)
        if lsn is not None:
            return pos + i, lsn


class SegmentScan:
    """Iterate the valid batches of one segment from ``start`` up to ``limit``.

    Yields ``(lsn, payload_offset, payload)``.  Afterwards ``end`` is the byte
    after the last valid batch, ``skips`` the damaged ranges stepped over, and
    ``problem`` says why the scan stopped early (None when it reached ``limit``
    cleanly); ``torn`` tells a torn tail (an incomplete last write, expected
    after a crash) from corruption.  ``size`` is the file's size: below
    ``limit`` for a sealed segment that lost bytes its sealer never fsynced.
    """

    def __init__(self, path: str, start: int, limit: int, epoch: int, next_lsn: int) -> None:
        self.path, self.start, self.limit, self.epoch = path, start, limit, epoch
        self.next_lsn = next_lsn
        self.end = start
        self.problem: Optional[str] = None
        self.torn = False
        self.batches = 0
        self.size = 0
        self.skips: List[Skip] = []
        #: the scan stopped cleanly at unused preallocated space (fill up to ``limit``)
        self.fill_tail = False
        #: what follows ``end`` is zeros and fill only (set when a problem was found)
        self.blank_rest = False

    def __iter__(self) -> Iterator[Tuple[int, int, memoryview]]:
        """Yields (lsn, payload offset in the file, payload as a view valid until the next step)."""
        limit = self.limit
        try:
            f = open(self.path, "rb", buffering=0)
        except OSError as exc:
            raise StoreError(f"cannot open journal segment {self.path}: {exc}") from exc
        unpack = BATCH_FIELDS.unpack_from
        with f:
            self.size = os.fstat(f.fileno()).st_size
            pos = self.start
            buf, base = b"", pos  # buf holds file bytes [base, base + len(buf))
            view = memoryview(buf)
            while pos < limit:
                remaining = limit - pos
                bad = None  # (why, torn, end of the bad batch)
                i = pos - base
                if remaining < BATCH_HEADER_SIZE:
                    bad = (f"{remaining} trailing bytes, shorter than a batch header", True, None)
                else:
                    if i + BATCH_HEADER_SIZE > len(buf):
                        buf, base, view = self._refill(f, buf, base, pos, BATCH_HEADER_SIZE)
                        i = 0
                    if len(buf) - i < BATCH_HEADER_SIZE:
                        bad = ("the file ends inside a batch header", True, None)
                if bad is None:
                    magic, length, epoch, lsn, crc = unpack(buf, i)
                    total = BATCH_HEADER_SIZE + length
                    if magic != BATCH_MAGIC:
                        bad = ("no batch header (bad magic)", False, None)
                    elif total > remaining:
                        bad = (f"batch of {total} bytes runs past the end ({remaining} left)", True, None)
                if bad is None:
                    if i + total > len(buf):
                        buf, base, view = self._refill(f, buf, base, pos, total)
                        i = 0
                    payload = view[i + BATCH_HEADER_SIZE : i + total]
                    if len(payload) != length or crc32(payload, crc32(view[i : i + BATCH_PREFIX_SIZE])) != crc:
                        bad = ("batch checksum mismatch", total == remaining, pos + total)
                    elif lsn != self.next_lsn:
                        bad = (f"batch lsn {lsn} where {self.next_lsn} was expected", False, None)
                    elif epoch != self.epoch:
                        bad = (f"batch of epoch {epoch} in a segment of epoch {self.epoch}", False, None)
                if bad is not None:
                    resume = self._damage(f, pos, *bad)
                    if resume is None:
                        return
                    pos, buf, base, view = resume, b"", resume, memoryview(b"")
                    self.end = pos
                    continue
                self.next_lsn += 1
                self.batches += 1
                yield lsn, pos + BATCH_HEADER_SIZE, payload
                pos += total
                self.end = pos

    def _refill(self, f, buf: bytes, base: int, pos: int, need: int):
        """Keep the bytes from ``pos`` on and read at least ``need`` more (reads are 4 MiB or larger)."""
        keep = buf[pos - base :]
        want = min(max(SCAN_CHUNK, need - len(keep)), self.limit - pos - len(keep))
        f.seek(pos + len(keep))
        parts = [keep]
        while want > 0:
            more = f.read(want)
            if not more:
                break
            parts.append(more)
            want -= len(more)
        buf = b"".join(parts)
        return buf, pos, memoryview(buf)

    def _damage(self, f, pos: int, why: str, torn: bool, after: Optional[int]) -> Optional[int]:
        """A batch at ``pos`` does not verify: the offset to resume at, or None (the scan ends at ``pos``).

        ``after``: where the bad batch ends; blank bytes from there on make it a torn write.
        """
        self.end = pos
        f.seek(pos)
        rest = f.read(self.limit - pos)
        if is_fill(rest, pos):
            self.fill_tail = True  # unused preallocated space: the clean end of the data
            return None
        after = pos if after is None else after
        blank_after = is_blank(rest[after - pos :], after)
        if not blank_after:
            found = find_resync(rest, pos, self.epoch, self.next_lsn)
            if found is not None:
                resume, lsn = found
                self.skips.append(Skip(pos, resume, why, self.next_lsn, lsn))
                self.next_lsn = lsn
                return resume
        self.problem = why
        self.blank_rest = is_blank(rest, pos)
        self.torn = torn or blank_after
        return None


def segment_ops(path: str, start: int) -> Optional[list]:
    """Every op of the batches of a sealed segment from ``start``, or None if it does not read back cleanly.

    Used by cleanup to carry records forward before it deletes the segment; on
    any doubt (damage, an I/O error) the caller keeps the segment instead.
    """
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except OSError:
        return None
    ops: list = []
    pos = 0
    while pos < len(data):
        b = verified_batch(data, pos)
        if b is None:
            return ops if is_blank(data[pos:], start + pos) else None
        try:
            ops += iter_ops(memoryview(data)[pos + BATCH_HEADER_SIZE : pos + b.total])
        except StoreError:
            return None
        pos += b.total
    return ops
