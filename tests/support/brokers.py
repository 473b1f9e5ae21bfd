"""Real ``hamq run`` processes, observed through their status endpoint.

:class:`BrokerProcess` is one broker subprocess; :class:`BrokerFactory` writes
configs into a directory, starts brokers and kills them all on :meth:`close`.
The integration tests reach them through the ``hamq_broker`` fixture; the
fault-injection suite and the soak benchmarks use them directly.

Teardown never leaves a process behind: :meth:`BrokerProcess.kill` sends
SIGCONT before SIGKILL, so a broker a test froze with SIGSTOP is not left
stopped either.
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
from typing import Callable, List, Optional

HAMQ = [sys.executable, "-m", "hamq"]
START_TIMEOUT_S = 30.0


def process_state(pid: int) -> Optional[str]:
    """The one-letter state of ``pid`` from /proc (R, S, T for stopped, Z, ...), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2]


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

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def stopped(self) -> bool:
        """True while the process is frozen by SIGSTOP (state T)."""
        return self.alive() and process_state(self.pid) in ("T", "t")

    def pause(self, timeout: float = 10.0) -> None:
        """SIGSTOP, and wait until the kernel reports the process stopped."""
        self.signal(signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while not self.stopped():
            if time.monotonic() > deadline or not self.alive():
                raise AssertionError(f"broker {self.pid} did not stop after SIGSTOP")
            time.sleep(0.002)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: a crash, no clean shutdown (SIGCONT first, so nothing stays frozen)."""
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM (graceful stop); returns the exit status."""
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
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

    def __init__(self, directory: Path, free_port: Callable[[], int], render_xml: Callable[..., str]):
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
