"""Parse ActiveMQ-style ``failover:(uri,...)?options`` URLs and plain broker URIs.

Users copy these URLs from ActiveMQ documentation and existing deployments,
so the option names, defaults and meaning follow ActiveMQ's FailoverTransport
exactly. Anything we do not understand is an error rather than being ignored:
a silently dropped ``maxReconnectAttempts`` turns into a client that hangs.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import unquote

#: Inner schemes; every one of them speaks STOMP. ``ssl`` ones add TLS.
SCHEMES = {"tcp": False, "stomp": False, "ssl": True, "stomp+ssl": True}
DEFAULT_PORTS = {"stomp": 61613, "stomp+ssl": 61612}


class FailoverURLError(ValueError):
    """A broker URL that cannot be used; the message names the problem and its fix."""


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ValueError("use true or false")


def _parse_int(value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError("use a whole number") from None


def _parse_float(value: str) -> float:
    try:
        result = float(value.strip())
    except ValueError:
        raise ValueError("use a number") from None
    if result != result or result in (float("inf"), float("-inf")):
        raise ValueError("use a finite number")
    return result


def _parse_text(value: str) -> str:
    if not value:
        raise ValueError("use a non-empty value")
    return value


@dataclass(frozen=True)
class _Option:
    attr: str
    parse: Callable[[str], object]
    check: Optional[Callable[[object], Optional[str]]] = None


def _at_least(minimum: float) -> Callable[[object], Optional[str]]:
    return lambda v: None if v >= minimum else f"must be >= {minimum:g}"  # type: ignore[operator]


def _attempts(v: object) -> Optional[str]:
    return None if v >= -1 else "must be -1 (retry forever), 0 (no retry) or a positive count"  # type: ignore[operator]


def _timeout(v: object) -> Optional[str]:
    return None if v == -1 or v >= 0 else "must be -1 (wait forever) or a number of milliseconds"  # type: ignore[operator]


#: ``failover:`` options: URL name -> how to read it. Defaults live on FailoverOptions.
FAILOVER_OPTIONS: Dict[str, _Option] = {
    "initialReconnectDelay": _Option("initial_reconnect_delay", _parse_int, _at_least(0)),
    "maxReconnectDelay": _Option("max_reconnect_delay", _parse_int, _at_least(0)),
    "useExponentialBackOff": _Option("use_exponential_back_off", _parse_bool),
    "reconnectDelayExponent": _Option("reconnect_delay_exponent", _parse_float, _at_least(1)),
    "maxReconnectAttempts": _Option("max_reconnect_attempts", _parse_int, _attempts),
    "startupMaxReconnectAttempts": _Option("startup_max_reconnect_attempts", _parse_int, _attempts),
    "randomize": _Option("randomize", _parse_bool),
    "timeout": _Option("timeout", _parse_int, _timeout),
}

#: Options of one broker URI (also reachable as ``nested.<name>`` on a failover URL).
#: The TLS ones only matter for ``ssl://`` and ``stomp+ssl://``.
BROKER_OPTIONS: Dict[str, _Option] = {
    "connectionTimeout": _Option("connection_timeout", _parse_int, _at_least(0)),
    "sslCaFile": _Option("ssl_ca_file", _parse_text),
    "sslCertFile": _Option("ssl_cert_file", _parse_text),
    "sslKeyFile": _Option("ssl_key_file", _parse_text),
    "verifyHostName": _Option("verify_host_name", _parse_bool),
}


@dataclass(frozen=True)
class FailoverOptions:
    """ActiveMQ FailoverTransport options; times are milliseconds, -1 means unlimited."""

    initial_reconnect_delay: int = 10
    max_reconnect_delay: int = 30000
    use_exponential_back_off: bool = True
    reconnect_delay_exponent: float = 2.0
    max_reconnect_attempts: int = -1
    startup_max_reconnect_attempts: int = -1
    randomize: bool = True
    timeout: int = -1


@dataclass(frozen=True)
class BrokerURI:
    """One broker to try: where it is and how to talk to it."""

    scheme: str
    host: str
    port: int
    connection_timeout: int = 30000
    ssl_ca_file: Optional[str] = None
    ssl_cert_file: Optional[str] = None
    ssl_key_file: Optional[str] = None
    verify_host_name: bool = True

    @property
    def tls(self) -> bool:
        return SCHEMES[self.scheme]

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class FailoverURL:
    """A parsed URL: the brokers in order and the reconnect policy."""

    brokers: Tuple[BrokerURI, ...]
    options: FailoverOptions = field(default_factory=FailoverOptions)
    is_failover: bool = True
    text: str = ""

    def __str__(self) -> str:
        return self.text or ",".join(str(b) for b in self.brokers)


def _suggest(name: str, known: List[str]) -> str:
    """The fix for an unknown option name: the closest known one, else the list."""
    by_lower = {k.lower(): k for k in known}
    if name.lower() in by_lower:
        return f"write {by_lower[name.lower()]!r} (option names are case-sensitive)"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}? Otherwise remove it"
    return f"use one of {', '.join(sorted(known))} or remove it"


_EXAMPLES = {_parse_bool: "true", _parse_int: "1000", _parse_float: "2.0", _parse_text: "/path/to/file"}

#: Names people bring from the Java API or other clients, and the URL option they mean.
_MISNAMED = {
    "backOffMultiplier": "reconnectDelayExponent",
    "maxReconnectAttempt": "maxReconnectAttempts",
    "reconnectDelay": "initialReconnectDelay",
}


def _split_query(query: str, where: str) -> List[Tuple[str, str]]:
    pairs = []
    if not query:
        return pairs
    for part in query.split("&"):
        if not part:
            continue
        if "=" not in part:
            raise FailoverURLError(
                f"option {part!r} in {where} has no value. Fix: write it as {part}=<value>"
            )
        key, value = part.split("=", 1)
        pairs.append((unquote(key), unquote(value)))
    return pairs


def _apply(table: Dict[str, _Option], pairs: List[Tuple[str, str]], where: str, extra_known=()) -> dict:
    values: dict = {}
    known = list(table) + list(extra_known)
    for key, raw in pairs:
        option = table.get(key)
        if option is None and key in _MISNAMED and _MISNAMED[key] in table:
            raise FailoverURLError(
                f"unknown option {key!r} in {where}. Fix: the URL option is {_MISNAMED[key]!r}"
            )
        if option is None:
            raise FailoverURLError(f"unknown option {key!r} in {where}. Fix: {_suggest(key, known)}")
        try:
            value = option.parse(raw)
        except ValueError as exc:
            raise FailoverURLError(
                f"bad value {raw!r} for option {key!r} in {where}. Fix: {exc}, e.g. {key}={_EXAMPLES[option.parse]}"
            ) from None
        if option.check is not None:
            problem = option.check(value)
            if problem:
                raise FailoverURLError(
                    f"bad value {raw!r} for option {key!r} in {where}. Fix: {key} {problem}"
                )
        values[option.attr] = value
    return values


def parse_broker_uri(text: str, nested: Optional[List[Tuple[str, str]]] = None) -> BrokerURI:
    """Parse ``scheme://host:port?opts``; ``nested`` options override the URI's own."""
    where = repr(text)
    if "://" not in text:
        raise FailoverURLError(
            f"{where} is not a broker URI. Fix: write it as tcp://HOST:PORT (schemes: {', '.join(SCHEMES)})"
        )
    scheme, rest = text.split("://", 1)
    scheme = scheme.strip().lower()
    if scheme not in SCHEMES:
        close = difflib.get_close_matches(scheme, list(SCHEMES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise FailoverURLError(
            f"unsupported scheme {scheme!r} in {where}{hint}. Fix: use one of {', '.join(SCHEMES)}; "
            f"all of them speak STOMP"
        )
    rest, _, query = rest.partition("?")
    rest = rest.rstrip("/")
    if "/" in rest:
        raise FailoverURLError(
            f"{where} has a path; broker URIs have none. Fix: remove everything after host:port"
        )
    if "@" in rest:
        raise FailoverURLError(
            f"{where} carries user information. Fix: pass login and passcode separately, not in the URI"
        )
    if rest.startswith("["):
        host, bracket, after = rest[1:].partition("]")
        if not bracket:
            raise FailoverURLError(f"{where} has an unclosed '[' around an IPv6 address. Fix: add the ']'")
        port_text = after[1:] if after.startswith(":") else ("" if not after else None)
        if port_text is None:
            raise FailoverURLError(
                f"{where}: expected ':PORT' after the IPv6 address. Fix: write [addr]:PORT"
            )
    else:
        host, colon, port_text = rest.partition(":")
        if ":" in port_text:
            raise FailoverURLError(
                f"{where}: too many ':' in host:port. Fix: put an IPv6 address in brackets, e.g. tcp://[::1]:61613"
            )
    if not host:
        raise FailoverURLError(f"{where} has no host. Fix: write it as {scheme}://HOST:PORT")
    if port_text:
        if (
            not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5)
            or not 0 < int(port_text) < 65536
        ):
            raise FailoverURLError(f"{where} has port {port_text!r}. Fix: use a port number from 1 to 65535")
        port = int(port_text)
    elif scheme in DEFAULT_PORTS:
        port = DEFAULT_PORTS[scheme]
    else:
        raise FailoverURLError(
            f"{where} has no port. Fix: write it as {scheme}://{host}:PORT (the STOMP port, e.g. 61613)"
        )
    own = _split_query(query, where)
    values = _apply(BROKER_OPTIONS, own, where)
    if nested:
        values.update(_apply(BROKER_OPTIONS, nested, "the nested.* options"))
    broker = BrokerURI(scheme=scheme, host=host, port=port)
    return replace(broker, **values)


def _split_uris(inner: str, where: str) -> List[str]:
    parts = [p.strip() for p in inner.split(",")]
    if any(not p for p in parts):
        raise FailoverURLError(f"empty broker URI in {where}. Fix: remove the stray ','")
    return parts


def parse_url(text: str) -> FailoverURL:
    """Parse a ``failover:`` URL or a single broker URI into a :class:`FailoverURL`."""
    if not isinstance(text, str) or not text.strip():
        raise FailoverURLError(
            "empty broker URL. Fix: give failover:(tcp://HOST:PORT,...) or tcp://HOST:PORT"
        )
    text = text.strip()
    where = repr(text)
    scheme = text.split(":", 1)[0].lower()
    if scheme != "failover" and scheme not in SCHEMES:
        close = difflib.get_close_matches(scheme, ["failover"] + list(SCHEMES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise FailoverURLError(
            f"unsupported scheme {scheme!r} in {where}{hint}. "
            f"Fix: give failover:(tcp://HOST:PORT,...) or one of {', '.join(s + '://HOST:PORT' for s in SCHEMES)}"
        )
    if scheme != "failover":
        broker = parse_broker_uri(text)
        return FailoverURL(brokers=(broker,), is_failover=False, text=text)
    body = text.partition(":")[2]
    if body.startswith("//"):
        body = body[2:]
    if body.startswith("("):
        close_at = body.find(")")
        if close_at == -1:
            raise FailoverURLError(f"{where} has an unclosed '('. Fix: end the broker list with ')'")
        inner, after = body[1:close_at], body[close_at + 1 :]
        if after and not after.startswith("?"):
            raise FailoverURLError(
                f"unexpected {after[:20]!r} after ')' in {where}. Fix: options follow the list as ')?name=value&...'"
            )
        query = after[1:]
    else:
        if ")" in body:
            raise FailoverURLError(f"{where} has a ')' without '('. Fix: write failover:(uri1,uri2)?options")
        # failover:tcp://a:1?opts -- ActiveMQ accepts one URI without parentheses;
        # its query belongs to the failover transport.
        inner, _, query = body.partition("?")
    if not inner.strip():
        raise FailoverURLError(f"{where} lists no brokers. Fix: write failover:(tcp://HOST:PORT,...)")
    pairs = _split_query(query, where)
    nested = [(k[len("nested.") :], v) for k, v in pairs if k.startswith("nested.")]
    own = [(k, v) for k, v in pairs if not k.startswith("nested.")]
    options = FailoverOptions(**_apply(FAILOVER_OPTIONS, own, where, extra_known=["nested.*"]))
    brokers = tuple(parse_broker_uri(uri, nested) for uri in _split_uris(inner, where))
    return FailoverURL(brokers=brokers, options=options, is_failover=True, text=text)


def reconnect_delays(options: FailoverOptions):
    """Yield the sleep (seconds) after each failed pass over the broker list.

    Mirrors FailoverTransport.doReconnect: the first pass happens at once; after
    a pass in which every broker failed the client sleeps the current delay, and
    with exponential back-off multiplies it by ``reconnectDelayExponent`` up to
    ``maxReconnectDelay``.
    """
    delay = float(options.initial_reconnect_delay)
    cap = float(options.max_reconnect_delay)
    while True:
        yield min(delay, cap) / 1000.0
        if options.use_exponential_back_off:
            delay = min(delay * options.reconnect_delay_exponent, cap)


def pass_limit(options: FailoverOptions, first_connection: bool) -> Optional[int]:
    """How many passes over the broker list before giving up; ``None`` is forever.

    Same rule as ActiveMQ: ``startupMaxReconnectAttempts`` applies until the
    first connection succeeded (unless it is -1), and 0 means one pass, no retry.
    """
    limit = options.max_reconnect_attempts
    if first_connection and options.startup_max_reconnect_attempts != -1:
        limit = options.startup_max_reconnect_attempts
    if limit == -1:
        return None
    return max(limit, 1)
