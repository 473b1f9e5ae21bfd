"""The exclusive lock on a shared store directory, its holder record and its epoch.

One file is the single source of truth for "who is master" on a shared
directory.  The broker and the Ansible ``shared_lock`` module both use it (the
module reaches this very file through a ``plugins/module_utils`` symlink), so it
imports nothing from hamq, uses only the standard library and keeps to
Python 3.8 syntax.

Files in the directory:

``lock``
    Locked with an **OFD lock** (``F_OFD_SETLK``, whole file, write lock).
    OFD locks belong to the open file description, so closing some other
    descriptor of the same file never drops them (process-owned ``F_SETLK``
    locks do) and threads cannot share them by accident.  ``flock`` is never
    used: on GFS2 it let a second process on the same node in, and on NFS it
    is emulated differently.  While held the file carries the holder record as
    JSON (nodeName, brokerName, host, pid, epoch, acquiredAt), written and
    fsynced on acquire, so ``lock-info`` can show who is master.
``epoch``
    The fencing token: a decimal number on the first line (and the holder as
    JSON on the second, for people).  Each new master increments it, under the
    lock, by writing a temporary file, fsyncing it and renaming it over
    ``epoch``.  It lives apart from ``lock`` so that deleting or replacing the
    lock file cannot reset it.  A master reads it before every store write
    (:func:`read_epoch` is one open + one small read); a higher number than its
    own means somebody else has become master and it must stop writing.

A holder's :func:`keep_alive_problem` check detects: the lock file deleted or
replaced (another broker could then lock the new file), the epoch moved on, the
lock no longer ours (re-asserting it fails, as after NFSv4 lock loss), and a
failing write + fsync probe (EIO after NFSv4 lock loss).
"""

from __future__ import annotations

import binascii
import errno
import fcntl
import json
import logging
import os
import socket
import stat
import struct
import time
from typing import Any, Dict, Optional

_log = logging.getLogger("hamq.ha")

LOCK_NAME = "lock"
EPOCH_NAME = "epoch"

# Python exposes the OFD commands since 3.9 (bpo-38602); the numbers are the
# Linux ABI and have never changed.
F_OFD_GETLK = getattr(fcntl, "F_OFD_GETLK", 36)
F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
F_OFD_SETLKW = getattr(fcntl, "F_OFD_SETLKW", 38)

# struct flock { short l_type; short l_whence; off_t l_start; off_t l_len; pid_t l_pid; }
# (OFD commands always take the 64-bit layout).  The trailing "0q" pads to the
# C struct's alignment, so the kernel never reads past our buffer.
_FLOCK = struct.Struct("hhqqi0q")

# Errors that mean "somebody else holds it" for a non-blocking request.
_BUSY = (errno.EAGAIN, errno.EACCES)

MAX_RECORD_BYTES = 4096
#: The journal stores epochs as unsigned 64-bit numbers; a bigger one in the epoch file is damage.
MAX_EPOCH = 2**63 - 1


class LockFileError(Exception):
    """The lock directory cannot be used (missing, not writable, bad file)."""


def lock_path(directory: str) -> str:
    return os.path.join(os.fspath(directory), LOCK_NAME)


def epoch_path(directory: str) -> str:
    return os.path.join(os.fspath(directory), EPOCH_NAME)


def _flock_bytes(lock_type: int) -> bytes:
    # Whole file: start 0, length 0 = "to the end, however far it grows"; l_pid must be 0 for OFD.
    return _FLOCK.pack(lock_type, os.SEEK_SET, 0, 0, 0)


class NotARegularFile(OSError):
    """The lock or epoch path names a FIFO, socket, device or symlink loop: reading it would hang or fail."""

    def __init__(self, path: str, kind: str, code: int = errno.EINVAL):
        super().__init__(code, "%s is %s" % (path, kind))
        self.kind = kind


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _open_regular(path: str, flags: int) -> int:
    """``os.open`` that never blocks on a FIFO and refuses anything but a regular file or a directory.

    A directory is let through (IsADirectoryError comes from the read), so
    callers keep their own "is a directory" message.
    """
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotARegularFile(path, "a symbolic link loop", errno.ELOOP) from None
        raise
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        os.close(fd)
        raise IsADirectoryError(errno.EISDIR, "%s is a directory" % path)
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotARegularFile(path, _kind(mode))
    return fd


def _open_lock_file(path: str) -> int:
    try:
        return _open_regular(path, os.O_RDWR | os.O_CREAT)
    except IsADirectoryError:
        raise LockFileError(
            "the lock file %s is a directory, so no broker can lock it. Fix: remove it (rm -r %s); the next "
            "broker creates the file again" % (path, path)
        ) from None
    except NotARegularFile as exc:
        raise LockFileError(
            "the lock file %s is %s, not a regular file, so no broker can lock it. Fix: remove it (rm %s); the "
            "next broker creates the file again" % (path, exc.kind, path)
        ) from None
    except FileNotFoundError:
        raise LockFileError(
            "cannot create the lock file %s: its directory does not exist. "
            "Fix: create the directory or mount the shared storage first" % path
        ) from None
    except PermissionError:
        raise LockFileError(
            "cannot open the lock file %s for writing: permission denied. "
            "Fix: run the broker as the user that owns the directory, or chown it" % path
        ) from None


def _same_file(fd: int, path: str) -> bool:
    """Is ``fd`` still the file that ``path`` names (not deleted, not replaced)?"""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def still_the_lock_file(fd: int, path: str) -> bool:
    """Is the file locked through ``fd`` still the one ``path`` names (not deleted, not replaced)?"""
    try:
        return _same_file(fd, path)
    except OSError:
        return False


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock_fd(fd: int, blocking: bool) -> bool:
    """Place the OFD write lock on ``fd``; False when another holder has it (non-blocking only)."""
    cmd = F_OFD_SETLKW if blocking else F_OFD_SETLK
    try:
        fcntl.fcntl(fd, cmd, _flock_bytes(fcntl.F_WRLCK))
    except OSError as exc:
        if not blocking and exc.errno in _BUSY:
            return False
        raise
    return True


def try_lock(path: str) -> Optional[int]:
    """Try once to take the exclusive lock on ``path`` without waiting.

    Returns the locked descriptor (keep it open: closing it releases the lock)
    or None when another open file description holds the lock.  A lock won on
    a file that was deleted or replaced meanwhile is dropped and retried, so
    the descriptor returned always is the file the path names.
    """
    path = os.fspath(path)
    while True:
        fd = _open_lock_file(path)
        try:
            if not _lock_fd(fd, blocking=False):
                os.close(fd)
                return None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            return fd
        os.close(fd)  # we locked a file that is no longer the lock file: try the new one


def lock_blocking(path: str) -> int:
    """Wait (``F_OFD_SETLKW``) until the exclusive lock on ``path`` is ours; returns the descriptor.

    The kernel wakes us the moment the holder's lock goes (its process died or
    closed the file), which is what makes takeover fast.  Raises OSError when
    the wait itself is impossible (EINTR, ENOLCK on some network file systems,
    EDEADLK); the caller then falls back to polling with :func:`try_lock`.
    """
    path = os.fspath(path)
    while True:
        fd = _open_lock_file(path)
        try:
            _lock_fd(fd, blocking=True)
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            return fd
        os.close(fd)


def unlock(fd: int) -> None:
    """Release the lock by closing its descriptor (the only reference to its file description)."""
    try:
        os.close(fd)
    except OSError:
        pass


def is_locked(path: str) -> bool:
    """Is the lock on ``path`` held right now by any open file description?

    A non-blocking ``F_OFD_GETLK`` test from a fresh read-only descriptor: it
    never takes the lock, never creates the file, and also sees a lock held by
    another descriptor of this same process.
    """
    try:
        fd = _open_regular(os.fspath(path), os.O_RDONLY)
    except (FileNotFoundError, IsADirectoryError, NotARegularFile):
        return False
    try:
        raw = fcntl.fcntl(fd, F_OFD_GETLK, _flock_bytes(fcntl.F_WRLCK))
    finally:
        os.close(fd)
    return _FLOCK.unpack(raw)[0] != fcntl.F_UNLCK


def _decode_record(data: bytes) -> Optional[Dict[str, Any]]:
    text = data.split(b"\0", 1)[0].strip()
    if not text:
        return None
    try:
        record = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {"unreadable": text[:200].decode("utf-8", "replace")}
    return record if isinstance(record, dict) else {"unreadable": str(record)[:200]}


def read_holder(directory: str) -> Optional[Dict[str, Any]]:
    """The holder record written by the current (or last) master, or None when there is none.

    A record that is not valid JSON comes back as ``{"unreadable": <text>}``
    rather than an exception, so a damaged file can still be diagnosed.
    """
    try:
        fd = _open_regular(lock_path(directory), os.O_RDONLY)
    except FileNotFoundError:
        return None
    except (IsADirectoryError, NotARegularFile) as exc:
        return {"unreadable": "the lock file is %s, not a regular file" % getattr(exc, "kind", "a directory")}
    try:
        data = os.pread(fd, MAX_RECORD_BYTES, 0)
    finally:
        os.close(fd)
    return _decode_record(data)


def read_record(fd: int) -> Optional[Dict[str, Any]]:
    """The holder record in the lock file open as ``fd`` (None when the file is empty, e.g. just created)."""
    return _decode_record(os.pread(fd, MAX_RECORD_BYTES, 0))


def read_epoch(directory: str) -> int:
    """The durable epoch (0 before the first master).  One open and one small read: cheap enough per write.

    Raises OSError when the file exists but cannot be read, and ValueError when
    its first line is not a number: a fencing check must not guess.
    """
    path = epoch_path(directory)
    try:
        fd = _open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        return 0
    except NotARegularFile as exc:
        raise ValueError("the epoch file %s is %s, not a regular file" % (path, exc.kind)) from None
    try:
        data = os.pread(fd, 64, 0)
    finally:
        os.close(fd)
    first = data.split(b"\n", 1)[0].strip()
    if not first:
        raise ValueError("the epoch file %s is empty" % path)
    epoch = int(first)
    if not 0 <= epoch <= MAX_EPOCH:
        raise ValueError("the epoch file %s holds %d, outside 0..%d" % (path, epoch, MAX_EPOCH))
    return epoch


def read_epoch_file(directory: str) -> bytes:
    """The whole epoch file (b"" when there is none): what a master compares with what it wrote."""
    try:
        fd = _open_regular(epoch_path(directory), os.O_RDONLY)
    except FileNotFoundError:
        return b""
    try:
        return os.pread(fd, MAX_RECORD_BYTES + 64, 0)
    finally:
        os.close(fd)


def epoch_file_bytes(record: Dict[str, Any]) -> bytes:
    """What the epoch file holds for the master whose holder record is ``record``."""
    return ("%d\n%s\n" % (record["epoch"], json.dumps(record, sort_keys=True))).encode("utf-8")


def _write_epoch(directory: str, epoch: int, record: Dict[str, Any]) -> None:
    """Replace the epoch file atomically (temp file, fsync, rename, fsync directory)."""
    final = epoch_path(directory)
    tmp = "%s.%s.%d.tmp" % (final, socket.gethostname(), os.getpid())
    payload = epoch_file_bytes(dict(record, epoch=epoch))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)  # also replaces a FIFO or symlink left in its place
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(os.fspath(directory))


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def holder_record(identity: Dict[str, Any], epoch: int) -> Dict[str, Any]:
    """The JSON record a master writes: who it is and since when."""
    record = {
        "nodeName": identity.get("nodeName") or socket.gethostname(),
        "brokerName": identity.get("brokerName"),
        "host": identity.get("host") or socket.gethostname(),
        "pid": os.getpid(),
        "epoch": epoch,
        "acquiredAt": _utc_now(),
    }
    for key, value in identity.items():  # extra fields (ports, status URL) pass through
        record.setdefault(key, value)
    return record


def encode_record(record: Dict[str, Any]) -> bytes:
    data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    if len(data) > MAX_RECORD_BYTES:
        raise LockFileError("the holder record is larger than %d bytes: %r" % (MAX_RECORD_BYTES, record))
    return data


def _write_record(fd: int, data: bytes) -> None:
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))
    os.fsync(fd)


def previous_holder(fd: int, directory: str) -> Optional[Dict[str, Any]]:
    """The record of the last master: from the lock file open as ``fd``, else from the epoch file.

    A deleted or emptied lock file has no record any more, but the epoch file
    keeps a copy of the holder on its second line.
    """
    record = read_record(fd)
    if record:
        return record
    try:
        with open(epoch_path(directory), "rb") as f:
            lines = f.read(MAX_RECORD_BYTES).split(b"\n", 2)
    except OSError:
        return None
    return _decode_record(lines[1]) if len(lines) > 1 else None


def replaced_since_last_master(fd: int, directory: str, floor: int = 0) -> bool:
    """Is the lock file open as ``fd`` another file than the one the last master locked?

    True when the file was deleted and recreated, emptied, or replaced by any
    other file, even a byte-identical copy of the old one (same holder record,
    new inode): the last master may then still be running on its own, now
    unreachable, lock file.  A master records the inode number it locked
    (``lockInode``; st_dev differs between NFS clients, the inode number does
    not).  False before the first master ever (epoch 0) and for a plain
    takeover of the dead master's own file.  A record without ``lockInode``
    (written by an older hamq) counts as replaced: waiting once is safe.
    ``floor``: the highest epoch the caller knows from elsewhere (the journal):
    a store that has seen masters is never a first start, even when both the
    lock file and the epoch file are gone.
    """
    record = read_record(fd)
    try:
        if read_epoch(directory) == 0 and record is None and floor == 0:
            return False
    except ValueError:
        return True
    if not record:
        return True  # emptied, or deleted and created anew (its inode number may even be reused)
    return record.get("lockInode") != os.fstat(fd).st_ino


def become_master(fd: int, directory: str, identity: Dict[str, Any], floor: int = 0) -> Dict[str, Any]:
    """Called with the lock held: bump the epoch durably, then write and fsync the holder record.

    The new epoch is one more than the larger of the epoch file and the last
    holder record (and ``floor``, the newest epoch the journal shows), so
    neither a deleted epoch file nor a deleted lock file, nor both, can make an
    epoch repeat.  The record names the inode of the locked file, so
    the next master can tell a plain takeover from a replaced lock file
    (:func:`replaced_since_last_master`).  Returns the record (its ``epoch``
    is the fencing token).
    """
    directory = os.fspath(directory)
    previous = read_record(fd) or {}
    last = previous.get("epoch")
    if not isinstance(last, int) or not 0 <= last <= MAX_EPOCH:
        last = 0  # a damaged record; the epoch file and the journal still keep us monotonic
    last = max(last, floor)
    try:
        last = max(last, read_epoch(directory))
    except ValueError as exc:
        # the record's epoch and the journal's still keep us monotonic
        _log.warning("%s; rewriting it with epoch %d (from the lock file's record and the journal)",
                     exc, last + 1)
    except OSError as exc:
        path = epoch_path(directory)
        what = "is a directory" if os.path.isdir(path) else "cannot be read (%s)" % exc
        raise LockFileError(
            "the epoch file %s %s, so no broker can become master. Fix: remove it (rm -r %s); the journal "
            "and the lock file keep the epoch rising" % (path, what, path)
        ) from None
    record = holder_record(identity, last + 1)
    record["lockInode"] = os.fstat(fd).st_ino
    # unique to this mastership even if a wiped directory made the number repeat (see keep_alive_problem)
    record["term"] = binascii.hexlify(os.urandom(8)).decode("ascii")
    data = encode_record(record)
    _write_epoch(directory, record["epoch"], record)
    _write_record(fd, data)
    _fsync_dir(directory)
    return record


def keep_alive_problem(fd: int, directory: str, epoch: int, record_bytes: bytes,
                       epoch_bytes: Optional[bytes] = None) -> Optional[str]:
    """Check that we are still the master; returns None if so, else why not.

    In order: the lock file still exists and is the same inode as our
    descriptor; the epoch is still ours (with ``epoch_bytes``: the epoch file is
    byte for byte what we wrote, so a second master of the same number, after
    the directory was wiped, is told apart); re-asserting the OFD lock on our own
    descriptor still succeeds (on NFSv4 this asks the server); and rewriting our
    holder record in place (same bytes) and fsyncing it succeeds -- after a lost
    NFSv4 lock Linux fails I/O on the descriptor with EIO.
    """
    directory = os.fspath(directory)
    path = lock_path(directory)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "the lock file %s was deleted" % path
    except OSError as exc:
        return "cannot stat the lock file %s: %s" % (path, exc)
    try:
        fst = os.fstat(fd)
    except OSError as exc:
        return "our lock descriptor is unusable: %s" % exc
    if (st.st_dev, st.st_ino) != (fst.st_dev, fst.st_ino):
        return "the lock file %s was replaced by another file (inode %d, ours %d)" % (path, st.st_ino, fst.st_ino)
    try:
        current = read_epoch(directory)
    except (OSError, ValueError) as exc:
        return "cannot read the epoch file: %s" % exc
    if current != epoch:
        return "the epoch moved from %d to %d: another broker became master" % (epoch, current)
    if epoch_bytes is not None:
        try:
            if read_epoch_file(directory) != epoch_bytes:
                return "the epoch file was rewritten by another broker (same epoch %d): it became master" % epoch
        except OSError as exc:
            return "cannot read the epoch file: %s" % exc
    try:
        if not _lock_fd(fd, blocking=False):
            return "the lock on %s is held by someone else" % path
    except OSError as exc:
        return "re-asserting the lock on %s failed: %s" % (path, exc)
    try:
        _write_record(fd, record_bytes)
    except OSError as exc:
        return "the write+fsync probe on %s failed: %s" % (path, exc)
    return None


def lock_state(directory: str) -> Dict[str, Any]:
    """``{"held": bool, "holder": record|None, "epoch": int|None}`` without taking the lock."""
    directory = os.fspath(directory)
    try:
        epoch = read_epoch(directory)  # type: Optional[int]
    except (OSError, ValueError):
        epoch = None
    return {
        "directory": directory,
        "held": is_locked(lock_path(directory)),
        "holder": read_holder(directory),
        "epoch": epoch,
    }


def probe_exclusive(path: str) -> bool:
    """Can the lock on ``path`` be taken right now?  Takes it and releases it at once.

    Used to prove that locking works across hosts: while host A holds the lock,
    this must return False on host B.
    """
    fd = try_lock(path)
    if fd is None:
        return False
    unlock(fd)
    return True
