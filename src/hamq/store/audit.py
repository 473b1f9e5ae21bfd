"""Duplicate audit: the most recent message ids this store accepted.

After a failover a producer resends whatever it has no receipt for.  The
broker asks ``is_duplicate`` first, receipts the resend again but enqueues it
once.  The audit is bounded (oldest ids fall out first) so memory stays
flat; it is saved with each checkpoint and rebuilt from the journal after it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, List


class DuplicateAudit:
    """A bounded, insertion-ordered set of message ids."""

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 0:
            raise ValueError(f"audit capacity must be >= 0, got {capacity}; use 0 to disable the audit")
        self.capacity = capacity
        self._ids: "OrderedDict[str, None]" = OrderedDict()

    def add(self, message_id: str) -> None:
        if not self.capacity:
            return
        ids = self._ids
        if message_id in ids:
            ids.move_to_end(message_id)
            return
        ids[message_id] = None
        if len(ids) > self.capacity:
            ids.popitem(last=False)

    def update(self, message_ids: Iterable[str]) -> None:
        for mid in message_ids:
            self.add(mid)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> List[str]:
        """Oldest first, the order they are saved and reloaded in."""
        return list(self._ids)
