"""lab/vm/takeover.py against real brokers on loopback.

The VM lab's takeover figure comes from this probe, so check here, without VMs,
that it reports the slave's takeover after the master is killed, and that it
gives up with an error (exit 1) when no broker ever accepts STOMP.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = Path(__file__).resolve().parents[2] / "lab" / "vm" / "takeover.py"


def run_probe(*args: str) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=120)
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def test_reports_the_slave_taking_over_after_the_master_is_killed(hamq_broker, free_port, tmp_path):
    master = hamq_broker("b1", stomp_port=free_port())
    slave_port = free_port()
    slave = hamq_broker("b2", kahadb_dir=tmp_path / "kahadb", wait_role="slave", stomp_port=slave_port)

    rc, report = run_probe(f"--broker=127.0.0.1:{slave_port}", "--timeout", "60",
                           "--kill", "kill", "-9", str(master.pid))

    assert rc == 0, report
    assert report["new_master"] == f"127.0.0.1:{slave_port}"
    assert report["connected_at"] >= report["killed_at"]
    assert report["takeover_s"] >= 0
    assert slave.status()["role"] == "master"
    assert not master.alive()


def test_gives_up_when_no_broker_accepts(free_port):
    rc, report = run_probe(f"--broker=127.0.0.1:{free_port()}", "--timeout", "1", "--kill", "true")

    assert rc == 1
    assert report["takeover_s"] is None
    assert "no broker accepted STOMP" in report["error"]
