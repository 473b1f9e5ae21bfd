"""Typed security settings read from ``broker.xml`` (see :mod:`hamq.security.config`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

#: ActiveMQ's defaults for the anonymous principal.
ANONYMOUS_USER = "anonymous"
ANONYMOUS_GROUP = "anonymous"


@dataclass
class UserConfig:
    """One ``<authenticationUser>`` or users-file line; ``password`` is a salted hash."""

    username: str
    password: str
    groups: Tuple[str, ...] = ()


@dataclass
class AuthenticationConfig:
    """``<simpleAuthenticationPlugin>``."""

    users: Dict[str, UserConfig] = field(default_factory=dict)
    anonymous_access_allowed: bool = False
    anonymous_user: str = ANONYMOUS_USER
    anonymous_group: str = ANONYMOUS_GROUP
    users_file: Optional[Path] = None
    #: Failed logins per client address before it must wait, and the longest wait.
    max_login_failures: int = 5
    max_login_delay_s: float = 60.0


@dataclass
class AuthorizationEntry:
    """``<authorizationEntry queue|topic=pattern read= write= admin=/>``."""

    kind: str  # queue | topic
    pattern: str
    read: Tuple[str, ...] = ()
    write: Tuple[str, ...] = ()
    admin: Tuple[str, ...] = ()


@dataclass
class AuthorizationConfig:
    """``<authorizationPlugin>``: entries in file order; matching entries' groups are united."""

    entries: List[AuthorizationEntry] = field(default_factory=list)


@dataclass
class TLSConfig:
    """``<sslContext certFile= keyFile= caFile=/>``: PEM files for ``stomp+ssl://`` connectors."""

    cert_file: Path
    key_file: Path
    ca_file: Optional[Path] = None


@dataclass
class SecurityConfig:
    """All of it; ``None`` parts are not configured."""

    authentication: Optional[AuthenticationConfig] = None
    authorization: Optional[AuthorizationConfig] = None
    tls: Optional[TLSConfig] = None
