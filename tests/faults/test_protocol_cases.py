"""Issue 15, protocol and identity (cases 10-12): ids chosen by clients, ack ids across a failover,
and header values some STOMP versions cannot carry.
"""

from __future__ import annotations

import threading
import time

from faultlab.group import DEADLINE_S
from faultlab.stomp import StompClient, collect, drain


def _persistent(destination: str, **headers) -> dict:
    out = {"destination": destination, "persistent": "true"}
    out.update(headers)
    return out


def test_case10_a_reused_client_message_id_is_delivered_every_time(make_group):
    group = make_group()
    broker = group.add("a")
    group.wait_master()
    client = StompClient.open(broker.port)
    for destination, body in (("/queue/a", b"first on a"), ("/queue/b", b"same id on b")):
        assert client.request("SEND", _persistent(destination, **{"message-id": "1"}), body).command == "RECEIPT"
    client.close()
    got = {d: [f for f in drain(broker.port, d)] for d in ("/queue/a", "/queue/b")}
    group.restart(broker)  # an application that numbers its ids from 1 on every run
    group.wait_master()
    client = StompClient.open(broker.port)
    assert client.request("SEND", _persistent("/queue/a", **{"message-id": "1"}), b"next run").command == "RECEIPT"
    client.close()
    got["/queue/a after restart"] = drain(broker.port, "/queue/a")
    bodies = {d: [f.body for f in frames] for d, frames in got.items()}
    print(f"delivered: {bodies}")
    assert bodies == {"/queue/a": [b"first on a"], "/queue/b": [b"same id on b"],
                      "/queue/a after restart": [b"next run"]}
    ids = [f.get("message-id") for frames in got.values() for f in frames]
    assert len(set(ids)) == 3, f"MESSAGE frames must carry broker-assigned, unique message-ids, got {ids}"


def test_case10_duplicates_are_detected_by_amq_dupl_id_per_destination(make_group):
    group = make_group()
    broker = group.add("a")
    group.wait_master()
    client = StompClient.open(broker.port)
    sends = [("/queue/a", "x-1", b"original"), ("/queue/a", "x-2", b"resend"),  # same _AMQ_DUPL_ID: one copy
             ("/queue/b", "x-3", b"same dupl id, other queue")]  # another destination: not a duplicate
    for destination, msg_id, body in sends:
        headers = _persistent(destination, **{"message-id": msg_id, "_AMQ_DUPL_ID": "order-17"})
        assert client.request("SEND", headers, body).command == "RECEIPT"
    client.close()
    bodies = {d: [f.body for f in drain(broker.port, d)] for d in ("/queue/a", "/queue/b")}
    print(f"delivered: {bodies}")
    assert bodies == {"/queue/a": [b"original"], "/queue/b": [b"same dupl id, other queue"]}


def test_case11_a_pre_failover_ack_id_never_acks_another_message(make_group):
    group = make_group()
    a = group.add("a")
    group.wait_master()
    b = group.add("b")
    group.wait_slave(b)
    client = StompClient.open(a.port)
    for i in range(3):  # traffic on another queue first, so the two brokers' counters differ
        assert client.request("SEND", _persistent("/queue/warmup"), b"w%d" % i).command == "RECEIPT"
    client.subscribe("/queue/warmup", "w", ack="client-individual")
    for _ in range(3):
        client.ack(client.read_until(lambda f: f.command == "MESSAGE", DEADLINE_S))
    work = [f"job-{i}" for i in range(10)]
    for msg_id in work:
        assert client.request("SEND", _persistent("/queue/work"), msg_id.encode()).command == "RECEIPT"
    consumer = StompClient.open(a.port)
    consumer.subscribe("/queue/work", "c", ack="client-individual")
    before = [consumer.read_until(lambda f: f.command == "MESSAGE", DEADLINE_S) for _ in work]
    first = before[0]  # the application is still processing job-0 when the master dies

    a.kill()
    new = group.wait_master(exclude=[a])
    consumer = StompClient.open(new.port)
    consumer.subscribe("/queue/work", "c", ack="client-individual")
    after = [consumer.read_until(lambda f: f.command == "MESSAGE", DEADLINE_S) for _ in work]
    consumer.send_frame("ACK", [("id", first.get("ack")), ("receipt", "stale")])  # done with job-0: ack it
    answer = [f.command for f in collect(consumer, idle_s=2) if f.command in ("RECEIPT", "ERROR")]
    consumer.close()
    left = sorted(f.body.decode() for f in drain(new.port, "/queue/work"))
    print(f"ack id of job-0 before the failover: {first.get('ack')}; after it: "
          f"{[(f.body.decode(), f.get('ack')) for f in after][:5]}; answer {answer}; left {left}")
    assert set(work[1:]) <= set(left), f"a stale ack id acked another message: {sorted(set(work[1:]) - set(left))}"


def _lf_case(group, consumer_version: str, value: str):
    broker = group.add("a")
    group.wait_master()
    consumer = StompClient.open(broker.port, version=consumer_version)
    consumer.subscribe("/queue/odd", "old", ack="auto")
    consumer.request("SUBSCRIBE", {"destination": "/queue/none", "id": "sync"})  # the subscription is in place
    other_receipts, other_missing = [], []
    stop = threading.Event()

    def other_producer():
        client = StompClient.open(broker.port)
        n = 0
        while not stop.is_set():
            n += 1
            try:
                answer = client.request("SEND", _persistent("/queue/other"), b"o%d" % n, timeout=30)
                other_receipts.append(answer.command)
            except Exception:
                other_missing.append(n)
                return
        client.close()

    thread = threading.Thread(target=other_producer, daemon=True)
    thread.start()
    time.sleep(0.2)
    producer = StompClient.open(broker.port, version="1.2")
    answer = producer.request("SEND", _persistent("/queue/odd", **{"x-note": value}), b"odd header")
    frames = [f for f in collect(consumer, idle_s=3) if f.command == "MESSAGE"]
    time.sleep(0.5)
    stop.set()
    thread.join(60)
    consumer.close()
    drained = drain(broker.port, "/queue/odd")  # a 1.2 consumer: anything the old one did not get
    delivered = [f.body for f in frames + drained]
    print(f"SEND answered {answer.command}; {consumer_version} consumer got {[f.body for f in frames]}; "
          f"drain got {[f.body for f in drained]}; other producer: {len(other_receipts)} answers, "
          f"unanswered {other_missing}")
    if answer.command == "RECEIPT":
        assert b"odd header" in delivered, f"a receipted message with {value!r} in a header was never delivered"
    else:
        assert answer.command == "ERROR" and answer.get("message")
    assert not other_missing, "another connection's receipts stopped"
    assert other_receipts and set(other_receipts) == {"RECEIPT"}


def test_case12_a_header_with_lf_is_not_lost_for_a_stomp_10_consumer(make_group):
    _lf_case(make_group(), "1.0", "line one\nline two")


def test_case12_a_header_with_cr_is_not_lost_for_a_stomp_11_consumer(make_group):
    _lf_case(make_group(), "1.1", "carriage\rreturn")
