"""Issue 15, scheduler (cases 7-9): a scheduled job is delivered exactly once, whatever fails around it.

Every test ends with a sentinel job due after the job under test: once the sentinel arrives, the job
had its chance to arrive (or to arrive twice) before it.
"""

from __future__ import annotations

from faultlab.faults import FaultSpec, power_cut
from faultlab.group import DEADLINE_S
from faultlab.stomp import StompClient

SENTINEL = b"sentinel"


def _scheduled(destination: str, delay_ms: int, msg_id: str, **extra) -> dict:
    headers = {"destination": destination, "persistent": "true", "AMQ_SCHEDULED_DELAY": str(delay_ms),
               "message-id": msg_id, "_AMQ_DUPL_ID": msg_id}
    headers.update(extra)
    return headers


def _bodies_until_sentinel(port: int, destination: str, delay_ms: int = 1500):
    """Schedule a sentinel, subscribe, and return every body delivered up to and including it."""
    client = StompClient.open(port)
    try:
        assert client.request("SEND", _scheduled(destination, delay_ms, "sentinel"), SENTINEL).command == "RECEIPT"
        client.subscribe(destination, "s", ack="auto")
        bodies = []
        while SENTINEL not in bodies:
            bodies.append(client.read_until(lambda f: f.command == "MESSAGE", DEADLINE_S).body)
        return bodies
    finally:
        client.close()


def test_case7_a_job_whose_fired_message_fails_to_fsync_is_not_lost(shared_storage, make_group):
    # On shared storage the store's fsync runs in a worker thread while the event loop goes on ticking.
    group = make_group(scheduler=True, shared=shared_storage / "store")
    iolog = group.root / "iolog"
    spec = FaultSpec(group.root, "a").record_io(iolog)
    journal_fsync = dict(ops=["fdatasync", "fsync"], path="*/kahadb/db-*.log", armed=False)
    slow = spec.rule("slow-fsync", action="delay", seconds=0.3, **journal_fsync)  # as a struggling NFS server...
    eio = spec.rule("fsync-eio", action="fail", errno="EIO", **journal_fsync)  # ...that then fails the fsync
    a = group.add("a", spec)
    group.wait_master()
    client = StompClient.open(a.port)
    assert client.request("SEND", _scheduled("/queue/later", 1500, "job-7"), b"job").command == "RECEIPT"
    client.close()
    slow.arm()
    eio.arm()  # the next main-store fsync is the one of the fired job's message
    eio.wait(DEADLINE_S)
    assert a.proc.wait(DEADLINE_S) != 0  # the term ended on the fsync failure
    group.kill_all()
    cut = power_cut(iolog, group.shared)  # the failed fsync made nothing durable
    b = group.add("b")
    group.wait_master()
    bodies = _bodies_until_sentinel(b.port, "/queue/later")
    print(f"power cut put back {cut.files}; delivered {bodies}")
    assert bodies.count(b"job") == 1, f"the job was delivered {bodies.count(b'job')} times: {bodies}"


def test_case8_failover_resend_of_a_scheduled_send_makes_no_second_job(make_group):
    group = make_group(scheduler=True)
    spec = FaultSpec(group.root, "a")
    hold = spec.rule("hold-after-job-fsync", ops=["fdatasync", "fsync"], path="*/db-*.log",  # the job's store, wherever it lives
                     when="after", action="pause", armed=False)
    a = group.add("a", spec)
    group.wait_master()
    b = group.add("b")
    group.wait_slave(b)
    client = StompClient.open(a.port)
    headers = _scheduled("/queue/later", 2000, "job-8")
    hold.arm()
    client.send_frame("SEND", list(headers.items()) + [("receipt", "job-8")], b"job")
    hold.wait()  # the job is durable, its receipt not sent: the master dies now
    a.kill()
    client.close()
    new = group.wait_master(exclude=[a])
    client = StompClient.open(new.port)
    assert client.request("SEND", headers, b"job").command == "RECEIPT"  # the failover client's resend
    client.close()
    bodies = _bodies_until_sentinel(new.port, "/queue/later", delay_ms=4000)
    print(f"delivered {bodies}")
    assert bodies.count(b"job") == 1, f"the job was delivered {bodies.count(b'job')} times: {bodies}"


def test_case9_a_refused_commit_leaves_nothing_scheduled(make_group):
    group = make_group(scheduler=True)
    broker = group.add("a")
    group.wait_master()
    client = StompClient.open(broker.port)
    assert client.request("BEGIN", {"transaction": "tx"}).command == "RECEIPT"
    frames = [({"destination": "/queue/tx", "persistent": "true", "AMQ_SCHEDULED_DELAY": "500",
                "transaction": "tx"}, b"scheduled-in-tx"),
              ({"destination": "/queue/tx", "persistent": "true", "transaction": "tx"}, b"plain-in-tx"),
              ({"destination": "/queue/tx", "persistent": "true", "AMQ_SCHEDULED_DELAY": "soon",
                "transaction": "tx"}, b"bad-schedule")]
    answers = [client.request("SEND", headers, body).command for headers, body in frames]
    if "ERROR" not in answers:  # refused at SEND time is fine too: then the application aborts
        answers.append(client.request("COMMIT", {"transaction": "tx"}).command)
    assert "ERROR" in answers, f"a bad AMQ_SCHEDULED_DELAY was accepted: {answers}"
    client.request("ABORT", {"transaction": "tx"})  # what an application does after a failed COMMIT
    client.close()
    bodies = _bodies_until_sentinel(broker.port, "/queue/tx")
    print(f"answers {answers}; delivered {bodies}")
    assert bodies == [SENTINEL], f"a refused transaction delivered {bodies[:-1]}"
