"""The drill's port watch against a real listening socket on 127.0.0.1."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WATCH = os.path.join(ROOT, "playbooks", "files", "drill_port_watch.py")

_spec = importlib.util.spec_from_file_location("drill_port_watch", WATCH)
drill_port_watch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(drill_port_watch)


def test_port_watch_endpoint_parsing():
    assert drill_port_watch.parse_endpoint("broker1=10.0.0.5:61613") == ("broker1", "10.0.0.5", 61613)
    assert drill_port_watch.parse_endpoint("b=[::1]:61613") == ("b", "::1", 61613)
    for bad in ("broker1", "broker1=host", "=h:1", "b=h:port"):
        with pytest.raises(Exception, match="Fix:"):
            drill_port_watch.parse_endpoint(bad)


def _wait_for(predicate, what):
    deadline = time.monotonic() + 20
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("gave up waiting for " + what)
        time.sleep(0.05)


def test_port_watch_records_a_port_opening_and_closing(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    out, stop = tmp_path / "ports.jsonl", tmp_path / "stop"
    proc = subprocess.Popen([sys.executable, WATCH, "--out", str(out), "--stop-file", str(stop),
                             "--interval", "0.05", "b1=127.0.0.1:%d" % port])
    try:
        def events():
            if not out.exists():
                return []
            return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line]

        _wait_for(lambda: len(events()) >= 1, "the closed state")
        listener.listen(8)
        _wait_for(lambda: len(events()) >= 2, "the port to open")
        listener.close()
        _wait_for(lambda: len(events()) >= 3, "the port to close")
        stop.touch()
        assert proc.wait(timeout=20) == 0
        states = [(e["node"], e["open"]) for e in events()]
        assert states == [("b1", False), ("b1", True), ("b1", False)]
        times = [e["t"] for e in events()]
        assert times == sorted(times)
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
