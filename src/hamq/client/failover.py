"""A blocking STOMP client that survives master/slave failover without losing messages.

Plain STOMP clients reconnect at best; they neither resubscribe nor resend, so
a broker failover silently drops subscriptions and in-flight messages. This
client keeps enough state to repair both:

* every SEND carries a client-made ``message-id`` and asks for a RECEIPT; a
  persistent SEND not yet receipted when the connection drops is written again
  on the next master with the same id in ``_AMQ_DUPL_ID``, and the broker's
  per-destination duplicate audit keeps it from being enqueued twice;
* every subscription (durable ones included) is replayed after a reconnect;
* work whose outcome cannot be known -- an open transaction, a non-persistent
  send -- is reported to the caller as an exception, never dropped silently.

One background thread owns the connection: it connects with ActiveMQ's
back-off rules, reads frames, and replays state after a reconnect. Caller
threads only write frames and wait on a condition variable. Framing is the
broker's own sans-IO codec (:mod:`hamq.stomp.codec`).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import random
import select
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

from hamq.client.errors import (
    BrokerError,
    ClientClosed,
    ClientError,
    ConnectionFailed,
    FailoverTimeout,
    SendInDoubt,
    TransactionInDoubt,
)
from hamq.client.tracker import FailoverTracker, Pending
from hamq.client.url import BrokerURI, FailoverURL, parse_url, pass_limit, reconnect_delays
from hamq.stomp.codec import Frame, FrameDecoder, ProtocolError, encode_frame
from hamq.stomp.headers import DUPLICATE_ID

log = logging.getLogger("hamq.client")

ACK_MODES = ("auto", "client", "client-individual")
#: Unsolicited ERROR frames kept in ``broker_errors`` (the newest).
_KEEP_ERRORS = 100
#: Longest the reader sleeps in select(); bounds how late heart-beats and close() are noticed.
_TICK = 0.5
#: A connection that dies younger than this (or on a fatal ERROR) was a failed attempt:
#: the next connect waits out the URL's back-off instead of trying again at once.
_HEALTHY_S = 1.0
#: An ERROR naming no receipt is taken as the reason for a close that follows within this.
_FATAL_S = 2.0


@dataclass
class ReconnectEvent:
    """One outage: when the connection dropped, when it was back, and where to."""

    down_at: float
    previous_uri: str
    reason: str
    up_at: Optional[float] = None
    uri: Optional[str] = None

    @property
    def outage_seconds(self) -> Optional[float]:
        return None if self.up_at is None else self.up_at - self.down_at

    def as_dict(self) -> dict:
        return {
            "down_at": self.down_at,
            "up_at": self.up_at,
            "outage_seconds": self.outage_seconds,
            "previous_uri": self.previous_uri,
            "uri": self.uri,
            "reason": self.reason,
        }


@dataclass
class Subscription:
    """A subscription the client replays on every new connection."""

    client: "FailoverClient" = field(repr=False)
    id: str
    destination: str
    ack: str
    selector: Optional[str] = None
    prefetch: Optional[int] = None
    durable_name: Optional[str] = None
    headers: Dict[str, str] = field(default_factory=dict)

    def frame(self) -> Frame:
        headers = dict(self.headers)
        headers.update({"destination": self.destination, "id": self.id, "ack": self.ack})
        if self.selector is not None:
            headers["selector"] = self.selector
        if self.prefetch is not None:
            headers["activemq.prefetchSize"] = str(self.prefetch)
        if self.durable_name is not None:
            headers["activemq.subscriptionName"] = self.durable_name
        return Frame.build("SUBSCRIBE", headers)

    def unsubscribe(self, remove_durable: bool = False) -> None:
        self.client.unsubscribe(self, remove_durable=remove_durable)


@dataclass
class Message:
    """A MESSAGE frame as the application sees it."""

    destination: str
    headers: Dict[str, str]
    body: bytes
    message_id: str
    redelivered: bool
    subscription: Subscription = field(repr=False)
    ack_id: Optional[str] = field(default=None, repr=False)
    #: Which connection delivered it; an ack on a later connection would be meaningless.
    generation: int = field(default=0, repr=False)

    def ack(self, transaction: Optional[str] = None) -> bool:
        return self.subscription.client.ack(self, transaction=transaction)

    def nack(self, transaction: Optional[str] = None) -> bool:
        return self.subscription.client.nack(self, transaction=transaction)


@dataclass
class _Connection:
    sock: socket.socket
    decoder: FrameDecoder
    uri: BrokerURI
    version: str
    send_interval: float  # seconds between our heart-beats, 0 = none
    recv_interval: float  # seconds the broker promised between its heart-beats, 0 = none
    generation: int = 0
    #: The text of an ERROR that named no receipt, while nothing followed it (a fatal one closes next).
    error: Optional[str] = None
    error_at: float = 0.0
    #: Receipts of the frames outstanding when that ERROR arrived: the frame it is about is one of them.
    suspects: List[str] = field(default_factory=list)


class _Refused(Exception):
    """A broker answered CONNECT with ERROR: reachable, but it will not have us."""


#: SEND headers the client sets itself; a caller's copy would break resend bookkeeping.
_OWN_SEND_HEADERS = frozenset(
    {"destination", "message-id", DUPLICATE_ID, "content-length", "persistent", "transaction", "receipt"}
)

_CLOSED = object()  # queue sentinel: wakes receive() on close or failure


class FailoverClient:
    """Blocking STOMP client for a ``failover:(...)`` URL; see the module docstring.

    ``window`` is how many receipted sends may be in flight: 1 (the default)
    makes :meth:`send` synchronous; with N > 1 it returns after writing and
    :meth:`flush` waits for the rest.
    """

    def __init__(
        self,
        url: Union[str, FailoverURL],
        login: Optional[str] = None,
        passcode: Optional[str] = None,
        client_id: Optional[str] = None,
        heartbeat: Tuple[int, int] = (10000, 10000),
        window: int = 1,
        version: str = "1.2",
        vhost: Optional[str] = None,
    ):
        self.url = parse_url(url) if isinstance(url, str) else url
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}. Fix: use 1 for synchronous sends")
        if len(heartbeat) != 2 or min(heartbeat) < 0:
            raise ValueError(f"heartbeat must be two non-negative milliseconds, got {heartbeat!r}")
        self.login, self.passcode, self.client_id = login, passcode, client_id
        self.heartbeat = (int(heartbeat[0]), int(heartbeat[1]))
        self.window = window
        self.accept_version = version
        self.vhost = vhost  # CONNECT's host header; None sends the broker URI's host
        self.options = self.url.options

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._write_lock = threading.Lock()
        self._conn: Optional[_Connection] = None
        self._generation = 0
        self._state = "new"  # new | connecting | connected | reconnecting | failed | closed
        self._failure: Optional[ClientError] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._closing = False  # set before DISCONNECT so the broker's close is not a failover
        self._last_write = 0.0

        self._tracker = FailoverTracker()
        self._async_errors: List[Exception] = []
        self._messages: "queue.Queue" = queue.Queue()
        self._ids = itertools.count(1)
        self._id_prefix = f"ID:{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._last_uri: Optional[BrokerURI] = None

        self.reconnect_events: List[ReconnectEvent] = []
        self.broker_errors: List[Frame] = []
        self.stats = {"sent": 0, "receipted": 0, "resent": 0, "received": 0}

    # ------------------------------------------------------------------ lifecycle

    def connect(self) -> "FailoverClient":
        """Connect to the first reachable broker (``startupMaxReconnectAttempts`` apply)."""
        with self._cond:
            if self._state != "new":
                raise ClientError(f"connect() called twice (state {self._state}). Fix: create a new client")
            self._state = "connecting"
        self._thread = threading.Thread(target=self._supervise, name="hamq-client", daemon=True)
        self._thread.start()
        try:
            with self._cond:
                self._wait_for(lambda: self._state == "connected", self._deadline(), "connecting")
        except ClientError:
            self.close()  # do not leave a thread retrying behind the caller's back
            raise
        return self

    def __enter__(self) -> "FailoverClient":
        return self.connect() if self._state == "new" else self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._state == "connected"

    @property
    def broker_uri(self) -> Optional[str]:
        conn = self._conn
        return str(conn.uri) if conn else None

    def close(self, timeout: float = 5.0) -> None:
        """DISCONNECT politely (waiting up to ``timeout`` s for its receipt) and stop."""
        with self._cond:
            if self._state in ("closed",):
                return
            was_connected = self._state == "connected"
            self._closing = True
        if was_connected:
            try:
                pending = self._request(Frame.build("DISCONNECT"), "disconnect", None)
                with self._cond:
                    end = time.monotonic() + timeout
                    while not pending.done and self._state == "connected" and time.monotonic() < end:
                        self._cond.wait(end - time.monotonic())
            except ClientError:
                pass
        with self._cond:
            self._state = "closed"
            self._failure = ClientClosed("the client is closed")
            self._cond.notify_all()
        self._stop.set()
        self._kill_socket()
        self._messages.put(_CLOSED)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # ------------------------------------------------------------------ producer API

    def send(
        self,
        destination: str,
        body: Union[bytes, str] = b"",
        headers: Optional[Dict[str, str]] = None,
        persistent: bool = True,
        transaction: Optional[str] = None,
        message_id: Optional[str] = None,
    ) -> str:
        """Send one message; returns its ``message-id``.

        With ``window == 1`` this returns only after the broker's RECEIPT, i.e.
        once the message is durable on the master. Pass ``message_id`` to
        resend something that raised :class:`SendInDoubt`.
        """
        if isinstance(body, str):
            body = body.encode("utf-8")
        deadline = self._deadline()
        with self._cond:
            self._raise_async_errors()
            self._tracker.check_transaction(transaction)
            self._wait_for(
                lambda: self._state == "connected" and self._tracker.sends_in_flight < self.window,
                deadline,
                "sending",
            )
            self._tracker.check_transaction(transaction)
            n = next(self._ids)
            mid = message_id or f"{self._id_prefix}:{n}"
            frame_headers = {k: str(v) for k, v in (headers or {}).items() if k not in _OWN_SEND_HEADERS}
            frame_headers.update(
                {
                    "destination": destination,
                    "message-id": mid,
                    # The broker stores a resend of this frame once (per destination).
                    DUPLICATE_ID: mid,
                    "content-length": str(len(body)),
                }
            )
            if persistent:
                frame_headers["persistent"] = "true"
            if transaction is not None:
                frame_headers["transaction"] = transaction
            pending = self._tracker.add(
                Pending(
                    receipt=f"send-{n}",
                    frame=Frame.build("SEND", frame_headers, body),
                    kind="send",
                    persistent=persistent,
                    transaction=transaction,
                    message_id=mid,
                    written=self._generation,
                )
            )
            self.stats["sent"] += 1
            generation = self._generation
        # A failed write needs no handling here: the reader notices the dead
        # socket and the reconnect replays (or fails) everything still pending.
        self._write(pending.frame, generation)
        if self.window == 1:
            self._wait_pending(pending, deadline)
        return mid

    def flush(self, timeout: Optional[float] = None) -> None:
        """Wait until every send is receipted; raises the first send error seen."""
        deadline = self._deadline(timeout)
        with self._cond:
            self._wait_for(lambda: self._tracker.sends_in_flight == 0, deadline, "flushing")
            self._raise_async_errors()

    @property
    def in_flight(self) -> int:
        return self._tracker.sends_in_flight

    # ------------------------------------------------------------------ transactions

    def begin(self, transaction: Optional[str] = None) -> str:
        tx = transaction or f"tx-{self._id_prefix}:{next(self._ids)}"
        with self._lock:
            self._tracker.begin(tx)
        try:
            self._call(Frame.build("BEGIN", {"transaction": tx}), "begin", tx)
        except ClientError:
            with self._lock:
                self._tracker.end(tx)
            raise
        return tx

    def commit(self, transaction: str) -> None:
        """Commit; raises :class:`TransactionInDoubt` if a failover hit the transaction."""
        with self._lock:
            self._tracker.check_transaction(transaction)
        try:
            self._call(Frame.build("COMMIT", {"transaction": transaction}), "commit", transaction)
        finally:
            with self._lock:
                self._tracker.end(transaction)

    def abort(self, transaction: str) -> None:
        """Roll back. After a failover the broker already rolled it back, so this just forgets it."""
        with self._lock:
            state = self._tracker.end(transaction)
        if state is None:
            raise ClientError(f"unknown transaction {transaction!r}. Fix: pass an id returned by begin()")
        if state == "open":
            self._call(Frame.build("ABORT", {"transaction": transaction}), "abort", transaction)

    # ------------------------------------------------------------------ consumer API

    def subscribe(
        self,
        destination: str,
        ack: str = "auto",
        selector: Optional[str] = None,
        prefetch: Optional[int] = None,
        durable_name: Optional[str] = None,
        headers: Optional[Dict[str, str]] = None,
    ) -> Subscription:
        """Subscribe; the subscription is replayed on every reconnect."""
        if ack not in ACK_MODES:
            raise ValueError(f"unknown ack mode {ack!r}. Fix: use one of {', '.join(ACK_MODES)}")
        if durable_name is not None and not self.client_id:
            raise ValueError(
                "a durable subscription needs a client id. Fix: FailoverClient(url, client_id='...')"
            )
        if prefetch is not None and prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        sub = Subscription(
            client=self,
            id=f"sub-{next(self._ids)}",
            destination=destination,
            ack=ack,
            selector=selector,
            prefetch=prefetch,
            durable_name=durable_name,
            headers=dict(headers or {}),
        )
        try:
            # Registered under the same lock that picks the connection, so a reconnect
            # replays it exactly once.
            self._call(
                sub.frame(),
                "subscribe",
                None,
                register=lambda: self._tracker.subscriptions.__setitem__(sub.id, sub),
            )
        except ClientError:
            with self._lock:
                self._tracker.subscriptions.pop(sub.id, None)
            raise
        return sub

    def unsubscribe(self, sub: Subscription, remove_durable: bool = False) -> None:
        """Stop a subscription; ``remove_durable`` also deletes a durable one on the broker."""
        with self._lock:
            self._tracker.subscriptions.pop(sub.id, None)
        headers = {"id": sub.id}
        durable = bool(remove_durable and sub.durable_name)
        if durable:
            headers["activemq.subscriptionName"] = sub.durable_name
        # Removing a durable subscription is state on the broker: a failover must not
        # swallow it, so it is written again on the next master until one receipts it.
        self._call(Frame.build("UNSUBSCRIBE", headers), "unsubscribe", None, resend=durable)

    def receive(self, timeout: Optional[float] = None) -> Optional[Message]:
        """The next message, or ``None`` after ``timeout`` seconds.

        Messages prefetched on a connection that has since failed are skipped
        for ``client``/``client-individual`` subscriptions: the broker will
        redeliver them (flagged ``redelivered``) and they could not be acked.
        """
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if end is None else max(0.0, end - time.monotonic())
            try:
                item = self._messages.get(timeout=remaining)
            except queue.Empty:
                return None
            if item is _CLOSED:
                self._messages.put(_CLOSED)
                with self._lock:
                    raise self._failure or ClientClosed("the client is closed")
            msg: Message = item
            if msg.subscription.id not in self._tracker.subscriptions:
                continue
            if msg.subscription.ack != "auto" and msg.generation != self._generation:
                continue
            return msg

    def ack(self, msg: Message, transaction: Optional[str] = None) -> bool:
        """Acknowledge ``msg``; False if it came over a connection that has since failed.

        In that case the broker will deliver it again with ``redelivered`` set.
        """
        return self._ack_frame("ACK", msg, transaction)

    def nack(self, msg: Message, transaction: Optional[str] = None) -> bool:
        """Reject ``msg`` (the broker moves it towards the dead-letter queue)."""
        return self._ack_frame("NACK", msg, transaction)

    # ------------------------------------------------------------------ internals: requests

    def _ack_frame(self, command: str, msg: Message, transaction: Optional[str]) -> bool:
        if msg.subscription.ack == "auto":
            raise ValueError(
                f"cannot {command} a message of an ack=auto subscription: the broker acknowledged it on "
                f"delivery. Fix: subscribe with ack='client-individual' or ack='client'"
            )
        with self._lock:
            self._tracker.check_transaction(transaction)
            conn, generation = self._conn, self._generation
            if msg.generation != generation or conn is None or self._state != "connected":
                return False
            version = conn.version
        if version == "1.0" and command == "NACK":
            raise ClientError("the broker speaks STOMP 1.0, which has no NACK. Fix: use a 1.1+ broker")
        if version == "1.2" and msg.ack_id:
            headers = {"id": msg.ack_id}
        elif version == "1.2":
            # The broker sent no ``ack`` header: give it every way to find the message.
            headers = {
                "id": msg.message_id,
                "message-id": msg.message_id,
                "subscription": msg.subscription.id,
            }
        elif version == "1.1":
            headers = {"subscription": msg.subscription.id, "message-id": msg.message_id}
        else:
            headers = {"message-id": msg.message_id}
        if transaction is not None:
            headers["transaction"] = transaction
        return self._write(Frame.build(command, headers), generation)

    def _request(
        self, frame: Frame, kind: str, transaction: Optional[str], register=None, resend: bool = False
    ) -> Pending:
        """Write ``frame`` with a receipt request once connected; return its bookkeeping."""
        deadline = self._deadline()
        with self._cond:
            self._wait_for(lambda: self._state == "connected", deadline, kind)
            if register is not None:
                register()
            pending = self._tracker.add(
                Pending(
                    receipt=f"{kind}-{next(self._ids)}",
                    frame=frame,
                    kind=kind,
                    transaction=transaction,
                    resend=resend,
                    written=self._generation,
                )
            )
            generation = self._generation
        self._write(frame, generation)
        return pending

    def _call(
        self, frame: Frame, kind: str, transaction: Optional[str], register=None, resend: bool = False
    ) -> None:
        """Write ``frame`` and wait for its receipt."""
        deadline = self._deadline()
        pending = self._request(frame, kind, transaction, register, resend)
        self._wait_pending(pending, deadline)

    def _wait_pending(self, pending: Pending, deadline: Optional[float]) -> None:
        with self._cond:
            while not pending.done:
                if self._state in ("failed", "closed"):
                    self._forget(pending)
                    raise self._failure or ClientClosed("the client is closed")
                if deadline is not None and time.monotonic() >= deadline:
                    self._forget(pending)
                    raise self._timeout_error(pending)
                self._cond.wait(None if deadline is None else deadline - time.monotonic())
            if pending.error is not None:
                raise pending.error

    def _timeout_error(self, pending: Pending) -> ClientError:
        ms = self.options.timeout
        if pending.kind == "send":
            return SendInDoubt(
                f"no receipt for message {pending.message_id} within timeout={ms} ms; it may or may not have "
                f"reached the broker. Fix: send it again with message_id={pending.message_id!r} "
                f"(the broker drops the copy if it has it)",
                pending.message_id or "",
            )
        if pending.kind == "commit":
            return TransactionInDoubt(
                f"no receipt for COMMIT of {pending.transaction} within timeout={ms} ms; its outcome is unknown",
                pending.transaction or "",
            )
        return FailoverTimeout(f"no receipt for {pending.kind} within timeout={ms} ms")

    def _forget(self, pending: Pending) -> None:
        self._tracker.forget(pending)
        self._cond.notify_all()

    def _deadline(self, timeout: Optional[float] = None) -> Optional[float]:
        if timeout is None and self.options.timeout >= 0:
            timeout = self.options.timeout / 1000.0
        return None if timeout is None else time.monotonic() + timeout

    def _wait_for(self, ready, deadline: Optional[float], doing: str) -> None:
        """Wait (holding ``_cond``) until ``ready()``; raise on failure, close or timeout."""
        while not ready():
            if self._state in ("failed", "closed"):
                raise self._failure or ClientClosed("the client is closed")
            if deadline is not None and time.monotonic() >= deadline:
                raise FailoverTimeout(
                    f"{doing}: no broker connection within timeout={self.options.timeout} ms "
                    f"(brokers: {', '.join(str(b) for b in self.url.brokers)}). "
                    f"Fix: check that a master is running, or raise the URL's timeout option"
                )
            self._cond.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _raise_async_errors(self) -> None:
        if self._async_errors:
            raise self._async_errors.pop(0)

    def _write(self, frame: Frame, generation: int) -> bool:
        """Write one frame on connection ``generation``; False if that connection is gone."""
        with self._write_lock:
            conn = self._conn
            if conn is None or generation != self._generation:
                return False
            try:
                conn.sock.sendall(encode_frame(frame, conn.version))
            except OSError:
                self._kill_socket()
                return False
            self._last_write = time.monotonic()
            return True

    def _kill_socket(self) -> None:
        conn = self._conn
        if conn is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ------------------------------------------------------------------ internals: connection thread

    def _supervise(self) -> None:
        first = True
        # Back-off carried across connections that die young: a broker that accepts
        # CONNECT and closes at once is a failed attempt, not a reason to retry at once.
        backoff = None
        while not self._stop.is_set():
            if backoff is not None and self._stop.wait(next(backoff)):
                return
            try:
                conn = self._establish(first)
            except ClientError as exc:
                self._fail(exc)
                return
            if conn is None:  # closed while connecting
                return
            connected_at = time.monotonic()
            self._replay(conn)
            first = False
            reason = self._read_loop(conn)
            try:
                conn.sock.close()
            except OSError:
                pass
            if self._stop.is_set() or self._closing:
                return
            if conn.error is not None or time.monotonic() - connected_at < _HEALTHY_S:
                backoff = backoff or reconnect_delays(self.options)
            else:
                backoff = None
            self._connection_lost(conn, reason)
            if not self.url.is_failover:
                self._fail(
                    ConnectionFailed(
                        f"lost the connection to {conn.uri}: {reason}. Fix: use a failover:(...) URL to "
                        f"reconnect automatically"
                    )
                )
                return

    def _fail(self, exc: ClientError) -> None:
        with self._cond:
            if self._state == "closed":
                return
            self._state = "failed"
            self._failure = exc
            self._cond.notify_all()
        self._messages.put(_CLOSED)
        log.debug("client failed: %s", exc)

    def _connect_order(self) -> List[BrokerURI]:
        brokers = list(self.url.brokers)
        if self.options.randomize:
            random.shuffle(brokers)
        if self._last_uri in brokers and len(brokers) > 1:
            # Like ActiveMQ: the broker that just failed is tried last.
            brokers.remove(self._last_uri)
            brokers.append(self._last_uri)
        return brokers

    def _establish(self, first: bool) -> Optional[_Connection]:
        limit = pass_limit(self.options, first)
        delays = reconnect_delays(self.options)
        passes = 0
        errors: Dict[str, str] = {}
        while not self._stop.is_set():
            for uri in self._connect_order():
                if self._stop.is_set():
                    return None
                try:
                    return self._open(uri)
                except _Refused as exc:
                    raise ConnectionFailed(
                        f"{uri} refused the connection: {exc}. Fix: check login, passcode, client id and virtual host"
                    ) from None
                except (OSError, ProtocolError, ssl.SSLError) as exc:
                    errors[str(uri)] = str(exc) or type(exc).__name__
            passes += 1
            if limit is not None and passes >= limit:
                detail = "; ".join(f"{u}: {e}" for u, e in errors.items())
                raise ConnectionFailed(
                    f"could not connect to any broker after {passes} attempt(s) ({detail}). "
                    f"Fix: start a broker, or raise maxReconnectAttempts/startupMaxReconnectAttempts"
                )
            self._stop.wait(next(delays))
        return None

    def _open(self, uri: BrokerURI) -> _Connection:
        timeout = uri.connection_timeout / 1000.0 if uri.connection_timeout > 0 else None
        sock = socket.create_connection((uri.host, uri.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if uri.tls:
                sock = self._tls_context(uri).wrap_socket(sock, server_hostname=uri.host)
            headers = {
                "accept-version": ",".join(_versions_up_to(self.accept_version)),
                "host": self.vhost or uri.host,
            }
            headers["heart-beat"] = f"{self.heartbeat[0]},{self.heartbeat[1]}"
            if self.login is not None:
                headers["login"] = self.login
            if self.passcode is not None:
                headers["passcode"] = self.passcode
            if self.client_id is not None:
                headers["client-id"] = self.client_id
            sock.sendall(encode_frame(Frame.build("CONNECT", headers), "1.0"))
            decoder = FrameDecoder("1.0")
            frame = None
            while frame is None:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionResetError("connection closed before CONNECTED")
                decoder.feed(data)
                for event in decoder:
                    if isinstance(event, Frame):
                        frame = event
                        break
            if frame.command == "ERROR":
                raise _Refused(frame.get("message") or frame.body.decode("utf-8", "replace").strip())
            if frame.command != "CONNECTED":
                raise ProtocolError(f"expected CONNECTED, got {frame.command}")
            version = frame.get("version", "1.0")
            decoder.version = version
            sx, sy = _parse_heartbeat(frame.get("heart-beat", "0,0"))
            cx, cy = self.heartbeat
            sock.settimeout(None)
            return _Connection(
                sock=sock,
                decoder=decoder,
                uri=uri,
                version=version,
                send_interval=max(cx, sy) / 1000.0 if cx and sy else 0.0,
                recv_interval=max(cy, sx) / 1000.0 if cy and sx else 0.0,
            )
        except BaseException:
            sock.close()
            raise

    @staticmethod
    def _tls_context(uri: BrokerURI) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=uri.ssl_ca_file)
        if not uri.verify_host_name:
            context.check_hostname = False
        if uri.ssl_cert_file:
            context.load_cert_chain(uri.ssl_cert_file, uri.ssl_key_file)
        return context

    def _replay(self, conn: _Connection) -> None:
        """Make ``conn`` current, then resubscribe and resend before anyone else may write."""
        with self._cond:
            with self._write_lock:
                self._conn = conn
                self._generation += 1
                generation = self._generation
            conn.generation = generation
            subscribes, resend = self._tracker.replay(generation)
            self._last_uri = conn.uri
            if self.reconnect_events and self.reconnect_events[-1].up_at is None:
                event = self.reconnect_events[-1]
                event.up_at = time.time()
                event.uri = str(conn.uri)
                log.warning(
                    "reconnected to %s after %.3f s; replaying %d subscription(s) and %d frame(s)%s",
                    conn.uri,
                    event.outage_seconds,
                    len(subscribes),
                    len(resend) + len(self._tracker.held),
                    " one at a time" if self._tracker.held else "",
                )
        for frame in subscribes:
            self._write(frame, generation)
        for pending in resend:
            self._resend(pending, generation)
        with self._cond:
            # On probation new frames wait until every held-back one is out (see _advance).
            if self._generation == generation and self._state in ("connecting", "reconnecting") and not self._tracker.probation:
                self._state = "connected"
            self._cond.notify_all()

    def _resend(self, pending: Pending, generation: int) -> None:
        if self._write(pending.frame, generation) and pending.kind == "send":
            with self._lock:
                self.stats["resent"] += 1

    def _advance(self, conn: _Connection) -> None:
        """The frame on probation was answered: write the next held-back one, or open for new work."""
        with self._cond:
            if conn.generation != self._generation or not self._tracker.probation:
                return
            pending = self._tracker.next_held(conn.generation)
            if pending is None:
                if self._state in ("connecting", "reconnecting"):
                    self._state = "connected"
                self._cond.notify_all()
                return
        self._resend(pending, conn.generation)

    def _connection_lost(self, conn: _Connection, reason: str) -> None:
        """Record the outage and settle everything whose fate the broker took with it."""
        with self._cond:
            if self._state == "closed":
                return
            self._state = "reconnecting"
            with self._write_lock:
                self._conn = None
            if conn.error is not None:
                reason = f"{reason} after ERROR: {conn.error}"
            self.reconnect_events.append(
                ReconnectEvent(down_at=time.time(), previous_uri=str(conn.uri), reason=reason)
            )
            log.warning("connection to %s lost: %s", conn.uri, reason)
            fatal = conn.error is not None and time.monotonic() - conn.error_at < _FATAL_S
            poison = self._tracker.fatal_error(conn.generation, conn.suspects) if fatal else None
            if poison is not None:
                what = f"message {poison.message_id}" if poison.kind == "send" else poison.frame.command
                error = BrokerError(
                    f"{conn.uri} answered {poison.frame.command} of {what} with ERROR: {conn.error}; then it "
                    f"closed the connection. The frame is not resent (it would kill the next connection too). "
                    f"Fix: change what the broker's message names (e.g. a body over its maxFrameSize) and "
                    f"send it again"
                )
                self._tracker.error(poison.receipt, error)
                if poison.kind == "send" and self.window > 1:
                    self._async_errors.append(error)
                log.error("%s", error)
            for pending, error in self._tracker.connection_lost(str(conn.uri)):
                if pending.kind == "send" and self.window > 1:
                    self._async_errors.append(error)
            self._cond.notify_all()

    def _read_loop(self, conn: _Connection) -> str:
        """Read frames until the connection dies; return why it did."""
        last_read = time.monotonic()
        sock = conn.sock
        tick = _TICK
        if conn.send_interval:
            tick = min(tick, conn.send_interval / 2)
        while not self._stop.is_set():
            try:
                has_tls_bytes = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
                if not has_tls_bytes:
                    readable, _, _ = select.select([sock], [], [], tick)
                else:
                    readable = [sock]
                if readable:
                    data = sock.recv(65536)
                    if not data:
                        return "connection closed by the broker"
                    last_read = time.monotonic()
                    conn.decoder.feed(data)
                    for event in conn.decoder:
                        if isinstance(event, Frame):
                            self._handle(event, conn)
            except ssl.SSLWantReadError:
                continue
            except (OSError, ValueError) as exc:
                return f"{type(exc).__name__}: {exc}"
            except ProtocolError as exc:
                return f"protocol error from broker: {exc.message}"
            now = time.monotonic()
            if conn.recv_interval and now - last_read > 2 * conn.recv_interval:
                return f"no heart-beat from the broker for {now - last_read:.1f} s"
            if conn.send_interval and now - self._last_write >= conn.send_interval:
                if self._write_lock.acquire(blocking=False):
                    try:
                        sock.sendall(b"\n")
                        self._last_write = now
                    except OSError as exc:
                        return f"{type(exc).__name__}: {exc}"
                    finally:
                        self._write_lock.release()
        return "client closed"

    def _handle(self, frame: Frame, conn: _Connection) -> None:
        command = frame.command
        if command != "ERROR":
            conn.error = None  # the broker went on after it: that ERROR was not fatal
        if command == "MESSAGE":
            self._on_message(frame)
        elif command == "RECEIPT":
            with self._cond:
                pending = self._tracker.receipt(frame.get("receipt-id", ""))
                if pending is not None:
                    if pending.kind == "send":
                        self.stats["receipted"] += 1
                    self._cond.notify_all()
            if pending is not None:
                self._advance(conn)
        elif command == "ERROR":
            text = frame.get("message") or frame.body.decode("utf-8", "replace").strip()
            with self._cond:
                receipt = frame.get("receipt-id")
                pending = self._tracker.pending.get(receipt or "")
                if pending is None:
                    self.broker_errors = self.broker_errors[-(_KEEP_ERRORS - 1) :] + [frame]
                    log.error("broker %s sent ERROR: %s", conn.uri, text)
                    if receipt is None:
                        # If the broker closes next, it was about a frame written before this ERROR.
                        conn.error, conn.error_at = text, time.monotonic()
                        conn.suspects = self._tracker.outstanding(conn.generation)
                    return
                if pending.kind == "unsubscribe" and pending.resent and "no durable subscription" in text:
                    # The old master removed it and its RECEIPT died with it: done.
                    self._tracker.receipt(pending.receipt)
                else:
                    error = BrokerError(f"{conn.uri} rejected {pending.frame.command}: {text}", frame)
                    self._tracker.error(pending.receipt, error)
                    if pending.kind == "send" and self.window > 1:
                        self._async_errors.append(error)
                self._cond.notify_all()
            self._advance(conn)

    def _on_message(self, frame: Frame) -> None:
        headers = frame.header_dict()
        with self._lock:
            sub = self._tracker.subscriptions.get(headers.get("subscription", ""))
            if sub is None:
                return  # unsubscribed meanwhile; the broker redelivers unacked ones
            self.stats["received"] += 1
            generation = self._generation
        self._messages.put(
            Message(
                destination=headers.get("destination", sub.destination),
                headers=headers,
                body=frame.body,
                message_id=headers.get("message-id", ""),
                redelivered=headers.get("redelivered", "false").lower() == "true",
                subscription=sub,
                ack_id=headers.get("ack"),
                generation=generation,
            )
        )


def _versions_up_to(version: str) -> List[str]:
    order = ["1.0", "1.1", "1.2"]
    if version not in order:
        raise ValueError(f"unsupported STOMP version {version!r}. Fix: use one of {', '.join(order)}")
    return order[: order.index(version) + 1]


def _parse_heartbeat(value: str) -> Tuple[int, int]:
    try:
        sx, sy = (int(part) for part in value.split(","))
        return max(sx, 0), max(sy, 0)
    except ValueError:
        return 0, 0
