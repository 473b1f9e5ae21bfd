"""Producer flow control on a real ``hamq run``: a producer to a full queue waits for its receipts.

A queue with a 64 KiB memory limit and no consumer takes 16 messages of 4 KiB;
the 17th SEND is held (no RECEIPT, no ERROR, the socket is not read) until a
consumer drains the queue. Every message then arrives exactly once, and a
producer on another queue never notices. Assertions are on counts and frames,
never on how long anything took.
"""

from __future__ import annotations

import threading
import time

from test_limits import Client

POLICY = ('<destinationPolicy><policyMap><policyEntries>'
          '<policyEntry queue=">" memoryLimit="64kb"/>'
          '</policyEntries></policyMap></destinationPolicy>')
BODY_SIZE = 4096
COUNT = 40  # 160 KiB: well past the limit
WAIT_S = 30.0  # an upper bound for a poll loop, not a measured figure


def body(i: int) -> bytes:
    return f"{i:06d}".encode().ljust(BODY_SIZE, b".")


def wait_for(predicate, what: str, broker):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen; status {broker.status()}; log:\n{broker.log()}")


def test_blocked_producer_gets_late_receipts_and_nothing_is_lost(hamq_broker):
    broker = hamq_broker(node_name="fc", extra=POLICY)
    port = broker.stomp_port
    producer = Client(port)

    def produce():
        for i in range(COUNT):
            producer.send("SEND", body(i), destination="/queue/fc.a", receipt=f"r{i}",
                          content_length=str(BODY_SIZE))

    sender = threading.Thread(target=produce, daemon=True)
    sender.start()
    receipts = [producer.frame() for _ in range(16)]  # 16 x 4 KiB reach the 64 KiB limit
    assert [(f[0], f[1]["receipt-id"]) for f in receipts] == [("RECEIPT", f"r{i}") for i in range(16)]
    status = wait_for(lambda: (broker.status() or {}).get("blockedProducers") == 1 and broker.status(),
                      "the producer being held", broker)
    (queue,) = [d for d in status["destinations"] if d["name"] == "fc.a"]
    assert queue["enqueued"] == 16 and queue["depth"] == 16

    # Another producer and consumer on another queue are not held.
    other = Client(port)
    other_consumer = Client(port)
    other_consumer.send("SUBSCRIBE", destination="/queue/fc.b", id="b", receipt="sub-b")
    assert other_consumer.frame()[0] == "RECEIPT"
    for i in range(20):
        other.send("SEND", body(i), destination="/queue/fc.b", receipt=f"b{i}", content_length=str(BODY_SIZE))
    assert [other.frame()[1]["receipt-id"] for _ in range(20)] == [f"b{i}" for i in range(20)]
    assert sorted(other_consumer.frame()[2][:6] for _ in range(20)) == [f"{i:06d}".encode() for i in range(20)]
    assert broker.status()["blockedProducers"] == 1

    # A consumer drains the full queue: the held SENDs go through, receipts arrive late and in order.
    consumer = Client(port)
    consumer.send("SUBSCRIBE", destination="/queue/fc.a", id="a", ack="client-individual")
    seen = []
    for _ in range(COUNT):
        command, headers, payload = consumer.frame()
        assert command == "MESSAGE", (command, headers)
        seen.append(int(payload[:6]))
        consumer.send("ACK", id=headers["ack"])
    late = [producer.frame() for _ in range(16, COUNT)]
    assert [(f[0], f[1]["receipt-id"]) for f in late] == [("RECEIPT", f"r{i}") for i in range(16, COUNT)]
    sender.join(WAIT_S)
    assert seen == list(range(COUNT))  # each exactly once, in order

    # Nothing else is waiting: a last message is the next (and only) one the consumer gets.
    producer.send("SEND", b"end", destination="/queue/fc.a", receipt="end")
    assert producer.frame()[1]["receipt-id"] == "end"
    command, headers, payload = consumer.frame()
    assert (command, payload) == ("MESSAGE", b"end")
    consumer.send("ACK", id=headers["ack"], receipt="acked")
    assert consumer.frame()[1]["receipt-id"] == "acked"
    status = broker.status()
    (queue,) = [d for d in status["destinations"] if d["name"] == "fc.a"]
    assert queue["enqueued"] == COUNT + 1 and queue["dequeued"] == COUNT + 1 and queue["depth"] == 0
    assert status["blockedProducers"] == 0
    assert "ERROR to" not in broker.log() and "holding its producers" in broker.log()
    for c in (producer, other, other_consumer, consumer):
        c.close()
