"""Message flow through the engine without a store: queues, topics, acks, transactions, DLQ."""

from test_engine_support import Harness

from hamq.stomp.codec import Frame


def send(h, conn, dest, body=b"x", **headers):
    h.send(conn, "SEND", body, destination=dest, **headers)


def bodies(frames):
    return [f.body for f in frames]


def test_queue_delivers_with_headers_and_generated_message_id():
    h = Harness()
    h.connect("p")
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s1")
    send(h, "p", "/queue/a", b"hello", color="red")
    (msg,) = h.take("c", "MESSAGE")
    assert msg.body == b"hello"
    assert msg.get("subscription") == "s1"
    assert msg.get("destination") == "/queue/a"
    assert msg.get("color") == "red"
    assert msg.get("content-length") == "5"
    assert msg.get("message-id").startswith("ID:") and ":1:1:" in msg.get("message-id")
    assert msg.get("ack") is not None  # 1.2
    assert msg.get("redelivered") is None


def test_client_supplied_message_id_travels_in_client_message_id():
    h = Harness()
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s1")
    send(h, "c", "/queue/a", message_id="my-id-1")
    frame = h.take("c")[0]
    assert frame.get("client-message-id") == "my-id-1"
    assert frame.get("message-id").startswith("ID:")  # the broker's own, as ActiveMQ assigns


def test_queue_load_balances_round_robin():
    h = Harness()
    for name in ("c1", "c2", "p"):
        h.connect(name)
    h.send("c1", "SUBSCRIBE", destination="/queue/a", id="s")
    h.send("c2", "SUBSCRIBE", destination="/queue/a", id="s")
    for i in range(6):
        send(h, "p", "/queue/a", str(i).encode())
    assert bodies(h.take("c1")) == [b"0", b"2", b"4"]
    assert bodies(h.take("c2")) == [b"1", b"3", b"5"]


def test_topic_fans_out_and_only_to_current_subscribers():
    h = Harness()
    for name in ("c1", "c2", "p"):
        h.connect(name)
    send(h, "p", "/topic/t", b"before")
    h.send("c1", "SUBSCRIBE", destination="/topic/t", id="s")
    h.send("c2", "SUBSCRIBE", destination="/topic/t", id="s")
    send(h, "p", "/topic/t", b"after")
    assert bodies(h.take("c1")) == [b"after"]
    assert bodies(h.take("c2")) == [b"after"]


def test_messages_wait_in_queue_until_a_consumer_comes():
    h = Harness()
    h.connect("p")
    for i in range(3):
        send(h, "p", "/queue/a", str(i).encode())
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s")
    assert bodies(h.take("c")) == [b"0", b"1", b"2"]


def test_prefetch_limits_unacked_messages_and_ack_releases_more():
    h = Harness()
    h.connect("p")
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s", ack="client-individual",
           **{"activemq.prefetchSize": "2"})
    for i in range(5):
        send(h, "p", "/queue/a", str(i).encode())
    first = h.take("c")
    assert bodies(first) == [b"0", b"1"]
    h.send("c", "ACK", id=first[1].get("ack"))
    assert bodies(h.take("c")) == [b"2"]


def test_client_ack_is_cumulative_and_individual_is_not():
    h = Harness()
    h.connect("p")
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/cum", id="s1", ack="client")
    h.send("c", "SUBSCRIBE", destination="/queue/ind", id="s2", ack="client-individual")
    for i in range(3):
        send(h, "p", "/queue/cum", str(i).encode())
        send(h, "p", "/queue/ind", str(i).encode())
    frames = h.take("c")
    cum = [f for f in frames if f.get("subscription") == "s1"]
    ind = [f for f in frames if f.get("subscription") == "s2"]
    h.send("c", "ACK", id=cum[1].get("ack"))  # acks 0 and 1
    h.send("c", "ACK", id=ind[1].get("ack"))  # acks only 1
    h.drop("c")
    status = {d["name"]: d for d in h.broker.status()["destinations"]}
    assert status["cum"]["depth"] == 1 and status["cum"]["dequeued"] == 2
    assert status["ind"]["depth"] == 2 and status["ind"]["dequeued"] == 1


def test_unacked_messages_are_redelivered_with_flag_when_consumer_disconnects():
    h = Harness()
    h.connect("p")
    h.connect("c1")
    h.send("c1", "SUBSCRIBE", destination="/queue/a", id="s", ack="client-individual")
    send(h, "p", "/queue/a", b"m1")
    send(h, "p", "/queue/a", b"m2")
    first = h.take("c1")
    h.send("c1", "ACK", id=first[0].get("ack"))
    h.drop("c1")
    h.connect("c2")
    h.send("c2", "SUBSCRIBE", destination="/queue/a", id="s", ack="client-individual")
    (again,) = h.take("c2")
    assert again.body == b"m2"
    assert again.get("redelivered") == "true"
    assert again.get("message-id") == first[1].get("message-id")


def test_ack_in_stomp_1_1_uses_message_id_and_subscription():
    h = Harness()
    h.connect("c", version="1.1")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s", ack="client")
    send(h, "c", "/queue/a")
    msg = h.take("c")[0]
    assert msg.get("ack") is None
    h.send("c", "ACK", message_id=msg.get("message-id"), subscription="s", receipt="r")
    assert h.take("c")[0].command == "RECEIPT"
    assert h.broker.status()["destinations"][0]["dequeued"] == 1


def test_unknown_ack_id_is_an_error():
    h = Harness()
    h.connect("c")
    h.send("c", "ACK", id="999", receipt="r")
    error = h.take("c")[0]
    assert error.command == "ERROR" and "999" in error.get("message") and error.get("receipt-id") == "r"


def test_nack_moves_message_to_dlq_with_original_destination():
    h = Harness()
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s", ack="client-individual")
    send(h, "c", "/queue/a", b"poison")
    msg = h.take("c")[0]
    h.send("c", "NACK", id=msg.get("ack"))
    h.send("c", "SUBSCRIBE", destination="/queue/ActiveMQ.DLQ", id="dlq")
    (dead,) = h.take("c")
    assert dead.body == b"poison"
    assert dead.get("original-destination") == "/queue/a"
    assert dead.get("destination") == "/queue/ActiveMQ.DLQ"
    assert dead.get("message-id") == msg.get("message-id")


def test_nack_does_not_exist_in_1_0():
    h = Harness()
    h.connect("c", version="1.0")
    h.send("c", "NACK", message_id="x")
    assert "1.0" in h.take("c")[0].get("message")


def test_message_goes_to_dlq_after_maximum_redeliveries():
    h = Harness(maximum_redeliveries=2)
    h.connect("p")
    send(h, "p", "/queue/a", b"bad")
    seen = []
    for round_ in range(3):
        name = f"c{round_}"
        h.connect(name)
        h.send(name, "SUBSCRIBE", destination="/queue/a", id="s", ack="client")
        seen += h.take(name)
        h.drop(name)
    assert len(seen) == 3  # first delivery + 2 redeliveries
    h.connect("last")
    h.send("last", "SUBSCRIBE", destination="/queue/a", id="s", ack="client")
    assert h.take("last") == []
    h.send("last", "SUBSCRIBE", destination="/queue/ActiveMQ.DLQ", id="d")
    (dead,) = h.take("last")
    assert dead.body == b"bad" and "maximumRedeliveries" in dead.get("dlqDeliveryFailureCause")


def test_transaction_defers_sends_until_commit_and_abort_drops_them():
    h = Harness()
    h.connect("p")
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s")
    h.send("p", "BEGIN", transaction="t1")
    send(h, "p", "/queue/a", b"tx1", transaction="t1")
    assert h.take("c") == []
    h.send("p", "COMMIT", transaction="t1")
    assert bodies(h.take("c")) == [b"tx1"]
    h.send("p", "BEGIN", transaction="t2")
    send(h, "p", "/queue/a", b"tx2", transaction="t2")
    h.send("p", "ABORT", transaction="t2")
    assert h.take("c") == []


def test_transactional_ack_applies_on_commit_only():
    h = Harness()
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s", ack="client-individual")
    send(h, "c", "/queue/a")
    msg = h.take("c")[0]
    h.send("c", "BEGIN", transaction="t")
    h.send("c", "ACK", id=msg.get("ack"), transaction="t")
    assert h.broker.status()["destinations"][0]["dequeued"] == 0
    h.send("c", "COMMIT", transaction="t")
    assert h.broker.status()["destinations"][0]["dequeued"] == 1


def test_durable_subscription_keeps_messages_while_offline_and_unsubscribe_removes_it():
    h = Harness()
    h.connect("p")
    h.connect("d", client_id="cid")
    durable = {"activemq.subscriptionName": "sub1"}
    h.send("d", "SUBSCRIBE", destination="/topic/t", id="s", **durable)
    send(h, "p", "/topic/t", b"one")
    assert bodies(h.take("d")) == [b"one"]
    h.drop("d")
    send(h, "p", "/topic/t", b"two")
    h.connect("d2", client_id="cid")
    h.send("d2", "SUBSCRIBE", destination="/topic/t", id="s", **durable)
    assert bodies(h.take("d2")) == [b"two"]
    h.send("d2", "UNSUBSCRIBE", id="s", receipt="u", **durable)
    assert h.take("d2")[0].command == "RECEIPT"
    assert h.broker.durables == {}
    send(h, "p", "/topic/t", b"three")
    h.send("d2", "SUBSCRIBE", destination="/topic/t", id="s2", **durable)
    assert h.take("d2") == []


def test_durable_subscription_needs_client_id():
    h = Harness()
    h.connect("d")
    h.send("d", "SUBSCRIBE", destination="/topic/t", id="s", **{"activemq.subscriptionName": "x"})
    assert "client-id" in h.take("d")[0].get("message")


def test_exclusive_consumer_gets_everything():
    h = Harness()
    for name in ("a", "b", "p"):
        h.connect(name)
    h.send("a", "SUBSCRIBE", destination="/queue/q", id="s")
    h.send("b", "SUBSCRIBE", destination="/queue/q", id="s", **{"activemq.exclusive": "true"})
    for i in range(4):
        send(h, "p", "/queue/q", str(i).encode())
    assert h.take("a") == [] and len(h.take("b")) == 4


def test_no_local_skips_own_messages_on_topics():
    h = Harness()
    h.connect("a")
    h.connect("b")
    h.send("a", "SUBSCRIBE", destination="/topic/t", id="s", **{"activemq.noLocal": "true"})
    send(h, "a", "/topic/t", b"mine")
    send(h, "b", "/topic/t", b"theirs")
    assert bodies(h.take("a")) == [b"theirs"]


def test_expired_messages_are_not_delivered():
    h = Harness()
    h.connect("p")
    now_ms = int(h.clock.now * 1000)
    send(h, "p", "/queue/a", b"old", expires=str(now_ms - 1))
    send(h, "p", "/queue/a", b"fresh", expires=str(now_ms + 60000))
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s")
    assert bodies(h.take("c")) == [b"fresh"]


def test_slow_reader_is_paused_without_stalling_others():
    h = Harness()
    for name in ("slow", "fast", "p"):
        h.connect(name)
    h.send("slow", "SUBSCRIBE", destination="/queue/a", id="s")
    h.send("fast", "SUBSCRIBE", destination="/queue/a", id="s")
    h.broker.set_writable("slow", False)
    for i in range(4):
        send(h, "p", "/queue/a", str(i).encode())
    assert h.take("slow") == [] and len(h.take("fast")) == 4


def test_status_counts():
    h = Harness()
    h.connect("p")
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/a", id="s", ack="client-individual")
    send(h, "p", "/queue/a")
    send(h, "p", "/queue/a")
    (queue,) = h.broker.status()["destinations"]
    assert queue == {"name": "a", "type": "queue", "depth": 2, "consumers": 1, "enqueued": 2, "dequeued": 0}
    assert h.broker.status()["brokerName"] == "test"


def test_durable_keys_cannot_collide():
    from hamq.core.destinations import durable_key

    assert durable_key("a:b", "c") != durable_key("a", "b:c")
    assert durable_key("cid", "sub") == "durable:cid:sub"


def test_send_fail_if_no_space_refuses_past_the_memory_limit_and_recovers():
    h = Harness(send_fail_if_no_space=True)
    h.broker.queue_memory_limit = 10_000
    h.connect("p")
    body = b"x" * 3000
    for i in range(3):
        send(h, "p", "/queue/full", body, receipt=f"ok{i}")
    assert [f.command for f in h.take("p")] == ["RECEIPT"] * 3
    send(h, "p", "/queue/full", body, receipt="refused")
    (error,) = h.take("p")
    assert error.command == "ERROR" and error.get("receipt-id") == "refused"
    assert "memory limit" in error.get("message") and "persistent:true" in error.get("message")
    assert h.broker.queues["full"].depth == 3
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/full", id="s")
    assert len(h.take("c")) == 3
    send(h, "p", "/queue/full", body, receipt="again")
    assert h.take("p")[0].command == "RECEIPT"


def test_refused_send_fails_the_commit_before_its_acks_apply():
    h = Harness(send_fail_if_no_space=True)
    h.broker.queue_memory_limit = 5000
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/in", id="s", ack="client-individual")
    send(h, "c", "/queue/in", b"job")
    (job,) = h.take("c")
    send(h, "c", "/queue/out", b"y" * 4000)
    h.send("c", "BEGIN", transaction="t")
    h.send("c", "ACK", id=job.get("ack"), transaction="t")
    send(h, "c", "/queue/out", b"y" * 4000, transaction="t")
    h.send("c", "COMMIT", transaction="t", receipt="c")
    assert h.take("c")[-1].command == "ERROR"
    assert h.broker.queues["in"].dequeued == 0  # the ack did not apply
    h.send("c", "ABORT", transaction="t", receipt="a")  # the transaction is still open
    assert h.take("c")[-1].command == "RECEIPT"


def test_slow_topic_subscriber_loses_its_oldest_messages_not_the_broker_memory():
    h = Harness()
    h.broker.queue_memory_limit = 10_000
    h.connect("slow")
    h.connect("p")
    h.send("slow", "SUBSCRIBE", destination="/topic/t", id="s")
    h.broker.set_writable("slow", False)
    for i in range(10):
        send(h, "p", "/topic/t", str(i).encode() * 3000)
    queue = h.broker.connections["slow"].subscriptions["s"].queue
    assert queue.memory_bytes <= 10_000 and queue.discarded == 7
    h.broker.set_writable("slow", True)
    h.pump()
    assert [f.body[:1] for f in h.take("slow")] == [b"7", b"8", b"9"]


def test_deliveries_pause_while_a_connection_has_too_much_dispatched_and_unwritten():
    from hamq.core.subscriptions import UNWRITTEN_LIMIT

    h = Harness()
    h.connect("p")
    body = b"x" * 8192
    for _ in range(200):
        h.send("p", "SEND", body, destination="/queue/big")
    h.broker.connection_made("slow", ("127.0.0.1", 2))
    h.broker.receive("slow", Frame("CONNECT", [("accept-version", "1.2")]))
    h.broker.receive("slow", Frame("SUBSCRIBE", [("destination", "/queue/big"), ("id", "s"), ("ack", "auto")]))
    outputs = h.broker.take_outputs()  # the server has written none of them yet
    messages = [o for o in outputs if o.frame is not None and o.frame.command == "MESSAGE"]
    assert 0 < len(messages) * len(body) <= UNWRITTEN_LIMIT + len(body) + 1024
    h.broker.written("slow", sum(o.cost for o in messages))  # handed to the socket: more may come
    more = [o for o in h.broker.take_outputs() if o.frame is not None and o.frame.command == "MESSAGE"]
    assert more
