"""Per-message latency of a persistent send in the journal store: append one batch, then fsync it.

This is the path a single producer with receipts waits on (``journalDiskSyncStrategy="always"``).
It compares, interleaved so that host noise hits all of them alike:

* ``store/append``      MessageStore with preallocation switched off (every fsync extends the file)
* ``store/prealloc``    MessageStore as shipped (fsyncs overwrite preallocated blocks)
* ``raw/append``        os.write + fdatasync at the end of a file
* ``raw/overwrite``     os.pwrite + fdatasync into a zero-written, fsynced file
* ``raw/o_dsync``       os.pwrite into such a file opened with O_DSYNC (one syscall; no group commit possible)

Prints medians over the repeats; there is no pass/fail.

    .venv/bin/python -m benchmarks.store_latency [--messages 2000] [--repeats 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

from hamq.store import AddMessage, MessageStore

BODY = b"x" * 1024


def store_run(directory: str, n: int, preallocate: bool) -> float:
    """Seconds per message for append + sync through MessageStore."""
    d = tempfile.mkdtemp(prefix="store-", dir=directory)
    try:
        store = MessageStore(d, sync_strategy="always", checkpoint_interval_ms=3_600_000)
        store._journal.preallocate = preallocate
        store.open(epoch=1)
        headers = [("destination", "/queue/bench"), ("persistent", "true")]
        t0 = time.perf_counter()
        for i in range(n):
            lsn = store.append([AddMessage("queue:bench", f"m-{i}", headers, BODY)])
            if store.sync() < lsn:
                raise RuntimeError("sync did not make the batch durable")
        took = time.perf_counter() - t0
        store.close(checkpoint=False)
        return took / n
    finally:
        shutil.rmtree(d, ignore_errors=True)


def raw_run(directory: str, n: int, mode: str) -> float:
    """Seconds per 1 KiB record for the bare syscalls of one strategy."""
    path = os.path.join(directory, f"raw-{mode}")
    record = b"r" * (BATCH_BYTES := 1024 + 120)
    flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC
    if mode == "o_dsync":
        flags |= os.O_DSYNC
    fd = os.open(path, flags, 0o644)
    try:
        if mode != "append":
            zeros = bytes(1 << 20)
            for off in range(0, n * BATCH_BYTES + len(zeros), len(zeros)):
                os.pwrite(fd, zeros, off)
            os.fsync(fd)
        t0 = time.perf_counter()
        off = 0
        for _ in range(n):
            if mode == "append":
                os.write(fd, record)
                os.fdatasync(fd)
            elif mode == "overwrite":
                os.pwrite(fd, record, off)
                os.fdatasync(fd)
            else:
                os.pwrite(fd, record, off)
            off += len(record)
        return (time.perf_counter() - t0) / n
    finally:
        os.close(fd)
        os.unlink(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=2000, help="messages per run (default 2000)")
    ap.add_argument("--repeats", type=int, default=5, help="runs per variant (default 5)")
    ap.add_argument("--dir", default=None, help="directory on the file system to measure (default: temp dir)")
    ap.add_argument("--no-raw", action="store_true", help="skip the bare-syscall variants")
    args = ap.parse_args(argv)
    base = tempfile.mkdtemp(prefix="hamq-store-latency-", dir=args.dir)
    variants = {
        "store/append": lambda: store_run(base, args.messages, False),
        "store/prealloc": lambda: store_run(base, args.messages, True),
    }
    if not args.no_raw:
        for mode in ("append", "overwrite", "o_dsync"):
            variants[f"raw/{mode}"] = (lambda m: lambda: raw_run(base, args.messages, m))(mode)
    results = {name: [] for name in variants}
    try:
        for _ in range(args.repeats):
            for name, run in variants.items():
                results[name].append(run())
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"append+fsync per message, 1 writer, {args.messages} messages x {args.repeats} runs, in {args.dir or 'tmp'}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    ref = statistics.median(results["store/append"])
    for name, vals in results.items():
        med = statistics.median(vals)
        runs = " ".join(f"{v * 1e6:.0f}" for v in vals)
        print(f"  {name:15s} median {med * 1e6:8.0f} us/msg  {1 / med:7.0f} msg/s  "
              f"x{ref / med:4.2f} vs store/append   runs(us): {runs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
