"""A tiny XML tree that remembers the line of every element.

``xml.etree`` drops line numbers, and an error without a line is useless in a
long broker.xml, so the tree is built with ``xml.parsers.expat`` directly.
The parser is hardened for a file that may come from anywhere: entity
declarations (billion laughs, external entities) are refused outright, the
file size and nesting depth are capped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from xml.parsers import expat

from hamq.config.errors import ConfigError

#: A broker.xml is a few KiB; anything far larger is not a broker config.
MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 32

#: Separator between namespace URI and local name in expat's names.
_NS_SEP = "\x01"


@dataclass
class Element:
    """One XML element: local name, namespace, attributes, children, line."""

    tag: str
    namespace: str
    line: int
    attributes: Dict[str, str] = field(default_factory=dict)
    #: Namespaced attributes (``xsi:schemaLocation`` ...) as (namespace, name).
    foreign_attributes: Dict[Tuple[str, str], str] = field(default_factory=dict)
    children: List["Element"] = field(default_factory=list)
    #: Non-whitespace character data found directly inside, with its line.
    text: List[Tuple[int, str]] = field(default_factory=list)


def _split(name: str) -> Tuple[str, str]:
    if _NS_SEP in name:
        ns, local = name.split(_NS_SEP, 1)
        return ns, local
    return "", name


def parse_bytes(data: bytes, path: str) -> Element:
    """Parse ``data`` into an :class:`Element` tree or raise :class:`ConfigError`."""
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            path,
            None,
            f"the file is {len(data)} bytes, larger than the {MAX_FILE_BYTES} byte limit for a broker config",
            "check that the right file is given; a broker.xml is a few KiB",
        )
    parser = expat.ParserCreate(namespace_separator=_NS_SEP)
    stack: List[Element] = []
    root: List[Element] = []

    def start(name: str, attrs: Dict[str, str]) -> None:
        line = parser.CurrentLineNumber
        if len(stack) >= MAX_DEPTH:
            raise ConfigError(
                path, line, f"elements are nested more than {MAX_DEPTH} deep", "flatten the file"
            )
        ns, local = _split(name)
        element = Element(tag=local, namespace=ns, line=line)
        for key, value in attrs.items():
            ans, alocal = _split(key)
            if ans:
                element.foreign_attributes[(ans, alocal)] = value
            else:
                element.attributes[alocal] = value
        if stack:
            stack[-1].children.append(element)
        else:
            root.append(element)
        stack.append(element)

    def end(name: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        if stack and data.strip():
            stack[-1].text.append((parser.CurrentLineNumber, data.strip()))

    def refuse_entity(*args) -> None:
        raise ConfigError(
            path,
            parser.CurrentLineNumber,
            "the file declares an XML entity, which broker.xml does not allow",
            "remove the <!ENTITY ...> declaration and write the value in place",
        )

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.EntityDeclHandler = refuse_entity
    parser.UnparsedEntityDeclHandler = refuse_entity
    # Never fetch or expand an external DTD.
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(data, True)
    except ConfigError:
        raise
    except expat.ExpatError as exc:
        raise ConfigError(
            path,
            exc.lineno,
            f"malformed XML: {expat.ErrorString(exc.code)} (column {exc.offset + 1})",
            "correct the XML syntax at that place (check quotes, closing tags and '&' written as '&amp;')",
        ) from None
    except (LookupError, ValueError) as exc:
        # <?xml encoding="..."?> naming an encoding Python does not know, or a
        # multi-byte one expat cannot use.
        raise ConfigError(
            path,
            1,
            f"the XML declaration names an encoding that cannot be read ({exc})",
            'write the file in UTF-8 and declare <?xml version="1.0" encoding="UTF-8"?>',
        ) from None
    except RecursionError:  # pragma: no cover - depth is capped above
        raise ConfigError(path, None, "the XML is nested too deeply", "flatten the file") from None
    if not root:  # pragma: no cover - expat reports "no element found" first
        raise ConfigError(path, 1, "the file has no XML element", "write a <broker> element")
    return root[0]


def read_tree(path: Path) -> Element:
    """Read and parse ``path``; an unreadable file is a :class:`ConfigError` too."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            path, None, "the config file does not exist", "give the path of an existing broker.xml"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            path, None, "the config path is a directory", "give the path of the broker.xml file itself"
        ) from None
    except PermissionError:
        raise ConfigError(
            path,
            None,
            "the config file cannot be read by the current user",
            "make it readable by the broker user (e.g. chown root:hamq and chmod 0640)",
        ) from None
    except OSError as exc:
        raise ConfigError(
            path, None, f"the config file cannot be read: {exc.strerror}", "check the path"
        ) from None
    return parse_bytes(data, str(path))


def find_text(element: Element) -> Optional[Tuple[int, str]]:
    """The first stray text inside ``element``, if any."""
    return element.text[0] if element.text else None
