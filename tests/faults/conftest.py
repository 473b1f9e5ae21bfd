"""Fixtures of the fault-injection suite: broker groups that never outlive a test, seeds, shared storage.

Every wait here has a generous deadline that only turns a hang into a
failure; assertions are about properties (what was receipted, delivered,
answered, written), never about how long something took.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import List

import pytest
from faultlab.group import BrokerGroup
from faultlab.seeds import rng_for


@pytest.fixture
def make_group(tmp_path):
    """``make_group(**options) -> BrokerGroup`` (see BrokerGroup); every process is killed at teardown."""
    made: List[BrokerGroup] = []

    def make(root=None, **options) -> BrokerGroup:
        g = BrokerGroup(root or tmp_path / f"group{len(made)}", **options)
        made.append(g)
        return g

    yield make
    for g in made:
        g.close()


@pytest.fixture
def rng(request):
    """A ``random.Random`` whose seed is printed; HAMQ_FAULT_SEED replays a failing run."""
    return rng_for(request.node.nodeid)


@pytest.fixture
def shared_storage(tmp_path):
    """A directory on a FUSE file system (fuse-overlayfs), which hamq treats as shared storage.

    On storage it does not know to be local the broker runs its fsyncs in a worker
    thread while the event loop goes on, as it does on NFS and GFS2; some faults
    only show on that path. Skips when FUSE or fuse-overlayfs is missing.
    """
    tool = shutil.which("fuse-overlayfs")
    if tool is None or not Path("/dev/fuse").exists():
        pytest.skip("needs fuse-overlayfs and /dev/fuse (Debian: apt-get install fuse-overlayfs) to run the "
                    "broker on a file system it treats as shared storage")
    base = tmp_path / "fuse"
    lower, upper, work, mount = (base / n for n in ("lower", "upper", "work", "mnt"))
    for d in (lower, upper, work, mount):
        d.mkdir(parents=True)
    result = subprocess.run([tool, "-o", f"lowerdir={lower},upperdir={upper},workdir={work}", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount fuse-overlayfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["fusermount3" if shutil.which("fusermount3") else "fusermount", "-u", "-z", str(mount)],
                       capture_output=True)
