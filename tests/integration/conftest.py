"""Real ``hamq run`` processes for integration tests.

``hamq_broker(...)`` writes a broker.xml into tmp_path, starts the broker as a
subprocess on free ports and returns a :class:`BrokerProcess`; every process
is killed at teardown. Several brokers on one ``kahadb_dir`` make a
master/slave group::

    def test_failover(hamq_broker, tmp_path):
        shared = tmp_path / "shared"
        a = hamq_broker(node_name="a", kahadb_dir=shared)          # waits until master
        b = hamq_broker(node_name="b", kahadb_dir=shared, wait_role="slave")
        a.kill()                                                   # SIGKILL
        b.wait_role("master")
        port = b.stomp_port

The process classes live in ``tests/support/brokers.py``, shared with the
fault-injection suite (tests/faults) and the soak benchmark.
"""

from __future__ import annotations

import pytest
from support.brokers import HAMQ, START_TIMEOUT_S, BrokerFactory, BrokerProcess

__all__ = ["HAMQ", "START_TIMEOUT_S", "BrokerFactory", "BrokerProcess"]


@pytest.fixture
def hamq_broker(tmp_path, free_port, render_xml):
    """Factory: ``hamq_broker(node_name="b1", kahadb_dir=None, wait_role="master", env=None, **xml)``.

    ``**xml`` goes to ``render_broker_xml`` (sync, connector_options, kahadb_attrs,
    locker, broker_attrs, extra, data_dir, broker_name). Returns a started
    :class:`BrokerProcess`; ``wait_role=None`` returns without waiting. All are
    killed at teardown.
    """
    factory = BrokerFactory(tmp_path, free_port, render_xml)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_broker_factory(tmp_path_factory, free_port, render_xml):
    """Like ``hamq_broker`` but shared by a test module (saves a start per test)."""
    factory = BrokerFactory(tmp_path_factory.mktemp("brokers"), free_port, render_xml)
    yield factory
    factory.close()


@pytest.fixture
def broker(hamq_broker):
    """One master broker on a fresh store."""
    return hamq_broker()
