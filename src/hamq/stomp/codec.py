"""STOMP 1.0-1.2 frame codec: bytes in, frames out, and back.

Sans-IO in the style of h11: the decoder is fed whatever bytes arrived and
hands back complete frames; it never touches a socket. The broker and the
failover client share it, so there is exactly one parser to harden.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Tuple, Union

SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2")

#: Frames whose headers are never escaped, whatever the version (STOMP 1.1+ spec).
_UNESCAPED_COMMANDS = frozenset({"CONNECT", "STOMP", "CONNECTED"})

CLIENT_COMMANDS = frozenset(
    {
        "CONNECT",
        "STOMP",
        "SEND",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "ACK",
        "NACK",
        "BEGIN",
        "COMMIT",
        "ABORT",
        "DISCONNECT",
    }
)
SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})

DEFAULT_MAX_FRAME_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_HEADERS = 1000
DEFAULT_MAX_HEADER_LENGTH = 64 * 1024


class ProtocolError(Exception):
    """A peer sent bytes that are not a valid STOMP frame.

    ``fatal`` tells the connection layer that the stream can no longer be
    framed reliably, so the connection must be closed after the ERROR frame.
    """

    def __init__(self, message: str, fatal: bool = True, receipt: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.fatal = fatal
        self.receipt = receipt


class HeartBeat:
    """An end-of-line received between frames: the peer is alive."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "HeartBeat()"


HEARTBEAT = HeartBeat()


@dataclass
class Frame:
    """One STOMP frame. Headers keep wire order; the first occurrence wins."""

    command: str
    headers: List[Tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def build(cls, command: str, headers: Optional[dict] = None, body: bytes = b"") -> "Frame":
        return cls(command, [(k, str(v)) for k, v in (headers or {}).items()], body)

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def __contains__(self, name: str) -> bool:
        return any(key == name for key, _ in self.headers)

    def set(self, name: str, value: str) -> None:
        """Replace every occurrence of ``name`` with one header."""
        self.headers = [(k, v) for k, v in self.headers if k != name]
        self.headers.append((name, str(value)))

    def remove(self, name: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k != name]

    def header_dict(self) -> dict:
        """Headers as a dict where the first occurrence wins (STOMP 1.2 rule)."""
        result: dict = {}
        for key, value in self.headers:
            result.setdefault(key, value)
        return result


Event = Union[Frame, HeartBeat]

_ESCAPE_12 = {"\\": "\\\\", "\n": "\\n", ":": "\\c", "\r": "\\r"}
_UNESCAPE_11 = {"\\\\": "\\", "\\n": "\n", "\\c": ":"}
_UNESCAPE_12 = dict(_UNESCAPE_11, **{"\\r": "\r"})


#: What STOMP 1.0 cannot carry in a header, and what goes on the wire instead (see escape_header).
_SUBSTITUTES_10 = {"\n": "\\n", "\r": ""}


def escape_header(value: str, version: str) -> str:
    """Escape one header key or value for ``version``; never fails, so no frame is lost to its encoding.

    1.2 escapes everything. 1.1 has no escape for CR and 1.0 has no escapes at
    all, yet a 1.2 producer may send a value holding LF or CR and a 1.0/1.1
    consumer must still get the message (raw, they would break the frame): a
    1.0 value gets LF as the two characters ``\\n``, and CR is dropped for both
    (so ``a\\r\\nb`` reads as one line break, as in 1.1). Documented in
    docs/internals.md.
    """
    if version == "1.0":
        if "\n" in value or "\r" in value:
            return "".join([_SUBSTITUTES_10.get(ch, ch) for ch in value])
        return value
    if "\\" not in value and "\n" not in value and ":" not in value and "\r" not in value:
        return value  # the common case, checked without a generator: this runs per header per frame
    table = _ESCAPE_12
    if version == "1.1":
        value = value.replace("\r", "")
    return "".join([table.get(ch, ch) for ch in value])


def unescape_header(raw: str, version: str) -> str:
    """Undo 1.1/1.2 escaping; an undefined escape sequence is a fatal error."""
    if version == "1.0" or "\\" not in raw:
        return raw
    table = _UNESCAPE_12 if version == "1.2" else _UNESCAPE_11
    out = []
    i = 0
    n = len(raw)
    while i < n:
        ch = raw[i]
        if ch == "\\":
            seq = raw[i : i + 2]
            if seq not in table:
                raise ProtocolError(f"undefined escape sequence {seq!r} in header")
            out.append(table[seq])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


#: Characters a header *name* cannot carry in a version without turning into another name.
_UNREPRESENTABLE_KEY_CHARS = {"1.0": ("\n", "\r", ":"), "1.1": ("\r",)}


def representable_key(key: str, version: str) -> bool:
    """Whether ``key`` reaches a ``version`` reader as the same name.

    A 1.2 producer may send the escaped name ``content-length\\r``; dropping
    the CR for a 1.1 reader would make it a second ``content-length`` ahead of
    the broker's own, and the reader would cut the body wrong. Values may be
    substituted (see escape_header); a name that cannot be carried is left out.
    """
    bad = _UNREPRESENTABLE_KEY_CHARS.get(version)
    return not bad or not any(ch in key for ch in bad)


def header_lines(headers, version: str) -> str:
    """``key:value\\n`` lines for ``version``, escaped, without the names it cannot carry."""
    return "".join(
        f"{escape_header(k, version)}:{escape_header(v, version)}\n"
        for k, v in headers
        if representable_key(k, version)
    )


def encode_frame(frame: Frame, version: str = "1.2") -> bytes:
    """Serialise ``frame``; adds ``content-length`` when the body holds a NUL byte."""
    escape = frame.command not in _UNESCAPED_COMMANDS
    lines = [frame.command]
    has_length = False
    for key, value in frame.headers:
        if escape and not representable_key(key, version):
            continue
        if key == "content-length":
            has_length = True
        if escape:
            lines.append(f"{escape_header(key, version)}:{escape_header(value, version)}")
        else:
            lines.append(f"{key}:{value}")
    if frame.body and not has_length and b"\x00" in frame.body:
        lines.append(f"content-length:{len(frame.body)}")
    head = ("\n".join(lines) + "\n\n").encode("utf-8")
    return head + frame.body + b"\x00"


def heartbeat_bytes() -> bytes:
    return b"\n"


class FrameDecoder:
    """Incremental STOMP decoder with size limits.

    ``version`` controls header unescaping; the connection switches it once
    CONNECT/CONNECTED has negotiated a version. Frames are parsed lazily in
    ``next_event`` so a version switch applies to every frame after CONNECT
    even when the client pipelined them in the same packet.
    """

    def __init__(
        self,
        version: str = "1.0",
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_headers: int = DEFAULT_MAX_HEADERS,
        max_header_length: int = DEFAULT_MAX_HEADER_LENGTH,
    ):
        self.version = version
        self.max_frame_size = max_frame_size
        self.max_headers = max_headers
        self.max_header_length = max_header_length
        self._buf = bytearray()
        self._pos = 0
        self._broken: Optional[ProtocolError] = None

    def feed(self, data: bytes) -> None:
        if self._broken is not None:
            return
        if self._pos > 65536 and self._pos > len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self.next_event()
            if event is None:
                return
            yield event

    def next_event(self) -> Optional[Event]:
        """Return the next frame or heart-beat, ``None`` if more bytes are needed.

        Raises :class:`ProtocolError`; after a fatal error the decoder stays broken.
        """
        if self._broken is not None:
            raise self._broken
        try:
            return self._next()
        except ProtocolError as exc:
            if exc.fatal:
                self._broken = exc
            raise

    def _next(self) -> Optional[Event]:
        buf = self._buf
        pos = self._pos
        end = len(buf)
        if pos >= end:
            return None
        # Heart-beats: bare EOLs between frames.
        first = buf[pos]
        if first == 0x0A:
            self._pos = pos + 1
            return HEARTBEAT
        if first == 0x0D:
            if end - pos < 2:
                return None
            if buf[pos + 1] == 0x0A:
                self._pos = pos + 2
                return HEARTBEAT
            raise ProtocolError("stray carriage return between frames")
        # Find the blank line that ends the header block.
        head_end = buf.find(b"\n\n", pos)
        # Look for a CRLF blank line only before the LF one: scanning the whole
        # buffer per frame is quadratic when a client pipelines many frames.
        head_end_crlf = buf.find(b"\n\r\n", pos, head_end + 2 if head_end != -1 else end)
        if head_end == -1 and head_end_crlf == -1:
            if end - pos > self.max_frame_size:
                raise ProtocolError(f"frame exceeds maxFrameSize ({self.max_frame_size} bytes)")
            if end - pos > self.max_header_length * (self.max_headers + 1):
                raise ProtocolError("frame header block is too large")
            return None
        if head_end == -1 or (head_end_crlf != -1 and head_end_crlf < head_end):
            body_start = head_end_crlf + 3
            head_end = head_end_crlf
        else:
            body_start = head_end + 2
        if head_end - pos > self.max_frame_size:
            raise ProtocolError(f"frame exceeds maxFrameSize ({self.max_frame_size} bytes)")
        try:
            head = buf[pos:head_end].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("frame headers are not valid UTF-8") from None
        lines = head.split("\n")
        command = lines[0].rstrip("\r")
        if not command or not command.isalpha() or not command.isupper():
            raise ProtocolError(f"malformed frame: bad command line {command[:40]!r}")
        if len(lines) - 1 > self.max_headers:
            raise ProtocolError(f"frame has more than {self.max_headers} headers")
        # Checked once per frame, not per header: most frames have no escapes and no CRs.
        escape = command not in _UNESCAPED_COMMANDS and self.version != "1.0" and "\\" in head
        has_cr = "\r" in head
        headers: List[Tuple[str, str]] = []
        content_length: Optional[int] = None
        for line in lines[1:]:
            if has_cr and line.endswith("\r"):
                line = line[:-1]
            if len(line) > self.max_header_length:
                raise ProtocolError(f"header longer than {self.max_header_length} bytes")
            colon = line.find(":")
            if colon <= 0:
                raise ProtocolError(f"malformed header line {line[:40]!r}")
            key = line[:colon]
            value = line[colon + 1 :]
            if escape:
                key = unescape_header(key, self.version)
                value = unescape_header(value, self.version)
            if key == "content-length" and content_length is None:
                digits = value.strip()
                # isdigit() alone accepts '²' and other digits int() refuses.
                if not (digits.isascii() and digits.isdigit()):
                    raise ProtocolError(f"invalid content-length {value[:20]!r}")
                # int() refuses over 4300 digits; anything over 19 is too big anyway.
                content_length = int(digits) if len(digits.lstrip("0")) <= 19 else self.max_frame_size + 1
                if content_length > self.max_frame_size:
                    raise ProtocolError(f"frame exceeds maxFrameSize ({self.max_frame_size} bytes)")
            headers.append((key, value))
        if content_length is not None:
            nul = body_start + content_length
            if end <= nul:
                if nul - pos > self.max_frame_size:
                    raise ProtocolError(f"frame exceeds maxFrameSize ({self.max_frame_size} bytes)")
                return None
            if buf[nul] != 0:
                raise ProtocolError("frame body is longer than its content-length")
        else:
            nul = buf.find(b"\x00", body_start)
            if nul == -1:
                if end - pos > self.max_frame_size:
                    raise ProtocolError(f"frame exceeds maxFrameSize ({self.max_frame_size} bytes)")
                return None
        if nul - pos > self.max_frame_size:
            raise ProtocolError(f"frame exceeds maxFrameSize ({self.max_frame_size} bytes)")
        body = bytes(buf[body_start:nul])
        self._pos = nul + 1
        return Frame(command, headers, body)
