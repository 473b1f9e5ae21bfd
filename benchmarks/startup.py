"""Startup time (process start -> CONNECT accepted) and RSS with 0, 100k and 1M pending messages.

ActiveMQ's store is filled cumulatively over STOMP (0, then up to 100k, then up to 1M); hamq's
is filled fresh per size through its store API. The broker is restarted on it a few times per size; RSS is VmRSS of the broker process read right after the first
successful CONNECT and again one second later (the larger of the two is reported).
"""

from __future__ import annotations

import time

from benchmarks import fill
from benchmarks.suite import Suite


def sizes(quick: bool) -> list:
    return [0, 10_000, 100_000] if quick else [0, 100_000, 1_000_000]


def metric_names(quick: bool) -> list:
    out = []
    for n in sizes(quick):
        out += [f"startup_{label(n)}", f"rss_{label(n)}"]
    return out


def label(n: int) -> str:
    if n >= 1_000_000:
        return f"{n // 1_000_000}M"
    if n >= 1000:
        return f"{n // 1000}k"
    return str(n)


def repeats(quick: bool) -> int:
    return 2 if quick else 3


def run(suite: Suite) -> None:
    r = repeats(suite.quick)
    suite.notes["startup"] = (
        f"{r} starts per store size; startup = process start to first CONNECTED; RSS = max VmRSS "
        "at CONNECT and 1 s later. Every start follows a clean stop (SIGTERM), so both brokers start "
        "from a checkpointed store. hamq's store is filled through hamq.store.MessageStore (fresh "
        "store per size, closed cleanly), ActiveMQ's over STOMP (unreceipted persistent sends from 4 "
        "processes, each closed by a receipted send); hamq's recovered depth is checked in /status. "
        "ActiveMQ runs with the Debian package's -Xms512M -Xmx512M."
    )
    for broker in ("hamq", "ActiveMQ", "coilmq"):
        metrics = metric_names(suite.quick)
        if suite.skip_unavailable(metrics, broker):
            continue
        shared = suite.dir(f"{broker}-startup-store")
        filled = 0
        how = None
        for n in sizes(suite.quick):
            mt, mr = f"startup_{label(n)}", f"rss_{label(n)}"
            if broker == "coilmq" and n:
                suite.na(mt, broker, "coilmq measured with an empty store only")
                suite.na(mr, broker, "coilmq measured with an empty store only")
                continue
            try:
                if broker == "hamq" and n > filled:
                    # The store API fills fresh stores only (epoch 0), so each size gets its own.
                    shared = suite.dir(f"{broker}-startup-store")
                    filled = 0
                if n > filled:
                    added, how = fill.fill_store(suite, broker, shared, n - filled)
                    filled += added
                times, rss, depth = [], [], None
                for i in range(r):
                    proc = suite.kinds[broker].node(f"{broker}-startup-{label(n)}", shared)
                    try:
                        proc.start()
                        secs = proc.wait_connect(600)
                        first = proc.rss_mib()
                        time.sleep(1.0)
                        second = proc.rss_mib()
                        if broker == "hamq":
                            depth = _hamq_depth(suite, proc)
                    finally:
                        proc.stop(timeout=120)
                    times.append(secs)
                    rss.append(max(x for x in (first, second) if x is not None))
                    suite.log(f"   {broker:8s} pending={filled:>9,d} start {i + 1}: {secs:6.2f} s, "
                              f"RSS {rss[-1]:7.1f} MiB" + (f", /status depth {depth}" if depth is not None else ""))
                extra = {"pending": filled, "fill": how if n else None}
                if depth is not None:
                    extra["depth_seen"] = depth
                    if depth != filled:
                        extra["note"] = f"hamq's /status showed {depth:,} pending messages, {filled:,} were stored"
                        suite.log("!! " + extra["note"])
                if filled < n:
                    extra["note"] = (f"{broker} store held {filled:,} of {n:,} messages: the STOMP fill "
                                           f"stopped at its {fill.fill_budget(suite.quick):.0f} s budget")
                    suite.log("!! " + extra["note"])
                suite.ok(mt, broker, times, "s", **extra)
                suite.ok(mr, broker, rss, "MiB", **extra)
            except Exception as exc:  # noqa: BLE001 - record, then try the next broker
                reason = exc
                for n2 in sizes(suite.quick):
                    for m in (f"startup_{label(n2)}", f"rss_{label(n2)}"):
                        if m not in suite.results or broker not in suite.results[m]:
                            suite.fail(m, broker, reason)
                break


def _hamq_depth(suite: Suite, proc) -> int | None:
    """Pending messages hamq reports in /status: proves the filled store was really recovered."""
    status = suite.kinds["hamq"].status(proc)
    if not status:
        return None
    return sum(int(d.get("depth") or 0) for d in status.get("destinations", []))
