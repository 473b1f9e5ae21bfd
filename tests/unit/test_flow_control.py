"""Producer flow control in the sans-IO engine: a SEND to a full queue waits, it is never refused.

The engine holds the frame (and every later frame of that connection, in
order) until consumers drain the queue below its resume mark, then runs it
and the receipt goes out late. The server stops reading the socket meanwhile.
"""

from test_engine_support import Harness

from hamq.core.destinations import RESUME_FRACTION
from hamq.store import MessageStore

LIMIT = 10_000
BODY = b"x" * 3000  # the 4th message reaches the limit, the 5th waits


def send(h, conn, dest, body=BODY, **headers):
    h.send(conn, "SEND", body, destination=dest, **headers)


def commands(frames):
    return [f.command for f in frames]


def full_queue(h, name="q", producer="p"):
    """A queue at its limit with no consumer; returns after the 4 accepted receipts."""
    h.broker.queue_memory_limit = LIMIT
    h.connect(producer)
    for i in range(4):
        send(h, producer, f"/queue/{name}", BODY, receipt=f"r{i}")
    assert [f.get("receipt-id") for f in h.take(producer)] == ["r0", "r1", "r2", "r3"]
    assert h.broker.queues[name].memory_bytes >= LIMIT


def test_send_past_the_limit_gets_its_receipt_late_not_an_error():
    h = Harness()
    full_queue(h)
    send(h, "p", "/queue/q", b"late", receipt="r4")
    assert h.take("p") == []  # no RECEIPT, no ERROR
    assert h.broker.is_blocked("p") and h.broker.status()["blockedProducers"] == 1
    assert h.broker.queues["q"].enqueued == 4  # held, not yet queued
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/q", id="s")
    got = h.take("c", "MESSAGE")
    assert h.take("p") and not h.broker.is_blocked("p")
    got += h.take("c", "MESSAGE")
    assert [f.body for f in got] == [BODY] * 4 + [b"late"]
    assert h.broker.take_resumed() == ["p"]


def test_later_frames_of_a_held_connection_wait_behind_it_in_order():
    h = Harness()
    full_queue(h)
    send(h, "p", "/queue/q", b"a", receipt="ra")
    send(h, "p", "/queue/other", b"b", receipt="rb")
    h.send("p", "DISCONNECT", receipt="bye")
    assert h.take("p") == [] and not h.closed["p"]
    assert "other" not in h.broker.queues
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/q", id="s")
    assert [f.get("receipt-id") for f in h.take("p")] == ["ra", "rb", "bye"]
    assert h.closed["p"]
    assert h.broker.queues["other"].enqueued == 1


def test_producer_waits_until_acks_drain_the_queue_to_the_resume_mark():
    h = Harness()
    full_queue(h)
    for i in range(4, 8):
        send(h, "p", "/queue/q", str(i).encode() * 3000, receipt=f"r{i}")
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/q", id="s", ack="client-individual",
           **{"activemq.prefetchSize": "1"})
    queue = h.broker.queues["q"]
    receipts = []
    delivered = []
    while len(delivered) < 8:
        (msg,) = h.take("c", "MESSAGE")
        delivered.append(msg.body)
        h.send("c", "ACK", id=msg.get("ack"))
        receipts += [f.get("receipt-id") for f in h.take("p", "RECEIPT")]
    assert receipts == ["r4", "r5", "r6", "r7"]
    assert delivered == [BODY] * 4 + [str(i).encode() * 3000 for i in range(4, 8)]
    assert queue.depth == 0 and queue.dequeued == 8 and queue.enqueued == 8


def test_held_producer_resumes_only_below_the_resume_mark():
    h = Harness()
    full_queue(h)
    send(h, "p", "/queue/q", b"late", receipt="late")
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/q", id="s", ack="client-individual",
           **{"activemq.prefetchSize": "1"})
    queue = h.broker.queues["q"]
    (first,) = h.take("c")
    assert queue.memory_bytes == 9000 and h.take("p") == []  # below the limit, above 70 %
    h.send("c", "ACK", id=first.get("ack"))
    (second,) = h.take("c")
    assert second.body == BODY and queue.memory_bytes == 6000 + len(b"late")
    assert commands(h.take("p")) == ["RECEIPT"]  # resumed at 6000 <= 70 % of the limit
    assert 6000 <= LIMIT * RESUME_FRACTION


def test_other_queues_and_producers_keep_flowing():
    h = Harness()
    full_queue(h)
    send(h, "p", "/queue/q", b"held", receipt="held")
    h.connect("p2")
    h.connect("c2")
    h.send("c2", "SUBSCRIBE", destination="/queue/free", id="s")
    for i in range(20):
        send(h, "p2", "/queue/free", BODY, receipt=f"f{i}")
    assert len(h.take("p2", "RECEIPT")) == 20
    assert len(h.take("c2", "MESSAGE")) == 20
    assert h.take("p") == [] and h.broker.is_blocked("p")


def test_several_held_producers_all_get_through_nothing_lost():
    h = Harness()
    full_queue(h)
    for name in ("p2", "p3"):
        h.connect(name)
    send(h, "p", "/queue/q", b"from-p", receipt="a")
    send(h, "p2", "/queue/q", b"from-p2", receipt="b")
    send(h, "p3", "/queue/q", b"from-p3", receipt="c")
    assert all(h.broker.is_blocked(n) for n in ("p", "p2", "p3"))
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/q", id="s")
    assert commands(h.take("p") + h.take("p2") + h.take("p3")) == ["RECEIPT"] * 3
    bodies = [f.body for f in h.take("c", "MESSAGE")]
    assert sorted(bodies[4:]) == [b"from-p", b"from-p2", b"from-p3"] and len(bodies) == 7


def test_held_commit_goes_through_once_with_its_acks():
    h = Harness()
    full_queue(h, name="out")
    h.connect("w")
    h.send("w", "SUBSCRIBE", destination="/queue/in", id="s", ack="client-individual")
    send(h, "p", "/queue/in", b"job")
    (job,) = h.take("w")
    h.send("w", "BEGIN", transaction="t")
    h.send("w", "ACK", id=job.get("ack"), transaction="t")
    send(h, "w", "/queue/out", b"result", transaction="t")
    h.send("w", "COMMIT", transaction="t", receipt="commit")
    assert h.take("w") == [] and h.broker.queues["in"].dequeued == 0
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/out", id="s")
    assert [f.get("receipt-id") for f in h.take("w")] == ["commit"]
    assert h.broker.queues["in"].dequeued == 1
    assert [f.body for f in h.take("c")][-1] == b"result"


def test_a_held_producer_that_goes_away_releases_its_place():
    h = Harness()
    full_queue(h)
    h.connect("p2")
    send(h, "p", "/queue/q", b"gone", receipt="x")
    send(h, "p2", "/queue/q", b"kept", receipt="y")
    h.drop("p")
    assert list(h.broker.queues["q"].blocked_producers) == [h.broker.connections["p2"]]
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/q", id="s")
    assert commands(h.take("p2")) == ["RECEIPT"]
    assert [f.body for f in h.take("c")][4:] == [b"kept"]


def test_a_held_producer_is_not_dropped_for_missing_heart_beats():
    h = Harness()
    h.broker.queue_memory_limit = LIMIT
    h.connect("p", **{"heart-beat": "1000,0"})
    for _ in range(4):
        send(h, "p", "/queue/q")
    send(h, "p", "/queue/q", receipt="late")
    for _ in range(10):
        h.clock.now += 1.0
        h.broker.tick()
        h.pump()
    assert not h.closed["p"] and "p" in h.broker.connections
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/q", id="s")
    assert commands(h.take("p")) == ["RECEIPT"]


def test_a_body_larger_than_the_limit_passes_an_empty_queue():
    h = Harness()
    h.broker.queue_memory_limit = LIMIT
    h.connect("p")
    send(h, "p", "/queue/q", b"y" * (3 * LIMIT), receipt="big")
    assert commands(h.take("p")) == ["RECEIPT"]


def test_persistent_messages_to_a_stored_queue_page_to_disk_and_never_wait(tmp_path):
    store = MessageStore(tmp_path / "kahadb")
    store.open(epoch=1)
    h = Harness(store=store)
    h.broker.queue_memory_limit = LIMIT
    h.connect("p")
    for i in range(20):
        send(h, "p", "/queue/q", BODY, receipt=f"r{i}", persistent="true")
    assert len(h.take("p", "RECEIPT")) == 20
    queue = h.broker.queues["q"]
    assert queue.memory_bytes < LIMIT and queue.backlog > 0 and queue.depth == 20
    # Non-persistent SENDs to the same queue fill its memory and then wait.
    send(h, "p", "/queue/q", BODY, receipt="np1")
    assert commands(h.take("p")) == ["RECEIPT"]
    send(h, "p", "/queue/q", b"np", receipt="np2")
    assert h.take("p") == []
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/q", id="s")
    assert commands(h.take("p")) == ["RECEIPT"]
    assert len(h.take("c", "MESSAGE")) == 22
    store.close()


def test_send_fail_if_no_space_keeps_the_error_as_an_opt_in():
    h = Harness(send_fail_if_no_space=True)
    h.broker.queue_memory_limit = LIMIT
    h.connect("p")
    for _ in range(3):
        send(h, "p", "/queue/q")
    send(h, "p", "/queue/q", receipt="no")
    (error,) = h.take("p")
    assert error.command == "ERROR" and "sendFailIfNoSpace" in error.get("message")
    assert not h.broker.is_blocked("p")


def test_memory_limit_comes_from_the_config():
    h = Harness(memory_limit=LIMIT)
    assert h.broker.queue_memory_limit == LIMIT
    h.connect("p")
    for _ in range(4):
        send(h, "p", "/queue/q")
    send(h, "p", "/queue/q", receipt="held")
    assert h.take("p") == [] and h.broker.is_blocked("p")
