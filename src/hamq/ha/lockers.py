"""Pluggable lockers: what decides which broker of a group is master.

Like ActiveMQ's ``<locker>`` element, the locker is chosen by name.  Lockers are
found through the Python entry-point group ``hamq.lockers`` so a third party can
ship one (say, a lease in a database) without touching hamq; ``shared-file``
(:class:`hamq.ha.shared_file.SharedFileLocker`) is built in and the default.

A locker's contract, used by the server's start order::

    lease = await locker.acquire(on_waiting=...)   # blocks while we are a slave
    store.open(epoch=lease.epoch); MessageStore(..., fence=lease.check_fence)
    task = asyncio.ensure_future(lease.keep_alive(on_lost))
    ...
    lease.release()
"""

from __future__ import annotations

import abc
import logging
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, Optional

GROUP = "hamq.lockers"
DEFAULT_LOCKER = "shared-file"

log = logging.getLogger("hamq.ha")


class LockerError(Exception):
    """The locker cannot be set up (unknown name, bad attribute, unusable directory)."""


class LockedError(LockerError):
    """``failIfLocked="true"`` and another broker holds the lock."""


class MasterLease(abc.ABC):
    """Proof that we are master, valid until :meth:`release` or until the lock is lost."""

    #: The fencing token: strictly larger than every earlier master's.
    epoch: int
    #: The holder record we wrote (nodeName, host, pid, epoch, acquiredAt, ...).
    record: Dict[str, Any]

    @abc.abstractmethod
    def check_fence(self) -> None:
        """Raise ``hamq.store.StoreFenced`` if another broker has become master.  Cheap: called per write batch."""

    @abc.abstractmethod
    async def keep_alive(self, on_lost: Callable[[str], Any]) -> None:
        """Check the lock every keep-alive period; on loss call ``on_lost(reason)`` once and return."""

    @abc.abstractmethod
    def release(self) -> None:
        """Give the lock up (clean shutdown).  Safe to call twice."""

    #: Set by the server: called on the event loop when a doubt (see :meth:`doubt`) has been cleared.
    on_valid: Optional[Callable[[], Any]] = None

    def serving(self) -> bool:
        """May the master serve clients right now?  The server asks before every frame and every write.

        A locker that can tell when its proof has gone stale (a pause, a hung
        store) returns False until it has re-checked; the default trusts the lease
        until it is lost.
        """
        return True

    def doubt(self, why: str) -> None:
        """The server noticed something (a pause of the event loop) that may have cost us the lock:
        stop :meth:`serving` until the lock is confirmed again, then call :attr:`on_valid`.

        The default lease cannot tell, so it has nothing to stop.
        """
        return None


class Locker(abc.ABC):
    """Creates leases.  Constructed by :func:`load_locker` with the ``<locker>`` config."""

    #: The entry-point / element name.
    name = ""

    def __init__(self, config: Any, directory: Path, identity: Dict[str, Any]):
        self.config = config
        self.directory = Path(directory)
        self.identity = dict(identity)

    @abc.abstractmethod
    async def acquire(self, on_waiting: Optional[Callable[[Optional[Dict[str, Any]]], Any]] = None) -> MasterLease:
        """Become master: return at once if the lock is free, else call ``on_waiting(holder)`` and wait.

        Raises :class:`LockedError` instead of waiting when failIfLocked is set.
        """

    @abc.abstractmethod
    def holder(self) -> Optional[Dict[str, Any]]:
        """The current master's record, for the status endpoint (None if unknown)."""


def _entry_points() -> Dict[str, Any]:
    eps = metadata.entry_points()
    if hasattr(eps, "select"):  # Python >= 3.10
        found = eps.select(group=GROUP)
    else:  # Python 3.9: a dict of group -> list
        found = eps.get(GROUP, [])
    return {ep.name: ep for ep in found}


def available_lockers() -> Dict[str, Any]:
    """Locker name -> entry point, for every installed locker."""
    return _entry_points()


def locker_class(name: str) -> type:
    """The class registered under ``name`` (``shared-file-locker`` also finds ``shared-file``)."""
    eps = available_lockers()
    wanted = name or DEFAULT_LOCKER
    candidates = [wanted]
    if wanted.endswith("-locker"):
        candidates.append(wanted[: -len("-locker")])
    for candidate in candidates:
        if candidate in eps:
            try:
                cls = eps[candidate].load()
            except Exception as exc:
                raise LockerError(
                    "the locker %r is installed but cannot be loaded: %s. Fix: reinstall the package "
                    "that provides it (entry point %s)" % (candidate, exc, eps[candidate].value)
                ) from exc
            return cls
    names = ", ".join(sorted(eps)) or "none"
    raise LockerError(
        "unknown locker %r. Fix: use one of the installed lockers (%s) as the element inside <locker>, "
        "or install the package that registers %r in the %r entry-point group" % (wanted, names, wanted, GROUP)
    )


def load_locker(locker_config: Any, directory: Path, identity: Dict[str, Any]) -> Locker:
    """Build the locker that ``locker_config.type`` names, guarding ``directory``.

    ``identity`` goes into the holder record: at least ``nodeName`` and
    ``brokerName``; extra keys (e.g. ``statusUrl``) are recorded as well.
    """
    cls = locker_class(getattr(locker_config, "type", "") or DEFAULT_LOCKER)
    return cls(locker_config, Path(directory), identity)
