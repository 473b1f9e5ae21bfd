"""Password hashes, login throttling and ActiveMQ wildcard matching, without a broker."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hamq.security.authentication import AccessDenied, Authenticator, LoginThrottle
from hamq.security.authorization import Authorizer, check_pattern, matches
from hamq.security.model import AuthenticationConfig, AuthorizationConfig, AuthorizationEntry, UserConfig
from hamq.security.passwords import PasswordHash, PasswordHashError, hash_password, looks_like_hash


def test_hash_is_salted_self_describing_and_verifies():
    a = hash_password("pw", iterations=1000)
    b = hash_password("pw", iterations=1000)
    assert a != b  # a fresh salt each time
    assert a.startswith("pbkdf2-sha256$1000$")
    assert PasswordHash(a).verify("pw") and PasswordHash(b).verify("pw")
    assert not PasswordHash(a).verify("pW")


@pytest.mark.parametrize("text", ["pw", "", "pbkdf2-sha256$1000$abc", "md5$1000$aaaaaaaaaaa$bbbb",
                                  "pbkdf2-sha256$x$aaaaaaaaaaaa$" + "A" * 43, "pbkdf2-sha256$10$aaaaaaaaaaaa$" + "A" * 43])
def test_not_a_hash(text):
    assert not looks_like_hash(text)
    with pytest.raises(PasswordHashError):
        PasswordHash(text)


def test_throttle_backs_off_exponentially_and_forgets_on_success():
    t = LoginThrottle(max_failures=3, base_delay_s=1.0, max_delay_s=8.0)
    for _ in range(2):
        t.failure("10.0.0.1", 100.0)
        assert t.wait_time("10.0.0.1", 100.0) == 0
    t.failure("10.0.0.1", 100.0)
    assert t.wait_time("10.0.0.1", 100.0) == 1.0
    assert t.wait_time("10.0.0.2", 100.0) == 0  # per address
    waits = []
    for _ in range(5):
        t.failure("10.0.0.1", 200.0)
        waits.append(t.wait_time("10.0.0.1", 200.0))
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0]
    t.success("10.0.0.1")
    assert t.wait_time("10.0.0.1", 200.0) == 0


def test_throttle_memory_is_bounded():
    t = LoginThrottle(max_addresses=100)
    for i in range(1000):
        t.failure(f"10.0.{i // 256}.{i % 256}", 1.0)
    assert len(t) == 100


def authenticator(**kw) -> Authenticator:
    cfg = AuthenticationConfig(users={"app": UserConfig("app", hash_password("pw", 1000), ("g1", "g2"))},
                               max_login_failures=2, **kw)
    return Authenticator(cfg)


def test_authenticator_right_wrong_unknown_and_same_message():
    auth = authenticator()
    p = auth.authenticate(("127.0.0.1", 5), "app", "pw", 0.0)
    assert p.username == "app" and p.groups == {"g1", "g2"}
    with pytest.raises(AccessDenied) as wrong:
        auth.authenticate(("127.0.0.1", 5), "app", "nope", 0.0)
    auth.throttle.success("127.0.0.1")
    with pytest.raises(AccessDenied) as unknown:
        auth.authenticate(("127.0.0.1", 5), "mallory", "pw", 0.0)
    assert wrong.value.problem == unknown.value.problem  # no user-name probing


def test_authenticator_blocks_even_the_right_password_while_throttled():
    auth = authenticator()
    for _ in range(2):
        with pytest.raises(AccessDenied):
            auth.authenticate(("10.1.1.1", 1), "app", "bad", 50.0)
    with pytest.raises(AccessDenied, match="too many failed logins from 10.1.1.1"):
        auth.authenticate(("10.1.1.1", 2), "app", "pw", 50.0)
    assert auth.authenticate(("10.1.1.2", 2), "app", "pw", 50.0).username == "app"  # other address
    assert auth.authenticate(("10.1.1.1", 3), "app", "pw", 52.0).username == "app"  # after the wait


def test_anonymous_only_when_allowed():
    with pytest.raises(AccessDenied, match="requires a login"):
        authenticator().authenticate(None, None, None, 0.0)
    p = authenticator(anonymous_access_allowed=True).authenticate(None, None, None, 0.0)
    assert (p.username, p.groups) == ("anonymous", {"anonymous"})
    # a login that is given is checked even when anonymous access is allowed
    with pytest.raises(AccessDenied):
        authenticator(anonymous_access_allowed=True).authenticate(None, "app", "bad", 0.0)


def test_no_plugin_means_anonymous():
    p = Authenticator(None).authenticate(None, "whoever", "whatever", 0.0)
    assert p.username == "anonymous"


@pytest.mark.parametrize("pattern, name, expected", [
    (">", "a", True), (">", "a.b.c", True),
    ("orders.>", "orders", True), ("orders.>", "orders.eu.new", True), ("orders.>", "ordersx", False),
    ("orders.*", "orders.eu", True), ("orders.*", "orders.eu.new", False), ("orders.*", "orders", False),
    ("*.new", "eu.new", True), ("*.new", "eu.old", False),
    ("a.b", "a.b", True), ("a.b", "a.b.c", False), ("a.b", "a", False),
])
def test_wildcards(pattern, name, expected):
    assert check_pattern(pattern) is None
    assert matches(pattern, name) is expected


segment = st.text(alphabet="abc", min_size=1, max_size=2)


@settings(max_examples=50, deadline=None)
@given(st.lists(segment, min_size=1, max_size=4))
def test_exact_and_catch_all_patterns_match_themselves(parts):
    name = ".".join(parts)
    assert matches(name, name) and matches(">", name) and matches(parts[0] + ".>", name)
    assert matches(".".join("*" for _ in parts), name)
    assert not matches(".".join("*" for _ in parts) + ".*", name)


def test_authorizer_unites_matching_entries_and_denies_unmatched():
    z = Authorizer(AuthorizationConfig([
        AuthorizationEntry("queue", ">", read=("admins",), write=("admins",), admin=("admins",)),
        AuthorizationEntry("queue", "orders.>", read=("consumers",), write=("producers",)),
        AuthorizationEntry("topic", "prices.*,news", read=("consumers",)),
    ]))
    assert z.allowed({"consumers"}, "queue", "orders.eu", "read")
    assert not z.allowed({"consumers"}, "queue", "orders.eu", "write")
    assert z.allowed({"admins"}, "queue", "orders.eu", "write")
    assert not z.allowed({"consumers"}, "queue", "billing", "read")
    assert z.allowed({"consumers"}, "topic", "news", "read")
    assert z.allowed({"consumers"}, "topic", "prices.eur", "read")
    assert not z.allowed({"admins"}, "topic", "other", "read")  # no topic entry matches
    assert Authorizer(None).allowed(set(), "queue", "x", "admin")



def test_server_context_names_unusable_files(tmp_path):
    from hamq.security.model import TLSConfig
    from hamq.security.tls import TLSSetupError, server_context

    with pytest.raises(TLSSetupError, match="missing.pem"):
        server_context(TLSConfig(tmp_path / "missing.pem", tmp_path / "missing.key"))
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(TLSSetupError, match="Fix:"):
        server_context(TLSConfig(tmp_path / "junk.pem", tmp_path / "junk.pem"))


def test_throttle_unit_is_the_ipv4_address_or_the_ipv6_slash_64():
    from hamq.security.authentication import peer_address

    assert peer_address(("192.0.2.1", 5)) == "192.0.2.1"
    assert peer_address(("2001:db8:1:2:aaaa::1", 5, 0, 0)) == peer_address(("2001:db8:1:2:bbbb::9", 6, 0, 0))
    assert peer_address(("2001:db8:1:2::1", 5, 0, 0)) == "2001:db8:1:2::/64"
    assert peer_address(("::ffff:192.0.2.1", 5, 0, 0)) == "192.0.2.1"
    assert peer_address(None) == "local"
