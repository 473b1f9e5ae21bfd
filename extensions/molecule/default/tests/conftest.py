"""Fixtures for the molecule verifiers: the lab's broker hosts, reached with
``docker exec`` (testinfra's docker backend) rather than one ansible run per
command, and what their rendered broker.xml says."""

from __future__ import annotations

import json
import os
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

CONFIG_FILE = "/etc/hamq/broker.xml"
SERVICE = "hamq"
BROKER_GROUP = "brokers"
DEFAULT_PORTS = {"stomp": 61613, "stomp+ssl": 61612}
# Brokers that just started may still be racing for the lock.
SETTLE_SECONDS = 60

READ_URL = (
    "import sys, urllib.request; "
    "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
)


@dataclass
class Broker:
    """One broker host and the facts the verifier needs about it."""

    name: str
    host: testinfra.host.Host
    config: ET.Element

    def connector_port(self, scheme: str) -> int | None:
        """Port of the scheme's transportConnector, None without one."""
        for connector in self.config.iter("transportConnector"):
            uri = urlsplit(connector.get("uri", ""))
            if uri.scheme == scheme:
                return uri.port or DEFAULT_PORTS[scheme]
        return None

    @property
    def stomp_port(self) -> int:
        """The client port: plain STOMP, or the TLS one when the broker serves only TLS."""
        for scheme in ("stomp", "stomp+ssl"):
            port = self.connector_port(scheme)
            if port is not None:
                return port
        raise AssertionError(f"{self.name}: {CONFIG_FILE} has no stomp or stomp+ssl transportConnector")

    @property
    def status_url(self) -> str:
        endpoint = self.config.find("statusEndpoint")
        assert endpoint is not None, f"{self.name}: {CONFIG_FILE} has no statusEndpoint"
        return endpoint.get("uri").rstrip("/") + "/status"

    @property
    def kahadb_directory(self) -> str:
        kahadb = self.config.find("persistenceAdapter/kahaDB")
        assert kahadb is not None, f"{self.name}: {CONFIG_FILE} has no persistenceAdapter/kahaDB"
        return kahadb.get("directory")

    @property
    def cli(self) -> str:
        """The hamq CLI the unit runs (the role's venv), read from the unit itself."""
        exec_start = self.host.check_output(f"systemctl show -p ExecStart --value {SERVICE}")
        path = exec_start.split("path=", 1)[1].split(";", 1)[0].strip()
        return os.path.join(os.path.dirname(path), "hamq")

    def status(self) -> dict:
        return json.loads(self.host.check_output(f"python3 -c '{READ_URL}' {self.status_url}"))

    def settled_status(self) -> dict:
        """/status once the broker has decided its role (master or slave)."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            try:
                status = self.status()
                if status.get("role") in ("master", "slave"):
                    return status
            except (AssertionError, ValueError):
                status = None
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no master/slave role on {self.status_url}: {status}")
            time.sleep(1)

    def tcp_listeners(self) -> list[tuple[str, int, set[int]]]:
        """(address, port, owning pids) of every listening TCP socket."""
        listeners = []
        for line in self.host.check_output("ss -Hltnp").splitlines():
            fields = line.split()
            address, _, port = fields[3].rpartition(":")
            pids = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
            listeners.append((address, int(port), pids))
        return listeners

    def lock_info(self) -> dict:
        return json.loads(self.host.check_output(f"{self.cli} lock-info --compact {self.kahadb_directory}"))


def _brokers() -> list[Broker]:
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    runner = AnsibleRunner(inventory)
    brokers = []
    for name in sorted(runner.get_hosts(BROKER_GROUP)):
        container = runner.get_variables(name).get("ansible_host", name)
        host = testinfra.get_host(f"docker://{container}")
        config = ET.fromstring(host.file(CONFIG_FILE).content_string)
        brokers.append(Broker(name, host, config))
    return brokers


@pytest.fixture(scope="session")
def brokers() -> list[Broker]:
    found = _brokers()
    assert len(found) >= 2, f"master/slave needs at least two hosts in group {BROKER_GROUP}, found {found}"
    return found


@pytest.fixture(scope="session")
def statuses(brokers) -> dict[str, dict]:
    return {b.name: b.settled_status() for b in brokers}


@pytest.fixture(scope="session")
def master(brokers, statuses) -> Broker:
    masters = [b for b in brokers if statuses[b.name]["role"] == "master"]
    assert len(masters) == 1, f"expected exactly one master: { {n: s['role'] for n, s in statuses.items()} }"
    return masters[0]
