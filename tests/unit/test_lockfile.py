"""The OFD lock primitive, holder record, epoch and keep-alive checks (hamq.ha.lockfile)."""

import json
import os
import subprocess
import sys
import threading

import pytest

from hamq.ha import lockfile


@pytest.fixture
def lock(tmp_path):
    return str(tmp_path / "lock")


def test_second_open_file_description_in_same_process_is_refused(lock):
    fd = lockfile.try_lock(lock)
    assert fd is not None
    try:
        assert lockfile.try_lock(lock) is None
        assert lockfile.is_locked(lock)
        assert lockfile.probe_exclusive(lock) is False
    finally:
        lockfile.unlock(fd)
    assert not lockfile.is_locked(lock)
    assert lockfile.probe_exclusive(lock) is True


def test_closing_another_descriptor_of_the_file_keeps_the_lock(lock):
    # The trap of process-owned POSIX locks: any close() of the file drops them.
    fd = lockfile.try_lock(lock)
    other = os.open(lock, os.O_RDWR)
    os.close(other)
    try:
        assert lockfile.is_locked(lock)
        assert lockfile.try_lock(lock) is None
    finally:
        lockfile.unlock(fd)


def test_another_thread_cannot_share_the_lock(lock):
    fd = lockfile.try_lock(lock)
    got = []
    t = threading.Thread(target=lambda: got.append(lockfile.try_lock(lock)))
    t.start()
    t.join()
    lockfile.unlock(fd)
    assert got == [None]


def test_another_process_sees_the_lock_held(lock):
    fd = lockfile.try_lock(lock)
    code = "import sys; from hamq.ha import lockfile; sys.exit(0 if lockfile.try_lock(sys.argv[1]) is None else 3)"
    try:
        assert subprocess.run([sys.executable, "-c", code, lock]).returncode == 0
    finally:
        lockfile.unlock(fd)
    assert subprocess.run([sys.executable, "-c", code, lock]).returncode == 3


def test_is_locked_does_not_create_the_file(lock):
    assert lockfile.is_locked(lock) is False
    assert not os.path.exists(lock)


def test_blocking_wait_gets_the_lock_when_the_holder_releases(lock):
    fd = lockfile.try_lock(lock)
    got = []
    waiter = threading.Thread(target=lambda: got.append(lockfile.lock_blocking(lock)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and got == []  # still waiting while the lock is held
    lockfile.unlock(fd)
    waiter.join(30)
    assert len(got) == 1 and lockfile.is_locked(lock)
    lockfile.unlock(got[0])


def test_lock_won_on_a_deleted_file_is_retried_on_the_new_file(lock):
    fd = lockfile.try_lock(lock)
    got = []
    waiter = threading.Thread(target=lambda: got.append(lockfile.lock_blocking(lock)))
    waiter.start()
    waiter.join(0.2)
    os.unlink(lock)  # the waiter is queued on the old inode
    lockfile.unlock(fd)
    waiter.join(30)
    assert os.fstat(got[0]).st_ino == os.stat(lock).st_ino
    lockfile.unlock(got[0])


def test_become_master_writes_record_and_epoch(tmp_path):
    d = str(tmp_path)
    fd = lockfile.try_lock(lockfile.lock_path(d))
    record = lockfile.become_master(fd, d, {"nodeName": "b1", "brokerName": "orders"})
    assert record["epoch"] == 1
    assert {"nodeName", "brokerName", "host", "pid", "epoch", "acquiredAt"} <= set(record)
    assert lockfile.read_holder(d) == record
    assert lockfile.read_epoch(d) == 1
    with open(os.path.join(d, "epoch")) as f:
        assert json.loads(f.read().splitlines()[1])["nodeName"] == "b1"
    state = lockfile.lock_state(d)
    assert state["held"] is True and state["epoch"] == 1 and state["holder"]["pid"] == os.getpid()
    lockfile.unlock(fd)
    assert lockfile.lock_state(d)["held"] is False


def _master(d, name):
    fd = lockfile.try_lock(lockfile.lock_path(d))
    assert fd is not None
    record = lockfile.become_master(fd, d, {"nodeName": name})
    lockfile.unlock(fd)
    return record["epoch"]


def test_epoch_is_monotonic_even_when_files_are_deleted(tmp_path):
    d = str(tmp_path)
    assert [_master(d, "b%d" % i) for i in range(3)] == [1, 2, 3]
    os.unlink(lockfile.lock_path(d))
    assert _master(d, "x") == 4  # the epoch file remembers
    os.unlink(lockfile.epoch_path(d))
    assert _master(d, "y") == 5  # the holder record remembers


def test_unreadable_holder_record_is_reported_not_raised(tmp_path):
    with open(tmp_path / "lock", "w") as f:
        f.write("not json")
    assert lockfile.read_holder(str(tmp_path)) == {"unreadable": "not json"}
    assert lockfile.read_holder(str(tmp_path / "missing")) is None


def test_damaged_epoch_file_is_an_error_for_readers(tmp_path):
    (tmp_path / "epoch").write_text("garbage\n")
    with pytest.raises(ValueError):
        lockfile.read_epoch(str(tmp_path))
    assert lockfile.read_epoch(str(tmp_path / "none")) == 0


class TestKeepAlive:
    @pytest.fixture
    def master(self, tmp_path):
        d = str(tmp_path)
        fd = lockfile.try_lock(lockfile.lock_path(d))
        record = lockfile.become_master(fd, d, {"nodeName": "b1"})
        yield d, fd, record["epoch"], lockfile.encode_record(record)
        lockfile.unlock(fd)

    def test_healthy(self, master):
        d, fd, epoch, data = master
        assert lockfile.keep_alive_problem(fd, d, epoch, data) is None
        assert lockfile.read_holder(d)["nodeName"] == "b1"

    def test_lock_file_deleted(self, master):
        d, fd, epoch, data = master
        os.unlink(lockfile.lock_path(d))
        assert "deleted" in lockfile.keep_alive_problem(fd, d, epoch, data)

    def test_lock_file_replaced(self, master):
        d, fd, epoch, data = master
        tmp = os.path.join(d, "other")
        with open(tmp, "w") as f:
            f.write("{}")
        os.replace(tmp, lockfile.lock_path(d))
        assert "replaced" in lockfile.keep_alive_problem(fd, d, epoch, data)

    def test_epoch_moved_on(self, master):
        d, fd, epoch, data = master
        with open(lockfile.epoch_path(d), "w") as f:
            f.write("%d\n" % (epoch + 1))
        assert "epoch moved" in lockfile.keep_alive_problem(fd, d, epoch, data)

    def test_epoch_file_deleted(self, master):
        d, fd, epoch, data = master
        os.unlink(lockfile.epoch_path(d))
        assert "epoch moved from 1 to 0" in lockfile.keep_alive_problem(fd, d, epoch, data)

    def test_descriptor_closed(self, master):
        d, fd, epoch, data = master
        dup = os.dup(fd)
        os.close(dup)
        assert lockfile.keep_alive_problem(dup, d, epoch, data) is not None
