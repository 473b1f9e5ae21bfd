"""MessageStore: the broker's crash-safe journal of persistent messages.

Layout of the store directory::

    db-<N>.log          append-only segments (see hamq.store.codec for the format)
    index.ckpt[.prev]   checkpoints of the in-memory index (see hamq.store.index)
    quarantine/         bytes recovery refused, set aside instead of deleted

Durability.  ``append()`` writes one checksummed batch with one ``os.pwrite``
and returns its lsn; nothing is fsynced yet.  ``sync()`` fsyncs all batches
written so far, so concurrent producers share one fsync (group commit).  With
``always`` the server sends a RECEIPT only once ``durable_lsn >= lsn``.
``periodic`` fsyncs at most every ``sync_interval_ms`` (and at segment
rollover) but reports every written batch as durable at once: a power loss
can drop up to one interval of receipted messages.  ``never`` leaves it to
the OS: a machine crash can drop any amount.  ``periodic``/``never`` survive
a broker crash (the data is in the page cache), not a host crash.  With
``always`` the segment is preallocated ahead of the writer so that each fsync
is an overwrite (see hamq.store.journal); where the data ends is decided by
content, never by the file size.

Recovery.  ``open()`` loads the newest valid checkpoint and replays only the
batches written after it.  A batch is applied whole or not at all.  A torn
tail (an incomplete last write) is truncated with a warning.  Damage with
valid batches after it (a flipped bit, a lost page) is corruption: replay
resynchronises on the next batch that verifies (see hamq.store.scan), logs an
ERROR naming the segment, the offsets and the bytes skipped, and delivers
every intact batch, so one flipped bit costs at most the batch it hits.  A
sealed segment that ends badly (shorter than its seal after a power loss, or
damaged at its end) loses that tail only; the segments after it are kept.
Whatever is skipped or cut off is first copied to ``quarantine/`` so an
operator can inspect it: nothing is deleted.

A takeover trusts nothing it did not make durable itself: the old master may
have written its last batches without an fsync.  So every segment replay
read is fsynced *before* the new segment's header seals it and before
``durable_lsn`` covers it; a duplicate found in that tail is therefore
receipted only for a durable record.  A replay makes a checkpoint due at
once (the master term writes it in its checkpoint thread), and a checkpoint
is also due whenever ``checkpoint_journal_bytes`` were written since the
last, so what a takeover replays is bounded by that, not by the kill history.

Fencing.  Only the master writes, and ``fence()`` (from the lock's lease) is
called before every batch, segment rollover, checkpoint and cleanup; if it
raises, nothing is written and ``StoreFenced`` propagates.  ``open(epoch)``
always starts a new segment, created with ``O_EXCL`` so two writers can never
share one, whose durable header *seals* the previous segment: "segment N ends
at byte L, sealed by epoch E".  Recovery never reads a sealed segment past L,
so a paused ex-master that wakes up and appends to its old fd gets nothing
accepted, and a segment created by a lower epoch after a higher one is set
aside.  A store whose last segment has a higher epoch than ours refuses to
open (``StoreFenced``).

Memory.  Per pending message the index holds four ints in ``array`` columns;
headers and bodies stay on disk and ``read()`` preads them on demand, so a
million pending 1 KiB messages cost tens of MiB, not gigabytes.

Threads.  Everything is meant for one thread (the event loop) except
``sync()`` and ``write_checkpoint()``, which may run in a worker thread while
that thread keeps appending.  Stop such workers before ``close()``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple

from hamq.store.audit import DuplicateAudit
from hamq.store.codec import (
    BATCH_HEADER_SIZE,
    MAX_BATCH_PAYLOAD,
    SEGMENT_HEADER_SIZE,
    T_ACK,
    T_ADD,
    T_DEL,
    T_DUP,
    T_MARK,
    T_META,
    SegmentHeader,
    decode_add,
    encode_add,
    encode_op,
    iter_ops,
)
from hamq.store.errors import StoreError, StoreFenced
from hamq.store.index import (
    CKPT_HEAD,
    CKPT_MAGIC,
    CKPT_NAME,
    CKPT_PREV,
    Checkpoint,
    KeyIndex,
    decode_checkpoint,
    encode_checkpoint,
    fsync_dir,
)
from hamq.store.index import (
    write_checkpoint as write_checkpoint_file,
)
from hamq.store.journal import (
    SYNC_STRATEGIES,
    Journal,
    blank_file_range,
    copy_aside,
    list_segments,
    quarantine_path,
    read_segment_header,
    segment_name,
    sync_file,
)
from hamq.store.ops import (
    Ack,
    AddMessage,
    DeleteKey,
    MarkDispatched,
    Op,
    PutMeta,
    Ref,
    RememberId,
    StoredMessage,
)
from hamq.store.scan import SegmentScan, Skip, verified_batch

log = logging.getLogger("hamq.store")

MiB = 1024 * 1024
PAGE = 1024  # refs per page in iter_pending
#: default of checkpointJournalBytes: a checkpoint is due once this much journal was written since the last
CHECKPOINT_JOURNAL_BYTES = 32 * MiB


@dataclass
class RecoveryReport:
    """What ``open()`` found and did; logged by the server, asserted by tests."""

    epoch: int
    checkpoint: Optional[str] = None  # file the index came from, None = full replay
    checkpoint_lsn: int = 0
    replayed_batches: int = 0
    replayed_ops: int = 0
    replayed_bytes: int = 0
    last_lsn: int = 0
    pending_messages: int = 0
    keys: int = 0
    segment: int = 0  # the new segment this master writes
    sealed: Optional[Tuple[int, int, int]] = None  # (segment, length, its epoch) sealed by this open
    problems: List[str] = field(default_factory=list)  # every torn tail / corruption, as logged
    quarantined: List[str] = field(default_factory=list)  # files under quarantine/ created by this open
    skipped: List[Tuple[int, int, int]] = field(default_factory=list)  # (segment, start, end) replay stepped over
    duration_s: float = 0.0


def audit_key(scope: str, duplicate_id: str) -> str:
    """One audit entry: unambiguous for any characters in either part."""
    return f"{len(scope)}:{scope}{duplicate_id}"


class CheckpointSnapshot(NamedTuple):
    """A serialised index waiting to be written by ``write_checkpoint``."""

    lsn: int
    segment: int
    parts: List[bytes]


class MessageStore:
    """Journal + index + duplicate audit of one ``<kahaDB directory>``; see the module docstring."""

    def __init__(
        self,
        directory,
        sync_strategy: str = "always",
        sync_interval_ms: int = 1000,
        max_segment_bytes: int = 32 * MiB,
        checkpoint_interval_ms: int = 5000,
        cleanup_interval_ms: int = 30000,
        fence: Optional[Callable[[], None]] = None,
        audit_size: int = 100_000,
        preallocate: bool = True,
        checkpoint_journal_bytes: int = CHECKPOINT_JOURNAL_BYTES,
    ) -> None:
        if sync_strategy not in SYNC_STRATEGIES:
            raise ValueError(
                f"unknown sync_strategy {sync_strategy!r}; use one of {', '.join(SYNC_STRATEGIES)}"
            )
        if max_segment_bytes < 4096:
            raise ValueError(f"max_segment_bytes={max_segment_bytes} is too small; use at least 4096")
        for name, value in (
            ("sync_interval_ms", sync_interval_ms),
            ("checkpoint_interval_ms", checkpoint_interval_ms),
            ("cleanup_interval_ms", cleanup_interval_ms),
        ):
            if value < 0:
                raise ValueError(f"{name}={value} is negative; use 0 or more milliseconds")
        if checkpoint_journal_bytes < 1:
            raise ValueError(f"checkpoint_journal_bytes={checkpoint_journal_bytes} is too small; use 1 or more bytes")
        self.checkpoint_journal_bytes = checkpoint_journal_bytes
        self._ckpt_bytes = 0  # journal.bytes_written when the last checkpoint was taken
        self.directory = os.fspath(directory)
        self.sync_strategy = sync_strategy
        self.checkpoint_interval = checkpoint_interval_ms / 1000.0
        self.cleanup_interval = cleanup_interval_ms / 1000.0
        self.fence = fence
        self._journal = Journal(self.directory, sync_strategy, sync_interval_ms, max_segment_bytes, fence, preallocate)
        self._audit = DuplicateAudit(audit_size)
        self._keys: Dict[str, KeyIndex] = {}
        self._live: Dict[int, int] = {}  # segment -> pending messages stored in it
        self._next_seq = 1
        self._open = False
        self._ckpt_segments: Dict[str, int] = {}  # checkpoint file -> journal segment it starts replay at
        self._ckpt_lsn = -1
        self._last_checkpoint = time.monotonic()
        self._last_cleanup = time.monotonic()
        #: seqs assigned to the AddMessages of the last append(), in order
        self.last_seqs: List[int] = []
        self.epoch = 0

    # ================================================================ open / recovery
    def open(self, epoch: int = 0) -> RecoveryReport:
        """Recover the store and start a new segment sealed for ``epoch``; see the module docstring."""
        if self._open:
            raise StoreError("store is already open; close() it before opening it again")
        t0 = time.monotonic()
        self._journal._check_fence()
        try:
            os.makedirs(self.directory, exist_ok=True)
            report = self._recover(epoch)
        except OSError as exc:
            raise StoreError(f"cannot recover the store in {self.directory}: {exc}") from exc
        report.duration_s = time.monotonic() - t0
        self._open = True
        self.epoch = epoch
        self._last_checkpoint = self._last_cleanup = time.monotonic()
        self._ckpt_bytes = self._journal.bytes_written - report.replayed_bytes
        if report.replayed_batches:
            # due at once: a term that ends before checkpointInterval must not leave this replay to the next
            # master too, or takeover time grows with every short term
            self._last_checkpoint -= self.checkpoint_interval
        log.info(
            "store %s open: epoch %d, %d pending messages in %d keys, replayed %d batches after %s in %.3fs",
            self.directory, epoch, report.pending_messages, report.keys, report.replayed_batches,
            report.checkpoint or "no checkpoint", report.duration_s,
        )
        return report

    def _problem(self, report: RecoveryReport, level: int, msg: str, *args) -> None:
        text = msg % args
        report.problems.append(text)
        log.log(level, "%s", text)

    def _quarantine(self, report: RecoveryReport, path: str) -> None:
        dest = quarantine_path(self.directory, os.path.basename(path))
        os.replace(path, dest)
        fsync_dir(os.path.dirname(dest))  # the store directory is fsynced with the new segment
        report.quarantined.append(dest)

    def _recover(self, epoch: int) -> RecoveryReport:
        report = RecoveryReport(epoch=epoch)
        # start from nothing: the object may have been opened (or failed to open) before
        self._keys, self._live, self._next_seq = {}, {}, 1
        self._audit = DuplicateAudit(self._audit.capacity)
        self._ckpt_segments, self._ckpt_lsn = {}, -1
        d = self.directory
        j = self._journal

        # 1. the chain of segments, each with a valid header, epochs never going down
        chain: List[Tuple[int, SegmentHeader]] = []
        segs = list_segments(d)
        rebuilt = set()  # segments whose damaged header was rebuilt from their content
        for i, n in enumerate(segs):
            h = read_segment_header(j.path(n))
            why = None
            if h is None or h.segment != n:
                h = self._rebuild_header(report, n, chain[-1][1] if chain else None, last=i == len(segs) - 1)
                if h is not None:
                    rebuilt.add(n)
            if h is None:
                why = "its header is unreadable"
            elif chain and h.epoch < chain[-1][1].epoch:
                why = f"it was created by stale epoch {h.epoch} after epoch {chain[-1][1].epoch}"
            if why is None:
                chain.append((n, h))
                continue
            later = segs[i:]
            if h is None and i == len(segs) - 1:
                level = logging.WARNING  # a crash while creating the newest segment
            else:
                level = logging.ERROR
            self._problem(
                report, level, "journal segment %s is not used because %s; moved %s to %s/",
                segment_name(n), why, ", ".join(segment_name(m) for m in later), "quarantine",
            )
            if chain and epoch < chain[-1][1].epoch:
                break  # refused below; touch nothing
            for m in later:
                self._quarantine(report, j.path(m))
            break
        if chain and epoch < chain[-1][1].epoch:
            raise StoreFenced(
                f"the journal's newest segment {segment_name(chain[-1][0])} belongs to epoch {chain[-1][1].epoch}, "
                f"newer than ours ({epoch}): another broker took over this store; this one must stop"
            )
        position = {n: k for k, (n, _) in enumerate(chain)}

        limits: Dict[int, int] = {}

        def limit_of(k: int) -> int:
            """Where segment chain[k] ends: its seal if the next segment sealed it, else its size."""
            n, _h = chain[k]
            if n in limits:
                return limits[n]
            limit = size = os.path.getsize(j.path(n))
            if k + 1 < len(chain) and chain[k + 1][1].prev_segment == n:
                limit = chain[k + 1][1].sealed_length
                if size > limit and not blank_file_range(j.path(n), limit, size):
                    log.warning(
                        "ignoring %d bytes past the seal of %s at %d (written by a master that had lost the store)",
                        size - limit, segment_name(n), limit,
                    )
            limits[n] = limit
            return limit

        # 2. the newest checkpoint that fits the journal
        ckpt: Optional[Checkpoint] = None
        for name in (CKPT_NAME, CKPT_PREV):
            path = os.path.join(d, name)
            if not os.path.exists(path):
                continue
            try:
                with open(path, "rb") as f:
                    c = decode_checkpoint(f.read())
                k = position.get(c.segment)
                if k is None:
                    raise ValueError(f"it starts at segment {segment_name(c.segment)}, which is gone")
                if not SEGMENT_HEADER_SIZE <= c.offset <= limit_of(k):
                    raise ValueError(f"its position {c.offset} in {segment_name(c.segment)} is past the journal")
            except (OSError, ValueError) as exc:
                self._problem(
                    report, logging.ERROR, "checkpoint %s is unusable (%s); moved it to quarantine/ and %s",
                    name, exc, "trying the previous one" if name == CKPT_NAME else "replaying the whole journal",
                )
                self._quarantine(report, path)
                continue
            ckpt = c
            report.checkpoint = name
            self._ckpt_segments[name] = c.segment
            if name == CKPT_NAME:
                peek = _peek_checkpoint_segment(os.path.join(d, CKPT_PREV))
                if peek is not None:
                    self._ckpt_segments[CKPT_PREV] = peek
            break

        if ckpt is not None:
            self._keys = ckpt.keys
            self._live = dict(ckpt.live)
            self._audit.load(ckpt.audit)
            self._next_seq = ckpt.next_seq
            self._ckpt_lsn = report.checkpoint_lsn = ckpt.lsn
            start_k, pos, next_lsn = position[ckpt.segment], ckpt.offset, ckpt.lsn + 1
        elif chain:
            start_k, pos, next_lsn = 0, SEGMENT_HEADER_SIZE, chain[0][1].first_lsn
        else:
            start_k, pos, next_lsn = 0, SEGMENT_HEADER_SIZE, 1

        # 3. replay the batches after the checkpoint
        end_pos = pos
        k = start_k
        scanned: List[str] = []
        lost_tail = False  # the previous segment lost its tail: its successor may start past next_lsn
        while k < len(chain):
            n, h = chain[k]
            if k > start_k:
                pos = SEGMENT_HEADER_SIZE
                if n in rebuilt:
                    next_lsn = h.first_lsn if h.first_lsn > 0 else next_lsn
                elif h.prev_segment != chain[k - 1][0]:
                    log.warning("journal gap before %s; continuing at its first lsn %d", segment_name(n), h.first_lsn)
                    next_lsn = h.first_lsn
                elif h.first_lsn > next_lsn and lost_tail:
                    self._problem(
                        report, logging.ERROR, "journal segment %s starts at lsn %d: lsns %d-%d went with the "
                        "damaged tail of %s; replay goes on", segment_name(n), h.first_lsn, next_lsn,
                        h.first_lsn - 1, segment_name(chain[k - 1][0]),
                    )
                    next_lsn = h.first_lsn
                elif h.first_lsn != next_lsn:
                    self._problem(
                        report, logging.ERROR, "journal segment %s starts at lsn %d but %d was expected; "
                        "it and later segments moved to quarantine/", segment_name(n), h.first_lsn, next_lsn,
                    )
                    for m, _ in chain[k:]:
                        self._quarantine(report, j.path(m))
                    del chain[k:]
                    break
            scan = SegmentScan(j.path(n), pos, limit_of(k), h.epoch, next_lsn)
            scanned.append(j.path(n))
            for lsn, poff, payload in scan:
                try:
                    ops = list(iter_ops(payload))
                except StoreError as exc:
                    scan.problem, scan.torn = str(exc), False
                    scan.end, scan.next_lsn = poff - BATCH_HEADER_SIZE, lsn
                    break
                for op in ops:
                    self._apply(op, n, poff)
                report.replayed_batches += 1
                report.replayed_ops += len(ops)
                report.replayed_bytes += BATCH_HEADER_SIZE + len(payload)
            for skip in scan.skips:
                self._skipped(report, n, skip)
            next_lsn = scan.next_lsn
            end_pos = scan.end
            lost_tail = bool(scan.problem)
            if scan.fill_tail:
                os.truncate(j.path(n), scan.end)  # unused preallocated space of a writer that did not close
                limits[n] = scan.end
            if scan.problem and k + 1 < len(chain):
                self._damaged_sealed(report, n, scan)  # a torn or damaged tail of this segment only
            elif scan.problem:
                self._cut(report, chain, k, scan)
                break
            k += 1

        # 3b. what replay found is durable before anything relies on it: the old master may have
        # written it without an fsync (killed in between), and the seal below must never cover
        # bytes a power loss could still take away
        for path in scanned:
            if os.path.exists(path):
                sync_file(path)

        # 4. a new segment whose header seals the last one
        for ki in self._keys.values():
            ki.recovered_mark = ki.mark
        last_lsn = next_lsn - 1
        if chain:
            last_n, last_h = chain[-1]
            header = SegmentHeader(last_n + 1, last_n, end_pos, epoch, last_lsn + 1)
            report.sealed = (last_n, end_pos, last_h.epoch)
            if epoch > last_h.epoch:
                log.info(
                    "epoch %d takes over: %s (epoch %d) sealed at %d bytes",
                    epoch, segment_name(last_n), last_h.epoch, end_pos,
                )
        else:
            header = SegmentHeader(max(segs, default=0) + 1, -1, 0, epoch, last_lsn + 1)
        j.start(header, last_lsn)
        report.segment = header.segment
        report.last_lsn = last_lsn
        report.pending_messages = sum(self._live.values())
        report.keys = len(self._keys)
        return report

    def _rebuild_header(self, report: RecoveryReport, n: int, prev: Optional[SegmentHeader],
                        last: bool) -> Optional[SegmentHeader]:
        """A segment whose header does not verify: rebuild what replay needs from its first batch.

        Without a valid first batch only a segment with later ones is kept (its seal is lost, so
        the one before it is read to its end).  The damaged header is copied to quarantine/.
        """
        path = self._journal.path(n)
        with open(path, "rb") as f:
            head = f.read(SEGMENT_HEADER_SIZE + BATCH_HEADER_SIZE)
            if len(head) < SEGMENT_HEADER_SIZE:
                return None  # a crash while creating it: nothing was ever written after the header
            first = None
            if len(head) == SEGMENT_HEADER_SIZE + BATCH_HEADER_SIZE:
                length = int.from_bytes(head[SEGMENT_HEADER_SIZE + 4 : SEGMENT_HEADER_SIZE + 8], "little")
                f.seek(SEGMENT_HEADER_SIZE)
                first = verified_batch(f.read(min(BATCH_HEADER_SIZE + length, MAX_BATCH_PAYLOAD)), 0)
        if first is not None and (prev is None or first.epoch >= prev.epoch):
            epoch, first_lsn = first.epoch, first.lsn
        elif not last and prev is not None:
            epoch, first_lsn = prev.epoch, 0
        else:
            return None
        saved = copy_aside(self.directory, path, 0, SEGMENT_HEADER_SIZE)
        report.quarantined.append(saved)
        self._problem(
            report, logging.ERROR, "journal segment %s has a damaged header (copied to %s); rebuilt from its "
            "content: epoch %d, first lsn %s; the segment before it is read to its end", segment_name(n), saved,
            epoch, first_lsn or "unknown",
        )
        return SegmentHeader(n, -1, 0, epoch, first_lsn)

    def _skipped(self, report: RecoveryReport, n: int, skip: Skip) -> None:
        """Mid-segment damage that replay stepped over: log it and keep the bytes in quarantine/."""
        saved = copy_aside(self.directory, self._journal.path(n), skip.start, skip.end)
        if saved:
            report.quarantined.append(saved)
        report.skipped.append((n, skip.start, skip.end))
        lost = skip.resumed - skip.first_lost
        self._problem(
            report, logging.ERROR, "corrupt data in journal segment %s at offsets %d-%d (%s): skipped %d bytes "
            "(%d batch%s, lsn %d%s), copied to %s; replay resumed at the next valid batch (lsn %d)",
            segment_name(n), skip.start, skip.end, skip.why, skip.end - skip.start, lost, "" if lost == 1 else "es",
            skip.first_lost, "" if lost == 1 else f"-{skip.resumed - 1}", saved, skip.resumed,
        )

    def _damaged_sealed(self, report: RecoveryReport, n: int, scan: SegmentScan) -> None:
        """An older segment (sealed) ends badly: a torn tail of that segment only; later ones stay in the journal.

        Its bytes are left in place (the seal, not the file size, says where it ends)."""
        path = self._journal.path(n)
        end = min(scan.size, scan.limit)
        if scan.size < scan.limit:
            what = f"is {scan.size} bytes, shorter than its seal at {scan.limit} (a crash took bytes nobody fsynced)"
        else:
            what = f"has damage at offset {scan.end} ({scan.problem}) before its seal at {scan.limit}"
        saved = None if scan.blank_rest else copy_aside(self.directory, path, scan.end, end)
        if saved:
            report.quarantined.append(saved)
        self._problem(
            report, logging.ERROR if saved else logging.WARNING, "sealed journal segment %s %s: its last %d bytes "
            "are a torn tail%s; the following segments are kept and replayed",
            segment_name(n), what, max(0, scan.limit - scan.end), f", copied to {saved}" if saved else "",
        )

    def _cut(self, report: RecoveryReport, chain, k: int, scan: SegmentScan) -> None:
        """The newest segment ends badly: copy the rest aside, truncate it at the last valid batch."""
        n, _h = chain[k]
        path = self._journal.path(n)
        size = os.path.getsize(path)
        later = [m for m, _ in chain[k + 1 :]]
        if scan.torn and not later:
            self._problem(
                report, logging.WARNING, "torn tail in journal segment %s at offset %d (%s): "
                "truncated, %d bytes dropped", segment_name(n), scan.end, scan.problem, size - scan.end,
            )
        else:
            self._problem(
                report, logging.ERROR, "corrupt record in journal segment %s at offset %d (%s) with no valid batch "
                "after it: truncated, %d bytes copied to quarantine/%s", segment_name(n), scan.end, scan.problem,
                size - scan.end, f", later segments {later} moved to quarantine/" if later else "",
            )
        saved = None if scan.blank_rest else copy_aside(self.directory, path, scan.end, size)
        if saved:
            report.quarantined.append(saved)
        os.truncate(path, scan.end)
        for m in later:
            self._quarantine(report, self._journal.path(m))
        del chain[k + 1 :]

    # ================================================================ index mutations
    def _apply(self, op, segment: int, payload_offset: int) -> None:
        t = op.type
        if t == T_ADD:
            self._add(op.key, op.seq, segment, payload_offset + op.offset, op.length)
            if op.seq >= self._next_seq:
                self._next_seq = op.seq + 1
        elif t == T_ACK:
            self._ack(op.key, op.seq)
        elif t == T_MARK:
            self._mark(op.key, op.seq)
        elif t == T_META:
            self._meta(op.key, op.text)
        elif t == T_DEL:
            self._delete(op.key)
        elif t == T_DUP:
            self._audit.add(audit_key(op.key, op.text))

    def _add(self, key: str, seq: int, segment: int, offset: int, length: int) -> None:
        ki = self._keys.get(key)
        if ki is None:
            ki = self._keys[key] = KeyIndex()
        ki.add(seq, segment, offset, length)
        self._live[segment] = self._live.get(segment, 0) + 1

    def _ack(self, key: str, seq: int) -> None:
        ki = self._keys.get(key)
        if ki is None:
            return
        seg = ki.ack(seq)
        if seg >= 0:
            self._live[seg] -= 1
            if ki.is_empty():
                del self._keys[key]

    def _mark(self, key: str, seq: int) -> None:
        ki = self._keys.get(key)
        if ki is None:
            ki = self._keys[key] = KeyIndex()
        if seq > ki.mark:
            ki.mark = seq

    def _meta(self, key: str, value: str) -> None:
        ki = self._keys.get(key)
        if ki is None:
            ki = self._keys[key] = KeyIndex()
        ki.meta = value

    def _delete(self, key: str) -> None:
        ki = self._keys.pop(key, None)
        if ki is None:
            return
        for seg in ki.clear():
            self._live[seg] -= 1

    # ================================================================ write path
    def append(self, ops: Iterable[Op]) -> int:
        """Write ``ops`` as one atomic batch; returns its lsn (durable once ``durable_lsn >= lsn``).

        Seqs given to the AddMessages are in ``last_seqs``.  Raises TypeError/ValueError
        on a malformed op (nothing written), StoreFenced if we are no longer master,
        StoreError on an I/O error.
        """
        if not self._open:
            raise StoreError("the store is not open; call open(epoch) first")
        ops = list(ops)
        if not ops:
            self.last_seqs = []
            return self._journal.written_lsn
        seq = self._next_seq
        seqs: List[int] = []
        records: List[bytes] = []
        for op in ops:
            if type(op) is AddMessage:
                records.append(encode_add(seq, op))
                seqs.append(seq)
                seq += 1
            else:
                records.append(encode_op(op))
        payload = b"".join(records)
        if len(payload) > MAX_BATCH_PAYLOAD:
            raise ValueError(
                f"batch of {len(payload)} bytes is over the {MAX_BATCH_PAYLOAD}-byte limit; split it into smaller appends"
            )
        lsn, segment, pos = self._journal.write(payload)
        self._next_seq = seq
        i = 0
        for op, rec in zip(ops, records):
            cls = type(op)
            if cls is AddMessage:
                self._add(op.key, seqs[i], segment, pos, len(rec))
                i += 1
            elif cls is Ack:
                self._ack(op.key, op.seq)
            elif cls is MarkDispatched:
                self._mark(op.key, op.seq)
            elif cls is PutMeta:
                self._meta(op.key, op.value)
            elif cls is DeleteKey:
                self._delete(op.key)
            elif cls is RememberId:
                self._audit.add(audit_key(op.scope, op.duplicate_id))
            pos += len(rec)
        self.last_seqs = seqs
        return lsn

    def sync(self) -> int:
        """fsync everything appended so far (safe to run in a worker thread); returns durable_lsn."""
        return self._journal.sync()

    @property
    def durable_lsn(self) -> int:
        """Highest lsn that survives a crash (as far as the sync strategy promises)."""
        return self._journal.durable_lsn

    @property
    def written_lsn(self) -> int:
        """Highest lsn appended (maybe not yet durable)."""
        return self._journal.written_lsn

    # ================================================================ read path
    def keys(self) -> List[str]:
        """Keys with pending messages, a dispatch mark or metadata."""
        return sorted(self._keys)

    def pending_count(self, key: str) -> int:
        ki = self._keys.get(key)
        return ki.pending_count() if ki else 0

    def total_pending(self) -> int:
        return sum(self._live.values())

    def iter_pending(self, key: str, after_seq: int = -1) -> Iterator[Ref]:
        """Pending refs of ``key`` in seq order, paged from the index (safe to ack while iterating)."""
        while True:
            ki = self._keys.get(key)
            if ki is None:
                return
            page = ki.page(key, after_seq, PAGE)
            if not page:
                return
            for ref in page:
                if ki.find(ref.seq) is not None:
                    yield ref
            after_seq = page[-1].seq

    def read(self, ref: Ref) -> StoredMessage:
        """Read a pending message from its segment; raises StoreError if the bytes on disk are damaged."""
        try:
            data = self._journal.pread(ref.segment, ref.offset, ref.length)
        except StoreError:
            ki = self._keys.get(ref.key)
            if ki is None or ki.find(ref.seq) is None:
                raise KeyError(f"message {ref.seq} of {ref.key!r} is no longer pending") from None
            raise
        try:
            seq, key, message_id, headers, body = decode_add(data)
            if seq != ref.seq or key != ref.key:
                raise ValueError(f"it holds message {seq} of {key!r}")
        except ValueError as exc:
            raise StoreError(
                f"message {ref.seq} of {ref.key!r} in {segment_name(ref.segment)} at offset {ref.offset} "
                f"is damaged on disk ({exc}); restore the store from a backup or drop the message"
            ) from None
        ki = self._keys.get(key)
        return StoredMessage(key, seq, message_id, headers, body, ki is not None and seq <= ki.recovered_mark)

    def stats(self) -> Dict[str, int]:
        """Figures for /status and /metrics; cheap (no disk access)."""
        j = self._journal
        return {
            "pendingMessages": self.total_pending(),
            "keys": len(self._keys),
            "writtenLsn": j.written_lsn,
            "durableLsn": j.durable_lsn,
            "checkpointLsn": max(self._ckpt_lsn, 0),
            "segment": j.segment,
            "segmentBytes": j.offset,
            "auditSize": len(self._audit),
        }

    def is_duplicate(self, scope: str, duplicate_id: str) -> bool:
        """True when a message with this duplicate id was stored under ``scope`` recently.

        The audit holds the ids of the last ``audit_size`` :class:`RememberId` ops
        (a producer's ``_AMQ_DUPL_ID`` per destination), never message ids.
        """
        return audit_key(scope, duplicate_id) in self._audit

    def get_meta(self, key: str) -> Optional[str]:
        ki = self._keys.get(key)
        return ki.meta if ki else None

    def get_mark(self, key: str) -> int:
        """Highest seq of ``key`` recorded as dispatched (-1 if none)."""
        ki = self._keys.get(key)
        return ki.mark if ki else -1

    # ================================================================ housekeeping
    def maybe_checkpoint(self, now: Optional[float] = None) -> bool:
        """Checkpoint if ``checkpoint_interval_ms`` passed (``now`` is time.monotonic()); True if written."""
        snap = self.maybe_snapshot_checkpoint(now)
        if snap is None:
            return False
        self.write_checkpoint(snap)
        return True

    def checkpoint_due(self, now: Optional[float] = None) -> bool:
        """``checkpoint_interval_ms`` passed, or ``checkpoint_journal_bytes`` were written, since the last one.

        The byte bound is what keeps a takeover's replay bounded under a heavy load.
        """
        now = time.monotonic() if now is None else now
        if now - self._last_checkpoint >= self.checkpoint_interval:
            return True
        return self._journal.bytes_written - self._ckpt_bytes >= self.checkpoint_journal_bytes

    def maybe_snapshot_checkpoint(self, now: Optional[float] = None) -> Optional["CheckpointSnapshot"]:
        """Like ``maybe_checkpoint`` but only phase 1; hand the result to ``write_checkpoint`` in a worker.

        With a deep store the file write + fsync takes a while (about 25 MiB per
        million pending messages); doing it in a thread keeps the event loop free.
        """
        now = time.monotonic() if now is None else now
        if not self._open or not self.checkpoint_due(now):
            return None
        self._last_checkpoint = now
        if self._journal.written_lsn == self._ckpt_lsn:
            return None
        return self.snapshot_checkpoint()

    def checkpoint(self) -> None:
        """Write the index so the next open replays only what follows; fsyncs the journal first."""
        self.write_checkpoint(self.snapshot_checkpoint())

    def snapshot_checkpoint(self) -> "CheckpointSnapshot":
        """Phase 1, in the thread that appends: serialise the index (tens of ms for a million messages)."""
        if not self._open:
            raise StoreError("the store is not open; call open(epoch) first")
        j = self._journal
        lsn, seg, off = j.written_lsn, j.segment, j.offset
        self._ckpt_bytes = j.bytes_written
        live = {s: n for s, n in self._live.items() if n > 0}
        self._live = live
        parts = encode_checkpoint(
            Checkpoint(lsn, seg, off, self._next_seq, self.epoch, self._keys, live, self._audit.ids())
        )
        return CheckpointSnapshot(lsn, seg, parts)

    def write_checkpoint(self, snap: "CheckpointSnapshot") -> None:
        """Phase 2, may run in a worker thread: fsync the journal, fence, write the file atomically."""
        j = self._journal
        j.sync(force=True)  # the checkpoint must never cover batches a crash could still lose
        j._check_fence()
        try:
            had_current = os.path.exists(os.path.join(self.directory, CKPT_NAME))
            write_checkpoint_file(self.directory, snap.parts)
        except OSError as exc:
            raise StoreError(f"cannot write checkpoint in {self.directory}: {exc}") from exc
        segments = dict(self._ckpt_segments)
        if had_current and CKPT_NAME in segments:
            segments[CKPT_PREV] = segments[CKPT_NAME]
        segments[CKPT_NAME] = snap.segment
        self._ckpt_segments = segments  # one assignment: cleanup sees the old or the new map
        self._ckpt_lsn = snap.lsn

    def maybe_cleanup(self, now: Optional[float] = None) -> List[int]:
        """Cleanup if ``cleanup_interval_ms`` passed; returns the deleted segment numbers."""
        now = time.monotonic() if now is None else now
        if not self._open or now - self._last_cleanup < self.cleanup_interval:
            return []
        self._last_cleanup = now
        return self.cleanup()

    def cleanup(self) -> List[int]:
        """Delete segments with no pending message that both kept checkpoints start after."""
        if not self._open or not self._ckpt_segments:
            return []
        floor = min(self._ckpt_segments.values())
        deleted: List[int] = []
        try:
            existing = list_segments(self.directory)
        except OSError as exc:
            raise StoreError(f"cannot list the journal in {self.directory}: {exc}") from exc
        for n in existing:
            if n >= floor or n == self._journal.segment or self._live.get(n, 0) > 0:
                continue
            self._journal._check_fence()
            self._journal.forget(n)
            try:
                os.unlink(self._journal.path(n))
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StoreError(f"cannot delete journal segment {segment_name(n)}: {exc}") from exc
            self._live.pop(n, None)
            deleted.append(n)
        if deleted:
            log.info("cleanup deleted journal segments %s (all their messages acked)", deleted)
        return deleted

    def close(self, checkpoint: bool = True) -> None:
        """Checkpoint (so the next start is fast), fsync and close; a fenced store writes nothing."""
        if not self._open:
            return
        try:
            if checkpoint and self._journal.written_lsn != self._ckpt_lsn:
                self.checkpoint()
            else:
                self._journal.sync(force=True)
        except StoreError as exc:
            log.warning("store %s closed without a final checkpoint: %s", self.directory, exc)
        finally:
            self._journal.close()
            self._open = False

    def __enter__(self) -> "MessageStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _peek_checkpoint_segment(path: str) -> Optional[int]:
    """The replay segment named in a checkpoint's header, without reading the whole file."""
    try:
        with open(path, "rb") as f:
            head = f.read(CKPT_HEAD.size)
    except OSError:
        return None
    if len(head) < CKPT_HEAD.size or head[:8] != CKPT_MAGIC:
        return None
    return CKPT_HEAD.unpack_from(head)[3]
