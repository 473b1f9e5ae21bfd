"""Test-only fault shim for ``hamq run``: loaded through PYTHONPATH, active only when HAMQ_FAULTS is set.

Python imports ``sitecustomize`` at start-up, before any hamq module, so the
wrappers installed here are what the broker calls, including the journal's
``flush_data = getattr(os, "fdatasync", os.fsync)`` bound at its import.
Without HAMQ_FAULTS this module does nothing at all.

HAMQ_FAULTS names a JSON spec (written by ``faultlab.faults.FaultSpec``)::

    {"events": "/tmp/x/events.jsonl",          # one JSON line per rule that fired
     "iolog": {"dir": "/tmp/x/iolog", "paths": ["*/db-*.log"]},   # undo log for the power-cut model
     "rules": [{"name": "r1", "ops": ["pwrite"], "path": "*/kahadb/db-*.log",
                "data_prefix": "HQB1", "arm_file": "/tmp/x/arm", "nth": 1, "times": 1,
                "when": "before", "action": "pause", "errno": "EIO", "seconds": 0.5}]}

A rule counts the calls of its ``ops`` whose file matches ``path`` (fds are
resolved through /proc/self/fd), whose data starts with ``data_prefix``
(writes only) and that happen while ``arm_file`` exists (when given).  On the
``nth`` counted call, and the ``times - 1`` after it (``times`` 0: every one
from the nth on), it acts ``before`` or ``after`` the real call:

* ``pause``: SIGSTOP this very process; the test sends SIGCONT (or SIGKILL);
* ``fail``: raise OSError(errno) instead of (before) or after the real call;
* ``delay``: sleep ``seconds``;
* ``kill``: SIGKILL this process (a crash at exactly that point).

The event line is written before the action, so a test can wait for it.

The io log (page-cache model).  Before every write or truncation of a file
matching ``iolog.paths`` the shim appends an *undo record* (the bytes and the
size the call is about to change); after every successful fsync/fdatasync of
such a file it appends a *sync record* stamped with the time the fsync
started.  ``faultlab.faults.power_cut`` replays these logs of all processes
to put each file back to what its last fsync made durable.
"""

from __future__ import annotations

import errno as _errno
import fnmatch
import json
import os
import signal
import struct
import threading
import time

_SPEC_PATH = os.environ.get("HAMQ_FAULTS")

_real = {}
_lock = threading.Lock()
_rules = []
_events_fd = -1
_iolog_fd = -1
_iolog_patterns = []
_record_head = struct.Struct("<I")


def _path_of(fd):
    try:
        return os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        return None


def _matches(path, pattern):
    return path is not None and fnmatch.fnmatch(path, pattern)


class _Rule(object):
    def __init__(self, spec):
        self.name = spec.get("name", "rule")
        self.ops = set(spec["ops"])
        self.path = spec.get("path", "*")
        prefix = spec.get("data_prefix")
        self.data_prefix = prefix.encode("latin-1") if prefix is not None else None
        self.arm_file = spec.get("arm_file")
        self.nth = int(spec.get("nth", 1))
        self.times = int(spec.get("times", 1))
        self.when = spec.get("when", "before")
        self.action = spec["action"]
        self.errno = getattr(_errno, spec.get("errno", "EIO"))
        self.seconds = float(spec.get("seconds", 0))
        self.count = 0
        self.fired = 0

    def hit(self, op, path, data):
        """Count this call; True when the rule acts on it (caller holds _lock)."""
        if op not in self.ops or not _matches(path, self.path):
            return False
        if self.data_prefix is not None and (data is None or not bytes(data[: len(self.data_prefix)]) == self.data_prefix):
            return False
        if self.arm_file is not None and not os.path.exists(self.arm_file):
            return False
        self.count += 1
        if self.count < self.nth or (self.times and self.fired >= self.times):
            return False
        self.fired += 1
        return True


def _event(rule, op, path, when):
    line = json.dumps({"rule": rule.name, "op": op, "path": path, "when": when, "action": rule.action,
                       "pid": os.getpid(), "thread": threading.current_thread().name,
                       "t": time.monotonic(), "count": rule.count}) + "\n"
    if _events_fd >= 0:
        _real["write"](_events_fd, line.encode())


def _act(rule, op, path, when):
    _event(rule, op, path, when)
    if rule.action == "pause":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif rule.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # never reached: SIGKILL cannot be caught
    elif rule.action == "delay":
        time.sleep(rule.seconds)
    elif rule.action == "fail":
        raise OSError(rule.errno, "%s (injected by the fault shim, rule %s)" % (os.strerror(rule.errno), rule.name))


def _due(op, path, data, when):
    if not _rules:
        return []
    with _lock:
        return [r for r in _rules if r.when == when and r.hit(op, path, data)]


# ------------------------------------------------------------------ io log
def _logged(path):
    return path is not None and any(fnmatch.fnmatch(path, p) for p in _iolog_patterns)


def _log_record(header, data=b""):
    header["pid"] = os.getpid()
    head = json.dumps(header).encode()
    _real["write"](_iolog_fd, _record_head.pack(len(head)) + head + bytes(data))


def _stat_ids(fd):
    st = os.fstat(fd)
    return st.st_dev, st.st_ino, st.st_size


def _undo_write(fd, path, offset, data):
    dev, ino, size = _stat_ids(fd)
    length = len(data)
    old = os.pread(fd, length, offset) if length and offset < size else b""
    _log_record({"kind": "undo", "t": time.monotonic_ns(), "path": path, "dev": dev, "ino": ino,
                 "offset": offset, "length": length, "size": size, "old": len(old),
                 "head": bytes(data[:8]).hex()}, old)


def _undo_truncate_fd(fd, path, length):
    dev, ino, size = _stat_ids(fd)
    old = os.pread(fd, size - length, length) if size > length else b""
    _log_record({"kind": "undo", "t": time.monotonic_ns(), "path": path, "dev": dev, "ino": ino,
                 "offset": length, "length": max(0, size - length), "size": size, "old": len(old)}, old)


# ------------------------------------------------------------------ wrappers
def _fd_path(fd):
    return _path_of(fd) if isinstance(fd, int) else None


def _wrap_write(name):
    real = _real[name]

    def wrapper(fd, data, *args):
        path = _fd_path(fd)
        op = name
        for rule in _due(op, path, data, "before"):
            _act(rule, op, path, "before")
        if _iolog_fd >= 0 and _logged(path):
            if name == "pwrite":
                offset = args[0]
            else:
                offset = os.lseek(fd, 0, os.SEEK_CUR)
            _undo_write(fd, path, offset, data)
        result = real(fd, data, *args)
        for rule in _due(op, path, data, "after"):
            _act(rule, op, path, "after")
        return result

    wrapper.__name__ = name
    wrapper.__doc__ = real.__doc__
    return wrapper


def _wrap_sync(name):
    real = _real[name]

    def wrapper(fd):
        fileno = fd if isinstance(fd, int) else fd.fileno()
        path = _fd_path(fileno)
        for rule in _due(name, path, None, "before"):
            _act(rule, name, path, "before")
        started = time.monotonic_ns()
        result = real(fd)
        if _iolog_fd >= 0 and _logged(path):
            dev, ino, size = _stat_ids(fileno)
            _log_record({"kind": "sync", "t": started, "path": path, "dev": dev, "ino": ino, "size": size})
        for rule in _due(name, path, None, "after"):
            _act(rule, name, path, "after")
        return result

    wrapper.__name__ = name
    wrapper.__doc__ = real.__doc__
    return wrapper


def _wrap_ftruncate():
    real = _real["ftruncate"]

    def ftruncate(fd, length):
        path = _fd_path(fd)
        for rule in _due("ftruncate", path, None, "before"):
            _act(rule, "ftruncate", path, "before")
        if _iolog_fd >= 0 and _logged(path):
            _undo_truncate_fd(fd, path, length)
        result = real(fd, length)
        for rule in _due("ftruncate", path, None, "after"):
            _act(rule, "ftruncate", path, "after")
        return result

    ftruncate.__doc__ = real.__doc__
    return ftruncate


def _wrap_truncate():
    real = _real["truncate"]

    def truncate(path, length):
        if isinstance(path, int):
            return os.ftruncate(path, length)
        text = os.path.abspath(os.fsdecode(path))
        for rule in _due("truncate", text, None, "before"):
            _act(rule, "truncate", text, "before")
        if _iolog_fd >= 0 and _logged(text):
            fd = os.open(text, os.O_RDONLY)
            try:
                _undo_truncate_fd(fd, text, length)
            finally:
                os.close(fd)
        result = real(path, length)
        for rule in _due("truncate", text, None, "after"):
            _act(rule, "truncate", text, "after")
        return result

    truncate.__doc__ = real.__doc__
    return truncate


def _wrap_rename(name):
    real = _real[name]

    def wrapper(src, dst, *args, **kwargs):
        s = os.path.abspath(os.fsdecode(src)) if not isinstance(src, int) else None
        d = os.path.abspath(os.fsdecode(dst)) if not isinstance(dst, int) else None
        target = d if any(_matches(d, r.path) for r in _rules if name in r.ops) else s
        for rule in _due(name, target, None, "before"):
            _act(rule, name, target, "before")
        result = real(src, dst, *args, **kwargs)
        if _iolog_fd >= 0 and (_logged(s) or _logged(d)):
            _log_record({"kind": "rename", "t": time.monotonic_ns(), "src": s, "dst": d})
        for rule in _due(name, target, None, "after"):
            _act(rule, name, target, "after")
        return result

    wrapper.__name__ = name
    wrapper.__doc__ = real.__doc__
    return wrapper


def _install(spec):
    global _events_fd, _iolog_fd, _iolog_patterns
    for name in ("write", "pwrite", "fsync", "fdatasync", "ftruncate", "truncate", "rename", "replace"):
        if hasattr(os, name):
            _real[name] = getattr(os, name)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    if spec.get("events"):
        _events_fd = os.open(spec["events"], flags, 0o644)
    iolog = spec.get("iolog")
    if iolog:
        os.makedirs(iolog["dir"], exist_ok=True)
        _iolog_fd = os.open(os.path.join(iolog["dir"], "io-%d.log" % os.getpid()), flags, 0o644)
        _iolog_patterns = list(iolog.get("paths", ["*"]))
    _rules.extend(_Rule(r) for r in spec.get("rules", []))
    os.write = _wrap_write("write")
    os.pwrite = _wrap_write("pwrite")
    os.fsync = _wrap_sync("fsync")
    if "fdatasync" in _real:
        os.fdatasync = _wrap_sync("fdatasync")
    os.ftruncate = _wrap_ftruncate()
    os.truncate = _wrap_truncate()
    os.rename = _wrap_rename("rename")
    os.replace = _wrap_rename("replace")


if _SPEC_PATH:
    with open(_SPEC_PATH) as _f:
        _install(json.load(_f))
