"""The shared-file locker and the locker registry (hamq.ha.shared_file, hamq.ha.lockers)."""

import asyncio
import os

import pytest

from hamq.config.model import LockerConfig
from hamq.ha import lockfile, shared_file
from hamq.ha.lockers import LockedError, LockerError, available_lockers, load_locker
from hamq.ha.shared_file import SharedFileLease, SharedFileLocker
from hamq.store.errors import StoreFenced


def _locker(directory, node, **kw):
    cfg = LockerConfig(lock_acquire_sleep_interval_ms=20, lock_keep_alive_period_ms=30, **kw)
    return load_locker(cfg, directory, {"nodeName": node, "brokerName": "orders"})


def test_default_locker_is_shared_file(tmp_path):
    assert "shared-file" in available_lockers()
    assert isinstance(load_locker(LockerConfig(), tmp_path, {"nodeName": "a"}), SharedFileLocker)
    assert isinstance(load_locker(LockerConfig(type="shared-file-locker"), tmp_path, {}), SharedFileLocker)


def test_unknown_locker_names_the_available_ones(tmp_path):
    with pytest.raises(LockerError) as err:
        load_locker(LockerConfig(type="jdbc-locker"), tmp_path, {})
    assert "unknown locker 'jdbc-locker'" in str(err.value)
    assert "shared-file" in str(err.value) and "Fix:" in str(err.value)


def test_keep_alive_period_zero_is_refused(tmp_path):
    with pytest.raises(LockerError, match="AMQ-4705"):
        load_locker(LockerConfig(lock_keep_alive_period_ms=0), tmp_path, {})


def test_missing_directory_is_a_clear_error(tmp_path):
    locker = _locker(tmp_path / "absent", "a")
    with pytest.raises(LockerError, match="does not exist"):
        asyncio.run(locker.acquire())


def test_first_broker_becomes_master_with_epoch_one(tmp_path):
    async def main():
        lease = await _locker(tmp_path, "b1").acquire()
        assert isinstance(lease, SharedFileLease)
        assert lease.epoch == 1 and lease.record["nodeName"] == "b1"
        assert lockfile.lock_state(str(tmp_path))["held"] is True
        lease.release()
        lease.release()  # twice is harmless
        assert lockfile.lock_state(str(tmp_path))["held"] is False

    asyncio.run(main())


def test_fail_if_locked_names_the_holder(tmp_path):
    async def main():
        lease = await _locker(tmp_path, "b1").acquire()
        try:
            with pytest.raises(LockedError) as err:
                await _locker(tmp_path, "b2", fail_if_locked=True).acquire()
            assert "b1" in str(err.value) and "failIfLocked" in str(err.value)
        finally:
            lease.release()

    asyncio.run(main())


def test_slave_waits_then_takes_over_with_next_epoch(tmp_path):
    async def main():
        lease1 = await _locker(tmp_path, "b1").acquire()
        waiting = []
        slave = asyncio.ensure_future(_locker(tmp_path, "b2").acquire(on_waiting=waiting.append))
        await asyncio.sleep(0.1)
        assert not slave.done()
        assert waiting and waiting[0]["nodeName"] == "b1"
        lease1.release()
        lease2 = await asyncio.wait_for(slave, 30)
        assert lease2.epoch == 2 and lockfile.read_holder(str(tmp_path))["nodeName"] == "b2"
        lease2.release()

    asyncio.run(main())


def test_cancelled_slave_does_not_keep_the_lock(tmp_path):
    async def main():
        lease1 = await _locker(tmp_path, "b1").acquire()
        slave = asyncio.ensure_future(_locker(tmp_path, "b2").acquire())
        await asyncio.sleep(0.1)
        slave.cancel()
        await asyncio.sleep(0)
        lease1.release()
        # the abandoned waiter's thread gets the lock and must give it back
        lease3 = await asyncio.wait_for(_locker(tmp_path, "b3").acquire(), 30)
        assert lease3.record["nodeName"] == "b3"
        lease3.release()

    asyncio.run(main())


def test_keep_alive_reports_a_deleted_lock_file(tmp_path):
    async def main():
        lease = await _locker(tmp_path, "b1").acquire()
        lost = []
        task = asyncio.ensure_future(lease.keep_alive(lost.append))
        await asyncio.sleep(0.1)
        assert lost == [] and not task.done()  # healthy while nothing happens
        os.unlink(lockfile.lock_path(str(tmp_path)))
        await asyncio.wait_for(task, 30)
        assert len(lost) == 1 and "deleted" in lost[0]
        assert lease.lost_reason == lost[0]
        lease.release()

    asyncio.run(main())


def test_keep_alive_ends_quietly_on_release(tmp_path):
    async def main():
        lease = await _locker(tmp_path, "b1").acquire()
        lost = []
        task = asyncio.ensure_future(lease.keep_alive(lost.append))
        await asyncio.sleep(0.05)
        lease.release()
        await asyncio.wait_for(task, 30)
        assert lost == []

    asyncio.run(main())


def test_check_fence_passes_for_the_master_and_fails_after_takeover(tmp_path):
    async def main():
        lease1 = await _locker(tmp_path, "b1").acquire()
        lease1.check_fence()  # we are master: no exception
        # a paused master whose lock was handed over: the lock file is replaced and b2 becomes master
        os.unlink(lockfile.lock_path(str(tmp_path)))
        lease2 = await _locker(tmp_path, "b2").acquire()
        lease2.check_fence()
        with pytest.raises(StoreFenced, match="epoch 2 is not ours"):
            lease1.check_fence()
        assert "replaced" in lease1.probe() or "deleted" in lease1.probe() or "epoch" in lease1.probe()
        lease1.release()
        lease2.release()
        with pytest.raises(StoreFenced):
            lease2.check_fence()

    asyncio.run(main())


def test_check_fence_refuses_when_the_epoch_file_is_damaged(tmp_path):
    async def main():
        lease = await _locker(tmp_path, "b1").acquire()
        (tmp_path / "epoch").write_text("oops\n")
        with pytest.raises(StoreFenced, match="cannot read the epoch"):
            lease.check_fence()
        lease.release()

    asyncio.run(main())


def _count_epoch_reads(monkeypatch):
    reads = []
    real = lockfile.read_epoch_file

    def counting(directory):
        reads.append(directory)
        return real(directory)

    monkeypatch.setattr(lockfile, "read_epoch_file", counting)
    return reads


def test_on_a_local_fs_the_fence_rereads_the_epoch_file_only_when_its_stat_changed(tmp_path, monkeypatch):
    monkeypatch.setattr(shared_file, "FENCE_STAT_SETTLE_S", -1.0)  # trust even a brand-new file
    reads = _count_epoch_reads(monkeypatch)

    async def main():
        lease1 = await _locker(tmp_path, "b1").acquire()
        assert lease1.fence_by_stat  # pytest's tmp_path is on a local file system
        reads.clear()  # acquiring read it too
        lease1.check_fence()
        lease1.check_fence()
        lease1.check_fence()
        assert len(reads) == 1  # read once, then the unchanged stat answers
        os.unlink(lockfile.lock_path(str(tmp_path)))
        lease2 = await _locker(tmp_path, "b2").acquire()  # replaces the epoch file by rename
        with pytest.raises(StoreFenced, match="epoch 2 is not ours"):
            lease1.check_fence()
        lease2.check_fence()
        epoch_file = tmp_path / "epoch"
        with open(epoch_file, "r+b") as f:  # a write in place, not a rename
            f.write(b"7")
        with pytest.raises(StoreFenced, match="epoch 7 is not ours"):
            lease2.check_fence()
        lease1.release()
        lease2.release()

    asyncio.run(main())


def test_a_fresh_epoch_file_is_reread_at_every_fence_check(tmp_path, monkeypatch):
    reads = _count_epoch_reads(monkeypatch)

    async def main():
        lease = await _locker(tmp_path, "b1").acquire()
        reads.clear()
        for _ in range(3):
            lease.check_fence()
        assert len(reads) == 3  # written just now: its ctime could repeat within one timestamp tick
        lease.release()

    asyncio.run(main())


def test_without_stat_trust_the_fence_reads_the_epoch_file_every_time(tmp_path, monkeypatch):
    monkeypatch.setattr(shared_file, "FENCE_STAT_SETTLE_S", -1.0)
    reads = _count_epoch_reads(monkeypatch)

    async def main():
        locker = _locker(tmp_path, "b1")
        locker.fence_by_stat = False  # what NFS, GFS2 and unknown file systems get
        lease = await locker.acquire()
        reads.clear()
        for _ in range(3):
            lease.check_fence()
        assert len(reads) == 3
        lease.release()

    asyncio.run(main())


def test_only_a_recreated_lock_file_makes_the_new_master_wait(tmp_path):
    async def main():
        first = await _locker(tmp_path, "b1").acquire()
        assert first.stale_master_wait_s == 0  # first start ever: nobody to wait for
        first.release()
        normal = await _locker(tmp_path, "b2").acquire()
        assert normal.stale_master_wait_s == 0  # the previous master's lock file is there: plain takeover
        # the lock file vanishes under the live master b2; b3 must not serve next to it
        os.unlink(lockfile.lock_path(str(tmp_path)))
        third = await _locker(tmp_path, "b3").acquire()
        assert third.stale_master_wait_s > 0
        assert "replaced" in normal.probe()  # b2's keep-alive sees it has been superseded
        normal.release()
        third.release()

    asyncio.run(main())


def test_slave_waiting_on_a_deleted_lock_file_moves_to_the_new_one(tmp_path):
    async def main():
        frozen = await _locker(tmp_path, "frozen").acquire()  # a paused master: never releases
        slave = asyncio.ensure_future(_locker(tmp_path, "b2").acquire())
        await asyncio.sleep(0.1)
        assert not slave.done()
        os.unlink(lockfile.lock_path(str(tmp_path)))  # the frozen master's file goes away
        lease = await asyncio.wait_for(slave, 30)
        assert lease.record["nodeName"] == "b2" and lease.epoch == 2
        with pytest.raises(StoreFenced):
            frozen.check_fence()
        lease.release()
        frozen.release()

    asyncio.run(main())


def test_on_nfs_a_slave_also_probes_so_a_slow_blocked_wait_does_not_delay_takeover(tmp_path, monkeypatch):
    # The NFS client wakes a blocked lock request freed by lease expiry only on
    # its own 30 s retry timer; model that with a blocking wait that never returns.
    import threading

    from hamq.ha import shared_file

    never = threading.Event()

    def stuck_blocking_wait(path):
        never.wait(5)
        raise OSError("test: blocked wait abandoned")

    async def main():
        lease1 = await _locker(tmp_path, "b1").acquire()
        monkeypatch.setattr(shared_file.lockfile, "lock_blocking", stuck_blocking_wait)
        locker = _locker(tmp_path, "b2")
        locker.probe_while_waiting = True
        slave = asyncio.ensure_future(locker.acquire())
        await asyncio.sleep(0.1)
        assert not slave.done()
        lease1.release()
        lease2 = await asyncio.wait_for(slave, 2)  # the probe got it, not the stuck wait
        assert lease2.epoch == 2 and lockfile.read_holder(str(tmp_path))["nodeName"] == "b2"
        lease2.release()
        never.set()

    asyncio.run(main())


def test_probe_while_waiting_only_on_nfs(tmp_path):
    from hamq.ha import shared_file

    assert shared_file._on_nfs(str(tmp_path)) is False  # the test's tmp dir is a local file system
    assert _locker(tmp_path, "b1").probe_while_waiting is False


def _replace_with_copy(directory) -> None:
    """Swap the lock file for a byte-identical copy: same holder record, new inode."""
    path = lockfile.lock_path(str(directory))
    with open(path, "rb") as f:
        data = f.read()
    with open(path + ".copy", "wb") as f:
        f.write(data)
    os.replace(path + ".copy", path)


def test_a_lock_file_replaced_by_an_identical_copy_makes_the_new_master_wait(tmp_path):
    async def main():
        live = await _locker(tmp_path, "b1").acquire()
        _replace_with_copy(tmp_path)  # the copy carries b1's holder record, so it does not look recreated
        second = await _locker(tmp_path, "b2").acquire()
        assert second.stale_master_wait_s > 0
        assert "replaced" in live.probe()
        live.release()
        second.release()

    asyncio.run(main())


def test_the_new_master_waits_before_it_bumps_the_epoch(tmp_path):
    async def main():
        live = await _locker(tmp_path, "b1").acquire()
        _replace_with_copy(tmp_path)
        acquiring = asyncio.ensure_future(_locker(tmp_path, "b2").acquire())
        await asyncio.sleep(0.02)
        assert not acquiring.done()
        # while b2 waits, the old master is still the one the epoch names: its fence holds
        assert lockfile.read_epoch(str(tmp_path)) == live.epoch
        live.check_fence()
        second = await acquiring
        assert second.epoch == live.epoch + 1
        live.release()
        second.release()

    asyncio.run(main())


def test_the_wait_follows_the_old_masters_keep_alive_period(tmp_path):
    async def main():
        slow_cfg = LockerConfig(lock_acquire_sleep_interval_ms=20, lock_keep_alive_period_ms=200)
        live = await load_locker(slow_cfg, tmp_path, {"nodeName": "b1", "brokerName": "orders"}).acquire()
        os.unlink(lockfile.lock_path(str(tmp_path)))
        second = await _locker(tmp_path, "b2").acquire()  # keep-alive 30 ms, but b1 checks only every 200 ms
        assert second.stale_master_wait_s >= 0.2 * shared_file.STALE_MASTER_WAIT_PERIODS
        live.release()
        second.release()

    asyncio.run(main())


def test_replaced_since_last_master_tells_a_takeover_from_a_replaced_file(tmp_path):
    d = str(tmp_path)
    path = lockfile.lock_path(d)
    fd = lockfile.try_lock(path)
    assert not lockfile.replaced_since_last_master(fd, d)  # first start ever
    lockfile.become_master(fd, d, {"nodeName": "b1"})
    lockfile.unlock(fd)
    fd = lockfile.try_lock(path)
    assert not lockfile.replaced_since_last_master(fd, d)  # the dead master's own file: plain takeover
    lockfile.unlock(fd)
    for tamper in ("copy", "empty", "delete"):
        live = lockfile.try_lock(path)
        lockfile.become_master(live, d, {"nodeName": "b1"})
        if tamper == "copy":
            _replace_with_copy(tmp_path)
        elif tamper == "empty":
            open(path + ".new", "wb").close()
            os.replace(path + ".new", path)
        else:
            os.unlink(path)
        fd = lockfile.try_lock(path)
        assert lockfile.replaced_since_last_master(fd, d), tamper
        previous = lockfile.previous_holder(fd, d)
        assert previous and previous["nodeName"] == "b1", tamper  # from the copy or the epoch file
        lockfile.unlock(fd)
        lockfile.unlock(live)


def test_a_holder_record_without_the_inode_counts_as_replaced(tmp_path):
    d = str(tmp_path)
    fd = lockfile.try_lock(lockfile.lock_path(d))
    lockfile.become_master(fd, d, {"nodeName": "old"})
    os.pwrite(fd, b'{"epoch": 1, "nodeName": "old"}\n' + b" " * 200, 0)  # an older hamq's record
    lockfile.unlock(fd)
    fd = lockfile.try_lock(lockfile.lock_path(d))
    assert lockfile.replaced_since_last_master(fd, d)
    lockfile.unlock(fd)


def test_a_lease_serves_only_within_its_validity_window(tmp_path):
    async def main():
        lease = await _locker(tmp_path, "b1").acquire()  # keep-alive 30 ms: valid for 60 ms
        assert lease.serving()
        await asyncio.sleep(lease.valid_for_s * 1.5)  # no keep-alive task runs: nothing confirms the lock
        assert not lease.serving()
        lease.release()

    asyncio.run(main())


def test_a_doubt_stops_serving_until_a_later_probe_confirms_the_lock(tmp_path):
    async def main():
        cfg = LockerConfig(lock_acquire_sleep_interval_ms=20, lock_keep_alive_period_ms=500)
        lease = await load_locker(cfg, tmp_path, {"nodeName": "b1", "brokerName": "orders"}).acquire()
        confirmed = []
        lease.on_valid = lambda: confirmed.append(lease.serving())
        lost = []
        task = asyncio.ensure_future(lease.keep_alive(lost.append))
        await asyncio.sleep(0.1)
        assert lease.serving() and not confirmed
        lease.doubt("test: the event loop stood still")
        assert not lease.serving()
        for _ in range(200):
            if confirmed:
                break
            await asyncio.sleep(0.01)
        assert confirmed == [True] and lease.serving() and not lost
        lease.release()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())


def test_a_probe_that_started_before_the_doubt_proves_nothing(tmp_path):
    async def main():
        lease = await _locker(tmp_path, "b1").acquire()
        import time as _time

        started = _time.monotonic()
        lease.doubt("test: paused")
        lease._confirmed(started)
        assert not lease.serving()
        lease._confirmed(_time.monotonic())
        assert lease.serving()
        lease.release()

    asyncio.run(main())


def test_a_doubted_lease_whose_lock_file_was_replaced_is_lost_not_restored(tmp_path):
    async def main():
        lease = await _locker(tmp_path, "b1").acquire()
        restored, lost = [], []
        lease.on_valid = lambda: restored.append(True)
        task = asyncio.ensure_future(lease.keep_alive(lost.append))
        await asyncio.sleep(0.05)
        _replace_with_copy(tmp_path)
        lease.doubt("test: resumed after a pause")
        await asyncio.wait_for(task, 5)
        assert lost and "replaced" in lost[0] and not restored and not lease.serving()
        lease.release()

    asyncio.run(main())


def test_with_lock_and_epoch_file_both_gone_the_journal_keeps_the_epoch_rising(tmp_path):
    from hamq.store import MessageStore

    async def main():
        lease = await _locker(tmp_path, "b1").acquire()
        lease.release()
        store = MessageStore(tmp_path)
        store.open(epoch=5)  # the journal was last written by epoch 5
        store.close()
        os.unlink(lockfile.lock_path(str(tmp_path)))
        os.unlink(lockfile.epoch_path(str(tmp_path)))
        second = await _locker(tmp_path, "b2").acquire()
        assert second.epoch == 6  # above the journal's, so its store opens instead of being fenced
        assert second.stale_master_wait_s > 0  # and it is no first start: a master may still run
        second.release()

    asyncio.run(main())


def test_a_lock_file_moved_back_during_the_wait_keeps_the_old_master(tmp_path):
    async def main():
        live = await _locker(tmp_path, "b1").acquire()
        path = lockfile.lock_path(str(tmp_path))
        os.rename(path, path + ".aside")
        waiter = asyncio.ensure_future(_locker(tmp_path, "b2").acquire())
        await asyncio.sleep(0.03)  # b2 locked a new file and waits out b1
        os.replace(path + ".aside", path)  # undone: the path names b1's file again
        await asyncio.sleep(0.3)
        assert not waiter.done()  # b2 must not become master on a file nobody can reach
        assert lockfile.read_epoch(str(tmp_path)) == live.epoch and live.probe() is None
        live.release()  # b1 goes; b2 takes the real lock file over
        second = await asyncio.wait_for(waiter, 10)
        assert second.epoch == live.epoch + 1 and second.probe() is None
        second.release()

    asyncio.run(main())


def test_a_waiter_whose_new_lock_file_is_deleted_too_does_not_become_master(tmp_path):
    async def main():
        live = await _locker(tmp_path, "b1").acquire()
        path = lockfile.lock_path(str(tmp_path))
        os.unlink(path)
        first = asyncio.ensure_future(_locker(tmp_path, "b2").acquire())
        await asyncio.sleep(0.03)
        os.unlink(path)  # b2's new file goes as well
        second = await _locker(tmp_path, "b3").acquire()
        assert not first.done() or first.exception() is not None
        assert second.probe() is None and lockfile.read_holder(str(tmp_path))["nodeName"] == "b3"
        first.cancel()
        live.release()
        second.release()

    asyncio.run(main())


def test_a_master_whose_directory_was_wiped_is_fenced_by_the_next_one_even_at_the_same_epoch(tmp_path):
    import shutil

    async def main():
        live = await _locker(tmp_path, "b1").acquire()
        for name in os.listdir(tmp_path):
            path = tmp_path / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        second = await _locker(tmp_path, "b2").acquire()  # looks like a first start: epoch 1 again
        assert second.epoch == live.epoch
        with pytest.raises(StoreFenced):
            live.check_fence()
        assert live.probe() is not None
        second.check_fence()
        live.release()
        second.release()

    asyncio.run(main())


def test_an_epoch_file_replaced_by_a_directory_is_a_clear_error(tmp_path):
    async def main():
        first = await _locker(tmp_path, "b1").acquire()
        first.release()
        os.unlink(lockfile.epoch_path(str(tmp_path)))
        os.mkdir(lockfile.epoch_path(str(tmp_path)))
        with pytest.raises(LockerError, match=r"is a directory.*Fix: remove it"):
            await _locker(tmp_path, "b2").acquire()

    asyncio.run(main())


def test_a_lock_file_replaced_by_a_directory_is_a_clear_error(tmp_path):
    os.mkdir(lockfile.lock_path(str(tmp_path)))

    async def main():
        with pytest.raises(LockerError, match=r"is a directory.*Fix: remove it"):
            await _locker(tmp_path, "b1").acquire()

    asyncio.run(main())


# --- lock and epoch files that are not what they should be (found by an adversarial review) ---

def _bounded(coro, seconds=10):
    """Run ``coro``; a hang (a blocking open of a FIFO) fails the test instead of the whole run."""
    async def main():
        return await asyncio.wait_for(coro, seconds)
    return asyncio.run(main())


@pytest.mark.parametrize("kind", ["fifo", "symlink loop"])
def test_a_lock_file_that_is_not_a_regular_file_is_a_clear_error(tmp_path, kind):
    path = lockfile.lock_path(str(tmp_path))
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink(path, path)
    with pytest.raises(LockerError, match=r"lock file .* (FIFO|symbolic link).*Fix: remove it"):
        _bounded(_locker(tmp_path, "b1").acquire())
    assert lockfile.read_holder(str(tmp_path)) is not None  # readable for diagnosis, and no hang


def test_a_waiting_slave_outlives_a_lock_file_replaced_by_a_fifo_and_takes_over_once_fixed(tmp_path):
    async def main():
        first = await _locker(tmp_path, "b1").acquire()
        slave = asyncio.ensure_future(_locker(tmp_path, "b2").acquire())
        await asyncio.sleep(0.1)
        path = lockfile.lock_path(str(tmp_path))
        os.unlink(path)
        os.mkfifo(path)
        first.release()
        await asyncio.sleep(0.3)
        assert not slave.done()  # still waiting as a slave, not dead with a traceback
        os.unlink(path)  # the operator's fix
        lease = await asyncio.wait_for(slave, 10)
        assert lease.epoch == 2
        lease.release()

    _bounded(main(), 20)


@pytest.mark.parametrize("content", ["fifo", b"18446744073709551615\n", "symlink loop"])
def test_a_damaged_epoch_file_is_rebuilt_from_the_lock_record_and_the_journal(tmp_path, content):
    async def main():
        first = await _locker(tmp_path, "b1").acquire()
        first.release()
        path = lockfile.epoch_path(str(tmp_path))
        os.unlink(path)
        if content == "fifo":
            os.mkfifo(path)
        elif content == "symlink loop":
            os.symlink(path, path)
        else:
            with open(path, "wb") as f:
                f.write(content)
        lease = await _locker(tmp_path, "b2").acquire()
        assert lease.epoch == 2
        assert lockfile.read_epoch(str(tmp_path)) == 2
        lease.check_fence()
        lease.release()

    _bounded(main())


def test_a_master_whose_epoch_file_becomes_a_fifo_is_fenced_without_hanging(tmp_path):
    async def main():
        lease = await _locker(tmp_path, "b1").acquire()
        path = lockfile.epoch_path(str(tmp_path))
        os.unlink(path)
        os.mkfifo(path)
        with pytest.raises(StoreFenced):
            lease.check_fence()
        assert lockfile.keep_alive_problem(lease.fd, str(tmp_path), lease.epoch, b"x") is not None
        lease.release()

    _bounded(main())


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_an_io_error_while_becoming_master_is_retried_and_leaves_no_temp_file(tmp_path, monkeypatch, failing, caplog):
    real = {"fsync": os.fsync, "replace": os.replace}[failing]
    calls = []

    def flaky(*args):
        calls.append(args)
        if len(calls) == 1:
            raise OSError(28 if failing == "fsync" else 5, "injected")
        return real(*args)

    monkeypatch.setattr(lockfile.os, failing, flaky)
    lease = _bounded(_locker(tmp_path, "b1").acquire(), 20)
    assert lease.epoch >= 1
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert any("becoming master" in r.getMessage() and "Fix:" in r.getMessage() for r in caplog.records)
    lease.release()
