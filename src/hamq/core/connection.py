"""Per-connection STOMP state: negotiated version, heart-beats, subscriptions, transactions."""

from __future__ import annotations

from collections import deque
from typing import Deque, Dict, Optional, Tuple

from hamq.core.subscriptions import Subscription
from hamq.core.transactions import Transaction


class ClientConnection:
    """What the engine knows about one client connection."""

    def __init__(self, conn_id, peer, number: int, now: float):
        self.id = conn_id
        self.peer = peer
        self.number = number
        self.connected = False
        self.closing = False
        self.version = "1.0"
        self.session: Optional[str] = None
        self.client_id: Optional[str] = None
        #: hamq.security.Principal set by CONNECT: who this is and its groups.
        self.principal = None
        self.subscriptions: Dict[str, Subscription] = {}
        self.transactions: Dict[str, Transaction] = {}
        #: ack id -> subscription, for ACK/NACK lookups in O(1).
        self.ack_index: Dict[str, Subscription] = {}
        #: ms between heart-beats we send (0 = none) and we expect (0 = none).
        self.send_heartbeat_ms = 0
        self.expect_heartbeat_ms = 0
        self.last_read = now
        self.last_write = now
        #: False while the transport's write buffer is above its high-water mark.
        self.writable = True
        #: Bytes of messages dispatched to it and not yet handed to its socket
        #: (see hamq.core.subscriptions.UNWRITTEN_LIMIT).
        self.unwritten = 0
        self.message_seq = 0
        #: Producer flow control: frames held (in order) while ``blocked_on`` is over its memory limit.
        self.parked: Deque = deque()
        self.blocked_on = None

    @property
    def heartbeats(self) -> Tuple[int, int]:
        return self.send_heartbeat_ms, self.expect_heartbeat_ms
