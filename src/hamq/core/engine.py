"""The broker engine: STOMP frames in, frames and store batches out. Sans-IO.

The server feeds it decoded frames per connection and writes whatever
:meth:`Broker.take_outputs` returns. Nothing here touches a socket, a thread
or the event loop, so every behaviour is testable by feeding frames.

Durability rule: an output tagged ``after_lsn=n`` may only be written once
the store is durable up to ``n``. Receipts of persistent SENDs wait for their
message; MESSAGE frames of persistent messages wait for their dispatch mark
(or auto-ack), so a failover never yields an unflagged duplicate.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import time
from collections import deque
from typing import Dict, List, NamedTuple, Optional, Tuple

from hamq import __version__
from hamq.core.connection import ClientConnection
from hamq.core.destinations import (
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_WINDOW,
    Durable,
    MessageQueue,
    QueueFull,
    Topic,
    durable_key,
    queue_key,
)
from hamq.core.dispatch import dispatch
from hamq.core.ids import IdGenerator
from hamq.core.messages import FRAME_ONLY_HEADERS, Message, MessageFrame
from hamq.core.scheduler import JOBS_KEY, Scheduler
from hamq.core.subscriptions import (
    ACK_MODES,
    DEFAULT_DURABLE_TOPIC_PREFETCH,
    DEFAULT_QUEUE_PREFETCH,
    DEFAULT_TOPIC_PREFETCH,
    MESSAGE_OVERHEAD,
    UNWRITTEN_LIMIT,
    Subscription,
)
from hamq.core.transactions import Transaction
from hamq.durability import DurabilityTracker
from hamq.security import AccessDenied, SecurityPolicy
from hamq.stomp.codec import SUPPORTED_VERSIONS, Frame, HeartBeat, ProtocolError
from hamq.stomp.headers import CLIENT_MESSAGE_ID, DUPLICATE_ID
from hamq.store.errors import StoreError
from hamq.store.ops import Ack, AddMessage, DeleteKey, PutMeta, RememberId

log = logging.getLogger("hamq.engine")

#: A client that has not sent CONNECT after this long is dropped.
CONNECT_TIMEOUT_S = 30.0
#: Heart-beat read timeout = client interval x this (connector option hbGracePeriodMultiplier).
DEFAULT_HEARTBEAT_GRACE = 1.5


class Output:
    """One thing for the server to do on a connection.

    ``frame`` None and ``close`` False means "send a heart-beat EOL".
    """

    __slots__ = ("conn_id", "frame", "close", "after_lsn", "version", "cost", "after_release")

    def __init__(self, conn_id, frame: Optional[Frame], close: bool = False, after_lsn: int = 0,
                 version: str = "1.2"):
        self.conn_id = conn_id
        self.frame = frame
        self.close = close
        self.after_lsn = after_lsn
        self.version = version
        #: Bytes this output counts against its connection's unwritten allowance (a MESSAGE's body).
        self.cost = 0
        #: Store effects that may only be written once this output was handed to its connection
        #: (an auto-acked delivery's Ack: written before, a crash could ack what was never sent).
        self.after_release: tuple = ()

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        what = self.frame.command if self.frame is not None else ("CLOSE" if self.close else "HEARTBEAT")
        return f"Output({self.conn_id!r}, {what}, after_lsn={self.after_lsn})"


class _Blocked(Exception):
    """A SEND (or COMMIT) must wait: its queue is over its memory limit (producer flow control)."""

    def __init__(self, queue: MessageQueue):
        super().__init__(queue.name)
        self.queue = queue


class StompError(Exception):
    """A client mistake: becomes an ERROR frame naming the problem and the fix."""

    def __init__(self, problem: str, fix: str, fatal: bool = False):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix
        self.fatal = fatal


def _parse_destination(destination: Optional[str]) -> Tuple[str, str]:
    """``/queue/x`` -> ("queue", "x"); ActiveMQ strips the prefix the same way.

    A SEND parses its destination up to three times (authorization, flow
    control, routing), so good answers are cached; a bad one raises every time.
    """
    if not destination:
        raise StompError("the frame has no destination header", "add destination:/queue/<name> or /topic/<name>")
    for kind in ("queue", "topic"):
        prefix = f"/{kind}/"
        if destination.startswith(prefix):
            name = destination[len(prefix):]
            if not name:
                raise StompError(f"destination {destination!r} has no name", f"use {prefix}<name>")
            return kind, name
    raise StompError(
        f"unsupported destination {destination!r}", "use a destination starting with /queue/ or /topic/"
    )


parse_destination = functools.lru_cache(maxsize=4096)(_parse_destination)


class Broker:
    """All destinations, subscriptions and connections of one broker."""

    def __init__(self, config, store=None, clock=time.time, port: Optional[int] = None):
        self.config = config
        self.store = store
        #: Delayed and repeated delivery (schedulerSupport); its jobs live in ``store`` (hamq.core.scheduler).
        self.scheduler = None
        if getattr(config, "scheduler_support", False):
            tag = getattr(store, "epoch", 0) or secrets.token_hex(4)
            self.scheduler = Scheduler(id_prefix=f"ID:{getattr(config, 'node_name', 'hamq')}-job-{tag}")
        self.clock = clock
        self.max_redeliveries = getattr(config, "maximum_redeliveries", 6)
        self.dlq_name = getattr(config, "dead_letter_queue", "ActiveMQ.DLQ")
        connectors = getattr(config, "connectors", None) or []
        if port is None:
            port = connectors[0].port if connectors else 0
        self.heartbeat_grace = DEFAULT_HEARTBEAT_GRACE
        #: Authentication and authorization (hamq.security); allows everything when not configured.
        self.security = SecurityPolicy.from_config(config)
        self.connect_timeout = CONNECT_TIMEOUT_S
        if connectors:
            raw = connectors[0].options.get("connectAttemptTimeout")
            if raw:
                self.connect_timeout = int(raw) / 1000.0
        if connectors:
            raw = connectors[0].options.get("hbGracePeriodMultiplier")
            if raw:
                self.heartbeat_grace = float(raw)
        self.ids = IdGenerator(port, clock=clock)
        self.connections: Dict[object, ClientConnection] = {}
        self.queues: Dict[str, MessageQueue] = {}
        self.topics: Dict[str, Topic] = {}
        self.durables: Dict[str, Durable] = {}
        self.client_ids: Dict[str, ClientConnection] = {}
        self._outputs: List[Output] = []
        #: The one place that knows what waits for the disk (hamq.durability).
        self.durability = DurabilityTracker(store)
        self._dirty: Dict[int, MessageQueue] = {}
        #: Ack ids and broker-internal message numbers; ack ids carry the term's tag (see _deliver).
        self._ack_counter = 0
        self._internal_seq = 0
        self._ack_prefix = _ack_prefix(store)
        self._now = clock()
        #: Messages a queue keeps in memory; persistent ones beyond it are paged from the store.
        self.queue_window = DEFAULT_WINDOW
        #: Body bytes a queue keeps in memory (see destinations.DEFAULT_MEMORY_LIMIT).
        self.queue_memory_limit = getattr(config, "memory_limit", None) or DEFAULT_MEMORY_LIMIT
        #: ActiveMQ's sendFailIfNoSpace: refuse with an ERROR instead of holding the producer.
        self.send_fail_if_no_space = bool(getattr(config, "send_fail_if_no_space", False))
        #: Queues with held producers, and connections whose held frames just went through.
        self._flow_queues: Dict[int, MessageQueue] = {}
        self._resumed: List[object] = []
        self._handlers = {
            "SEND": self._on_send,
            "SUBSCRIBE": self._on_subscribe,
            "UNSUBSCRIBE": self._on_unsubscribe,
            "ACK": self._on_ack,
            "NACK": self._on_nack,
            "BEGIN": self._on_begin,
            "COMMIT": self._on_commit,
            "ABORT": self._on_abort,
            "DISCONNECT": self._on_disconnect,
            "CONNECT": self._on_reconnect,
            "STOMP": self._on_reconnect,
        }

    # ------------------------------------------------------------------ lifecycle
    def recover(self) -> None:
        """Rebuild queues and durable subscriptions from the store (bodies stay on disk)."""
        if self.store is None:
            return
        from hamq.core.selector import compile_selector

        for key in self.store.keys():
            if key.startswith("queue:"):
                queue = self._queue(key[len("queue:"):])
                queue.recover(self.store.pending_count(key))
                self._mark_dirty(queue)
            elif key.startswith("durable:"):
                raw = self.store.get_meta(key)
                if raw is None:
                    log.warning("store key %s has messages but no subscription record; ignoring it", key)
                    continue
                meta = json.loads(raw)
                selector = compile_selector(meta["selector"]) if meta.get("selector") else None
                durable = self._new_durable(meta["clientId"], meta["subscriptionName"], meta["topic"],
                                            meta.get("selector"), selector, bool(meta.get("noLocal")))
                durable.queue.recover(self.store.pending_count(key))
        if self.scheduler is not None:
            self._load_jobs()

    def _load_jobs(self) -> None:
        """Jobs from the store; a record damaged on disk is skipped with an ERROR, never fatal."""
        def records():
            for ref in list(self.store.iter_pending(JOBS_KEY)):
                try:
                    stored = self.store.read(ref)
                except (KeyError, StoreError) as exc:
                    log.error("skipping scheduled job record %d: %s", ref.seq, exc)
                    continue
                yield stored.seq, stored.message_id, stored.headers, stored.body

        for seq in self.scheduler.load(records()):
            self.durability.defer(Ack(JOBS_KEY, seq))

    def connection_made(self, conn_id, peer=None) -> None:
        now = self.clock()
        self.connections[conn_id] = ClientConnection(conn_id, peer, self.ids.connection_number(), now)

    def connection_lost(self, conn_id) -> None:
        """Forget a connection; its unacked messages go back to their queues."""
        conn = self.connections.pop(conn_id, None)
        if conn is None:
            return
        conn.closing = True
        conn.parked.clear()
        if conn.blocked_on is not None and conn in conn.blocked_on.blocked_producers:
            conn.blocked_on.blocked_producers.remove(conn)
        conn.transactions.clear()
        for sub in list(conn.subscriptions.values()):
            self._close_subscription(sub)
        conn.subscriptions.clear()
        if conn.client_id is not None and self.client_ids.get(conn.client_id) is conn:
            del self.client_ids[conn.client_id]

    def set_writable(self, conn_id, writable: bool) -> None:
        """Slow-reader protection: no dispatch to a connection whose buffer is full."""
        conn = self.connections.get(conn_id)
        if conn is None:
            return
        conn.writable = writable
        if writable:
            for sub in conn.subscriptions.values():
                self._mark_dirty(sub.queue)

    def written(self, conn_id, nbytes: int) -> None:
        """The server handed ``nbytes`` of delivered messages to the connection's socket.

        Deliveries stop while a connection has more than UNWRITTEN_LIMIT bytes
        dispatched but not yet handed over (see ClientConnection.unwritten), so a
        slow consumer never has more than that, plus its socket's buffer, taken
        off its queue and not yet written: all an auto-ack consumer can lose if
        the broker dies.
        """
        conn = self.connections.get(conn_id)
        if conn is None or nbytes <= 0:
            return
        was_full = conn.unwritten >= UNWRITTEN_LIMIT
        conn.unwritten = max(0, conn.unwritten - nbytes)
        if was_full and conn.unwritten < UNWRITTEN_LIMIT:
            for sub in conn.subscriptions.values():
                self._mark_dirty(sub.queue)

    def touch(self, conn_id) -> None:
        """Bytes arrived: the peer is alive even if its frame is not complete yet."""
        conn = self.connections.get(conn_id)
        if conn is not None:
            conn.last_read = self.clock()

    def is_blocked(self, conn_id) -> bool:
        """True while a frame of ``conn_id`` waits for room: the server stops reading that socket."""
        conn = self.connections.get(conn_id)
        return conn is not None and bool(conn.parked)

    def take_resumed(self) -> list:
        """Connections whose held frames went through since the last call: read from them again."""
        resumed = self._resumed
        self._resumed = []
        return resumed

    def version_of(self, conn_id) -> str:
        conn = self.connections.get(conn_id)
        return conn.version if conn is not None else "1.0"

    # ------------------------------------------------------------------ input
    def receive(self, conn_id, event) -> None:
        """Handle one decoded frame or heart-beat from ``conn_id``."""
        conn = self.connections.get(conn_id)
        if conn is None or conn.closing:
            return
        conn.last_read = self.clock()
        if isinstance(event, HeartBeat):
            return
        frame: Frame = event
        if conn.parked:  # in order behind the held SEND
            conn.parked.append(frame)
            return
        try:
            if not conn.connected:
                if frame.command in ("CONNECT", "STOMP"):
                    self._on_connect(conn, frame)
                    return
                raise StompError(f"received {frame.command} before CONNECT",
                                 "send a CONNECT (or STOMP) frame first", fatal=True)
            handler = self._handlers.get(frame.command)
            if handler is None:
                raise StompError(f"unknown STOMP command {frame.command!r}",
                                 "use SEND, SUBSCRIBE, UNSUBSCRIBE, ACK, NACK, BEGIN, COMMIT, ABORT or DISCONNECT")
            handler(conn, frame)
        except _Blocked as blocked:
            self._hold(conn, frame, blocked.queue)
        except StompError as exc:
            self._error(conn, exc.problem, exc.fix, frame.get("receipt"), exc.fatal)

    def protocol_error(self, conn_id, exc: ProtocolError) -> None:
        """The decoder rejected the byte stream: ERROR, and close if it cannot resync."""
        conn = self.connections.get(conn_id)
        if conn is None or conn.closing:
            return
        self._error(conn, exc.message, "send well-formed STOMP frames within the connector's size limits",
                    exc.receipt, exc.fatal or not conn.connected)

    # ------------------------------------------------------------------ output
    def take_outputs(self) -> List[Output]:
        """Dispatch what can be dispatched, write store batches, return the outputs."""
        self._run_dispatch()
        if self._flow_queues:
            self._resume_producers()
        self.durability.end_round()
        outputs = self._outputs
        self._outputs = []
        return outputs

    def has_work(self) -> bool:
        """True if another :meth:`take_outputs` round would dispatch more."""
        return bool(self._dirty)

    def tick(self, now: Optional[float] = None) -> None:
        """Heart-beats and idle connections; the server calls this a few times a second."""
        if now is None:
            now = self.clock()
        for conn in list(self.connections.values()):
            if conn.closing:
                continue
            if not conn.connected:
                if now - conn.last_read > self.connect_timeout:
                    log.info("closing %s: no CONNECT within %.1f s", conn.peer, self.connect_timeout)
                    self._close(conn)
                continue
            if conn.parked:
                conn.last_read = now  # we stopped reading it: its heart-beats wait in the socket
            elif conn.expect_heartbeat_ms and (now - conn.last_read) * 1000 > conn.expect_heartbeat_ms * self.heartbeat_grace:
                log.info("closing %s: no data or heart-beat for %.1f s (heart-beat %d ms x grace %.1f)",
                         conn.peer, now - conn.last_read, conn.expect_heartbeat_ms, self.heartbeat_grace)
                self._close(conn)
                continue
            if conn.send_heartbeat_ms and (now - conn.last_write) * 1000 >= conn.send_heartbeat_ms:
                self._emit(conn, None)
        if self.scheduler is not None:
            self._fire_due(now)

    def status(self) -> dict:
        """Destinations and counters for ``/status`` (the server adds role and lock data)."""
        destinations = []
        for name, queue in sorted(self.queues.items()):
            destinations.append({"name": name, "type": "queue", "depth": queue.depth,
                                 "consumers": len(queue.consumers), "enqueued": queue.enqueued,
                                 "dequeued": queue.dequeued})
        for name, topic in sorted(self.topics.items()):
            destinations.append({"name": name, "type": "topic", "depth": 0, "consumers": topic.consumers,
                                 "enqueued": topic.enqueued, "dequeued": topic.dequeued})
        durables = []
        for durable in sorted(self.durables.values(), key=lambda d: d.key):
            durables.append({"clientId": durable.client_id, "subscriptionName": durable.name,
                             "topic": durable.topic, "depth": durable.queue.depth,
                             "active": durable.subscription is not None,
                             "enqueued": durable.queue.enqueued, "dequeued": durable.queue.dequeued})
        return {
            "brokerName": getattr(self.config, "broker_name", ""),
            "nodeName": getattr(self.config, "node_name", ""),
            "connections": sum(1 for c in self.connections.values() if c.connected),
            #: Connections whose SEND waits for room (producer flow control).
            "blockedProducers": sum(1 for c in self.connections.values() if c.parked),
            "destinations": destinations,
            "durableSubscriptions": durables,
            "scheduledJobs": len(self.scheduler) if self.scheduler is not None else 0,
        }

    # ------------------------------------------------------------------ frames
    def _on_connect(self, conn: ClientConnection, frame: Frame) -> None:
        accept = frame.get("accept-version")
        if accept is None:
            version = "1.0"
        else:
            offered = {v.strip() for v in accept.split(",")}
            common = [v for v in SUPPORTED_VERSIONS if v in offered]
            if not common:
                raise StompError(f"none of the offered STOMP versions {accept!r} is supported",
                                 "offer accept-version with 1.0, 1.1 or 1.2", fatal=True)
            version = common[-1]
        send_ms = expect_ms = 0
        beat = frame.get("heart-beat")
        if beat is not None and version != "1.0":
            try:
                cx, cy = (int(part.strip()) for part in beat.split(","))
                if cx < 0 or cy < 0:
                    raise ValueError
            except ValueError:
                raise StompError(f"invalid heart-beat header {beat!r}",
                                 "use heart-beat:<send ms>,<receive ms> with two non-negative integers",
                                 fatal=True) from None
            # Echo the client's values back as cy,cx, like ActiveMQ.
            send_ms, expect_ms = cy, cx
        try:
            conn.principal = self.security.login(conn.peer, frame.get("login"), frame.get("passcode"),
                                                 self.clock())
        except AccessDenied as exc:
            raise StompError(exc.problem, exc.fix, fatal=True) from None
        client_id = frame.get("client-id")
        if client_id is not None:
            holder = self.client_ids.get(client_id)
            if holder is not None and holder is not conn and not holder.closing:
                raise StompError(f"client-id {client_id!r} is already connected",
                                 "use a unique client-id per connection, or close the other connection first",
                                 fatal=True)
            self.client_ids[client_id] = conn
            conn.client_id = client_id
        conn.version = version
        conn.connected = True
        conn.session = self.ids.session_id(conn.number)
        conn.send_heartbeat_ms = send_ms
        conn.expect_heartbeat_ms = expect_ms
        headers = [("version", version), ("session", conn.session),
                   ("server", f"hamq/{__version__}"), ("heart-beat", f"{send_ms},{expect_ms}")]
        self._emit(conn, Frame("CONNECTED", headers))

    def _on_reconnect(self, conn: ClientConnection, frame: Frame) -> None:
        raise StompError("already connected", "send CONNECT only once per connection", fatal=True)

    def _on_send(self, conn: ClientConnection, frame: Frame) -> None:
        self._authorize(conn, *parse_destination(frame.get("destination")), "write")
        tx_id = frame.get("transaction")
        if tx_id is not None:
            self._transaction(conn, tx_id).sends.append(frame)
            self._receipt(conn, frame)
            return
        self._check_flow([frame])
        lsn = self._publish(conn, [frame])
        self._receipt(conn, frame, after_lsn=lsn)

    def _on_subscribe(self, conn: ClientConnection, frame: Frame) -> None:
        destination = frame.get("destination")
        kind, name = parse_destination(destination)
        self._authorize(conn, kind, name, "read")
        sub_id = frame.get("id")
        if sub_id is None:
            if conn.version != "1.0":
                raise StompError("SUBSCRIBE has no id header", "add id:<unique subscription id>")
            sub_id = destination
        if sub_id in conn.subscriptions:
            raise StompError(f"subscription id {sub_id!r} is already in use on this connection",
                             "use a new id, or UNSUBSCRIBE the old one first")
        ack_mode = frame.get("ack", "auto")
        if ack_mode not in ACK_MODES:
            raise StompError(f"unknown ack mode {ack_mode!r}", "use ack:auto, ack:client or ack:client-individual")
        selector_text = frame.get("selector")
        selector = None
        if selector_text:
            from hamq.core.selector import SelectorError, compile_selector

            try:
                selector = compile_selector(selector_text)
            except SelectorError as exc:
                raise StompError(f"invalid selector: {exc}", "fix the SQL-92 selector expression") from None
        subscription_name = frame.get("activemq.subscriptionName") or frame.get("durable-subscription-name")
        if kind == "queue":
            default_prefetch = DEFAULT_QUEUE_PREFETCH
        elif subscription_name:
            default_prefetch = DEFAULT_DURABLE_TOPIC_PREFETCH
        else:
            default_prefetch = DEFAULT_TOPIC_PREFETCH
        prefetch = default_prefetch
        raw = frame.get("activemq.prefetchSize")
        if raw is not None:
            try:
                prefetch = int(raw)
                if prefetch <= 0:
                    raise ValueError
            except ValueError:
                raise StompError(f"invalid activemq.prefetchSize {raw!r}",
                                 "use a positive integer (0 is not supported over STOMP)") from None
        exclusive = _flag(frame, "activemq.exclusive", "exclusive")
        no_local = _flag(frame, "activemq.noLocal", "noLocal")
        durable = None
        if kind == "queue":
            queue = self._queue(name)
        elif subscription_name:
            if conn.client_id is None:
                raise StompError("a durable subscription needs a client-id",
                                 "send client-id:<id> on CONNECT with activemq.subscriptionName")
            key = durable_key(conn.client_id, subscription_name)
            durable = self.durables.get(key)
            if durable is not None and durable.subscription is not None:
                raise StompError(f"durable subscription {subscription_name!r} of {conn.client_id!r} is already active",
                                 "unsubscribe the active one first, or use another activemq.subscriptionName")
            if durable is not None and (durable.topic != name or durable.selector_text != selector_text
                                        or durable.no_local != no_local):
                # ActiveMQ replaces a durable subscription whose topic or selector changed.
                self._remove_durable(durable)
                durable = None
            if durable is None:
                self._authorize(conn, "topic", name, "admin")
                durable = self._new_durable(conn.client_id, subscription_name, name, selector_text, selector,
                                            no_local)
                meta = {"clientId": conn.client_id, "subscriptionName": subscription_name, "topic": name,
                        "selector": selector_text, "noLocal": no_local}
                self.durability.defer(PutMeta(key, json.dumps(meta)))
            queue = durable.queue
        else:
            queue = MessageQueue(name, "topic-subscription")
            queue.memory_limit = self.queue_memory_limit
        sub = Subscription(conn, sub_id, destination, queue, ack_mode, prefetch, selector, selector_text,
                           exclusive, no_local, durable)
        queue.consumers.append(sub)
        if durable is not None:
            durable.subscription = sub
        elif kind == "topic":
            self._topic(name).subscriptions.append(sub)
        conn.subscriptions[sub_id] = sub
        self._mark_dirty(queue)
        self._receipt(conn, frame, flush=True)

    def _on_unsubscribe(self, conn: ClientConnection, frame: Frame) -> None:
        sub_id = frame.get("id")
        if sub_id is None and conn.version == "1.0":
            sub_id = frame.get("destination")
        subscription_name = frame.get("activemq.subscriptionName") or frame.get("durable-subscription-name")
        sub = conn.subscriptions.pop(sub_id, None) if sub_id is not None else None
        if sub is None and not subscription_name:
            if sub_id is None:
                raise StompError("UNSUBSCRIBE has no id header", "add id:<the id used in SUBSCRIBE>")
            raise StompError(f"no subscription with id {sub_id!r} on this connection",
                             "UNSUBSCRIBE with the id used in SUBSCRIBE")
        if sub is not None:
            self._close_subscription(sub)
        if subscription_name:
            if conn.client_id is None:
                raise StompError("removing a durable subscription needs a client-id",
                                 "send client-id:<id> on CONNECT")
            durable = self.durables.get(durable_key(conn.client_id, subscription_name))
            if durable is None:
                raise StompError(f"no durable subscription {subscription_name!r} for client-id {conn.client_id!r}",
                                 "check activemq.subscriptionName and client-id")
            self._authorize(conn, "topic", durable.topic, "admin")
            if durable.subscription is not None:
                other = durable.subscription
                if other.connection is not conn:
                    raise StompError(f"durable subscription {subscription_name!r} is in use by another connection",
                                     "close that subscriber first")
                other.connection.subscriptions.pop(other.id, None)
                self._close_subscription(other)
            self._remove_durable(durable)
        self._receipt(conn, frame, flush=True)

    def _on_ack(self, conn: ClientConnection, frame: Frame) -> None:
        self._ack_frame(conn, frame, nack=False)

    def _on_nack(self, conn: ClientConnection, frame: Frame) -> None:
        if conn.version == "1.0":
            raise StompError("NACK does not exist in STOMP 1.0", "connect with accept-version:1.1 or 1.2")
        self._ack_frame(conn, frame, nack=True)

    def _ack_frame(self, conn: ClientConnection, frame: Frame, nack: bool) -> None:
        sub, ack_id = self._resolve_ack(conn, frame)
        tx_id = frame.get("transaction")
        if tx_id is not None:
            self._transaction(conn, tx_id).acks.append(("NACK" if nack else "ACK", frame))
            self._receipt(conn, frame)
            return
        lsn = self._apply_ack(conn, sub, ack_id, nack)
        self._receipt(conn, frame, after_lsn=lsn, flush=True)

    def _on_begin(self, conn: ClientConnection, frame: Frame) -> None:
        tx_id = self._tx_header(frame)
        if tx_id in conn.transactions:
            raise StompError(f"transaction {tx_id!r} is already open", "use a new transaction id for each BEGIN")
        conn.transactions[tx_id] = Transaction(tx_id)
        self._receipt(conn, frame)

    def _on_commit(self, conn: ClientConnection, frame: Frame) -> None:
        tx = self._transaction(conn, self._tx_header(frame))
        self._check_flow(tx.sends)
        # Prepared first, so a refused send fails the COMMIT before any ack applies.
        prepared = self._prepare(conn, tx.sends) if tx.sends else None
        del conn.transactions[tx.id]
        lsn = 0
        # Acks next: their store ops (and the dead-letter moves of NACKs) then
        # ride in the same batch as the sends: a COMMIT is one batch or nothing.
        dead: List[Tuple[List, Message]] = []
        for command, ack in tx.acks:
            try:
                sub, ack_id = self._resolve_ack(conn, ack)
            except StompError:
                continue  # acked or redelivered since; nothing left to do
            lsn = max(lsn, self._apply_ack(conn, sub, ack_id, command == "NACK", dead))
        moves = [op for ops, _ in dead for op in ops]
        if prepared is not None:
            lsn = max(lsn, self._place(prepared, extra=moves))
        elif moves:
            lsn = max(lsn, self.durability.append(moves))
        if dead:
            seqs = self.store.last_seqs  # one AddMessage per move, the batch's last ones
            for (_, moved), seq in zip(dead, seqs[len(seqs) - len(dead):]):
                moved.seq = seq
        self._receipt(conn, frame, after_lsn=lsn, flush=True)

    def _on_abort(self, conn: ClientConnection, frame: Frame) -> None:
        tx = self._transaction(conn, self._tx_header(frame))
        del conn.transactions[tx.id]
        self._receipt(conn, frame)

    def _on_disconnect(self, conn: ClientConnection, frame: Frame) -> None:
        self._receipt(conn, frame, after_lsn=self.durability.token_now(), flush=True)
        self._close(conn)

    # ------------------------------------------------------------------ helpers: frames
    def _authorize(self, conn: ClientConnection, kind: str, name: str, action: str) -> None:
        """Refuse with an ERROR (never a silent drop) what the authorization map does not allow."""
        try:
            self.security.authorize(conn.principal, kind, name, action)
        except AccessDenied as exc:
            raise StompError(exc.problem, exc.fix) from None

    @staticmethod
    def _tx_header(frame: Frame) -> str:
        tx_id = frame.get("transaction")
        if not tx_id:
            raise StompError(f"{frame.command} has no transaction header", "add transaction:<id>")
        return tx_id

    @staticmethod
    def _transaction(conn: ClientConnection, tx_id: str) -> Transaction:
        tx = conn.transactions.get(tx_id)
        if tx is None:
            raise StompError(f"unknown transaction {tx_id!r}", "send BEGIN with this transaction id first")
        return tx

    def _resolve_ack(self, conn: ClientConnection, frame: Frame) -> Tuple[Subscription, str]:
        if conn.version == "1.2":
            ack_id = frame.get("id")
            if ack_id is None:
                raise StompError(f"{frame.command} has no id header",
                                 "copy the ack header of the MESSAGE into the id header")
            sub = conn.ack_index.get(ack_id)
            if sub is not None and ack_id in sub.inflight:
                return sub, ack_id
            raise StompError(f"unexpected {frame.command} for id {ack_id!r}: no such message awaits an "
                             "acknowledgement on this connection",
                             "acknowledge only messages received on this connection and not yet acknowledged")
        message_id = frame.get("message-id") or frame.get("id")
        if message_id is None:
            raise StompError(f"{frame.command} has no message-id header", "add message-id:<id of the MESSAGE>")
        sub_id = frame.get("subscription")
        if sub_id is not None and sub_id in conn.subscriptions:
            candidates = [conn.subscriptions[sub_id]]
        else:
            candidates = list(conn.subscriptions.values())
        for sub in candidates:
            ack_id = sub.ack_by_message_id.get(message_id)
            if ack_id is not None:
                return sub, ack_id
        sub = conn.ack_index.get(message_id)  # a 1.2-style ack id sent by a 1.0/1.1 client
        if sub is not None and message_id in sub.inflight:
            return sub, message_id
        raise StompError(f"unexpected {frame.command} for message-id {message_id!r}: no such message awaits an "
                         "acknowledgement on this connection",
                         "acknowledge only messages received on this connection and not yet acknowledged")

    def _receipt(self, conn: ClientConnection, frame: Frame, after_lsn: int = 0, flush: bool = False) -> None:
        receipt = frame.get("receipt")
        if receipt is None:
            return
        out = self._emit(conn, Frame("RECEIPT", [("receipt-id", receipt)]), after_lsn)
        if flush:
            self.durability.after_next_batch(out)

    def _error(self, conn: ClientConnection, problem: str, fix: str, receipt: Optional[str], fatal: bool) -> None:
        text = f"{problem}. Fix: {fix}".replace("\n", " ").replace("\r", " ")
        headers = [("message", text), ("content-type", "text/plain")]
        if receipt is not None:
            headers.append(("receipt-id", receipt))
        body = (text + "\n").encode("utf-8")
        headers.append(("content-length", str(len(body))))
        log.info("ERROR to %s: %s%s", conn.peer, text, " (closing)" if fatal else "")
        self._emit(conn, Frame("ERROR", headers, body))
        if fatal:
            self._close(conn)

    def _emit(self, conn: ClientConnection, frame: Optional[Frame], after_lsn: int = 0) -> Output:
        out = Output(conn.id, frame, False, after_lsn, conn.version)
        self._outputs.append(out)
        conn.last_write = self.clock()
        return out

    def _close(self, conn: ClientConnection) -> None:
        conn.closing = True
        self._outputs.append(Output(conn.id, None, True, 0, conn.version))

    # ------------------------------------------------------------------ helpers: routing
    def _queue(self, name: str) -> MessageQueue:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = MessageQueue(name, "queue", queue_key(name), self.store,
                                                     window=self.queue_window)
            queue.memory_limit = self.queue_memory_limit
        return queue

    def _topic(self, name: str) -> Topic:
        topic = self.topics.get(name)
        if topic is None:
            topic = self.topics[name] = Topic(name)
        return topic

    def _new_durable(self, client_id, name, topic_name, selector_text, selector, no_local) -> Durable:
        key = durable_key(client_id, name)
        queue = MessageQueue(f"{client_id}:{name}", "durable", key, self.store, window=self.queue_window)
        queue.memory_limit = self.queue_memory_limit
        durable = Durable(client_id, name, topic_name, queue, selector_text, selector, no_local)
        self.durables[key] = durable
        self._topic(topic_name).durables.append(durable)
        return durable

    def _remove_durable(self, durable: Durable) -> None:
        self.durables.pop(durable.key, None)
        topic = self.topics.get(durable.topic)
        if topic is not None and durable in topic.durables:
            topic.durables.remove(durable)
        self.durability.defer(DeleteKey(durable.key))

    def _mark_dirty(self, queue: MessageQueue) -> None:
        self._dirty[id(queue)] = queue

    def _publish(self, conn: Optional[ClientConnection], frames: List[Frame]) -> int:
        """Turn SEND frames into messages on their queues; returns the lsn to wait for."""
        return self._place(self._prepare(conn, frames))

    def _prepare(self, conn: Optional[ClientConnection], frames: List[Frame]):
        """Build the messages and their store ops; raises StompError before anything is stored.

        Every message gets a broker-assigned message-id (a client's own travels in
        ``client-message-id``). Duplicates are recognised only by an explicit
        ``_AMQ_DUPL_ID`` per destination, which hamq's failover client sets on
        every resendable SEND: a plain message-id is never a reason to drop a
        message.
        """
        now_ms = int(self.clock() * 1000)
        store = self.store
        adds: list = []
        remembered: list = []
        placements: List[Tuple[MessageQueue, Message, int]] = []
        seen = set()
        duplicate = False
        topics: List[Topic] = []
        jobs: list = []
        for frame in frames:
            destination = frame.get("destination")
            kind, name = parse_destination(destination)
            job = self._plan_job(frame) if conn is not None and self.scheduler is not None else None
            if conn is not None:
                conn.message_seq += 1
                message_id = self.ids.message_id(conn.number, conn.message_seq)
            else:
                self._internal_seq += 1
                message_id = self.ids.message_id(0, self._internal_seq)
            persistent = frame.get("persistent") == "true"
            headers = []
            has_timestamp = False
            duplicate_id = None
            for k, v in frame.headers:
                if k in FRAME_ONLY_HEADERS:
                    if k == "message-id":
                        headers.append((CLIENT_MESSAGE_ID, v))
                    continue
                if k == "timestamp":
                    has_timestamp = True
                elif k == DUPLICATE_ID and duplicate_id is None:
                    duplicate_id = v
                headers.append((k, v))
            if not has_timestamp:
                headers.append(("timestamp", str(now_ms)))
            scope = None
            if conn is not None and (persistent or job is not None) and store is not None and duplicate_id:
                scope = f"{kind}:{name}"
                if (scope, duplicate_id) in seen or store.is_duplicate(scope, duplicate_id):
                    duplicate = True
                    log.debug("duplicate message %s to %s stored once", duplicate_id, destination)
                    continue
                seen.add((scope, duplicate_id))
            if job is not None:
                jobs.append((job, len(adds)))
                if store is not None:
                    adds.append(AddMessage(JOBS_KEY, job.record_id, job.stored_headers(), job.body))
                    if scope is not None:
                        remembered.append(RememberId(scope, duplicate_id))
                continue
            message = Message(message_id, destination, headers, frame.body, persistent, origin=conn)
            if kind == "queue":
                targets = [self._queue(name)]
            else:
                topic = self._topic(name)
                topics.append(topic)
                targets = [s.queue for s in topic.subscriptions if s.active and s.matches(message)]
                targets += [d.queue for d in topic.durables if d.matches(message, conn)]
            stored = False
            for i, queue in enumerate(targets):
                copy = message if i == 0 else message.copy_for(queue.key)
                copy.key = queue.key
                if persistent and queue.key is not None and store is not None:
                    placements.append((queue, copy, len(adds)))
                    adds.append(AddMessage(queue.key, message_id, headers, frame.body))
                    stored = True
                else:
                    copy.key = None
                    placements.append((queue, copy, -1))
            if stored and scope is not None:
                remembered.append(RememberId(scope, duplicate_id))
        for queue, message, _ in placements if self.send_fail_if_no_space else ():
            try:
                queue.check_room(message)
            except QueueFull:
                raise StompError(
                    f"queue {queue.name!r} holds {queue.memory_bytes // (1024 * 1024)} MiB of non-persistent "
                    'messages waiting for a consumer, its memory limit, and sendFailIfNoSpace="true" refuses '
                    "this message instead of holding the producer",
                    "consume from the queue, send with persistent:true (stored on disk, paged), or remove "
                    'sendFailIfNoSpace="true" so producers wait for room') from None
        return _Prepared(adds, remembered, placements, jobs, duplicate, topics)

    def _place(self, prepared: "_Prepared", extra: Tuple = ()) -> int:
        """Store and enqueue what :meth:`_prepare` built, as one batch (behind any deferred acks).

        ``extra``: more ops for the same batch (a firing's job ack and next occurrence).
        """
        store = self.store
        for topic in prepared.topics:
            topic.enqueued += 1
        lsn = self.durability.token_now() if prepared.duplicate else 0
        ops = prepared.adds + prepared.remembered + list(extra)
        if ops and store is not None:
            lsn = self.durability.append(ops)
            seqs = store.last_seqs
            for _queue, message, index in prepared.placements:
                if index >= 0:
                    message.seq = seqs[index]
            for job, index in prepared.jobs:
                job.seq = seqs[index]
        for job, _ in prepared.jobs:
            self.scheduler.add(job)
        for queue, message, _ in prepared.placements:
            queue.add(message)
            self._mark_dirty(queue)
        return lsn

    # ------------------------------------------------------------------ helpers: flow control
    def _check_flow(self, frames: List[Frame]) -> None:
        """Raise _Blocked if a frame would add memory to a queue over its limit.

        Runs before anything is built or stored, so a held frame is simply run
        again later. Persistent messages to a stored queue never wait: past the
        limit they stay on disk. Topics are not held (see docs/flow-control.md).
        """
        if self.send_fail_if_no_space:
            return  # _prepare refuses instead
        for frame in frames:
            try:
                kind, name = parse_destination(frame.get("destination"))
            except StompError:
                return  # _prepare names the problem
            if kind != "queue" or (self.scheduler is not None and _is_scheduled(frame)):
                continue
            queue = self.queues.get(name)
            if queue is None or queue.pages_to_disk(frame.get("persistent") == "true"):
                continue
            if queue.over_limit():
                raise _Blocked(queue)

    def _hold(self, conn: ClientConnection, frame: Frame, queue: MessageQueue) -> None:
        """Keep ``frame`` (and all that follows on ``conn``) until ``queue`` has room."""
        conn.parked.append(frame)
        conn.blocked_on = queue
        queue.blocked_producers.append(conn)
        if len(queue.blocked_producers) == 1:
            log.info("queue %s is at its memory limit (%d bytes): holding its producers until consumers "
                     "drain it", queue.name, queue.memory_limit)
        self._flow_queues[id(queue)] = queue

    def _resume_producers(self) -> None:
        """Run the held frames of producers whose queue drained below its resume mark."""
        for key, queue in list(self._flow_queues.items()):
            while queue.blocked_producers and not queue.over_limit():
                conn = queue.blocked_producers.popleft()
                conn.blocked_on = None
                frames = conn.parked
                conn.parked = deque()
                conn.last_read = self.clock()
                for frame in frames:
                    self.receive(conn.id, frame)  # may hold again; later frames queue behind it
                if not conn.parked and conn.id in self.connections:
                    self._resumed.append(conn.id)
            if not queue.blocked_producers:
                del self._flow_queues[key]

    def _plan_job(self, frame: Frame):
        """The job a SEND with AMQ_SCHEDULED_* headers asks for (None: deliver it now); nothing stored yet."""
        from hamq.core.scheduler import ScheduleError

        if not Scheduler.is_scheduled(frame.headers):
            return None
        try:
            return self.scheduler.plan(frame.headers, frame.body, self.clock())
        except ScheduleError as exc:
            raise StompError(f"bad scheduling header: {exc}", "fix the AMQ_SCHEDULED_* header value") from None

    def _fire_due(self, now: float) -> None:
        """Fire due jobs: each firing's message, the job's ack and its next occurrence are one batch.

        So a job is acked exactly when its message is stored: a crash before
        the batch is durable fires it again after the takeover (nothing was
        receipted or delivered from it), a crash after finds both done.
        """
        for job in self.scheduler.due(now):
            headers, body = job.fired_message()
            acked_seq = job.seq
            try:
                prepared = self._prepare(None, [Frame("SEND", headers, body)])
            except StompError as exc:  # validated at SEND time; a job that still cannot go is dropped loudly
                log.error("scheduled job %s cannot be delivered and is dropped: %s", job.job_id, exc.problem)
                prepared = _Prepared([], [], [], [], False, [])
            extra: list = []
            if self.store is not None and acked_seq >= 0:
                extra.append(Ack(JOBS_KEY, acked_seq))
            if job.advance():
                if self.store is not None:
                    extra.append(AddMessage(JOBS_KEY, job.record_id, job.stored_headers(), job.body))
                # the next occurrence is the batch's last AddMessage: its seq follows the adds' seqs
                prepared.jobs.append((job, len(prepared.adds)))
            self._place(prepared, extra)

    # ------------------------------------------------------------------ helpers: delivery
    def _run_dispatch(self) -> None:
        if not self._dirty:
            return
        self._now = self.clock()
        now_ms = self._now * 1000
        dirty = self._dirty
        self._dirty = {}
        for key, queue in dirty.items():
            if dispatch(queue, self._deliver, self._expire, now_ms):
                self._dirty[key] = queue

    def _deliver(self, sub: Subscription, message: Message) -> None:
        conn = sub.connection
        self._ack_counter += 1
        ack_id = f"{self._ack_prefix}{self._ack_counter}"
        headers = [("subscription", sub.id), ("message-id", message.message_id),
                   ("destination", message.destination)]
        if conn.version == "1.2":
            headers.append(("ack", ack_id))
        if message.redelivered:
            headers.append(("redelivered", "true"))
        out = Output(conn.id, MessageFrame(headers, message), False, 0, conn.version)
        out.cost = len(message.body) + MESSAGE_OVERHEAD
        conn.unwritten += out.cost
        self._outputs.append(out)
        conn.last_write = self._now
        queue = sub.queue
        queue.taken(message)
        if sub.ack_mode == "auto":
            queue.dequeued += 1
            if message.key is not None:
                # Marked first, acked only once handed to the connection: a crash in between
                # redelivers it (flagged redelivered) instead of acking what nobody got.
                self.durability.mark(message.key, message.seq)
                self.durability.after_next_batch(out)
                out.after_release = (Ack(message.key, message.seq),)
        else:
            sub.track(ack_id, message)
            conn.ack_index[ack_id] = sub
            queue.inflight += 1
            if message.key is not None:
                self.durability.mark(message.key, message.seq)
                self.durability.after_next_batch(out)

    def _expire(self, queue: MessageQueue, message: Message) -> None:
        queue.taken(message)
        queue.dequeued += 1
        if message.key is not None:
            self.durability.defer(Ack(message.key, message.seq))

    def _apply_ack(self, conn: ClientConnection, sub: Subscription, ack_id: str, nack: bool,
                   dead: Optional[List[Tuple[List, Message]]] = None) -> int:
        """ACK (cumulative in client mode) or NACK one delivery; returns an lsn to wait for.

        ``dead``: collect dead-letter moves there for the caller's batch instead of writing them.
        """
        lsn = 0
        ack_ids = [ack_id] if nack else sub.acked_by(ack_id)
        queue = sub.queue
        for one in ack_ids:
            message = sub.release(one)
            conn.ack_index.pop(one, None)
            if message is None:
                continue
            queue.inflight -= 1
            if nack:
                lsn = max(lsn, self._dead_letter(queue, message, "NACK", dead))
            else:
                queue.dequeued += 1
                if message.key is not None:
                    self.durability.defer(Ack(message.key, message.seq))
        self._mark_dirty(queue)
        return lsn

    def _dead_letter(self, queue: MessageQueue, message: Message, cause: str,
                     dead: Optional[List[Tuple[List, Message]]] = None) -> int:
        """Move a message to the DLQ (ActiveMQ's POISON_ACK); returns the lsn of the move.

        With ``dead`` the move's ops and copy are handed to the caller, who writes
        them in its own batch and sets the copy's seq (a COMMIT's NACKs).
        """
        queue.dequeued += 1
        dlq = self._queue(self.dlq_name)
        headers = [(k, v) for k, v in message.headers if k not in ("original-destination", "dlqDeliveryFailureCause")]
        headers.append(("original-destination", message.destination))
        headers.append(("dlqDeliveryFailureCause", cause))
        moved = Message(message.message_id, f"/queue/{self.dlq_name}", headers, message.body, message.persistent,
                        None)
        lsn = 0
        if message.persistent and self.store is not None:
            ops = [AddMessage(dlq.key, message.message_id, headers, message.body)]
            if message.key is not None:
                ops.append(Ack(message.key, message.seq))
            moved.key = dlq.key
            if dead is not None:
                dead.append((ops, moved))
            else:
                lsn = self.durability.append(ops)
                moved.seq = self.store.last_seqs[0]
        log.info("message %s from %s moved to %s: %s", message.message_id, message.destination, self.dlq_name, cause)
        dlq.add(moved)
        self._mark_dirty(dlq)
        return lsn

    def _close_subscription(self, sub: Subscription) -> None:
        """End a subscription; its unacked messages are redelivered (or dead-lettered)."""
        sub.active = False
        queue = sub.queue
        if sub in queue.consumers:
            queue.consumers.remove(sub)
        conn = sub.connection
        messages = list(sub.inflight.values())
        for ack_id in sub.inflight:
            conn.ack_index.pop(ack_id, None)
        sub.inflight.clear()
        sub.ack_by_message_id.clear()
        queue.inflight -= len(messages)
        if sub.durable is not None:
            if sub.durable.subscription is sub:
                sub.durable.subscription = None
        elif queue.kind == "topic-subscription":
            topic = self.topics.get(queue.name)
            if topic is not None and sub in topic.subscriptions:
                topic.subscriptions.remove(sub)
            return  # a non-durable topic subscription's messages die with it
        back = []
        for message in messages:
            message.redelivered = True
            message.delivery_count += 1
            if 0 <= self.max_redeliveries < message.delivery_count:
                self._dead_letter(queue, message, f"delivery count exceeded maximumRedeliveries "
                                                  f"({self.max_redeliveries})")
            else:
                back.append(message)
        queue.requeue(back)
        self._mark_dirty(queue)


class _Prepared(NamedTuple):
    """What a set of SEND frames will store and enqueue (see Broker._prepare and Broker._place)."""

    adds: list  # AddMessage ops, messages and jobs
    remembered: list  # RememberId ops of their duplicate ids
    placements: list  # (queue, message, index of its AddMessage or -1)
    jobs: list  # (job, index of its AddMessage)
    duplicate: bool  # some frame was a resend of a stored one
    topics: list  # topics published to (for their counters)


def _ack_prefix(store) -> str:
    """What makes this term's STOMP 1.2 ack ids unique among all terms of the broker group.

    The epoch is unique per master term across the group, so an ack id a client
    kept from before a failover can never name a message of the new term: it
    gets an ERROR instead of acking another message. Without a store (tests,
    no group) a random tag does the same.
    """
    epoch = getattr(store, "epoch", 0) if store is not None else 0
    if epoch:
        return f"{epoch}-"
    return f"{secrets.token_hex(4)}-"


def _is_scheduled(frame: Frame) -> bool:
    return Scheduler.is_scheduled(frame.headers)


def _flag(frame: Frame, *names: str) -> bool:
    for name in names:
        value = frame.get(name)
        if value is not None:
            return value.strip().lower() == "true"
    return False
