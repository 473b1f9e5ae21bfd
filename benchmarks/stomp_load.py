"""Load generators built on stomp.py, the same client for every broker.

Each function returns (messages, seconds) measured around the work only (connect excluded).
Producers run in separate processes so that 8 producers are not serialised by one GIL.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import stomp

BODY = "x" * 1024  # 1 KiB body, as the issues ask


class LoadError(Exception):
    """A broker answered with ERROR, dropped the connection or stalled during a benchmark."""


class _Waiter(stomp.ConnectionListener):
    """Collects RECEIPTs, MESSAGEs and ERRORs from stomp.py's receiver thread."""

    def __init__(self):
        self.cond = threading.Condition()
        self.receipts: set = set()
        self.error: str | None = None
        self.on_msg = None

    def on_receipt(self, frame):
        with self.cond:
            self.receipts.add(frame.headers.get("receipt-id"))
            self.cond.notify_all()

    def on_error(self, frame):
        with self.cond:
            self.error = frame.headers.get("message", "") + " " + (frame.body or "")[:200]
            self.cond.notify_all()

    def on_disconnected(self):
        with self.cond:
            self.error = self.error or "connection lost"
            self.cond.notify_all()

    def on_message(self, frame):
        if self.on_msg:
            self.on_msg(frame)

    def wait_receipt(self, rid: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while rid not in self.receipts:
                if self.error:
                    raise LoadError(self.error)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LoadError(f"no RECEIPT {rid} within {timeout:.0f}s")
                self.cond.wait(left)
            self.receipts.discard(rid)


def connect(port: int, version: str = "1.2") -> tuple:
    """Connect with stomp.py. coilmq needs 1.1: its 1.2 ACK wants a message-id header and its
    1.2 CONNECT insists on host == the machine's FQDN."""
    cls = stomp.Connection12 if version == "1.2" else stomp.Connection11
    conn = cls([("127.0.0.1", port)], heartbeats=(0, 0), auto_content_length=True)
    waiter = _Waiter()
    conn.set_listener("bench", waiter)
    conn.connect(wait=True, headers={"client-id": f"bench-{time.monotonic_ns()}"})
    return conn, waiter


def close(conn, waiter) -> None:
    waiter.error = None
    try:
        conn.disconnect(receipt="bye")
    except Exception:  # noqa: BLE001 - the broker may already be gone; nothing to save
        pass


def send_receipted(port: int, queue: str, count: int, persistent: bool = True, version: str = "1.2") -> tuple:
    """Send ``count`` messages, each waiting for its RECEIPT before the next (a safe producer)."""
    conn, waiter = connect(port, version)
    headers = {"persistent": "true" if persistent else "false"}
    try:
        t0 = time.perf_counter()
        for i in range(count):
            rid = f"r{i}"
            conn.send(queue, BODY, headers=headers, receipt=rid)
            waiter.wait_receipt(rid)
        return count, time.perf_counter() - t0
    finally:
        close(conn, waiter)


def send_unreceipted(port: int, queue: str, count: int, persistent: bool, version: str = "1.2",
                     deadline: float | None = None) -> tuple:
    """Fire ``count`` sends without receipts, then one receipted frame to know all were taken.

    With a ``deadline`` (time.monotonic()) it stops early; the count returned is what was sent.
    """
    conn, waiter = connect(port, version)
    headers = {"persistent": "true" if persistent else "false"}
    try:
        t0 = time.perf_counter()
        sent = 0
        while sent < count - 1:
            if deadline is not None and sent % 1000 == 0 and time.monotonic() > deadline:
                break
            conn.send(queue, BODY, headers=headers)
            sent += 1
        conn.send(queue, BODY, headers=headers, receipt="last")
        waiter.wait_receipt("last", timeout=600)
        return sent + 1, time.perf_counter() - t0
    finally:
        close(conn, waiter)


def consume_individual(port: int, queue: str, count: int, prefetch: int = 1000,
                       version: str = "1.2") -> tuple:
    """Receive ``count`` messages with ack=client-individual, ACKing each one."""
    conn, waiter = connect(port, version)
    done = threading.Event()
    state = {"n": 0, "t0": None}

    def on_msg(frame):
        if state["t0"] is None:
            state["t0"] = time.perf_counter()
        if version == "1.2":
            conn.ack(frame.headers["ack"])
        else:
            conn.ack(frame.headers["message-id"], "s1")
        state["n"] += 1
        if state["n"] >= count:
            done.set()

    waiter.on_msg = on_msg
    try:
        t_sub = time.perf_counter()
        conn.subscribe(queue, id="s1", ack="client-individual",
                       headers={"activemq.prefetchSize": str(prefetch)})
        deadline = time.monotonic() + 600
        while not done.wait(0.5):
            if waiter.error:
                raise LoadError(waiter.error)
            if time.monotonic() > deadline:
                raise LoadError(f"received {state['n']} of {count} messages")
        # The last ACK must be processed too: a receipted UNSUBSCRIBE follows it on the wire.
        conn.unsubscribe("s1", receipt="unsub")
        waiter.wait_receipt("unsub")
        return count, time.perf_counter() - t_sub
    finally:
        close(conn, waiter)


def _producer_proc(port, queue, count, barrier, out, version):
    try:
        conn, waiter = connect(port, version)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the run
        barrier.abort()
        out.put(("error", repr(exc)))
        return
    try:
        barrier.wait(60)
        t0 = time.time()
        for i in range(count):
            rid = f"r{i}"
            conn.send(queue, BODY, headers={"persistent": "true"}, receipt=rid)
            waiter.wait_receipt(rid)
        out.put(("ok", t0, time.time()))
    except Exception as exc:  # noqa: BLE001
        out.put(("error", repr(exc)))
    finally:
        close(conn, waiter)


def send_receipted_parallel(port: int, queue: str, producers: int, per_producer: int,
                            version: str = "1.2") -> tuple:
    """``producers`` processes, each a receipt-per-message producer, started together."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(producers)
    out = ctx.Queue()
    procs = [ctx.Process(target=_producer_proc, args=(port, queue, per_producer, barrier, out, version), daemon=True)
             for _ in range(producers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join(10)
    errors = [r[1] for r in results if r[0] != "ok"]
    if errors:
        raise LoadError("; ".join(sorted(set(errors))))
    start = min(r[1] for r in results)
    end = max(r[2] for r in results)
    return producers * per_producer, end - start


def _fill_proc(port, queue, count, version, deadline, out):
    try:
        out.put(("ok",) + send_unreceipted(port, queue, count, True, version, deadline))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        out.put(("error", repr(exc)))


def fill_parallel(port: int, queue: str, count: int, producers: int = 4, version: str = "1.2",
                  budget_s: float | None = None) -> tuple:
    """Store ``count`` persistent messages fast: unreceipted sends from several processes.

    Returns (messages stored, seconds); fewer than ``count`` when ``budget_s`` ran out.
    """
    deadline = None if budget_s is None else time.monotonic() + budget_s
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    share = [count // producers + (1 if i < count % producers else 0) for i in range(producers)]
    procs = [ctx.Process(target=_fill_proc, args=(port, queue, n, version, deadline, out), daemon=True)
             for n in share if n]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get(timeout=3600) for _ in procs]
    for p in procs:
        p.join(10)
    errors = [r[1] for r in results if r[0] != "ok"]
    if errors:
        raise LoadError("; ".join(sorted(set(errors))))
    return sum(r[1] for r in results), time.perf_counter() - t0
