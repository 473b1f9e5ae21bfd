"""Store exceptions, kept apart so the HA part can raise them without importing the journal."""

from __future__ import annotations


class StoreError(Exception):
    """The journal could not be read or written; the server halts the master on it.

    Halting (as ActiveMQ's DefaultIOExceptionHandler does) makes clients fail
    over to a healthy broker instead of talking to one that may lose data.
    """


class StoreFenced(StoreError):
    """This process is no longer the master (a newer epoch owns the store); nothing was written."""
