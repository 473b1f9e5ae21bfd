"""Binary layout of segment headers, batch records and the operations inside a batch.

All integers are little-endian.  A segment file ``db-<N>.log`` is::

    segment header (64 bytes) | batch | batch | ...

A segment header names its predecessor and *seals* it: "segment P ends at
byte L, sealed by epoch E".  Recovery never reads a sealed segment past L.

A batch is one ``append()`` call, written with a single ``os.pwrite``::

    magic "HQB1" | payload length u32 | epoch u64 | lsn u64 | crc32 u32 | payload

The crc covers the first four header fields and the payload, so a torn or
bit-flipped batch is refused as a whole: all of its operations or none.

Each operation in the payload starts with a type byte.  An AddMessage also
carries its own crc32 so that ``read()`` can check a message that was covered
by a checkpoint and therefore not re-scanned at startup.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from typing import List, Mapping, NamedTuple, Optional, Tuple, Union

from hamq.store.errors import StoreError
from hamq.store.ops import Ack, AddMessage, DeleteKey, Headers, MarkDispatched, PutMeta, RememberId

crc32 = zlib.crc32
ENC = "utf-8"
ERRS = "surrogatepass"  # round-trips any Python str, including lone surrogates

# ---------------------------------------------------------------- segment header
SEGMENT_MAGIC = b"HAMQSEG1"
SEGMENT_HEADER = struct.Struct("<8sIiQQQ")  # magic, segment, prev segment, sealed length, epoch, first lsn
SEGMENT_HEADER_SIZE = 64  # fixed; the rest is zero padding then the crc in the last 4 bytes


class SegmentHeader(NamedTuple):
    segment: int
    prev_segment: int  # -1 for the very first segment
    sealed_length: int  # where prev_segment ends; bytes past it are ignored
    epoch: int  # the master epoch that created (and alone writes) this segment
    first_lsn: int  # lsn of the first batch in this segment


def pack_segment_header(h: SegmentHeader) -> bytes:
    body = SEGMENT_HEADER.pack(SEGMENT_MAGIC, h.segment, h.prev_segment, h.sealed_length, h.epoch, h.first_lsn)
    body = body.ljust(SEGMENT_HEADER_SIZE - 4, b"\0")
    return body + struct.pack("<I", crc32(body))


def unpack_segment_header(data: bytes) -> Optional[SegmentHeader]:
    """The header, or None when it is short, foreign or fails its checksum."""
    if len(data) < SEGMENT_HEADER_SIZE:
        return None
    body = data[: SEGMENT_HEADER_SIZE - 4]
    (crc,) = struct.unpack_from("<I", data, SEGMENT_HEADER_SIZE - 4)
    if crc != crc32(body):
        return None
    magic, seg, prev, sealed, epoch, first_lsn = SEGMENT_HEADER.unpack_from(body)
    if magic != SEGMENT_MAGIC:
        return None
    return SegmentHeader(seg, prev, sealed, epoch, first_lsn)


# ---------------------------------------------------------------- batch header
BATCH_MAGIC = b"HQB1"
BATCH_PREFIX = struct.Struct("<4sIQQ")  # magic, payload length, epoch, lsn
BATCH_PREFIX_SIZE = BATCH_PREFIX.size
BATCH_FIELDS = struct.Struct("<4sIQQI")  # the prefix plus the crc
BATCH_HEADER_SIZE = BATCH_FIELDS.size
_CRC = struct.Struct("<I")
MAX_BATCH_PAYLOAD = 0x7FFFFFFF


def pack_batch(payload: bytes, epoch: int, lsn: int) -> bytes:
    prefix = BATCH_PREFIX.pack(BATCH_MAGIC, len(payload), epoch, lsn)
    return b"".join((prefix, _CRC.pack(crc32(payload, crc32(prefix))), payload))


# ---------------------------------------------------------------- operations
T_ADD, T_ACK, T_MARK, T_META, T_DEL, T_DUP = 1, 2, 3, 4, 5, 6
ADD_FIXED = struct.Struct("<BIQHHII")  # type, crc, seq, key len, id len, headers len, body len
ADD_FIXED_SIZE = ADD_FIXED.size
ADD_TAIL = struct.Struct("<QHHII")  # the part of ADD_FIXED the record crc covers
ADD_TYPE_CRC = struct.Struct("<BI")
SEQ_KEY = struct.Struct("<BQH")  # ack / mark: type, seq, key len
META = struct.Struct("<BHI")  # type, key len, value len
DEL = struct.Struct("<BH")  # type, key len
DUP = struct.Struct("<BHH")  # type, scope len, duplicate id len
_U32 = struct.Struct("<I")


def _text(value: str, what: str, limit: int) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}; pass the text, not bytes or None")
    data = value.encode(ENC, ERRS)
    if len(data) > limit:
        raise ValueError(f"{what} is {len(data)} bytes, over the {limit}-byte limit; use a shorter {what}")
    return data


_LE = sys.byteorder == "little"


def encode_headers(headers: Union[Headers, Mapping[str, str]]) -> bytes:
    """``count u32 | char lengths u32[2*count] | utf-8 text``: one encode call for all headers."""
    items = headers.items() if isinstance(headers, dict) else headers
    flat: List[str] = []
    try:
        for name, value in items:
            flat.append(name)
            flat.append(value)
        text = "".join(flat).encode(ENC, ERRS)
    except (TypeError, ValueError, AttributeError):
        _explain_bad_headers(headers)
        raise
    lens = array("I", map(len, flat))
    if not _LE:
        lens.byteswap()
    return b"".join((_U32.pack(len(flat) // 2), lens.tobytes(), text))


def _explain_bad_headers(headers) -> None:
    if isinstance(headers, (str, bytes)) or not hasattr(headers, "__iter__"):
        raise TypeError(f"headers must be a list of (name, value) pairs or a dict, got {type(headers).__name__}")
    items = headers.items() if isinstance(headers, Mapping) else headers
    for pair in items:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"header {pair!r} is not a (name, value) pair; pass a list of 2-tuples or a dict")
        _text(pair[0], "header name", 0xFFFFFFFF)
        _text(pair[1], f"value of header {pair[0]!r}", 0xFFFFFFFF)


def decode_headers(data: bytes) -> Headers:
    (count,) = _U32.unpack_from(data)
    lens = array("I")
    lens.frombytes(data[4 : 4 + 8 * count])
    if not _LE:
        lens.byteswap()
    text = bytes(data[4 + 8 * count :]).decode(ENC, ERRS)
    out: Headers = []
    pos = 0
    it = iter(lens)
    for nlen in it:
        vlen = next(it)
        name = text[pos : pos + nlen]
        pos += nlen
        out.append((name, text[pos : pos + vlen]))
        pos += vlen
    if pos != len(text):
        raise ValueError("header lengths do not match the header text")
    return out


def encode_add(seq: int, op: AddMessage) -> bytes:
    key, mid, headers, body = op
    try:
        kb = key.encode(ENC, ERRS)
        mb = mid.encode(ENC, ERRS)
        hb = encode_headers(headers)
        tail = b"".join((ADD_TAIL.pack(seq, len(kb), len(mb), len(hb), len(body)), kb, mb, hb, body))
    except (AttributeError, TypeError, struct.error):
        _text(key, "key", 0xFFFF)
        _text(mid, "message_id", 0xFFFF)
        if not isinstance(body, (bytes, bytearray)):
            raise TypeError(
                f"message body must be bytes, got {type(body).__name__}; encode text before storing it"
            ) from None
        raise
    return ADD_TYPE_CRC.pack(T_ADD, crc32(tail)) + tail


def encode_op(op, seq: int = 0) -> bytes:
    """One operation's bytes; ``seq`` is the store-assigned seq of an AddMessage."""
    cls = type(op)
    if cls is AddMessage:
        return encode_add(seq, op)
    if cls is Ack or cls is MarkDispatched:
        kb = _text(op.key, "key", 0xFFFF)
        if not isinstance(op.seq, int) or op.seq < 0:
            raise ValueError(f"{cls.__name__}.seq must be a non-negative int, got {op.seq!r}")
        return SEQ_KEY.pack(T_ACK if cls is Ack else T_MARK, op.seq, len(kb)) + kb
    if cls is PutMeta:
        kb = _text(op.key, "key", 0xFFFF)
        vb = _text(op.value, "meta value", 0xFFFFFFFF)
        return META.pack(T_META, len(kb), len(vb)) + kb + vb
    if cls is DeleteKey:
        kb = _text(op.key, "key", 0xFFFF)
        return DEL.pack(T_DEL, len(kb)) + kb
    if cls is RememberId:
        sb = _text(op.scope, "duplicate scope", 0xFFFF)
        ib = _text(op.duplicate_id, "duplicate id", 0xFFFF)
        return DUP.pack(T_DUP, len(sb), len(ib)) + sb + ib
    raise TypeError(
        f"cannot store a {cls.__name__}; append() takes AddMessage, Ack, MarkDispatched, PutMeta, DeleteKey or RememberId"
    )


class OpView(NamedTuple):
    """An operation as recovery sees it: no headers or body, just what the index needs."""

    type: int
    key: str
    seq: int  # ADD / ACK / MARK
    text: Optional[str]  # message id (ADD) or meta value (META)
    offset: int  # of the record inside the payload (ADD)
    length: int  # of the record (ADD)


def iter_ops(payload) -> List[OpView]:
    """Decode a checksum-verified payload (bytes or memoryview); StoreError if it is malformed anyway."""
    pos, end = 0, len(payload)
    out: List[OpView] = []
    try:
        while pos < end:
            t = payload[pos]
            if t == T_ADD:
                _, _, seq, klen, mlen, hlen, blen = ADD_FIXED.unpack_from(payload, pos)
                start = pos
                pos += ADD_FIXED_SIZE
                key = str(payload[pos : pos + klen], ENC, ERRS)
                pos += klen
                mid = str(payload[pos : pos + mlen], ENC, ERRS)
                pos += mlen + hlen + blen
                if pos > end:
                    raise ValueError("message record runs past the batch")
                out.append(OpView(T_ADD, key, seq, mid, start, pos - start))
            elif t == T_ACK or t == T_MARK:
                _, seq, klen = SEQ_KEY.unpack_from(payload, pos)
                pos += SEQ_KEY.size
                key = str(payload[pos : pos + klen], ENC, ERRS)
                pos += klen
                out.append(OpView(t, key, seq, None, 0, 0))
            elif t == T_META:
                _, klen, vlen = META.unpack_from(payload, pos)
                pos += META.size
                key = str(payload[pos : pos + klen], ENC, ERRS)
                pos += klen
                value = str(payload[pos : pos + vlen], ENC, ERRS)
                pos += vlen
                out.append(OpView(T_META, key, 0, value, 0, 0))
            elif t == T_DEL:
                _, klen = DEL.unpack_from(payload, pos)
                pos += DEL.size
                out.append(OpView(T_DEL, str(payload[pos : pos + klen], ENC, ERRS), 0, None, 0, 0))
                pos += klen
            elif t == T_DUP:
                _, slen, ilen = DUP.unpack_from(payload, pos)
                pos += DUP.size
                scope = str(payload[pos : pos + slen], ENC, ERRS)
                pos += slen
                out.append(OpView(T_DUP, scope, 0, str(payload[pos : pos + ilen], ENC, ERRS), 0, 0))
                pos += ilen
            else:
                raise ValueError(f"unknown operation type {t}")
            if pos > end:
                raise ValueError("operation runs past the batch")
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"malformed batch payload at byte {pos}: {exc}") from exc
    return out


def decode_add(data: bytes) -> Tuple[int, str, str, Headers, bytes]:
    """(seq, key, message_id, headers, body) of one AddMessage record; raises ValueError if damaged."""
    if len(data) < ADD_FIXED.size:
        raise ValueError("record shorter than a message header")
    t, crc, seq, klen, mlen, hlen, blen = ADD_FIXED.unpack_from(data)
    if t != T_ADD:
        raise ValueError(f"record type {t} is not a message")
    if ADD_FIXED.size + klen + mlen + hlen + blen != len(data):
        raise ValueError("record length does not match its header")
    if crc32(memoryview(data)[ADD_TYPE_CRC.size :]) != crc:
        raise ValueError("record checksum mismatch")
    pos = ADD_FIXED.size
    key = data[pos : pos + klen].decode(ENC, ERRS)
    pos += klen
    mid = data[pos : pos + mlen].decode(ENC, ERRS)
    pos += mlen
    headers = decode_headers(data[pos : pos + hlen])
    pos += hlen
    return seq, key, mid, headers, bytes(data[pos : pos + blen])
