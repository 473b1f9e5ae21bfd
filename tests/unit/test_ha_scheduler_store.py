"""Moving a pre-1.1 scheduler store into the journal (hamq.ha.scheduler_store)."""

import asyncio

import pytest
from test_engine_support import Harness, make_config

from hamq.config.model import LockerConfig
from hamq.core.engine import Broker
from hamq.core.scheduler import JOB_ID, JOBS_KEY
from hamq.ha import lockfile
from hamq.ha.lockers import load_locker
from hamq.ha.scheduler_store import SchedulerStoreError, migrate
from hamq.store import AddMessage, MessageStore

T0 = 1_800_000_000.0


@pytest.fixture
def config(tmp_path):
    (tmp_path / "kahadb").mkdir()
    return make_config(tmp_path, scheduler_support=True)


def _lease(config, node="b1"):
    locker = load_locker(LockerConfig(), config.persistence.directory, {"nodeName": node})
    return asyncio.run(locker.acquire())


def _old_store_with_jobs(config, epoch, *job_ids, due_ms=int(T0 * 1000) + 5000):
    """What a pre-1.1 master left in <dataDirectory>/<brokerName>/scheduler."""
    directory = config.scheduler_directory
    directory.mkdir(parents=True, exist_ok=True)
    store = MessageStore(directory, preallocate=False)
    store.open(epoch)
    for job_id in job_ids:
        headers = [("destination", "/queue/later"), ("AMQ_SCHEDULED_DELAY", "5000"), (JOB_ID, job_id),
                   ("x-hamq-sched-next-ms", str(due_ms)), ("x-hamq-sched-fired", "0")]
        store.append([AddMessage(JOBS_KEY, f"{job_id}#0", headers, job_id.encode())])
    store.close()


def _main_store(config, lease):
    store = MessageStore(config.persistence.directory)
    store.open(lease.epoch)
    return store


def test_jobs_of_an_old_scheduler_store_move_into_the_journal_and_fire(config):
    _old_store_with_jobs(config, 1, "job-a", "job-b")
    lease = _lease(config)
    store = _main_store(config, lease)
    assert migrate(config, store, lease) == 2
    assert not config.scheduler_directory.exists()
    assert (config.scheduler_directory.parent / f"scheduler.migrated-{lease.epoch}").is_dir()  # kept, not deleted
    h = Harness(broker=Broker(config, store=store))
    h.clock.now = T0
    h.broker.recover()
    assert len(h.broker.scheduler) == 2
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/later", id="s", ack="auto")
    h.clock.now = T0 + 6
    h.broker.tick(h.clock.now)
    h.pump()
    assert sorted(f.body for f in h.take("c", "MESSAGE")) == [b"job-a", b"job-b"]
    store.close()
    lease.release()


def test_a_move_cut_short_before_the_rename_copies_no_job_twice(config):
    _old_store_with_jobs(config, 1, "job-a", "job-b")
    lease = _lease(config)
    store = _main_store(config, lease)
    old = MessageStore(config.scheduler_directory, preallocate=False)
    old.open(lease.epoch)
    first = next(iter(old.iter_pending(JOBS_KEY)))
    job = old.read(first)
    old.close()
    store.append([AddMessage(JOBS_KEY, job.message_id, list(job.headers), job.body)])  # copied, then "killed"
    assert migrate(config, store, lease) == 1
    assert len(list(store.iter_pending(JOBS_KEY))) == 2
    store.close()
    lease.release()


def test_no_old_store_means_nothing_to_do(config):
    lease = _lease(config)
    store = _main_store(config, lease)
    assert migrate(config, store, lease) == 0
    store.close()
    lease.release()


def test_an_old_scheduler_directory_of_another_group_is_refused(config, tmp_path):
    _old_store_with_jobs(config, 1, "job-a")
    other = lockfile.try_lock(lockfile.lock_path(str(config.scheduler_directory)))
    lockfile.become_master(other, str(config.scheduler_directory), {"kahaDB": str(tmp_path / "x"), "masterEpoch": 7})
    lease = _lease(config)
    store = _main_store(config, lease)
    try:
        with pytest.raises(SchedulerStoreError, match="two broker groups share one scheduler directory"):
            migrate(config, store, lease)
        assert config.scheduler_directory.is_dir()  # untouched
    finally:
        lockfile.unlock(other)
        store.close()
        lease.release()


def test_a_predecessor_still_holding_the_old_lock_is_fenced_not_waited_for(config):
    _old_store_with_jobs(config, 1, "job-a")
    held = lockfile.try_lock(lockfile.lock_path(str(config.scheduler_directory)))
    kahadb = str(config.persistence.directory.resolve())
    lockfile.become_master(held, str(config.scheduler_directory), {"kahaDB": kahadb, "masterEpoch": 0})
    lease = _lease(config)
    store = _main_store(config, lease)
    try:
        assert migrate(config, store, lease) == 1
    finally:
        lockfile.unlock(held)
        store.close()
        lease.release()
