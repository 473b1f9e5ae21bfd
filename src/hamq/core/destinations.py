"""Queues, topics and durable subscriptions.

A :class:`MessageQueue` is a list of messages waiting for consumers. Queues
(``/queue/x``), durable topic subscriptions and non-durable topic
subscriptions are all one of these; they differ in who feeds them (a SEND, a
topic fan-out) and in how many consumers may attach.

Persistent messages are paged: the queue keeps at most ``window`` messages in
memory and knows only the *count* of those beyond it (``backlog``); it reads
them back from the store with ``iter_pending(after_seq=cursor)`` as the window
drains. Memory therefore does not grow with queue depth.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Deque, List, Optional

from hamq.core.messages import Message
from hamq.store.errors import StoreError

log = logging.getLogger("hamq.engine")

DEFAULT_WINDOW = 1000
#: Bytes of message bodies a queue keeps in memory. Persistent messages past it
#: stay on disk (paged); a producer of non-persistent ones to a full queue is
#: held (producer flow control: its receipt comes late, never an ERROR), and a
#: non-durable topic subscriber that does not keep up loses its oldest, so no
#: destination can exhaust the broker's memory. See docs/flow-control.md.
DEFAULT_MEMORY_LIMIT = 64 * 1024 * 1024
#: A full queue takes held producers again once it has drained to this share of
#: its limit; the gap keeps producers from waking for every single message.
RESUME_FRACTION = 0.7


class QueueFull(Exception):
    """A non-persistent message does not fit in its queue's memory limit (``sendFailIfNoSpace`` only)."""


def queue_key(name: str) -> str:
    return f"queue:{name}"


def durable_key(client_id: str, subscription_name: str) -> str:
    """``durable:<clientId>:<subscriptionName>``; a ``:`` in the client id is escaped so that
    ("a:b", "c") and ("a", "b:c") cannot share a key."""
    escaped = client_id.replace("%", "%25").replace(":", "%3A")
    return f"durable:{escaped}:{subscription_name}"


class MessageQueue:
    """Pending messages of one queue or subscription, plus their counters."""

    def __init__(self, name: str, kind: str, key: Optional[str] = None, store=None, window: int = DEFAULT_WINDOW):
        self.name = name
        self.kind = kind  # "queue" | "durable" | "topic-subscription"
        self.key = key
        self.store = store if key is not None else None
        self.window = window
        self.memory: Deque[Message] = deque()
        #: Persistent messages that are only on disk, all with seq > cursor.
        self.backlog = 0
        #: Highest store seq that is (or was) in memory.
        self.cursor = -1
        #: Body bytes of the messages in ``memory`` (see DEFAULT_MEMORY_LIMIT).
        self.memory_bytes = 0
        self.memory_limit = DEFAULT_MEMORY_LIMIT
        #: Producer flow control: set at the limit, cleared at RESUME_FRACTION of it.
        self.flow_blocked = False
        #: Connections whose SEND waits for room here, first come first served.
        self.blocked_producers: Deque = deque()
        self.discarded = 0
        self.consumers: list = []
        self.rr = 0
        self.inflight = 0
        self.enqueued = 0
        self.dequeued = 0

    # -- feeding -----------------------------------------------------------------
    def pages_to_disk(self, persistent: bool) -> bool:
        """A persistent message to a stored queue costs no memory past the limit: it stays on disk."""
        return persistent and self.store is not None

    def over_limit(self) -> bool:
        """True while producers of in-memory messages must wait (limit reached, not yet drained).

        The message that reaches the limit is still taken, so a body larger than
        the whole limit gets through an empty queue instead of waiting forever.
        """
        if self.flow_blocked:
            if self.memory_bytes > self.memory_limit * RESUME_FRACTION:
                return True
            self.flow_blocked = False
            return False
        if self.memory_bytes >= self.memory_limit:
            self.flow_blocked = True
            return True
        return False

    def check_room(self, message: Message) -> None:
        """Raise QueueFull if a non-persistent ``message`` would pass this queue's memory limit."""
        if (self.kind == "queue" and not (message.persistent and self.store is not None)
                and self.memory_bytes + len(message.body) > self.memory_limit and self.memory):
            raise QueueFull(self.name)

    def add(self, message: Message) -> None:
        """Append a new message; a persistent one past the window stays on disk only."""
        self.enqueued += 1
        size = len(message.body)
        if message.persistent and self.store is not None:
            if self.backlog or len(self.memory) >= self.window or self.memory_bytes + size > self.memory_limit:
                self.backlog += 1
                return
            if message.seq > self.cursor:
                self.cursor = message.seq
        elif self.kind == "topic-subscription":
            while self.memory and self.memory_bytes + size > self.memory_limit:
                dropped = self.memory.popleft()  # a slow subscriber loses its oldest, as ActiveMQ's
                self.memory_bytes -= len(dropped.body)  # pending-message limit does
                self.discarded += 1
        self.memory.append(message)
        self.memory_bytes += size

    def taken(self, message: Message) -> None:
        """``message`` left ``memory`` (delivered or expired)."""
        self.memory_bytes -= len(message.body)

    def requeue(self, messages: List[Message]) -> None:
        """Put unacked messages back at the front, in their original order."""
        for message in reversed(messages):
            self.memory.appendleft(message)
            self.memory_bytes += len(message.body)

    def recover(self, pending: int) -> None:
        """After a restart: ``pending`` stored messages, none in memory yet."""
        self.backlog = pending
        self.cursor = -1

    def page_in(self) -> None:
        """Top the window up from the store when it has drained below half."""
        if (not self.backlog or self.store is None or len(self.memory) >= self.window // 2 + 1
                or (self.memory and self.memory_bytes >= self.memory_limit // 2)):
            return
        wanted = self.window - len(self.memory)
        loaded = 0
        for ref in self.store.iter_pending(self.key, after_seq=self.cursor):
            try:
                stored = self.store.read(ref)
            except KeyError:  # acked meanwhile
                self.cursor = ref.seq
                continue
            except StoreError as exc:
                # Never deliver damaged bytes, and do not stop the broker over one message:
                # skip it (it stays in the store for inspection) and say so.
                log.error("skipping message %d of %s: %s", ref.seq, self.key, exc)
                self.cursor = ref.seq
                self.backlog = max(0, self.backlog - 1)
                continue
            message = Message(
                stored.message_id,
                self.name,
                [tuple(h) for h in stored.headers],
                stored.body,
                True,
                self.key,
                stored.seq,
                bool(stored.redelivered),
            )
            self.memory.append(message)
            self.memory_bytes += len(message.body)
            self.cursor = stored.seq
            loaded += 1
            if loaded >= wanted or self.memory_bytes >= self.memory_limit:
                break
        if loaded == 0:
            self.backlog = 0  # the store has nothing after the cursor: the count was stale
        else:
            self.backlog = max(0, self.backlog - loaded)

    # -- figures -----------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Messages not yet acked: waiting in memory, on disk only, or in flight."""
        return len(self.memory) + self.backlog + self.inflight

    def has_ready(self) -> bool:
        return bool(self.memory) or bool(self.backlog)


class Topic:
    """A ``/topic/`` destination: fans each message out to its subscriptions."""

    def __init__(self, name: str):
        self.name = name
        self.subscriptions: list = []  # active non-durable Subscription objects
        self.durables: list = []  # Durable records, online or not
        self.enqueued = 0
        self.dequeued = 0

    @property
    def consumers(self) -> int:
        return len(self.subscriptions) + sum(1 for d in self.durables if d.subscription is not None)


class Durable:
    """A durable topic subscription: keeps messages while its subscriber is away."""

    def __init__(self, client_id: str, name: str, topic: str, queue: MessageQueue, selector_text=None,
                 selector=None, no_local: bool = False):
        self.client_id = client_id
        self.name = name
        self.topic = topic
        self.queue = queue
        self.selector_text = selector_text
        self.selector = selector
        self.no_local = no_local
        self.subscription = None  # the active Subscription, if its client is connected

    @property
    def key(self) -> str:
        return durable_key(self.client_id, self.name)

    def matches(self, message: Message, connection) -> bool:
        if self.no_local and self.subscription is not None and message.origin is self.subscription.connection:
            return False
        if self.selector is None:
            return True
        try:
            return bool(self.selector.matches(message.header_dict()))
        except Exception:
            return False
