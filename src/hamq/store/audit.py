"""Duplicate audit: the most recent message ids this store accepted.

After a failover a producer resends whatever it has no receipt for.  The
broker asks ``is_duplicate`` first, receipts the resend again but enqueues it
once.  The audit is saved with each checkpoint and rebuilt from the journal
after it.

It is bounded with two generations of sets: ids go into ``new``; when ``new``
holds ``capacity // 2`` ids it becomes ``old`` and the previous ``old`` is
dropped.  So at least the last ``capacity // 2`` ids (and at most
``capacity``) are always remembered, each operation is O(1), and loading 100k
ids at startup is one C-level ``set()`` call.
"""

from __future__ import annotations

from typing import List


class DuplicateAudit:
    """A bounded set of recent message ids."""

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 0:
            raise ValueError(f"audit capacity must be >= 0, got {capacity}; use 0 to disable the audit")
        self.capacity = capacity
        self._half = max(1, capacity // 2)
        self._old: set = set()
        self._new: set = set()

    def add(self, message_id: str) -> None:
        if not self.capacity or message_id in self._new:
            return
        self._new.add(message_id)
        if len(self._new) >= self._half:
            self._old, self._new = self._new, set()

    def load(self, message_ids: List[str]) -> None:
        """Replace the contents with ``message_ids`` (oldest first), as saved by a checkpoint."""
        self._old = set(message_ids[-self.capacity :]) if self.capacity else set()
        self._new = set()

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._new or message_id in self._old

    def __len__(self) -> int:
        return len(self._old | self._new) if self._old and self._new else len(self._old) + len(self._new)

    def ids(self) -> List[str]:
        """Older generation first, the order they are saved and reloaded in."""
        return [m for m in self._old if m not in self._new] + list(self._new)
