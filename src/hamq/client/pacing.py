"""A steady send rate for ``hamq produce --rate``.

Why: a failover drill needs load that is still running when the master dies.
Unpaced, a fast host sends a few thousand messages before a slow controller
gets to the kill; at a fixed rate the load lasts ``count / rate`` seconds on
any machine, and the timeline plot shows a flat line with a clear dip.

After a stall (a failover), the pacer does not burst to catch up more than
one second's worth: the drill measures an outage, not a backlog.
"""

from __future__ import annotations

import time
from typing import Callable


class Pacer:
    """Hands out send slots ``1 / rate`` seconds apart; ``rate`` 0 means no limit."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate < 0:
            raise ValueError(f"rate must be 0 (no limit) or more, got {rate}")
        self.interval = 1.0 / rate if rate else 0.0
        self._clock = clock
        self._sleep = sleep
        self._due = None

    def wait(self) -> None:
        """Block until the next send may go out."""
        if not self.interval:
            return
        now = self._clock()
        if self._due is None or self._due < now - 1.0:
            self._due = now  # first send, or after a stall: no burst beyond one second
        if self._due > now:
            self._sleep(self._due - now)
        self._due += self.interval
