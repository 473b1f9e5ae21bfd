"""Failover STOMP client: ``failover:(...)`` URLs, reconnect, resubscribe and resend.

from hamq.client import FailoverClient
with FailoverClient("failover:(tcp://b1:61613,tcp://b2:61613)") as client:
    client.send("/queue/orders", b"hello")          # returns once the broker has it
"""

from hamq.client.errors import (
    BrokerError,
    ClientClosed,
    ClientError,
    ConnectionFailed,
    FailoverTimeout,
    SendInDoubt,
    TransactionInDoubt,
)
from hamq.client.failover import FailoverClient, Message, ReconnectEvent, Subscription
from hamq.client.url import BrokerURI, FailoverOptions, FailoverURL, FailoverURLError, parse_url

__all__ = [
    "BrokerError",
    "BrokerURI",
    "ClientClosed",
    "ClientError",
    "ConnectionFailed",
    "FailoverClient",
    "FailoverOptions",
    "FailoverTimeout",
    "FailoverURL",
    "FailoverURLError",
    "Message",
    "ReconnectEvent",
    "SendInDoubt",
    "Subscription",
    "TransactionInDoubt",
    "parse_url",
]
