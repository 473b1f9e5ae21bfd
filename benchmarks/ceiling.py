"""How fast could a receipted persistent send be on this host, whatever the store did?

The throughput goals compare hamq with ActiveMQ through the same stomp.py
client on the same two cores. This measures the ceilings that no store change
can lift, so a missed goal can be told apart from a slow store:

* ``no-op responder``  benchmarks.noop_stomp, which only answers RECEIPTs: the
                      client, loopback TCP and asyncio with no broker work
* ``non-persistent``  hamq, receipt per message, nothing stored: the client's
                      and the broker's round trip alone
* ``tmpfs``           hamq, persistent, journal on tmpfs (/dev/shm): the whole
                      broker path with an fsync that costs nothing
* ``disk``            hamq, persistent, journal on the disk the suite uses
* ``fdatasync``       bare os.write + fdatasync of 1 KiB at the end of a file,
                      and os.pwrite + fdatasync over preallocated space (what
                      the journal does), no Python broker around either

each for 1 producer and for 8 producer processes. Prints msgs/s (median of
the repeats) and the best 1-producer rate the disk allows in theory,
1 / (round trip + bare fdatasync). No pass/fail.

    .venv/bin/python -m benchmarks.ceiling [--repeats 3] [--messages 2000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import stomp_load
from benchmarks.brokers import Hamq, PortAllocator, install_signal_cleanup
from benchmarks.probe import wait_for_connect
from benchmarks.store_latency import raw_run


def _rates(port: int, tag: str, persistent: bool, messages: int, repeats: int) -> tuple:
    one, eight = [], []
    for i in range(repeats):
        n, secs = stomp_load.send_receipted(port, f"/queue/ceiling.{tag}.1.{i}", messages, persistent=persistent)
        one.append(n / secs)
        if persistent:
            n, secs = stomp_load.send_receipted_parallel(port, f"/queue/ceiling.{tag}.8.{i}", 8, messages // 4)
            eight.append(n / secs)
    return statistics.median(one), (statistics.median(eight) if eight else None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000, help="per repeat, 1 producer (8 producers: a quarter each)")
    args = parser.parse_args(argv)
    install_signal_cleanup()
    work = Path(tempfile.mkdtemp(prefix="hamq-ceiling-"))
    shm = Path(tempfile.mkdtemp(prefix="hamq-ceiling-", dir="/dev/shm")) if os.path.isdir("/dev/shm") else None
    ports = PortAllocator()
    kind = Hamq(work, ports)
    rows = []
    try:
        append_us = raw_run(str(work), 1000, "append", 0.0) * 1e6  # median per record
        fsync_us = raw_run(str(work), 1000, "overwrite", 0.0) * 1e6  # preallocated, as the journal writes
        port = ports.take()
        noop = subprocess.Popen([sys.executable, "-m", "benchmarks.noop_stomp", str(port)])
        try:
            if wait_for_connect(port, 30, alive=lambda: noop.poll() is None) is None:
                raise SystemExit("the no-op STOMP responder did not answer CONNECT within 30 s")
            n1, n8 = _rates(port, "noop", True, args.messages, args.repeats)
        finally:
            noop.kill()
            noop.wait()
        rows.append(("no-op responder (no broker work)", n1, n8))
        disk = kind.node("disk", work / "store").start()
        disk.wait_connect(60)
        np1, _ = _rates(disk.port, "np", False, args.messages, args.repeats)
        rows.append(("non-persistent", np1, None))
        d1, d8 = _rates(disk.port, "disk", True, args.messages, args.repeats)
        disk.stop()
        if shm is not None:
            tmpfs = kind.node("tmpfs", shm / "store").start()
            tmpfs.wait_connect(60)
            t1, t8 = _rates(tmpfs.port, "tmpfs", True, args.messages, args.repeats)
            tmpfs.stop()
            rows.append(("persistent, journal on tmpfs", t1, t8))
        rows.append(("persistent, journal on disk", d1, d8))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if shm is not None:
            shutil.rmtree(shm, ignore_errors=True)
    print(f"hamq ceilings on this host, stomp.py client, 1 KiB bodies, median of {args.repeats} repeats")
    print(f"{'':32s} {'1 producer':>12s} {'8 producers':>12s}  (msgs/s)")
    for name, one, eight in rows:
        print(f"{name:32s} {one:12.0f} {'-' if eight is None else str(round(eight)):>12}")
    print(f"bare os.write + fdatasync of 1 KiB at the end of a file (median): {append_us:.0f} us")
    print(f"bare os.pwrite + fdatasync of 1 KiB over preallocated space (median): {fsync_us:.0f} us")
    best = 1.0 / (1.0 / rows[1][1] + fsync_us / 1e6)
    print(f"best 1-producer rate the disk allows: 1 / (round trip + fdatasync) = {best:.0f} msgs/s")
    print(f"load average: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
