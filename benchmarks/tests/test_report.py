"""Pure tests of the suite's bookkeeping: statistics, table, goals, bad input. No brokers run."""

from __future__ import annotations

import json
import socket

import pytest

from benchmarks import brokers, cli, report
from benchmarks.brokers import BrokerUnavailable, PortAllocator
from benchmarks.stats import percentile, summarize
from benchmarks.suite import Suite


def test_percentile_is_nearest_rank():
    values = list(range(1, 31))  # 30 trials
    assert percentile(values, 50) == 15
    assert percentile(values, 99) == 30
    assert summarize([3.0, 1.0, 2.0])["median"] == 2.0


def _data(suite: Suite) -> dict:
    return {"date": "2026-01-01 00:00 UTC", "mode": "quick", "command": "benchmarks/run --quick",
            "machine": {"cores": 2, "cpu": "CPU", "memory": "1 GB RAM", "kernel": "k", "python": "3",
                        "java": "java", "activemq": "5", "coilmq": "1", "stomp.py": "9", "hamq_commit": "abc"},
            "notes": suite.notes, "results": suite.results, "elapsed_s": 1.0, "unavailable": {}}


def test_table_has_ratio_goal_and_footnotes(tmp_path):
    suite = Suite(workdir=tmp_path, log=lambda m: None)
    suite.ok("send_persistent_1", "hamq", [3000, 3100, 2900], "msgs/s")
    suite.ok("send_persistent_1", "ActiveMQ", [1000, 1000, 1000], "msgs/s")
    suite.fail("send_persistent_1", "coilmq", "connection lost")
    suite.ok("takeover_default", "hamq", [100, 120, 600], "ms")
    suite.na("takeover_default", "coilmq", "coilmq has no master/slave")
    md = report.markdown(_data(suite))
    row = next(ln for ln in md.splitlines() if ln.startswith("| Persistent SEND, receipt per message, 1"))
    assert "3.00×" in row and "| met |" in row and "failed [1]" in row
    takeover = next(ln for ln in md.splitlines() if ln.startswith("| Takeover kill"))
    assert "not met" in takeover  # max 600 ms > 500 ms
    assert "1. connection lost" in md and "2. coilmq has no master/slave" in md


def test_write_all_writes_json_md_and_png(tmp_path):
    suite = Suite(workdir=tmp_path, log=lambda m: None)
    for n, t in (("0", [0.3, 0.4]), ("1M", [0.9, 1.0])):
        suite.ok(f"startup_{n}", "hamq", t, "s")
        suite.ok(f"rss_{n}", "hamq", [40, 41], "MiB")
    paths = report.write_all(_data(suite), tmp_path / "results", "stamp")
    assert json.loads(paths["json"].read_text())["results"]["startup_1M"]["hamq"]["median"] == 0.95
    assert (tmp_path / "results" / "latest.md").read_text().count("latest.png") == 1
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    assert not list((tmp_path / "results").glob("*.tmp*"))


def test_taken_base_port_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(BrokerUnavailable, match=f"port 127.0.0.1:{port} is already in use. Fix"):
            PortAllocator(port).take()


def test_unknown_scenario_names_the_choices():
    with pytest.raises(SystemExit, match="unknown scenario thruput. Fix: choose from throughput"):
        cli.select("thruput", cli.SCENARIOS, "scenario")


def test_missing_activemq_skips_its_column_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(brokers, "ACTIVEMQ_JAR", tmp_path / "no" / "activemq.jar")
    suite = Suite(workdir=tmp_path, log=lambda m: None, install=False)
    suite.check_brokers(["ActiveMQ"])
    assert "Fix: `sudo apt-get install activemq`" in suite.unavailable["ActiveMQ"]
    assert suite.skip_unavailable(["send_persistent_1"], "ActiveMQ")
    md = report.markdown(_data(suite))
    assert "skipped [1]" in md and "ActiveMQ Classic is not installed" in md


def test_port_in_use_marks_the_cell_skipped(tmp_path):
    suite = Suite(workdir=tmp_path, log=lambda m: None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        node = suite.kinds["coilmq"].node("c1", tmp_path / "store")
        node.port = sock.getsockname()[1]
        with pytest.raises(brokers.PortInUse) as info:
            node.start()
    suite.fail("send_persistent_1", "coilmq", info.value)
    cell = suite.results["send_persistent_1"]["coilmq"]
    assert cell["status"] == "skipped" and "already in use. Fix" in cell["reason"]
    assert node.popen is None  # nothing was started


def test_render_rewrites_the_report_from_json(tmp_path, capsys):
    suite = Suite(workdir=tmp_path, log=lambda m: None)
    suite.ok("consume_individual", "hamq", [10, 20, 30], "msgs/s")
    data = dict(_data(suite), loadavg={"n": 2, "min": 1.0, "median": 1.5, "max": 2.0})
    src = tmp_path / "run.json"
    src.write_text(json.dumps(data))
    assert cli.main(["--render", str(src), "--results-dir", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "latest.md").read_text()
    assert "10.0 / **20.0** / 30.0" in md and "median 1.5" in md
    with pytest.raises(SystemExit, match="Fix: pass a results JSON"):
        cli.main(["--render", str(tmp_path / "missing.json")])
