"""Connector limits on a real broker: frame size, headers, idle CONNECT, connection cap, slow readers, many idles.

Every assertion is on what arrives (frames, counts, closed sockets), never on
how fast: the test machine is shared and noisy.
"""

from __future__ import annotations

import resource
import socket
import threading

import pytest
from raw_stomp import RawStomp

LIMITS = ("maxFrameSize=4096&amp;maxHeaders=16&amp;maxHeaderLength=256&amp;connectAttemptTimeout=500"
          "&amp;maxPendingBytes=262144")


class Client(RawStomp):
    """One raw STOMP 1.2 connection, CONNECTed unless ``connect=False``."""

    def __init__(self, port: int, connect: bool = True):
        super().__init__(port, timeout=30)
        if connect:
            assert self.connect(host="x")[0] == "CONNECTED"


@pytest.fixture(scope="module")
def limited(module_broker_factory):
    return module_broker_factory(node_name="limited", connector_options=LIMITS)


def assert_still_serving(port: int) -> None:
    c = Client(port)
    c.send("SEND", b"ok", destination="/queue/limits.alive", receipt="alive")
    assert c.frame()[0] == "RECEIPT"
    c.close()


def test_oversized_frame_is_an_error_and_others_keep_working(limited):
    c = Client(limited.stomp_port)
    body = b"x" * 8192
    c.send("SEND", body, destination="/queue/limits.big", content_length=str(len(body)), receipt="big")
    command, headers, _ = c.frame()
    assert command == "ERROR" and "maxFrameSize" in headers["message"]
    assert c.frame() is None  # the stream cannot be framed any more: closed
    c.close()
    assert_still_serving(limited.stomp_port)
    assert (limited.destination("limits.big") or {"depth": 0})["depth"] == 0


def test_too_many_headers_is_an_error(limited):
    c = Client(limited.stomp_port)
    c.send("SEND", b"x", destination="/queue/limits.h", **{f"h{i}": "v" for i in range(40)})
    command, headers, _ = c.frame()
    assert command == "ERROR"
    c.close()
    assert_still_serving(limited.stomp_port)


def test_too_long_header_is_an_error(limited):
    c = Client(limited.stomp_port)
    c.send("SEND", b"x", destination="/queue/limits.h", long="v" * 1000)
    command, headers, _ = c.frame()
    assert command == "ERROR"
    c.close()


def test_socket_without_connect_is_closed_after_connect_attempt_timeout(limited):
    c = Client(limited.stomp_port, connect=False)
    answer = c.frame()  # blocks until the broker gives up on us (or the 30 s socket timeout fails the test)
    assert answer is None
    c.close()


def test_maximum_connections_refuses_the_next_one(hamq_broker, tmp_path):
    broker = hamq_broker(node_name="capped", kahadb_dir=tmp_path / "capped", connector_options="maximumConnections=3")
    held = [Client(broker.stomp_port) for _ in range(3)]
    extra = Client(broker.stomp_port, connect=False)
    extra.send("CONNECT", accept_version="1.2", host="x")
    try:
        assert extra.frame() is None
    except (ConnectionResetError, BrokenPipeError):
        pass
    held.pop().close()
    # a slot is free again once the broker has seen the close; retry until it has
    for _ in range(100):
        try:
            again = Client(broker.stomp_port)
            break
        except (AssertionError, TypeError, ConnectionResetError, BrokenPipeError):
            continue
    else:
        raise AssertionError("no connection was accepted after one of three was closed")
    again.close()
    for c in held:
        c.close()


def test_slow_consumer_does_not_stall_a_fast_one(limited):
    """Both subscribe to one topic; one stops reading. The fast one still gets every message."""
    port = limited.stomp_port
    slow = Client(port)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.send("SUBSCRIBE", destination="/topic/limits.fanout", id="slow", receipt="s1")
    assert slow.frame()[0] == "RECEIPT"
    fast = Client(port)
    fast.send("SUBSCRIBE", destination="/topic/limits.fanout", id="fast", receipt="f1")
    assert fast.frame()[0] == "RECEIPT"
    producer = Client(port)
    count, body = 2500, b"m" * 3000  # ~7.5 MB: well past the broker's per-connection write buffer
    tally = {"received": 0, "wrong": 0}

    def read_fast() -> None:  # the fast consumer reads as fast as it can, in parallel
        while True:
            frame = fast.frame()
            if frame is None or frame[2] == b"end":
                return
            tally["received" if frame[0] == "MESSAGE" and frame[2] == body else "wrong"] += 1

    reader = threading.Thread(target=read_fast, daemon=True)
    reader.start()
    for _ in range(count):
        producer.send("SEND", body, destination="/topic/limits.fanout", content_length=str(len(body)))
    producer.send("SEND", b"end", destination="/topic/limits.fanout", receipt="done")
    assert producer.frame()[0] == "RECEIPT"
    reader.join(120)
    assert not reader.is_alive(), "the fast consumer never got the last message"
    received = tally["received"]
    assert tally["wrong"] == 0
    assert received == count
    assert_still_serving(port)
    for c in (slow, fast, producer):
        c.close()


def test_a_thousand_idle_connections_and_a_normal_client(limited):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    idle = []
    try:
        for _ in range(1000):
            c = Client(limited.stomp_port)  # CONNECTed, then silent (no heart-beats asked)
            idle.append(c)
        assert limited.status()["connections"] >= 1000
        worker = Client(limited.stomp_port)
        worker.send("SUBSCRIBE", destination="/queue/limits.work", id="w")
        for i in range(50):
            worker.send("SEND", str(i).encode(), destination="/queue/limits.work")
        got = [worker.frame()[2] for _ in range(50)]
        assert got == [str(i).encode() for i in range(50)]
        worker.close()
    finally:
        for c in idle:
            c.close()
