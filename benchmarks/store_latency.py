"""Per-message latency of a persistent send in the journal store: append one batch, then fsync it.

This is the path a single producer with receipts waits on (``journalDiskSyncStrategy="always"``).
It compares, interleaved so that host noise hits all of them alike:

* ``store/append``      MessageStore.append + sync, as shipped (each fsync extends the file)
* ``raw/append``        os.write + fdatasync at the end of a file (what the store does, without Python around it)
* ``raw/overwrite``     os.pwrite + fdatasync into a zero-written, fsynced file (preallocated segments)
* ``raw/fallocate``     os.pwrite + fdatasync into a posix_fallocate'd file (unwritten extents)
* ``raw/o_dsync``       os.pwrite into a zero-written file opened with O_DSYNC (one syscall; but every
                        write then syncs on its own, so producers could no longer share an fsync)

``--gap-ms`` sleeps between messages, as a producer waiting for its RECEIPT does; a tight loop and
a loop with gaps can rank the variants differently.  Prints medians over the repeats; no pass/fail.

    .venv/bin/python -m benchmarks.store_latency [--messages 2000] [--repeats 5] [--gap-ms 0] [--dir DIR]
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


def store_run(directory: str, n: int, gap: float) -> float:
    """Median seconds per message for append + sync through MessageStore."""
    d = tempfile.mkdtemp(prefix="store-", dir=directory)
    try:
        store = MessageStore(d, sync_strategy="always", checkpoint_interval_ms=3_600_000)
        store.open(epoch=1)
        headers = [("destination", "/queue/bench"), ("persistent", "true")]
        lat = []
        for i in range(n):
            t0 = time.perf_counter()
            lsn = store.append([AddMessage("queue:bench", f"m-{i}", headers, BODY)])
            if store.sync() < lsn:
                raise RuntimeError("sync did not make the batch durable")
            lat.append(time.perf_counter() - t0)
            if gap:
                time.sleep(gap)
        store.close(checkpoint=False)
        return statistics.median(lat)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def raw_run(directory: str, n: int, mode: str, gap: float) -> float:
    """Median seconds per 1 KiB record for the bare syscalls of one strategy."""
    path = os.path.join(directory, f"raw-{mode}")
    record = b"r" * (BATCH_BYTES := 1024 + 120)
    flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC
    if mode == "o_dsync":
        flags |= os.O_DSYNC
    fd = os.open(path, flags, 0o644)
    try:
        if mode == "fallocate":
            os.posix_fallocate(fd, 0, n * BATCH_BYTES + (1 << 20))
            os.fsync(fd)
        elif mode != "append":
            zeros = bytes(1 << 20)
            for off in range(0, n * BATCH_BYTES + len(zeros), len(zeros)):
                os.pwrite(fd, zeros, off)
            os.fsync(fd)
        lat = []
        off = 0
        for _ in range(n):
            t0 = time.perf_counter()
            if mode == "append":
                os.write(fd, record)
                os.fdatasync(fd)
            elif mode in ("overwrite", "fallocate"):
                os.pwrite(fd, record, off)
                os.fdatasync(fd)
            else:
                os.pwrite(fd, record, off)
            lat.append(time.perf_counter() - t0)
            off += len(record)
            if gap:
                time.sleep(gap)
        return statistics.median(lat)
    finally:
        os.close(fd)
        os.unlink(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=2000, help="messages per run (default 2000)")
    ap.add_argument("--repeats", type=int, default=5, help="runs per variant (default 5)")
    ap.add_argument("--gap-ms", type=float, default=0.0, help="pause between messages (default 0)")
    ap.add_argument("--dir", default=None, help="directory on the file system to measure (default: temp dir)")
    ap.add_argument("--no-raw", action="store_true", help="skip the bare-syscall variants")
    args = ap.parse_args(argv)
    base = tempfile.mkdtemp(prefix="hamq-store-latency-", dir=args.dir)
    gap = args.gap_ms / 1000.0
    variants = {"store/append": lambda: store_run(base, args.messages, gap)}
    if not args.no_raw:
        for mode in ("append", "overwrite", "fallocate", "o_dsync"):
            variants[f"raw/{mode}"] = (lambda m: lambda: raw_run(base, args.messages, m, gap))(mode)
    results = {name: [] for name in variants}
    try:
        for _ in range(args.repeats):
            for name, run in variants.items():
                results[name].append(run())
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"append+fsync latency per message, 1 writer, {args.messages} messages x {args.repeats} runs, "
          f"gap {args.gap_ms:g} ms, in {args.dir or 'tmp'}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    ref = statistics.median(results["store/append"])
    for name, vals in results.items():
        med = statistics.median(vals)
        runs = " ".join(f"{v * 1e6:.0f}" for v in vals)
        print(f"  {name:15s} median {med * 1e6:8.0f} us/msg  x{ref / med:4.2f} faster than store/append   "
              f"per-run medians (us): {runs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
