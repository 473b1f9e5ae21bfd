"""Exceptions of :mod:`hamq.client`; each says what is unknown and what to do about it."""

from __future__ import annotations

from typing import Optional

from hamq.stomp.codec import Frame


class ClientError(Exception):
    """Base class of every error this client raises."""


class ConnectionFailed(ClientError):
    """No broker could be reached within the URL's reconnect limits, or a broker refused us."""


class FailoverTimeout(ClientError):
    """The URL's ``timeout`` passed while the operation waited for a broker."""


class SendInDoubt(ClientError):
    """A send whose arrival cannot be known; resend it with the same ``message_id`` to be safe."""

    def __init__(self, message: str, message_id: str):
        super().__init__(message)
        self.message_id = message_id


class TransactionInDoubt(ClientError):
    """The connection failed over while a transaction was open: its outcome is unknown or rolled back."""

    def __init__(self, message: str, transaction: str):
        super().__init__(message)
        self.transaction = transaction


class BrokerError(ClientError):
    """The broker answered an operation with an ERROR frame."""

    def __init__(self, message: str, frame: Optional[Frame] = None):
        super().__init__(message)
        self.frame = frame


class ClientClosed(ClientError):
    """The client was closed."""
