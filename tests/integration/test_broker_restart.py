"""Restart, crash and takeover of a real ``hamq run`` process with persistent messages pending."""

from __future__ import annotations

import subprocess
import sys

import stomp
from test_broker_stomppy import Collector


def connect(port, **headers):
    conn = stomp.Connection12([("127.0.0.1", port)], heartbeats=(0, 0))
    listener = Collector()
    conn.set_listener("c", listener)
    conn.connect(wait=True, headers=headers)
    return conn, listener


def produce(port, queue, count, prefix="m"):
    conn, listener = connect(port)
    for i in range(count):
        conn.send(queue, f"{prefix}{i}", headers={"persistent": "true"}, receipt=f"r{i}")
    listener.wait(lambda: len(listener.receipts) == count, f"{count} receipts")
    conn.disconnect()


def test_kill_9_with_pending_messages_delivers_them_all_again(hamq_broker):
    broker = hamq_broker()
    produce(broker.stomp_port, "/queue/work", 50)
    conn, listener = connect(broker.stomp_port)
    conn.subscribe("/queue/work", id="s", ack="client-individual", headers={"activemq.prefetchSize": "10"})
    first = listener.wait_messages(10)
    for msg in first[:3]:
        conn.ack(msg.headers["ack"], receipt=f"a-{msg.body}")
    listener.wait(lambda: len(listener.receipts) == 3, "3 ack receipts")
    broker.restart()  # SIGKILL, then a fresh process on the same store
    conn2, listener2 = connect(broker.stomp_port)
    conn2.subscribe("/queue/work", id="s", ack="auto")
    got = listener2.wait_messages(47)
    bodies = [m.body for m in got]
    assert sorted(bodies) == sorted(f"m{i}" for i in range(3, 50))
    assert len(set(bodies)) == 47
    redelivered = {m.body for m in got if m.headers.get("redelivered") == "true"}
    assert {f"m{i}" for i in range(3, 10)} <= redelivered  # dispatched before the crash
    assert not redelivered & {f"m{i}" for i in range(20, 50)}  # never dispatched: not flagged


def test_sigterm_stops_gracefully_and_keeps_messages(hamq_broker):
    broker = hamq_broker()
    produce(broker.stomp_port, "/queue/keep", 5)
    assert broker.terminate() == 0
    assert "stopped" in broker.log()
    broker.start()
    broker.wait_role("master")
    assert broker.destination("keep")["depth"] == 5


def test_slave_waits_and_takes_over_with_pending_messages(hamq_broker, tmp_path):
    shared = tmp_path / "shared"
    a = hamq_broker(node_name="a", kahadb_dir=shared)
    b = hamq_broker(node_name="b", kahadb_dir=shared, wait_role="slave")
    status = b.status()
    assert status["connectors"] == [] and status["holder"]["nodeName"] == "a"
    produce(a.stomp_port, "/queue/ha", 20)
    a.kill()
    b.wait_role("master")
    conn, listener = connect(b.stomp_port)
    conn.subscribe("/queue/ha", id="s", ack="auto")
    assert sorted(m.body for m in listener.wait_messages(20)) == sorted(f"m{i}" for i in range(20))


def test_bad_config_exits_with_a_located_error(tmp_path):
    config = tmp_path / "broker.xml"
    config.write_text('<broker brokerName="x" nodeName="n"><persistenceAdapter><levelDB directory="/x"/>'
                      "</persistenceAdapter></broker>\n")
    result = subprocess.run([sys.executable, "-m", "hamq", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{config}:1" in result.stderr and "kahaDB" in result.stderr


def test_tls_connector_without_certificates_is_refused_before_any_lock(tmp_path, render_xml, free_port):
    kahadb = tmp_path / "kahadb"
    kahadb.mkdir()
    config = tmp_path / "broker.xml"
    config.write_text(render_xml(kahadb, free_port()).replace("stomp://", "stomp+ssl://"))
    result = subprocess.run([sys.executable, "-m", "hamq", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "stomp+ssl" in result.stderr and "Fix:" in result.stderr
    assert not (kahadb / "lock").exists()
