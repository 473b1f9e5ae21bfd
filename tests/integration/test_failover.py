"""Failover drills against real brokers: 3 ``hamq run`` processes sharing one store directory.

The master is ``kill -9``-ed while ``hamq produce`` / ``hamq consume`` run
through a failover URL, and restarted (it comes back as a slave). Nothing
here mocks the broker or the lock: what is asserted is what the processes
did. Kill moments are drawn from a seeded RNG; the seed is printed so a
failing run can be replayed with HAMQ_DRILL_SEED.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hamq.client import FailoverClient, TransactionInDoubt

HAMQ = [sys.executable, "-m", "hamq"]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


#: Fast takeover for tests: slaves poll the lock every 100 ms.
LOCKER = '<shared-file-locker lockAcquireSleepInterval="100" lockKeepAlivePeriod="300"/>'


class Cluster:
    """N ``hamq run`` processes (conftest's ``hamq_broker``) on one shared store, fixed STOMP ports."""

    def __init__(self, hamq_broker, free_port, root: Path, size: int = 3):
        self.shared = root / "shared"
        self.ports = [free_port() for _ in range(size)]
        self.hamq_broker = hamq_broker
        self.brokers: list = []
        self.kills = 0
        self.kill_log: list = []

    @property
    def url(self) -> str:
        inner = ",".join(f"tcp://127.0.0.1:{p}" for p in self.ports)
        return f"failover:({inner})?initialReconnectDelay=50&maxReconnectDelay=1000&timeout=60000"

    def start_all(self, count=None) -> None:
        """Start the first ``count`` brokers (all by default); the URL still lists every port."""
        (self.shared / "data").mkdir(parents=True, exist_ok=True)
        for i in range(len(self.ports) if count is None else count):
            self.brokers.append(
                self.hamq_broker(
                    node_name=f"b{i}",
                    kahadb_dir=self.shared / "kahadb",
                    data_dir=self.shared / "data",
                    stomp_port=self.ports[i],
                    locker=LOCKER,
                    wait_role=None,
                )
            )
        self.wait_master()

    def wait_master(self, exclude=None, limit: float = 60.0) -> int:
        """Block until a master (other than ``exclude``) accepts STOMP connections."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            for i, broker in enumerate(self.brokers):
                if i != exclude and broker.alive() and _listening(self.ports[i]):
                    return i
            if not any(broker.alive() for broker in self.brokers):
                break
            time.sleep(0.05)
        logs = "\n".join(b.log()[-2000:] for b in self.brokers)
        raise AssertionError(f"no master (waited up to {limit} s); broker logs:\n{logs}")

    def kill_master(self) -> int:
        """``kill -9`` the master, restart it (it becomes a slave), wait for the new master."""
        i = self.wait_master()
        self.brokers[i].kill()
        self.kills += 1
        self.kill_log.append((round(time.time(), 3), f"b{i}", self.ports[i]))
        self.brokers[i].start()
        return self.wait_master(exclude=i)


@pytest.fixture
def cluster(hamq_broker, free_port, tmp_path):
    c = Cluster(hamq_broker, free_port, tmp_path)
    c.start_all()
    return c  # hamq_broker kills every process at teardown


@pytest.fixture
def seed():
    value = int(os.environ.get("HAMQ_DRILL_SEED", random.randrange(1 << 30)))
    print(f"drill seed: HAMQ_DRILL_SEED={value}")
    return value


def _wait_until(condition, limit: float = 60.0) -> None:
    end = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.02)


def _rate_log_count(path: Path) -> int:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return json.loads(line)["count"]
        except (ValueError, KeyError):
            continue  # a line still being written
    return 0


def _summary(proc: subprocess.CompletedProcess) -> dict:
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON summary; exit {proc.returncode}; stderr:\n{proc.stderr}"
    return json.loads(lines[-1])


def test_produce_10000_persistent_through_5_master_kills_then_drain(cluster, seed, tmp_path):
    """Issue 4: every receipted message arrives exactly once although the master died 5 times."""
    count, kills = 10_000, 5
    rng = random.Random(seed)
    # Kills happen in the first 70 % so that all of them hit a running producer.
    thresholds = sorted(rng.sample(range(200, count * 7 // 10), kills))
    rate_log = tmp_path / "produce-rate.jsonl"
    producer = subprocess.Popen(
        HAMQ
        + ["produce", cluster.url, "/queue/drill", "--count", str(count), "--persistent"]
        + ["--size", "64", "--rate-log", str(rate_log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr_lines: list = []
    reader = threading.Thread(target=lambda: stderr_lines.extend(producer.stderr), daemon=True)
    reader.start()
    try:
        for threshold in thresholds:
            # Kill only once the producer is back on a master after the previous kill
            # (it logs "reconnected to ..."), so each kill is a failover of its own.
            while producer.poll() is None and not (
                _rate_log_count(rate_log) >= threshold
                and sum("reconnected to" in line for line in stderr_lines) >= cluster.kills
            ):
                time.sleep(0.05 + rng.random() * 0.1)
            if producer.poll() is not None:
                break
            cluster.kill_master()
        out = producer.communicate(timeout=240)[0]
        reader.join(10)
        produced = _summary(
            subprocess.CompletedProcess(producer.args, producer.returncode, out, "".join(stderr_lines))
        )
    finally:
        if producer.poll() is None:
            producer.kill()
    consumed = _summary(
        subprocess.run(
            HAMQ
            + ["consume", cluster.url, "/queue/drill", "--ack", "client-individual"]
            + ["--expect", str(count), "--timeout", "5"],
            capture_output=True,
            text=True,
            timeout=240,
        )
    )
    missing = consumed["missing"]
    print(
        f"sent={produced['sent']} receipted={produced['receipted']} resent={produced['resent']} "
        f"received={consumed['received']} duplicates={consumed['duplicates']} missing={missing} "
        f"kills={cluster.kills} producer_reconnects={produced['reconnects']} "
        f"outage_seconds={produced['outage_seconds']}"
    )
    for event in produced["reconnect_events"]:
        print("producer reconnect:", json.dumps(event))
    print("kill log:", cluster.kill_log)
    assert cluster.kills == kills
    assert produced["error"] is None, produced["error"]
    assert produced["sent"] == produced["receipted"] == count
    assert produced["reconnects"] >= kills
    assert missing == 0, consumed["missing_seqs"]
    assert consumed["duplicates"] == 0
    assert consumed["received"] == count


def test_consumer_fails_over_with_client_individual_acks(cluster, seed):
    """Kill the master twice while draining: nothing lost, repeats only with redelivered set."""
    count = 2000
    with FailoverClient(cluster.url, window=20) as client:
        for seq in range(count):
            client.send("/queue/consume-drill", f"seq={seq}", headers={"hamq-seq": str(seq)})
        client.flush()
    rng = random.Random(seed)
    thresholds = sorted(rng.sample(range(100, count - 100), 2))
    seen, seqs = {}, set()
    unflagged_repeats = flagged_repeats = 0
    with FailoverClient(cluster.url) as client:
        client.subscribe("/queue/consume-drill", ack="client-individual", prefetch=50)
        while len(seqs) < count:
            msg = client.receive(timeout=30)
            assert msg is not None, f"stalled after {len(seqs)} of {count}"
            # The producer's id, not the broker's: a copy stored twice has two broker ids.
            identity = msg.headers["client-message-id"]
            if identity in seen:
                if msg.redelivered:
                    flagged_repeats += 1
                else:
                    unflagged_repeats += 1
            seen[identity] = True
            seqs.add(int(msg.headers["hamq-seq"]))
            client.ack(msg)
            if thresholds and len(seqs) >= thresholds[0]:
                thresholds.pop(0)
                cluster.kill_master()
        # Late copies (acks lost with a master) may still come; each must be flagged.
        while (msg := client.receive(timeout=2)) is not None:
            assert msg.headers["client-message-id"] in seen
            flagged_repeats += msg.redelivered
            unflagged_repeats += not msg.redelivered
            client.ack(msg)
        reconnects = len(client.reconnect_events)
    print(
        f"received={len(seqs)} flagged_repeats={flagged_repeats} unflagged_repeats={unflagged_repeats} "
        f"reconnects={reconnects}"
    )
    assert cluster.kills == 2 and reconnects >= 2
    assert seqs == set(range(count))
    assert unflagged_repeats == 0


def test_subscription_is_replayed_and_open_transaction_is_in_doubt(cluster):
    """After a failover the old subscription keeps receiving; an open transaction raises."""
    with FailoverClient(cluster.url) as consumer, FailoverClient(cluster.url) as producer:
        consumer.subscribe("/queue/replay", ack="client-individual")
        tx = producer.begin()
        producer.send("/queue/replay", "in tx", transaction=tx)
        cluster.kill_master()
        _wait_until(lambda: producer.reconnect_events and producer.connected)
        with pytest.raises(TransactionInDoubt):
            producer.send("/queue/replay", "more", transaction=tx)
        with pytest.raises(TransactionInDoubt):
            producer.commit(tx)
        producer.abort(tx)
        producer.send("/queue/replay", "after failover")
        msg = consumer.receive(timeout=30)
        assert msg is not None and msg.body == b"after failover"
        assert consumer.ack(msg)
        assert consumer.receive(timeout=1) is None  # the rolled-back send never arrives
        assert consumer.reconnect_events and producer.reconnect_events
