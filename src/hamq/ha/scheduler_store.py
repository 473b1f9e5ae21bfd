"""Moving a pre-1.1 scheduler store into the journal, once, when a new master starts.

hamq before 1.1 kept scheduled jobs in a store of their own under
``<dataDirectory>/<brokerName>/scheduler`` with its own lock (ActiveMQ's
layout). Jobs now live in the kahaDB journal itself, so that a job and the
message it fires, or a job and the transaction that made it, are one atomic
batch (see hamq.core.scheduler). A master that finds the old store copies
every job into the journal, makes that durable, and only then renames the old
directory to ``scheduler.migrated-<epoch>``: a crash in between leaves the old
store in place and the next master copies again, skipping the jobs the journal
already holds (same job id). Nothing is deleted.

The old store is opened under its own lock and fenced by the main lease, as
before, so a paused pre-1.1 master cannot add to it meanwhile; if its lock is
still held by our predecessor (same kahaDB directory, a lower epoch), the
epoch fences it and we go on.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Optional

from hamq.ha import lockfile

log = logging.getLogger("hamq.ha")

#: How long to wait for the old scheduler lock of a predecessor that is still shutting down.
LOCK_WAIT_S = 2.0


class SchedulerStoreError(Exception):
    """The old scheduler directory cannot be moved; the message says why and how to fix it."""


def migrate(config: Any, store, lease) -> int:
    """Copy the jobs of a pre-1.1 scheduler store into ``store`` (the open main store); returns how many.

    Blocking file I/O: run it in a worker thread. Does nothing when there is no old store.
    """
    from hamq.core.scheduler import JOB_ID, JOBS_KEY
    from hamq.store import AddMessage, MessageStore
    from hamq.store.journal import list_segments

    directory = Path(config.scheduler_directory)
    try:
        if not directory.is_dir() or not list_segments(str(directory)):
            return 0
    except OSError as exc:
        raise SchedulerStoreError(
            "cannot read the old scheduler directory %s: %s. Fix: make it readable for the broker's user, or "
            "move it away if its jobs are not wanted" % (directory, exc)) from None
    fd = _lock(directory, config, lease)
    try:
        old = MessageStore(directory, sync_strategy="always", fence=lease.check_fence if lease else None,
                           preallocate=False)
        old.open(lease.epoch if lease is not None else 0)
        try:
            have = {_job_id(store.read(ref), JOB_ID) for ref in store.iter_pending(JOBS_KEY)}
            ops = []
            for ref in old.iter_pending(JOBS_KEY):
                job = old.read(ref)
                if _job_id(job, JOB_ID) in have:
                    continue
                have.add(_job_id(job, JOB_ID))
                ops.append(AddMessage(JOBS_KEY, job.message_id, list(job.headers), job.body))
            if ops:
                store.append(ops)
            store.sync()  # durable before the old store is renamed away
        finally:
            old.close(checkpoint=False)
    finally:
        if fd is not None:
            lockfile.unlock(fd)
    target = directory.with_name("%s.migrated-%s" % (directory.name, lease.epoch if lease is not None else
                                                      time.strftime("%Y%m%dT%H%M%S")))
    os.replace(directory, target)
    log.info("moved %d scheduled jobs from the pre-1.1 scheduler store %s into the journal; the old store is "
             "kept as %s", len(ops), directory, target)
    return len(ops)


def _job_id(stored, job_id_header: str) -> str:
    return next((v for k, v in stored.headers if k == job_id_header), stored.message_id.rsplit("#", 1)[0])


def _lock(directory: Path, config: Any, lease) -> Optional[int]:
    """The old scheduler lock; None when our predecessor still holds it (the epoch fences it)."""
    path = lockfile.lock_path(str(directory))
    deadline = time.monotonic() + LOCK_WAIT_S
    fd = lockfile.try_lock(path)
    while fd is None and time.monotonic() < deadline:
        time.sleep(0.05)
        fd = lockfile.try_lock(path)
    if fd is not None:
        return fd
    holder = lockfile.read_holder(str(directory)) or {}
    kahadb = os.path.realpath(str(config.persistence.directory))
    epoch = lease.epoch if lease is not None else 0
    if holder.get("kahaDB") == kahadb and int(holder.get("masterEpoch", -1)) < epoch:
        log.warning("the old scheduler lock %s is still held by our predecessor %s (epoch %s); going on: the "
                    "epoch fences its writes", path, holder.get("nodeName"), holder.get("masterEpoch"))
        return None
    raise SchedulerStoreError(
        "the old scheduler lock %s is held by %s, which is not a previous master of this broker group (kahaDB "
        "%s): two broker groups share one scheduler directory. Fix: give each group its own brokerName or "
        "dataDirectory" % (path, holder or "an unknown process", holder.get("kahaDB")))
