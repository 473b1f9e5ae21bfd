"""broker.xml files and free ports for tests that start real brokers."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Optional


def pick_free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for listeners that cannot report port 0 back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def render_broker_xml(
    kahadb_dir: Path,
    status_port: int,
    stomp_port: int = 0,
    broker_name: str = "test",
    node_name: str = "b1",
    data_dir: Optional[Path] = None,
    sync: str = "always",
    connector_options: str = "",
    kahadb_attrs: str = "",
    locker: str = '<shared-file-locker lockAcquireSleepInterval="200" lockKeepAlivePeriod="500"/>',
    broker_attrs: str = "",
    extra: str = "",
) -> str:
    """A broker.xml in ActiveMQ's vocabulary; every knob a test may need is a parameter."""
    data_attr = f' dataDirectory="{data_dir}"' if data_dir is not None else ""
    query = f"?{connector_options}" if connector_options else ""
    locker_xml = f"<locker>{locker}</locker>" if locker else ""
    return f"""<broker brokerName="{broker_name}" nodeName="{node_name}"{data_attr} {broker_attrs}>
  <persistenceAdapter>
    <kahaDB directory="{kahadb_dir}" journalDiskSyncStrategy="{sync}" {kahadb_attrs}>
      {locker_xml}
    </kahaDB>
  </persistenceAdapter>
  <transportConnectors>
    <transportConnector name="stomp" uri="stomp://127.0.0.1:{stomp_port}{query}"/>
  </transportConnectors>
  <statusEndpoint uri="http://127.0.0.1:{status_port}"/>
  {extra}
</broker>
"""
