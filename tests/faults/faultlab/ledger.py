"""Ledger producer and consumer, and the checker of what a broker group promised.

The producer sends persistent messages with receipts, each with a unique id in
its body and in both ``message-id`` and ``_AMQ_DUPL_ID`` (the explicit
duplicate-detection header the broker moves to).  It keeps a window of
unreceipted sends in flight; when its connection breaks or stalls (no byte,
heart-beats included, for ``stall_s``) it fails over to whichever broker
answers CONNECT and sends every unreceipted message again, exactly as a
failover client must.  A connection it gave up on is not closed but handed
to a background reader, which records any RECEIPT that still arrives on it
(a frozen ex-master that wakes up).

The consumer subscribes with client-individual acks, records every delivery
(id from the body, ``redelivered``, the broker port, the time) and acks it;
it fails over the same way.

:func:`check` turns both ledgers into a :class:`LedgerReport`:
receipted-but-never-delivered, delivered-but-never-sent, garbled bodies,
unflagged duplicates, dual-master samples (from the CONNECT watcher) and
batches an ex-master wrote past a seal (from the journal files).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

from faultlab.stomp import StompClient

HEARTBEAT = "0,500"  # ask the broker for a heart-beat every 500 ms, so a frozen broker shows as a stall
DUPL = "_AMQ_DUPL_ID"


def ledger_body(msg_id: str, size: int) -> bytes:
    """The body of message ``msg_id``: its id, its size, and filler derived from the id (so garbling shows)."""
    head = f"{msg_id}|{size}|".encode()
    filler = (msg_id.encode() + b";") * (size // (len(msg_id) + 1) + 1)
    return (head + filler)[:max(size, len(head))]


def parse_body(body: bytes) -> Tuple[Optional[str], bool]:
    """(id, intact) of a ledger body; id None when it is not a ledger body at all."""
    try:
        msg_id, size, _ = body.decode().split("|", 2)
        return msg_id, body == ledger_body(msg_id, int(size))
    except (UnicodeDecodeError, ValueError):
        return None, False


def connect_any(ports: Sequence[int], start: int = 0, timeout: float = 1.5, deadline_s: float = 60.0,
                stop: Optional[threading.Event] = None) -> Optional[StompClient]:
    """CONNECT to the first port (round robin from ``start``) that answers CONNECTED; None if stopped."""
    end = time.monotonic() + deadline_s
    i = start
    while time.monotonic() < end and not (stop is not None and stop.is_set()):
        port = ports[i % len(ports)]
        i += 1
        try:
            return StompClient.open(port, timeout=timeout, heart_beat=HEARTBEAT)
        except (OSError, ConnectionError):
            if i % len(ports) == 0:
                time.sleep(0.05)
    if stop is not None and stop.is_set():
        return None
    raise ConnectionError(f"no broker of {list(ports)} answered CONNECT within {deadline_s} s")


class _Graveyard(threading.Thread):
    """Reads connections the producer gave up on, recording any RECEIPT that still comes."""

    def __init__(self, on_receipt):
        super().__init__(daemon=True, name="ledger-graveyard")
        self.on_receipt = on_receipt
        self.clients: List[StompClient] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def add(self, client: StompClient) -> None:
        with self._lock:
            self.clients.append(client)

    def run(self) -> None:
        while not self._halt.is_set():
            with self._lock:
                clients = list(self.clients)
            if not clients:
                self._halt.wait(0.05)
                continue
            for client in clients:
                try:
                    frame = client.read(timeout=0.02)
                except (socket.timeout, OSError):
                    continue
                if frame is None:
                    with self._lock:
                        self.clients.remove(client)
                    client.close()
                elif frame.command == "RECEIPT":
                    self.on_receipt(frame.get("receipt-id", ""), client.port)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        for client in self.clients:
            client.close()


class LedgerProducer(threading.Thread):
    """Sends ``count`` ledger messages to ``destination`` through whichever broker is master."""

    def __init__(self, ports: Sequence[int], destination: str, count: int, *, run_id: str = "m", window: int = 8,
                 size: int = 64, stall_s: float = 3.0, deadline_s: float = 300.0, pace_s: float = 0.0):
        super().__init__(daemon=True, name="ledger-producer")
        self.ports = list(ports)
        self.destination = destination
        self.count = count
        self.run_id = run_id
        self.window = window
        self.size = size
        self.stall_s = stall_s
        self.deadline_s = deadline_s
        self.pace_s = pace_s
        self.sent: Set[str] = set()
        #: id -> (port, monotonic time) of the receipt the producer accepted
        self.receipted: Dict[str, Tuple[int, float]] = {}
        #: (id, port, time) of receipts that came on a connection the producer had given up on
        self.late: List[Tuple[str, int, float]] = []
        self.refused: Dict[str, str] = {}  # id -> ERROR message
        self.errors: List[str] = []
        self.reconnects = 0
        self.resends = 0
        self.failure: Optional[BaseException] = None
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._graveyard = _Graveyard(self._late_receipt)
        self._conn_no = 0

    def ident(self, n: int) -> str:
        return f"{self.run_id}-{n:07d}"

    def _late_receipt(self, receipt_id: str, port: int) -> None:
        msg_id = receipt_id.split("@", 1)[0]
        with self._lock:
            self.late.append((msg_id, port, time.monotonic()))

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        self._graveyard.start()
        try:
            self._run()
        except BaseException as exc:  # reported by check(), never swallowed
            self.failure = exc

    def _frame(self, msg_id: str) -> Tuple[List[Tuple[str, str]], bytes]:
        body = ledger_body(msg_id, self.size)
        headers = [("destination", self.destination), ("persistent", "true"),
                   ("receipt", f"{msg_id}@{self._conn_no}"), ("message-id", msg_id), (DUPL, msg_id),
                   ("content-type", "text/plain"), ("content-length", str(len(body)))]
        return headers, body

    def _run(self) -> None:
        end = time.monotonic() + self.deadline_s
        inflight: "OrderedDict[str, None]" = OrderedDict()
        next_n = 0
        client: Optional[StompClient] = None
        last = 0
        while len(self.receipted) + len(self.refused) < self.count and not self._halt.is_set():
            if time.monotonic() > end:
                raise TimeoutError(f"producer: {len(self.receipted)} of {self.count} receipted after "
                                   f"{self.deadline_s} s")
            if client is None:
                client = connect_any(self.ports, last, deadline_s=max(1.0, end - time.monotonic()), stop=self._halt)
                if client is None:
                    return
                last = self.ports.index(client.port)
                self._conn_no += 1
                if self._conn_no > 1:
                    self.reconnects += 1
                try:
                    for msg_id in inflight:
                        self.resends += 1
                        client.send_frame("SEND", *self._frame(msg_id))
                except OSError:
                    client = self._abandon(client)
                    continue
            try:
                while len(inflight) < self.window and next_n < self.count:
                    msg_id = self.ident(next_n)
                    next_n += 1
                    self.sent.add(msg_id)
                    inflight[msg_id] = None
                    client.send_frame("SEND", *self._frame(msg_id))
                    if self.pace_s:
                        time.sleep(self.pace_s)
                frame = client.read(timeout=0.5)
            except socket.timeout:
                if time.monotonic() - client.last_rx > self.stall_s:
                    client = self._abandon(client)
                continue
            except OSError:
                client = self._abandon(client)
                continue
            if frame is None:
                client = self._abandon(client)
                continue
            receipt = frame.get("receipt-id")
            msg_id = receipt.split("@", 1)[0] if receipt else None
            if frame.command == "RECEIPT" and msg_id in inflight:
                del inflight[msg_id]
                self.receipted[msg_id] = (client.port, time.monotonic())
            elif frame.command == "ERROR":
                self.errors.append(f"port {client.port}: {frame.get('message')}")
                if msg_id in inflight:
                    del inflight[msg_id]
                    self.refused[msg_id] = frame.get("message") or ""

    def _abandon(self, client: StompClient) -> None:
        self._graveyard.add(client)
        return None

    def finish(self, timeout: float = 300.0) -> "LedgerProducer":
        self.join(timeout)
        if self.is_alive():
            self.stop()
            self.join(30)
        self._graveyard.stop()
        return self


@dataclass
class Delivery:
    msg_id: Optional[str]
    intact: bool
    redelivered: bool
    message_id: Optional[str]
    port: int
    t: float


class LedgerConsumer(threading.Thread):
    """Consumes ``destination`` with client-individual acks through whichever broker is master."""

    def __init__(self, ports: Sequence[int], destination: str, *, prefetch: int = 100, stall_s: float = 3.0,
                 ack: bool = True):
        super().__init__(daemon=True, name="ledger-consumer")
        self.ports = list(ports)
        self.destination = destination
        self.prefetch = prefetch
        self.stall_s = stall_s
        self.ack_messages = ack
        self.deliveries: List[Delivery] = []
        self.seen: Set[str] = set()
        self.reconnects = 0
        self.errors: List[str] = []
        self.failure: Optional[BaseException] = None
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.failure = exc

    def _run(self) -> None:
        client: Optional[StompClient] = None
        connections = 0
        last = 0
        while not self._halt.is_set():
            if client is None:
                client = connect_any(self.ports, last, deadline_s=120.0, stop=self._halt)
                if client is None:
                    return
                last = self.ports.index(client.port)
                connections += 1
                if connections > 1:
                    self.reconnects += 1
                try:
                    client.subscribe(self.destination, "ledger", ack="client-individual",
                                     **{"activemq.prefetchSize": str(self.prefetch)})
                except OSError:
                    client = None
                    continue
            try:
                frame = client.read(timeout=0.3)
            except socket.timeout:
                if time.monotonic() - client.last_rx > self.stall_s:
                    client.close()
                    client = None
                continue
            except OSError:
                client.close()
                client = None
                continue
            if frame is None:
                client.close()
                client = None
                continue
            if frame.command == "ERROR":
                self.errors.append(f"port {client.port}: {frame.get('message')}")
                continue
            if frame.command != "MESSAGE":
                continue
            msg_id, intact = parse_body(frame.body)
            with self._lock:
                self.deliveries.append(Delivery(msg_id, intact, frame.get("redelivered") == "true",
                                                frame.get("message-id"), client.port, time.monotonic()))
                if msg_id is not None:
                    self.seen.add(msg_id)
            if self.ack_messages:
                try:
                    client.ack(frame)
                except OSError:
                    client.close()
                    client = None
        if client is not None:
            client.close()

    def wait_for(self, ids, timeout: float = 120.0, settle_s: float = 1.0, idle_s: float = 10.0) -> bool:
        """Wait until every id in ``ids`` was delivered (then ``settle_s`` more for late duplicates).

        Gives up early when nothing at all was delivered for ``idle_s``: with the faults over,
        a consumer that gets nothing for that long is not going to get the rest.
        """
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        last_count, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            with self._lock:
                if wanted <= self.seen:
                    break
                count = len(self.deliveries)
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > idle_s:
                break
            if self.failure is not None:
                break
            time.sleep(0.05)
        time.sleep(settle_s)
        with self._lock:
            return wanted <= self.seen

    def finish(self) -> "LedgerConsumer":
        self.stop()
        self.join(30)
        return self


@dataclass
class LedgerReport:
    sent: int = 0
    receipted: int = 0
    delivered: int = 0  # distinct ids
    deliveries: int = 0
    lost: List[str] = field(default_factory=list)  # receipted, never delivered
    phantom: List[str] = field(default_factory=list)  # delivered, never sent
    garbled: int = 0  # delivered bodies that are not what was sent
    unflagged_duplicates: List[str] = field(default_factory=list)  # a second delivery without redelivered:true
    flagged_redeliveries: int = 0
    dual_master: int = 0
    past_seal: List[str] = field(default_factory=list)  # batches an ex-master wrote past a seal
    late_receipts: int = 0  # receipts that came on connections the producer had given up on
    reconnects: int = 0
    resends: int = 0
    notes: List[str] = field(default_factory=list)

    def problems(self, skip: Sequence[str] = ()) -> List[str]:
        """What broke a promise; ``skip`` names checks a scenario measures another way (e.g. past_seal)."""
        out = []
        if self.lost:
            out.append(f"{len(self.lost)} receipted message(s) never delivered, e.g. {self.lost[:5]}")
        if self.phantom:
            out.append(f"{len(self.phantom)} delivered message(s) never sent, e.g. {self.phantom[:5]}")
        if self.garbled:
            out.append(f"{self.garbled} delivered bod(y/ies) garbled")
        if self.unflagged_duplicates:
            out.append(f"{len(self.unflagged_duplicates)} unflagged duplicate(s), e.g. {self.unflagged_duplicates[:5]}")
        if self.dual_master:
            out.append(f"{self.dual_master} dual-master sample(s)")
        if self.past_seal and "past_seal" not in skip:
            out.append(f"an ex-master wrote past a seal: {self.past_seal[:5]}")
        return out

    def summary(self) -> str:
        return (f"sent {self.sent}, receipted {self.receipted}, delivered {self.delivered} "
                f"({self.deliveries} deliveries, {self.flagged_redeliveries} flagged redeliveries), "
                f"lost {len(self.lost)}, phantom {len(self.phantom)}, garbled {self.garbled}, "
                f"unflagged duplicates {len(self.unflagged_duplicates)}, dual-master samples {self.dual_master}, "
                f"past-seal batches {len(self.past_seal)}, late receipts {self.late_receipts}, "
                f"reconnects {self.reconnects}, resends {self.resends}")

    def assert_clean(self, context: str = "", skip: Sequence[str] = ()) -> None:
        problems = self.problems(skip)
        assert not problems, "; ".join(problems) + f"\n{self.summary()}\n" + "\n".join(self.notes) + \
            (f"\n{context}" if context else "")


def check(producer: LedgerProducer, consumer: LedgerConsumer, watcher=None,
          kahadb: Optional[Path] = None) -> LedgerReport:
    """Compare what was sent, receipted and delivered; add the watcher's and the journal's evidence."""
    report = LedgerReport(sent=len(producer.sent), receipted=len(producer.receipted),
                          late_receipts=len(producer.late), reconnects=producer.reconnects + consumer.reconnects,
                          resends=producer.resends)
    for who in (producer, consumer):
        if who.failure is not None:
            report.notes.append(f"{who.name} failed: {who.failure!r}")
    deliveries = list(consumer.deliveries)
    report.deliveries = len(deliveries)
    counts: Counter = Counter()
    for d in deliveries:
        if d.msg_id is None or not d.intact:
            report.garbled += 1
            continue
        counts[d.msg_id] += 1
        if counts[d.msg_id] > 1:
            if d.redelivered:
                report.flagged_redeliveries += 1
            else:
                report.unflagged_duplicates.append(d.msg_id)
    delivered = set(counts)
    report.delivered = len(delivered)
    report.lost = sorted(set(producer.receipted) - delivered)
    report.phantom = sorted(delivered - producer.sent)
    if watcher is not None:
        pairs = watcher.dual_master()
        report.dual_master = len(pairs)
        if pairs:
            report.notes.append(watcher.describe(pairs))
    if kahadb is not None:
        from faultlab.journal import batches_past_seals

        report.past_seal = [f"{seg}@{off} lsn {lsn} epoch {epoch}"
                            for seg, off, lsn, epoch in batches_past_seals(kahadb)]
    if producer.errors:
        report.notes.append(f"producer ERROR frames: {producer.errors[:5]}")
    if consumer.errors:
        report.notes.append(f"consumer ERROR frames: {consumer.errors[:5]}")
    return report


class StalledConsumer:
    """A consumer that subscribes with a large prefetch and then never reads its socket again.

    Its receive buffer is kept small, so the broker's writes to it back up at once: the
    slow-reader case.  :meth:`close` lets its unacked messages go back to the queue.
    """

    def __init__(self, port: int, destination: str, prefetch: int = 1000):
        self.client = StompClient(port)
        self.client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.client.connect()
        self.client.subscribe(destination, "stalled", ack="client-individual",
                              **{"activemq.prefetchSize": str(prefetch)})

    def close(self) -> None:
        self.client.close()
