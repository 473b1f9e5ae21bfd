"""The ``shared-file`` locker: an OFD lock on ``<kahaDB directory>/lock``, as ActiveMQ's SharedFileLocker.

Differences from ActiveMQ, and why:

* A slave waits in a blocking ``F_OFD_SETLKW`` (in a daemon thread), so it takes
  over the moment the kernel (or the NFSv4 server) frees the lock, instead of
  on its next poll.  Only where the blocking wait fails (ENOLCK, EDEADLK, ...)
  does it poll every ``lockAcquireSleepInterval``.  On NFS it also tries a
  non-blocking lock every ``lockAcquireSleepInterval`` next to the blocked
  wait, because the NFS client retries a blocked lock freed by lease expiry
  only every 30 s (see :func:`_on_nfs`).
* Each master gets a fresh **epoch** (see :mod:`hamq.ha.lockfile`).  The store
  calls :meth:`SharedFileLease.check_fence` before every group commit, and seals the
  previous master's segment at open, so a paused ex-master that wakes up gets
  nothing accepted.  Because of that a normal takeover does not sleep one
  keep-alive period (ActiveMQ's AMQ-4705 guard): the epoch, not the wait,
  keeps the old master's writes out.  Only a master that finds the lock file
  gone (deleted or replaced under a possibly live master) waits 1.5 keep-alive
  periods, so that the old master stops listening before this one starts.
* Keep-alive is always on (``lockKeepAlivePeriod`` 0 is refused) and checks
  more than mtime: same inode, same epoch, lock re-asserted, write + fsync.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from hamq.ha import lockfile, storage_safety
from hamq.ha.lockers import LockedError, Locker, LockerError, MasterLease
from hamq.store.errors import StoreFenced

log = logging.getLogger("hamq.ha")

#: After an I/O error while becoming master (nothing promised yet), wait this long before trying again.
RETRY_AFTER_IO_ERROR_S = 1.0

#: A keep-alive probe that has not finished after this many periods counts as lost
#: (a hard-mounted NFS share that stopped answering hangs fsync for minutes).
PROBE_TIMEOUT_PERIODS = 5
#: A master serves only while its last good keep-alive probe started less than this many periods ago
#: (see SharedFileLease.serving): a paused or cut-off master stops on its own.
VALIDITY_PERIODS = 2.0
#: How long a broker that finds a replaced lock file waits before taking over, in the old master's
#: keep-alive periods: its validity window plus one period of margin (see _wait_out_stale_master).
STALE_MASTER_WAIT_PERIODS = VALIDITY_PERIODS + 1.0
#: A slave that cannot use the lock file at all (a directory in its place) says so this often.
COMPLAINT_EVERY_S = 30.0
#: During that wait, how often to check that the file we locked is still the lock file.
STALE_WAIT_CHECK_S = 0.02
MIN_PROBE_TIMEOUT_S = 10.0
#: The probe's running time is counted in slices this long (see _probe_within).
PROBE_SLICE_S = 0.25
#: The fence trusts an unchanged stat of the epoch file only once its ctime is this old (see check_fence).
FENCE_STAT_SETTLE_S = 1.0


def _fstype(path: str) -> Optional[str]:
    """The file system type of the mount holding ``path`` (None when it cannot be told)."""
    try:
        verdict = storage_safety.check_storage(path)
    except OSError:
        return None
    return verdict.mount.fstype if verdict.mount else None


def _on_nfs(path: str) -> bool:
    """True when ``path`` is on NFS, where a blocked lock request alone is too slow.

    The Linux NFS client gets a blocked lock at once when the holder unlocks
    (a clean stop), but when the holder's host dies and the server frees the
    lock at lease expiry, the waiting client only asks again on its own retry
    timer, up to 30 s later (measured: 27.7 s with a 15 s lease). So on NFS a
    slave also tries a non-blocking lock every lockAcquireSleepInterval, and
    takes over within about one lease plus that interval.
    """
    return (_fstype(path) or "").startswith("nfs")


def _on_local_fs(path: str) -> bool:
    """True when ``path`` is on a local file system, where stat() never answers from a stale cache.

    There the fence can skip re-reading the epoch file while its stat is unchanged
    (see :meth:`SharedFileLease.check_fence`). NFS caches attributes, and GFS2 and
    anything unknown are treated the same way: the file is opened and read every time.
    """
    return _fstype(path) in storage_safety.LOCAL_FSTYPES


def _journal_epoch(directory: str) -> int:
    """The epoch of the newest journal segment in ``directory`` (0: none, or unreadable).

    A floor for the next epoch: with both the lock file and the epoch file gone,
    the journal still tells which masters there were.
    """
    from hamq.store.journal import list_segments, read_segment_header

    try:
        segments = list_segments(directory)
        for n in reversed(segments):
            header = read_segment_header(os.path.join(directory, "db-%d.log" % n))
            if header is not None:
                return header.epoch
    except Exception:  # the store reports damage itself; the lock only wants a floor
        return 0
    return 0


class _Inconclusive(Exception):
    """The keep-alive probe could not even start (no descriptor left): it proves neither way."""


async def _probe_within(probe: Callable[[], Optional[str]], timeout_s: float) -> Optional[str]:
    """Run ``probe`` in a daemon thread; give up after ``timeout_s`` seconds of *running* time.

    A hung store (a hard-mounted NFS share that stopped answering) must count
    as a lost lock. But when the whole process was frozen (SIGSTOP, a paused
    VM) while the probe ran, the wall clock moved and the probe did not: the
    time the event loop stood still is not held against the probe, so a master
    that kept its lock does not die of the freeze (its lease doubts itself
    meanwhile, see MasterTerm.serving).
    """
    future = _in_daemon_thread(probe)
    ran = 0.0
    last = time.monotonic()
    while True:
        done, _ = await asyncio.wait({future}, timeout=PROBE_SLICE_S)
        if done:
            return future.result()
        now = time.monotonic()
        ran += min(now - last, PROBE_SLICE_S)  # a slice that took far longer was a freeze, not the probe
        last = now
        if ran >= timeout_s:
            future.cancel()
            return "the keep-alive probe did not finish within %.0f s (storage hung?)" % timeout_s


def _describe(holder: Optional[Dict[str, Any]]) -> str:
    if not holder:
        return "unknown"
    return "%s, host %s, pid %s, epoch %s" % (holder.get("nodeName"), holder.get("host"), holder.get("pid"),
                                             holder.get("epoch"))


def _in_daemon_thread(
    func: Callable[..., Any], *args: Any, on_abandoned: Optional[Callable[[Any], Any]] = None
) -> "asyncio.Future[Any]":
    """Run ``func(*args)`` in a daemon thread and return an awaitable future.

    Not the loop's default executor: its threads are joined at exit, and a
    thread blocked in F_OFD_SETLKW or a hung fsync must never keep a broker
    that is shutting down alive.  ``on_abandoned(result)`` runs when the result
    arrives after the awaiting side gave up (e.g. a lock granted to a slave that
    is being stopped), so nothing it holds leaks.
    """
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def deliver(ok: bool, value: Any) -> None:
        if future.done():
            if ok and on_abandoned is not None:
                on_abandoned(value)
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def run() -> None:
        try:
            result = func(*args)
        except BaseException as exc:  # handed to the awaiting coroutine
            ok, value = False, exc
        else:
            ok, value = True, result
        try:
            loop.call_soon_threadsafe(deliver, ok, value)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            if ok and on_abandoned is not None:
                on_abandoned(value)

    threading.Thread(target=run, name="hamq-%s" % getattr(func, "__name__", "io"), daemon=True).start()
    return future


class SharedFileLease(MasterLease):
    """Holds the locked descriptor; see :class:`hamq.ha.lockers.MasterLease`."""

    def __init__(self, fd: int, directory: Path, record: Dict[str, Any], keep_alive_period_s: float,
                 fence_by_stat: bool = False):
        self.fd = fd  # type: Optional[int]
        self.directory = Path(directory)
        self.record = record
        self.epoch = int(record["epoch"])
        self.keep_alive_period_s = keep_alive_period_s
        self.lost_reason = None  # type: Optional[str]
        #: Seconds waited after acquiring because the lock file had been recreated (0: a normal acquire).
        self.stale_master_wait_s = 0.0
        self._record_bytes = lockfile.encode_record(record)
        #: The epoch file as we wrote it: the fence compares the whole file, not just the number.
        self._epoch_bytes = lockfile.epoch_file_bytes(record)
        self._dir = str(self.directory)
        self._fd_lock = threading.Lock()
        #: Local file system only: skip re-reading the epoch file while its stat is unchanged.
        self.fence_by_stat = fence_by_stat
        self._epoch_path = lockfile.epoch_path(self._dir)
        self._verified_stat = None  # type: Optional[tuple]
        #: Lease validity (see serving): monotonic deadline, and when a pause last cast doubt on it.
        self.valid_for_s = VALIDITY_PERIODS * keep_alive_period_s
        self._valid_until = time.monotonic() + self.valid_for_s
        self._doubted_at = float("-inf")
        self._wake = None  # type: Optional[asyncio.Event]
        #: Called (on the event loop) when a good probe ends a doubt; the server resumes serving then.
        self.on_valid = None  # type: Optional[Callable[[], Any]]

    def serving(self) -> bool:
        """May this master serve clients right now?

        Only while its last good keep-alive probe started less than
        ``VALIDITY_PERIODS`` keep-alive periods ago, and no pause has cast doubt
        on it since.  A master that was paused (SIGSTOP, a frozen VM, a long
        stall) or whose storage stopped answering therefore stops serving on its
        own, before a broker that found the lock file replaced may take over
        (it waits longer than this window), and before an NFS lease can expire.
        """
        return self.lost_reason is None and self.fd is not None and time.monotonic() < self._valid_until

    def doubt(self, why: str) -> None:
        """Stop serving until a probe that starts from now on confirms the lock (e.g. after a pause)."""
        if self.lost_reason is not None:
            return
        self._doubted_at = time.monotonic()
        if self._valid_until > 0:
            log.warning("%s: not serving until the lock on %s is confirmed again", why, self._dir)
        self._valid_until = 0.0
        if self._wake is not None:
            self._wake.set()

    def _confirmed(self, probe_started: float) -> None:
        """A probe that started at ``probe_started`` found the lock ours."""
        if probe_started <= self._doubted_at:
            return  # it may have run before the pause: it proves nothing about now
        was_serving = self.serving()
        self._valid_until = probe_started + self.valid_for_s
        if not was_serving and self.serving() and self.on_valid is not None:
            log.info("the lock on %s is confirmed (epoch %d): serving again", self._dir, self.epoch)
            self.on_valid()

    def check_fence(self) -> None:
        """Raise StoreFenced unless the epoch file is still exactly what we wrote; runs before every write.

        The whole file is compared, not only its number: the holder record in it
        carries a random term id, so even a master that got the same number
        (everything in the directory deleted under a running master) fences the
        other one. Reading the file costs an open, a read and a close per group commit. On a
        local file system a stat tells whether the file can have changed since it
        was last read and found ours: a new master replaces it by rename (a new
        inode), and any write in place moves its ctime. The stamp is only trusted
        when its ctime was over a second old when it was read, so a change within
        one coarse timestamp tick cannot hide behind an equal ctime.
        """
        if self.lost_reason is not None:
            raise StoreFenced("not master any more: %s" % self.lost_reason)
        if self.fd is None:
            raise StoreFenced("not master any more: the lock was released")
        stamp = None
        if self.fence_by_stat:
            try:
                st = os.stat(self._epoch_path)
                stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            except OSError:
                stamp = None  # read_epoch below explains the problem
            if stamp is not None and stamp == self._verified_stat:
                return
        try:
            data = lockfile.read_epoch_file(self._dir)
        except OSError as exc:
            raise StoreFenced("cannot read the epoch file in %s, so writing is unsafe: %s" % (self._dir, exc)) from exc
        if data != self._epoch_bytes:
            # whole-file compare: a second master of the same number (a wiped directory) is caught too
            try:
                current = lockfile.read_epoch(self._dir)
            except (OSError, ValueError) as exc:
                raise StoreFenced("cannot read the epoch file in %s, so writing is unsafe: %s"
                                  % (self._dir, exc)) from exc
            if current != self.epoch:
                raise StoreFenced(
                    "epoch %d is not ours (%d): another broker became master of %s" % (current, self.epoch, self._dir)
                )
            raise StoreFenced(
                "the epoch file of %s was rewritten by another broker with our epoch number %d (was the directory "
                "emptied?): it became master" % (self._dir, self.epoch)
            )
        if stamp is not None and time.time() - stamp[4] / 1e9 > FENCE_STAT_SETTLE_S:
            self._verified_stat = stamp

    def probe(self) -> Optional[str]:
        """One keep-alive check, synchronously; the reason when the lock is lost, else None.

        It works on a duplicate of the lock descriptor: a probe still running in
        its thread when :meth:`release` closes the original can then never
        write into whatever file reuses that descriptor number.
        """
        with self._fd_lock:
            if self.fd is None:
                return "the lock was released"
            try:
                fd = os.dup(self.fd)
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    raise _Inconclusive(exc) from None
                raise
        try:
            return lockfile.keep_alive_problem(fd, self._dir, self.epoch, self._record_bytes, self._epoch_bytes)
        finally:
            os.close(fd)

    async def keep_alive(self, on_lost: Callable[[str], Any]) -> None:
        """Probe every keep-alive period (at once while the lease is in doubt); see :meth:`serving`."""
        timeout = max(PROBE_TIMEOUT_PERIODS * self.keep_alive_period_s, MIN_PROBE_TIMEOUT_S)
        self._wake = asyncio.Event()
        while self.fd is not None and self.lost_reason is None:
            if self.serving():
                try:
                    await asyncio.wait_for(self._wake.wait(), self.keep_alive_period_s)
                except asyncio.TimeoutError:
                    pass
            self._wake.clear()
            if self.fd is None:
                return
            started = time.monotonic()
            try:
                problem = await _probe_within(self.probe, timeout)
            except _Inconclusive as exc:  # out of descriptors: proves nothing either way; try again soon
                log.warning("the keep-alive probe of %s could not run (%s); not serving until one does",
                            self._dir, exc)
                self._valid_until = min(self._valid_until, started)
                await asyncio.sleep(min(self.keep_alive_period_s, 0.1))
                continue
            except Exception as exc:  # any unexpected failure of the check is a lost lock, never ignored
                problem = "the keep-alive probe failed: %r" % (exc,)
            if problem is not None and self.fd is not None:
                self.lost_reason = problem
                log.error(
                    "lost the exclusive lock on %s (epoch %d): %s; probe took %.3f s",
                    self._dir, self.epoch, problem, time.monotonic() - started,
                )
                on_lost(problem)
                return
            if problem is None:
                self._confirmed(started)

    def release(self) -> None:
        with self._fd_lock:
            fd, self.fd = self.fd, None
        if fd is not None:
            lockfile.unlock(fd)  # the lock goes with the last descriptor (a running probe holds a duplicate)
            log.info("released the lock on %s (epoch %d)", self._dir, self.epoch)


class SharedFileLocker(Locker):
    """``<shared-file-locker lockAcquireSleepInterval lockKeepAlivePeriod failIfLocked/>``."""

    name = "shared-file"

    def __init__(self, config: Any, directory: Path, identity: Dict[str, Any]):
        super().__init__(config, directory, identity)
        self.sleep_interval_s = getattr(config, "lock_acquire_sleep_interval_ms", 1000) / 1000.0
        self.keep_alive_period_s = getattr(config, "lock_keep_alive_period_ms", 2000) / 1000.0
        self.fail_if_locked = bool(getattr(config, "fail_if_locked", False))
        if self.keep_alive_period_s <= 0:
            raise LockerError(
                "lockKeepAlivePeriod must be greater than 0: with 0 a deleted or replaced lock file gives "
                "two masters (AMQ-4705). Fix: set lockKeepAlivePeriod=\"2000\""
            )
        if self.sleep_interval_s <= 0:
            raise LockerError("lockAcquireSleepInterval must be greater than 0. Fix: set it to e.g. \"1000\"")
        self.lock_path = lockfile.lock_path(str(self.directory))
        self._last_complaint = float("-inf")
        # the next master derives its wait for a stale master from this (see _wait_out_stale_master)
        self.identity["keepAlivePeriodMs"] = int(round(self.keep_alive_period_s * 1000))
        self.probe_while_waiting = _on_nfs(str(self.directory))
        self.fence_by_stat = _on_local_fs(str(self.directory))

    def holder(self) -> Optional[Dict[str, Any]]:
        try:
            return lockfile.read_holder(str(self.directory))
        except OSError:
            return None

    def _holder_text(self) -> str:
        holder = self.holder()
        if not holder:
            return "another process"
        return "%s (host %s, pid %s, epoch %s, since %s)" % (
            holder.get("nodeName"), holder.get("host"), holder.get("pid"), holder.get("epoch"), holder.get("acquiredAt"),
        )

    async def acquire(self, on_waiting: Optional[Callable[[Optional[Dict[str, Any]]], Any]] = None) -> SharedFileLease:
        try:
            fd = lockfile.try_lock(self.lock_path)
        except lockfile.LockFileError as exc:
            raise LockerError(str(exc)) from None
        waiting = False
        while True:
            if fd is None:
                if self.fail_if_locked:
                    raise LockedError(
                        "%s is locked by %s and failIfLocked=\"true\", so this broker exits instead of waiting "
                        "as a slave. Fix: stop the other broker, or set failIfLocked=\"false\" to run as its slave"
                        % (self.lock_path, self._holder_text())
                    )
                if not waiting:
                    log.info("%s is locked by %s. This broker is now in slave mode", self.lock_path,
                             self._holder_text())
                    waiting = True
                    if on_waiting is not None:
                        on_waiting(self.holder())
                fd = await self._wait()
            lease = await self._become_master(fd)
            if lease is not None:
                return lease
            fd = None  # the file we locked is no longer the lock file: wait on the one that is

    async def _become_master(self, fd: int) -> Optional[SharedFileLease]:
        """With the lock on ``fd`` held: wait out a stale master if need be, then bump the epoch.

        None (and the lock given up) when ``fd`` stopped being the file the lock
        path names, during the wait or as the epoch was bumped: whoever locks
        the real lock file is master, not us.
        """
        floor = _journal_epoch(str(self.directory))
        try:
            try:
                replaced = lockfile.replaced_since_last_master(fd, str(self.directory), floor)
                previous = lockfile.previous_holder(fd, str(self.directory)) if replaced else None
            except (OSError, ValueError):
                replaced, previous = True, None
            wait_s = 0.0
            if replaced:
                wait_s = await self._wait_out_stale_master(previous, fd)
                if wait_s is None:
                    lockfile.unlock(fd)
                    return None
            record = lockfile.become_master(fd, str(self.directory), self.identity, floor)
        except lockfile.LockFileError as exc:
            lockfile.unlock(fd)
            raise LockerError(str(exc)) from None
        except OSError as exc:
            # ENOSPC, EIO, a stale NFS handle: nothing is promised yet, so stay a slave and try again
            lockfile.unlock(fd)
            log.error("an I/O error while becoming master of %s: %s. This broker gave the lock up and tries again "
                      "in %.1f s. Fix: check the shared storage (free space, dmesg, the mount)",
                      self.directory, exc, RETRY_AFTER_IO_ERROR_S)
            await asyncio.sleep(RETRY_AFTER_IO_ERROR_S)
            return None
        except BaseException:
            lockfile.unlock(fd)
            raise
        if not lockfile.still_the_lock_file(fd, self.lock_path):
            log.warning("the lock file %s was replaced while this broker took epoch %d; it stays a slave and "
                        "waits on the file that is there now", self.lock_path, record["epoch"])
            lockfile.unlock(fd)
            return None
        log.info("acquired the exclusive lock on %s: master with epoch %d", self.lock_path, record["epoch"])
        lease = SharedFileLease(fd, self.directory, record, self.keep_alive_period_s, self.fence_by_stat)
        lease.stale_master_wait_s = wait_s
        return lease

    async def _wait_out_stale_master(self, previous: Optional[Dict[str, Any]], fd: int) -> Optional[float]:
        """The lock file is not the one the last master locked: that master may still be running.

        It happens when the lock file was deleted, emptied or replaced (even by
        an identical copy) under a live master (AMQ-4705): it still holds its
        lock on the old file, and we hold ours on the new one.  Before we bump
        the epoch, and so before we serve anything, wait until that master has
        stopped serving: its keep-alive sees the replaced file within one of its
        keep-alive periods, and its lease-validity gate stops it after
        ``VALIDITY_PERIODS`` periods without a good probe even if it is paused
        or its storage hangs.  The wait is derived from the old master's own
        period, recorded in its holder record, and never shorter than ours.

        Throughout the wait our file must stay the lock file: if it is moved
        away (the old file put back, or ours deleted in turn), the old master's
        probes may be succeeding again, so this returns None and we go back to
        waiting as a slave.  A plain takeover (the dead master's own lock file)
        does not wait.
        """
        period_s = self.keep_alive_period_s
        try:
            period_s = max(period_s, float((previous or {}).get("keepAlivePeriodMs", 0)) / 1000.0)
        except (TypeError, ValueError):
            pass
        wait_s = STALE_MASTER_WAIT_PERIODS * period_s
        log.warning(
            "the lock file %s is not the file the last master (%s) locked: it was deleted or replaced, and that "
            "master may still be running on its old file; waiting %.3f s (%.1f of its keep-alive periods) for "
            "it to stop before taking over",
            self.lock_path, _describe(previous), wait_s, STALE_MASTER_WAIT_PERIODS,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        step = min(STALE_WAIT_CHECK_S, period_s / 4)
        while True:
            if not lockfile.still_the_lock_file(fd, self.lock_path):
                log.warning("the lock file %s changed again while this broker waited out the last master; "
                            "waiting on the file that is there now", self.lock_path)
                return None
            left = deadline - loop.time()
            if left <= 0:
                return wait_s
            await asyncio.sleep(min(step, left))

    def _file_id(self) -> Optional[tuple]:
        try:
            st = os.stat(self.lock_path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    async def _blocking_wait(self) -> int:
        """F_OFD_SETLKW in a daemon thread, restarted whenever the lock file is deleted or replaced.

        A waiter queued on a file that is no longer the lock file would wait
        for the wrong lock (possibly forever, if its holder is frozen); every
        lockAcquireSleepInterval we check the path and, if it changed, leave
        that wait behind (a lock it gets later is released at once) and queue
        on the new file.
        """
        while True:
            waiting_on = self._file_id()
            future = _in_daemon_thread(lockfile.lock_blocking, self.lock_path, on_abandoned=lockfile.unlock)
            while True:
                try:
                    done, _ = await asyncio.wait({future}, timeout=self.sleep_interval_s)
                except asyncio.CancelledError:
                    future.cancel()  # a lock granted later is released at once
                    raise
                if done:
                    return future.result()
                if self.probe_while_waiting:
                    fd = self._probe()
                    if fd is not None:
                        future.cancel()  # the blocked request, if granted later, is released at once
                        return fd
                if self._file_id() != waiting_on:
                    log.warning("the lock file %s was deleted or replaced while we waited; waiting on the new one",
                                self.lock_path)
                    future.cancel()
                    break

    def _complain(self, exc: Exception) -> None:
        """Something an operator must fix: say so (not more than every COMPLAINT_EVERY_S), keep waiting."""
        now = time.monotonic()
        if now - self._last_complaint >= COMPLAINT_EVERY_S:
            self._last_complaint = now
            log.error("%s; this broker waits as a slave until it is fixed", exc)

    def _probe(self) -> Optional[int]:
        """One non-blocking try: next to the blocked wait on NFS (see :func:`_on_nfs`), or as the poll."""
        try:
            return lockfile.try_lock(self.lock_path)
        except lockfile.LockFileError as exc:
            self._complain(exc)
            return None
        except OSError as exc:  # e.g. the NFS server is away: keep trying, as Artemis does
            log.warning("cannot test the lock on %s: %s; retrying", self.lock_path, exc)
            return None

    async def _wait(self) -> int:
        """Blocking OFD wait in a daemon thread; poll every lockAcquireSleepInterval if that is impossible."""
        while True:
            try:
                return await self._blocking_wait()
            except lockfile.LockFileError as exc:  # e.g. the lock file was replaced by a FIFO
                self._complain(exc)
                await asyncio.sleep(self.sleep_interval_s)
            except OSError as exc:
                log.warning(
                    "a blocking lock wait on %s is not possible here (%s); polling every %.3f s instead",
                    self.lock_path, exc, self.sleep_interval_s,
                )
                break
        while True:
            await asyncio.sleep(self.sleep_interval_s)
            fd = self._probe()
            if fd is not None:
                return fd
