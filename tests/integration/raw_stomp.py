"""A bare STOMP 1.2 client over one socket: what a hostile or careless client can send.

Shared by the integration tests that must put exact bytes on the wire (limits,
authentication); every other test uses stomp.py or hamq.client.
"""

from __future__ import annotations

import socket


class RawStomp:
    """One raw STOMP 1.2 connection to 127.0.0.1:``port``."""

    def __init__(self, port: int, timeout: float = 30.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, command: str, body: bytes = b"", **headers) -> None:
        """``accept_version=...`` becomes the header ``accept-version``."""
        head = "".join(f"{k.replace('_', '-')}:{v}\n" for k, v in headers.items())
        self.sock.sendall(f"{command}\n{head}\n".encode() + body + b"\0")

    def connect(self, host: str = "localhost", **headers):
        """Send CONNECT; returns the broker's answer (see frame)."""
        self.send("CONNECT", accept_version="1.2", host=host, **headers)
        return self.frame()

    def frame(self):
        """(command, headers, body), or None once the broker closed the connection."""
        while True:
            self.buf = self.buf.lstrip(b"\r\n")
            end = self.buf.find(b"\n\n")
            if end >= 0:
                lines = self.buf[:end].decode().split("\n")
                headers = dict(line.split(":", 1) for line in lines[1:])
                start = end + 2
                if "content-length" in headers:
                    stop = start + int(headers["content-length"])
                else:
                    stop = self.buf.find(b"\0", start)
                if stop >= 0 and len(self.buf) > stop:
                    body, self.buf = self.buf[start:stop], self.buf[stop + 1:]
                    return lines[0], headers, body
            try:
                data = self.sock.recv(1 << 16)
            except (ConnectionResetError, BrokenPipeError):
                return None
            if not data:
                return None
            self.buf += data

    def close(self) -> None:
        self.sock.close()
