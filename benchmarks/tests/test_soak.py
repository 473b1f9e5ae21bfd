"""The soak's short mode runs end to end against real brokers, so the long soak cannot rot.

It checks that every soak ran and reported every figure, not what the figures are: the
properties themselves are asserted by tests/faults.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_short_soak_reports_every_figure(tmp_path):
    out = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--short", "--seed", "7", "--json", str(out),
                          "--workdir", str(tmp_path / "work")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["seed"] == 7
    kills, corruption, failovers = results["kills"], results["corruption"], results["failovers"]
    assert kills["kills"] == 2 and kills["messages"] == 300 and kills["sent"] >= kills["receipted"] > 0
    for key in ("lost", "unflagged_duplicates", "dual_master_samples", "takeover_p50_ms", "takeover_max_ms"):
        assert isinstance(kills[key], (int, float)), key
    assert corruption["trials"] == 4 and sum(corruption["by_kind"].values()) == 4 and corruption["bit_flips"] == 2
    for key in ("garbled", "lost_before_the_damage", "bit_flips_losing_more_than_one_batch"):
        assert isinstance(corruption[key], int), key
    assert failovers["failovers"] == 2 and failovers["by_mode"] == {"sigstop": 1, "before-write": 1}
    for key in ("receipts_after_takeover", "dual_master_samples", "lost"):
        assert isinstance(failovers[key], int), key
    text = run.stdout
    assert "soak seed 7" in text and "kills 2 x 300 messages: lost" in text
    assert "corruption 4 trials" in text and "failovers 2" in text and "receipts after takeover" in text
    assert _processes_under(tmp_path) == [], "the soak left brokers running"


def _processes_under(path: Path) -> list:
    """Pids whose command line names a file under ``path`` (a broker the soak started)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(path) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_bad_arguments_are_refused_with_the_fix():
    run = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--only", "kils"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "unknown soak kils" in run.stderr and "choose from" in run.stderr
