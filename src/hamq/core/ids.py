"""Unique ids in ActiveMQ's shape, so tools that parse ActiveMQ ids keep working.

``ID:<host>-<port>-<start ms>-<instance>:<connection>:<session>:<producer>:<seq>``
(``util/IdGenerator.java``). The start time makes ids from a restarted or
failed-over broker differ from those of the previous master.
"""

from __future__ import annotations

import itertools
import socket
import time

_instances = itertools.count(1)


class IdGenerator:
    """Makes message, session and ack ids; cheap enough to call per message."""

    def __init__(self, port: int = 0, host: str = "", clock=time.time):
        host = host or socket.gethostname() or "localhost"
        self.prefix = f"ID:{host}-{port}-{int(clock() * 1000)}-{next(_instances)}"
        self._connections = itertools.count(1)

    def connection_number(self) -> int:
        return next(self._connections)

    def session_id(self, connection_number: int) -> str:
        return f"{self.prefix}:{connection_number}"

    def message_id(self, connection_number: int, seq: int) -> str:
        return f"{self.prefix}:{connection_number}:1:1:{seq}"
