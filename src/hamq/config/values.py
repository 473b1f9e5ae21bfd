"""Typed values in broker.xml: integers, booleans, sizes, enums and URIs.

Each parser raises :class:`ValueProblem` carrying the problem and the fix;
the loader adds the file and line, so this module stays free of XML.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Tuple
from urllib.parse import parse_qsl

INT32_MAX = 2**31 - 1


class ValueProblem(ValueError):
    """A bad value: ``problem`` and ``fix``, without a location yet."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


def closest(name: str, known: Iterable[str]) -> Optional[str]:
    """The known name ``name`` was most likely meant to be, or None."""
    known = list(known)
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if match:
        return match[0]
    lowered = {k.lower(): k for k in known}
    return lowered.get(name.lower())


_INT_RE = re.compile(r"^[+-]?[0-9]+$")


def parse_int(name: str, text: str, minimum: int = 0, maximum: int = INT32_MAX, unit: str = "") -> int:
    """A decimal integer within ``[minimum, maximum]``."""
    value = text.strip()
    suffix = f" {unit}" if unit else ""
    if not _INT_RE.match(value) or len(value) > 20:
        raise ValueProblem(
            f'{name}="{text}" is not a whole number{suffix}',
            f'write a decimal integer such as {name}="{max(minimum, 0) or 1000}"',
        )
    number = int(value)
    if number < minimum or number > maximum:
        raise ValueProblem(
            f'{name}="{text}" is out of range',
            f"use a value from {minimum} to {maximum}{suffix}",
        )
    return number


def parse_bool(name: str, text: str) -> bool:
    """``true`` or ``false`` (any case), as Spring writes them."""
    value = text.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    raise ValueProblem(f'{name}="{text}" is not a boolean', f'write {name}="true" or {name}="false"')


def parse_enum(name: str, text: str, choices: Tuple[str, ...]) -> str:
    """One of ``choices`` (any case, as ActiveMQ accepts ``ALWAYS``); returned lower-case."""
    value = text.strip().lower()
    if value in choices:
        return value
    hint = closest(value, choices)
    did = f' (did you mean "{hint}"?)' if hint else ""
    raise ValueProblem(
        f'{name}="{text}" is not one of {", ".join(choices)}{did}',
        f"write one of: {', '.join(choices)}",
    )


_SIZE_RE = re.compile(r"^([0-9]{1,15})\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(name: str, text: str, minimum: int = 1, maximum: int = INT32_MAX) -> int:
    """A byte size such as ``32mb``, ``512 kb``, ``1gb`` or ``1048576`` (units are powers of 1024)."""
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise ValueProblem(
            f'{name}="{text}" is not a size',
            f'write a number of bytes with an optional unit b, kb, mb or gb, e.g. {name}="32mb"',
        )
    unit = (m.group(2) or "").lower()[:1]
    number = int(m.group(1)) * _SIZE_FACTORS[unit]
    if number < minimum or number > maximum:
        raise ValueProblem(
            f'{name}="{text}" is out of range ({number} bytes)',
            f"use a size from {minimum} to {maximum} bytes",
        )
    return number


@dataclass
class ParsedURI:
    scheme: str
    host: str
    port: int
    options: Dict[str, str]


_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,252})?$")


def parse_uri(name: str, text: str, schemes: Dict[str, str], example: str) -> ParsedURI:
    """``scheme://host:port?opts`` with ``scheme`` a key of ``schemes``.

    ``schemes`` maps each accepted scheme to its normalised form
    (``stomp+nio`` -> ``stomp``), so callers only see a few values.
    """
    raw = text.strip()
    if "://" not in raw:
        raise ValueProblem(f'{name}="{text}" is not a URI', f'write it as {name}="{example}"')
    scheme, rest = raw.split("://", 1)
    scheme_l = scheme.lower()
    if scheme_l not in schemes:
        if scheme_l in ("tcp", "nio", "ssl", "nio+ssl", "auto", "auto+nio", "auto+ssl", "auto+nio+ssl"):
            problem = (
                f'{name}="{text}" uses scheme "{scheme}", which is ActiveMQ\'s OpenWire protocol; '
                "hamq speaks only STOMP"
            )
        else:
            problem = f'{name}="{text}" uses scheme "{scheme}", which hamq does not support'
        accepted = ", ".join(f"{s}://" for s in schemes)
        raise ValueProblem(problem, f"use one of {accepted}, e.g. {example}")
    netloc, sep, query = rest.partition("?")
    if "#" in query or "#" in netloc:
        raise ValueProblem(f'{name}="{text}" contains a "#" fragment', f"remove it: {example}")
    if netloc.endswith("/"):
        netloc = netloc[:-1]
    if "/" in netloc:
        raise ValueProblem(
            f'{name}="{text}" has a path after the port', f"write only host and port, e.g. {example}"
        )
    if "@" in netloc:
        raise ValueProblem(
            f'{name}="{text}" contains user information', f"remove the user@ part, e.g. {example}"
        )
    host, port_text = _split_host_port(name, text, netloc, example)
    if not port_text.isdigit() or not port_text.isascii() or len(port_text) > 5:
        raise ValueProblem(
            f'{name}="{text}" has port "{port_text}", which is not a number', f"write a port, e.g. {example}"
        )
    port = int(port_text)
    if port > 65535:
        raise ValueProblem(f'{name}="{text}" has port {port}, out of range', "use a port from 1 to 65535")
    options: Dict[str, str] = {}
    if sep and query:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise ValueProblem(
                f'{name}="{text}" has a malformed query string "{query}"',
                "write options as ?key=value&key2=value2",
            ) from None
        for key, value in pairs:
            if key in options:
                raise ValueProblem(
                    f'{name}="{text}" sets option "{key}" twice', "keep one of the two settings"
                )
            options[key] = value
    return ParsedURI(scheme=schemes[scheme_l], host=host, port=port, options=options)


def _split_host_port(name: str, text: str, netloc: str, example: str) -> Tuple[str, str]:
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0 or not netloc[end + 1 : end + 2] == ":":
            raise ValueProblem(
                f'{name}="{text}" has a malformed IPv6 address or no port',
                "write an IPv6 host as [::1]:61613",
            )
        host, port_text = netloc[1:end], netloc[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueProblem(
                f'{name}="{text}" has "{host}", which is not an IPv6 address', "write e.g. [::1]:61613"
            ) from None
        return host, port_text
    if ":" not in netloc:
        raise ValueProblem(f'{name}="{text}" has no port', f"add the port, e.g. {example}")
    host, port_text = netloc.rsplit(":", 1)
    if not _HOSTNAME_RE.match(host) or ".." in host:
        raise ValueProblem(
            f'{name}="{text}" has host "{host}", which is not a host name or IP address',
            f"write e.g. {example} (0.0.0.0 listens on all addresses)",
        )
    return host, port_text
