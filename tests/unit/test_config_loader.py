"""broker.xml loading: every good file gives typed values, every bad one a located, fixable error."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path

import pytest

from hamq.cli import main as cli_main
from hamq.config.loader import ACTIVEMQ_NS, ConfigError, load_config

EXAMPLE = """\
<broker xmlns="{ns}" brokerName="orders" nodeName="b1" dataDirectory="{data}" schedulerSupport="true">
  <persistenceAdapter>
    <kahaDB directory="{kaha}" journalDiskSyncStrategy="always" checkpointInterval="5000"
            cleanupInterval="30000" journalMaxFileLength="32mb" allowUnsafeStorage="false">
      <locker><shared-file-locker lockAcquireSleepInterval="1000" lockKeepAlivePeriod="2000" failIfLocked="false"/></locker>
    </kahaDB>
  </persistenceAdapter>
  <transportConnectors>
    <transportConnector name="stomp" uri="stomp://0.0.0.0:61613?maxFrameSize=10485760"/>
  </transportConnectors>
  <statusEndpoint uri="http://127.0.0.1:8161"/>
  <redeliveryPolicy maximumRedeliveries="6"/>
</broker>
"""


@pytest.fixture
def dirs(tmp_path):
    data = tmp_path / "data"
    kaha = tmp_path / "kahadb"
    data.mkdir()
    kaha.mkdir()
    return {"data": str(data), "kaha": str(kaha), "ns": ACTIVEMQ_NS}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "broker.xml"
    path.write_text(text)
    return path


def minimal(
    kaha: str, broker_attrs: str = "", kahadb_attrs: str = "", inner: str = "", kaha_inner: str = ""
) -> str:
    return (
        f'<broker brokerName="orders" {broker_attrs}>\n'
        f"  <persistenceAdapter>\n"
        f'    <kahaDB directory="{kaha}" {kahadb_attrs}>{kaha_inner}</kahaDB>\n'
        f"  </persistenceAdapter>\n"
        f"{inner}"
        f"</broker>\n"
    )


def error_for(tmp_path: Path, text: str, **kwargs) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, **kwargs)
    err = info.value
    # The contract every caller relies on.
    assert str(err).startswith(f"{path}:") and ". Fix: " in str(err), str(err)
    return err


def test_the_documented_example_loads_into_typed_values(tmp_path, dirs):
    path = write(tmp_path, EXAMPLE.format(**dirs))
    cfg = load_config(path)
    assert cfg.broker_name == "orders"
    assert cfg.node_name == "b1"
    assert cfg.data_directory == Path(dirs["data"])
    assert cfg.scheduler_support is True
    assert cfg.scheduler_directory == Path(dirs["data"]) / "orders" / "scheduler"
    kaha = cfg.persistence
    assert kaha.directory == Path(dirs["kaha"])
    assert kaha.journal_disk_sync_strategy == "always"
    assert kaha.checkpoint_interval_ms == 5000
    assert kaha.cleanup_interval_ms == 30000
    assert kaha.journal_max_file_length == 32 * 1024 * 1024
    assert kaha.allow_unsafe_storage is False
    assert kaha.locker.type == "shared-file"
    assert kaha.locker.lock_acquire_sleep_interval_ms == 1000
    assert kaha.locker.lock_keep_alive_period_ms == 2000
    assert kaha.locker.fail_if_locked is False
    [conn] = cfg.connectors
    assert (conn.name, conn.scheme, conn.host, conn.port) == ("stomp", "stomp", "0.0.0.0", 61613)
    assert conn.max_frame_size == 10485760
    assert (cfg.status_endpoint.host, cfg.status_endpoint.port) == ("127.0.0.1", 8161)
    assert cfg.maximum_redeliveries == 6
    assert cfg.source == path


def test_no_namespace_and_defaults(tmp_path, dirs):
    cfg = load_config(write(tmp_path, minimal(dirs["kaha"])))
    assert cfg.node_name == socket.gethostname()
    assert cfg.persistence.journal_disk_sync_strategy == "always"
    assert cfg.persistence.locker.lock_keep_alive_period_ms == 2000
    assert cfg.connectors == [] and cfg.status_endpoint is None
    assert cfg.scheduler_support is False
    assert cfg.data_directory == Path(dirs["kaha"]).parent


def test_spring_beans_wrapper_is_accepted(tmp_path, dirs):
    text = (
        '<beans xmlns="http://www.springframework.org/schema/beans"\n'
        '       xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"\n'
        '       xsi:schemaLocation="http://www.springframework.org/schema/beans x">\n'
        + EXAMPLE.format(**dirs)
        + "</beans>\n"
    )
    assert load_config(write(tmp_path, text)).broker_name == "orders"


def test_spring_beans_are_refused_by_name(tmp_path, dirs):
    text = (
        '<beans xmlns="http://www.springframework.org/schema/beans">\n'
        '  <bean class="org.springframework.beans.factory.config.PropertyPlaceholderConfigurer"/>\n'
        + EXAMPLE.format(**dirs)
        + "</beans>\n"
    )
    err = error_for(tmp_path, text)
    assert err.line == 2 and "<bean>" in err.problem


def test_sync_strategy_is_case_insensitive_like_activemq(tmp_path, dirs):
    cfg = load_config(
        write(tmp_path, minimal(dirs["kaha"], kahadb_attrs='journalDiskSyncStrategy="PERIODIC"'))
    )
    assert cfg.persistence.journal_disk_sync_strategy == "periodic"


@pytest.mark.parametrize(
    "text,expected",
    [("32mb", 32 * 1024**2), ("512 KB", 512 * 1024), ("1gb", 1024**3), ("1048576", 1048576), ("64k", 65536)],
)
def test_sizes(tmp_path, dirs, text, expected):
    cfg = load_config(write(tmp_path, minimal(dirs["kaha"], kahadb_attrs=f'journalMaxFileLength="{text}"')))
    assert cfg.persistence.journal_max_file_length == expected


def test_checkpoint_journal_bytes_defaults_to_32mb_and_takes_a_size(tmp_path, dirs):
    assert load_config(write(tmp_path, minimal(dirs["kaha"]))).persistence.checkpoint_journal_bytes == 32 * 1024**2
    cfg = load_config(write(tmp_path, minimal(dirs["kaha"], kahadb_attrs='checkpointJournalBytes="8mb"')))
    assert cfg.persistence.checkpoint_journal_bytes == 8 * 1024**2


def test_unknown_attribute_suggests_the_closest_name_and_gives_the_line(tmp_path, dirs):
    text = minimal(
        dirs["kaha"],
        kaha_inner='\n      <locker>\n        <shared-file-locker lockKeepAlivePeriode="2000"/>\n      </locker>\n',
    )
    err = error_for(tmp_path, text)
    assert err.line == 5
    assert '"lockKeepAlivePeriode"' in err.problem and '"lockKeepAlivePeriod"' in err.problem
    assert err.fix == 'rename it to "lockKeepAlivePeriod"'


def test_unknown_element_suggests_the_closest_name(tmp_path, dirs):
    text = minimal(dirs["kaha"], inner='  <transportConector uri="stomp://0.0.0.0:1"/>\n')
    err = error_for(tmp_path, text)
    assert err.line == 5 and "transportConector" in err.problem and "transportConnectors" in err.fix


def test_unknown_element_without_close_match_lists_what_is_allowed(tmp_path, dirs):
    err = error_for(tmp_path, minimal(dirs["kaha"], inner="  <managementContext/>\n"))
    assert "managementContext" in err.problem and "persistenceAdapter" in err.fix


@pytest.mark.parametrize(
    "attrs,needle",
    [
        ('checkpointInterval="5s"', "not a whole number"),
        ('checkpointInterval="0"', "out of range"),
        ('checkpointInterval="99999999999999"', "out of range"),
        ('allowUnsafeStorage="yes please"', "not a boolean"),
        ('journalDiskSyncStrategy="alwayz"', 'did you mean "always"'),
        ('journalMaxFileLength="32 parsecs"', "not a size"),
        ('journalMaxFileLength="1kb"', "out of range"),
        ('enableJournalDiskSyncs="true"', "not supported"),
        ('checkpointJournalBytes="lots"', "not a size"),
        ('checkpointJournalBytes="4kb"', "out of range"),
        ('checkpointJournalBytes="0"', "out of range"),
        ('checkpointJournalBytes="2048gb"', "out of range"),
        ('checkpointJournalByte="32mb"', 'did you mean "checkpointJournalBytes"'),
    ],
)
def test_bad_kahadb_values(tmp_path, dirs, attrs, needle):
    err = error_for(tmp_path, minimal(dirs["kaha"], kahadb_attrs=attrs))
    assert err.line == 3 and needle in err.problem, err


@pytest.mark.parametrize(
    "uri,needle",
    [
        ("stomp://0.0.0.0:70000", "out of range"),
        ("stomp://0.0.0.0:61x13", "not a number"),
        ("stomp://0.0.0.0", "no port"),
        ("tcp://0.0.0.0:61616", "OpenWire"),
        ("amqp://0.0.0.0:5672", "does not support"),
        ("0.0.0.0:61613", "not a URI"),
        ("stomp://0.0.0.0:61613?maxFrameSize=big", "not a size"),
        ("stomp://0.0.0.0:61613?maxFrameSise=100", 'did you mean "maxFrameSize"'),
        ("stomp://0.0.0.0:61613?needClientAuth=true", "only to TLS"),
        ("stomp://bad host:61613", "not a host name"),
        ("stomp://[::1:61613", "IPv6"),
    ],
)
def test_bad_connector_uris(tmp_path, dirs, uri, needle):
    inner = (
        f'  <transportConnectors>\n    <transportConnector name="s" uri="{uri}"/>\n  </transportConnectors>\n'
    )
    err = error_for(tmp_path, minimal(dirs["kaha"], inner=inner))
    assert err.line == 6 and needle in err.problem, err
    if "OpenWire" in needle:
        assert "stomp://" in err.fix


def test_connector_variants(tmp_path, dirs):
    inner = (
        "  <transportConnectors>\n"
        '    <transportConnector uri="stomp+nio://[::1]:0?transport.maxFrameSize=1mb&amp;maximumConnections=50"/>\n'
        '    <transportConnector name="tls" uri="stomp+ssl://localhost:61614?needClientAuth=true"/>\n'
        "  </transportConnectors>\n"
    )
    cfg = load_config(write(tmp_path, minimal(dirs["kaha"], inner=inner)))
    a, b = cfg.connectors
    assert (a.name, a.scheme, a.host, a.port, a.max_frame_size, a.max_connections) == (
        "stomp",
        "stomp",
        "::1",
        0,
        1024 * 1024,
        50,
    )
    assert (b.name, b.scheme, b.options) == ("tls", "stomp+ssl", {"needClientAuth": "true"})


def test_two_connectors_on_one_port_are_refused(tmp_path, dirs):
    inner = (
        "  <transportConnectors>\n"
        '    <transportConnector name="a" uri="stomp://0.0.0.0:61613"/>\n'
        '    <transportConnector name="b" uri="stomp://0.0.0.0:61613"/>\n'
        "  </transportConnectors>\n"
    )
    err = error_for(tmp_path, minimal(dirs["kaha"], inner=inner))
    assert err.line == 7 and "line 6" in err.problem


def test_status_endpoint_must_be_http(tmp_path, dirs):
    err = error_for(
        tmp_path, minimal(dirs["kaha"], inner='  <statusEndpoint uri="https://127.0.0.1:8161"/>\n')
    )
    assert err.line == 5 and '"https"' in err.problem


@pytest.mark.parametrize(
    "text,line,needle",
    [
        (
            '<broker><persistenceAdapter><kahaDB directory="/x"/></persistenceAdapter></broker>',
            1,
            '"brokerName"',
        ),
        (
            '<broker brokerName="o">\n<persistenceAdapter>\n<kahaDB/>\n</persistenceAdapter>\n</broker>',
            3,
            '"directory"',
        ),
        ('<broker brokerName="o"/>', 1, "no <persistenceAdapter>"),
        ('<broker brokerName="o"><persistenceAdapter/></broker>', 1, "no <kahaDB>"),
        ('<broker brokerName="../etc"><persistenceAdapter/></broker>', 1, "not a valid name"),
    ],
)
def test_missing_required_things(tmp_path, text, line, needle):
    err = error_for(tmp_path, text)
    assert err.line == line and needle in err.problem, err


@pytest.mark.parametrize("adapter", ["levelDB", "amqPersistenceAdapter"])
def test_other_adapters_are_refused_naming_kahadb(tmp_path, adapter):
    text = f'<broker brokerName="o">\n <persistenceAdapter>\n  <{adapter} directory="/x"/>\n </persistenceAdapter>\n</broker>'
    err = error_for(tmp_path, text)
    assert err.line == 3 and adapter in err.problem and "kahaDB is the supported adapter" in err.problem


def test_keep_alive_zero_is_refused_with_the_reason(tmp_path, dirs):
    text = minimal(dirs["kaha"], kaha_inner='<locker><shared-file-locker lockKeepAlivePeriod="0"/></locker>')
    err = error_for(tmp_path, text)
    assert "AMQ-4705" in err.problem and "second broker" in err.problem


def test_another_locker_keeps_its_attributes_raw(tmp_path, dirs):
    text = minimal(
        dirs["kaha"],
        kaha_inner='<locker><test-handover-locker lockKeepAlivePeriod="500" token="abc"/></locker>',
    )
    locker = load_config(write(tmp_path, text)).persistence.locker
    assert locker.type == "test-handover"
    assert locker.lock_keep_alive_period_ms == 500
    assert locker.attributes == {"lockKeepAlivePeriod": "500", "token": "abc"}


def test_locker_must_hold_exactly_one_element(tmp_path, dirs):
    err = error_for(tmp_path, minimal(dirs["kaha"], kaha_inner="<locker/>"))
    assert "exactly one" in err.problem


def test_malformed_xml_names_the_line(tmp_path, dirs):
    text = minimal(dirs["kaha"]).replace("</persistenceAdapter>", "</persistenceAdaptor>")
    err = error_for(tmp_path, text)
    assert err.line == 4 and "malformed XML" in err.problem


def test_empty_file(tmp_path):
    err = error_for(tmp_path, "")
    assert err.line == 1 and "malformed XML" in err.problem


def test_entities_are_refused(tmp_path):
    text = '<?xml version="1.0"?>\n<!DOCTYPE b [\n<!ENTITY a "aaaaaaaaaa">\n]>\n<broker brokerName="&a;"/>'
    err = error_for(tmp_path, text)
    assert "entity" in err.problem.lower()


def test_placeholders_are_refused(tmp_path):
    err = error_for(tmp_path, '<broker brokerName="o" dataDirectory="${activemq.data}"/>')
    assert "placeholder" in err.problem


def test_relative_paths_are_refused(tmp_path):
    text = '<broker brokerName="o"><persistenceAdapter><kahaDB directory="kahadb"/></persistenceAdapter></broker>'
    err = error_for(tmp_path, text)
    assert "relative path" in err.problem and "absolute" in err.fix


def test_stray_text_is_refused(tmp_path, dirs):
    err = error_for(tmp_path, minimal(dirs["kaha"], inner="  oops\n"))
    assert "oops" in err.problem


def test_scheduler_needs_a_data_directory(tmp_path, dirs):
    err = error_for(tmp_path, minimal(dirs["kaha"], broker_attrs='schedulerSupport="true"'))
    assert "dataDirectory" in err.problem


def test_missing_directory_says_mount_it_unless_fs_checks_are_off(tmp_path):
    missing = tmp_path / "not-mounted" / "kahadb"
    err = error_for(tmp_path, minimal(str(missing)))
    assert err.line == 3 and "does not exist" in err.problem
    assert "create it or mount the shared storage first" in err.fix
    cfg = load_config(tmp_path / "broker.xml", check_filesystem=False)
    assert cfg.persistence.directory == missing


def test_directory_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    err = error_for(tmp_path, minimal(str(tmp_path / "f")))
    assert "not a directory" in err.problem


def test_missing_config_file_has_no_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.xml")
    assert info.value.line is None and str(info.value).startswith(f"{tmp_path / 'nope.xml'}: ")


NOBODY = 65534


def _load_as(uid: int, path: Path) -> str:
    """load_config in a forked child that dropped to ``uid``; returns the error text."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(read_end)
            if uid != os.geteuid():
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            try:
                load_config(path)
                message = "loaded"
            except ConfigError as exc:
                message = str(exc)
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def test_unwritable_directory_names_owner_mode_and_fix():
    """Checked as an unprivileged user: root may write anywhere, so it needs a real non-owner."""
    # pytest's tmp_path sits in a 0700 directory the unprivileged user cannot enter.
    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o755)
        kaha = Path(top) / "kahadb"
        kaha.mkdir()
        os.chmod(kaha, 0o755 if os.geteuid() == 0 else 0o555)
        path = Path(top) / "broker.xml"
        path.write_text(minimal(str(kaha)))
        path.chmod(0o644)
        out = _load_as(NOBODY if os.geteuid() == 0 else os.geteuid(), path)
    assert "mode 0755" in out or "mode 0555" in out, out
    assert "cannot write" in out and "chown" in out and str(kaha) in out


def test_check_config_command(tmp_path, dirs, capsys):
    good = write(tmp_path, EXAMPLE.format(**dirs))
    assert cli_main(["check-config", str(good)]) == 0
    assert capsys.readouterr().out.startswith("OK: broker orders (node b1)")
    assert cli_main(["check-config", "--json", str(good)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True and result["config"]["persistence"]["directory"] == dirs["kaha"]

    bad = tmp_path / "bad.xml"
    bad.write_text(minimal(str(tmp_path / "missing")))
    assert cli_main(["check-config", str(bad)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["check-config", "--no-fs-checks", str(bad)]) == 0
    capsys.readouterr()
    assert cli_main(["check-config", "--json", str(bad)]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False and result["line"] == 3 and "mount" in result["fix"]
