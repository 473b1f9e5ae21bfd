"""What the broker role leaves on each host besides the broker itself: one
broker uid/gid everywhere (NFS keeps owners by number), everything on the
share made by the broker user (root_squash), and a high open-files limit."""

from __future__ import annotations

from conftest import SERVICE

BROKER_USER = "hamq"


def test_broker_user_has_one_uid_and_gid_everywhere(brokers):
    ids = {b.name: b.host.check_output(f"id -u {BROKER_USER}") + ":" + b.host.check_output(f"id -g {BROKER_USER}")
           for b in brokers}
    assert len(set(ids.values())) == 1, ids
    # The role's fixed default (the lab inventory sets the same).
    assert set(ids.values()) == {"1990:1990"}, ids


def test_nothing_on_the_group_directory_belongs_to_root(brokers):
    broker = brokers[0]
    group_dir = broker.kahadb_directory.rsplit("/", 1)[0]
    # Every file and directory of the group's store was made by the broker user.
    strangers = broker.host.check_output(f"find {group_dir} ! -uid 1990 -printf '%p %u\\n'")
    assert strangers == "", strangers
    assert broker.host.check_output(f"stat -c %u:%a {group_dir}") == "1990:700"


def test_unit_raises_the_open_files_limit(brokers):
    for broker in brokers:
        assert broker.host.check_output(f"systemctl show -p LimitNOFILE --value {SERVICE}") == "65536"
        pid = broker.host.check_output(f"systemctl show -p MainPID --value {SERVICE}")
        # A container caps it at its own hard limit (the lab's Docker: 20000).
        cap = int(_open_files(broker, "1")[1])
        soft, hard = _open_files(broker, pid)
        assert int(soft) == int(hard) == min(65536, cap), (soft, hard, cap)


def _open_files(broker, pid: str) -> list[str]:
    limits = broker.host.check_output(f"cat /proc/{pid}/limits")
    return next(x for x in limits.splitlines() if x.startswith("Max open files")).split()[3:5]
