"""Issue 15, case 13: what the failover client does with frames a failover or a broker cut off.

13a: a durable UNSUBSCRIBE whose connection dies before its RECEIPT must be
written again on the next master, and reported done only after that master's
RECEIPT. 13b: a persistent SEND the broker answers with a fatal ERROR (no
receipt-id, then it closes) fails to the caller and is not replayed, and a
broker that closes every connection at once is retried with back-off, not in
a hot loop. Real ``hamq run`` brokers, except for the one fake server below
that stands for "a broker that closes each connection right after CONNECTED".
"""

from __future__ import annotations

import socket
import threading
import time

from test_failover import Cluster

from hamq.client import BrokerError, FailoverClient


def _wait_until(condition, limit: float = 30.0, what: str = "condition") -> None:
    end = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < end, f"{what} not reached within {limit} s"
        time.sleep(0.01)


def _durables(broker) -> list:
    """(clientId, subscriptionName) of every durable subscription on ``broker``, which must be master."""
    broker.wait_role("master")
    status = broker.status()
    return [(d["clientId"], d["subscriptionName"]) for d in status["durableSubscriptions"]]


def test_durable_unsubscribe_cut_off_by_a_failover_is_resent_on_the_next_master(hamq_broker, free_port, tmp_path):
    cluster = Cluster(hamq_broker, free_port, tmp_path, size=2)
    cluster.start_all()
    master = cluster.wait_master()
    with FailoverClient(cluster.url, client_id="audit-app") as client:
        sub = client.subscribe("/topic/audit", ack="client-individual", durable_name="audit")
        _wait_until(lambda: ("audit-app", "audit") in _durables(cluster.brokers[master]), what="durable on master")
        # Frozen master: the UNSUBSCRIBE reaches its socket but is never answered.
        cluster.brokers[master].pause()
        outcome: dict = {}

        def unsubscribe() -> None:
            try:
                sub.unsubscribe(remove_durable=True)
                outcome["done"] = True
            except Exception as exc:  # noqa: BLE001 - the test reports whatever came out
                outcome["error"] = exc

        worker = threading.Thread(target=unsubscribe, daemon=True)
        worker.start()
        _wait_until(
            lambda: any(p.kind == "unsubscribe" for p in list(client._tracker.pending.values())),
            what="UNSUBSCRIBE written",
        )
        time.sleep(0.2)  # let the frame reach the frozen broker's socket buffer
        cluster.brokers[master].kill()
        new_master = cluster.wait_master(exclude=master)
        worker.join(60)
        assert not worker.is_alive(), "unsubscribe() never returned"
        assert outcome.get("done") and "error" not in outcome, outcome
        # Done means done on the master that serves now.
        assert ("audit-app", "audit") not in _durables(cluster.brokers[new_master])
        assert client.reconnect_events and client.reconnect_events[-1].up_at is not None


def test_poison_persistent_send_fails_to_the_caller_and_is_not_replayed(hamq_broker):
    broker = hamq_broker(connector_options="maxFrameSize=4096")
    url = (f"failover:(tcp://127.0.0.1:{broker.stomp_port})"
           "?initialReconnectDelay=50&maxReconnectDelay=1000")  # default timeout: wait forever
    client = FailoverClient(url).connect()
    outcome: dict = {}

    def send() -> None:
        try:
            client.send("/queue/poison", b"x" * 8192)
            outcome["done"] = True
        except Exception as exc:  # noqa: BLE001
            outcome["error"] = exc

    worker = threading.Thread(target=send, daemon=True)
    try:
        worker.start()
        worker.join(30)
        hung = worker.is_alive()
        reconnects = len(client.reconnect_events)
        assert not hung, f"send() did not return within 30 s ({reconnects} reconnects)"
        error = outcome.get("error")
        assert isinstance(error, BrokerError), outcome
        assert "maxFrameSize" in str(error) and "not resent" in str(error), str(error)
        assert reconnects <= 3, f"{reconnects} reconnects for one poison frame"
        # The client keeps working, and the poison frame was never stored.
        client.send("/queue/poison", b"small")
        time.sleep(1.0)
        assert len(client.reconnect_events) == reconnects, "the poison frame was replayed"
        assert (broker.destination("poison") or {}).get("depth") == 1
    finally:
        client.close()


class _CloseAfterConnected:
    """A STOMP server that answers CONNECT with CONNECTED and closes at once: a broker that will not keep us."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while b"\x00" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    if b"\x00" in data:
                        conn.sendall(b"CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00")
                        self.connects += 1
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.close()


def test_reconnects_back_off_when_every_connection_is_closed_at_once():
    server = _CloseAfterConnected()
    url = (f"failover:(tcp://127.0.0.1:{server.port})"
           "?initialReconnectDelay=100&maxReconnectDelay=400&useExponentialBackOff=true")
    client = FailoverClient(url, heartbeat=(0, 0))
    try:
        try:
            client.connect()
        except Exception:  # noqa: BLE001 - it may already be closed when connect() looks
            pass
        time.sleep(3.0)
        connects = server.connects
    finally:
        client.close()
        server.close()
    # Back-off 100, 200, 400, 400, ... ms: about ten connects in 3 s, never hundreds.
    assert 2 <= connects <= 20, f"{connects} connects in 3 s"


def test_poison_send_among_others_in_flight_fails_alone(hamq_broker):
    window = 3
    broker = hamq_broker(connector_options="maxFrameSize=4096")
    url = f"failover:(tcp://127.0.0.1:{broker.stomp_port})?initialReconnectDelay=50&maxReconnectDelay=1000"
    client = FailoverClient(url, window=window).connect()
    outcome: dict = {}

    def load() -> None:
        errors = []
        for i in range(10):
            while True:
                try:
                    client.send("/queue/mixed", b"x" * 8192 if i == 4 else f"m{i}".encode(), message_id=f"m{i}")
                    break
                except BrokerError as exc:  # with a window, an earlier send's error comes out here
                    errors.append(exc)
                    if f"message m{i} " in str(exc):
                        break
        try:
            client.flush()
        except BrokerError as exc:
            errors.append(exc)
        outcome["errors"] = errors

    worker = threading.Thread(target=load, daemon=True)
    try:
        worker.start()
        worker.join(60)
        assert not worker.is_alive(), f"the load hung ({len(client.reconnect_events)} reconnects)"
        errors = outcome["errors"]
        assert len(errors) == 1 and "m4" in str(errors[0]) and "maxFrameSize" in str(errors[0]), errors
        _wait_until(lambda: (broker.destination("mixed") or {}).get("depth") == 9, what=f"nine stored: {broker.destination('mixed')} {client.reconnect_events} {client.stats}")
    finally:
        client.close()
