"""What a principal may do with a destination: ActiveMQ ``authorizationEntries``.

Patterns use ActiveMQ's wildcards on ``.``-separated names: ``*`` is exactly
one segment, ``>`` (last only) is the rest, including nothing (``orders.>``
matches ``orders`` and ``orders.eu.new``). All entries that match a
destination count: their group lists are united, as in ActiveMQ's
``DefaultAuthorizationMap``. A destination no entry matches is denied.

Actions: ``read`` = SUBSCRIBE, ``write`` = SEND, ``admin`` = create or remove a
durable topic subscription (state that outlives the client). Unlike ActiveMQ,
creating a destination needs no ``admin``: hamq does not keep empty
destinations across restarts, so that rule would make a consumer's rights
depend on whether its queue held messages at the last restart.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, List, Optional, Tuple

from hamq.security.model import AuthorizationConfig, AuthorizationEntry

ACTIONS = ("read", "write", "admin")
_CACHE_LIMIT = 10_000


def check_pattern(pattern: str) -> Optional[str]:
    """Why ``pattern`` is not a valid destination pattern, or None."""
    if not pattern:
        return "it is empty"
    parts = pattern.split(".")
    for i, part in enumerate(parts):
        if not part:
            return "it has an empty segment (two dots, or a dot at either end)"
        if part == ">" and i != len(parts) - 1:
            return "'>' may only be the last segment"
        if part not in ("*", ">") and ("*" in part or ">" in part):
            return f"segment {part!r} mixes a wildcard with other characters"
    return None


def matches(pattern: str, name: str) -> bool:
    """ActiveMQ wildcard match of one pattern against one destination name."""
    pat = pattern.split(".")
    parts = name.split(".")
    for i, p in enumerate(pat):
        if p == ">":
            return True
        if i >= len(parts):
            return False
        if p != "*" and p != parts[i]:
            return False
    return len(pat) == len(parts)


class Authorizer:
    """Answers "may these groups do ``action`` on ``kind``/``name``?"."""

    def __init__(self, config: Optional[AuthorizationConfig]):
        self.enabled = config is not None
        self._entries: List[AuthorizationEntry] = list(config.entries) if config else []
        self._cache: Dict[Tuple[str, str, str], FrozenSet[str]] = {}

    def groups_for(self, kind: str, name: str, action: str) -> FrozenSet[str]:
        """Every group that an entry matching the destination grants ``action``."""
        key = (kind, name, action)
        found = self._cache.get(key)
        if found is None:
            groups = set()
            for entry in self._entries:
                if entry.kind == kind and any(matches(p, name) for p in entry.pattern.split(",")):
                    groups.update(getattr(entry, action))
            found = frozenset(groups)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = found
        return found

    def allowed(self, groups, kind: str, name: str, action: str) -> bool:
        if not self.enabled:
            return True
        return not self.groups_for(kind, name, action).isdisjoint(groups)
