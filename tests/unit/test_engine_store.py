"""The engine on a real journal store: durability of receipts, restart, paging, duplicates."""

import pytest
from test_engine_support import Harness, make_config

from hamq.core.engine import Broker
from hamq.stomp.codec import Frame
from hamq.store import MessageStore


def open_store(path, **kwargs):
    store = MessageStore(path, **kwargs)
    store.open(epoch=1)
    return store


@pytest.fixture
def store_dir(tmp_path):
    return tmp_path / "kahadb"


def harness(store_dir, **config):
    return Harness(store=open_store(store_dir), **config)


def restart(h, store_dir, window=None, **config):
    """Crash-free restart: the old store is closed, a new broker recovers from disk."""
    h.broker.store.close()
    fresh = Harness(store=open_store(store_dir), **config)
    if window is not None:
        fresh.broker.queue_window = window
    fresh.broker.recover()
    return fresh


def test_persistent_receipt_waits_until_the_store_is_durable(store_dir):
    store = open_store(store_dir)
    broker = Broker(make_config(), store=store)
    broker.connection_made("p")
    broker.receive("p", Frame("CONNECT", [("accept-version", "1.2")]))
    broker.take_outputs()
    broker.receive("p", Frame("SEND", [("destination", "/queue/a"), ("persistent", "true"), ("receipt", "r")], b"x"))
    (receipt,) = broker.take_outputs()
    assert receipt.frame.command == "RECEIPT"
    assert receipt.after_lsn > store.durable_lsn  # not yet fsynced: the server must hold it
    assert store.sync() >= receipt.after_lsn
    broker.receive("p", Frame("SEND", [("destination", "/queue/a"), ("receipt", "np")], b"y"))
    (plain,) = broker.take_outputs()
    assert plain.after_lsn == 0  # a non-persistent send is receipted at once
    store.close()


def test_persistent_messages_survive_restart_and_acked_ones_do_not(store_dir):
    h = harness(store_dir)
    h.connect("p")
    for i in range(5):
        h.send("p", "SEND", str(i).encode(), destination="/queue/a", persistent="true")
    h.send("p", "SEND", b"np", destination="/queue/a")
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s", ack="client-individual")
    frames = h.take("c")
    assert [f.body for f in frames] == [b"0", b"1", b"2", b"3", b"4", b"np"]
    h.send("c", "ACK", id=frames[0].get("ack"))
    h.send("c", "ACK", id=frames[2].get("ack"))
    h = restart(h, store_dir)
    h.connect("c2")
    h.send("c2", "SUBSCRIBE", destination="/queue/a", id="s", ack="client-individual")
    again = h.take("c2")
    assert [f.body for f in again] == [b"1", b"3", b"4"]  # the non-persistent one is gone
    assert all(f.get("redelivered") == "true" for f in again)  # they had been dispatched
    assert again[0].get("message-id") == frames[1].get("message-id")
    assert again[0].get("persistent") == "true"


def test_undispatched_messages_are_not_flagged_redelivered_after_restart(store_dir):
    h = harness(store_dir)
    h.connect("p")
    h.send("p", "SEND", b"fresh", destination="/queue/a", persistent="true")
    h = restart(h, store_dir)
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s")
    (msg,) = h.take("c")
    assert msg.body == b"fresh" and msg.get("redelivered") is None


def test_auto_ack_is_persisted(store_dir):
    h = harness(store_dir)
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s")
    h.send("c", "SEND", b"x", destination="/queue/a", persistent="true")
    assert len(h.take("c")) == 1
    h = restart(h, store_dir)
    assert h.broker.store.pending_count("queue:a") == 0
    assert "a" not in h.broker.queues or h.broker.queues["a"].depth == 0


def test_deep_queue_is_paged_not_held_in_memory(store_dir):
    h = harness(store_dir)
    h.broker.queue_window = 10
    h.connect("p")
    for i in range(100):
        h.send("p", "SEND", str(i).encode(), destination="/queue/deep", persistent="true")
    queue = h.broker.queues["deep"]
    assert len(queue.memory) == 10 and queue.depth == 100
    h = restart(h, store_dir, window=10)
    queue = h.broker.queues["deep"]
    assert len(queue.memory) == 0 and queue.depth == 100  # recovery reads no bodies
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/deep", id="s", ack="client-individual",
           **{"activemq.prefetchSize": "7"})
    received = []
    while len(received) < 100:
        frames = h.take("c")
        assert frames, f"stalled after {len(received)}"
        assert len(queue.memory) <= 10
        received += frames
        h.send("c", "ACK", id=frames[-1].get("ack"))
        for f in frames[:-1]:
            h.send("c", "ACK", id=f.get("ack"))
    assert [int(f.body) for f in received] == list(range(100))
    assert queue.depth == 0


def test_a_resend_with_the_same_duplicate_id_is_receipted_but_enqueued_once_even_after_restart(store_dir):
    dup = {"_AMQ_DUPL_ID": "m-1"}
    h = harness(store_dir)
    h.connect("p")
    h.send("p", "SEND", b"a", destination="/queue/a", persistent="true", receipt="1", **dup)
    h.send("p", "SEND", b"a", destination="/queue/a", persistent="true", receipt="2", **dup)
    assert [f.get("receipt-id") for f in h.take("p")] == ["1", "2"]
    h = restart(h, store_dir)
    h.connect("p")
    h.send("p", "SEND", b"a", destination="/queue/a", persistent="true", receipt="3", **dup)
    assert h.take("p")[0].get("receipt-id") == "3"
    assert h.broker.queues["a"].depth == 1


def test_durable_subscription_and_its_messages_survive_restart(store_dir):
    h = harness(store_dir)
    durable = {"activemq.subscriptionName": "s1"}
    h.connect("d", client_id="cid")
    h.send("d", "SUBSCRIBE", destination="/topic/t", id="s", selector="kind = 'keep'", **durable)
    h.drop("d")
    h.connect("p")
    h.send("p", "SEND", b"kept", destination="/topic/t", persistent="true", kind="keep")
    h.send("p", "SEND", b"filtered", destination="/topic/t", persistent="true", kind="other")
    h = restart(h, store_dir)
    assert list(h.broker.durables) == ["durable:cid:s1"]
    h.connect("d", client_id="cid")
    h.send("d", "SUBSCRIBE", destination="/topic/t", id="s", selector="kind = 'keep'", **durable)
    assert [f.body for f in h.take("d")] == [b"kept"]
    h.send("d", "UNSUBSCRIBE", id="s", **durable)
    h = restart(h, store_dir)
    assert h.broker.durables == {}


def test_nacked_persistent_message_is_in_the_dlq_after_restart(store_dir):
    h = harness(store_dir)
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s", ack="client")
    h.send("c", "SEND", b"bad", destination="/queue/a", persistent="true")
    (msg,) = h.take("c")
    h.send("c", "NACK", id=msg.get("ack"))
    h = restart(h, store_dir)
    assert h.broker.queues["a"].depth == 0
    assert h.broker.queues["ActiveMQ.DLQ"].depth == 1


def test_commit_stores_sends_and_acks_in_one_batch(store_dir):
    h = harness(store_dir)
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/in", id="s", ack="client-individual")
    h.send("c", "SEND", b"job", destination="/queue/in", persistent="true")
    (job,) = h.take("c")
    lsn_before = h.broker.store.written_lsn
    h.send("c", "BEGIN", transaction="t")
    h.send("c", "ACK", id=job.get("ack"), transaction="t")
    h.send("c", "SEND", b"result", destination="/queue/out", persistent="true", transaction="t")
    h.send("c", "COMMIT", transaction="t", receipt="c")
    assert h.take("c")[0].get("receipt-id") == "c"
    assert h.broker.store.written_lsn == lsn_before + 1
    h = restart(h, store_dir)
    assert h.broker.queues["in"].depth == 0 and h.broker.queues["out"].depth == 1


@pytest.mark.parametrize("with_send", [True, False])
def test_commit_with_a_nack_stores_its_dead_letter_move_in_the_same_batch(store_dir, with_send):
    """A kill between two batches of one COMMIT must not leave the acks applied and the sends missing."""
    h = harness(store_dir)
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/in", id="s", ack="client-individual")
    for body in (b"m1", b"m2"):
        h.send("c", "SEND", body, destination="/queue/in", persistent="true")
    m1, m2 = h.take("c")
    lsn_before = h.broker.store.written_lsn
    h.send("c", "BEGIN", transaction="t")
    h.send("c", "ACK", id=m1.get("ack"), transaction="t")
    h.send("c", "NACK", id=m2.get("ack"), transaction="t")
    if with_send:
        h.send("c", "SEND", b"s1", destination="/queue/out", persistent="true", transaction="t")
    h.send("c", "COMMIT", transaction="t", receipt="c")
    assert [f.get("receipt-id") for f in h.take("c") if f.command == "RECEIPT"] == ["c"]
    assert h.broker.store.written_lsn == lsn_before + 1
    h = restart(h, store_dir)
    assert h.broker.queues["in"].depth == 0 and h.broker.queues["ActiveMQ.DLQ"].depth == 1
    if with_send:
        assert h.broker.queues["out"].depth == 1
    h.connect("d")
    h.send("d", "SUBSCRIBE", destination="/queue/ActiveMQ.DLQ", id="x", ack="client-individual")
    (dead,) = h.take("d")
    h.send("d", "ACK", id=dead.get("ack"), receipt="r")
    h = restart(h, store_dir)
    assert h.broker.queues["ActiveMQ.DLQ"].depth == 0  # the moved copy got a real seq: its ack sticks


def test_a_damaged_stored_message_is_skipped_not_delivered(store_dir):
    h = harness(store_dir)
    h.connect("p")
    for body in (b"first-message", b"second-message", b"third-message"):
        h.send("p", "SEND", body, destination="/queue/a", persistent="true")
    h.broker.store.close()
    segment = sorted(store_dir.glob("db-*.log"))[-1]
    data = bytearray(segment.read_bytes())
    at = data.find(b"second-message")
    data[at:at + 6] = b"XXXXXX"  # flip bytes inside the body: the record checksum no longer matches
    segment.write_bytes(bytes(data))
    store = MessageStore(store_dir, checkpoint_interval_ms=0)
    store.open(epoch=1)
    h = Harness(store=store)
    h.broker.recover()
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s")
    bodies = [f.body for f in h.take("c")]
    assert b"second-message" not in bodies and b"XXXXXX-message" not in bodies
    assert b"first-message" in bodies


def test_persistent_window_is_bounded_in_bytes_too(store_dir):
    h = harness(store_dir)
    h.broker.queue_memory_limit = 50_000
    h.connect("p")
    for i in range(40):
        h.send("p", "SEND", bytes([65 + i % 26]) * 10_000, destination="/queue/big", persistent="true")
    queue = h.broker.queues["big"]
    assert queue.memory_bytes <= 50_000 and queue.depth == 40
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/big", id="s", ack="client-individual",
           **{"activemq.prefetchSize": "3"})
    received = 0
    while received < 40:
        frames = h.take("c")
        assert frames, f"stalled after {received}"
        assert queue.memory_bytes <= 50_000
        received += len(frames)
        for f in frames:
            h.send("c", "ACK", id=f.get("ack"))
    assert queue.depth == 0


def test_an_auto_acked_delivery_is_acked_on_disk_only_after_it_was_handed_to_its_connection(store_dir):
    """A crash after the ack's write but before the MESSAGE went out must not ack what nobody got."""
    from hamq.store.ops import Ack, MarkDispatched

    h = harness(store_dir)
    store = h.broker.store
    batches = []
    real_append = store.append

    def recording_append(ops):
        ops = list(ops)
        lsn = real_append(ops)
        batches.append((lsn, ops))
        return lsn

    store.append = recording_append
    h.connect("p")
    h.send("p", "SEND", b"x", destination="/queue/a", persistent="true", receipt="r")
    h.connect("c")
    h.broker.receive("c", Frame("SUBSCRIBE", [("destination", "/queue/a"), ("id", "s"), ("ack", "auto")]))
    outputs = h.broker.take_outputs()
    (delivery,) = [o for o in outputs if o.frame is not None and o.frame.command == "MESSAGE"]
    before = [op for lsn, ops in batches if lsn <= delivery.after_lsn for op in ops]
    assert not [op for op in before if isinstance(op, Ack)], "the ack was written before the delivery went out"
    assert [op for op in before if isinstance(op, MarkDispatched)], "a crash must redeliver it flagged"
    h.broker.durability.released([delivery])
    h.broker.durability.end_round()
    after = [op for lsn, ops in batches if lsn > delivery.after_lsn for op in ops]
    assert [op for op in after if isinstance(op, Ack)], "once handed over, the ack goes in the next batch"
