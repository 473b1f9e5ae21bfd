"""Resend, resubscribe and in-doubt bookkeeping of the failover client (no sockets)."""

import pytest

from hamq.client.errors import ClientError, SendInDoubt, TransactionInDoubt
from hamq.client.failover import FailoverClient, Subscription
from hamq.client.tracker import FailoverTracker, Pending
from hamq.stomp.codec import Frame, FrameDecoder, encode_frame


def send(tracker, n, persistent=True, transaction=None):
    headers = {"destination": "/queue/q", "message-id": f"ID:test:{n}"}
    if persistent:
        headers["persistent"] = "true"
    return tracker.add(
        Pending(
            receipt=f"send-{n}",
            frame=Frame.build("SEND", headers, b"body %d" % n),
            kind="send",
            persistent=persistent,
            transaction=transaction,
            message_id=f"ID:test:{n}",
        )
    )


def test_receipt_settles_a_send():
    tracker = FailoverTracker()
    pending = send(tracker, 1)
    assert pending.frame.get("receipt") == "send-1"
    assert tracker.sends_in_flight == 1
    assert tracker.receipt("send-1") is pending
    assert pending.done and pending.error is None
    assert tracker.sends_in_flight == 0
    assert tracker.receipt("send-1") is None  # a late duplicate receipt changes nothing


def test_unreceipted_persistent_sends_are_resent_as_the_same_frames_in_order():
    tracker = FailoverTracker()
    sends = [send(tracker, n) for n in range(1, 5)]
    tracker.receipt("send-2")
    failed = tracker.connection_lost("tcp://b1:61613")
    assert failed == []
    _, resend = tracker.replay()
    assert resend == [sends[0], sends[2], sends[3]]
    assert [p.frame.get("message-id") for p in resend] == ["ID:test:1", "ID:test:3", "ID:test:4"]
    assert tracker.sends_in_flight == 3
    # The resent bytes are the original SEND: same id, same receipt, same body.
    decoder = FrameDecoder("1.2")
    decoder.feed(encode_frame(resend[0].frame, "1.2"))
    frame = next(iter(decoder))
    assert (frame.get("message-id"), frame.get("receipt"), frame.body) == ("ID:test:1", "send-1", b"body 1")


def test_sends_survive_several_failovers_until_receipted():
    tracker = FailoverTracker()
    pending = send(tracker, 1)
    tracker.connection_lost("tcp://b1:61613")
    tracker.connection_lost("tcp://b2:61613")
    assert tracker.replay()[1] == [pending]
    tracker.receipt("send-1")
    assert tracker.replay()[1] == []


def test_non_persistent_send_in_flight_becomes_send_in_doubt():
    tracker = FailoverTracker()
    pending = send(tracker, 7, persistent=False)
    failed = tracker.connection_lost("tcp://b1:61613")
    assert [p for p, _ in failed] == [pending]
    error = failed[0][1]
    assert isinstance(error, SendInDoubt) and error.message_id == "ID:test:7"
    assert "message_id='ID:test:7'" in str(error) and "Fix:" in str(error)
    assert pending.done and pending.error is error
    assert tracker.replay()[1] == [] and tracker.sends_in_flight == 0


def test_open_transaction_becomes_in_doubt_and_its_sends_are_not_resent():
    tracker = FailoverTracker()
    tracker.begin("tx-1")
    pending = send(tracker, 3, transaction="tx-1")
    failed = tracker.connection_lost("tcp://b1:61613")
    assert isinstance(failed[0][1], TransactionInDoubt)
    assert tracker.replay()[1] == []
    with pytest.raises(TransactionInDoubt) as info:
        tracker.check_transaction("tx-1")
    assert info.value.transaction == "tx-1" and "abort('tx-1')" in str(info.value)
    assert pending.error is failed[0][1]
    assert tracker.end("tx-1") == "in-doubt"


def test_commit_in_flight_is_in_doubt():
    tracker = FailoverTracker()
    tracker.begin("tx-2")
    commit = tracker.add(
        Pending("commit-1", Frame.build("COMMIT", {"transaction": "tx-2"}), "commit", transaction="tx-2")
    )
    failed = tracker.connection_lost("tcp://b1:61613")
    assert failed == [(commit, commit.error)]
    assert isinstance(commit.error, TransactionInDoubt) and "may or may not have committed" in str(
        commit.error
    )


def test_requests_with_a_known_outcome_complete_without_error_on_failover():
    tracker = FailoverTracker()
    subscribe = tracker.add(Pending("subscribe-1", Frame.build("SUBSCRIBE", {"id": "s"}), "subscribe"))
    abort = tracker.add(Pending("abort-1", Frame.build("ABORT", {"transaction": "t"}), "abort"))
    assert tracker.connection_lost("tcp://b1:61613") == []
    assert subscribe.done and subscribe.error is None
    assert abort.done and abort.error is None
    assert tracker.pending == {}


def test_transaction_rules():
    tracker = FailoverTracker()
    tracker.check_transaction(None)
    with pytest.raises(ClientError, match="unknown transaction"):
        tracker.check_transaction("nope")
    tracker.begin("t")
    tracker.check_transaction("t")
    with pytest.raises(ClientError, match="already open"):
        tracker.begin("t")
    assert tracker.end("t") == "open"


def test_error_settles_with_the_exception():
    tracker = FailoverTracker()
    pending = send(tracker, 1)
    exc = ClientError("rejected")
    assert tracker.error("send-1", exc) is pending
    assert pending.error is exc and tracker.sends_in_flight == 0
    assert tracker.replay()[1] == []


def test_forget_stops_resending():
    tracker = FailoverTracker()
    pending = send(tracker, 1)
    tracker.forget(pending)
    tracker.connection_lost("x")
    assert tracker.replay()[1] == [] and tracker.sends_in_flight == 0


def test_subscriptions_are_replayed_with_durable_names():
    client = FailoverClient("failover:(tcp://127.0.0.1:1)", client_id="app-1")
    tracker = FailoverTracker()
    plain = Subscription(client, "sub-1", "/queue/a", "client-individual", selector="x > 1", prefetch=10)
    durable = Subscription(client, "sub-2", "/topic/t", "client", durable_name="audit")
    tracker.subscriptions[plain.id] = plain
    tracker.subscriptions[durable.id] = durable
    tracker.connection_lost("x")
    subscribes, _ = tracker.replay()
    assert [f.header_dict() for f in subscribes] == [
        {
            "destination": "/queue/a",
            "id": "sub-1",
            "ack": "client-individual",
            "selector": "x > 1",
            "activemq.prefetchSize": "10",
        },
        {"destination": "/topic/t", "id": "sub-2", "ack": "client", "activemq.subscriptionName": "audit"},
    ]


def test_client_argument_errors_name_the_fix():
    with pytest.raises(ValueError, match="window"):
        FailoverClient("tcp://h:1", window=0)
    client = FailoverClient("tcp://h:1")
    with pytest.raises(ValueError, match="client_id"):
        client.subscribe("/topic/t", durable_name="d")
    with pytest.raises(ValueError, match="client-individual"):
        client.subscribe("/queue/q", ack="individual")


def test_connect_order_tries_the_failed_broker_last():
    client = FailoverClient("failover:(tcp://a:1,tcp://b:2,tcp://c:3)?randomize=false")
    assert [b.host for b in client._connect_order()] == ["a", "b", "c"]
    client._last_uri = client.url.brokers[0]
    assert [b.host for b in client._connect_order()] == ["b", "c", "a"]
    randomized = FailoverClient("failover:(tcp://a:1,tcp://b:2,tcp://c:3)")
    randomized._last_uri = randomized.url.brokers[1]
    for _ in range(20):
        order = [b.host for b in randomized._connect_order()]
        assert sorted(order) == ["a", "b", "c"] and order[-1] == "b"


def unsubscribe(tracker, n, durable):
    headers = {"id": f"sub-{n}"}
    if durable:
        headers["activemq.subscriptionName"] = "audit"
    return tracker.add(
        Pending(receipt=f"unsubscribe-{n}", frame=Frame.build("UNSUBSCRIBE", headers), kind="unsubscribe",
                resend=durable)
    )


def test_durable_unsubscribe_cut_off_stays_pending_and_is_resent():
    tracker = FailoverTracker()
    durable = unsubscribe(tracker, 1, durable=True)
    plain = unsubscribe(tracker, 2, durable=False)
    assert tracker.connection_lost("tcp://b1:61613") == []
    assert plain.done and plain.error is None  # a fresh connection has no such subscription: done
    assert not durable.done  # only the next master's RECEIPT settles it
    _, resend = tracker.replay(generation=2)
    assert resend == [durable] and durable.written == 2 and durable.resent == 1
    assert tracker.receipt("unsubscribe-1") is durable and durable.done


def test_fatal_error_with_one_frame_outstanding_names_it():
    tracker = FailoverTracker()
    earlier = send(tracker, 1)
    earlier.written = 1
    poison = send(tracker, 2)
    poison.written = 2  # the only frame written on connection 2 and not answered
    assert tracker.fatal_error(2) is poison
    assert not tracker.probation


def test_fatal_error_with_several_outstanding_puts_the_replay_on_probation():
    tracker = FailoverTracker()
    sends = [send(tracker, n) for n in range(1, 4)]
    for pending in sends:
        pending.written = 1
    assert tracker.fatal_error(1) is None and tracker.probation
    tracker.connection_lost("tcp://b1:61613")
    _, now = tracker.replay(generation=2)
    assert now == [sends[0]] and tracker.held == sends[1:]
    assert [p.written for p in sends] == [2, None, None]
    tracker.receipt("send-1")
    assert tracker.next_held(2) is sends[1] and tracker.probation
    # The second one kills connection 2 while alone: it is the poison.
    assert tracker.fatal_error(2) is sends[1]


def test_a_frame_written_after_the_error_is_never_blamed_for_it():
    tracker = FailoverTracker()
    suspects = tracker.outstanding(1)  # an ERROR (about an ACK, say) arrives with nothing outstanding
    later = send(tracker, 1)
    later.written = 1
    assert tracker.fatal_error(1, suspects) is None  # so a failover right after resends it
    tracker.connection_lost("tcp://b1:61613")
    assert tracker.replay(generation=2)[1] == [later]
