"""What a failover client must replay, or report, when its connection drops. Sans-IO.

This is the bookkeeping half of :class:`hamq.client.failover.FailoverClient`,
kept free of sockets and threads so the rules can be tested by calling
methods: which frames wait for a RECEIPT, which of them are written again on
the next broker, which subscriptions are replayed, and which outcomes became
unknowable and must be raised to the caller.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from hamq.client.errors import ClientError, SendInDoubt, TransactionInDoubt
from hamq.stomp.codec import Frame


@dataclass
class Pending:
    """A frame sent with a receipt request whose RECEIPT has not arrived yet."""

    receipt: str
    frame: Frame
    kind: str  # send | begin | commit | abort | subscribe | unsubscribe | disconnect
    persistent: bool = False
    transaction: Optional[str] = None
    message_id: Optional[str] = None
    #: Written again on the next broker when the connection drops (a durable UNSUBSCRIBE).
    resend: bool = False
    #: Generation of the connection it was last written on (None: held back, not written yet).
    written: Optional[int] = None
    #: How many times it was written again after a failover.
    resent: int = 0
    done: bool = False
    error: Optional[Exception] = None

    @property
    def replayable(self) -> bool:
        """Written again on the next broker rather than settled when the connection drops."""
        if self.kind == "send":
            return self.persistent and self.transaction is None
        return self.resend


class FailoverTracker:
    """Pending receipts, live subscriptions and open transactions of one client.

    Subscriptions are any objects with an ``id`` and a ``frame()`` that
    builds their SUBSCRIBE frame.
    """

    def __init__(self) -> None:
        self.pending: "OrderedDict[str, Pending]" = OrderedDict()
        self.sends_in_flight = 0
        self.subscriptions: "OrderedDict[str, object]" = OrderedDict()
        self.transactions: Dict[str, str] = {}  # id -> "open" | "in-doubt"
        #: Replay one frame at a time: a connection died on an ERROR that named no frame.
        self.probation = False
        #: Frames :meth:`replay` held back on probation, written one by one by :meth:`next_held`.
        self.held: List[Pending] = []

    # -- receipts

    def add(self, pending: Pending) -> Pending:
        """Track ``pending`` and stamp its frame with the receipt request."""
        if pending.receipt in self.pending:
            raise ValueError(f"receipt id {pending.receipt!r} is already pending")
        pending.frame.set("receipt", pending.receipt)
        self.pending[pending.receipt] = pending
        if pending.kind == "send":
            self.sends_in_flight += 1
        return pending

    def _settle(self, pending: Pending, error: Optional[Exception]) -> None:
        self.pending.pop(pending.receipt, None)
        pending.done = True
        pending.error = error
        if pending.kind == "send":
            self.sends_in_flight -= 1

    def receipt(self, receipt_id: str) -> Optional[Pending]:
        """A RECEIPT arrived: the broker has the frame. Returns what it settled, if anything."""
        pending = self.pending.get(receipt_id)
        if pending is not None:
            self._settle(pending, None)
        return pending

    def error(self, receipt_id: str, exc: Exception) -> Optional[Pending]:
        """An ERROR answered a receipted frame; the caller gets ``exc``."""
        pending = self.pending.get(receipt_id)
        if pending is not None:
            self._settle(pending, exc)
        return pending

    def forget(self, pending: Pending) -> None:
        """The caller gave up waiting (timeout): the frame is no longer resent."""
        if self.pending.get(pending.receipt) is pending:
            self.pending.pop(pending.receipt)
            if pending.kind == "send":
                self.sends_in_flight -= 1

    # -- transactions

    def begin(self, tx: str) -> None:
        if tx in self.transactions:
            raise ClientError(f"transaction {tx!r} is already open. Fix: commit or abort it first")
        self.transactions[tx] = "open"

    def end(self, tx: str) -> Optional[str]:
        """Forget ``tx``; returns the state it was in (None if unknown)."""
        return self.transactions.pop(tx, None)

    def check_transaction(self, tx: Optional[str]) -> None:
        """Raise unless ``tx`` is None or open on the current connection."""
        if tx is None:
            return
        state = self.transactions.get(tx)
        if state is None:
            raise ClientError(f"unknown transaction {tx!r}. Fix: pass an id returned by begin()")
        if state == "in-doubt":
            raise TransactionInDoubt(
                f"transaction {tx} was open when the connection failed over; the broker rolled it back. "
                f"Fix: abort({tx!r}) and redo the work in a new transaction",
                tx,
            )

    # -- failover

    def connection_lost(self, broker: str) -> List[Tuple[Pending, Exception]]:
        """Settle everything the lost connection took with it; return what failed and why.

        Open transactions become in-doubt (the broker rolls back a
        transaction whose connection dies). Persistent sends stay pending: they
        are resent. Everything else waiting for a receipt either has a known
        outcome on a fresh connection (begin, abort, subscribe, a plain
        unsubscribe, disconnect) or an unknowable one, which becomes an error.
        A durable unsubscribe stays pending too: the old master may never have
        seen it, so only the next master's RECEIPT settles it.
        """
        for tx, state in self.transactions.items():
            if state == "open":
                self.transactions[tx] = "in-doubt"
        failed: List[Tuple[Pending, Exception]] = []
        for pending in list(self.pending.values()):
            error: Optional[Exception] = None
            if pending.kind == "send" and pending.transaction is not None:
                error = TransactionInDoubt(
                    f"send of {pending.message_id} in transaction {pending.transaction} was cut off by a failover "
                    f"from {broker}; the broker rolled the transaction back. Fix: abort it and redo the work",
                    pending.transaction,
                )
            elif pending.kind == "send" and not pending.persistent:
                error = SendInDoubt(
                    f"non-persistent message {pending.message_id} was not receipted before the connection to "
                    f"{broker} failed; it may be lost. Fix: send it again with message_id={pending.message_id!r}, "
                    f"or send persistent messages",
                    pending.message_id or "",
                )
            elif pending.kind == "commit":
                error = TransactionInDoubt(
                    f"the connection to {broker} failed while COMMIT of {pending.transaction} was in flight; it "
                    f"may or may not have committed. Fix: check the destination before redoing the work",
                    pending.transaction or "",
                )
            elif pending.replayable:
                continue  # a persistent send outside a transaction, a durable unsubscribe: resent
            self._settle(pending, error)
            if error is not None:
                failed.append((pending, error))
        return failed

    def outstanding(self, generation: int) -> List[str]:
        """Receipts of the frames written on connection ``generation`` and not answered yet."""
        return [p.receipt for p in self.pending.values() if p.written == generation]

    def fatal_error(self, generation: int, suspects: Optional[List[str]] = None) -> Optional[Pending]:
        """Connection ``generation`` ended after an ERROR that named no receipt: which frame was it?

        The broker answers frames in order and closes after a fatal ERROR, so
        if exactly one receipted frame was written on that connection and not
        answered, the ERROR is about that frame: it is poison and is returned
        (the caller fails it; it is never resent). With several outstanding it
        cannot be told; the next connection replays them one at a time
        (:attr:`probation`), so a frame that kills a second connection is the
        only one outstanding there. ``suspects`` (the :meth:`outstanding` when
        the ERROR arrived) leaves out frames written after it.
        """
        outstanding = [
            p for p in self.pending.values()
            if p.written == generation and (suspects is None or p.receipt in suspects)
        ]
        if len(outstanding) == 1:
            self.probation = False
            return outstanding[0]
        if any(p.replayable for p in outstanding):
            self.probation = True
        return None

    def replay(self, generation: int = 0) -> Tuple[List[Frame], List[Pending]]:
        """Frames for connection ``generation``: SUBSCRIBEs, then the frames to resend now.

        Resent SENDs are the very same frames (same ``message-id``,
        ``_AMQ_DUPL_ID`` and ``receipt``), so the broker's duplicate audit
        drops a copy it already has. On probation only the first is written
        now; the rest wait until it is answered (:meth:`next_held`).
        """
        subscribes = [sub.frame() for sub in self.subscriptions.values()]  # type: ignore[attr-defined]
        resend = [p for p in self.pending.values() if p.replayable]
        for pending in resend:
            pending.written = None
        if not resend:
            self.probation = False
        now, self.held = (resend[:1], resend[1:]) if self.probation else (resend, [])
        for pending in now:
            pending.written = generation
            pending.resent += 1
        return subscribes, now

    def next_held(self, generation: int) -> Optional[Pending]:
        """The next held-back frame still pending, marked written on ``generation``; None when all are out."""
        while self.held:
            pending = self.held.pop(0)
            if self.pending.get(pending.receipt) is pending:
                pending.written = generation
                pending.resent += 1
                return pending
        self.probation = False
        return None
