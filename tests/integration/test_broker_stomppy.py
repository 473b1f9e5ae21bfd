"""The broker as the independent client stomp.py sees it, over real sockets.

One broker process serves the whole module (each test uses its own
destinations); tests that need a fresh or restarted broker start their own.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid

import pytest
import stomp

TIMEOUT = 10.0


class Collector(stomp.ConnectionListener):
    """Records every MESSAGE, RECEIPT and ERROR; tests wait on it."""

    def __init__(self):
        self.cond = threading.Condition()
        self.messages = []
        self.receipts = []
        self.errors = []
        self.disconnected = False

    def _add(self, bucket, frame):
        with self.cond:
            bucket.append(frame)
            self.cond.notify_all()

    def on_message(self, frame):
        self._add(self.messages, frame)

    def on_receipt(self, frame):
        self._add(self.receipts, frame)

    def on_error(self, frame):
        self._add(self.errors, frame)

    def on_disconnected(self):
        with self.cond:
            self.disconnected = True
            self.cond.notify_all()

    def wait(self, predicate, what: str):
        with self.cond:
            if not self.cond.wait_for(predicate, TIMEOUT):
                raise AssertionError(f"timed out waiting for {what}; messages={len(self.messages)} "
                                     f"receipts={len(self.receipts)} errors={[e.headers for e in self.errors]}")

    def wait_messages(self, n: int):
        self.wait(lambda: len(self.messages) >= n, f"{n} messages")
        return list(self.messages)

    def wait_receipt(self, receipt_id: str):
        self.wait(lambda: any(r.headers.get("receipt-id") == receipt_id for r in self.receipts),
                  f"receipt {receipt_id}")

    def wait_error(self):
        self.wait(lambda: self.errors, "an ERROR frame")
        return self.errors[-1]


def connect(port, version="1.2", heartbeats=(0, 0), auto_decode=True, **headers):
    cls = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}[version]
    kwargs = {"auto_decode": auto_decode}
    if version != "1.0":
        kwargs["heartbeats"] = heartbeats
    conn = cls([("127.0.0.1", port)], **kwargs)
    listener = Collector()
    conn.set_listener("c", listener)
    conn.connect(wait=True, headers=headers)
    return conn, listener


def unique(prefix="q"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def shared(module_broker_factory):
    return module_broker_factory(connector_options="maxFrameSize=65536")


@pytest.fixture
def port(shared):
    return shared.stomp_port


@pytest.fixture
def clients():
    made = []

    def make(port, *args, **kwargs):
        conn, listener = connect(port, *args, **kwargs)
        made.append(conn)
        return conn, listener

    yield make
    for conn in made:
        try:
            if conn.is_connected():
                conn.disconnect()
        except Exception:
            pass


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_send_receive_each_version(port, clients, version):
    conn, listener = clients(port, version)
    queue = f"/queue/{unique()}"
    conn.subscribe(queue, id="s1", ack="auto")
    conn.send(queue, "hello", headers={"color": "blue"}, receipt="r1")
    listener.wait_receipt("r1")
    (msg,) = listener.wait_messages(1)
    assert msg.body == "hello"
    assert msg.headers["color"] == "blue"
    assert msg.headers["message-id"].startswith("ID:")
    assert ("ack" in msg.headers) == (version == "1.2")


def test_queue_is_load_balanced_and_topic_fans_out(port, clients):
    c1, l1 = clients(port)
    c2, l2 = clients(port)
    p, lp = clients(port)
    queue, topic = f"/queue/{unique()}", f"/topic/{unique()}"
    for c in (c1, c2):
        c.subscribe(queue, id="q", ack="auto")
        c.subscribe(topic, id="t", ack="auto", headers={"receipt": f"sub-{id(c)}"})
    l1.wait_receipt(f"sub-{id(c1)}")
    l2.wait_receipt(f"sub-{id(c2)}")
    for i in range(4):
        p.send(queue, f"q{i}")
    p.send(topic, "news", receipt="done")
    lp.wait_receipt("done")
    l1.wait(lambda: sum(m.body.startswith("q") for m in l1.messages) == 2 and any(
        m.body == "news" for m in l1.messages), "2 queue messages and the topic message on c1")
    l2.wait(lambda: sum(m.body.startswith("q") for m in l2.messages) == 2 and any(
        m.body == "news" for m in l2.messages), "2 queue messages and the topic message on c2")


def test_client_individual_ack_and_redelivery_on_disconnect(port, clients):
    queue = f"/queue/{unique()}"
    p, lp = clients(port)
    for i in range(3):
        p.send(queue, f"m{i}", headers={"persistent": "true"}, receipt=f"s{i}")
    lp.wait_receipt("s2")
    c1, l1 = clients(port)
    c1.subscribe(queue, id="s", ack="client-individual")
    msgs = l1.wait_messages(3)
    c1.ack(msgs[1].headers["ack"], receipt="a1")
    l1.wait_receipt("a1")
    c1.disconnect()
    c2, l2 = clients(port)
    c2.subscribe(queue, id="s", ack="client-individual")
    again = l2.wait_messages(2)
    assert sorted(m.body for m in again) == ["m0", "m2"]
    assert all(m.headers.get("redelivered") == "true" for m in again)


def test_nack_goes_to_dlq(port, clients, shared):
    queue = f"/queue/{unique()}"
    c, listener = clients(port)
    c.subscribe(queue, id="s", ack="client-individual")
    tag = unique("tag")
    c.send(queue, "poison", headers={"persistent": "true", "tag": tag})
    (msg,) = listener.wait_messages(1)
    c.nack(msg.headers["ack"], receipt="n")
    listener.wait_receipt("n")
    c.subscribe("/queue/ActiveMQ.DLQ", id="dlq", ack="auto", headers={"selector": f"tag = '{tag}'"})
    listener.wait(lambda: any(m.headers.get("subscription") == "dlq" for m in listener.messages), "the DLQ copy")
    dead = [m for m in listener.messages if m.headers["subscription"] == "dlq"][0]
    assert dead.body == "poison" and dead.headers["message-id"] == msg.headers["message-id"]
    assert dead.headers["original-destination"] == queue


def test_transaction_commit_and_abort(port, clients):
    queue = f"/queue/{unique()}"
    c, listener = clients(port)
    c.subscribe(queue, id="s", ack="auto")
    tx = c.begin()
    c.send(queue, "committed", transaction=tx)
    c.commit(tx)
    tx2 = c.begin()
    c.send(queue, "aborted", transaction=tx2)
    c.abort(tx2)
    c.send(queue, "marker", receipt="m")
    listener.wait_messages(2)
    listener.wait_receipt("m")
    assert [m.body for m in listener.messages] == ["committed", "marker"]


def test_selector_prefetch_and_binary_body(port, clients):
    queue = f"/queue/{unique()}"
    c, listener = clients(port)
    c.subscribe(queue, id="s", ack="client-individual",
                headers={"selector": "n > 1 AND kind IN ('a','b')", "activemq.prefetchSize": "1"})
    p, lp = clients(port)
    for n, kind in ((1, "a"), (2, "c"), (3, "a"), (4, "b")):
        p.send(queue, f"{n}{kind}", headers={"n": str(n), "kind": kind})
    (first,) = listener.wait_messages(1)
    assert first.body == "3a"
    c.ack(first.headers["ack"])
    listener.wait_messages(2)
    assert listener.messages[1].body == "4b"
    b, lb = clients(port, auto_decode=False)
    binary_queue = f"/queue/{unique()}"
    b.subscribe(binary_queue, id="bin", ack="auto")
    payload = bytes(range(256)) * 4
    b.send(binary_queue, payload, headers={"content-type": "application/octet-stream"})
    (got,) = lb.wait_messages(1)
    assert got.body == payload


def test_durable_topic_subscription_survives_subscriber_absence(port, clients):
    topic = f"/topic/{unique()}"
    client_id = unique("cid")
    durable = {"activemq.subscriptionName": "sub", "receipt": "subscribed"}
    c, listener = clients(port, **{"client-id": client_id})
    c.subscribe(topic, id="d", ack="client-individual", headers=durable)
    listener.wait_receipt("subscribed")
    c.disconnect()
    p, lp = clients(port)
    p.send(topic, "while-away", headers={"persistent": "true"}, receipt="sent")
    lp.wait_receipt("sent")
    c2, l2 = clients(port, **{"client-id": client_id})
    c2.subscribe(topic, id="d", ack="client-individual", headers=durable)
    (msg,) = l2.wait_messages(1)
    assert msg.body == "while-away"
    c2.ack(msg.headers["ack"])
    c2.unsubscribe("d", headers={"activemq.subscriptionName": "sub", "receipt": "gone"})
    l2.wait_receipt("gone")


def test_heartbeats_negotiated_and_kept(port, clients):
    c, listener = clients(port, heartbeats=(200, 200))
    time.sleep(1.0)  # several heart-beat periods; the broker must not drop us
    queue = f"/queue/{unique()}"
    c.subscribe(queue, id="s", ack="auto")
    c.send(queue, "still-here")
    assert listener.wait_messages(1)[0].body == "still-here"
    assert c.is_connected()


def test_error_frame_with_receipt_id_and_connection_survives(port, clients):
    c, listener = clients(port)
    c.send("/nowhere/x", "body", receipt="bad")
    error = listener.wait_error()
    assert error.headers["receipt-id"] == "bad"
    assert "destination" in error.headers["message"] and "Fix:" in error.headers["message"]
    queue = f"/queue/{unique()}"
    c.subscribe(queue, id="s", ack="auto")
    c.send(queue, "after-error")
    assert listener.wait_messages(1)[0].body == "after-error"


def raw_exchange(port: int, data: bytes, read_until_close: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if not read_until_close:
                break
        return b"".join(chunks)


def test_bad_input_gets_error_and_other_clients_unaffected(port, clients, shared):
    c, listener = clients(port)
    # A frame before CONNECT
    reply = raw_exchange(port, b"SEND\ndestination:/queue/a\n\nx\x00")
    assert reply.startswith(b"ERROR") and b"before CONNECT" in reply
    # Invalid UTF-8 in headers
    reply = raw_exchange(port, b"CONNECT\naccept-version:1.2\n\n\x00SEND\ndestination:/queue/\xff\n\nx\x00")
    assert b"CONNECTED" in reply and b"UTF-8" in reply
    # Malformed command line
    reply = raw_exchange(port, b"CONNECT\naccept-version:1.2\n\n\x00send lower\n\n\x00")
    assert b"ERROR" in reply and b"malformed" in reply
    # A frame over maxFrameSize (the connector's limit is 64 KiB in this module)
    big = b"CONNECT\naccept-version:1.2\n\n\x00SEND\ndestination:/queue/a\n\n" + b"x" * (200 * 1024) + b"\x00"
    reply = raw_exchange(port, big)
    assert b"maxFrameSize" in reply
    # Too many headers
    many = b"".join(b"h%d:v\n" % i for i in range(1500))
    reply = raw_exchange(port, b"CONNECT\naccept-version:1.2\n\n\x00SEND\ndestination:/queue/a\n" + many + b"\n\x00")
    assert b"more than" in reply and b"headers" in reply
    # Duplicate transaction id
    reply = raw_exchange(port, b"CONNECT\naccept-version:1.2\n\n\x00BEGIN\ntransaction:t\n\n\x00"
                               b"BEGIN\ntransaction:t\nreceipt:dup\n\n\x00DISCONNECT\nreceipt:bye\n\n\x00")
    assert b"already open" in reply and b"receipt-id:dup" in reply and b"receipt-id:bye" in reply
    # The well-behaved client never noticed.
    queue = f"/queue/{unique()}"
    c.subscribe(queue, id="s", ack="auto")
    c.send(queue, "fine")
    assert listener.wait_messages(1)[0].body == "fine"


def test_client_that_stops_reading_does_not_stall_others(port, clients):
    queue = f"/queue/{unique()}"
    lazy = socket.create_connection(("127.0.0.1", port))
    try:
        lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lazy.sendall(b"CONNECT\naccept-version:1.2\n\n\x00SUBSCRIBE\nid:s\ndestination:" + queue.encode()
                     + b"\nack:auto\n\n\x00")
        p, lp = clients(port)
        body = "x" * 8192
        for _ in range(600):  # ~5 MB towards a reader that reads nothing
            p.send(queue, body)
        other = f"/queue/{unique()}"
        c, listener = clients(port)
        c.subscribe(other, id="s", ack="auto")
        p.send(other, "unaffected", receipt="u")
        lp.wait_receipt("u")
        assert listener.wait_messages(1)[0].body == "unaffected"
    finally:
        lazy.close()


def test_status_and_metrics_report_destinations(port, clients, shared):
    queue = unique()
    p, lp = clients(port)
    p.send(f"/queue/{queue}", "a", headers={"persistent": "true"})
    p.send(f"/queue/{queue}", "b", headers={"persistent": "true"}, receipt="r")
    lp.wait_receipt("r")
    d = shared.destination(queue)
    assert d == {"name": queue, "type": "queue", "depth": 2, "consumers": 0, "enqueued": 2, "dequeued": 0}
    status = shared.status()
    assert status["role"] == "master" and status["brokerName"] == "test" and status["nodeName"] == "b1"
    assert isinstance(status["epoch"], int)
    metrics = shared.metrics()
    assert f'hamq_destination_depth{{broker="test",node="b1",destination="{queue}",type="queue"}} 2' in metrics
    assert 'hamq_role{broker="test",node="b1",role="master"} 1' in metrics


def test_a_persistent_resend_with_the_same_duplicate_id_is_enqueued_once(port, clients, shared):
    queue = unique()
    p, lp = clients(port)
    for i in range(2):
        p.send(f"/queue/{queue}", "once", headers={"persistent": "true", "_AMQ_DUPL_ID": f"dup-{queue}"},
               receipt=f"d{i}")
    lp.wait_receipt("d1")
    assert shared.destination(queue)["depth"] == 1


def test_a_repeated_message_id_alone_is_never_dropped(port, clients, shared):
    queue = unique()
    p, lp = clients(port)
    for i in range(2):
        p.send(f"/queue/{queue}", "twice", headers={"persistent": "true", "message-id": f"same-{queue}"},
               receipt=f"m{i}")
    lp.wait_receipt("m1")
    assert shared.destination(queue)["depth"] == 2


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_special_characters_in_headers_survive(port, clients, version):
    conn, listener = clients(port, version)
    queue = f"/queue/{unique()}"
    conn.subscribe(queue, id="s", ack="client")
    special = {"special-1": "colon : here", "special-2": "back\\slash", "special-3": "new\nline\n"}
    if version == "1.2":
        special["special-4"] = "carriage\rreturn"
    conn.send(queue, "x", headers=special, receipt="r")
    (msg,) = listener.wait_messages(1)
    for key, value in special.items():
        assert msg.headers[key] == value


def test_silent_client_is_disconnected_after_its_heartbeat_interval(port):
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"CONNECT\naccept-version:1.2\nheart-beat:300,0\n\n\x00")
        data = b""
        while True:  # read until the broker closes; we never send a heart-beat
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"CONNECTED") and b"heart-beat:0,300" in data
