"""Security through the sans-IO engine: CONNECT logins, denied SEND/SUBSCRIBE, durable admin, DLQ."""

from __future__ import annotations

from test_engine_support import Harness

from hamq.security.model import (
    AuthenticationConfig,
    AuthorizationConfig,
    AuthorizationEntry,
    SecurityConfig,
    UserConfig,
)
from hamq.security.passwords import hash_password

PW = hash_password("pw", 1000)


def secured(anonymous: bool = False) -> Harness:
    users = {name: UserConfig(name, PW, groups) for name, groups in
             {"prod": ("producers",), "cons": ("consumers",), "boss": ("admins", "consumers")}.items()}
    security = SecurityConfig(
        authentication=AuthenticationConfig(users=users, anonymous_access_allowed=anonymous, max_login_failures=3),
        authorization=AuthorizationConfig([
            AuthorizationEntry("queue", ">", ("admins",), ("admins",), ("admins",)),
            AuthorizationEntry("queue", "orders.>", ("consumers",), ("producers",)),
            AuthorizationEntry("topic", "news", ("consumers",), ("producers",), ("admins",)),
            AuthorizationEntry("queue", "ActiveMQ.DLQ", ("consumers",)),
        ]))
    return Harness(security=security)


def attempt(h: Harness, name: str, **headers):
    """CONNECT that may fail: returns (frames, closed)."""
    h.broker.connection_made(name, ("192.0.2.7", 4000))
    h.inbox[name] = []
    h.closed[name] = False
    h.heartbeats[name] = 0
    h.send(name, "CONNECT", accept_version="1.2", **headers)
    return h.take(name), h.closed[name]


def test_right_password_connects():
    h = secured()
    frames, closed = attempt(h, "a", login="prod", passcode="pw")
    assert [f.command for f in frames] == ["CONNECTED"] and not closed


def test_wrong_password_is_error_and_close():
    h = secured()
    frames, closed = attempt(h, "a", login="prod", passcode="wrong")
    assert [f.command for f in frames] == ["ERROR"] and closed
    assert "login failed" in frames[0].get("message") and "Fix:" in frames[0].get("message")


def test_unknown_user_gets_the_same_error_as_a_wrong_password():
    h = secured()
    unknown, closed = attempt(h, "a", login="nobody", passcode="pw")
    wrong, _ = attempt(h, "b", login="prod", passcode="x")
    assert closed and unknown[0].get("message") == wrong[0].get("message")


def test_missing_login_refused_unless_anonymous_allowed():
    frames, closed = attempt(secured(), "a")
    assert closed and "requires a login" in frames[0].get("message")
    frames, closed = attempt(secured(anonymous=True), "a")
    assert frames[0].command == "CONNECTED" and not closed


def test_repeated_failures_from_one_address_are_throttled():
    h = secured()
    for i in range(3):
        attempt(h, f"bad{i}", login="prod", passcode="guess")
    frames, closed = attempt(h, "good", login="prod", passcode="pw")
    assert closed and "too many failed logins from 192.0.2.7" in frames[0].get("message")
    h.clock.now += 2.0  # the first back-off is 1 s
    frames, closed = attempt(h, "later", login="prod", passcode="pw")
    assert frames[0].command == "CONNECTED"


def test_denied_send_is_an_error_with_receipt_and_nothing_is_enqueued():
    h = secured()
    h.connect("c", login="cons", passcode="pw")
    h.send("c", "SEND", b"x", destination="/queue/orders.eu", receipt="r1")
    (err,) = h.take("c", "ERROR")
    assert err.get("receipt-id") == "r1"
    assert "not authorized to write to (SEND) /queue/orders.eu" in err.get("message")
    assert not h.closed["c"]  # the connection stays usable
    assert h.broker.queues.get("orders.eu") is None or h.broker.queues["orders.eu"].depth == 0


def test_denied_subscribe_is_an_error_and_allowed_flow_works():
    h = secured()
    h.connect("p", login="prod", passcode="pw")
    h.connect("c", login="cons", passcode="pw")
    h.send("p", "SUBSCRIBE", destination="/queue/orders.eu", id="s", receipt="r2")
    (err,) = h.take("p", "ERROR")
    assert err.get("receipt-id") == "r2" and "read from (SUBSCRIBE)" in err.get("message")
    h.send("c", "SUBSCRIBE", destination="/queue/orders.eu", id="s")
    h.send("p", "SEND", b"hello", destination="/queue/orders.eu", receipt="r3")
    assert [f.command for f in h.take("p")] == ["RECEIPT"]
    assert [f.body for f in h.take("c", "MESSAGE")] == [b"hello"]


def test_denied_send_inside_a_transaction_is_refused_at_send_time():
    h = secured()
    h.connect("c", login="cons", passcode="pw")
    h.send("c", "BEGIN", transaction="t")
    h.send("c", "SEND", b"x", destination="/queue/orders.eu", transaction="t", receipt="r")
    (err,) = h.take("c", "ERROR")
    assert err.get("receipt-id") == "r"


def test_durable_subscription_needs_admin():
    h = secured()
    h.connect("c", login="cons", passcode="pw", client_id="c1")
    h.send("c", "SUBSCRIBE", **{"destination": "/topic/news", "id": "s", "activemq.subscriptionName": "d"})
    (err,) = h.take("c", "ERROR")
    assert "administer" in err.get("message")
    assert not h.broker.durables
    h.send("c", "SUBSCRIBE", destination="/topic/news", id="s2")  # a plain subscription is a read
    assert h.take("c") == []


def test_broker_dead_letters_without_write_permission_on_the_dlq():
    h = secured()
    h.connect("p", login="prod", passcode="pw")
    h.connect("c", login="cons", passcode="pw")
    h.send("c", "SUBSCRIBE", destination="/queue/orders.eu", id="s", ack="client-individual")
    h.send("p", "SEND", b"poison", destination="/queue/orders.eu")
    (msg,) = h.take("c", "MESSAGE")
    h.send("c", "NACK", id=msg.get("ack"))
    assert h.broker.queues["ActiveMQ.DLQ"].depth == 1
    h.send("c", "SUBSCRIBE", destination="/queue/ActiveMQ.DLQ", id="dlq")
    assert [f.body for f in h.take("c", "MESSAGE")] == [b"poison"]


def test_no_security_config_allows_everything():
    h = Harness()
    h.connect("c", login="x", passcode="y")
    h.send("c", "SEND", b"x", destination="/queue/any", receipt="r")
    assert [f.command for f in h.take("c")] == ["RECEIPT"]


def test_removing_a_durable_subscription_needs_admin():
    h = secured()
    h.connect("boss", login="boss", passcode="pw", client_id="shared")
    h.send("boss", "SUBSCRIBE", **{"destination": "/topic/news", "id": "s", "activemq.subscriptionName": "d"})
    h.send("boss", "UNSUBSCRIBE", id="s")  # closes the subscription, keeps the durable one
    h.drop("boss")
    h.connect("c", login="cons", passcode="pw", client_id="shared")
    h.send("c", "UNSUBSCRIBE", **{"activemq.subscriptionName": "d", "receipt": "rm"})
    (err,) = h.take("c", "ERROR")
    assert err.get("receipt-id") == "rm" and "administer" in err.get("message")
    assert len(h.broker.durables) == 1
