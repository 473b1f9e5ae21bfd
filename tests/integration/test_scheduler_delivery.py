"""Scheduled delivery through a real ``hamq run`` (AMQ_SCHEDULED_* STOMP headers).

Waits have generous deadlines only; no timing is asserted.
"""

from __future__ import annotations

import pytest
from test_masterslave import Stomp

DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def scheduling_broker(module_broker_factory, tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    return module_broker_factory(node_name="sched", data_dir=data, broker_attrs='schedulerSupport="true"')


def _messages(client, count):
    out = []
    while len(out) < count:
        frame = client.read(timeout=DEADLINE_S)
        if frame.command == "MESSAGE":
            out.append(frame)
    return out


def test_repeat_delivers_each_firing_with_its_own_id(scheduling_broker):
    client = Stomp(scheduling_broker.stomp_port)
    client.write("SUBSCRIBE", {"destination": "/queue/repeat", "id": "s", "ack": "auto"})
    receipt = client.send("/queue/repeat", b"tick", AMQ_SCHEDULED_DELAY="100", AMQ_SCHEDULED_PERIOD="100",
                          AMQ_SCHEDULED_REPEAT="2")
    assert receipt.command == "RECEIPT"
    frames = _messages(client, 3)
    client.close()
    job_ids = {f.get("scheduledJobId") for f in frames}
    assert len(job_ids) == 1 and None not in job_ids
    job = job_ids.pop()
    ids = [f.get("message-id") for f in frames]
    assert len(set(ids)) == 3 and job not in ids  # every firing is a message of its own
    assert all(f.body == b"tick" and f.get("AMQ_SCHEDULED_REPEAT") is None for f in frames)


def test_bad_schedule_header_is_an_error_naming_the_header(scheduling_broker):
    client = Stomp(scheduling_broker.stomp_port)
    frame = client.send("/queue/bad", b"x", AMQ_SCHEDULED_DELAY="soon", receipt="bad-1")
    client.close()
    assert frame.command == "ERROR"
    assert "AMQ_SCHEDULED_DELAY" in frame.get("message") and frame.get("receipt-id") == "bad-1"


def test_without_scheduler_support_the_headers_are_ignored(hamq_broker):
    broker = hamq_broker(node_name="plain")
    client = Stomp(broker.stomp_port)
    client.write("SUBSCRIBE", {"destination": "/queue/now", "id": "s", "ack": "auto"})
    assert client.send("/queue/now", b"now", AMQ_SCHEDULED_DELAY="3600000").command == "RECEIPT"
    (frame,) = _messages(client, 1)
    client.close()
    assert frame.body == b"now"
