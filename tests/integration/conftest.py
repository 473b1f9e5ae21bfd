"""Real ``hamq run`` processes for integration tests.

``hamq_broker(...)`` writes a broker.xml into tmp_path, starts the broker as a
subprocess on free ports and returns a :class:`BrokerProcess`; every process
is killed at teardown. Several brokers on one ``kahadb_dir`` make a
master/slave group::

    def test_failover(hamq_broker, tmp_path):
        shared = tmp_path / "shared"
        a = hamq_broker(node_name="a", kahadb_dir=shared)          # waits until master
        b = hamq_broker(node_name="b", kahadb_dir=shared, wait_role="slave")
        a.kill()                                                   # SIGKILL
        b.wait_role("master")
        port = b.stomp_port
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import List, Optional

import pytest

HAMQ = [sys.executable, "-m", "hamq"]
START_TIMEOUT_S = 30.0


class BrokerProcess:
    """One ``hamq run --config`` subprocess, observed through its status endpoint."""

    def __init__(self, config_path: Path, status_port: int, log_path: Path, env: Optional[dict] = None):
        self.config_path = config_path
        self.status_port = status_port
        self.log_path = log_path
        self.env = env
        self.proc: Optional[subprocess.Popen] = None

    # -- process control ---------------------------------------------------------------
    def start(self) -> "BrokerProcess":
        env = dict(os.environ)
        env.update(self.env or {})
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(HAMQ + ["run", "--config", str(self.config_path)], stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash, no clean shutdown."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM (graceful stop); returns the exit status."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def restart(self, wait_role: Optional[str] = "master") -> "BrokerProcess":
        self.kill()
        self.start()
        if wait_role:
            self.wait_role(wait_role)
        return self

    def close(self) -> None:
        self.kill()
        if getattr(self, "_log", None):
            self._log.close()

    # -- observation ---------------------------------------------------------------------
    def status(self, timeout: float = 2.0) -> Optional[dict]:
        """The /status JSON, or None while the endpoint does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.status_port}/status", timeout=timeout) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            return None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.status_port}/metrics", timeout=2) as resp:
            return resp.read().decode()

    def role(self) -> Optional[str]:
        status = self.status()
        return status["role"] if status else None

    def wait_role(self, role: str, timeout: float = START_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"broker exited with {self.proc.returncode} while waiting for role "
                                     f"{role!r}; log:\n{self.log()}")
            last = self.status()
            if last and last["role"] == role:
                return last
            time.sleep(0.05)
        raise AssertionError(f"broker did not reach role {role!r} in {timeout} s (last status {last}); "
                             f"log:\n{self.log()}")

    @property
    def stomp_port(self) -> int:
        status = self.status()
        if not status or not status.get("connectors"):
            raise AssertionError(f"broker has no open connector (role {status and status['role']})")
        return status["connectors"][0]["port"]

    def destination(self, name: str) -> Optional[dict]:
        for d in (self.status() or {}).get("destinations", []):
            if d["name"] == name:
                return d
        return None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class BrokerFactory:
    """Starts brokers whose files live in ``directory``; :meth:`close` kills them all."""

    def __init__(self, directory: Path, free_port, render_xml):
        self.directory = Path(directory)
        self.free_port = free_port
        self.render_xml = render_xml
        self.started: List[BrokerProcess] = []

    def __call__(self, node_name: str = "b1", kahadb_dir: Optional[Path] = None,
                 wait_role: Optional[str] = "master", env: Optional[dict] = None, **xml) -> BrokerProcess:
        kahadb = Path(kahadb_dir) if kahadb_dir is not None else self.directory / "kahadb"
        kahadb.mkdir(parents=True, exist_ok=True)
        status_port = self.free_port()
        config = self.directory / f"broker-{node_name}.xml"
        config.write_text(self.render_xml(kahadb, status_port, node_name=node_name, **xml))
        broker = BrokerProcess(config, status_port, self.directory / f"broker-{node_name}.log", env)
        self.started.append(broker)
        broker.start()
        if wait_role:
            broker.wait_role(wait_role)
        return broker

    def close(self) -> None:
        for broker in self.started:
            broker.close()


@pytest.fixture
def hamq_broker(tmp_path, free_port, render_xml):
    """Factory: ``hamq_broker(node_name="b1", kahadb_dir=None, wait_role="master", env=None, **xml)``.

    ``**xml`` goes to ``render_broker_xml`` (sync, connector_options, kahadb_attrs,
    locker, broker_attrs, extra, data_dir, broker_name). Returns a started
    :class:`BrokerProcess`; ``wait_role=None`` returns without waiting. All are
    killed at teardown.
    """
    factory = BrokerFactory(tmp_path, free_port, render_xml)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_broker_factory(tmp_path_factory, free_port, render_xml):
    """Like ``hamq_broker`` but shared by a test module (saves a start per test)."""
    factory = BrokerFactory(tmp_path_factory.mktemp("brokers"), free_port, render_xml)
    yield factory
    factory.close()


@pytest.fixture
def broker(hamq_broker):
    """One master broker on a fresh store."""
    return hamq_broker()
