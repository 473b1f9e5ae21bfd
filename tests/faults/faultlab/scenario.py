"""A broker group under load: ledger producer, ledger consumer and CONNECT watcher, started and checked
together.  Shared by the randomised tests and the soak benchmark.

    group = BrokerGroup(root)
    for name in "abc":
        group.add(name)
    with Load(group, count=3000) as load:
        ... inject faults, e.g. group.wait_master().kill() ...
    report = load.report          # a faultlab.ledger.LedgerReport
    report.assert_clean()
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from faultlab import lockfile
from faultlab.faults import BATCH_MAGIC, FaultSpec, Rule
from faultlab.group import DEADLINE_S, BrokerGroup, GroupBroker
from faultlab.ledger import LedgerConsumer, LedgerProducer, LedgerReport, check
from faultlab.watcher import ConnectWatcher


class Load:
    """Producer (+ consumer, + watcher) against ``group``; :attr:`report` is set when the block exits."""

    def __init__(self, group: BrokerGroup, count: int, *, destination: str = "/queue/ledger", window: int = 8,
                 size: int = 64, consume: bool = True, watch: bool = True, run_id: str = "m",
                 deadline_s: float = 300.0, pace_s: float = 0.0):
        self.group = group
        self.destination = destination
        self.producer = LedgerProducer(group.ports, destination, count, run_id=run_id, window=window, size=size,
                                       deadline_s=deadline_s, pace_s=pace_s)
        self.consumer: Optional[LedgerConsumer] = LedgerConsumer(group.ports, destination) if consume else None
        self.watcher = ConnectWatcher(group.ports, names={b.port: b.name for b in group.brokers.values()}) \
            if watch else None
        self.report: Optional[LedgerReport] = None
        #: (port, SIGCONT time, exit time) of each resumed ex-master, for receipts_after_resume()
        self.resumed: List[Tuple[int, float, float]] = []

    def __enter__(self) -> "Load":
        if self.watcher is not None:
            self.watcher.start()
        self.producer.start()
        if self.consumer is not None:
            self.consumer.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
            return
        self.report = self.finish()

    # -- progress ---------------------------------------------------------------------
    def receipted(self) -> int:
        return len(self.producer.receipted)

    def wait_receipted(self, n: int, timeout: float = DEADLINE_S) -> None:
        """Block until ``n`` messages are receipted (or the producer ended)."""
        deadline = time.monotonic() + timeout
        while self.receipted() < n and self.producer.is_alive():
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.receipted()} of {n} receipted after {timeout} s\n"
                                     f"{self.group.logs()}")
            time.sleep(0.01)

    def wait_progress(self, more: int, timeout: float = DEADLINE_S) -> None:
        self.wait_receipted(self.receipted() + more, timeout)

    def resume_until_exit(self, broker: GroupBroker, timeout: float = DEADLINE_S) -> int:
        """SIGCONT a frozen ex-master and wait for it to halt; its window of life is remembered.

        Receipts that reach the producer from that broker while it lived on (plus half a
        second for bytes in flight) are receipts after the takeover: see receipts_after_resume().
        """
        resumed_at = time.monotonic()
        broker.resume()
        code = broker.proc.wait(timeout)
        self.resumed.append((broker.port, resumed_at, time.monotonic() + 0.5))
        return code

    def receipts_after_resume(self) -> List[str]:
        """Ids receipted by an ex-master after it was resumed (on live or abandoned connections)."""
        # copies first: the producer thread may be adding to both (list() of a dict view is one C call)
        events = [(msg_id, port, t) for msg_id, (port, t) in list(self.producer.receipted.items())]
        events += list(self.producer.late)
        return sorted({msg_id for msg_id, port, t in events
                       if any(port == p and start < t <= end for p, start, end in self.resumed)})

    # -- the end ------------------------------------------------------------------------
    def finish(self, timeout: float = 180.0) -> LedgerReport:
        self.producer.finish(timeout)
        if self.consumer is not None:
            self.consumer.wait_for(self.producer.receipted, timeout)
            self.consumer.finish()
        if self.watcher is not None:
            self.watcher.stop()
        consumer = self.consumer or LedgerConsumer([], self.destination)
        report = check(self.producer, consumer, self.watcher, self.group.kahadb)
        after = self.receipts_after_resume()
        if after:
            report.notes.append(f"{len(after)} receipt(s) from an ex-master after its SIGCONT, e.g. {after[:5]}")
        return report

    def abort(self) -> None:
        self.producer.stop()
        if self.consumer is not None:
            self.consumer.stop()
        if self.watcher is not None:
            self.watcher.stop()
        self.producer.finish(30)
        if self.consumer is not None:
            self.consumer.join(30)


def start_group(group: BrokerGroup, names: str = "abc", specs: Optional[Dict[str, object]] = None) -> GroupBroker:
    """Start brokers ``names`` in order; returns the master once every other one is a slave."""
    specs = specs or {}
    first = group.add(names[0], specs.get(names[0]))
    group.wait_master()
    for name in names[1:]:
        group.add(name, specs.get(name))
    group.wait_roles(first)
    return first


#: Every journal segment of the group's main store.
JOURNAL = "*/kahadb/db-*.log"
PAUSE_MODES = ("sigstop", "before-write")


def pause_specs(group: BrokerGroup, iolog: Path, names: str = "abc") -> Tuple[Dict[str, FaultSpec], Dict[str, Rule]]:
    """Per broker: an io-logging spec with a disarmed rule that freezes it right before a journal batch write."""
    specs, rules = {}, {}
    for name in names:
        spec = FaultSpec(group.root, name).record_io(iolog)
        rules[name] = spec.rule("pause-before-write", ops=["pwrite", "write"], path=JOURNAL,
                                data_prefix=BATCH_MAGIC, action="pause", armed=False)
        specs[name] = spec
    return specs, rules


def pause_and_yank(group: BrokerGroup, load: Load, rules: Dict[str, Rule], mode: str, rng: random.Random) -> None:
    """One failover by freezing the master, as a stalled VM or a lost NFS lease would.

    ``mode`` "sigstop" freezes it at a random moment, "before-write" inside a journal write
    (after its fence check); its lock file is then deleted or emptied, a slave takes over and
    receipts some messages, and the old master is resumed, waited for until it halts, and
    restarted as a slave.
    """
    old = group.wait_master()
    if mode == "sigstop":
        old.pause()
    else:
        rules[old.name].arm()
        rules[old.name].wait()
        rules[old.name].disarm()
    lockfile.TAMPERINGS[rng.choice(["delete", "empty"])](group.kahadb)
    group.wait_master(exclude=[old])
    load.wait_progress(20)
    time.sleep(rng.uniform(0, 0.5))
    load.resume_until_exit(old)
    old.start()
