"""Shared-file master/slave with real ``hamq run`` processes on one shared directory.

No timing thresholds: every wait has a generous deadline that only turns a
hang into a failure; measured times are printed (``pytest -s``), not asserted.

Run as a script to measure takeover times (kill -9 of the master to a STOMP
CONNECT on the new master)::

    .venv/bin/python tests/integration/test_masterslave.py --trials 30
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from hamq.stomp.codec import Frame, FrameDecoder, encode_frame

DEADLINE_S = 60.0  # only ever reached when something hangs


# --------------------------------------------------------------------------- harness
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(ports) -> set:
    """Which of ``ports`` are in LISTEN state on 127.0.0.1 right now (from /proc/net/tcp, no connection made)."""
    wanted = {"%04X" % p: p for p in ports}
    found = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            addr, state = parts[1], parts[3]
            if state == "0A" and addr.startswith("0100007F:") and addr[9:] in wanted:
                found.add(wanted[addr[9:]])
    return found


def wait_until(predicate, what: str, timeout: float = DEADLINE_S, interval: float = 0.005):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


class Node:
    """One ``hamq run`` process of a group sharing ``kahadb``."""

    def __init__(self, root: Path, name: str, kahadb: Path, data: Path, keep_alive_ms: int = 500,
                 scheduler: bool = False, fail_if_locked: bool = False):
        self.name = name
        self.stomp_port = free_port()
        self.status_port = free_port()
        self.config = root / ("%s.xml" % name)
        self.log_path = root / ("%s.log" % name)
        self.config.write_text(
            '<broker brokerName="orders" nodeName="%s" dataDirectory="%s" schedulerSupport="%s">\n'
            '  <persistenceAdapter><kahaDB directory="%s">\n'
            '    <locker><shared-file-locker lockAcquireSleepInterval="1000" lockKeepAlivePeriod="%d" failIfLocked="%s"/></locker>\n'
            '  </kahaDB></persistenceAdapter>\n'
            '  <transportConnectors><transportConnector name="stomp" uri="stomp://127.0.0.1:%d"/>'
            '</transportConnectors>\n'
            '  <statusEndpoint uri="http://127.0.0.1:%d"/>\n'
            '</broker>\n'
            % (name, data, "true" if scheduler else "false", kahadb, keep_alive_ms,
               "true" if fail_if_locked else "false", self.stomp_port,
               self.status_port)
        )
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Node":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "hamq", "run", "--config", str(self.config)],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def status(self) -> Optional[dict]:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/status" % self.status_port, timeout=2) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    def role(self) -> Optional[str]:
        s = self.status()
        return s["role"] if s else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig) -> None:
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Group:
    def __init__(self, root: Path, n: int, **kw):
        self.kahadb = root / "shared" / "kahadb"
        self.data = root / "shared" / "data"
        self.kahadb.mkdir(parents=True)
        self.data.mkdir(parents=True)
        self.nodes = [Node(root, "b%d" % (i + 1), self.kahadb, self.data, **kw) for i in range(n)]

    def ports(self) -> List[int]:
        return [n.stomp_port for n in self.nodes]

    def masters(self) -> List[Node]:
        return [n for n in self.nodes if n.alive() and n.role() == "master"]

    def wait_master(self, exclude=()) -> Node:
        def one():
            ms = [n for n in self.masters() if n not in exclude]
            return ms[0] if len(ms) == 1 else None

        return wait_until(one, "one master", interval=0.01)

    def wait_roles(self, master: Node) -> None:
        wait_until(lambda: all(n.role() == ("master" if n is master else "slave")
                               for n in self.nodes if n.alive()), "every other node to be a slave",
                   interval=0.02)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


@pytest.fixture
def group_factory(tmp_path):
    made: List[Group] = []

    def make(n: int, **kw) -> Group:
        g = Group(tmp_path, n, **kw)
        made.append(g)
        return g

    yield make
    for g in made:
        g.stop()


class PortWatcher(threading.Thread):
    """Samples the LISTEN state of the group's ports every 10 ms; remembers the most seen at once."""

    def __init__(self, ports):
        super().__init__(daemon=True)
        self.ports = list(ports)
        self.most = 0
        self.samples = 0
        self.overlaps: List[set] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            now = listening(self.ports)
            self.samples += 1
            if len(now) > 1:
                self.overlaps.append(now)
            self.most = max(self.most, len(now))
            self._stop_event.wait(0.010)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


class Stomp:
    """A tiny blocking STOMP 1.2 client on the shared codec; enough for these tests."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.decoder = FrameDecoder("1.2", 10 * 1024 * 1024, 1000, 65536)
        self.write("CONNECT", {"accept-version": "1.2", "host": "orders"})
        frame = self.read()
        assert frame.command == "CONNECTED", frame

    def write(self, command: str, headers: Dict[str, str], body: bytes = b"") -> None:
        self.sock.sendall(encode_frame(Frame.build(command, headers, body), "1.2"))

    def read(self, timeout: Optional[float] = None) -> Frame:
        if timeout is not None:
            self.sock.settimeout(timeout)
        while True:
            for event in self.decoder:
                if isinstance(event, Frame):
                    return event
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed by the broker")
            self.decoder.feed(data)

    def send(self, destination: str, body: bytes, **headers) -> Frame:
        h = {"destination": destination, "persistent": "true", "receipt": "r-%s" % time.monotonic_ns()}
        h.update(headers)
        self.write("SEND", h, body)
        return self.read()

    def close(self) -> None:
        self.sock.close()


def try_connect(port: int) -> bool:
    try:
        c = Stomp(port, timeout=2)
    except (OSError, AssertionError, ConnectionError):
        return False
    c.close()
    return True


# --------------------------------------------------------------------------- tests
def test_three_brokers_exactly_one_master_listens(group_factory):
    g = group_factory(3)
    for n in g.nodes:
        n.start()
    master = g.wait_master()
    g.wait_roles(master)
    assert listening(g.ports()) == {master.stomp_port}
    assert try_connect(master.stomp_port)
    info = json.loads(subprocess.run([sys.executable, "-m", "hamq", "lock-info", str(g.kahadb)],
                                     capture_output=True, check=True).stdout)
    assert info["held"] is True and info["holder"]["pid"] == master.proc.pid
    assert info["holder"]["nodeName"] == master.name
    for slave in g.nodes:
        if slave is not master:
            st = slave.status()
            assert st["role"] == "slave" and st["holder"]["nodeName"] == master.name


def test_fail_if_locked_exits_with_a_clear_message(group_factory, tmp_path):
    g = group_factory(1)
    g.nodes[0].start()
    master = g.wait_master()
    other = Node(tmp_path, "impatient", g.kahadb, g.data, fail_if_locked=True).start()
    try:
        rc = other.proc.wait(DEADLINE_S)
    finally:
        other.stop()
    assert rc != 0
    text = other.log()
    assert "failIfLocked" in text and master.name in text
    assert master.role() == "master"


def test_kill9_master_twenty_times_never_two_listening(group_factory):
    g = group_factory(3)
    for n in g.nodes:
        n.start()
    master = g.wait_master()
    g.wait_roles(master)
    watcher = PortWatcher(g.ports())
    watcher.start()
    epochs = [master.status()["epoch"]]
    takeovers = []
    try:
        for _ in range(20):
            others = [n for n in g.nodes if n is not master]
            wait_until(lambda others=others: any(n.alive() and n.role() == "slave" for n in others), "a waiting slave",
                       interval=0.02)
            t0 = time.monotonic()
            master.kill9()
            new = g.wait_master(exclude=(master,))
            wait_until(lambda new=new: try_connect(new.stomp_port), "CONNECT on the new master")
            takeovers.append(time.monotonic() - t0)
            epochs.append(new.status()["epoch"])
            master.start()  # the old master comes back as a slave (not waited for: the third node is one)
            master = new
    finally:
        watcher.stop()
    assert watcher.overlaps == [] and watcher.most == 1
    assert watcher.samples > 20
    assert epochs == sorted(set(epochs))  # every takeover a new, higher epoch
    print("\ntakeover (kill -9 -> status master + CONNECT, with the port watcher running): "
          "median %.3f s, max %.3f s over %d" % (statistics.median(takeovers), max(takeovers), len(takeovers)))


@pytest.mark.parametrize("how", ["delete", "replace"])
def test_master_halts_when_the_lock_file_is_deleted_or_replaced(group_factory, how):
    g = group_factory(2, keep_alive_ms=300)
    node = g.nodes[0].start()
    g.wait_master()
    slave = g.nodes[1].start()
    wait_until(lambda: slave.role() == "slave", "the slave", interval=0.02)
    lock = g.kahadb / "lock"
    t0 = time.monotonic()
    if how == "delete":
        lock.unlink()
    else:
        tmp = g.kahadb / "lock.new"
        tmp.write_text("{}")
        os.replace(tmp, lock)
    wait_until(lambda: not listening([node.stomp_port]), "the master to stop listening", interval=0.002)
    closed = time.monotonic() - t0
    rc = node.proc.wait(DEADLINE_S)
    halted = time.monotonic() - t0
    assert rc != 0
    assert "lost the exclusive lock" in node.log()
    # the slave was waiting on the old file; it notices and locks the new one
    wait_until(lambda: slave.role() == "master", "the slave to take over", interval=0.02)
    assert listening(g.ports()) == {slave.stomp_port}
    print("\nlock file %s: master stopped listening after %.3f s and exited with %d after %.3f s "
          "(keep-alive period 0.3 s)" % (how, closed, rc, halted))


def _segment_sizes(directory: Path) -> Dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(directory.glob("db-*.log"))}


def test_paused_master_writes_nothing_after_handover_and_exits(group_factory):
    g = group_factory(3)
    old, new, checker = g.nodes
    old.start()
    g.wait_master()
    new.start()
    wait_until(lambda: new.role() == "slave", "the slave", interval=0.02)
    client = Stomp(old.stomp_port)
    assert client.send("/queue/orders", b"before").command == "RECEIPT"

    old.signal(signal.SIGSTOP)
    # Hand the lock over as a lost NFSv4 lock would: the frozen master still holds its lock on the old
    # file, which is removed; the waiting slave moves to the new file and becomes master with a higher epoch.
    (g.kahadb / "lock").unlink()
    wait_until(lambda: new.role() == "master", "the new master", interval=0.02)
    sealed = _segment_sizes(g.kahadb)
    new_epoch = new.status()["epoch"]

    # The frozen master's client sends; the frame waits in the socket until the master wakes up.
    client.write("SEND", {"destination": "/queue/zombie", "persistent": "true", "receipt": "z1"}, b"zombie")
    old.signal(signal.SIGCONT)
    rc = old.proc.wait(DEADLINE_S)
    assert rc != 0
    try:
        frame = client.read(timeout=DEADLINE_S)
        assert frame.command != "RECEIPT", "the ex-master receipted a message after the takeover"
    except (ConnectionError, OSError):
        pass  # closed without a receipt
    client.close()
    after = _segment_sizes(g.kahadb)
    for name, size in sealed.items():
        if name in after and name != max(sealed):  # every segment but the new master's own
            assert after[name] == size, "the ex-master wrote to %s" % name
    assert "fenc" in old.log().lower() or "lost the exclusive lock" in old.log()

    # a fresh master recovers the journal: the ex-master's message is not there, the earlier one is
    new.stop()
    checker.start()
    wait_until(lambda: checker.role() == "master", "a third master")
    st = checker.status()
    assert st["epoch"] > new_epoch
    depths = {d["name"]: d["depth"] for d in st["destinations"]}
    assert depths.get("/queue/orders", depths.get("orders")) == 1
    assert not depths.get("/queue/zombie") and not depths.get("zombie")


def test_scheduled_message_survives_master_death_and_is_delivered_once(group_factory):
    g = group_factory(2, scheduler=True)
    for n in g.nodes:
        n.start()
    master = g.wait_master()
    g.wait_roles(master)
    producer = Stomp(master.stomp_port)
    sent_at = time.time()
    assert producer.send("/queue/later", b"job", AMQ_SCHEDULED_DELAY="3000").command == "RECEIPT"
    producer.close()
    assert not (g.data / "orders" / "scheduler").exists()  # jobs live in the journal, with the messages
    master.kill9()
    new = g.wait_master(exclude=(master,))
    consumer = Stomp(new.stomp_port)
    # a sentinel due after the job: when it arrives, the job must have come exactly once before it
    consumer.send("/queue/later", b"sentinel", AMQ_SCHEDULED_DELAY="4000")
    consumer.write("SUBSCRIBE", {"destination": "/queue/later", "id": "s1", "ack": "auto"})
    bodies = []
    while b"sentinel" not in bodies:
        frame = consumer.read(timeout=DEADLINE_S)
        if frame.command == "MESSAGE":
            bodies.append(frame.body)
            if frame.body == b"job":
                late = time.time() - (sent_at + 3.0)
                assert frame.get("scheduledJobId")
    consumer.close()
    assert bodies == [b"job", b"sentinel"]
    print("\nscheduled job fired %.3f s after its original due time, on the new master" % late)


# --------------------------------------------------------------------------- figures
def fill_store(directory: Path, pending: int, body_size: int = 1024) -> None:
    """Put ``pending`` persistent 1 KiB messages on queue ``backlog``, as a master would have left them."""
    from hamq.store import AddMessage, MessageStore

    store = MessageStore(directory, sync_strategy="never")
    store.open(0)
    body = b"x" * body_size
    for start in range(0, pending, 1000):
        store.append([AddMessage("queue:backlog", "ID:fill-%d" % i, [("persistent", "true")], body)
                      for i in range(start, min(pending, start + 1000))])
    store.close()


def measure_takeover(trials: int, root: Path, pending: int = 0) -> List[float]:
    """kill -9 of the master -> first successful STOMP CONNECT on the new master, ``trials`` times."""
    g = Group(root, 2)
    if pending:
        fill_store(g.kahadb, pending)
    for n in g.nodes:
        n.start()
    times = []
    try:
        master = g.wait_master()
        g.wait_roles(master)
        for _ in range(trials):
            other = next(n for n in g.nodes if n is not master)
            t0 = time.monotonic()
            master.proc.kill()
            wait_until(lambda other=other: try_connect(other.stomp_port), "CONNECT", interval=0.002)
            times.append(time.monotonic() - t0)
            master.proc.wait()
            master.start()
            g.wait_roles(other)
            master = other
    finally:
        g.stop()
    return times


def _pct(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


if __name__ == "__main__":
    import tempfile

    ap = argparse.ArgumentParser(description="measure hamq takeover time after kill -9 of the master")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--pending", type=int, default=0, help="persistent 1 KiB messages in the store")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        t = measure_takeover(a.trials, Path(d), a.pending)
    print("takeover kill -9 -> CONNECT, %d pending, %d trials: p50 %.0f ms, p99 %.0f ms, max %.0f ms, min %.0f ms"
          % (a.pending, len(t), _pct(t, 0.5) * 1000, _pct(t, 0.99) * 1000, max(t) * 1000, min(t) * 1000))
