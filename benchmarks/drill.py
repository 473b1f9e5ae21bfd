"""Failover drill: 10 ``kill -9`` of the master during a persistent produce through the failover
client (``hamq produce``, synchronous: one receipted send at a time, resends after failover).

A kill comes once the slave is seen waiting and 100 more messages were receipted; producer
runs are started one after another until all kills are done. Afterwards the queue is drained with
stomp.py and every (``hamq-run``, ``hamq-seq``) counted: missing = a sequence number never delivered,
duplicates = extra deliveries of a sequence number. The same client drives ActiveMQ (with
``lockAcquireSleepInterval=1000``, to keep the drill short).
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import threading
import time

from benchmarks import stomp_load
from benchmarks.brokers import BrokerUnavailable
from benchmarks.suite import Suite
from benchmarks.takeover import kill_now, wait_slave

METRICS = ("drill_missing", "drill_duplicates")
KILLS = 10
QUEUE = "/queue/drill"


def counts(quick: bool) -> tuple:
    """(messages, kills)"""
    return (1000, 3) if quick else (2000, KILLS)


def run(suite: Suite) -> None:
    n, kills = counts(suite.quick)
    suite.notes["drill"] = (
        f"`hamq produce --persistent` (window 1, runs of {n} persistent 1 KiB messages, started one "
        f"after another until all kills are done) through failover:(both nodes); {kills} kill -9 of "
        "the master, each once the slave waits and 100 more messages were receipted; then a "
        "stomp.py drain with client-individual ACK counts every hamq-seq. ActiveMQ uses "
        "lockAcquireSleepInterval=1000 here."
    )
    for m in METRICS:
        suite.na(m, "coilmq", "coilmq has no master/slave")
    for broker, sleep in (("hamq", None), ("ActiveMQ", 1000)):
        if suite.skip_unavailable(METRICS, broker):
            continue
        suite.log(f"== drill {broker}: {n} messages, {kills} kills")
        try:
            result = drill(suite, broker, sleep, n, kills)
        except Exception as exc:  # noqa: BLE001 - record and go on
            for m in METRICS:
                suite.fail(m, broker, exc)
            continue
        suite.put("drill_missing", broker, {"status": "ok", "n": 1, "count": result["missing"], **result})
        suite.put("drill_duplicates", broker, {"status": "ok", "n": 1, "count": result["duplicates"],
                                               "messages": result["messages"], "kills": result["kills"]})


def _progress(rate_log) -> int:
    """Receipted count from the producer's per-second JSON lines (0 before the first line)."""
    try:
        lines = rate_log.read_text().splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["count"])
        except (ValueError, KeyError):
            continue
    return 0


class _Producer:
    """One ``hamq produce`` run of ``n`` numbered messages (its own hamq-run id)."""

    def __init__(self, shared, index: int, url: str, n: int):
        self.out = shared / f"produce-{index}.json"
        self.err = shared / f"produce-{index}.err"
        self.rate_log = shared / f"produce-{index}-rate.jsonl"
        with open(self.out, "wb") as fh, open(self.err, "wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "hamq", "produce", url, QUEUE, "--count", str(n), "--size", "1024",
                 "--persistent", "--rate-log", str(self.rate_log)],
                stdout=fh, stderr=err, stdin=subprocess.DEVNULL)

    def running(self) -> bool:
        return self.popen.poll() is None

    def progress(self) -> int:
        return _progress(self.rate_log)

    def summary(self) -> dict:
        found = _last_json(self.out)
        if found is None:
            raise BrokerUnavailable(f"hamq produce printed no summary (exit {self.popen.returncode}): "
                                    f"{self.err.read_text(errors='replace')[-300:]}")
        return found


def drill(suite: Suite, broker: str, sleep, n: int, kills: int) -> dict:
    """Kill the master ``kills`` times while producers run; producers of ``n`` messages are
    started one after another until every kill is done, so a fast producer never outruns the kills."""
    kind = suite.kinds[broker]
    shared = suite.dir(f"{broker}-drill-store")
    a = kind.node(f"{broker}-drill-a", shared, sleep)
    b = kind.node(f"{broker}-drill-b", shared, sleep)
    url = (f"failover:(tcp://127.0.0.1:{a.port},tcp://127.0.0.1:{b.port})"
           "?randomize=false&initialReconnectDelay=10&maxReconnectDelay=200")
    producers: list = []
    done = 0
    try:
        a.start()
        a.wait_connect(120)
        b.start()
        wait_slave(suite, broker, b)
        master, slave = a, b
        producers.append(_Producer(shared, 0, url, n))
        while done < kills:
            current = producers[-1]
            mark = current.progress()
            # Kill only while messages flow: wait for 100 more receipts on a running producer.
            while current.running() and current.progress() < mark + 100:
                time.sleep(0.05)
            if not current.running():
                current.summary()  # fails loudly when the producer died without a summary
                producers.append(_Producer(shared, len(producers), url, n))
                continue
            kill_now(master)
            master.kill9()
            done += 1
            suite.log(f"   kill {done}: {master.node} at {current.progress()} receipted (producer {len(producers)})")
            slave.wait_connect(120)  # raises, with the slave's log, when no takeover happens
            master.start()
            wait_slave(suite, broker, master)
            master, slave = slave, master
        try:
            producers[-1].popen.wait(timeout=900)
        except subprocess.TimeoutExpired as exc:
            raise BrokerUnavailable(f"{broker}: hamq produce did not finish within 900 s") from exc
        summaries = [p.summary() for p in producers]
        deliveries = drain(master.port, "1.2")
    finally:
        for p in producers:
            if p.running():
                p.popen.kill()
                p.popen.wait()
        a.stop()
        b.stop()
    missing = sum(1 for s in summaries for seq in range(n) if deliveries[(s.get("run"), seq)] == 0)
    dups = sum(c - 1 for c in deliveries.values() if c > 1)
    total = {k: sum(s.get(k) or 0 for s in summaries) for k in ("sent", "receipted", "resent", "unconfirmed",
                                                                    "reconnects", "outage_seconds")}
    total["errors"] = [s.get("error") for s in summaries if s.get("error")]
    suite.log(f"   {broker}: kills={done} producers={len(summaries)} {total} delivered={sum(deliveries.values())} "
              f"missing={missing} duplicates={dups}")
    return {"kills": done, "messages": n * len(summaries), "missing": missing, "duplicates": dups,
            "producer": total}


def _last_json(path) -> dict | None:
    for line in reversed(path.read_text(errors="replace").splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def drain(port: int, version: str, idle: float = 3.0) -> collections.Counter:
    """Receive everything on the drill queue (client-individual ACK) until ``idle`` s of silence."""
    conn, waiter = stomp_load.connect(port, version)
    seqs: collections.Counter = collections.Counter()  # (hamq-run, hamq-seq) -> deliveries
    last = [time.monotonic()]
    lock = threading.Lock()

    def on_msg(frame):
        with lock:
            seq = frame.headers.get("hamq-seq")
            if seq is not None and seq.isdigit():
                seqs[(frame.headers.get("hamq-run"), int(seq))] += 1
            last[0] = time.monotonic()
        conn.ack(frame.headers["ack"]) if version == "1.2" else conn.ack(frame.headers["message-id"], "d")

    waiter.on_msg = on_msg
    try:
        conn.subscribe(QUEUE, id="d", ack="client-individual", headers={"activemq.prefetchSize": "1000"})
        while time.monotonic() - last[0] < idle:
            if waiter.error:
                raise stomp_load.LoadError(waiter.error)
            time.sleep(0.2)
        conn.unsubscribe("d", receipt="drained")
        waiter.wait_receipt("drained")
    finally:
        stomp_load.close(conn, waiter)
    return seqs
