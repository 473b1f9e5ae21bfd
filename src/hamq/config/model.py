"""Typed broker configuration, the result of validating ``broker.xml``.

Every other part of the broker reads these dataclasses, never the XML, so a
value is checked once, at load time, with the file and line in the error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

MiB = 1024 * 1024


@dataclass
class LockerConfig:
    """``<locker><shared-file-locker .../></locker>`` (or another entry-point locker)."""

    type: str = "shared-file"
    lock_acquire_sleep_interval_ms: int = 1000
    lock_keep_alive_period_ms: int = 2000
    fail_if_locked: bool = False
    #: Every attribute as written, for third-party lockers.
    attributes: Dict[str, str] = field(default_factory=dict)


@dataclass
class KahaDBConfig:
    """``<persistenceAdapter><kahaDB .../></persistenceAdapter>``."""

    directory: Path
    journal_disk_sync_strategy: str = "always"  # always | periodic | never
    journal_disk_sync_interval_ms: int = 1000
    journal_max_file_length: int = 32 * MiB
    checkpoint_interval_ms: int = 5000
    #: a checkpoint is also due once this much journal was written since the last (bounds a takeover's replay)
    checkpoint_journal_bytes: int = 32 * MiB
    cleanup_interval_ms: int = 30000
    allow_unsafe_storage: bool = False
    locker: LockerConfig = field(default_factory=LockerConfig)


@dataclass
class ConnectorConfig:
    """``<transportConnector name=... uri="stomp://host:port?opts"/>``."""

    name: str
    scheme: str  # stomp | stomp+ssl
    host: str
    port: int
    max_frame_size: int = 10 * MiB
    max_headers: int = 1000
    max_header_length: int = 64 * 1024
    #: ``maximumConnections`` URI option; None means no limit (ActiveMQ's default).
    max_connections: Optional[int] = None
    #: ``maxPendingBytes``: unsent output at which a slow reader gets no more messages (None = 4 MiB).
    max_pending_bytes: Optional[int] = None
    #: Every URI option as written (``transport.``/``wireFormat.`` prefixes removed).
    options: Dict[str, str] = field(default_factory=dict)


@dataclass
class StatusEndpointConfig:
    """``<statusEndpoint uri="http://127.0.0.1:8161"/>``: /status and /metrics."""

    host: str = "127.0.0.1"
    port: int = 8161


@dataclass
class BrokerConfig:
    """``<broker ...>``: the whole validated configuration."""

    broker_name: str
    node_name: str
    data_directory: Path
    persistence: KahaDBConfig
    connectors: List[ConnectorConfig] = field(default_factory=list)
    status_endpoint: Optional[StatusEndpointConfig] = None
    scheduler_support: bool = False
    #: ``<redeliveryPolicy maximumRedeliveries="6"/>``; past it a message goes to the DLQ.
    #: -1 means never dead-letter on redelivery count, as in ActiveMQ.
    maximum_redeliveries: int = 6
    dead_letter_queue: str = "ActiveMQ.DLQ"
    #: ``<destinationPolicy>`` ``<policyEntry queue=">" memoryLimit=...>``: body bytes one destination keeps in
    #: memory before its producers wait (producer flow control); None = 64 MiB.
    memory_limit: Optional[int] = None
    #: ``<systemUsage><systemUsage sendFailIfNoSpace="true"/>``: refuse with an ERROR instead of waiting.
    send_fail_if_no_space: bool = False
    #: ``<plugins>`` and ``<sslContext>``: a ``hamq.security.model.SecurityConfig``, or None if neither is set.
    security: Optional[object] = None
    #: Where the config came from, for messages.
    source: Optional[Path] = None

    @property
    def scheduler_directory(self) -> Path:
        """ActiveMQ's layout: ``<dataDirectory>/<brokerName>/scheduler``."""
        return self.data_directory / self.broker_name / "scheduler"
