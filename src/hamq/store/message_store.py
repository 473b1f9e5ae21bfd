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
resynchronises on the next batch that verifies (hamq.store.scan; the replay
itself is hamq.store.recovery), logs an ERROR naming the segment, the
offsets and the bytes skipped, and delivers every intact batch, so one
flipped bit costs at most the batch it hits.  A
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

Cleanup.  A segment goes once no checkpoint starts in or before it and a
replay of the whole journal no longer needs it; what such a replay would
still need is carried forward first (hamq.store.retention).

Threads.  Everything is meant for one thread (the event loop) except
``sync()`` and ``write_checkpoint()``, which may run in a worker thread while
that thread keeps appending.  Stop such workers before ``close()``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Set

from hamq.store.audit import DuplicateAudit
from hamq.store.codec import (
    MAX_BATCH_PAYLOAD,
    T_ACK,
    T_ADD,
    T_DEL,
    T_DUP,
    T_MARK,
    T_META,
    decode_add,
    encode_add,
    encode_op,
)
from hamq.store.errors import StoreError
from hamq.store.index import (
    CKPT_NAME,
    CKPT_PREV,
    Checkpoint,
    KeyIndex,
    encode_checkpoint,
)
from hamq.store.index import (
    write_checkpoint as write_checkpoint_file,
)
from hamq.store.journal import (
    SYNC_STRATEGIES,
    Journal,
    segment_name,
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
from hamq.store.recovery import Recovery, RecoveryReport
from hamq.store.retention import Retention

log = logging.getLogger("hamq.store")

MiB = 1024 * 1024
PAGE = 1024  # refs per page in iter_pending
#: default of checkpointJournalBytes: a checkpoint is due once this much journal was written since the last
CHECKPOINT_JOURNAL_BYTES = 32 * MiB


def audit_key(scope: str, duplicate_id: str) -> str:
    """One audit entry: unambiguous for any characters in either part."""
    return f"{len(scope)}:{scope}{duplicate_id}"


class CheckpointSnapshot(NamedTuple):
    """A serialised index waiting to be written by ``write_checkpoint``."""

    lsn: int
    segment: int
    parts: List[bytes]


class MessageStore(Recovery, Retention):
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
        # retention bookkeeping, see cleanup(): segment -> older segments its acks point into (KahaDB's
        # ackMessageFileMap; carried forward before a delete), segment -> older segments holding records its
        # DeleteKey/PutMeta override (it stays while they do), segment -> [first, last] seq added in it
        self._acks: Dict[int, Set[int]] = {}
        self._holds: Dict[int, Set[int]] = {}
        self._seqs: Dict[int, List[int]] = {}
        self._pinned: Set[int] = set()  # segments kept because an older checkpoint did not say what they hold
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

    # ================================================================ index mutations
    def _apply(self, op, segment: int, payload_offset: int) -> None:
        t = op.type
        if t == T_ADD:
            self._add(op.key, op.seq, segment, payload_offset + op.offset, op.length)
            if op.seq >= self._next_seq:
                self._next_seq = op.seq + 1
        elif t == T_ACK:
            self._ack(op.key, op.seq, segment)
        elif t == T_MARK:
            self._mark(op.key, op.seq, segment)
        elif t == T_META:
            self._meta(op.key, op.text, segment)
        elif t == T_DEL:
            self._delete(op.key, segment)
        elif t == T_DUP:
            self._audit.add(audit_key(op.key, op.text))

    def _add(self, key: str, seq: int, segment: int, offset: int, length: int) -> None:
        ki = self._keys.get(key)
        if ki is None:
            ki = self._keys[key] = KeyIndex()
        ki.add(seq, segment, offset, length)
        self._live[segment] = self._live.get(segment, 0) + 1
        r = self._seqs.get(segment)
        if r is None:
            self._seqs[segment] = [seq, seq]
        elif seq > r[1]:
            r[1] = seq

    def _ack(self, key: str, seq: int, segment: int) -> None:
        ki = self._keys.get(key)
        seg = ki.ack(seq) if ki is not None else -1
        if seg >= 0:
            self._live[seg] -= 1
            self._refer(self._acks, segment, seg)
            if ki.is_empty():
                del self._keys[key]
        else:  # a repeated ack, or one cleanup carried forward: it still counts while its message's segment is there
            self._refer(self._acks, segment, self._segment_of(seq))

    def _mark(self, key: str, seq: int, segment: int) -> None:
        ki = self._keys.get(key)
        if ki is None:
            ki = self._keys[key] = KeyIndex()
        if seq >= ki.mark:  # an older mark never lowers it on replay, so only the latest record counts
            ki.mark = seq
            ki.mark_seg = segment

    def _meta(self, key: str, value: str, segment: int) -> None:
        ki = self._keys.get(key)
        if ki is None:
            ki = self._keys[key] = KeyIndex()
        ki.meta = value
        self._refer(self._holds, segment, ki.meta_seg)
        ki.meta_seg = segment

    def _delete(self, key: str, segment: int) -> None:
        ki = self._keys.pop(key, None)
        if ki is None:
            return
        self._refer(self._holds, segment, ki.meta_seg)
        self._refer(self._holds, segment, ki.mark_seg)
        for seg in ki.clear():
            self._live[seg] -= 1
            self._refer(self._holds, segment, seg)

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
                self._ack(op.key, op.seq, segment)
            elif cls is MarkDispatched:
                self._mark(op.key, op.seq, segment)
            elif cls is PutMeta:
                self._meta(op.key, op.value, segment)
            elif cls is DeleteKey:
                self._delete(op.key, segment)
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
        info = {
            s: (self._seqs.get(s, (-1, -1)), sorted(self._acks.get(s, ())), sorted(self._holds.get(s, ())))
            for s in set(self._seqs) | set(self._acks) | set(self._holds)
        }
        parts = encode_checkpoint(
            Checkpoint(
                lsn, seg, off, self._next_seq, self.epoch, self._keys, live, self._audit.ids(), info,
                sorted(self._pinned),
            )
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
