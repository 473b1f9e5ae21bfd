"""hamq.store: the crash-safe journal store behind ``<kahaDB directory=...>``.

Plain file I/O, no sockets, no asyncio; see ``hamq.store.message_store`` for
the design (durability, recovery, fencing) and docs/internals.md for the API.
"""

from hamq.store.errors import StoreError, StoreFenced
from hamq.store.message_store import MessageStore, RecoveryReport
from hamq.store.ops import Ack, AddMessage, DeleteKey, MarkDispatched, PutMeta, Ref, RememberId, StoredMessage

__all__ = [
    "Ack",
    "AddMessage",
    "DeleteKey",
    "MarkDispatched",
    "MessageStore",
    "PutMeta",
    "RecoveryReport",
    "Ref",
    "RememberId",
    "StoreError",
    "StoreFenced",
    "StoredMessage",
]
