"""Message identity (issue 15 cases 10-12): broker-assigned message ids, explicit duplicate ids,
ack ids that never repeat across terms, and headers every STOMP version can carry."""

from __future__ import annotations

import pytest
from test_engine_support import Harness

from hamq.core.messages import Message, MessageFrame
from hamq.stomp.codec import Frame, FrameDecoder, encode_frame, escape_header
from hamq.store import MessageStore

DUP = "_AMQ_DUPL_ID"


def open_store(path, epoch=1):
    store = MessageStore(path)
    store.open(epoch=epoch)
    return store


def restart(h, store_dir, epoch):
    h.broker.store.close()
    fresh = Harness(store=open_store(store_dir, epoch))
    fresh.broker.recover()
    return fresh


def send(h, conn, dest, body, receipt, **headers):
    h.send(conn, "SEND", body, destination=dest, persistent="true", receipt=receipt, **headers)


def drain(h, dest):
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination=dest, id="s", ack="auto")
    frames = h.take("c", "MESSAGE")
    h.drop("c")
    return frames


def test_the_same_client_message_id_on_two_queues_is_delivered_on_both(tmp_path):
    h = Harness(store=open_store(tmp_path))
    h.connect("p")
    send(h, "p", "/queue/a", b"A", "1", message_id="7")
    send(h, "p", "/queue/b", b"B", "2", message_id="7")
    assert [f.get("receipt-id") for f in h.take("p")] == ["1", "2"]
    assert [f.body for f in drain(h, "/queue/a")] == [b"A"]
    assert [f.body for f in drain(h, "/queue/b")] == [b"B"]


def test_message_ids_reused_after_a_restart_are_new_messages(tmp_path):
    h = Harness(store=open_store(tmp_path))
    h.connect("p")
    for n in range(3):
        send(h, "p", "/queue/a", b"run1-%d" % n, str(n), message_id=str(n))
    h = restart(h, tmp_path, 2)
    h.connect("p")
    for n in range(3):
        send(h, "p", "/queue/a", b"run2-%d" % n, str(n), message_id=str(n))
    assert len(drain(h, "/queue/a")) == 6


def test_every_message_carries_a_unique_broker_message_id_and_keeps_the_clients_own(tmp_path):
    h = Harness(store=open_store(tmp_path))
    h.connect("p")
    send(h, "p", "/queue/a", b"1", "1", message_id="mine")
    send(h, "p", "/queue/a", b"2", "2", message_id="mine")
    send(h, "p", "/queue/a", b"3", "3")
    frames = drain(h, "/queue/a")
    ids = [f.get("message-id") for f in frames]
    assert len(frames) == 3 and len(set(ids)) == 3 and "mine" not in ids
    assert [f.get("client-message-id") for f in frames] == ["mine", "mine", None]


def test_an_explicit_duplicate_id_stores_a_resend_once_even_after_a_restart(tmp_path):
    h = Harness(store=open_store(tmp_path))
    h.connect("p")
    send(h, "p", "/queue/a", b"x", "1", **{DUP: "d-1"})
    send(h, "p", "/queue/a", b"x", "2", **{DUP: "d-1"})
    assert [f.get("receipt-id") for f in h.take("p")] == ["1", "2"]
    h = restart(h, tmp_path, 2)
    h.connect("p")
    send(h, "p", "/queue/a", b"x", "3", **{DUP: "d-1"})
    assert h.take("p")[0].get("receipt-id") == "3"
    frames = drain(h, "/queue/a")
    assert len(frames) == 1 and frames[0].get(DUP) == "d-1"


def test_a_duplicate_id_is_scoped_to_its_destination(tmp_path):
    h = Harness(store=open_store(tmp_path))
    h.connect("p")
    send(h, "p", "/queue/a", b"A", "1", **{DUP: "same"})
    send(h, "p", "/queue/b", b"B", "2", **{DUP: "same"})
    assert len(drain(h, "/queue/a")) == 1 and len(drain(h, "/queue/b")) == 1


def test_ack_ids_never_repeat_across_master_terms(tmp_path):
    seen = set()
    h = Harness(store=open_store(tmp_path, epoch=1))
    for term in (1, 2):
        if term == 2:
            h = restart(h, tmp_path, 2)
        h.connect("p")
        for n in range(3):
            send(h, "p", "/queue/a", b"%d" % n, str(n))
        h.connect("c")
        h.send("c", "SUBSCRIBE", destination="/queue/a", id="s", ack="client-individual")
        acks = [f.get("ack") for f in h.take("c", "MESSAGE")]
        assert acks and not seen & set(acks), (term, acks, seen)
        seen |= set(acks)
        h.drop("c")


def test_an_ack_id_from_another_term_is_an_error_not_a_wrong_ack(tmp_path):
    h = Harness(store=open_store(tmp_path, epoch=1))
    h.connect("p")
    send(h, "p", "/queue/a", b"first", "1")
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s", ack="client-individual")
    stale = h.take("c", "MESSAGE")[0].get("ack")
    h = restart(h, tmp_path, 2)
    h.connect("p")
    send(h, "p", "/queue/a", b"second", "2")
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s", ack="client-individual")
    now = h.take("c", "MESSAGE")
    assert stale not in {f.get("ack") for f in now}
    h.send("c", "ACK", id=stale, receipt="a1")
    answer = h.take("c")
    assert answer and answer[0].command == "ERROR"
    h.drop("c")
    assert h.broker.queues["a"].depth == 2  # both still pending: nothing was acked by mistake


@pytest.mark.parametrize("version,value", [("1.0", "a\nb"), ("1.0", "a\r\nb"), ("1.1", "a\rb"), ("1.1", "a\r\nb")])
def test_a_header_every_version_cannot_carry_is_encoded_safely(version, value):
    encoded = escape_header(value, version)
    assert "\n" not in encoded and "\r" not in encoded
    frame = Frame("MESSAGE", [("x", value), ("destination", "/queue/a")], b"body")
    decoder = FrameDecoder(version, 1 << 20, 100, 1 << 16)
    decoder.feed(encode_frame(frame, version))
    got = decoder.next_event()
    assert got.command == "MESSAGE" and got.get("destination") == "/queue/a" and got.body == b"body"
    message = Message("ID:1", "/queue/a", [("x", value)], b"body")
    decoder.feed(MessageFrame([("subscription", "s")], message).encode(version))
    assert decoder.next_event().body == b"body"


def test_a_stomp_10_consumer_gets_a_message_whose_header_holds_a_newline(tmp_path):
    h = Harness(store=open_store(tmp_path))
    h.connect("p")
    send(h, "p", "/queue/a", b"x", "1", note="line1\nline2")
    h.connect("old", version="1.0")
    h.send("old", "SUBSCRIBE", destination="/queue/a", ack="auto")
    frames = h.take("old", "MESSAGE")
    assert len(frames) == 1
    raw = frames[0].encode("1.0") if hasattr(frames[0], "encode") else encode_frame(frames[0], "1.0")
    assert raw.count(b"\n\n") >= 1 and b"line1" in raw


@pytest.mark.parametrize("version,key", [("1.1", "content-length\r"), ("1.0", "content-length\r"), ("1.0", "content-length:1")])
def test_a_header_name_a_version_cannot_carry_never_forges_the_message_frames_length(version, key):
    message = Message("ID:1", "/queue/a", [(key, "1")], b"hello-world")
    decoder = FrameDecoder(version, 1 << 20, 100, 1 << 16)
    decoder.feed(MessageFrame([("subscription", "s")], message).encode(version))
    got = decoder.next_event()
    assert got.body == b"hello-world"
    assert [k for k, _ in got.headers].count("content-length") == 1
