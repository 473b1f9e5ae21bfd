"""Recovery of a store directory at ``open()``: the segment chain, the checkpoint, the replay, the seal.

A mixin of :class:`hamq.store.message_store.MessageStore` (what recovery does is
described there, under Recovery); kept apart so that each module holds one concept.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from hamq.store.audit import DuplicateAudit
from hamq.store.codec import (
    BATCH_HEADER_SIZE,
    MAX_BATCH_PAYLOAD,
    SEGMENT_HEADER_SIZE,
    SegmentHeader,
    iter_ops,
)
from hamq.store.errors import StoreError, StoreFenced
from hamq.store.index import (
    CKPT_HEAD_V1,
    CKPT_MAGIC,
    CKPT_MAGIC_V1,
    CKPT_NAME,
    CKPT_PREV,
    Checkpoint,
    decode_checkpoint,
    fsync_dir,
)
from hamq.store.journal import (
    blank_file_range,
    copy_aside,
    list_segments,
    quarantine_path,
    read_segment_header,
    segment_name,
    sync_file,
)
from hamq.store.scan import SegmentScan, Skip, verified_batch

log = logging.getLogger("hamq.store")


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


class Recovery:
    """``_recover`` and its helpers; the index mutations (``_apply``) come from MessageStore."""

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
        self._acks, self._holds, self._seqs, self._pinned = {}, {}, {}, set()
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
        tried = []  # checkpoint files found (and found unusable, unless one is used)
        for name in (CKPT_NAME, CKPT_PREV):
            path = os.path.join(d, name)
            if not os.path.exists(path):
                continue
            tried.append(name)
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
            for s, (seqs, acks, holds) in ckpt.segments.items():
                if seqs[0] >= 0:
                    self._seqs[s] = list(seqs)
                if acks:
                    self._acks[s] = set(acks)
                if holds:
                    self._holds[s] = set(holds)
            self._pinned = set(ckpt.pinned)
            if ckpt.legacy:
                # format 1 did not record which segments hold metadata, marks or acks a replay of the
                # whole journal needs: keep every segment it covers rather than guess
                self._pinned.update(n for n, _ in chain if n <= ckpt.segment)
                log.warning(
                    "checkpoint %s is of the older format 1: cleanup keeps journal segments %s (it does not "
                    "say which of them a replay without a checkpoint still needs)",
                    report.checkpoint, sorted(self._pinned),
                )
            start_k, pos, next_lsn = position[ckpt.segment], ckpt.offset, ckpt.lsn + 1
        elif chain:
            start_k, pos, next_lsn = 0, SEGMENT_HEADER_SIZE, chain[0][1].first_lsn
            missing = chain[-1][0] - len(chain)  # segment numbers below the newest that are not there
            if tried or missing or next_lsn > 1:
                self._problem(
                    report, logging.ERROR, "no usable checkpoint (%s): rebuilding the index by replaying the "
                    "whole journal, segments %s to %s from lsn %d; %d older or intermediate segments were "
                    "deleted by cleanup or lost: a cleanup of this version deletes only what such a replay "
                    "does not need, but the duplicate-id audit they held is gone, and if an older version "
                    "cleaned them, durable subscriptions may be missing and acked messages may come back; "
                    "check the destinations",
                    ", ".join(f"{t} unusable" for t in tried) or "none found", segment_name(chain[0][0]),
                    segment_name(chain[-1][0]), next_lsn, missing,
                )
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


def _peek_checkpoint_segment(path: str) -> Optional[int]:
    """The replay segment named in a checkpoint's header, without reading the whole file."""
    try:
        with open(path, "rb") as f:
            head = f.read(CKPT_HEAD_V1.size)
    except OSError:
        return None
    if len(head) < CKPT_HEAD_V1.size or head[:8] not in (CKPT_MAGIC, CKPT_MAGIC_V1):
        return None
    return CKPT_HEAD_V1.unpack_from(head)[3]  # the same prefix in both formats
