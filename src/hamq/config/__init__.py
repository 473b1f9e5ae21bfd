"""Broker configuration: the typed model and the ``broker.xml`` loader."""

from hamq.config.model import (  # noqa: F401
    BrokerConfig,
    ConnectorConfig,
    KahaDBConfig,
    LockerConfig,
    StatusEndpointConfig,
)
