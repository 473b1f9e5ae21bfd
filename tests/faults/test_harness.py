"""The harness tests itself: the shim acts where it is told, the power cut keeps exactly what was fsynced,
the CONNECT watcher sees two answering brokers (and not one), the checker counts what it should.

No broker runs here except in the last test: small child processes and fake STOMP servers stand in,
so a failure points at the harness, not at hamq.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from faultlab import journal
from faultlab.faults import FaultSpec, power_cut
from faultlab.ledger import Delivery, LedgerConsumer, LedgerProducer, check, ledger_body, parse_body
from faultlab.stomp import StompClient
from faultlab.watcher import ConnectWatcher
from support.brokers import process_state

CHILD = r"""
import os, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
other = os.open(path + ".other", os.O_RDWR | os.O_CREAT, 0o644)
for i in range(6):
    os.pwrite(other, b"HQB1-other", 0)
    try:
        os.pwrite(fd, b"HQB1-%d.." % i, i * 8)
        print("ok", i, flush=True)
    except OSError as exc:
        print("err", i, exc.errno, flush=True)
os.fdatasync(fd)
print("synced", flush=True)
"""


def _child(tmp_path, spec: FaultSpec, script: str = CHILD, *args):
    env = dict(os.environ)
    env.update(spec.env())
    return subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "data.log"), *args], env=env,
                            stdout=subprocess.PIPE, text=True)


def test_shim_is_inert_without_hamq_faults(tmp_path):
    spec = FaultSpec(tmp_path, "inert")
    env = dict(os.environ)
    env.update(spec.env())
    del env["HAMQ_FAULTS"]
    out = subprocess.run([sys.executable, "-c", "import os, sitecustomize; print(sitecustomize.__file__, "
                          "type(os.write).__name__, type(os.fdatasync).__name__)"],
                         env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out[0].endswith("shim/sitecustomize.py")
    assert out[1:] == ["builtin_function_or_method", "builtin_function_or_method"]


def test_shim_fails_and_pauses_on_the_nth_matching_write_only(tmp_path):
    spec = FaultSpec(tmp_path, "child")
    spec.rule("enospc", ops=["pwrite"], path="*/data.log", data_prefix="HQB1", nth=2, action="fail", errno="ENOSPC")
    pause = spec.rule("pause", ops=["pwrite"], path="*/data.log", nth=4, action="pause")
    proc = _child(tmp_path, spec)
    try:
        event = pause.wait(30)
        assert event["pid"] == proc.pid and event["when"] == "before"
        assert process_state(proc.pid) == "T"
        proc.send_signal(signal.SIGCONT)
        out = proc.communicate(timeout=30)[0].split("\n")
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()
    assert out[:7] == ["ok 0", f"err 1 {28}", "ok 2", "ok 3", "ok 4", "ok 5", "synced"]
    # the failed write wrote nothing; the writes to the other file were never counted
    data = (tmp_path / "data.log").read_bytes()
    assert data[8:16] == b"\0" * 8 and data[:8] == b"HQB1-0.." and data[40:48] == b"HQB1-5.."


def test_shim_kills_right_after_the_call(tmp_path):
    spec = FaultSpec(tmp_path, "child")
    spec.rule("die", ops=["pwrite"], path="*/data.log", nth=3, when="after", action="kill")
    proc = _child(tmp_path, spec)
    out = proc.communicate(timeout=30)[0].split()
    assert proc.returncode == -signal.SIGKILL
    assert out == ["ok", "0", "ok", "1"]  # the third write landed, its print never ran
    assert (tmp_path / "data.log").read_bytes()[16:24] == b"HQB1-2.."


def test_shim_arms_a_rule_only_when_its_file_exists(tmp_path):
    spec = FaultSpec(tmp_path, "child")
    rule = spec.rule("never", ops=["pwrite"], path="*/data.log", action="fail", armed=False)
    proc = _child(tmp_path, spec)
    assert proc.communicate(timeout=30)[0].split()[-1] == "synced"
    assert not rule.fired()


POWER = r"""
import os, sys
path, step = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
if step == "a":
    os.pwrite(fd, b"A" * 100, 0); os.fsync(fd)          # durable
    os.pwrite(fd, b"B" * 10, 50)                         # overwrite, never synced
    os.pwrite(fd, b"C" * 100, 100)                       # growth, never synced
    os.ftruncate(fd, 120)
elif step == "b":
    os.pwrite(fd, b"D" * 5, 0)                           # never synced by this process...
elif step == "c":
    os.fdatasync(fd)                                     # ...but another process's fsync makes it durable
    os.pwrite(fd, b"E" * 5, 10)
"""


def test_power_cut_keeps_exactly_what_some_fsync_covered(tmp_path):
    iolog = tmp_path / "iolog"
    target = tmp_path / "data.log"
    for step in ("a",):
        spec = FaultSpec(tmp_path, "p" + step).record_io(iolog, ["*/data.log"])
        proc = _child(tmp_path, spec, POWER, step)
        proc.communicate(timeout=30)
    before = target.read_bytes()
    assert len(before) == 120 and before[50:60] == b"B" * 10
    report = power_cut(iolog, tmp_path)
    assert target.read_bytes() == b"A" * 100
    assert report.files and report.reverted_bytes > 0
    # a write by one process is made durable by another process's fsync of the same file
    iolog2 = tmp_path / "iolog2"
    for step in ("b", "c"):
        spec = FaultSpec(tmp_path, "q" + step).record_io(iolog2, ["*/data.log"])
        _child(tmp_path, spec, POWER, step).communicate(timeout=30)
    power_cut(iolog2, tmp_path)
    assert target.read_bytes() == b"D" * 5 + b"A" * 95


class FakeBroker(threading.Thread):
    """Answers every CONNECT with CONNECTED, as a master would."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.serving = threading.Event()

    def serve(self):
        self.sock.listen(50)
        self.serving.set()
        self.start()

    def run(self):
        while self.serving.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    @staticmethod
    def _answer(conn):
        with conn:
            data = b""
            while b"\0" not in data:
                chunk = conn.recv(1024)
                if not chunk:
                    return
                data += chunk
            conn.sendall(b"CONNECTED\nversion:1.2\n\n\0")

    def halt(self):
        self.serving.clear()
        self.sock.close()


def test_connect_watcher_sees_two_answering_brokers_but_not_a_handover():
    a, b = FakeBroker(), FakeBroker()
    with ConnectWatcher([a.port, b.port]) as handover:
        a.serve()
        time.sleep(0.5)
        a.halt()
        time.sleep(0.1)
        b.serve()
        time.sleep(0.5)
    assert handover.answered(a.port) > 3 and handover.answered(b.port) > 3
    assert handover.dual_master() == []
    c = FakeBroker()
    with ConnectWatcher([b.port, c.port]) as both:
        c.serve()
        time.sleep(0.5)
    b.halt()
    c.halt()
    assert len(both.dual_master()) > 3, both.describe()


def test_checker_counts_losses_phantoms_garbling_and_unflagged_duplicates():
    producer = LedgerProducer([1], "/queue/x", 4)
    producer.sent = {"m-1", "m-2", "m-3"}
    producer.receipted = {"m-1": (1, 0.0), "m-2": (1, 0.0), "m-3": (1, 0.0)}
    consumer = LedgerConsumer([1], "/queue/x")

    def delivery(msg_id, redelivered=False, body=None):
        found, intact = parse_body(body if body is not None else ledger_body(msg_id, 40))
        return Delivery(found, intact, redelivered, msg_id, 1, 0.0)

    consumer.deliveries = [delivery("m-1"), delivery("m-1", redelivered=True), delivery("m-2"), delivery("m-2"),
                           delivery("m-9"), delivery("m-1", body=ledger_body("m-1", 40)[:-1] + b"?")]
    report = check(producer, consumer)
    assert report.lost == ["m-3"] and report.phantom == ["m-9"] and report.garbled == 1
    assert report.unflagged_duplicates == ["m-2"] and report.flagged_redeliveries == 1
    with pytest.raises(AssertionError, match="never delivered"):
        report.assert_clean()


def test_journal_tools_read_what_a_real_broker_wrote(make_group):
    group = make_group()
    broker = group.add("a")
    group.wait_master()
    client = StompClient.open(broker.port)
    for i in range(10):
        assert client.request("SEND", {"destination": "/queue/j", "persistent": "true"}, b"x%d" % i).command == \
            "RECEIPT"
    broker.kill()
    (number, path, header), = journal.segments(group.kahadb)
    found = journal.batches(path)
    assert header.segment == number and len(found) == 10
    assert [b.lsn for b in found] == list(range(found[0].lsn, found[0].lsn + 10))
    assert journal.data_end(path) == found[-1].end
    assert journal.batches_past_seals(group.kahadb) == []
