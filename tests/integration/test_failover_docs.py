"""The code in docs/client.md runs as written against a real 3-broker cluster.

Only the host names change: ``brokerN:61613`` becomes this cluster's loopback
ports. The stomp.py recipe is also run through a master kill, since
reconnecting and resubscribing is the whole point of it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_failover import Cluster

from hamq.client import FailoverClient

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"


def _blocks() -> list:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def _localize(code: str, cluster: Cluster) -> str:
    code = re.sub(r"broker(\d):61613", lambda m: f"127.0.0.1:{cluster.ports[int(m.group(1)) - 1]}", code)
    return re.sub(
        r'"broker(\d)", 61613', lambda m: f'"127.0.0.1", {cluster.ports[int(m.group(1)) - 1]}', code
    )


@pytest.fixture
def cluster(hamq_broker, free_port, tmp_path):
    # A fresh cluster per example: the examples share queue names, as real code would.
    # One broker is enough for them; the URL still lists three, two of them refusing.
    c = Cluster(hamq_broker, free_port, tmp_path)
    c.start_all(count=1)
    return c


@pytest.fixture
def pair(hamq_broker, free_port, tmp_path):
    c = Cluster(hamq_broker, free_port, tmp_path)
    c.start_all(count=2)
    return c


def test_doc_has_the_examples():
    blocks = _blocks()
    assert len(blocks) >= 4
    assert any("import stomp" in b for b in blocks)
    assert any("FailoverClient" in b for b in blocks)


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_doc_example_runs(cluster, index, tmp_path):
    script = tmp_path / f"example{index}.py"
    script.write_text(_localize(_blocks()[index], cluster))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


def test_stomp_py_recipe_survives_a_master_kill(pair):
    cluster = pair
    (block,) = [b for b in _blocks() if "import stomp" in b]
    # Keep the imports, BROKERS and the listener class; drive the scenario here.
    definitions = _localize(block.split("\nconn = ")[0], cluster)
    namespace: dict = {}
    exec(compile(definitions, str(DOC), "exec"), namespace)
    stomp = namespace["stomp"]
    conn = stomp.Connection12(
        namespace["BROKERS"], heartbeats=(4000, 4000), reconnect_attempts_max=-1, reconnect_sleep_max=1.0
    )
    listener = namespace["Resubscriber"](conn, "/queue/recipe")
    conn.set_listener("resubscriber", listener)
    listener.connect_and_subscribe()
    try:
        cluster.kill_master()
        with FailoverClient(cluster.url) as client:
            client.send("/queue/recipe", b"after failover")
        end = time.monotonic() + 60
        while b"after failover" not in [b if isinstance(b, bytes) else b.encode() for b in listener.received]:
            assert time.monotonic() < end, "the resubscribed listener never got the message"
            time.sleep(0.05)
    finally:
        listener.closing = True
        if conn.is_connected():
            conn.disconnect()
