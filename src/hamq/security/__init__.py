"""Authentication, authorization and TLS for the broker (ActiveMQ's security plugins).

The engine holds one :class:`SecurityPolicy` and asks it two questions: who is
this CONNECT (:meth:`SecurityPolicy.login`) and may this principal do that to
this destination (:meth:`SecurityPolicy.authorize`). Both answer with a
principal or raise :class:`AccessDenied` carrying the problem and the fix for
the ERROR frame. Plain Python, no sockets: testable by calling it.
"""

from __future__ import annotations

import logging
from typing import Optional

from hamq.security.authentication import AccessDenied, Authenticator, Principal
from hamq.security.authorization import Authorizer

__all__ = ["AccessDenied", "Principal", "SecurityPolicy"]

log = logging.getLogger("hamq.security")


class SecurityPolicy:
    """The broker's security decisions, built from ``BrokerConfig.security``."""

    def __init__(self, security=None):
        self.config = security
        self.authenticator = Authenticator(security.authentication if security is not None else None)
        self.authorizer = Authorizer(security.authorization if security is not None else None)

    @classmethod
    def from_config(cls, config) -> "SecurityPolicy":
        policy = cls(getattr(config, "security", None))
        if not policy.authenticator.enabled:
            log.warning("no <simpleAuthenticationPlugin> is configured: any client that reaches a connector may "
                        "connect without a password (add <plugins><simpleAuthenticationPlugin> to require logins)")
        return policy

    def login(self, peer, login: Optional[str], passcode: Optional[str], now: float) -> Principal:
        principal = self.authenticator.authenticate(peer, login, passcode, now)
        return principal

    def authorize(self, principal: Optional[Principal], kind: str, name: str, action: str) -> None:
        """Raise :class:`AccessDenied` unless ``principal`` may ``action`` (read/write/admin) the destination."""
        if not self.authorizer.enabled:
            return
        groups = principal.groups if principal is not None else frozenset()
        if self.authorizer.allowed(groups, kind, name, action):
            return
        who = principal.username if principal is not None else "an unauthenticated client"
        verb = {"read": "read from (SUBSCRIBE)", "write": "write to (SEND)",
                "admin": "administer (create or remove a durable subscription on)"}[action]
        raise AccessDenied(f"user {who!r} is not authorized to {verb} /{kind}/{name}",
                           f"ask an administrator to add one of the user's groups to the {action} list of an "
                           f"authorizationEntry matching {kind}={name!r}, or use another destination")
