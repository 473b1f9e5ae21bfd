"""Throughput over STOMP with 1 KiB bodies: receipted persistent sends (1 and 8 producers),
client-individual consume, non-persistent send.

All three brokers run at once and the repeats are interleaved (repeat 1 on every broker, then
repeat 2, ...), so that a noisy neighbour on the shared machine hurts each broker alike.
"""

from __future__ import annotations

import traceback

from benchmarks import stomp_load
from benchmarks.suite import BROKERS, Suite, describe_error

METRICS = ("send_persistent_1", "send_persistent_8", "consume_individual", "send_nonpersistent")


def sizes(quick: bool) -> dict:
    if quick:
        return {"repeats": 3, "send1": 500, "send8": 100, "consume": 2000, "nonpersistent": 5000}
    return {"repeats": 5, "send1": 1000, "send8": 200, "consume": 5000, "nonpersistent": 10000}


def run(suite: Suite) -> None:
    sz = sizes(suite.quick)
    suite.notes["throughput"] = (
        f"{sz['repeats']} interleaved repeats; per repeat: {sz['send1']} receipted persistent sends "
        f"(1 producer), 8 producer processes x {sz['send8']}, {sz['consume']} messages consumed with "
        f"client-individual ACK (prefetch 1000) after an unreceipted persistent prefill, "
        f"{sz['nonpersistent']} non-persistent sends closed by one receipted send."
    )
    brokers = {}
    for name in BROKERS:
        if suite.skip_unavailable(METRICS, name):
            continue
        try:
            kind = suite.kinds[name]
            proc = kind.node(f"{name}-tput", suite.dir(f"{name}-tput-store"))
            brokers[name] = proc.start()
            proc.wait_connect(90)
        except Exception as exc:  # noqa: BLE001 - one broker failing must not stop the others
            for m in METRICS:
                suite.fail(m, name, exc)
            brokers.pop(name, None)
    samples = {(m, b): [] for m in METRICS for b in brokers}
    failed: dict = {}
    try:
        for rep in range(sz["repeats"]):
            for name, proc in brokers.items():
                version = "1.1" if name == "coilmq" else "1.2"
                for metric in METRICS:
                    if (metric, name) in failed:
                        continue
                    if not proc.alive():
                        failed[(metric, name)] = f"broker process died (exit {proc.popen.returncode})"
                        continue
                    try:
                        n, secs = _step(metric, proc.port, rep, version, sz)
                        samples[(metric, name)].append(n / secs)
                        suite.log(f"   {metric:20s} {name:8s} repeat {rep + 1}: {n / secs:9.0f} msgs/s")
                    except Exception as exc:  # noqa: BLE001
                        traceback.print_exc()
                        failed[(metric, name)] = describe_error(exc) + broker_side(proc)
    finally:
        for proc in brokers.values():
            proc.stop()
    for (metric, name), values in samples.items():
        if (metric, name) in failed:
            suite.fail(metric, name, f"{failed[(metric, name)]} (after {len(values)} good repeats)")
        else:
            suite.ok(metric, name, values, "msgs/s")


def _step(metric: str, port: int, rep: int, version: str, sz: dict) -> tuple:
    """Run one measurement; returns (messages, seconds). Each repeat uses fresh queues."""
    if metric == "send_persistent_1":
        return stomp_load.send_receipted(port, f"/queue/send1-{rep}", sz["send1"], True, version)
    if metric == "send_persistent_8":
        return stomp_load.send_receipted_parallel(port, f"/queue/send8-{rep}", 8, sz["send8"], version)
    if metric == "consume_individual":
        queue = f"/queue/consume-{rep}"
        stomp_load.send_unreceipted(port, queue, sz["consume"], True, version)
        return stomp_load.consume_individual(port, queue, sz["consume"], 1000, version)
    if metric == "send_nonpersistent":
        return stomp_load.send_unreceipted(port, f"/queue/nonpersistent-{rep}", sz["nonpersistent"], False, version)
    raise ValueError(metric)


def broker_side(proc) -> str:
    """The broker's own last error line, so a dropped connection is explained in the table."""
    lines = [ln.strip() for ln in proc.log_text().splitlines()
             if ("Error" in ln or "Exception" in ln or "ERROR" in ln) and ln.strip()]
    return f"; broker log: {lines[-1][:200]}" if lines else ""
