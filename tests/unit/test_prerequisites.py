"""`make lab`, `make test` and .ci/run share one prerequisite step (.ci/prerequisites.sh).

Why: a fresh machine must need nothing by hand (issue 16, item 1), and a copy of the
step in each entry point would drift. The script runs here against stub commands on
a PATH that has none of the real tools, so nothing is installed.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "prerequisites.sh"
BASIC = ["bash", "sort", "dirname", "seq", "sleep", "mkdir", "tail", "cat", "env", "chmod"]


def _stub(bindir, name, body):
    path = bindir / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)


def _run(tmp_path, *, have, uid=0, args=()):
    """Run the script with only the commands in ``have`` (plus coreutils) on PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in BASIC:
        os.symlink(shutil.which(name), bindir / name)
    log = tmp_path / "apt.log"
    _stub(bindir, "id", f'[[ "$1" == -u ]] && echo {uid} || exec /usr/bin/id "$@"')
    # apt-get "installs" docker.io by adding stub docker and dockerd commands.
    docker = 'case "$1" in info) exit 0 ;; version) echo 99.0 ;; esac'
    _stub(bindir, "apt-get", f'echo "$*" >> {log}\n'
          f'if [[ " $* " == *" docker.io "* ]]; then\n'
          f'printf "#!/bin/bash\\n%s\\n" \'{docker}\' > {bindir}/docker; chmod +x {bindir}/docker; fi')
    if "python3.11" in have:
        os.symlink(sys.executable, bindir / "python3.11")
    for name in ("make", "mmdebstrap", "dockerd"):
        if name in have:
            _stub(bindir, name, "exit 0")
    if "docker" in have:
        _stub(bindir, "docker", docker)
    result = subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
        env={"PATH": str(bindir), "HOME": str(tmp_path)}, cwd=tmp_path,
    )
    return result, (log.read_text() if log.exists() else "")


ALL = {"python3.11", "make", "mmdebstrap", "docker", "dockerd"}


def test_nothing_missing_installs_nothing(tmp_path):
    result, apt = _run(tmp_path, have=ALL)
    assert result.returncode == 0, result.stderr
    assert apt == ""
    assert "Docker daemon answers" in result.stdout


def test_missing_mmdebstrap_is_installed_with_apt(tmp_path):
    result, apt = _run(tmp_path, have=ALL - {"mmdebstrap"})
    assert result.returncode == 0, result.stderr
    assert "update -qq" in apt
    assert re.search(r"install -y -qq --no-install-recommends mmdebstrap$", apt, re.M), apt


def test_missing_docker_is_installed_and_then_answers(tmp_path):
    result, apt = _run(tmp_path, have={"python3.11", "make", "mmdebstrap"})
    assert result.returncode == 0, result.stderr
    installs = [line for line in apt.splitlines() if line.startswith("install")]
    assert len(installs) == 1, apt
    assert "docker.io" in installs[0]


def test_not_root_names_the_packages_and_the_fix(tmp_path):
    result, apt = _run(tmp_path, have=ALL - {"mmdebstrap"}, uid=1000)
    assert result.returncode == 1
    assert apt == ""
    assert "Fix: sudo apt-get install --no-install-recommends mmdebstrap" in result.stderr


def test_check_only_reports(tmp_path):
    result, apt = _run(tmp_path, have=ALL - {"mmdebstrap"}, args=["--check"])
    assert result.returncode == 1
    assert "missing: mmdebstrap" in result.stdout
    assert apt == ""


@pytest.mark.parametrize("target", ["lab", "test"])
def test_make_targets_run_the_step_before_the_venv(target):
    text = (ROOT / "Makefile").read_text()
    recipe = re.search(rf"^{target}:.*?\n((?:\t.*\n)+)", text, re.M).group(1)
    assert "prerequisites" in recipe, recipe
    assert recipe.index("prerequisites") < recipe.index("venv"), recipe
    assert re.search(r"^PREREQUISITES := \.ci/prerequisites\.sh$", text, re.M)


def test_ci_run_sources_the_same_step_and_keeps_no_copy():
    text = (ROOT / ".ci" / "run").read_text()
    assert ". .ci/prerequisites.sh --lib" in text
    for name in ("find_python", "install_prerequisites", "ensure_docker", "apt_install"):
        assert not re.search(rf"^{name}\(\)", text, re.M), f".ci/run defines its own {name}"
