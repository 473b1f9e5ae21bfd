"""The converged lab cluster: one master that listens, slaves that don't,
the store on the shared path, and the lock held by the listening broker."""

from __future__ import annotations

import json
import os

import pytest
from conftest import SERVICE


def test_exactly_one_master_the_rest_slaves(brokers, statuses):
    roles = sorted(s["role"] for s in statuses.values())
    assert roles == ["master"] + ["slave"] * (len(brokers) - 1), statuses


def test_every_broker_is_one_logical_broker(brokers, statuses):
    assert len({s["brokerName"] for s in statuses.values()}) == 1, statuses
    assert sorted(s["nodeName"] for s in statuses.values()) == sorted(b.name for b in brokers)


def test_only_the_master_listens_on_stomp(brokers, statuses):
    for broker in brokers:
        stomp = [entry for entry in broker.tcp_listeners() if entry[1] == broker.stomp_port]
        if statuses[broker.name]["role"] == "master":
            assert stomp, f"master {broker.name} does not listen on {broker.stomp_port}"
        else:
            assert stomp == [], f"slave {broker.name} listens on the STOMP port: {stomp}"


def test_slaves_listen_on_nothing_but_loopback_status(brokers, statuses):
    for broker in brokers:
        if statuses[broker.name]["role"] != "slave":
            continue
        exposed = [e for e in broker.tcp_listeners() if not e[0].startswith(("127.", "[::1]"))]
        assert exposed == [], f"slave {broker.name} listens beyond loopback: {exposed}"


def test_store_and_data_directory_are_on_the_shared_path(brokers):
    mounts = {}
    for broker in brokers:
        kahadb = broker.kahadb_directory
        data = broker.config.get("dataDirectory")
        assert kahadb and data, f"{broker.name}: broker.xml lacks kahaDB directory or dataDirectory"
        # Both must be on the one directory every broker host sees: the shared mount.
        shared = broker.host.check_output(f"findmnt -n -o TARGET --target {kahadb}")
        assert shared == broker.host.check_output(f"findmnt -n -o TARGET --target {data}"), (kahadb, data)
        assert shared != "/", f"{broker.name}: {kahadb} is on the container's own root, not a shared mount"
        mounts[broker.name] = (kahadb, data, shared)
    assert len(set(mounts.values())) == 1, f"brokers disagree on the shared paths: {mounts}"


def test_shared_directory_is_one_directory_for_all_brokers(brokers):
    # The same inode seen from every container proves it is one bind-mounted directory.
    inodes = {b.host.check_output(f"stat -c %d:%i {b.kahadb_directory}") for b in brokers}
    assert len(inodes) == 1, inodes


def test_lock_holder_is_the_listening_master(brokers, master):
    info = master.lock_info()
    assert info["held"] is True, info
    holder = info["holder"]
    assert holder["nodeName"] == master.name, info
    assert holder["host"] == master.host.check_output("hostname"), info
    # The holder is the broker service itself on the master (ss cannot name a
    # socket's process without CAP_SYS_PTRACE, so the link is made through
    # systemd), and that host is the only one listening on the STOMP port.
    main_pid = int(master.host.check_output(f"systemctl show -p MainPID --value {SERVICE}"))
    assert holder["pid"] == main_pid, (info, main_pid)
    assert any(port == master.stomp_port for _, port, _ in master.tcp_listeners()), master.name
    # Every broker sees the same holder: one lock, one store.
    for broker in brokers:
        assert broker.lock_info()["holder"] == holder, broker.name


def test_config_checks_clean_on_every_broker(brokers):
    for broker in brokers:
        result = broker.host.run(f"{broker.cli} check-config /etc/hamq/broker.xml")
        assert result.rc == 0, f"{broker.name}: {result.stdout}{result.stderr}"
        assert os.path.basename(broker.cli) == "hamq"


def test_failover_drill_report():
    """After side_effect: the drill's own verdict, read back from its report."""
    path = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "drill-report.json")
    if not os.path.exists(path):
        pytest.skip("no failover drill has run yet (it runs in side_effect, before the second verify)")
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    assert report["new_master"] != report["old_master"], report
    assert report["old_master_rejoined_as"] == "slave", report
    assert report["receipted"] == report["messages"], report
    assert report["missing"] == 0, report
    assert report["duplicates"] == 0, report
    # Counted by the producer's identity, and every delivery had one.
    assert report["identity"] == "client-message-id", report
    assert int(report["unidentified"]) == 0 and report["checks"]["every_message_identified"], report
    assert report["passed"] is True, report["checks"]
