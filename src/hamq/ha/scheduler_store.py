"""The scheduler's own store, ``<dataDirectory>/<brokerName>/scheduler``, opened by the master only.

As in ActiveMQ, the job store has its own lock (``scheduler/lock``), taken
after the main lock.  Its writes are fenced with the *main* lease (epoch and
``check_fence``), so a paused ex-master cannot add or fire jobs after a
takeover, and its segments are sealed with the main epoch.

If the scheduler lock is still held when we are already master, the holder is
either our predecessor (still shutting down, or frozen: its record names the
same kahaDB directory and a lower epoch), which fencing keeps out, so we go on
with a warning; or a broker of *another* group that shares this scheduler
directory, which is a configuration error, refused with the fix.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from hamq.ha import lockfile, storage_safety
from hamq.ha.lockers import MasterLease

log = logging.getLogger("hamq.ha")


class SchedulerStoreError(Exception):
    """The scheduler directory cannot be used; the message says why and how to fix it."""


def _existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def same_filesystem(a: Path, b: Path) -> bool:
    """Do ``a`` and ``b`` (or their nearest existing parents) live on one file system?"""
    return os.stat(_existing(a)).st_dev == os.stat(_existing(b)).st_dev


def check_placement(config: Any) -> Optional[str]:
    """A warning when dataDirectory is not on the kahaDB directory's file system, else None.

    The scheduler's jobs must be on the shared storage too, or a takeover loses
    them (ActiveMQ's note: "it is important to tell ActiveMQ expressly where
    to store scheduler information").
    """
    kahadb = Path(config.persistence.directory)
    data = Path(config.data_directory)
    if same_filesystem(kahadb, data):
        return None
    return (
        "dataDirectory %s is not on the same file system as the kahaDB directory %s: scheduled jobs in %s "
        "will not move to the next master on takeover. Fix: put dataDirectory on the shared storage"
        % (data, kahadb, config.scheduler_directory)
    )


async def open_scheduler_store(
    config: Any,
    lease: MasterLease,
    identity: Dict[str, Any],
    wait_s: float = 2.0,
    poll_s: float = 0.05,
) -> Tuple[Any, Optional[int]]:
    """Lock and open the scheduler store for the master that holds ``lease``.

    Returns ``(store, lock_fd)``; close the store, then ``lockfile.unlock(lock_fd)``
    (``lock_fd`` is None when we went on under fencing alone).
    """
    from hamq.store import MessageStore

    warning = check_placement(config)
    if warning:
        log.warning("%s", warning)
    directory = Path(config.scheduler_directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SchedulerStoreError(
            "cannot create the scheduler directory %s: %s. Fix: make dataDirectory writable for the broker's "
            "user" % (directory, exc)
        ) from None
    try:
        storage_safety.enforce(
            str(directory), allow_unsafe=getattr(config.persistence, "allow_unsafe_storage", False), logger=log
        )
    except storage_safety.UnsafeStorageError as exc:
        raise SchedulerStoreError("scheduler directory: %s" % exc) from None

    kahadb = os.path.realpath(str(config.persistence.directory))
    path = lockfile.lock_path(str(directory))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    fd = lockfile.try_lock(path)
    while fd is None and loop.time() < deadline:
        await asyncio.sleep(poll_s)
        fd = lockfile.try_lock(path)
    if fd is None:
        holder = lockfile.read_holder(str(directory)) or {}
        if holder.get("kahaDB") == kahadb and int(holder.get("masterEpoch", -1)) < lease.epoch:
            log.warning(
                "the scheduler lock %s is still held by our predecessor %s (epoch %s); going on: the epoch "
                "fences its writes", path, holder.get("nodeName"), holder.get("masterEpoch"),
            )
        else:
            raise SchedulerStoreError(
                "the scheduler lock %s is held by %s, which is not a previous master of this broker group "
                "(kahaDB %s): two broker groups share one scheduler directory. Fix: give each group its own "
                "brokerName or dataDirectory" % (path, holder or "an unknown process", holder.get("kahaDB"))
            )
    else:
        record = dict(identity)
        record.update({"kahaDB": kahadb, "masterEpoch": lease.epoch})
        lockfile.become_master(fd, str(directory), record)

    # a few scheduled jobs: not worth preallocating, and a takeover reads no fill over NFS
    store = MessageStore(directory, sync_strategy="always", fence=lease.check_fence, preallocate=False)
    try:
        report = store.open(lease.epoch)
    except BaseException:
        if fd is not None:
            lockfile.unlock(fd)
        raise
    log.info("scheduler store %s open: %s", directory, report)
    return store, fd
