"""A minimal broker.xml around a fragment, for the config tests."""

from __future__ import annotations

from pathlib import Path


def broker_xml(tmp_path: Path, inner: str) -> Path:
    """Write broker.xml (brokerName "orders", kahaDB in tmp_path/kahadb) with ``inner`` inside <broker>."""
    kaha = tmp_path / "kahadb"
    kaha.mkdir(exist_ok=True)
    path = tmp_path / "broker.xml"
    path.write_text(
        '<broker brokerName="orders">\n'
        f'  <persistenceAdapter><kahaDB directory="{kaha}"/></persistenceAdapter>\n'
        f"{inner}"
        "</broker>\n")
    return path
