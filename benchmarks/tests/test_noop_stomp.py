"""The ceiling's no-op responder answers like a broker would, so its rate is a fair floor."""

import asyncio
import socket
import threading

from benchmarks.noop_stomp import serve
from benchmarks.probe import free_port


def _exchange(port: int, data: bytes, frames: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        got = b""
        while got.count(b"\0") < frames:
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
        return got


def test_noop_responder_answers_connect_and_every_receipt_in_order():
    port = free_port()
    loop = asyncio.new_event_loop()
    task = loop.create_task(serve(port))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                threading.Event().wait(0.01)
        body = b"x" * 1024
        sends = b"".join(
            b"SEND\ndestination:/queue/a\ncontent-length:1024\nreceipt:r%d\n\n" % i + body + b"\0" for i in range(3)
        )
        got = _exchange(port, b"CONNECT\naccept-version:1.2\n\n\0" + sends + b"SEND\ndestination:/queue/a\n\nno receipt\0", 4)
        assert got.split(b"\0")[:4] == [
            b"CONNECTED\nversion:1.2\nheart-beat:0,0\n\n",
            b"RECEIPT\nreceipt-id:r0\n\n",
            b"RECEIPT\nreceipt-id:r1\n\n",
            b"RECEIPT\nreceipt-id:r2\n\n",
        ]
    finally:
        loop.call_soon_threadsafe(task.cancel)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
