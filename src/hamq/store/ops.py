"""The operations a batch is made of, and the values the store hands back.

They are plain NamedTuples: cheap to build on the hot path and easy to
compare in tests.  Their binary form lives in ``hamq.store.codec``.
"""

from __future__ import annotations

from typing import List, NamedTuple, Tuple, Union

Headers = List[Tuple[str, str]]


class AddMessage(NamedTuple):
    """Store a message under ``key``; the store assigns its ``seq`` (see ``MessageStore.last_seqs``)."""

    key: str
    message_id: str
    headers: Headers  # list of (name, value); a dict is accepted too
    body: bytes


class Ack(NamedTuple):
    """The message ``seq`` under ``key`` is consumed; it will not come back after a restart."""

    key: str
    seq: int


class MarkDispatched(NamedTuple):
    """The highest ``seq`` of ``key`` handed to a consumer; recovered messages at or below it are redelivered."""

    key: str
    seq: int


class PutMeta(NamedTuple):
    """Attach a string (e.g. a durable subscription's definition) to ``key``."""

    key: str
    value: str


class DeleteKey(NamedTuple):
    """Forget ``key`` entirely: its pending messages, its mark and its metadata."""

    key: str


class RememberId(NamedTuple):
    """A producer's duplicate id (``_AMQ_DUPL_ID``) was stored under ``scope`` (its destination).

    It rides in the same batch as the message it identifies, so the audit that
    recognises a resend is exactly as durable as the message itself.
    """

    scope: str
    duplicate_id: str


Op = Union[AddMessage, Ack, MarkDispatched, PutMeta, DeleteKey, RememberId]


class Ref(NamedTuple):
    """Where a pending message lives on disk; a few ints so a deep queue costs little memory."""

    key: str
    seq: int
    segment: int
    offset: int
    length: int


class StoredMessage(NamedTuple):
    """A message read back from the journal."""

    key: str
    seq: int
    message_id: str
    headers: Headers
    body: bytes
    redelivered: bool
