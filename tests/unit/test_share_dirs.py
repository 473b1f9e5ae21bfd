"""roles/broker/files/share_dirs.py: the broker user makes its own directories
on the share (root_squash), and anything it cannot own is named with its fix."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "broker" / "files" / "share_dirs.py"


def run(*args: str, user: str | None = None) -> dict:
    argv = [sys.executable, "-", *args]
    if user is not None:
        argv = ["runuser", "-u", user, "--", "python3", "-", *args]
    out = subprocess.run(argv, input=SCRIPT.read_text(), capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_creates_missing_parents_first_and_is_idempotent(tmp_path):
    group, store = tmp_path / "hamq", tmp_path / "hamq" / "deep" / "kahadb"
    first = run(str(group), str(store))
    assert first["error"] is None
    assert first["created"] == [str(group), str(group / "deep"), str(store)]
    assert oct(store.stat().st_mode & 0o777) == "0o700"
    assert run(str(group), str(store))["created"] == []


def test_dry_run_creates_nothing(tmp_path):
    result = run("--dry-run", str(tmp_path / "hamq"), str(tmp_path / "hamq" / "kahadb"))
    assert result["created"] == [str(tmp_path / "hamq"), str(tmp_path / "hamq" / "kahadb")]
    assert not (tmp_path / "hamq").exists()


def test_a_directory_of_another_owner_is_refused_with_its_fix(tmp_path):
    (tmp_path / "hamq").mkdir()
    os.chown(tmp_path / "hamq", 12345, 12345) if os.geteuid() == 0 else pytest.skip("needs root to chown")
    result = run(str(tmp_path / "hamq"))
    assert "owned by uid 12345" in result["error"] and "chown -R" in result["error"]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root and runuser")
def test_an_unwritable_parent_names_the_blocked_directory_and_the_filesystem():
    pwd.getpwnam("nobody")
    # pytest's tmp_path is under a 0700 directory nobody cannot search.
    share = Path(tempfile.mkdtemp(prefix="hamq-share-", dir="/tmp"))
    try:
        share.chmod(0o755)
        target = share / "hamq"
        result = run(str(target), user="nobody")
        assert result["blocked"] == str(target), result
        assert result["fstype"] not in (None, "")
        assert "cannot be created as uid" in result["error"] and "root_squash" in result["error"]
        assert not target.exists()
    finally:
        shutil.rmtree(share)
