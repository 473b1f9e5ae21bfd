"""Hand waiting messages to consumers: round-robin, prefetch-bounded.

Queues balance messages across their consumers one at a time in turn,
skipping a consumer whose prefetch window is full or whose selector does not
match. An exclusive consumer, while present, gets everything (ActiveMQ's
``activemq.exclusive``). A message nobody's selector matches stays queued.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from hamq.core.destinations import MessageQueue

#: Most messages one queue hands out per round, so one deep queue cannot
#: monopolise the event loop; the server runs another round right after.
ROUND_BUDGET = 2000


def dispatch(queue: MessageQueue, deliver: Callable, expire: Callable, now_ms: float) -> bool:
    """Deliver what can be delivered now; returns True if more rounds may deliver more."""
    consumers = [s for s in queue.consumers if s.active]
    if not consumers:
        return False
    exclusive = [s for s in consumers if s.exclusive]
    if exclusive:
        consumers = exclusive[:1]
    queue.page_in()
    if not queue.memory:
        return False
    budget = ROUND_BUDGET
    if all(s.selector is None and not s.no_local for s in consumers):
        n = len(consumers)
        memory = queue.memory
        while memory and budget:
            chosen = None
            for i in range(n):
                candidate = consumers[(queue.rr + i) % n]
                if candidate.has_capacity():
                    chosen = candidate
                    queue.rr = (queue.rr + i + 1) % n
                    break
            if chosen is None:
                return False
            message = memory.popleft()
            if message.expires and message.is_expired(now_ms):
                expire(queue, message)
                continue
            deliver(chosen, message)
            budget -= 1
            if queue.backlog:
                queue.page_in()
        return bool(memory)
    # Selector (or noLocal) path: walk the window, keep what nobody takes.
    kept = deque()
    memory = queue.memory
    n = len(consumers)
    while memory and budget:
        if not any(s.has_capacity() for s in consumers):
            break
        message = memory.popleft()
        if message.expires and message.is_expired(now_ms):
            expire(queue, message)
            continue
        chosen = None
        for i in range(n):
            candidate = consumers[(queue.rr + i) % n]
            if candidate.has_capacity() and candidate.matches(message):
                chosen = candidate
                queue.rr = (queue.rr + i + 1) % n
                break
        if chosen is None:
            kept.append(message)
            continue
        deliver(chosen, message)
        budget -= 1
    kept.extend(memory)
    queue.memory = kept
    return budget == 0
