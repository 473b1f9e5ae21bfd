"""Security parts of broker.xml: users, hashes, authorization entries, sslContext."""

from __future__ import annotations

import io
import sys

import pytest
from config_support import broker_xml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hamq.cli import main as cli_main
from hamq.config.loader import ConfigError, load_config
from hamq.security.passwords import PasswordHash, hash_password

HASH = hash_password("s3cret", iterations=1000)


def plugins(users: str = "", attrs: str = "", authz: str = "") -> str:
    return (f"  <plugins>\n    <simpleAuthenticationPlugin {attrs}>\n"
            f"      <users>{users}</users>\n    </simpleAuthenticationPlugin>\n{authz}  </plugins>\n")


def user(name="app", password=HASH, groups="producers,consumers") -> str:
    return f'<authenticationUser username="{name}" password="{password}" groups="{groups}"/>'


def test_users_groups_and_authorization_entries_load(tmp_path):
    authz = ('<authorizationPlugin><map><authorizationMap><authorizationEntries>\n'
             '<authorizationEntry queue="orders.>" read="consumers" write="producers" admin="admins"/>\n'
             '<authorizationEntry topic="prices.*,news" read="consumers"/>\n'
             '</authorizationEntries></authorizationMap></map></authorizationPlugin>\n')
    cfg = load_config(broker_xml(tmp_path, plugins(user(), authz=authz)))
    authn = cfg.security.authentication
    assert authn.anonymous_access_allowed is False
    assert authn.users["app"].groups == ("producers", "consumers")
    entries = cfg.security.authorization.entries
    assert [(e.kind, e.pattern, e.read, e.write, e.admin) for e in entries] == [
        ("queue", "orders.>", ("consumers",), ("producers",), ("admins",)),
        ("topic", "prices.*,news", ("consumers",), (), ()),
    ]


def test_no_security_elements_means_no_security_config(tmp_path):
    assert load_config(broker_xml(tmp_path, "")).security is None


def test_plaintext_password_is_refused_with_the_hash_password_fix(tmp_path):
    path = broker_xml(tmp_path, plugins(user(password="hunter2")))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "not a salted hash" in text and "hamq hash-password" in text and "'app'" in text
    assert ":4:" in text or ":5:" in text  # names the line of the user


def test_damaged_hash_is_named_as_damaged(tmp_path):
    with pytest.raises(ConfigError, match="damaged"):
        load_config(broker_xml(tmp_path, plugins(user(password="pbkdf2-sha256$12$abc$def"))))


def test_no_users_and_no_anonymous_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="nobody could connect"):
        load_config(broker_xml(tmp_path, plugins("")))


def test_duplicate_user_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="defined twice"):
        load_config(broker_xml(tmp_path, plugins(user() + user())))


def test_unknown_attribute_gets_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match='did you mean "anonymousAccessAllowed"'):
        load_config(broker_xml(tmp_path, plugins(user(), attrs='anonymousAccessAllowd="true"')))


def test_jaas_plugin_is_refused_with_an_alternative(tmp_path):
    with pytest.raises(ConfigError, match="simpleAuthenticationPlugin"):
        load_config(broker_xml(tmp_path, "  <plugins><jaasAuthenticationPlugin/></plugins>\n"))


@pytest.mark.parametrize("pattern, why", [
    ("orders..new", "empty segment"),
    ("orders.>.x", "last segment"),
    ("ord*", "mixes a wildcard"),
])
def test_bad_patterns_are_refused(tmp_path, pattern, why):
    authz = ('<authorizationPlugin><map><authorizationMap><authorizationEntries>'
             f'<authorizationEntry queue="{pattern}" read="a"/>'
             '</authorizationEntries></authorizationMap></map></authorizationPlugin>\n')
    with pytest.raises(ConfigError, match=why):
        load_config(broker_xml(tmp_path, plugins(user(), authz=authz)))


def test_entry_needs_exactly_one_kind(tmp_path):
    authz = ('<authorizationPlugin><map><authorizationMap><authorizationEntries>'
             '<authorizationEntry queue="a" topic="b" read="x"/>'
             '</authorizationEntries></authorizationMap></map></authorizationPlugin>\n')
    with pytest.raises(ConfigError, match="exactly one of queue"):
        load_config(broker_xml(tmp_path, plugins(user(), authz=authz)))


def test_users_file_is_read_and_must_not_be_world_readable(tmp_path):
    users = tmp_path / "users"
    users.write_text(f"# comment\nalice:{HASH}:admins\nbob:{HASH}\n")
    users.chmod(0o640)
    cfg = load_config(broker_xml(tmp_path, plugins("", attrs=f'usersFile="{users}"')))
    assert cfg.security.authentication.users["alice"].groups == ("admins",)
    assert cfg.security.authentication.users["bob"].groups == ()
    users.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 0600"):
        load_config(broker_xml(tmp_path, plugins("", attrs=f'usersFile="{users}"')))
    # --no-fs-checks (Ansible's validate of a temporary copy) does not open the file
    assert load_config(broker_xml(tmp_path, plugins("", attrs=f'usersFile="{users}"')),
                       check_filesystem=False).security.authentication.users == {}


def test_users_file_with_plaintext_names_file_and_line(tmp_path):
    users = tmp_path / "users"
    users.write_text(f"alice:{HASH}:admins\nbob:plain\n")
    users.chmod(0o600)
    with pytest.raises(ConfigError, match=r"users:2: the password of user 'bob' is not a salted hash"):
        load_config(broker_xml(tmp_path, plugins("", attrs=f'usersFile="{users}"')))


def test_ssl_context_requires_cert_and_key_and_refuses_java_keystores(tmp_path):
    with pytest.raises(ConfigError, match='missing "keyFile"'):
        load_config(broker_xml(tmp_path, '  <sslContext certFile="/x/cert.pem"/>\n'), check_filesystem=False)
    with pytest.raises(ConfigError, match="Java-style"):
        load_config(broker_xml(tmp_path, '  <sslContext><sslContext keyStore="b.ks"/></sslContext>\n'),
                    check_filesystem=False)
    cfg = load_config(broker_xml(tmp_path, '  <sslContext certFile="/x/c.pem" keyFile="/x/k.pem"/>\n'),
                      check_filesystem=False)
    assert str(cfg.security.tls.cert_file) == "/x/c.pem" and cfg.security.tls.ca_file is None


def test_ssl_context_missing_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r'certFile="/nonexistent/c.pem" cannot be read'):
        load_config(broker_xml(tmp_path, '  <sslContext certFile="/nonexistent/c.pem" keyFile="/x/k.pem"/>\n'))


def test_hash_password_command_reads_stdin_and_prints_a_verifiable_hash(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("correct horse\n"))
    assert cli_main(["hash-password", "--iterations", "1000"]) == 0
    out = capsys.readouterr().out.strip()
    parsed = PasswordHash(out)
    assert parsed.iterations == 1000
    assert parsed.verify("correct horse") and not parsed.verify("correct horse\n")


def test_hash_password_refuses_empty_input(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert cli_main(["hash-password"]) == 1
    assert "empty" in capsys.readouterr().err


def test_connector_limit_options(tmp_path):
    inner = ('  <transportConnectors><transportConnector name="s" uri="stomp://127.0.0.1:0?maxPendingBytes=256kb'
             '&amp;connectAttemptTimeout=500&amp;maximumConnections=10"/></transportConnectors>\n')
    (c,) = load_config(broker_xml(tmp_path, inner)).connectors
    assert (c.max_pending_bytes, c.options["connectAttemptTimeout"], c.max_connections) == (256 * 1024, "500", 10)
    bad = inner.replace("256kb", "1kb")
    with pytest.raises(ConfigError, match="maxPendingBytes"):
        load_config(broker_xml(tmp_path, bad))


FULL = (plugins(user() + user("ops", groups="admins"), attrs='anonymousAccessAllowed="false" maxLoginFailures="5"',
                authz='<authorizationPlugin><map><authorizationMap><authorizationEntries>'
                      '<authorizationEntry queue="orders.>" read="a" write="b" admin="c"/>'
                      '<authorizationEntry topic="*.x,y" read="a"/>'
                      '</authorizationEntries></authorizationMap></map></authorizationPlugin>')
        + '  <sslContext certFile="/x/c.pem" keyFile="/x/k.pem" caFile="/x/ca.pem"/>\n')


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, len(FULL)), st.integers(0, 8),
                          st.sampled_from(['"', "<", ">", "/", "=", " ", "$", ",", ".", "*", "x", "&amp;", ""])),
                max_size=4))
def test_mangled_security_config_is_loaded_or_refused_with_a_config_error(tmp_path, edits):
    text = FULL
    for pos, cut, insert in edits:
        pos = min(pos, len(text))
        text = text[:pos] + insert + text[pos + cut:]
    path = broker_xml(tmp_path, text)
    try:
        load_config(path, check_filesystem=False)
    except ConfigError as exc:
        assert "Fix:" in str(exc)


def test_check_config_summary_names_the_security(tmp_path, capsys):
    path = broker_xml(tmp_path, plugins(user()))
    assert cli_main(["check-config", str(path)]) == 0
    assert "authentication 1 users" in capsys.readouterr().out
    plain = broker_xml(tmp_path, "")
    assert cli_main(["check-config", str(plain)]) == 0
    assert "no authentication (anyone may connect)" in capsys.readouterr().out
