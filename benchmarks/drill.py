"""Failover drill: 10 kills of the master during a persistent produce through ``hamq produce``.

Placeholder until the failover client lands; reports a skip with the reason.
"""

from __future__ import annotations

from benchmarks.suite import Suite

METRICS = ("drill_missing", "drill_duplicates")


def run(suite: Suite) -> None:
    for m in METRICS:
        suite.na(m, "coilmq", "coilmq has no master/slave")
        for b in ("hamq", "ActiveMQ"):
            suite.skip(m, b, "`hamq produce` (failover client) is not available yet")
