"""Raw-socket STOMP CONNECT probe: the moment a broker really accepts clients.

A listening port is not enough (ActiveMQ binds before it is ready, a foreign process may hold
the port), so "up" means a CONNECTED frame came back. Raw sockets keep the probe cheap and
precise; the load itself is driven with stomp.py.
"""

from __future__ import annotations

import socket
import time

CONNECT_FRAME = b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:localhost\n\n\x00"


def stomp_connect_ok(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> bool:
    """True when a STOMP CONNECT on host:port is answered by CONNECTED."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(CONNECT_FRAME)
            data = b""
            while b"\x00" not in data and len(data) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                data += chunk
            ok = data.lstrip(b"\r\n").startswith(b"CONNECTED")
            if ok:
                try:
                    sock.sendall(b"DISCONNECT\n\n\x00")
                except OSError:
                    pass
            return ok
    except OSError:
        return False


def port_is_listening(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_connect(port: int, timeout: float, alive=lambda: True, interval: float = 0.005) -> float | None:
    """Poll CONNECT until it succeeds; return the monotonic time of success, or None.

    ``alive`` lets the caller stop early when the broker process died (bad config, port taken).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stomp_connect_ok(port, timeout=1.0):
            return time.monotonic()
        if not alive():
            return None
        time.sleep(interval)
    return None


def free_port() -> int:
    """An ephemeral port that was free a moment ago (the broker binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """True when no one listens on 127.0.0.1:port (used to refuse a taken --base-port).

    SO_REUSEADDR as the brokers use it: connections of a killed broker lingering in TIME_WAIT do
    not stop it from binding again, only a live listener does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
