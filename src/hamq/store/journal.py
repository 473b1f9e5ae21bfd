"""Segment files on disk: the writer (with group commit); the recovery scanner is hamq.store.scan.

The writer is the only code that writes journal bytes.  With
``journalDiskSyncStrategy="always"``, ``write()`` only queues a batch in
memory; ``sync()`` checks the fence once, writes every queued batch with one
``os.write`` and fsyncs, so all batches appended while the previous fsync ran
share one fence check, one write and one fsync (group commit).  Nothing is
receipted before ``sync()`` returns, so queueing loses nothing a client was
told about, and a fenced master never writes a byte.  With ``periodic`` and
``never`` each batch is fenced and written at once, because those report it
durable without waiting for ``sync()``.

``sync()`` may run in a worker thread while the event loop keeps appending:
a lock guards the fd, the queue and the counters, and ``durable_lsn`` only
moves to the lsn that was written before the fsync began.

Preallocation (``always`` only).  An fdatasync after an *append* must also
commit the new file size and block allocation (an ext4 journal commit); after
an *overwrite* of blocks that are already allocated and durable it writes the
data only, often half the cost.  So the writer keeps a window ahead of the
write offset filled with the 8-byte pattern ``FILL`` (64 KiB at first,
doubling up to 4 MiB, never past ``max_segment_bytes``); the fill rides on
the next fsync, and the batches that follow overwrite it.

Why this keeps recovery exact: the end of the data is found by content, never
by file size.  A scan that meets a batch header position holding exactly the
fill pattern up to the end of the file has reached the clean end of the
segment (no problem reported).  Anything else after the last valid batch is
judged as before: zeros (or zeros mixed with fill, a crash while the window
was being extended) are a torn tail; other bytes are corruption.  A batch is
durable only once fdatasync returned, and fdatasync flushes every dirty page
before it, so no durable batch can lie after fill or zeros.  Seals, which a
new master writes into the next segment's header, are content lengths too;
blank bytes past a seal are ignored silently, other bytes with a warning as
before.  ``close()`` and rollover trim the unused window (an unfenced writer
only, and only past its own data, which is never before a seal), and recovery
trims a fill tail it ends at, so a cleanly closed segment is exactly its data.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from hamq.store.codec import (
    BATCH_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    SegmentHeader,
    pack_batch,
    pack_segment_header,
    unpack_segment_header,
)
from hamq.store.errors import StoreError, StoreFenced
from hamq.store.index import fsync_dir

log = logging.getLogger("hamq.store")

SEGMENT_RE = re.compile(r"^db-(\d+)\.log$")
SYNC_STRATEGIES = ("always", "periodic", "never")
QUARANTINE = "quarantine"
SCAN_CHUNK = 4 * 1024 * 1024
#: Queued batches past this size are written at once (fenced) instead of waiting for sync().
QUEUE_FLUSH_BYTES = 1024 * 1024
#: Preallocated, never-written space; not a batch magic, 8 bytes aligned to the file offset.
FILL = b"HQ-FREE\n"
FILL_MIN = 64 * 1024
FILL_MAX = 4 * 1024 * 1024
#: fdatasync flushes the data and the file size, all a journal append needs; fsync where it is missing
flush_data = getattr(os, "fdatasync", os.fsync)


def segment_name(n: int) -> str:
    return f"db-{n}.log"


def list_segments(directory: str) -> List[int]:
    out = []
    for name in os.listdir(directory):
        m = SEGMENT_RE.match(name)
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


def read_segment_header(path: str) -> Optional[SegmentHeader]:
    try:
        with open(path, "rb") as f:
            return unpack_segment_header(f.read(SEGMENT_HEADER_SIZE))
    except OSError as exc:
        raise StoreError(f"cannot read journal segment {path}: {exc}") from exc


def fill_at(pos: int, n: int) -> bytes:
    """The fill pattern as it appears in the file at bytes [pos, pos + n)."""
    phase = pos % len(FILL)
    return (FILL * ((n + phase) // len(FILL) + 1))[phase : phase + n]


def is_fill(data: bytes, pos: int) -> bool:
    """True when ``data`` (read at file offset ``pos``) is exactly unused preallocated space."""
    return bool(data) and data == fill_at(pos, len(data))


def is_blank(data: bytes, pos: int) -> bool:
    """True when every byte of ``data`` (read at offset ``pos``) is zero or the fill byte for its offset.

    That is space where no batch was ever written whole: fill, zeros, or a mix (a crash
    while a fill window was on its way to the disk).  Whole-buffer integer arithmetic
    keeps it fast for megabytes.
    """
    if not data.strip(b"\0"):
        return True
    x = int.from_bytes(data, "little")
    y = x | (x >> 4)
    y |= y >> 2
    y |= y >> 1  # bit 0 of each byte: that byte is non-zero
    nonzero = (y & int.from_bytes(b"\x01" * len(data), "little")) * 0xFF
    return x == int.from_bytes(fill_at(pos, len(data)), "little") & nonzero


def blank_file_range(path: str, start: int, end: int) -> bool:
    """True when bytes [start, end) of ``path`` are zeros and fill only (read in chunks)."""
    with open(path, "rb") as f:
        f.seek(start)
        pos = start
        while pos < end:
            chunk = f.read(min(SCAN_CHUNK, end - pos))
            if not chunk:
                break
            if not is_blank(chunk, pos):
                return False
            pos += len(chunk)
    return True


def sync_file(path: str) -> None:
    """fsync a file another process may have written: the page cache is shared, so this makes its bytes durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise StoreError(f"cannot open journal segment {path} to fsync it: {exc}") from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        raise StoreError(f"fsync of journal segment {path} failed: {exc}; it cannot be sealed as durable") from exc
    finally:
        os.close(fd)


def quarantine_path(directory: str, name: str) -> str:
    """A fresh path under ``<dir>/quarantine`` for bytes recovery refuses: set aside, never deleted."""
    qdir = os.path.join(directory, QUARANTINE)
    os.makedirs(qdir, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    base = os.path.join(qdir, f"{name}.{stamp}")
    path, n = base, 1
    while os.path.exists(path):
        n += 1
        path = f"{base}.{n}"
    return path


class Journal:
    """The open write segment plus cached read fds; thread-safe for append-vs-sync."""

    def __init__(
        self,
        directory: str,
        sync_strategy: str,
        sync_interval_ms: int,
        max_segment_bytes: int,
        fence: Optional[Callable[[], None]],
        preallocate: bool = True,
    ) -> None:
        self.directory = directory
        self.sync_strategy = sync_strategy
        self.sync_interval = sync_interval_ms / 1000.0
        self.max_segment_bytes = max_segment_bytes
        self.fence = fence
        self._lock = threading.Lock()  # fd, offset, written_lsn, rollover
        self._sync_lock = threading.Lock()  # one fsync at a time
        self._fd = -1
        self.segment = -1
        self.offset = 0  # logical end of the segment, queued batches included
        self._file_offset = 0  # end of what os.write put in the file
        self._queued: List[bytes] = []
        self._queued_bytes = 0
        self.epoch = 0
        self.written_lsn = 0
        self._synced_lsn = 0
        #: batch bytes written since this object was made (drives checkpointJournalBytes)
        self.bytes_written = 0
        self._last_sync = time.monotonic()
        self._read_fds: Dict[int, int] = {}
        self._failed: Optional[str] = None
        #: keep fill ahead of the offset so fsyncs overwrite allocated blocks (see the module docstring)
        self.preallocate = preallocate and sync_strategy == "always"
        self._filled_to = 0  # bytes [offset, _filled_to) of the write segment hold fill

    # ------------------------------------------------------------ segments
    def path(self, n: int) -> str:
        return os.path.join(self.directory, segment_name(n))

    def create_segment(self, header: SegmentHeader, durable: bool = True, fill: int = 0) -> int:
        """Create ``db-<N>.log`` with O_EXCL, so two writers can never share a new segment.

        ``fill``: preallocate that many bytes after the header, made durable with it.
        """
        path = self.path(header.segment)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            existing = read_segment_header(path)
            if existing is not None and existing.epoch < header.epoch:
                # a stale master created it after we took over; set it aside and take the number
                dest = quarantine_path(self.directory, segment_name(header.segment))
                os.replace(path, dest)
                log.warning(
                    "segment %s was created by stale epoch %d (ours is %d); moved it to %s",
                    path, existing.epoch, header.epoch, dest,
                )
                return self.create_segment(header, durable, fill)
            raise StoreFenced(
                f"journal segment {path} already exists (epoch {existing.epoch if existing else '?'}): "
                f"another broker is writing this store; this one (epoch {header.epoch}) must stop"
            ) from None
        except OSError as exc:
            raise StoreError(f"cannot create journal segment {path}: {exc}") from exc
        try:
            os.write(fd, pack_segment_header(header))
            if fill > 0:
                self._write_fill(fd, SEGMENT_HEADER_SIZE, SEGMENT_HEADER_SIZE + fill, header.segment)
            if durable:
                os.fsync(fd)
                fsync_dir(self.directory)
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot write the header of journal segment {path}: {exc}") from exc
        return fd

    def _first_fill(self) -> int:
        if not self.preallocate:
            return 0
        return max(0, min(FILL_MIN, self.max_segment_bytes - SEGMENT_HEADER_SIZE))

    def start(self, header: SegmentHeader, last_lsn: int) -> None:
        """Begin writing a fresh segment (at open, after recovery); its header seals the previous one.

        ``last_lsn`` counts as durable at once: the caller has fsynced every batch
        up to it (recovery fsyncs what it replayed before it calls this).
        """
        fill = self._first_fill()
        fd = self.create_segment(header, durable=True, fill=fill)
        with self._lock:
            self._filled_to = SEGMENT_HEADER_SIZE + (fill if self.preallocate else 0)
            self._fd = fd
            self._read_fds[header.segment] = fd
            self.segment = header.segment
            self.offset = self._file_offset = SEGMENT_HEADER_SIZE
            self._queued, self._queued_bytes = [], 0
            self.epoch = header.epoch
            self.written_lsn = self._synced_lsn = last_lsn
            self._failed = None

    def _check_fence(self) -> None:
        if self.fence is None:
            return
        try:
            self.fence()
        except StoreFenced:
            raise
        except Exception as exc:
            raise StoreFenced(f"fencing check failed, refusing to write: {exc}") from exc

    def _rollover(self) -> None:
        """Seal the full segment at its length and continue in a new one (lock held)."""
        self._flush_queue()
        self._check_fence()
        if self.sync_strategy != "never":
            self._sync_now(self._fd, self.written_lsn, locked=True)
        header = SegmentHeader(self.segment + 1, self.segment, self.offset, self.epoch, self.written_lsn + 1)
        fill = self._first_fill()
        fd = self.create_segment(header, durable=self.sync_strategy != "never", fill=fill)
        self._trim(self._fd)  # the old segment is sealed at self.offset now
        self._filled_to = SEGMENT_HEADER_SIZE + (fill if self.preallocate else 0)
        self._read_fds[header.segment] = fd
        self._fd = fd
        self.segment = header.segment
        self.offset = self._file_offset = SEGMENT_HEADER_SIZE

    def _flush_queue(self) -> None:
        """Fence, then write every queued batch with one os.write (lock held)."""
        if not self._queued:
            return
        self._check_fence()
        data = b"".join(self._queued)
        self._queued, self._queued_bytes = [], 0
        self._write_all(data)

    def _write_all(self, data: bytes) -> None:
        """Write ``data`` at the end of the file's data, first extending the fill window past it."""
        end = self._file_offset + len(data)
        try:
            if self.preallocate and end > self._filled_to:
                self._extend_fill(end)
            _pwrite_all(self._fd, data, self._file_offset)
        except OSError as exc:
            self._fail(f"write to journal segment {self.segment} failed: {exc}")
        self._file_offset = end

    def _check_usable(self) -> None:
        """Refuse to go on after a failed write or fsync (lock held)."""
        if self._failed:
            raise StoreError(f"journal unusable after an earlier error ({self._failed}); restart the broker")

    def _fail(self, why: str) -> None:
        self._failed = why
        raise StoreError(f"{why}; the journal is closed for writing, restart the broker to recover it")

    # ------------------------------------------------------------ write path
    def write(self, payload: bytes) -> Tuple[int, int, int]:
        """Append one batch; returns (lsn, segment, payload offset).

        ``always``: queued for the next ``sync()``, which fences and writes.
        ``periodic``/``never``: fenced and written now.
        """
        with self._lock:
            self._check_usable()
            if self._fd < 0:
                raise StoreError("the store is not open; call open(epoch) first")
            size = BATCH_HEADER_SIZE + len(payload)
            if self.offset > SEGMENT_HEADER_SIZE and self.offset + size > self.max_segment_bytes:
                self._rollover()
            lsn = self.written_lsn + 1
            data = pack_batch(payload, self.epoch, lsn)
            if self.sync_strategy == "always":
                self._queued.append(data)
                self._queued_bytes += len(data)
                if self._queued_bytes >= QUEUE_FLUSH_BYTES:
                    self._flush_queue()
            else:
                self._check_fence()
                self._write_all(data)
            start = self.offset
            self.offset += len(data)
            self.bytes_written += len(data)
            self.written_lsn = lsn
            if self.sync_strategy == "periodic" and time.monotonic() - self._last_sync >= self.sync_interval:
                self._sync_now(self._fd, lsn, locked=True)
            return lsn, self.segment, start + BATCH_HEADER_SIZE

    def _extend_fill(self, end: int) -> None:
        """Fill a new window from ``end`` on (lock held); it becomes durable with the next fsync."""
        chunk = min(FILL_MAX, max(FILL_MIN, self._file_offset))
        target = max(end, min(self._file_offset + chunk, self.max_segment_bytes))
        start = max(end, self._filled_to)
        if target > start and not self._write_fill(self._fd, start, target, self.segment):
            return
        self._filled_to = max(target, end)

    def _write_fill(self, fd: int, start: int, end: int, segment: int) -> bool:
        """Write fill over [start, end); a failure (a nearly full disk) turns preallocation off.

        The data may still fit without it, so this is a warning, not a store error.
        """
        try:
            _pwrite_all(fd, fill_at(start, end - start), start)
            return True
        except OSError as exc:
            log.warning("cannot preallocate journal segment %d (%s); writing without preallocation", segment, exc)
            self.preallocate = False
            return False

    def _trim(self, fd: int) -> None:
        """Cut the unused fill off the write segment (lock held): only ever past our own data."""
        if fd < 0 or self._filled_to <= self._file_offset or self._failed:
            return
        try:
            self._check_fence()
            os.ftruncate(fd, self._file_offset)
        except (StoreError, OSError) as exc:
            log.debug("left the preallocated tail of segment %d in place: %s", self.segment, exc)
        self._filled_to = self._file_offset

    @property
    def durable_lsn(self) -> int:
        if self.sync_strategy == "always":
            return self._synced_lsn
        return self.written_lsn  # periodic/never: reported at once, the documented risk

    def sync(self, force: bool = False) -> int:
        """fsync what was written so far (group commit); returns durable_lsn.

        The sync lock is taken before the fd is looked up, so ``forget()``/``close()``
        can never close the fd between the look-up and the fsync.
        """
        if self.sync_strategy == "never" and not force:
            return self.written_lsn
        if self.sync_strategy == "periodic" and not force:
            if time.monotonic() - self._last_sync < self.sync_interval:
                return self.durable_lsn
        with self._sync_lock:
            with self._lock:
                self._check_usable()
                if self._fd >= 0:
                    self._flush_queue()
                target, fd = self.written_lsn, self._fd
            if target > self._synced_lsn and fd >= 0:
                self._sync_now(fd, target)
        return self.durable_lsn

    def _sync_now(self, fd: int, target: int, locked: bool = False) -> None:
        """fsync ``fd`` and move durable_lsn up to ``target`` (never down; ``locked``: caller holds _lock)."""
        try:
            flush_data(fd)
        except OSError as exc:
            # after a failed fsync the page cache may have dropped our data: never retry it
            self._failed = f"fsync of journal segment {self.segment} failed: {exc}"
            raise StoreError(f"{self._failed}; restart the broker to recover the journal") from exc
        self._last_sync = time.monotonic()
        if locked:
            self._synced_lsn = max(self._synced_lsn, target)
        else:
            with self._lock:
                self._synced_lsn = max(self._synced_lsn, target)

    # ------------------------------------------------------------ read path
    def pread(self, segment: int, offset: int, length: int) -> bytes:
        if segment == self.segment and offset + length > self._file_offset:
            with self._lock:  # a batch still queued for sync(): write it out first (fenced)
                self._check_usable()
                self._flush_queue()
        fd = self._read_fds.get(segment)
        if fd is None:
            try:
                fd = os.open(self.path(segment), os.O_RDONLY)
            except OSError as exc:
                raise StoreError(f"cannot open journal segment {self.path(segment)}: {exc}") from exc
            self._read_fds[segment] = fd
        try:
            data = os.pread(fd, length, offset)
        except OSError as exc:
            raise StoreError(f"cannot read journal segment {self.path(segment)} at {offset}: {exc}") from exc
        if len(data) != length:
            raise StoreError(
                f"journal segment {self.path(segment)} ends before the message at offset {offset} "
                f"({len(data)} of {length} bytes); the file was truncated outside hamq"
            )
        return data

    def forget(self, segment: int) -> None:
        """Close the cached fd of a segment about to be deleted."""
        with self._sync_lock, self._lock:
            fd = self._read_fds.pop(segment, None)
            if fd is not None and fd != self._fd:
                os.close(fd)

    def close(self) -> None:
        with self._sync_lock, self._lock:
            self._trim(self._fd)
            for fd in self._read_fds.values():
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._read_fds.clear()
            self._fd = -1
            self._queued, self._queued_bytes = [], 0  # never written: nothing was receipted for them


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    n = os.pwrite(fd, data, offset)
    while n < len(data):  # only on odd filesystems; finish the write
        n += os.pwrite(fd, data[n:], offset + n)


def copy_aside(directory: str, path: str, start: int, end: int) -> Optional[str]:
    """Copy bytes [start, end) of a segment into the quarantine directory before they are cut off."""
    if end <= start:
        return None
    dest = quarantine_path(directory, f"{os.path.basename(path)}.from-{start}")
    with open(path, "rb") as src, open(dest, "wb") as out:
        src.seek(start)
        left = end - start
        while left > 0:
            chunk = src.read(min(left, 1 << 20))
            if not chunk:
                break
            out.write(chunk)
            left -= len(chunk)
        out.flush()
        os.fsync(out.fileno())
    fsync_dir(os.path.dirname(dest))
    return dest
