"""Fixtures shared by unit and integration tests: free ports and broker.xml files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest
from support.config import pick_free_port, render_broker_xml


@pytest.fixture(scope="session")
def free_port():
    """``free_port()`` returns a currently unused loopback port."""
    return pick_free_port


@pytest.fixture(scope="session")
def render_xml():
    """``render_xml(kahadb_dir, status_port, **options) -> str``: see :func:`render_broker_xml`."""
    return render_broker_xml


@pytest.fixture
def broker_xml(tmp_path):
    """``broker_xml(name="broker.xml", kahadb_dir=None, **options) -> Path`` writes a config into tmp_path.

    The kahaDB directory defaults to ``tmp_path/kahadb`` (created); pass the same
    ``kahadb_dir`` to several configs to build a shared-store master/slave group.
    """

    def write(name: str = "broker.xml", kahadb_dir: Optional[Path] = None, status_port: Optional[int] = None,
              **options) -> Path:
        kahadb = Path(kahadb_dir) if kahadb_dir is not None else tmp_path / "kahadb"
        kahadb.mkdir(parents=True, exist_ok=True)
        path = tmp_path / name
        path.write_text(render_broker_xml(kahadb, status_port or pick_free_port(), **options))
        return path

    return write
