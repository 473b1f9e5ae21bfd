"""Refuse to run master/slave on storage whose locks are not really exclusive.

Shared-file master/slave is only as safe as the file system's locks.  Several
file systems and mount options hand the "exclusive" lock to two hosts at once,
or never give a dead host's lock back; each has bitten ActiveMQ users in the
field.  This module reads ``/proc/self/mountinfo`` (the text can be passed in,
for tests and for the Ansible ``shared_lock`` module), finds the mount that
holds a path and says whether it is safe, with the reason and the fix.

Like :mod:`hamq.ha.lockfile` it is stdlib only, imports nothing from hamq and
keeps to Python 3.8 syntax, because the Ansible module uses this same file.

Refused, and why (see the reference notes on ActiveMQ's shared file system
master/slave and the lab measurements):

* NFS below version 4: an NFSv3 server never times out the lock of a client
  that died, so no slave can ever take over; every broker has to be restarted.
* ``nolock`` or ``local_lock`` other than ``none``: locks become local to each
  host, so brokers on two hosts both hold the "exclusive" lock: two masters.
* OCFS2: with the o2cb stack fcntl locks are node-local (AMQ-4378: both
  brokers became master); ActiveMQ's documentation forbids it.
* GFS2 with ``localflocks`` or ``lockproto=lock_nolock``: flock and POSIX/OFD
  locks become node-local.
* NFS ``soft`` (or ``softerr``): after ``retrans`` timeouts a write or fsync
  returns an error instead of waiting for the server, so a journal record the
  broker thinks is durable can be missing or torn, and a lock renewal can fail
  while the master still writes.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Tuple

MOUNTINFO = "/proc/self/mountinfo"

OK = "ok"
WARN = "warn"
REFUSE = "refuse"

#: Single-host file systems: locks are exact, but there is no second host to fail over to.
LOCAL_FSTYPES = frozenset(
    "ext2 ext3 ext4 xfs btrfs zfs f2fs jfs reiserfs tmpfs ramfs overlay bcachefs".split()
)

_REF = "(reference: ActiveMQ 'Shared File System Master Slave' and broker-anchors section 5)"


class UnsafeStorageError(Exception):
    """The store directory is on storage where the master lock is not exclusive or never released."""


class Mount(object):
    """One line of mountinfo: where, what file system, which options."""

    def __init__(self, mount_id: int, mount_point: str, fstype: str, source: str, options: Dict[str, str]):
        self.mount_id = mount_id
        self.mount_point = mount_point
        self.fstype = fstype
        self.source = source
        self.options = options

    def __repr__(self) -> str:
        return "Mount(%r, %r, %r)" % (self.mount_point, self.fstype, self.options)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and len(field[i + 1 : i + 4]) == 3 and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _parse_options(*texts: str) -> Dict[str, str]:
    options = {}  # type: Dict[str, str]
    for text in texts:
        for item in text.split(","):
            if not item:
                continue
            key, _, value = item.partition("=")
            options[key] = value
    return options


def parse_mountinfo(text: str) -> List[Mount]:
    """Parse mountinfo text (see proc(5)); malformed lines are skipped."""
    mounts = []
    for line in text.splitlines():
        parts = line.split(" ")
        try:
            sep = parts.index("-", 6)
            mount_id = int(parts[0])
            mount_point = _unescape(parts[4])
            per_mount = parts[5]
            fstype, source, super_opts = parts[sep + 1], parts[sep + 2], parts[sep + 3]
        except (ValueError, IndexError):
            continue
        mounts.append(Mount(mount_id, mount_point, fstype, _unescape(source), _parse_options(per_mount, super_opts)))
    return mounts


def _resolve(path: str) -> str:
    """The real path of ``path``, or of its nearest existing ancestor plus the rest (the store may not exist yet)."""
    path = os.path.abspath(os.fspath(path))
    missing = []  # type: List[str]
    while not os.path.exists(path):
        parent, name = os.path.split(path)
        if parent == path:
            break
        missing.insert(0, name)
        path = parent
    return os.path.join(os.path.realpath(path), *missing)


def find_mount(path: str, mounts: List[Mount]) -> Optional[Mount]:
    """The mount holding ``path``: longest mount point that is a prefix; the later of stacked mounts wins."""
    real = _resolve(path)
    best = None  # type: Optional[Mount]
    for mount in mounts:
        mp = mount.mount_point.rstrip("/") or "/"
        if real == mp or real.startswith(mp if mp.endswith("/") else mp + "/"):
            if best is None or len(mp) >= len(best.mount_point.rstrip("/") or "/"):
                best = mount
    return best


def _nfs_version(mount: Mount) -> Optional[float]:
    for key in ("vers", "nfsvers"):
        value = mount.options.get(key)
        if value:
            try:
                return float(value)
            except ValueError:
                return None
    if mount.fstype == "nfs4":
        return 4.0
    return None


def assess(mount: Mount) -> Tuple[str, List[str]]:
    """(verdict, reasons) for one mount; every reason says why and how to fix it."""
    fstype = mount.fstype
    opts = mount.options
    where = "%s (%s on %s)" % (mount.mount_point, fstype, mount.source)
    refusals = []  # type: List[str]
    notes = []  # type: List[str]
    if fstype in ("nfs", "nfs4"):
        version = _nfs_version(mount)
        if version is None or version < 4:
            refusals.append(
                "%s is NFS version %s: an NFSv3 server never times out the lock of a client that died, so after "
                "the master's host crashes no slave can ever take the lock and every broker must be restarted %s. "
                "Fix: mount it with NFSv4 (e.g. -o vers=4.2), whose locks expire with the client's lease"
                % (where, opts.get("vers") or opts.get("nfsvers") or "2/3", _REF)
            )
        else:
            notes.append(
                "%s is NFSv%s: a dead master's lock is freed after one NFSv4 lease (nfsv4leasetime, 90 s by "
                "default), so takeover after a host crash takes about one lease" % (where, opts.get("vers") or "4")
            )
        if "nolock" in opts:
            refusals.append(
                "%s is mounted with nolock: locks are then local to each host, so brokers on two hosts both get "
                "the 'exclusive' lock and both become master, writing one journal %s. Fix: remove nolock "
                "(and use NFSv4)" % (where, _REF)
            )
        for soft in ("soft", "softerr"):
            if soft in opts:
                refusals.append(
                    "%s is mounted %s: when the server is slow or away for timeo x retrans, a write or fsync "
                    "fails with an I/O error instead of waiting, so an acknowledged journal record can be lost "
                    "or torn %s. Fix: mount it hard (the default; remove %s)" % (where, soft, _REF, soft)
                )
        local_lock = opts.get("local_lock", "none")
        if local_lock != "none":
            refusals.append(
                "%s is mounted with local_lock=%s: those locks are kept on this host only, so a broker on "
                "another host can hold the same 'exclusive' lock: two masters %s. Fix: mount with "
                "local_lock=none (the default)" % (where, local_lock, _REF)
            )
    elif fstype == "ocfs2":
        refusals.append(
            "%s is OCFS2: with its o2cb cluster stack it has no cluster-wide fcntl locks, each node's lock is "
            "local, and in AMQ-4378 both brokers became master; ActiveMQ's documentation forbids OCFS2 %s. "
            "Fix: put the store on NFSv4 or GFS2" % (where, _REF)
        )
    elif fstype == "gfs2":
        if "localflocks" in opts:
            refusals.append(
                "%s is GFS2 mounted with localflocks: that makes flock and POSIX/OFD locks node-local, so "
                "brokers on two nodes both become master %s. Fix: mount it without localflocks" % (where, _REF)
            )
        elif opts.get("lockproto") == "lock_nolock":
            refusals.append(
                "%s is GFS2 mounted with lockproto=lock_nolock: without the DLM every node locks on its own, "
                "so brokers on two nodes both become master %s. Fix: mount it with lock_dlm (the default of a "
                "filesystem made with mkfs.gfs2 -p lock_dlm)" % (where, _REF)
            )
        else:
            notes.append("%s is GFS2: POSIX/OFD locks are cluster-wide through the DLM" % where)
    elif fstype in LOCAL_FSTYPES:
        notes.append(
            "%s is a local file system: locks are exact, but only brokers on this host can share it, "
            "so this is not highly available across hosts (fine for a lab or a single host)" % where
        )
    else:
        return WARN, [
            "%s is %s, whose cross-host locking hamq has not verified. Check with the shared_lock probe "
            "(hold the lock on one host; it must be refused on another) before relying on it" % (where, fstype)
        ]
    if refusals:
        return REFUSE, refusals
    return OK, notes


class StorageVerdict(object):
    """The result of :func:`check_storage`: the mount, the verdict and the reasons."""

    def __init__(self, path: str, mount: Optional[Mount], verdict: str, reasons: List[str]):
        self.path = path
        self.mount = mount
        self.verdict = verdict
        self.reasons = reasons

    @property
    def refused(self) -> bool:
        return self.verdict == REFUSE

    def to_dict(self) -> Dict[str, Any]:
        m = self.mount
        return {
            "path": self.path,
            "mount_point": m.mount_point if m else None,
            "fstype": m.fstype if m else None,
            "source": m.source if m else None,
            "options": dict(m.options) if m else {},
            "verdict": self.verdict,
            "reasons": list(self.reasons),
        }


def check_storage(path: str, mountinfo_text: Optional[str] = None) -> StorageVerdict:
    """Assess the storage holding ``path``.  ``mountinfo_text`` defaults to this process's mountinfo."""
    if mountinfo_text is None:
        with open(MOUNTINFO) as f:
            mountinfo_text = f.read()
    mount = find_mount(path, parse_mountinfo(mountinfo_text))
    if mount is None:
        return StorageVerdict(os.fspath(path), None, WARN, ["no mount found for %s in mountinfo" % path])
    verdict, reasons = assess(mount)
    return StorageVerdict(os.fspath(path), mount, verdict, reasons)


def enforce(
    path: str,
    allow_unsafe: bool = False,
    mountinfo_text: Optional[str] = None,
    logger: Optional[logging.Logger] = None,
) -> StorageVerdict:
    """Raise :class:`UnsafeStorageError` for refused storage, unless ``allow_unsafe`` (logged as a WARNING).

    Notes and warnings are logged; the verdict is returned either way.
    """
    log = logger or logging.getLogger("hamq.ha")
    result = check_storage(path, mountinfo_text)
    if result.refused:
        text = "; ".join(result.reasons)
        if not allow_unsafe:
            raise UnsafeStorageError(
                "refusing to use %s for master/slave: %s. (Only for a test where two masters are acceptable: "
                'allowUnsafeStorage="true" on <kahaDB> lifts this refusal.)' % (path, text)
            )
        log.warning(
            "UNSAFE STORAGE ALLOWED by allowUnsafeStorage=\"true\": %s. TWO MASTERS OR A STUCK LOCK ARE "
            "POSSIBLE; never run production like this", text,
        )
    elif result.verdict == WARN:
        for reason in result.reasons:
            log.warning("storage check: %s", reason)
    else:
        for reason in result.reasons:
            log.info("storage check: %s", reason)
    return result
