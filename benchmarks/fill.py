"""Put N pending 1 KiB persistent messages into a broker's store before a startup or takeover run.

ActiveMQ is filled over STOMP (unreceipted persistent sends from 4 processes, closed by a
receipted send each), then stopped cleanly. hamq is filled through its store API
(``hamq.store.MessageStore``) when that is available, which is much faster than STOMP and
writes the same records the broker writes; otherwise over STOMP like ActiveMQ.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from benchmarks import stomp_load
from benchmarks.suite import Suite

FILL_QUEUE = "pending"


def fill_budget(quick: bool) -> float:
    """Seconds a STOMP fill may take before it stops short (said in the table when it does)."""
    return 240.0 if quick else 420.0


def fill_store(suite: Suite, broker: str, shared: Path, count: int) -> tuple:
    """Add up to ``count`` messages to the store under ``shared``; returns (added, how)."""
    t0 = time.monotonic()
    if broker == "hamq":
        try:
            added, how = fill_hamq_store_api(shared / "kahadb", count)
        except ImportError as exc:
            suite.log(f"   hamq store API unavailable ({exc}); filling over STOMP")
            added, how = fill_over_stomp(suite, broker, shared, count)
    else:
        added, how = fill_over_stomp(suite, broker, shared, count)
    suite.log(f"   filled {added} messages into {broker} store via {how} in {time.monotonic() - t0:.1f}s")
    return added, how


def fill_over_stomp(suite: Suite, broker: str, shared: Path, count: int) -> tuple:
    proc = suite.kinds[broker].node(f"{broker}-fill-{shared.name}", shared)
    try:
        proc.start()
        proc.wait_connect(300)
        added, _ = stomp_load.fill_parallel(proc.port, f"/queue/{FILL_QUEUE}", count,
                                            budget_s=fill_budget(suite.quick))
    finally:
        proc.stop(timeout=120)
    return added, "STOMP (unreceipted persistent sends from 4 processes)"


def fill_hamq_store_api(kahadb: Path, count: int, batch: int = 1000) -> str:
    """Append ``count`` AddMessage records in batches of ``batch`` to a *fresh* store, one sync at the end.

    Only for a store no broker has opened yet: it opens with epoch 0, below any broker's epoch.
    """
    from hamq.store import AddMessage, MessageStore  # imported late: the store may not exist yet

    kahadb.mkdir(parents=True, exist_ok=True)
    store = MessageStore(str(kahadb), sync_strategy="never")
    store.open(epoch=0)
    body = b"x" * 1024
    key = f"queue:{FILL_QUEUE}"  # the engine's key for /queue/<name> (docs/internals.md)
    headers = [("destination", f"/queue/{FILL_QUEUE}"), ("persistent", "true"),
               ("timestamp", str(int(time.time() * 1000)))]
    try:
        done = 0
        while done < count:
            n = min(batch, count - done)
            store.append([AddMessage(key, f"ID:fill-{uuid.uuid4().hex}", headers, body) for _ in range(n)])
            done += n
        store.sync()
    finally:
        store.close()
    return count, "store API (hamq.store.MessageStore)"
