"""Harnesses that start hamq, ActiveMQ Classic and coilmq as real processes on 127.0.0.1.

Each broker runs from its own instance directory under the suite's temp dir, on ports picked
for this run, in its own process group so that ``kill -9`` hits exactly the broker we started.
Every process started here is registered and killed at exit, even on Ctrl-C.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchmarks.probe import free_port, port_is_free, wait_for_connect

ACTIVEMQ_HOME = Path("/usr/share/activemq")
ACTIVEMQ_JAR = ACTIVEMQ_HOME / "bin" / "activemq.jar"
# The Debian package's own ACTIVEMQ_OPTS (/usr/share/activemq/activemq-options).
ACTIVEMQ_JVM_OPTS = ["-Xms512M", "-Xmx512M", "-Dorg.apache.activemq.UseDedicatedTaskRunner=true"]

_RUNNING: set = set()


class BrokerUnavailable(Exception):
    """A broker cannot be benchmarked here; the message names the problem and the fix."""


class PortInUse(BrokerUnavailable):
    """The port a broker should bind is taken: its cells are skipped, not failed."""


def _kill_all() -> None:
    for proc in list(_RUNNING):
        proc.kill9()


atexit.register(_kill_all)


def install_signal_cleanup() -> None:
    """Turn SIGTERM into SystemExit so that atexit kills our brokers (Ctrl-C already does)."""

    def handler(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


class PortAllocator:
    """Hands out ports: ephemeral by default, or consecutive from ``--base-port``.

    With a base port a taken port is bad input: it is reported, never silently replaced, so the
    user learns that the port they chose is busy.
    """

    def __init__(self, base: int | None = None):
        self.next = base

    def take(self) -> int:
        if self.next is None:
            return free_port()
        port = self.next
        self.next += 1
        if not port_is_free(port):
            raise PortInUse(
                f"port 127.0.0.1:{port} is already in use. Fix: stop the process holding it "
                f"(see `ss -ltnp 'sport = :{port}'`) or pick another --base-port"
            )
        return port


class BrokerProcess:
    """One broker process: start, wait for CONNECT, kill -9, stop, RSS."""

    def __init__(self, kind: str, node: str, argv: list, port: int, log_path: Path,
                 cwd: Path, env: dict | None = None, status_port: int | None = None):
        self.kind, self.node, self.argv, self.port = kind, node, argv, port
        self.log_path, self.cwd, self.env, self.status_port = log_path, cwd, env, status_port
        self.popen: subprocess.Popen | None = None
        self.started_at = 0.0
        self.log_offset = 0  # the log is appended across restarts; only this run's part counts

    def start(self) -> "BrokerProcess":
        if not port_is_free(self.port):
            raise PortInUse(
                f"{self.kind} {self.node}: port 127.0.0.1:{self.port} is already in use. "
                "Fix: stop the process holding it or pick another --base-port"
            )
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.started_at = time.monotonic()
        self.popen = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.cwd, env=self.env, start_new_session=True,
        )
        log.close()
        _RUNNING.add(self)
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_connect(self, timeout: float = 60.0) -> float:
        """Seconds from process start to the first successful STOMP CONNECT."""
        t = wait_for_connect(self.port, timeout, alive=self.alive)
        if t is None:
            state = "exited with code %s" % self.popen.returncode if not self.alive() else "still silent"
            self.kill9()
            raise BrokerUnavailable(
                f"{self.kind} {self.node} did not accept STOMP CONNECT on 127.0.0.1:{self.port} "
                f"within {timeout:.0f}s ({state}). Last log lines:\n{self.log_tail()}"
            )
        return t - self.started_at

    def kill9(self) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        _RUNNING.discard(self)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if the broker does not exit in time."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.kill9()

    def rss_mib(self) -> float | None:
        """Resident set size of the broker process in MiB (VmRSS), None once it is gone."""
        try:
            with open(f"/proc/{self.popen.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            return None
        return None

    def log_text(self) -> str:
        """The log written since the latest start()."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self.log_offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join("    " + ln for ln in self.log_text().splitlines()[-lines:])


# --------------------------------------------------------------------------- hamq

def hamq_command() -> list:
    return [sys.executable, "-m", "hamq"]


class Hamq:
    """hamq nodes: ``hamq run --config broker.xml`` (issue 2 §4 vocabulary)."""

    label = "hamq"

    def __init__(self, workdir: Path, ports: PortAllocator):
        self.workdir, self.ports = workdir, ports

    def check(self) -> None:
        try:
            out = subprocess.run(hamq_command() + ["run", "--help"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BrokerUnavailable(f"cannot run hamq ({exc}). Fix: `pip install -e .` in the repo venv") from exc
        if out.returncode != 0:
            raise BrokerUnavailable(
                "`hamq run` is not available in this checkout "
                f"({(out.stderr or out.stdout).strip().splitlines()[-1:] or ['no output']}). "
                "Fix: finish/merge the broker's `hamq run` command"
            )

    def node(self, name: str, shared: Path, sleep_interval_ms: int | None = None,
             sync: str = "always") -> BrokerProcess:
        """A node on the shared directory ``shared`` (kahadb/ and data/ live under it)."""
        inst = self.workdir / name
        inst.mkdir(parents=True, exist_ok=True)
        (shared / "kahadb").mkdir(parents=True, exist_ok=True)
        (shared / "data").mkdir(parents=True, exist_ok=True)
        port, status_port = self.ports.take(), self.ports.take()
        locker = ""
        if sleep_interval_ms is not None:
            locker = (f'\n      <locker><shared-file-locker lockAcquireSleepInterval="{sleep_interval_ms}"/>'
                      "</locker>\n    ")
        xml = f"""<broker brokerName="bench" nodeName="{name}" dataDirectory="{shared / 'data'}">
  <persistenceAdapter>
    <kahaDB directory="{shared / 'kahadb'}" journalDiskSyncStrategy="{sync}">{locker}</kahaDB>
  </persistenceAdapter>
  <transportConnectors>
    <transportConnector name="stomp" uri="stomp://127.0.0.1:{port}"/>
  </transportConnectors>
  <statusEndpoint uri="http://127.0.0.1:{status_port}"/>
</broker>
"""
        cfg = inst / "broker.xml"
        cfg.write_text(xml)
        return BrokerProcess("hamq", name, hamq_command() + ["run", "--config", str(cfg)], port,
                             inst / "broker.log", inst, status_port=status_port)

    @staticmethod
    def status(proc: BrokerProcess) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{proc.status_port}/status", timeout=1) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError):
            return None

    def is_waiting_slave(self, proc: BrokerProcess) -> bool:
        st = self.status(proc)
        return bool(st) and st.get("role") == "slave"


# --------------------------------------------------------------------------- ActiveMQ Classic

LOG4J = """log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=%d{ISO8601} %-5p %c{1} - %m%n
log4j.logger.org.apache.activemq.spring=WARN
log4j.logger.org.springframework=WARN
log4j.logger.org.apache.xbean=WARN
"""


def ensure_activemq(log=print, install: bool = True) -> None:
    """Install Debian's activemq when it is missing; raise BrokerUnavailable if that fails."""
    if ACTIVEMQ_JAR.exists() and shutil.which("java"):
        return
    if install and shutil.which("apt-get") and os.geteuid() == 0:
        log("ActiveMQ Classic not found: running `apt-get install -y activemq` ...")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        res = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "activemq"],
                             capture_output=True, text=True, env=env)
        if res.returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, env=env)
            res = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "activemq"],
                                 capture_output=True, text=True, env=env)
        if ACTIVEMQ_JAR.exists() and shutil.which("java"):
            return
        detail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
        raise BrokerUnavailable(f"`apt-get install activemq` failed ({detail[0]}). "
                                "Fix: install Debian's activemq package (and a JRE) by hand")
    raise BrokerUnavailable(f"ActiveMQ Classic is not installed ({ACTIVEMQ_JAR} or java missing). "
                            "Fix: `sudo apt-get install activemq` (Debian package, pulls OpenJDK)")


class ActiveMQ:
    """ActiveMQ Classic 5.x from Debian, one instance dir per node, STOMP on 127.0.0.1 only."""

    label = "ActiveMQ"

    def __init__(self, workdir: Path, ports: PortAllocator, install: bool = True):
        self.workdir, self.ports, self.install = workdir, ports, install

    def check(self) -> None:
        ensure_activemq(install=self.install)

    def node(self, name: str, shared: Path, sleep_interval_ms: int | None = None,
             stomp_options: str = "") -> BrokerProcess:
        base = self.workdir / name
        conf, data = base / "conf", base / "data"
        for d in (conf, data, shared / "kahadb"):
            d.mkdir(parents=True, exist_ok=True)
        port = self.ports.take()
        locker = ""
        if sleep_interval_ms is not None:
            locker = (f'<locker><shared-file-locker lockAcquireSleepInterval="{sleep_interval_ms}"/>'
                      "</locker>")
        uri = f"stomp://127.0.0.1:{port}" + (f"?{stomp_options}" if stomp_options else "")
        (conf / "activemq.xml").write_text(f"""<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false" brokerName="bench"
          dataDirectory="{data}" schedulerSupport="false">
    <persistenceAdapter>
      <kahaDB directory="{shared / 'kahadb'}">{locker}</kahaDB>
    </persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp" uri="{uri}"/>
    </transportConnectors>
  </broker>
</beans>
""")
        (conf / "log4j.properties").write_text(LOG4J)
        argv = ["java", *ACTIVEMQ_JVM_OPTS,
                f"-Dlog4j.configuration=file:{conf / 'log4j.properties'}",
                f"-Dactivemq.home={ACTIVEMQ_HOME}", f"-Dactivemq.base={base}",
                f"-Dactivemq.conf={conf}", f"-Dactivemq.data={data}",
                "-jar", str(ACTIVEMQ_JAR), "start", f"xbean:file:{conf / 'activemq.xml'}"]
        return BrokerProcess("ActiveMQ", name, argv, port, base / "broker.log", base)

    def is_waiting_slave(self, proc: BrokerProcess) -> bool:
        text = proc.log_text()
        return "slave mode" in text or "is locked by another server" in text


# --------------------------------------------------------------------------- coilmq

class Coilmq:
    """coilmq from PyPI with its file-backed DBM queue store (it has no master/slave)."""

    label = "coilmq"

    def __init__(self, workdir: Path, ports: PortAllocator):
        self.workdir, self.ports = workdir, ports

    @staticmethod
    def executable() -> str | None:
        local = Path(sys.executable).with_name("coilmq")
        return str(local) if local.exists() else shutil.which("coilmq")

    def check(self) -> None:
        if not self.executable():
            raise BrokerUnavailable("coilmq is not installed. Fix: `pip install coilmq==1.1.0` in the venv")

    def node(self, name: str, shared: Path) -> BrokerProcess:
        inst = self.workdir / name
        store = shared / "dbm"
        store.mkdir(parents=True, exist_ok=True)
        inst.mkdir(parents=True, exist_ok=True)
        port = self.ports.take()
        cfg = inst / "coilmq.cfg"
        cfg.write_text(f"""[coilmq]
listen_addr = 127.0.0.1
listen_port = {port}
qstore.factory = coilmq.store.dbm.make_dbm
qstore.dbm.data_dir = {store}
qstore.dbm.checkpoint_operations = 100
qstore.dbm.checkpoint_timeout = 20
""")
        argv = [self.executable(), "-c", str(cfg), "-b", "127.0.0.1", "-p", str(port)]
        return BrokerProcess("coilmq", name, argv, port, inst / "broker.log", inst)
