"""A master that was paused while another took over must not serve a single frame after it resumes.

SIGSTOP freezes the master with its lock (a frozen VM, a long stall); the lock
file is then deleted, so the slave can take over. When the old master wakes
up, clients that were already queued on its listening socket must get nothing
from it: no CONNECTED, no RECEIPT, no MESSAGE.
"""

from __future__ import annotations

import os
import signal
import socket
import time

from raw_stomp import RawStomp

LOCKER = '<shared-file-locker lockAcquireSleepInterval="100" lockKeepAlivePeriod="300"/>'


def _answers_connect(port: int, timeout: float = 0.5):
    """The first frame a CONNECT gets from ``port`` (None: refused, closed or silent)."""
    try:
        client = RawStomp(port, timeout=timeout)
    except OSError:
        return None
    try:
        frame = client.connect()
        return frame[0] if frame else None
    except (OSError, socket.timeout):
        return None
    finally:
        client.close()


def test_a_resumed_ex_master_answers_nothing(hamq_broker, tmp_path):
    shared = tmp_path / "shared"
    a = hamq_broker(node_name="a", kahadb_dir=shared, locker=LOCKER)
    port = a.stomp_port
    b = hamq_broker(node_name="b", kahadb_dir=shared, locker=LOCKER, wait_role="slave")
    early = RawStomp(port, timeout=10)  # connected before the pause: it may send later
    assert early.connect()[0] == "CONNECTED"
    early.send("SUBSCRIBE", destination="/queue/paused", id="s1", ack="auto", receipt="r0")
    assert early.frame()[0] == "RECEIPT"
    os.kill(a.pid, signal.SIGSTOP)
    try:
        os.unlink(shared / "lock")
        b.wait_role("master", timeout=30)
        # queued on the frozen master's backlog, answered (or not) when it wakes up
        queued = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        for sock in queued:
            sock.sendall(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0")
        early.send("SEND", b"after the takeover", destination="/queue/paused", receipt="r1")
    finally:
        os.kill(a.pid, signal.SIGCONT)
    answers = []
    for sock in queued:
        try:
            answers.append(sock.recv(4096))
        except OSError:
            answers.append(b"")
        sock.close()
    early_answer = early.frame()
    deadline = time.monotonic() + 1.0
    late = []
    while time.monotonic() < deadline:
        late.append(_answers_connect(port, timeout=0.2))
    assert not any(a_.startswith(b"CONNECTED") for a_ in answers), answers
    assert early_answer is None or early_answer[0] not in ("RECEIPT", "MESSAGE"), early_answer
    assert "CONNECTED" not in late
    a.proc.wait(30)  # it noticed and stopped
    assert a.proc.returncode != 0


def test_a_paused_master_that_kept_its_lock_serves_again_after_confirming_it(hamq_broker, tmp_path):
    shared = tmp_path / "shared"
    a = hamq_broker(node_name="a", kahadb_dir=shared, locker=LOCKER)
    port = a.stomp_port
    client = RawStomp(port, timeout=10)
    assert client.connect()[0] == "CONNECTED"
    os.kill(a.pid, signal.SIGSTOP)
    try:
        time.sleep(1.0)  # over three keep-alive periods: the lease's validity has lapsed
        client.send("SEND", b"sent during the pause", destination="/queue/p", persistent="true", receipt="r1")
    finally:
        os.kill(a.pid, signal.SIGCONT)
    assert client.frame()[0] == "RECEIPT"  # once the lock is confirmed, the term goes on
    assert _answers_connect(port, timeout=5) == "CONNECTED"
    status = a.status()
    assert status["role"] == "master" and status["serving"] and a.alive()
    assert "stood still" in a.log() or "not serving until" in a.log()
