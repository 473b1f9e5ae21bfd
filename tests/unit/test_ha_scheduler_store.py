"""Opening the scheduler's own locked, fenced store (hamq.ha.scheduler_store)."""

import asyncio
from pathlib import Path

import pytest

from hamq.config.model import BrokerConfig, KahaDBConfig, LockerConfig
from hamq.core.scheduler import Scheduler
from hamq.ha import lockfile
from hamq.ha.lockers import load_locker
from hamq.ha.scheduler_store import SchedulerStoreError, check_placement, open_scheduler_store


@pytest.fixture
def config(tmp_path):
    (tmp_path / "kahadb").mkdir()
    return BrokerConfig(broker_name="orders", node_name="b1", data_directory=tmp_path / "data",
                        persistence=KahaDBConfig(directory=tmp_path / "kahadb"))


async def _lease(config, node="b1"):
    return await load_locker(LockerConfig(), config.persistence.directory, {"nodeName": node}).acquire()


def test_open_locks_and_fences_with_the_main_epoch(config):
    async def main():
        lease = await _lease(config)
        store, fd = await open_scheduler_store(config, lease, {"nodeName": "b1"})
        assert fd is not None and lockfile.is_locked(str(config.scheduler_directory / "lock"))
        holder = lockfile.read_holder(str(config.scheduler_directory))
        assert holder["masterEpoch"] == lease.epoch and holder["nodeName"] == "b1"
        assert Scheduler(store).schedule([("destination", "/queue/a"), ("AMQ_SCHEDULED_DELAY", "5")], b"x", 0)
        store.close()
        lockfile.unlock(fd)
        lease.release()

    asyncio.run(main())
    assert check_placement(config) is None


def test_scheduler_dir_of_another_group_is_refused(config, tmp_path):
    async def main():
        lease = await _lease(config)
        other = lockfile.try_lock(lockfile.lock_path(str(_mk(config.scheduler_directory))))
        lockfile.become_master(other, str(config.scheduler_directory), {"kahaDB": str(tmp_path / "x"), "masterEpoch": 7})
        try:
            with pytest.raises(SchedulerStoreError, match="two broker groups share one scheduler directory"):
                await open_scheduler_store(config, lease, {"nodeName": "b1"}, wait_s=0.1)
        finally:
            lockfile.unlock(other)
            lease.release()

    asyncio.run(main())


def test_frozen_predecessor_holding_the_scheduler_lock_is_fenced_not_waited_for(config):
    async def main():
        old = await _lease(config, "b0")
        old_store, old_fd = await open_scheduler_store(config, old, {"nodeName": "b0"})
        # b0 freezes; its main lock file is replaced and b1 becomes master
        (config.persistence.directory / "lock").unlink()
        new = await _lease(config, "b1")
        store, fd = await open_scheduler_store(config, new, {"nodeName": "b1"}, wait_s=0.1)
        assert fd is None  # went on under fencing alone
        from hamq.store import StoreFenced
        with pytest.raises(StoreFenced):
            Scheduler(old_store).schedule([("destination", "/queue/a"), ("AMQ_SCHEDULED_DELAY", "5")], b"x", 0)
        store.close()
        lockfile.unlock(old_fd)
        old.release()
        new.release()

    asyncio.run(main())


def _mk(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_data_directory_on_another_filesystem_is_warned_about(config, tmp_path):
    import os
    import tempfile

    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a second file system (tmpfs on /dev/shm)")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        config.data_directory = Path(other)
        warning = check_placement(config)
    assert "not on the same file system" in warning and "Fix:" in warning
