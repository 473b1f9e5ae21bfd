"""Authentication and TLS on the converged lab: the master serves STOMP only
over TLS, a plain-text or anonymous CONNECT is refused, and the lab user
(made per run by resources/tasks/lab_security.yml) sends and receives over TLS,
but only on the destinations its authorization entry names.

Each check runs on the master's own host, against the name its certificate
carries, with the CA the broker itself was given (sslContext caFile)."""

from __future__ import annotations

import json
import os
import shlex
import uuid

import pytest

LOGIN = "lab-app"
SECURITY_DIR = "lab-security"

# One STOMP CONNECT on a raw socket, plain or TLS; prints the first frame's
# command (or what went wrong) so the test sees the broker's real answer.
RAW_CONNECT = r"""
import socket, ssl, sys
host, port, mode, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
headers = "accept-version:1.2\nhost:/\n" + "".join(h + "\n" for h in sys.argv[5:])
sock = socket.create_connection((host, port), timeout=10)
try:
    if mode == "tls":
        sock = ssl.create_default_context(cafile=ca).wrap_socket(sock, server_hostname=host)
    sock.sendall(("CONNECT\n" + headers + "\n\0").encode())
    data = b""
    while b"\0" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
except (OSError, ssl.SSLError) as exc:
    print("ERROR-" + type(exc).__name__)
    sys.exit(0)
print(data.split(b"\n", 1)[0].decode("utf-8", "replace") if data else "CLOSED")
"""


def _security_on(broker) -> bool:
    return broker.config.find("plugins/simpleAuthenticationPlugin") is not None


@pytest.fixture(scope="module")
def secured(master):
    if not _security_on(master) and master.config.find("sslContext") is None:
        pytest.skip(
            "this lab runs without authentication and TLS (only the molecule default scenario has them)"
        )
    return master


@pytest.fixture(scope="module")
def passcode() -> str:
    path = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], SECURITY_DIR, "passcode")
    assert os.path.exists(path), f"{path} is missing: converge.yml makes it (resources/tasks/lab_security.yml)"
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def _tls_port(broker) -> int:
    port = broker.connector_port("stomp+ssl")
    assert port is not None, f"{broker.name}: broker.xml has no stomp+ssl transportConnector"
    return port


def _ca_file(broker) -> str:
    ssl_context = broker.config.find("sslContext")
    assert ssl_context is not None and ssl_context.get("caFile"), f"{broker.name}: no sslContext caFile"
    return ssl_context.get("caFile")


def _raw_connect(broker, mode: str, *headers: str) -> str:
    python = os.path.join(os.path.dirname(broker.cli), "python")
    argv = [python, "-c", RAW_CONNECT, broker.name, str(_tls_port(broker)), mode, _ca_file(broker), *headers]
    return broker.host.check_output(shlex.join(argv))


def _client(broker, passcode: str, command: str, destination: str, *args: str):
    url = f"ssl://{broker.name}:{_tls_port(broker)}?sslCaFile={_ca_file(broker)}"
    argv = [broker.cli, command, url, destination, "--login", LOGIN, *args]
    # The passcode reaches the client through its environment, as in the drill.
    return broker.host.run(f"HAMQ_PASSCODE={shlex.quote(passcode)} {shlex.join(argv)}")


def _summary(result) -> dict:
    lines = result.stdout.strip().splitlines()
    assert lines, f"no summary line: rc={result.rc} {result.stderr}"
    return json.loads(lines[-1])


def test_authentication_is_on_without_anonymous_access(secured):
    plugin = secured.config.find("plugins/simpleAuthenticationPlugin")
    assert plugin is not None, "no simpleAuthenticationPlugin in broker.xml"
    assert plugin.get("anonymousAccessAllowed") == "false", plugin.attrib
    assert secured.config.find("plugins/authorizationPlugin") is not None, (
        "no authorizationPlugin in broker.xml"
    )


def test_master_serves_stomp_only_over_tls(secured):
    assert secured.connector_port("stomp") is None, "a plain-text stomp connector is configured"
    port = _tls_port(secured)
    assert any(p == port for _, p, _ in secured.tcp_listeners()), f"master does not listen on {port}"


def test_plain_text_connect_to_the_tls_port_is_refused(secured, passcode):
    answer = _raw_connect(secured, "plain", f"login:{LOGIN}", f"passcode:{passcode}")
    assert answer != "CONNECTED", "a plain-text CONNECT was accepted on the TLS port"


def test_tls_connect_without_login_is_refused(secured):
    assert _raw_connect(secured, "tls") == "ERROR"


def test_tls_connect_with_a_wrong_passcode_is_refused(secured):
    assert _raw_connect(secured, "tls", f"login:{LOGIN}", "passcode:not-the-passcode") == "ERROR"


def test_tls_connect_with_the_lab_user_is_accepted(secured, passcode):
    assert _raw_connect(secured, "tls", f"login:{LOGIN}", f"passcode:{passcode}") == "CONNECTED"


def test_lab_user_sends_and_receives_over_tls(secured, passcode):
    queue = f"/queue/hamq.verify.{uuid.uuid4().hex[:8]}"
    produced = _summary(_client(secured, passcode, "produce", queue, "--count", "3", "--persistent"))
    assert produced["receipted"] == 3 and produced["error"] is None, produced
    consumed = _client(
        secured, passcode, "consume", queue, "--count", "3", "--expect", "3", "--timeout", "10"
    )
    summary = _summary(consumed)
    assert summary["received"] == 3 and summary["missing"] == 0, summary


def test_destination_outside_the_authorization_entry_is_denied(secured, passcode):
    result = _client(
        secured, passcode, "produce", "/queue/lab.not-authorized", "--count", "1", "--persistent"
    )
    assert result.rc != 0, result.stdout
    assert "not authorized" in (result.stdout + result.stderr), result.stdout + result.stderr
