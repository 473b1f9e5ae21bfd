"""shared_lock runs as Ansible runs it (a separate Python process reading its args) on real OFD locks.

No mocks: a hold is a real background process, and every claim about the lock
is checked from this process with hamq's own lock code.
"""

import json
import os
import subprocess
import sys

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.hamq.cluster.plugins.module_utils import hamq_lockfile as lockfile
from ansible_collections.hamq.cluster.plugins.modules import shared_lock

MODULE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))),
    "plugins",
    "modules",
    "shared_lock.py",
)


def _run_in_process(capsys, args):
    """Run main() the way AnsibleModule reads its input; return the JSON it prints."""
    with patch_module_args(args), pytest.raises(SystemExit):
        shared_lock.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def run(tmp_path, capsys):
    """Run the module with ``args``; returns its JSON result. Releases any hold at the end."""
    state_dir = str(tmp_path / "state")
    holds = []

    def _run(check_mode=False, **args):
        args.setdefault("state_dir", state_dir)
        if check_mode:
            args["_ansible_check_mode"] = True
        result = _run_in_process(capsys, args)
        if args.get("action") == "hold" and not check_mode:
            holds.append(dict(args))
        return result

    yield _run
    for args in holds:
        args["action"] = "release"
        _run(**args)


def test_runs_as_a_separate_process_like_ansible_runs_it(tmp_path, collection_pythonpath):
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"path": str(tmp_path), "action": "probe"}}))
    env = dict(os.environ, PYTHONPATH=collection_pythonpath)
    proc = subprocess.run(
        [sys.executable, MODULE, str(args_file)], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    result = json.loads(proc.stdout)
    assert result["lock_available"] is True, result
    assert result["storage"]["path"] == str(tmp_path)


def test_info_on_a_fresh_directory(run, tmp_path):
    result = run(path=str(tmp_path))
    assert result["changed"] is False
    assert result["held"] is False
    assert result["holder"] is None
    assert result["epoch"] == 0
    assert result["lock_path"] == str(tmp_path / "lock")


def test_info_shows_a_masters_holder_record_and_epoch(run, tmp_path):
    fd = lockfile.try_lock(lockfile.lock_path(str(tmp_path)))
    try:
        record = lockfile.become_master(fd, str(tmp_path), {"nodeName": "b1", "brokerName": "orders"})
        result = run(path=str(tmp_path))
    finally:
        lockfile.unlock(fd)
    assert result["held"] is True
    assert result["epoch"] == record["epoch"] == 1
    assert result["holder"]["nodeName"] == "b1"
    assert result["holder"]["brokerName"] == "orders"


def test_probe_reports_the_filesystem_and_takes_the_free_lock(run, tmp_path):
    result = run(path=str(tmp_path), action="probe", lock_file=".hamq-probe", expect_available=True)
    assert "failed" not in result, result
    assert result["lock_available"] is True
    assert result["storage"]["verdict"] in ("ok", "warn")
    assert result["storage"]["fstype"]
    # The probe released it again.
    assert lockfile.is_locked(str(tmp_path / ".hamq-probe")) is False


def test_hold_keeps_the_lock_until_release(run, tmp_path):
    lock = str(tmp_path / "lock")
    held = run(path=str(tmp_path), action="hold", hold_seconds=120)
    assert held["changed"] is True, held
    assert isinstance(held["holder_pid"], int)
    # Another open file description (as another broker would be) cannot get it.
    assert lockfile.try_lock(lock) is None
    assert run(path=str(tmp_path))["held"] is True

    again = run(path=str(tmp_path), action="hold", hold_seconds=120)
    assert again["changed"] is False
    assert again["holder_pid"] == held["holder_pid"]

    released = run(path=str(tmp_path), action="release")
    assert released["changed"] is True
    assert released["held"] is False
    fd = lockfile.try_lock(lock)
    assert fd is not None
    lockfile.unlock(fd)
    assert run(path=str(tmp_path), action="release")["changed"] is False


def test_probe_expecting_exclusion_passes_while_held_and_fails_when_free(run, tmp_path):
    run(path=str(tmp_path), action="hold", lock_file=".hamq-probe", hold_seconds=120)
    excluded = run(path=str(tmp_path), action="probe", lock_file=".hamq-probe", expect_available=False)
    assert "failed" not in excluded, excluded
    assert excluded["lock_available"] is False

    blocked = run(path=str(tmp_path), action="probe", lock_file=".hamq-probe", expect_available=True)
    assert blocked["failed"] is True
    assert "could not be taken" in blocked["msg"]

    run(path=str(tmp_path), action="release", lock_file=".hamq-probe")
    free = run(path=str(tmp_path), action="probe", lock_file=".hamq-probe", expect_available=False)
    assert free["failed"] is True
    assert "NOT exclusive across hosts" in free["msg"]


def test_hold_fails_with_the_reason_when_someone_else_holds_it(run, tmp_path):
    fd = lockfile.try_lock(str(tmp_path / "lock"))
    try:
        result = run(path=str(tmp_path), action="hold", timeout=0.2)
    finally:
        lockfile.unlock(fd)
    assert result["failed"] is True
    assert "another process or host holds it" in result["msg"]


def test_check_mode_reports_a_hold_without_taking_the_lock(run, tmp_path):
    result = run(check_mode=True, path=str(tmp_path), action="hold")
    assert result["changed"] is True
    assert result["held"] is False
    assert lockfile.is_locked(str(tmp_path / "lock")) is False


@pytest.mark.parametrize(
    "args, problem",
    [
        ({"lock_file": "../lock"}, "not a plain file name"),
        ({"path": "/nonexistent/hamq-store"}, "is not a directory"),
        ({"action": "hold", "hold_seconds": 0}, "hold_seconds must be > 0"),
    ],
)
def test_bad_input_is_refused_with_the_fix(run, tmp_path, args, problem):
    args.setdefault("path", str(tmp_path))
    result = run(**args)
    assert result["failed"] is True
    assert problem in result["msg"]
    assert "Fix" in result["msg"]
