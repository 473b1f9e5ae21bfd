"""A message as the engine holds it while it is in memory.

Persistent messages keep their store ``key``/``seq`` so an ACK becomes an
``Ack(key, seq)``; the body of a persistent message is only in memory while
it sits in a queue's paging window or is in flight.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from hamq.stomp.codec import Frame, header_lines

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
        "_encoded",
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
        self._encoded: Optional[Dict[str, bytes]] = None

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

    def encoded_headers(self, version: str) -> bytes:
        """The message's own headers as wire lines, escaped once per version, not per delivery."""
        cache = self._encoded
        if cache is None:
            cache = self._encoded = {}
        data = cache.get(version)
        if data is None:
            data = header_lines(self.headers, version).encode("utf-8")
            cache[version] = data
        return data


class MessageFrame(Frame):
    """A MESSAGE frame that encodes the message's headers from a per-message cache.

    It is a normal :class:`Frame` (tests and tools read ``headers``); only
    :meth:`encode` is faster than ``encode_frame`` for fan-out and redelivery.
    """

    __slots__ = ("message", "delivery_headers")

    def __init__(self, delivery_headers: List[Tuple[str, str]], message: Message):
        body = message.body
        headers = delivery_headers + message.headers
        headers.append(("content-length", str(len(body))))
        super().__init__("MESSAGE", headers, body)
        self.message = message
        self.delivery_headers = delivery_headers

    def encode(self, version: str) -> bytes:
        head = header_lines(self.delivery_headers, version)
        return b"".join((
            b"MESSAGE\n",
            head.encode("utf-8"),
            self.message.encoded_headers(version),
            b"content-length:%d\n\n" % len(self.body),
            self.body,
            b"\x00",
        ))
