"""A message as the engine holds it while it is in memory.

Persistent messages keep their store ``key``/``seq`` so an ACK becomes an
``Ack(key, seq)``; the body of a persistent message is only in memory while
it sits in a queue's paging window or is in flight.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

#: Client headers that describe the frame, not the message; never stored or forwarded.
FRAME_ONLY_HEADERS = frozenset(
    {"receipt", "transaction", "content-length", "destination", "message-id", "subscription", "ack"}
)


class Message:
    """One message in one queue (a topic publish makes one per subscription)."""

    __slots__ = (
        "message_id",
        "destination",
        "headers",
        "body",
        "persistent",
        "key",
        "seq",
        "redelivered",
        "delivery_count",
        "origin",
        "expires",
        "_header_dict",
    )

    def __init__(
        self,
        message_id: str,
        destination: str,
        headers: List[Tuple[str, str]],
        body: bytes,
        persistent: bool = False,
        key: Optional[str] = None,
        seq: int = -1,
        redelivered: bool = False,
        origin: Optional[object] = None,
    ):
        self.message_id = message_id
        self.destination = destination
        self.headers = headers
        self.body = body
        self.persistent = persistent
        self.key = key
        self.seq = seq
        self.redelivered = redelivered
        self.delivery_count = 1 if redelivered else 0
        self.origin = origin
        self.expires = 0
        for k, v in headers:
            if k == "expires":
                try:
                    self.expires = int(v)
                except ValueError:
                    self.expires = 0
                break
        self._header_dict: Optional[Dict[str, str]] = None

    def copy_for(self, key: Optional[str]) -> "Message":
        """The same message for another queue (topic fan-out, DLQ)."""
        return Message(
            self.message_id, self.destination, self.headers, self.body, self.persistent, key, -1, False, self.origin
        )

    def header_dict(self) -> Dict[str, str]:
        """Headers for selector evaluation, built once per message."""
        if self._header_dict is None:
            result: Dict[str, str] = {}
            for k, v in self.headers:
                result.setdefault(k, v)
            result.setdefault("message-id", self.message_id)
            result.setdefault("destination", self.destination)
            self._header_dict = result
        return self._header_dict

    def is_expired(self, now_ms: float) -> bool:
        return self.expires > 0 and now_ms > self.expires
