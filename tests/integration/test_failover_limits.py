"""Reconnect limits, timeouts and durable resubscription against real processes."""

from __future__ import annotations

import socket

import pytest
from test_failover import Cluster

from hamq.client import ConnectionFailed, FailoverClient, FailoverTimeout


def _refusing_port(free_port) -> int:
    """A loopback port nobody listens on (connect is refused at once)."""
    port = free_port()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    return port


def test_startup_attempts_exhausted_raise_connection_failed_naming_every_broker(free_port):
    a, b = _refusing_port(free_port), _refusing_port(free_port)
    url = f"failover:(tcp://127.0.0.1:{a},tcp://127.0.0.1:{b})?startupMaxReconnectAttempts=3&initialReconnectDelay=1"
    client = FailoverClient(url)
    with pytest.raises(ConnectionFailed) as info:
        client.connect()
    message = str(info.value)
    assert "after 3 attempt(s)" in message and f":{a}" in message and f":{b}" in message
    assert "Fix:" in message


def test_timeout_option_bounds_the_wait_for_a_broker(free_port):
    port = _refusing_port(free_port)
    client = FailoverClient(f"failover:(tcp://127.0.0.1:{port})?timeout=300&maxReconnectDelay=50")
    with pytest.raises(FailoverTimeout, match="timeout=300"):
        client.connect()
    client.close()


def test_plain_uri_does_not_fail_over(hamq_broker, free_port, tmp_path):
    cluster = Cluster(hamq_broker, free_port, tmp_path)
    cluster.start_all(count=1)
    client = FailoverClient(f"tcp://127.0.0.1:{cluster.ports[0]}").connect()
    client.send("/queue/plain", b"one")
    cluster.brokers[0].kill()
    with pytest.raises(ConnectionFailed, match="failover:"):
        client.send("/queue/plain", b"two")
    assert client.reconnect_events and client.reconnect_events[0].up_at is None
    client.close()


def test_durable_subscription_is_replayed_after_failover(hamq_broker, free_port, tmp_path):
    cluster = Cluster(hamq_broker, free_port, tmp_path)
    cluster.start_all(count=2)
    with (
        FailoverClient(cluster.url, client_id="audit-app") as consumer,
        FailoverClient(cluster.url) as producer,
    ):
        consumer.subscribe("/topic/prices", ack="client-individual", durable_name="audit")
        producer.send("/topic/prices", b"before")
        first = consumer.receive(timeout=30)
        assert first is not None and first.body == b"before"
        assert consumer.ack(first)
        cluster.kill_master()
        producer.send("/topic/prices", b"after")  # waits for the new master, then for its receipt
        second = consumer.receive(timeout=30)
        while second is not None and second.body == b"before":
            assert second.redelivered  # the ack may have died with the old master
            consumer.ack(second)
            second = consumer.receive(timeout=30)
        assert second is not None and second.body == b"after"
        assert consumer.reconnect_events[-1].up_at is not None


def test_nack_and_transactions_on_a_live_broker(hamq_broker, free_port, tmp_path):
    cluster = Cluster(hamq_broker, free_port, tmp_path)
    cluster.start_all(count=1)
    with FailoverClient(cluster.url) as client:
        tx = client.begin()
        client.send("/queue/work", b"poison", transaction=tx)
        client.commit(tx)
        rolled_back = client.begin()
        client.send("/queue/work", b"never", transaction=rolled_back)
        client.abort(rolled_back)
        client.subscribe("/queue/work", ack="client-individual")
        msg = client.receive(timeout=30)
        assert msg is not None and msg.body == b"poison"
        assert client.nack(msg)
        assert client.receive(timeout=1) is None  # the aborted send never arrives
        client.subscribe("/queue/ActiveMQ.DLQ", ack="auto")
        dead = client.receive(timeout=30)
        assert dead is not None and dead.body == b"poison" and dead.message_id == msg.message_id
