"""STOMP transactions: SENDs and ACKs held back until COMMIT, dropped on ABORT.

Nothing of a transaction touches a queue or the store before COMMIT, so an
ABORT (or a dropped connection) needs no undo.
"""

from __future__ import annotations

from typing import List, Tuple

from hamq.stomp.codec import Frame


class Transaction:
    """The deferred work of one ``transaction`` id on one connection."""

    __slots__ = ("id", "sends", "acks")

    def __init__(self, tx_id: str):
        self.id = tx_id
        self.sends: List[Frame] = []
        #: (command, frame) for ACK and NACK, applied in order at COMMIT.
        self.acks: List[Tuple[str, Frame]] = []
