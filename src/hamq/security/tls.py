"""TLS for ``stomp+ssl://`` connectors: an ``ssl.SSLContext`` that refuses anything older than TLS 1.2."""

from __future__ import annotations

import ssl
from typing import Optional

from hamq.security.model import TLSConfig


class TLSSetupError(Exception):
    """The certificate, key or CA file cannot be used; ``str()`` names the file and the fix."""


def server_context(tls: TLSConfig, need_client_auth: bool = False) -> ssl.SSLContext:
    """The server side: our certificate and key, and the CA that signs client certificates.

    With a CA file but ``needClientAuth=false`` a client certificate is optional
    but verified when sent; with ``needClientAuth=true`` a client without a
    certificate signed by that CA fails the handshake.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    try:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise TLSSetupError(
            f"cannot load the TLS certificate {tls.cert_file} with key {tls.key_file}: {_reason(exc)}. "
            "Fix: give a PEM certificate (chain) and its matching unencrypted PEM private key, "
            "readable by the broker user") from None
    if tls.ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(tls.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise TLSSetupError(f"cannot load the client CA file {tls.ca_file}: {_reason(exc)}. "
                                "Fix: give the PEM certificate(s) of the CA that signs client certificates") from None
        context.verify_mode = ssl.CERT_REQUIRED if need_client_auth else ssl.CERT_OPTIONAL
    elif need_client_auth:
        raise TLSSetupError("needClientAuth=true but <sslContext> has no caFile to verify client certificates "
                            "with. Fix: add caFile=\"/etc/hamq/tls/ca.pem\" to <sslContext>")
    return context


def client_context(ca_file: Optional[str], cert_file: Optional[str] = None, key_file: Optional[str] = None,
                   check_hostname: bool = True) -> ssl.SSLContext:
    """A client context with the same TLS 1.2 floor (tests and tools)."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = check_hostname
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ssl.SSLError):
        return exc.strerror
    return getattr(exc, "reason", None) or str(exc)
