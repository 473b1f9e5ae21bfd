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

import re
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set, Tuple

_CONNECT = b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:localhost\n\n\0"
#: Close probes with a reset: thousands of TIME_WAIT sockets would make /proc/net/tcp slow to read.
_LINGER_RESET = struct.pack("ii", 1, 0)


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
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
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
    """Which of ``ports`` have a TCP socket in LISTEN right now (sock_diag netlink; /proc/net/tcp fallback).

    The netlink query asks the kernel for listening sockets only, so it stays cheap on
    a shared host whose /proc/net/tcp lists tens of thousands of TIME_WAIT entries.
    """
    wanted = set(ports)
    try:
        return _listening_ports_netlink() & wanted
    except OSError:
        pass
    found = set()
    with open("/proc/net/tcp") as f:
        for local_port in _PROC_LISTEN.findall(f.read()):
            port = int(local_port, 16)
            if port in wanted:
                found.add(port)
    return found


_PROC_LISTEN = re.compile(r":([0-9A-F]{4}) 00000000:0000 0A ")
_NL = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_DIAG_REQ = struct.Struct("=BBBBI48s")  # inet_diag_req_v2: family, protocol, ext, pad, states, sockid
_SOCK_DIAG_BY_FAMILY, _NLMSG_DONE, _NLMSG_ERROR = 20, 3, 2
_TCP_LISTEN = 10


def _listening_ports_netlink() -> Set[int]:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4) as nl:  # NETLINK_SOCK_DIAG
        nl.settimeout(2.0)
        ports = set()
        for family in (socket.AF_INET, socket.AF_INET6):
            req = _DIAG_REQ.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << _TCP_LISTEN, b"\0" * 48)
            nl.send(_NL.pack(_NL.size + len(req), _SOCK_DIAG_BY_FAMILY, 0x301, 1, 0) + req)  # REQUEST|DUMP
            done = False
            while not done:
                data = nl.recv(1 << 16)
                pos = 0
                while pos + _NL.size <= len(data):
                    length, kind, _flags, _seq, _pid = _NL.unpack_from(data, pos)
                    if kind == _NLMSG_DONE:
                        done = True
                        break
                    if kind == _NLMSG_ERROR:
                        raise OSError("sock_diag refused the query")
                    # inet_diag_msg: family, state, timer, retrans, then the sockid whose sport is big-endian
                    ports.add(struct.unpack_from(">H", data, pos + _NL.size + 4)[0])
                    pos += (length + 3) & ~3
        return ports


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
