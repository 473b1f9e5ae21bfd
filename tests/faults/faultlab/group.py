"""A group of real ``hamq run`` brokers on one shared store directory, with fixed STOMP ports.

Every broker of a group has its own STOMP and status port, chosen when it is
added and kept across restarts, so clients and the CONNECT watcher can list
them all up front as a failover URL would.  Faults come from outside the
broker: signals (SIGSTOP, SIGCONT, SIGKILL) and the fault shim's environment
(:class:`faultlab.faults.FaultSpec`), never from its configuration.

:meth:`BrokerGroup.close` sends every process SIGCONT and then SIGKILL, so no
broker outlives its test, frozen or not.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from support.brokers import BrokerProcess
from support.config import pick_free_port, render_broker_xml

from faultlab.faults import FaultSpec
from faultlab.stomp import try_connect

#: Generous deadlines: they only turn a hang into a failure on a busy 2-core machine.
DEADLINE_S = 60.0


class GroupBroker(BrokerProcess):
    """A broker of a group: a name, a fixed STOMP port and, optionally, a fault spec."""

    def __init__(self, name: str, port: int, config_path: Path, status_port: int, log_path: Path,
                 env: Optional[dict], spec: Optional[FaultSpec]):
        super().__init__(config_path, status_port, log_path, env)
        self.name = name
        self.port = port
        self.spec = spec

    def epoch(self) -> Optional[int]:
        status = self.status()
        return status.get("epoch") if status else None

    def __repr__(self) -> str:
        return f"<broker {self.name} pid {self.proc.pid if self.proc else None} port {self.port}>"


class BrokerGroup:
    """Brokers sharing ``<root>/shared/kahadb`` (and ``shared/data`` for the scheduler)."""

    def __init__(self, root: Path, *, keep_alive_ms: int = 500, acquire_ms: int = 100, scheduler: bool = False,
                 sync: str = "always", kahadb_attrs: str = "", broker_attrs: str = "",
                 shared: Optional[Path] = None, connector_options: str = ""):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.shared = Path(shared) if shared is not None else self.root / "shared"
        self.kahadb = self.shared / "kahadb"
        self.data = self.shared / "data"
        self.kahadb.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        self.keep_alive_ms = keep_alive_ms
        self.acquire_ms = acquire_ms
        self.scheduler = scheduler
        self.sync = sync
        self.kahadb_attrs = kahadb_attrs
        self.broker_attrs = broker_attrs
        self.connector_options = connector_options
        self.brokers: Dict[str, GroupBroker] = {}
        #: Every process ever started, so that close() reaches restarted ones too.
        self._all: List[GroupBroker] = []

    # -- membership ------------------------------------------------------------------
    def add(self, name: str, spec: Optional[FaultSpec] = None, start: bool = True) -> GroupBroker:
        """Configure broker ``name`` (fresh ports) and start it unless ``start=False``."""
        if name in self.brokers:
            raise ValueError(f"broker {name!r} is already in the group")
        port, status_port = pick_free_port(), pick_free_port()
        attrs = f'schedulerSupport="{"true" if self.scheduler else "false"}" {self.broker_attrs}'
        locker = (f'<shared-file-locker lockAcquireSleepInterval="{self.acquire_ms}" '
                  f'lockKeepAlivePeriod="{self.keep_alive_ms}"/>')
        config = self.root / f"{name}.xml"
        config.write_text(render_broker_xml(
            self.kahadb, status_port, stomp_port=port, broker_name="faults", node_name=name,
            data_dir=self.data, sync=self.sync, kahadb_attrs=self.kahadb_attrs, locker=locker,
            broker_attrs=attrs, connector_options=self.connector_options))
        broker = GroupBroker(name, port, config, status_port, self.root / f"{name}.log",
                             spec.env() if spec is not None else None, spec)
        self.brokers[name] = broker
        self._all.append(broker)
        if start:
            broker.start()
        return broker

    def __getitem__(self, name: str) -> GroupBroker:
        return self.brokers[name]

    @property
    def ports(self) -> List[int]:
        return [b.port for b in self.brokers.values()]

    def alive(self) -> List[GroupBroker]:
        return [b for b in self.brokers.values() if b.alive()]

    # -- roles -----------------------------------------------------------------------
    def masters(self) -> List[GroupBroker]:
        """Brokers whose /status says master right now (a frozen broker's status does not answer)."""
        return [b for b in self.brokers.values() if b.alive() and not b.stopped() and b.role() == "master"]

    def wait_master(self, exclude: Sequence[GroupBroker] = (), timeout: float = DEADLINE_S) -> GroupBroker:
        """The one broker (not in ``exclude``) that reports master and answers a STOMP CONNECT."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            candidates = [b for b in self.masters() if b not in exclude]
            if len(candidates) == 1 and try_connect(candidates[0].port):
                return candidates[0]
            time.sleep(0.02)
        raise AssertionError(f"no single master (excluding {list(exclude)}) within {timeout} s; "
                             f"roles {[(b.name, b.role()) for b in self.brokers.values()]}\n{self.logs()}")

    def wait_slave(self, broker: GroupBroker, timeout: float = DEADLINE_S) -> None:
        broker.wait_role("slave", timeout)

    def wait_roles(self, master: GroupBroker, timeout: float = DEADLINE_S) -> None:
        """Every other live broker reports slave."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(b.role() == ("master" if b is master else "slave") for b in self.alive() if not b.stopped()):
                return
            time.sleep(0.02)
        raise AssertionError(f"roles did not settle: {[(b.name, b.role()) for b in self.brokers.values()]}")

    # -- faults ----------------------------------------------------------------------
    def kill(self, broker: GroupBroker) -> None:
        broker.kill()

    def kill_all(self) -> None:
        for broker in self._all:
            broker.kill()

    def restart(self, broker: GroupBroker) -> GroupBroker:
        """kill -9 (if alive) and start again with the same config and fault spec."""
        broker.kill()
        broker.start()
        return broker

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {b.name} ({b.log_path}) ---\n{b.log()[-tail:]}" for b in self.brokers.values())

    def close(self) -> None:
        for broker in self._all:
            broker.close()
