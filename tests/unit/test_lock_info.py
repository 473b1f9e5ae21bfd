"""``hamq lock-info DIR`` (hamq.ha.lock_info) through the real CLI dispatcher."""

import json

from hamq.cli import main
from hamq.ha import lockfile


def test_free_then_held(tmp_path, capsys):
    assert main(["lock-info", str(tmp_path)]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["held"] is False and state["holder"] is None and state["epoch"] == 0

    fd = lockfile.try_lock(lockfile.lock_path(str(tmp_path)))
    lockfile.become_master(fd, str(tmp_path), {"nodeName": "b1", "brokerName": "orders"})
    try:
        assert main(["lock-info", "--compact", str(tmp_path)]) == 0
        state = json.loads(capsys.readouterr().out)
        assert state["held"] is True and state["epoch"] == 1
        assert state["holder"]["nodeName"] == "b1" and state["holder"]["brokerName"] == "orders"
    finally:
        lockfile.unlock(fd)
    main(["lock-info", str(tmp_path)])
    state = json.loads(capsys.readouterr().out)
    assert state["held"] is False and state["holder"]["nodeName"] == "b1"  # last holder stays visible


def test_missing_directory_is_a_clear_error(tmp_path, capsys):
    assert main(["lock-info", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "not a directory" in err and "Fix:" in err
