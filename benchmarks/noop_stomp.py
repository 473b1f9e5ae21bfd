"""A STOMP responder that does nothing: CONNECTED for CONNECT, RECEIPT for any frame asking for one.

``benchmarks.ceiling`` drives it with the same stomp.py load as the brokers, so the
rate it reaches is what the client, loopback TCP and an asyncio server cost on
this host with no broker work at all: the floor under every broker's figure.

    .venv/bin/python -m benchmarks.noop_stomp PORT
"""

from __future__ import annotations

import asyncio
import re
import socket
import sys

_RECEIPT = re.compile(rb"\nreceipt:([^\n]*)\n")


class NoopStomp(asyncio.Protocol):
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buf = b""
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        out = []
        while True:
            end = buf.find(b"\0")
            if end < 0:
                break
            frame, buf = buf[:end].lstrip(b"\n"), buf[end + 1:]
            if frame.startswith((b"CONNECT", b"STOMP")):
                out.append(b"CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\0")
            match = _RECEIPT.search(frame)
            if match:
                out.append(b"RECEIPT\nreceipt-id:" + match.group(1) + b"\n\n\0")
        self.buf = buf
        if out:
            self.transport.write(b"".join(out))


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(NoopStomp, "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
