"""The run's shared state: temp dir, ports, which brokers can run, and the result cells.

A cell is one broker's figure for one metric. It is always one of
``{"status": "ok", ...figures}``, ``{"status": "failed"|"skipped"|"n/a", "reason": ...}``,
so the report can print every row even when a broker or a scenario could not run.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.brokers import ActiveMQ, BrokerUnavailable, Coilmq, Hamq, PortAllocator, PortInUse
from benchmarks.stats import summarize

BROKERS = ("hamq", "ActiveMQ", "coilmq")


@dataclass
class Suite:
    workdir: Path
    quick: bool = False
    base_port: int | None = None
    log: callable = print
    install: bool = True  # may the suite apt-get install ActiveMQ when it is missing
    results: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    unavailable: dict = field(default_factory=dict)

    def __post_init__(self):
        self.ports = PortAllocator(self.base_port)
        self.kinds = {"hamq": Hamq(self.workdir, self.ports), "ActiveMQ": ActiveMQ(self.workdir, self.ports, self.install),
                      "coilmq": Coilmq(self.workdir, self.ports)}
        self._seq = 0

    # ---- availability
    def check_brokers(self, wanted=BROKERS) -> None:
        for name in wanted:
            try:
                self.kinds[name].check()
            except BrokerUnavailable as exc:
                self.unavailable[name] = str(exc)
                self.log(f"!! {name} column skipped: {exc}")

    def available(self, name: str) -> bool:
        return name not in self.unavailable

    def dir(self, prefix: str) -> Path:
        """A fresh directory under the run's temp dir (instance dirs, shared stores)."""
        self._seq += 1
        path = self.workdir / f"{prefix}-{self._seq}"
        path.mkdir(parents=True)
        return path

    # ---- cells
    def put(self, metric: str, broker: str, cell: dict) -> None:
        self.results.setdefault(metric, {})[broker] = cell

    def ok(self, metric: str, broker: str, samples: list, unit: str, **extra) -> None:
        self.put(metric, broker, {"status": "ok", "unit": unit, **summarize(samples), **extra})

    def fail(self, metric: str, broker: str, reason) -> None:
        """Record why a cell has no figure; ``reason`` is a text or the exception itself.

        A taken port is bad input on this machine, not a broker fault: that cell is "skipped".
        """
        status = "skipped" if isinstance(reason, PortInUse) else "failed"
        if isinstance(reason, BaseException):
            reason = describe_error(reason)
        self.log(f"!! {metric} / {broker}: {reason}")
        self.put(metric, broker, {"status": status, "reason": reason})

    def skip(self, metric: str, broker: str, reason: str) -> None:
        self.put(metric, broker, {"status": "skipped", "reason": reason})

    def na(self, metric: str, broker: str, reason: str) -> None:
        self.put(metric, broker, {"status": "n/a", "reason": reason})

    def skip_unavailable(self, metrics, broker: str) -> bool:
        """Mark ``metrics`` skipped for an unavailable broker; True when it was unavailable."""
        if self.available(broker):
            return False
        for m in metrics:
            self.skip(m, broker, self.unavailable[broker])
        return True


def describe_error(exc: BaseException) -> str:
    """One line for the table's footnotes; the full traceback goes to the console."""
    if isinstance(exc, BrokerUnavailable):
        return str(exc).splitlines()[0]
    tb = traceback.format_exception_only(type(exc), exc)
    return tb[-1].strip()[:300]


class Timer:
    """Wall-clock stopwatch for progress messages."""

    def __init__(self):
        self.t0 = time.monotonic()

    def __str__(self):
        return f"{time.monotonic() - self.t0:.1f}s"
