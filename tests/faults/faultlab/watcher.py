"""The CONNECT watcher: were two brokers ever answering STOMP CONNECT at the same moment?

One thread per broker port probes it over and over: TCP connect, hold the
connection ``hold_s``, send CONNECT, wait for CONNECTED.  A probe that is
answered proves that broker was serving as master during the whole of
``[connected, sent]``: its listener accepted the connection at or before
``connected`` (only a master listens), and it still answered the CONNECT sent
at ``sent`` on that same connection (a term that ends closes its connections
and listener, so no answer comes from a term that ended in between).  Two
such intervals of different ports that overlap are a **dual-master sample**:
a moment when two brokers were both master, with no guessing about thread
scheduling or clock skew (all times are one process's monotonic clock).

A frozen broker's listener keeps accepting (the kernel does that), so a probe
that it answers after SIGCONT also counts from the moment it was accepted:
that broker *did* answer a CONNECT while another one was master, which is
exactly what must never happen.

Next to it, :class:`ListenSampler` reads /proc/net/tcp every few ms and keeps
the moments when two of the ports were in LISTEN at once, for diagnostics
only (a listening port is not yet an answered CONNECT).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set, Tuple

_CONNECT = b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:localhost\n\n\0"


@dataclass
class Answer:
    port: int
    connected: float  # TCP connection established (monotonic)
    sent: float  # CONNECT sent
    answered: float  # CONNECTED read


class ConnectWatcher:
    """Probe every port concurrently; :meth:`dual_master` lists the overlapping answered probes."""

    def __init__(self, ports: Sequence[int], hold_s: float = 0.02, gap_s: float = 0.003,
                 answer_timeout_s: float = 2.0, names: Optional[Dict[int, str]] = None):
        self.ports = list(ports)
        self.hold_s = hold_s
        self.gap_s = gap_s
        self.answer_timeout_s = answer_timeout_s
        self.names = names or {}
        self.answers: List[Answer] = []
        self.probes = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._probe_loop, args=(p,), daemon=True,
                                          name=f"connect-watch-{p}") for p in self.ports]
        self.listen = ListenSampler(self.ports)

    def __enter__(self) -> "ConnectWatcher":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "ConnectWatcher":
        for t in self._threads:
            t.start()
        self.listen.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.answer_timeout_s + 5)
        self.listen.stop()

    def _probe_loop(self, port: int) -> None:
        while not self._stop.is_set():
            answer = self._probe(port)
            with self._lock:
                self.probes += 1
                if answer is not None:
                    self.answers.append(answer)
            self._stop.wait(self.gap_s)

    def _probe(self, port: int) -> Optional[Answer]:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
        except OSError:
            return None
        try:
            connected = time.monotonic()
            self._stop.wait(self.hold_s)
            sent = time.monotonic()
            sock.settimeout(self.answer_timeout_s)
            sock.sendall(_CONNECT)
            data = b""
            while b"\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                data += chunk
            if data.lstrip(b"\r\n").startswith(b"CONNECTED"):
                return Answer(port, connected, sent, time.monotonic())
            return None
        except OSError:
            return None
        finally:
            sock.close()

    # -- results ---------------------------------------------------------------------
    def answered(self, port: int) -> int:
        with self._lock:
            return sum(1 for a in self.answers if a.port == port)

    def dual_master(self) -> List[Tuple[Answer, Answer]]:
        """Pairs of answered probes of two different ports whose certain-master intervals overlap."""
        with self._lock:
            answers = sorted(self.answers, key=lambda a: a.connected)
        pairs = []
        open_: List[Answer] = []
        for a in answers:
            open_ = [o for o in open_ if o.sent >= a.connected]
            pairs += [(o, a) for o in open_ if o.port != a.port]
            open_.append(a)
        return pairs

    def describe(self, pairs: Optional[List[Tuple[Answer, Answer]]] = None) -> str:
        pairs = self.dual_master() if pairs is None else pairs
        t0 = min((a.connected for a in self.answers), default=0.0)

        def name(p: int) -> str:
            return self.names.get(p, str(p))

        lines = [f"{len(pairs)} dual-master sample(s) in {len(self.answers)} answered of {self.probes} probes"]
        for a, b in pairs[:10]:
            lines.append(f"  {name(a.port)} master over [{a.connected - t0:.3f}, {a.sent - t0:.3f}] s and "
                         f"{name(b.port)} over [{b.connected - t0:.3f}, {b.sent - t0:.3f}] s "
                         f"(answered at {a.answered - t0:.3f} and {b.answered - t0:.3f})")
        if self.listen.overlaps:
            lines.append(f"  LISTEN on several ports at once in {len(self.listen.overlaps)} of "
                         f"{self.listen.samples} /proc/net/tcp samples, e.g. "
                         f"{sorted(name(p) for p in self.listen.overlaps[0][1])}")
        return "\n".join(lines)


def listening(ports: Sequence[int]) -> Set[int]:
    """Which of ``ports`` are in LISTEN on 127.0.0.1 (or any address) right now, from /proc/net/tcp."""
    wanted = {"%04X" % p: p for p in ports}
    found = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            local, state = parts[1], parts[3]
            addr, _, port = local.partition(":")
            if state == "0A" and port in wanted and addr in ("0100007F", "00000000"):
                found.add(wanted[port])
    return found


class ListenSampler:
    """Every ``interval_s``, which ports are in LISTEN; keeps the samples with more than one (diagnostics)."""

    def __init__(self, ports: Sequence[int], interval_s: float = 0.005):
        self.ports = list(ports)
        self.interval_s = interval_s
        self.samples = 0
        self.overlaps: List[Tuple[float, Set[int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="listen-sampler")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = listening(self.ports)
            self.samples += 1
            if len(now) > 1:
                self.overlaps.append((time.monotonic(), now))
            self._stop.wait(self.interval_s)
