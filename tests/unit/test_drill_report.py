"""The failover drill report, fed with the JSON of a real Docker-lab drill.

The fixture is what playbooks/failover_drill.yml wrote in the lab (kill -9 of
the master under a persistent load, two rounds); the expected figures are recomputed here
from its raw samples, never copied from the report.
"""

import importlib.util
import json
import os
import statistics
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "playbooks", "files", "drill_report.py")
FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "drill_report_lab_kill9_2rounds.json")


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


drill_report = _load("drill_report", SCRIPT)


@pytest.fixture
def lab_run(tmp_path):
    """A copy of the lab run without the summary an earlier render added."""
    with open(FIXTURE, encoding="utf-8") as f:
        data = json.load(f)
    data.pop("summary", None)
    path = tmp_path / "drill-report.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path, data


def _window(data, i):
    kills = sorted(r["killed_at"] for r in data["rounds"])
    return kills[i], kills[i + 1] if i + 1 < len(kills) else float("inf")


def _takeover(data, i):
    """Kill -> first successful connect to any other broker, straight from the port samples."""
    rnd, (start, end) = data["rounds"][i], _window(data, i)
    opened = [s["t"] for s in data["samples"]["ports"]
              if s["open"] and s["node"] != rnd["old_master"] and start <= s["t"] < end]
    return round(min(opened) - start, 3)


def _outage(data, i):
    """Kill -> the later of the clients' first reconnect after the kill; None once the load had ended."""
    start, end = _window(data, i)
    ups = []
    for client in ("producer", "consumer"):
        after = [e["up_at"] for e in data[client]["reconnect_events"] if start <= e["up_at"] < end]
        if after:
            ups.append(min(after))
    return round(max(ups) - start, 3) if ups else None


def _fmt(value):
    return "n/a" if value is None else "%.2f" % value


def _stat_cells(values):
    """p50 | p99 | max | n as the table prints them, computed with the statistics module."""
    values = [v for v in values if v is not None]
    if len(values) == 1:
        figures = values * 3
    else:
        figures = [statistics.median(values), statistics.quantiles(values, n=100, method="inclusive")[98],
                   max(values)]
    return " | ".join(_fmt(v) for v in figures) + " | %d |" % len(values)


def test_fixture_is_a_real_drill_with_raw_samples(lab_run):
    _, data = lab_run
    assert data["kill_method"] == "kill9"
    assert len(data["rounds"]) == 2
    # Round 1 under load; the load had ended before round 2's kill, so no client reconnected then.
    assert _outage(data, 0) is not None and _outage(data, 1) is None
    assert len(data["samples"]["producer"]) > 3 and len(data["samples"]["consumer"]) > 3
    assert any(s["open"] for s in data["samples"]["ports"])
    assert data["producer"]["reconnect_events"] and data["consumer"]["reconnect_events"]


def test_table_holds_the_figures_of_the_run(lab_run, tmp_path):
    path, data = lab_run
    summary, md, _, _ = drill_report.write_report([str(path)], str(tmp_path / "out"), want_plot=False)
    takeovers = [_takeover(data, i) for i in range(len(data["rounds"]))]
    outages = [_outage(data, i) for i in range(len(data["rounds"]))]
    assert [r["takeover_seconds"] for r in summary["rounds"]] == takeovers
    assert [r["client_outage_seconds"] for r in summary["rounds"]] == outages
    assert summary["takeover_source"] == ["port"]
    assert "| takeover: kill → new master's port open (s) [port] | " + _stat_cells(takeovers) in md
    assert "| client outage: kill → last client reconnected (s) | " + _stat_cells(outages) in md
    assert "| sent (of %d) | %d |" % (data["messages"], data["producer"]["sent"]) in md
    assert "| receipted | %d |" % data["producer"]["receipted"] in md
    assert "| received | %d |" % data["consumer"]["received"] in md
    assert "| duplicates | %d |" % data["consumer"]["duplicates"] in md
    assert "| missing | %d |" % data["consumer"]["missing"] in md
    n = len(data["rounds"])
    assert "| old master back as slave | yes (%d of %d) |" % (n, n) in md
    for i, rnd in enumerate(data["rounds"]):
        assert "| %d | %s (%d) → %s (%d) | %s | %s |" % (
            i + 1, rnd["old_master"], rnd["old_epoch"], rnd["new_master"], rnd["new_epoch"],
            _fmt(takeovers[i]), _fmt(outages[i])) in md
    written = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert written["samples"] == data["samples"]  # every raw sample is kept
    assert [r["takeover_seconds"] for r in written["summary"]["rounds"]] == takeovers
    assert (tmp_path / "out.md").read_text(encoding="utf-8") == md


def test_png_is_written_with_matplotlib(lab_run):
    pytest.importorskip("matplotlib")
    path, _ = lab_run
    result = subprocess.run([sys.executable, SCRIPT, "--quiet", str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    png = path.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![drill timeline](drill-report.png)" in path.with_suffix(".md").read_text(encoding="utf-8")


def test_without_matplotlib_json_and_markdown_are_still_written(lab_run):
    """`python -S` drops site-packages, so matplotlib really cannot be imported."""
    path, data = lab_run
    probe = subprocess.run([sys.executable, "-S", "-c", "import matplotlib"], capture_output=True, check=False)
    if probe.returncode == 0:
        pytest.skip("matplotlib is importable without site-packages here")
    result = subprocess.run([sys.executable, "-S", SCRIPT, str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    hint = [line for line in result.stderr.splitlines() if line.startswith("drill-report.png skipped")]
    assert len(hint) == 1 and "matplotlib is not installed" in hint[0] and "Fix:" in hint[0]
    assert not path.with_suffix(".png").exists()
    md = path.with_suffix(".md").read_text(encoding="utf-8")
    assert md == result.stdout
    assert "![drill timeline]" not in md
    assert json.loads(path.read_text(encoding="utf-8"))["samples"] == data["samples"]


def test_several_rounds_give_percentiles_and_one_row_each(lab_run, tmp_path):
    path, data = lab_run
    second = json.loads(json.dumps(data))
    second["run"] = data["run"] + "-b"
    shift = 3.5  # the same drill again, its takeover 3.5 s slower
    for sample in second["samples"]["ports"]:
        if sample["t"] >= data["rounds"][0]["killed_at"]:
            sample["t"] += shift
    other = tmp_path / "second.json"
    other.write_text(json.dumps(second), encoding="utf-8")
    summary, md, _, _ = drill_report.write_report([str(path), str(other)], str(tmp_path / "both"),
                                                  want_plot=False)
    n = len(data["rounds"])
    takeovers = [_takeover(data, i) for i in range(n)]
    expected = takeovers + [round(t + shift, 3) for t in takeovers]
    stats = summary["stats"]["takeover_seconds"]
    assert stats["n"] == 2 * n
    assert stats["max"] == max(expected)
    assert stats["p50"] == pytest.approx(statistics.median(expected), abs=0.0015)
    for i in range(2 * n):
        assert "| %d | %s" % (i + 1, data["rounds"][i % n]["old_master"]) in md
    assert "| sent (of %d) | %d |" % (2 * data["messages"], 2 * data["producer"]["sent"]) in md
    assert "| old master back as slave | yes (%d of %d) |" % (2 * n, 2 * n) in md
    combined = json.loads((tmp_path / "both.json").read_text(encoding="utf-8"))
    assert [run["run"] for run in combined["runs"]] == [data["run"], second["run"]]
    # A combined report can be fed back in and gives the same figures.
    again, _, _, _ = drill_report.write_report([str(tmp_path / "both.json")], str(tmp_path / "again"),
                                               want_plot=False)
    assert again["stats"] == summary["stats"]


def test_percentile_interpolates_between_ranks():
    assert drill_report.percentile([4, 1, 3, 2], 50) == 2.5
    assert drill_report.percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert drill_report.percentile([7], 99) == 7
    assert drill_report.percentile([], 50) is None


def test_a_round_without_port_samples_falls_back_to_the_status_poll(lab_run, tmp_path):
    path, data = lab_run
    data["samples"]["ports"] = []
    path.write_text(json.dumps(data), encoding="utf-8")
    summary, md, _, _ = drill_report.write_report([str(path)], str(tmp_path / "out"), want_plot=False)
    for rnd, got in zip(data["rounds"], summary["rounds"]):
        assert got["takeover_seconds"] == round(rnd["new_master_seen_at"] - rnd["killed_at"], 3)
    assert "[status poll]" in md


@pytest.mark.parametrize("content, problem", [
    (None, "no such file"),
    ("| a markdown table |", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"run": "x"}', "neither 'rounds' nor 'killed_at'"),
    ('{"rounds": [{"old_master": "b1"}]}', "round 1 has no numeric killed_at"),
])
def test_bad_input_names_the_problem_and_the_fix(tmp_path, content, problem):
    path = tmp_path / "in.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = subprocess.run([sys.executable, SCRIPT, str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert problem in result.stderr and "Fix:" in result.stderr
    assert not (tmp_path / "in.md").exists()
    if content is not None:
        assert path.read_text(encoding="utf-8") == content  # the input is never overwritten on error


def test_report_says_what_it_counted_by_and_counts_the_unidentified(lab_run, tmp_path):
    path, data = lab_run
    data["consumer"].update({"identity": "client-message-id", "unidentified": 3})
    path.write_text(json.dumps(data), encoding="utf-8")
    summary, md, _, _ = drill_report.write_report([str(path)], str(tmp_path / "out"), want_plot=False)
    assert summary["totals"]["unidentified"] == 3
    assert "| messages counted by | client-message-id |" in md
    assert "| could not be identified (not counted above) | 3 |" in md


def test_drill_summary_prints_identity_and_unidentified(tmp_path):
    summary_script = _load("drill_summary", os.path.join(ROOT, "lab", "drill_summary.py"))
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"run": "x", "identity": "client-message-id", "unidentified": 2,
                                  "checks": {"every_message_identified": False}, "passed": False}))
    out = subprocess.run([sys.executable, summary_script.__file__, str(report)], capture_output=True, text=True)
    assert "counted by" in out.stdout and "client-message-id" in out.stdout
    assert "could not be identified" in out.stdout and "every_message_identified" in out.stdout
