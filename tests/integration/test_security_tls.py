"""stomp+ssl:// connectors on a real broker, with a throwaway CA made by the openssl CLI."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from hamq.client.failover import FailoverClient
from hamq.security.tls import client_context

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="the openssl command is needed to make test certificates")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca.pem, broker.pem/key (localhost, 127.0.0.1) and client.pem/key, all signed by the CA."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=hamq test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    (d / "broker.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("broker", "client"):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
        (d / f"{name}.key").chmod(0o600)
    return d


def tls_broker(factory, pki: Path, node: str, kahadb: Path, need_client_auth: bool):
    ssl_context = (f'<sslContext certFile="{pki / "broker.pem"}" keyFile="{pki / "broker.key"}" '
                   f'caFile="{pki / "ca.pem"}"/>')
    render = factory.render_xml

    def render_tls(*args, **kwargs):
        return render(*args, **kwargs).replace("stomp://", "stomp+ssl://")

    factory.render_xml = render_tls
    try:
        return factory(node_name=node, kahadb_dir=kahadb, extra=ssl_context,
                       connector_options=f"needClientAuth={str(need_client_auth).lower()}")
    finally:
        factory.render_xml = render


@pytest.fixture(scope="module")
def mutual(module_broker_factory, pki, tmp_path_factory):
    return tls_broker(module_broker_factory, pki, "mutual", tmp_path_factory.mktemp("mutual"), True)


def stomp_over_tls(port: int, context: ssl.SSLContext) -> bytes:
    """CONNECT over TLS; returns what came back before the first NUL (b'' if the broker closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
            data = b""
            while b"\0" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data


def test_client_with_certificate_connects(mutual, pki):
    ctx = client_context(str(pki / "ca.pem"), str(pki / "client.pem"), str(pki / "client.key"))
    assert stomp_over_tls(mutual.stomp_port, ctx).startswith(b"CONNECTED\n")


def test_client_without_certificate_is_refused(mutual, pki):
    ctx = client_context(str(pki / "ca.pem"))
    try:
        answer = stomp_over_tls(mutual.stomp_port, ctx)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        answer = b""  # TLS 1.2 fails in the handshake, TLS 1.3 on the first read
    assert b"CONNECTED" not in answer


def test_client_that_does_not_trust_the_broker_is_refused(mutual, pki):
    ctx = client_context(None, str(pki / "client.pem"), str(pki / "client.key"))  # system CAs only
    with pytest.raises(ssl.SSLCertVerificationError):
        stomp_over_tls(mutual.stomp_port, ctx)


def test_plain_text_connect_to_a_tls_port_gets_no_stomp_and_the_broker_keeps_serving(mutual, pki):
    with socket.create_connection(("127.0.0.1", mutual.stomp_port), timeout=15) as sock:
        sock.sendall(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
        received = b""
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
        except ConnectionResetError:
            pass
    assert b"CONNECTED" not in received  # closed, at most with a TLS alert
    ctx = client_context(str(pki / "ca.pem"), str(pki / "client.pem"), str(pki / "client.key"))
    assert stomp_over_tls(mutual.stomp_port, ctx).startswith(b"CONNECTED\n")


def test_failover_client_over_ssl_with_ca_and_client_certificate(mutual, pki):
    inner = (f"ssl://localhost:{mutual.stomp_port}?sslCaFile={pki / 'ca.pem'}&sslCertFile={pki / 'client.pem'}"
             f"&sslKeyFile={pki / 'client.key'}")
    client = FailoverClient(f"failover:({inner})?startupMaxReconnectAttempts=0").connect()
    try:
        sub = client.subscribe("/queue/tls.test")
        client.send("/queue/tls.test", b"over tls")
        message = client.receive(timeout=15)
        assert message is not None and message.body == b"over tls"
        sub.unsubscribe()
    finally:
        client.close()


def test_client_certificate_is_optional_without_need_client_auth(hamq_broker, pki, tmp_path):
    broker = tls_broker(hamq_broker, pki, "optional", tmp_path / "optional", False)
    assert stomp_over_tls(broker.stomp_port, client_context(str(pki / "ca.pem"))).startswith(b"CONNECTED\n")


def test_server_context_refuses_tls_below_1_2_and_need_without_ca(pki):
    from hamq.security.model import TLSConfig
    from hamq.security.tls import TLSSetupError, server_context

    ctx = server_context(TLSConfig(pki / "broker.pem", pki / "broker.key", pki / "ca.pem"), need_client_auth=True)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2 and ctx.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(TLSSetupError, match="no caFile"):
        server_context(TLSConfig(pki / "broker.pem", pki / "broker.key"), need_client_auth=True)


def test_stalled_tls_handshake_is_closed_after_connect_attempt_timeout(hamq_broker, pki, tmp_path):
    render = hamq_broker.render_xml
    hamq_broker.render_xml = lambda *a, **k: render(*a, **k).replace("stomp://", "stomp+ssl://")
    try:
        broker = hamq_broker(node_name="stall", kahadb_dir=tmp_path / "stall",
                             extra=f'<sslContext certFile="{pki / "broker.pem"}" keyFile="{pki / "broker.key"}"/>',
                             connector_options="connectAttemptTimeout=500")
    finally:
        hamq_broker.render_xml = render
    with socket.create_connection(("127.0.0.1", broker.stomp_port), timeout=30) as sock:
        # a TCP connection that never starts the handshake (slowloris) is closed by the broker
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass
