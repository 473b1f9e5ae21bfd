"""Cleanup: which journal segments may go, and what is carried forward first so that they may.

A mixin of :class:`hamq.store.message_store.MessageStore` (the index mutations keep the
bookkeeping up to date: ``_acks``, ``_holds``, ``_seqs`` and each key's ``meta_seg`` /
``mark_seg``); kept apart so that each module holds one concept.
"""

from __future__ import annotations

import logging
import os
from typing import Dict, List, Set

from hamq.store.codec import MAX_BATCH_PAYLOAD, SEGMENT_HEADER_SIZE, T_ACK, encode_op
from hamq.store.errors import StoreError
from hamq.store.journal import list_segments, segment_name
from hamq.store.ops import Ack, MarkDispatched, Op, PutMeta
from hamq.store.scan import segment_ops

log = logging.getLogger("hamq.store")


class Retention:
    """``cleanup`` and its bookkeeping helpers."""

    @staticmethod
    def _refer(refs: Dict[int, Set[int]], segment: int, older: int) -> None:
        """A record in ``segment`` undoes or supersedes one in ``older``: a replay needs it while ``older`` exists."""
        if 0 <= older < segment:
            s = refs.get(segment)
            if s is None:
                refs[segment] = {older}
            else:
                s.add(older)

    def _segment_of(self, seq: int) -> int:
        """The segment that holds (or held) message ``seq``, -1 if no segment left has it."""
        for seg, (lo, hi) in self._seqs.items():
            if lo <= seq <= hi:
                return seg
        return -1

    def cleanup(self) -> List[int]:
        """Delete the segments that neither a checkpoint nor a replay of the whole journal still needs.

        A segment goes only once both kept checkpoints start after it and it holds no
        pending message.  A replay without a usable checkpoint must still rebuild the
        same index from the segments left, so before the unlink the records in it
        that such a replay needs are carried forward: appended again to the current
        segment and fsynced (the latest PutMeta of a key with metadata, i.e. a
        durable subscription; the latest mark of a key with pending messages; acks
        of messages in segments that stay).  That is what KahaDB does with its
        ackMessageFileMap plus ack compaction, chosen over only keeping such
        segments: keeping alone chains (segment N+1 acks messages of N, ...), so one
        stuck message or one idle durable would keep the whole journal forever.
        Acks are idempotent and a PutMeta/mark carried forward holds the current
        value, so a crash half-way only leaves harmless repeats.  A segment whose
        DeleteKey or superseding PutMeta overrides records in a segment that stays
        (rare: an unsubscribe) is kept instead, as is one that does not read back
        cleanly.  Refs always point to older segments, so one ascending pass frees
        chains.
        """
        if not self._open or not self._ckpt_segments:
            return []
        floor = min(self._ckpt_segments.values())
        deleted: List[int] = []
        try:
            existing = list_segments(self.directory)
        except OSError as exc:
            raise StoreError(f"cannot list the journal in {self.directory}: {exc}") from exc
        meta_at: Dict[int, List[str]] = {}
        mark_at: Dict[int, List[str]] = {}
        for key, ki in self._keys.items():
            if ki.meta is not None:
                meta_at.setdefault(ki.meta_seg, []).append(key)
            if ki.mark >= 0 and ki.pending_count():
                mark_at.setdefault(ki.mark_seg, []).append(key)
        present = set(existing)
        for n in existing:
            if n >= floor or n == self._journal.segment or self._live.get(n, 0) > 0 or n in self._pinned:
                continue
            if not present.isdisjoint(self._holds.get(n, ())):
                continue
            carry: List[Op] = []
            targets = present.intersection(self._acks.get(n, ()))
            if targets:
                ops = segment_ops(self._journal.path(n), SEGMENT_HEADER_SIZE)
                if ops is None:
                    log.warning("cleanup keeps %s: it does not read back cleanly", segment_name(n))
                    continue
                carry += [Ack(op.key, op.seq) for op in ops if op.type == T_ACK and self._segment_of(op.seq) in targets]
            carry += [PutMeta(k, self._keys[k].meta) for k in meta_at.get(n, ())]
            carry += [MarkDispatched(k, self._keys[k].mark) for k in mark_at.get(n, ())]
            if carry:
                self._carry_forward(carry)
            self._journal._check_fence()
            self._journal.forget(n)
            try:
                os.unlink(self._journal.path(n))
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StoreError(f"cannot delete journal segment {segment_name(n)}: {exc}") from exc
            self._live.pop(n, None)
            present.discard(n)
            deleted.append(n)
        present.update(list_segments(self.directory))  # carrying forward may have rolled to a new segment
        self._pinned.intersection_update(present)
        # forget what points only into segments that are gone, so the bookkeeping stays as small as the journal
        for refs in (self._acks, self._holds):
            for s in list(refs):
                if s not in present or present.isdisjoint(refs[s]):
                    del refs[s]
                else:
                    refs[s].intersection_update(present)
        for s in [s for s in self._seqs if s not in present]:
            del self._seqs[s]
        if deleted:
            log.info("cleanup deleted journal segments %s (nothing in them is needed any more)", deleted)
        return deleted

    def _carry_forward(self, ops: List[Op]) -> None:
        """Append ``ops`` (in batches under the size limit) and fsync them, before the segment they copy goes."""
        batch: List[Op] = []
        size = 0
        for op in ops:
            n = len(encode_op(op))
            if batch and size + n > MAX_BATCH_PAYLOAD:
                self.append(batch)
                batch, size = [], 0
            batch.append(op)
            size += n
        if batch:
            self.append(batch)
        self._journal.sync(force=True)

