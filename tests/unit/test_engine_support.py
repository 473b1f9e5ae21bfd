"""Drive the sans-IO Broker with frames, the way the server does, without sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from hamq.config.model import BrokerConfig, ConnectorConfig, KahaDBConfig
from hamq.core.engine import Broker
from hamq.stomp.codec import Frame


def make_config(tmp: Path = Path("."), **overrides) -> BrokerConfig:
    config = BrokerConfig(
        broker_name="test",
        node_name="n1",
        data_directory=tmp / "data",
        persistence=KahaDBConfig(directory=tmp / "kahadb"),
        connectors=[ConnectorConfig(name="stomp", scheme="stomp", host="127.0.0.1", port=61613)],
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Harness:
    """A broker plus per-connection inboxes of the frames it would write."""

    def __init__(self, broker: Optional[Broker] = None, store=None, **config):
        self.clock = FakeClock()
        self.broker = broker or Broker(make_config(**config), store=store, clock=self.clock)
        self.inbox: Dict[str, List[Frame]] = {}
        self.closed: Dict[str, bool] = {}
        self.heartbeats: Dict[str, int] = {}
        self.held: List = []  # outputs with after_lsn, released as the store syncs

    def connect(self, name: str, version: str = "1.2", **headers) -> Frame:
        self.broker.connection_made(name, ("127.0.0.1", 1))
        self.inbox[name] = []
        self.closed[name] = False
        self.heartbeats[name] = 0
        h = dict(headers)
        if version != "1.0":
            h.setdefault("accept-version", version)
        self.send(name, "CONNECT", **h)
        frames = self.take(name)
        assert frames and frames[0].command == "CONNECTED", frames
        return frames[0]

    def send(self, name: str, command: str, body: bytes = b"", **headers) -> None:
        hdrs = [(k.replace("_", "-") if k not in KEEP_UNDERSCORE else k, str(v)) for k, v in headers.items()]
        self.broker.receive(name, Frame(command, hdrs, body))
        self.pump()

    def raw(self, name: str, frame: Frame) -> None:
        self.broker.receive(name, frame)
        self.pump()

    def pump(self) -> None:
        while True:
            outputs = self.broker.take_outputs()
            store = self.broker.store
            for out in outputs:
                self.held.append(out)
            durable = store.sync() if store is not None else 0
            still = []
            blocked = set()
            for out in self.held:
                if out.conn_id in blocked or out.after_lsn > durable:
                    blocked.add(out.conn_id)
                    still.append(out)
                    continue
                self._deliver(out)
            self.held = still
            if not self.broker.has_work() and not self.broker.durability.pending_effects():
                break

    def _deliver(self, out) -> None:
        if out.conn_id not in self.inbox:
            return
        if out.close:
            if not self.closed[out.conn_id]:
                self.closed[out.conn_id] = True
                self.broker.connection_lost(out.conn_id)
        elif out.frame is None:
            self.heartbeats[out.conn_id] += 1
        elif not self.closed[out.conn_id]:
            self.inbox[out.conn_id].append(out.frame)
            self.broker.durability.released([out])  # as the tracker does when it releases an output
            self.broker.written(out.conn_id, out.cost)  # as the server does once it hands bytes to the socket

    def take(self, name: str, command: Optional[str] = None) -> List[Frame]:
        frames = self.inbox[name]
        self.inbox[name] = []
        if command is not None:
            assert all(f.command == command for f in frames), [(f.command, f.headers) for f in frames]
        return frames

    def drop(self, name: str) -> None:
        """The client's socket went away without DISCONNECT."""
        self.closed[name] = True
        self.broker.connection_lost(name)
        self.pump()


#: Header names that really contain an underscore (the kwargs helper maps _ to -).
KEEP_UNDERSCORE = {"_AMQ_DUPL_ID", "AMQ_SCHEDULED_DELAY", "AMQ_SCHEDULED_PERIOD", "AMQ_SCHEDULED_REPEAT", "AMQ_SCHEDULED_CRON"}


def hdr(**headers) -> dict:
    """Headers whose names contain dots or colons, which kwargs cannot spell."""
    return headers
