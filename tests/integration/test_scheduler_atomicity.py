"""Scheduled sends under faults (issue 15, cases 7-9): a job and its fired message become durable
together, a resend never makes a second job, and a transaction's jobs commit with it or not at all."""

from __future__ import annotations

import time

from test_masterslave import Stomp

DEADLINE_S = 60.0

#: Fails the main journal's fdatasync with EIO while the marker file exists (test-only, via PYTHONPATH).
FAIL_SYNC = '''
import errno, os
_real = os.fdatasync
_marker = os.environ["HAMQ_TEST_FAIL_SYNC_MARKER"]
def fdatasync(fd):
    try:
        path = os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        path = ""
    if os.path.exists(_marker) and "/kahadb/db-" in path:
        raise OSError(errno.EIO, "test: injected fdatasync failure")
    return _real(fd)
os.fdatasync = fdatasync
'''


def _drain(port, destination, wait_s):
    """Every MESSAGE that arrives on ``destination`` within ``wait_s`` seconds."""
    client = Stomp(port)
    client.write("SUBSCRIBE", {"destination": destination, "id": "s", "ack": "auto"})
    got = []
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            frame = client.read(timeout=max(0.1, deadline - time.monotonic()))
        except OSError:
            break
        if frame.command == "MESSAGE":
            got.append(frame)
    client.close()
    return got


def test_a_job_whose_firing_could_not_be_made_durable_fires_after_the_restart(hamq_broker, tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(FAIL_SYNC)
    marker = tmp_path / "fail-sync"
    env = {"PYTHONPATH": str(shim), "HAMQ_TEST_FAIL_SYNC_MARKER": str(marker)}
    data = tmp_path / "data"
    data.mkdir()
    attrs = 'schedulerSupport="true"'
    broker = hamq_broker(node_name="a", data_dir=data, broker_attrs=attrs, env=env)
    client = Stomp(broker.stomp_port)
    assert client.send("/queue/later", b"due soon", AMQ_SCHEDULED_DELAY="1500").command == "RECEIPT"
    client.close()
    marker.touch()  # from now on the main store cannot make anything durable
    broker.proc.wait(DEADLINE_S)  # the firing's fsync fails: the term ends, the process exits
    assert broker.proc.returncode != 0
    marker.unlink()
    again = hamq_broker(node_name="a2", kahadb_dir=tmp_path / "kahadb", data_dir=data, broker_attrs=attrs)
    got = _drain(again.stomp_port, "/queue/later", 10)
    assert [f.body for f in got] == [b"due soon"]


def test_a_resent_scheduled_send_makes_one_job(hamq_broker, tmp_path):
    (tmp_path / "data").mkdir()
    broker = hamq_broker(node_name="a", data_dir=tmp_path / "data", broker_attrs='schedulerSupport="true"')
    client = Stomp(broker.stomp_port)
    headers = {"AMQ_SCHEDULED_DELAY": "1000", "AMQ_SCHEDULED_PERIOD": "500", "AMQ_SCHEDULED_REPEAT": "1",
               "message-id": "order-1", "_AMQ_DUPL_ID": "order-1"}
    for _ in range(2):  # the failover client resends what it has no receipt for, the very same frame
        assert client.send("/queue/once", b"ship it", **headers).command == "RECEIPT"
    client.close()
    got = _drain(broker.stomp_port, "/queue/once", 6)
    assert len(got) == 2  # one job, firing twice
    assert len({f.get("scheduledJobId") for f in got}) == 1


def test_a_commit_refused_for_a_bad_scheduled_send_schedules_nothing(hamq_broker, tmp_path):
    (tmp_path / "data").mkdir()
    broker = hamq_broker(node_name="a", data_dir=tmp_path / "data", broker_attrs='schedulerSupport="true"')
    client = Stomp(broker.stomp_port)
    client.write("BEGIN", {"transaction": "t1"})
    client.write("SEND", {"destination": "/queue/tx", "transaction": "t1", "persistent": "true",
                          "AMQ_SCHEDULED_DELAY": "500"}, b"good")
    client.write("SEND", {"destination": "/queue/tx", "transaction": "t1", "persistent": "true",
                          "AMQ_SCHEDULED_DELAY": "soon"}, b"bad")
    client.write("COMMIT", {"transaction": "t1", "receipt": "c1"})
    assert client.read(timeout=DEADLINE_S).command == "ERROR"
    client.write("ABORT", {"transaction": "t1", "receipt": "a1"})
    client.close()
    assert _drain(broker.stomp_port, "/queue/tx", 4) == []
