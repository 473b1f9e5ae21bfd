"""The durability tracker: what must reach the disk, what waits for it, and what may be released. Sans-IO.

Every effect that needs the disk goes through one object, in this order::

    engine decides effects -> tracker writes them (one batch, a token) -> group commit:
    fence, write, fsync, fence again (hamq.store) -> tracker.release(durable): outputs whose
    tokens are durable go out, in order per connection, and only while the lease is serving

A *token* is the store lsn an output waits for (0: nothing on disk). The store
alone says what is durable: ``MessageStore.sync()`` returns an lsn only after
its second fence check, so a master that lost the store between the write and
the fsync never reports, and so never releases, anything. The ``gate`` (the
master term's lease validity, see ``hamq.term``) is asked before anything is
released: while a pause casts doubt on the lease, nothing goes out, durable or
not.

Effects that have no output of their own (an ack, a dispatch mark, a durable
subscription change) are *deferred*: they ride in the next batch, in front of
whatever that batch writes, and outputs that depend on them (a MESSAGE whose
dispatch mark must be durable first, an auto-acked delivery, a receipt of an
ACK) wait for that batch (:meth:`after_next_batch`). An output may also carry
effects that must *follow* it (``Output.after_release``: an auto-acked
delivery's Ack); they are deferred only when the output is released.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Deque, Dict, Iterable, List, Optional, Tuple

from hamq.store.ops import MarkDispatched


class DurabilityTracker:
    """One master term's bookkeeping of store writes and held outputs; see the module docstring."""

    def __init__(self, store=None) -> None:
        self.store = store
        #: Asked before anything is released (the lease is serving); set by the master term.
        self.gate: Callable[[], bool] = lambda: True
        self._deferred: list = []
        self._marks: Dict[str, int] = {}
        self._next_batch: list = []  # outputs that wait for whatever the next batch writes
        self._held: Dict[object, Deque] = {}  # conn_id -> outputs in order

    # ------------------------------------------------------------------ write side (the engine)
    def append(self, ops: Iterable) -> int:
        """Write one atomic batch now: deferred effects first, then ``ops``. Returns its token.

        ``store.last_seqs`` holds the seqs given to the AddMessages, as after ``store.append``.
        """
        batch = self._deferred
        self._deferred = []
        if self._marks:
            batch.extend(MarkDispatched(key, seq) for key, seq in self._marks.items())
            self._marks = {}
        batch.extend(ops)
        token = self.store.append(batch)
        for out in self._next_batch:
            if out.after_lsn < token:
                out.after_lsn = token
        self._next_batch = []
        return token

    def defer(self, op) -> None:
        """An effect for the next batch (an Ack, a DeleteKey, a PutMeta); nothing without a store."""
        if self.store is not None:
            self._deferred.append(op)

    def mark(self, key: str, seq: int) -> None:
        """``seq`` of ``key`` was handed to a consumer; the highest per key rides in the next batch."""
        if self.store is not None and seq > self._marks.get(key, -1):
            self._marks[key] = seq

    def after_next_batch(self, out) -> None:
        """``out`` may only go out once the effects deferred so far are durable."""
        if self.store is not None:
            self._next_batch.append(out)

    def token_now(self) -> int:
        """The token of everything written so far (what a duplicate's receipt waits for)."""
        return self.store.written_lsn if self.store is not None else 0

    def end_round(self) -> None:
        """End of an event-loop round: write the deferred effects; settle who waits for them."""
        if self.store is None:
            self._next_batch = []
            return
        if self._deferred or self._marks:
            self.append([])
        elif self._next_batch:
            written = self.store.written_lsn
            for out in self._next_batch:
                if out.after_lsn < written:
                    out.after_lsn = written
            self._next_batch = []

    # ------------------------------------------------------------------ release side (the server)
    def hold(self, outputs: Iterable) -> None:
        """Queue outputs per connection, in the order the engine made them."""
        held = self._held
        for out in outputs:
            queue = held.get(out.conn_id)
            if queue is None:
                queue = held[out.conn_id] = deque()
            queue.append(out)

    def release(self, durable: int, conn_ids: Optional[Iterable] = None) -> List[Tuple[object, list]]:
        """Outputs that may go out now: per connection, in order, up to the first whose token is not
        durable. Nothing at all while the gate is closed. ``conn_ids``: look only at these."""
        if not self.gate():
            return []
        held = self._held
        out: List[Tuple[object, list]] = []
        for conn_id in list(held if conn_ids is None else conn_ids):
            queue = held.get(conn_id)
            if not queue:
                continue
            ready = []
            while queue and queue[0].after_lsn <= durable:
                ready.append(queue.popleft())
            if not queue:
                del held[conn_id]
            if ready:
                out.append((conn_id, ready))
        return out

    def unrelease(self, conn_id, outputs: List) -> None:
        """Put outputs that :meth:`release` gave out back in front (the gate closed before they were written)."""
        queue = self._held.get(conn_id)
        if queue is None:
            queue = self._held[conn_id] = deque()
        queue.extendleft(reversed(outputs))

    def released(self, outputs: Iterable) -> None:
        """``outputs`` were handed to their connection: their after-release effects join the next batch."""
        if self.store is None:
            return
        for out in outputs:
            if out.after_release:
                self._deferred.extend(out.after_release)

    def pending_effects(self) -> bool:
        """Deferred effects or marks wait for a batch (the caller should end a round soon)."""
        return bool(self._deferred or self._marks)

    def waiting(self) -> int:
        """Connections with outputs held for the disk (or the gate)."""
        return len(self._held)

    def forget(self, conn_id) -> None:
        """The connection is gone: what it waited for will never be written to it."""
        self._held.pop(conn_id, None)
