"""A consumer's subscription: ack mode, prefetch window, selector, in-flight set.

ActiveMQ semantics (``StompSubscription.java``): ``auto`` acks on dispatch,
``client`` acks cumulatively (everything delivered up to the acked message),
``client-individual`` acks one message. Unacked messages go back to their
queue when the subscription ends.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Dict, List, Optional

from hamq.core.messages import Message

#: Bytes of dispatched messages a connection may have that the server has not handed to its socket yet;
#: deliveries to it pause above this (see Broker.written).
UNWRITTEN_LIMIT = 256 * 1024
#: What a MESSAGE frame costs beyond its body, for that count.
MESSAGE_OVERHEAD = 256

if TYPE_CHECKING:  # pragma: no cover
    from hamq.core.destinations import MessageQueue

ACK_MODES = ("auto", "client", "client-individual")
DEFAULT_QUEUE_PREFETCH = 1000
DEFAULT_DURABLE_TOPIC_PREFETCH = 100
DEFAULT_TOPIC_PREFETCH = 32766  # ActiveMQ's non-durable topic default


class Subscription:
    """One SUBSCRIBE of one connection, attached to the queue it drains."""

    def __init__(
        self,
        connection,
        sub_id: str,
        destination: str,
        queue: "MessageQueue",
        ack_mode: str = "auto",
        prefetch: int = DEFAULT_QUEUE_PREFETCH,
        selector=None,
        selector_text: Optional[str] = None,
        exclusive: bool = False,
        no_local: bool = False,
        durable=None,
    ):
        self.connection = connection
        self.id = sub_id
        self.destination = destination
        self.queue = queue
        self.ack_mode = ack_mode
        self.prefetch = prefetch
        self.selector = selector
        self.selector_text = selector_text
        self.exclusive = exclusive
        self.no_local = no_local
        self.durable = durable
        #: ack id -> message, in delivery order (cumulative acks walk it from the front).
        self.inflight: "OrderedDict[str, Message]" = OrderedDict()
        #: message-id -> ack id, for 1.0/1.1 ACK frames that name the message.
        self.ack_by_message_id: Dict[str, str] = {}
        self.active = True

    def has_capacity(self) -> bool:
        conn = self.connection
        return (self.active and conn.writable and conn.unwritten < UNWRITTEN_LIMIT
                and len(self.inflight) < self.prefetch)

    def matches(self, message: Message) -> bool:
        if self.no_local and message.origin is self.connection:
            return False
        if self.selector is None:
            return True
        try:
            return bool(self.selector.matches(message.header_dict()))
        except Exception:  # a selector that cannot evaluate a message does not match it
            return False

    def track(self, ack_id: str, message: Message) -> None:
        self.inflight[ack_id] = message
        self.ack_by_message_id[message.message_id] = ack_id

    def release(self, ack_id: str) -> Optional[Message]:
        message = self.inflight.pop(ack_id, None)
        if message is not None and self.ack_by_message_id.get(message.message_id) == ack_id:
            del self.ack_by_message_id[message.message_id]
        return message

    def acked_by(self, ack_id: str) -> List[str]:
        """Ack ids an ACK of ``ack_id`` covers: one, or all up to it in ``client`` mode."""
        if ack_id not in self.inflight:
            return []
        if self.ack_mode != "client":
            return [ack_id]
        covered = []
        for candidate in self.inflight:
            covered.append(candidate)
            if candidate == ack_id:
                break
        return covered
