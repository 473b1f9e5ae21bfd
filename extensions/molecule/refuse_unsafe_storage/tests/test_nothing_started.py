"""After every refusal the host must show no trace of a broker: the play
stopped before the broker role installed, configured or started anything."""

from __future__ import annotations

import os

import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner


def _hosts():
    runner = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
    return [testinfra.get_host(f"docker://{name}") for name in runner.get_hosts("brokers")]


def test_no_broker_unit_config_or_process():
    for host in _hosts():
        assert not host.file("/etc/systemd/system/hamq.service").exists
        assert not host.file("/etc/hamq/broker.xml").exists
        assert not host.file("/opt/hamq").exists
        # "[h]amq" keeps pgrep from matching the shell that runs it.
        assert host.run("pgrep -f '[h]amq run'").rc == 1, host.check_output("ps -ef")


def test_nothing_listens():
    for host in _hosts():
        # Docker's embedded DNS resolver (127.0.0.11) is the only expected listener.
        listeners = [line for line in host.check_output("ss -Hltn").splitlines() if "127.0.0.11:" not in line]
        assert listeners == []


def test_no_store_on_the_shared_directory():
    for host in _hosts():
        # The storage probe's own lock file is all that may be there; no marker is left behind.
        assert host.check_output("find /srv/hamq -mindepth 1 ! -name .hamq-probe -print -quit") == ""
