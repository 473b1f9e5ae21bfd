"""A small blocking STOMP client with its own codec, so the tests put exact bytes on the wire.

It does not use hamq's codec: what the broker sends is decoded by an
independent reader, and a bug in the broker's codec cannot hide behind the
same bug in the client.
"""

from __future__ import annotations

import socket
import time
from typing import Dict, Iterable, List, Optional, Tuple, Union

HeadersIn = Union[Dict[str, str], Iterable[Tuple[str, str]]]

_ESC = {"1.1": {"\\": "\\\\", "\n": "\\n", ":": "\\c"},
        "1.2": {"\\": "\\\\", "\n": "\\n", ":": "\\c", "\r": "\\r"}}
_UNESC = {"1.1": {"\\\\": "\\", "\\n": "\n", "\\c": ":"},
          "1.2": {"\\\\": "\\", "\\n": "\n", "\\c": ":", "\\r": "\r"}}


def escape(value: str, version: str) -> str:
    table = _ESC.get(version)
    if table is None:
        return value
    return "".join(table.get(ch, ch) for ch in value)


def unescape(raw: str, version: str) -> str:
    table = _UNESC.get(version)
    if table is None or "\\" not in raw:
        return raw
    out, i = [], 0
    while i < len(raw):
        pair = raw[i:i + 2]
        if raw[i] == "\\" and pair in table:
            out.append(table[pair])
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)


def encode(command: str, headers: HeadersIn, body: bytes = b"", version: str = "1.2") -> bytes:
    items = headers.items() if isinstance(headers, dict) else headers
    lines = [command]
    lines += [f"{escape(k, version)}:{escape(v, version)}" for k, v in items]
    return ("\n".join(lines) + "\n\n").encode("utf-8") + body + b"\0"


class Frame:
    __slots__ = ("command", "headers", "body")

    def __init__(self, command: str, headers: List[Tuple[str, str]], body: bytes):
        self.command = command
        self.headers = headers
        self.body = body

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def __repr__(self) -> str:
        return f"Frame({self.command}, {self.headers}, {self.body[:60]!r})"


class Closed(ConnectionError):
    """The broker closed the connection."""


class StompClient:
    """One STOMP connection to 127.0.0.1:``port``; :meth:`connect` sends CONNECT."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        #: monotonic time of the last bytes received (heart-beats included), for stall detection
        self.last_rx = time.monotonic()
        self.version = "1.0"  # until CONNECTED says otherwise (headers before it are not escaped)
        self.connected: Optional[Frame] = None

    @classmethod
    def open(cls, port: int, version: str = "1.2", timeout: float = 10.0, **headers) -> "StompClient":
        """Connect and CONNECT; raises ConnectionError unless the broker answers CONNECTED."""
        client = cls(port, timeout)
        try:
            client.connect(version, **headers)
        except BaseException:
            client.close()
            raise
        return client

    def connect(self, version: str = "1.2", timeout: Optional[float] = None, **headers) -> Frame:
        head = {"accept-version": version, "host": "localhost"}
        head.update({k.replace("_", "-"): v for k, v in headers.items()})
        if version == "1.0":
            head.pop("accept-version")
        self.sock.sendall(encode("CONNECT", head, version="1.0"))
        frame = self.read(timeout)
        if frame is None:
            raise Closed(f"port {self.port}: closed before CONNECTED")
        if frame.command != "CONNECTED":
            raise ConnectionError(f"port {self.port}: {frame.command} instead of CONNECTED: {frame.get('message')}")
        self.version = frame.get("version", "1.0")
        self.connected = frame
        return frame

    # -- output ----------------------------------------------------------------------
    def send_frame(self, command: str, headers: HeadersIn, body: bytes = b"") -> None:
        self.sock.sendall(encode(command, headers, body, self.version))

    def send(self, destination: str, body: bytes, receipt: Optional[str] = None, **headers) -> None:
        head = [("destination", destination)]
        if receipt is not None:
            head.append(("receipt", receipt))
        head += [(k, v) for k, v in headers.items()]
        head.append(("content-length", str(len(body))))
        self.send_frame("SEND", head, body)

    def subscribe(self, destination: str, sub_id: str = "s1", ack: str = "auto", receipt: Optional[str] = None,
                  **headers) -> None:
        head = [("destination", destination), ("id", sub_id), ("ack", ack)]
        if receipt is not None:
            head.append(("receipt", receipt))
        head += list(headers.items())
        self.send_frame("SUBSCRIBE", head)

    def ack(self, message: Frame, receipt: Optional[str] = None) -> None:
        """ACK one MESSAGE the way its STOMP version wants (ack header in 1.2, message-id before)."""
        if self.version == "1.2" and message.get("ack") is not None:
            head = [("id", message.get("ack"))]
        else:
            head = [("message-id", message.get("message-id")), ("subscription", message.get("subscription", ""))]
        if receipt is not None:
            head.append(("receipt", receipt))
        self.send_frame("ACK", head)

    # -- input -----------------------------------------------------------------------
    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The next frame (heart-beats skipped); None once the broker closed; socket.timeout on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout("no frame within %.1f s" % timeout)
                self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 16)
            except (ConnectionResetError, BrokenPipeError):
                return None
            if not data:
                return None
            self.last_rx = time.monotonic()
            self.buf += data

    def read_until(self, predicate, timeout: float) -> Frame:
        """Read frames until ``predicate(frame)``; raises Closed or socket.timeout."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.read(max(0.001, deadline - time.monotonic()))
            if frame is None:
                raise Closed(f"port {self.port}: closed")
            if predicate(frame):
                return frame

    def request(self, command: str, headers: HeadersIn, body: bytes = b"", timeout: float = 30.0) -> Frame:
        """Send a frame with a receipt; returns its RECEIPT or ERROR (frames in between are skipped)."""
        receipt = "req-%d" % time.monotonic_ns()
        items = list(headers.items() if isinstance(headers, dict) else headers)
        self.send_frame(command, items + [("receipt", receipt)], body)
        return self.read_until(lambda f: f.command in ("RECEIPT", "ERROR") and
                               (f.get("receipt-id") == receipt or f.command == "ERROR"), timeout)

    def _parse(self) -> Optional[Frame]:
        buf = self.buf.lstrip(b"\r\n")
        self.buf = buf
        end = buf.find(b"\n\n")
        if end < 0:
            return None
        head = buf[:end].decode("utf-8")
        lines = head.split("\n")
        command = lines[0].rstrip("\r")
        headers = []
        for line in lines[1:]:
            if self.version != "1.0":
                line = line.rstrip("\r") if self.version == "1.2" else line
            key, _, value = line.partition(":")
            if command != "CONNECTED":
                key, value = unescape(key, self.version), unescape(value, self.version)
            headers.append((key, value))
        start = end + 2
        length = next((v for k, v in headers if k == "content-length"), None)
        if length is not None:
            stop = start + int(length)
            if len(buf) < stop + 1:
                return None
        else:
            stop = buf.find(b"\0", start)
            if stop < 0:
                return None
        body = buf[start:stop]
        self.buf = buf[stop + 1:]
        return Frame(command, headers, body)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def try_connect(port: int, timeout: float = 2.0) -> bool:
    """True when a STOMP CONNECT on ``port`` is answered with CONNECTED."""
    try:
        client = StompClient.open(port, timeout=timeout)
    except (OSError, ConnectionError):
        return False
    client.close()
    return True


def collect(client: StompClient, idle_s: float = 3.0, limit_s: float = 60.0) -> List[Frame]:
    """Every frame that arrives until the connection closes or stays quiet for ``idle_s``."""
    frames: List[Frame] = []
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        try:
            frame = client.read(timeout=idle_s)
        except (socket.timeout, OSError):
            break
        if frame is None:
            break
        frames.append(frame)
    return frames


def drain(port: int, destination: str, idle_s: float = 3.0, version: str = "1.2") -> List[Frame]:
    """Subscribe (auto ack) and return every MESSAGE until the queue stays quiet for ``idle_s``."""
    client = StompClient.open(port, version=version)
    try:
        client.subscribe(destination, "drain", ack="auto")
        return [f for f in collect(client, idle_s) if f.command == "MESSAGE"]
    finally:
        client.close()
