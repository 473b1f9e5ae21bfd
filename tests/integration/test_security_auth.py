"""A real ``hamq run`` with simpleAuthenticationPlugin and authorizationPlugin, driven over sockets."""

from __future__ import annotations

import pytest
import stomp
from raw_stomp import RawStomp

from hamq.client.failover import FailoverClient
from hamq.security.passwords import hash_password

PW = hash_password("app-secret", 1000)
ADMIN_PW = hash_password("admin-secret", 1000)

PLUGINS = f"""
  <plugins>
    <simpleAuthenticationPlugin anonymousAccessAllowed="false" maxLoginFailures="3">
      <users>
        <authenticationUser username="app" password="{PW}" groups="producers,consumers"/>
        <authenticationUser username="admin" password="{ADMIN_PW}" groups="admins"/>
      </users>
    </simpleAuthenticationPlugin>
    <authorizationPlugin><map><authorizationMap><authorizationEntries>
      <authorizationEntry queue=">" read="admins" write="admins" admin="admins"/>
      <authorizationEntry queue="orders.>" read="consumers" write="producers"/>
    </authorizationEntries></authorizationMap></map></authorizationPlugin>
  </plugins>"""


class Raw(RawStomp):
    """A bare STOMP 1.2 client: what a hostile or careless client can send."""

    def __init__(self, port: int):
        super().__init__(port, timeout=15)


@pytest.fixture(scope="module")
def secured(module_broker_factory):
    return module_broker_factory(node_name="secured", extra=PLUGINS)


def test_right_password_connects_and_allowed_destination_works(secured):
    c = Raw(secured.stomp_port)
    assert c.connect(login="app", passcode="app-secret")[0] == "CONNECTED"
    c.send("SUBSCRIBE", destination="/queue/orders.eu", id="s")
    c.send("SEND", b"hi", destination="/queue/orders.eu", receipt="r")
    frames = [c.frame(), c.frame()]
    assert sorted(f[0] for f in frames) == ["MESSAGE", "RECEIPT"]
    c.close()


def test_wrong_password_gets_error_and_close(secured):
    c = Raw(secured.stomp_port)
    command, headers, _ = c.connect(login="app", passcode="wrong")
    assert command == "ERROR" and "login failed" in headers["message"]
    assert c.frame() is None  # closed by the broker
    c.close()


def test_unknown_user_gets_error_and_close(secured):
    c = Raw(secured.stomp_port)
    command, headers, _ = c.connect(login="mallory", passcode="app-secret")
    assert command == "ERROR" and "login failed" in headers["message"]
    assert c.frame() is None
    c.close()


def test_no_credentials_refused(secured):
    c = Raw(secured.stomp_port)
    command, headers, _ = c.connect()
    assert command == "ERROR" and "requires a login" in headers["message"]
    assert c.frame() is None
    c.close()


def test_denied_destination_is_error_with_receipt_and_connection_stays(secured):
    c = Raw(secured.stomp_port)
    assert c.connect(login="app", passcode="app-secret")[0] == "CONNECTED"
    c.send("SEND", b"x", destination="/queue/billing", receipt="denied-1")
    command, headers, _ = c.frame()
    assert command == "ERROR" and headers["receipt-id"] == "denied-1"
    assert "not authorized to write" in headers["message"] and "/queue/billing" in headers["message"]
    c.send("SUBSCRIBE", destination="/queue/billing", id="s", receipt="denied-2")
    command, headers, _ = c.frame()
    assert command == "ERROR" and headers["receipt-id"] == "denied-2"
    c.send("SEND", b"x", destination="/queue/orders.denied-test", receipt="ok")
    assert c.frame()[0] == "RECEIPT"
    c.close()
    assert (secured.destination("billing") or {"depth": 0})["depth"] == 0


def test_stomp_py_and_failover_client_log_in(secured):
    conn = stomp.Connection12([("127.0.0.1", secured.stomp_port)])
    conn.connect("app", "app-secret", wait=True)
    assert conn.is_connected()
    conn.disconnect()
    url = f"failover:(tcp://127.0.0.1:{secured.stomp_port})?maxReconnectAttempts=0&startupMaxReconnectAttempts=0"
    client = FailoverClient(url, login="admin", passcode="admin-secret").connect()
    client.send("/queue/admin.only", b"x")
    client.close()


def test_repeated_failures_are_throttled_per_address(hamq_broker, tmp_path):
    # its own broker: throttling 127.0.0.1 must not disturb the other tests
    broker = hamq_broker(node_name="throttle", kahadb_dir=tmp_path / "throttle", extra=PLUGINS)
    for _ in range(3):
        c = Raw(broker.stomp_port)
        assert c.connect(login="app", passcode="guess")[0] == "ERROR"
        c.close()
    c = Raw(broker.stomp_port)
    command, headers, _ = c.connect(login="app", passcode="app-secret")
    assert command == "ERROR" and "too many failed logins" in headers["message"]
    c.close()
