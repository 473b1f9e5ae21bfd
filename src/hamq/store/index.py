"""In-memory index of pending messages, and its checkpoint file.

Per key the index keeps four parallel ``array`` columns (seq, segment,
offset, length): 24 bytes a message, no headers, no body, so a million
pending messages cost about 24 MiB.  Acks of the oldest message (the usual
case for a queue) just advance ``head``; out-of-order acks go to a small
``acked`` set.  Both are compacted lazily, so an ack is O(log n).

A checkpoint is a snapshot of the whole index plus the journal position it
covers.  It is written to a temp file, fsynced, renamed over ``index.ckpt``
(the previous one is kept as ``index.ckpt.prev``) and the directory is
fsynced, so a crash leaves either the old or the new checkpoint, never half
of one.  Startup loads it and replays only the journal after that position.

Format 2 (``HAMQIDX2``) adds what cleanup needs to know which segments a
replay without a checkpoint still needs: per key the segments of its latest
metadata and mark, per segment the seqs added in it, the older segments its
acks point into and those whose records its deletes override, and the
segments kept because that was unknown.  A format 1 checkpoint
(``HAMQIDX1``) is still read; the bookkeeping it lacks is reported as unknown
(``legacy``) so the store keeps every segment it covers.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from array import array
from bisect import bisect_left, bisect_right
from itertools import accumulate
from typing import Dict, List, NamedTuple, Optional, Tuple

from hamq.store.errors import StoreError
from hamq.store.ops import Ref

COMPACT_MIN = 4096  # below this many dead entries compaction is not worth a copy


class KeyIndex:
    """Pending refs, dispatch mark and metadata of one key."""

    __slots__ = ("seqs", "segs", "offs", "lens", "head", "acked", "mark", "recovered_mark", "meta", "meta_seg", "mark_seg")

    def __init__(self) -> None:
        self.seqs = array("q")
        self.segs = array("i")
        self.offs = array("q")
        self.lens = array("i")
        self.head = 0  # entries before head are all acked
        self.acked: set = set()  # acked seqs at or after head
        self.mark = -1  # highest seq dispatched (persisted)
        self.recovered_mark = -1  # the mark as found at open(); drives ``redelivered``
        self.meta: Optional[str] = None
        # segments holding the latest PutMeta / MarkDispatched of this key (-1: none, or not known):
        # cleanup keeps them, a replay without a checkpoint needs them (see MessageStore.cleanup)
        self.meta_seg = -1
        self.mark_seg = -1

    def add(self, seq: int, seg: int, off: int, length: int) -> None:
        seqs = self.seqs
        if seqs and seq <= seqs[-1]:
            raise StoreError(f"seq {seq} is not above the last seq {seqs[-1]}; the journal is out of order")
        seqs.append(seq)
        self.segs.append(seg)
        self.offs.append(off)
        self.lens.append(length)

    def ack(self, seq: int) -> int:
        """Drop ``seq``; returns its segment, or -1 if it was not pending (a repeated ack is harmless)."""
        seqs, acked = self.seqs, self.acked
        i = bisect_left(seqs, seq, self.head)
        if i >= len(seqs) or seqs[i] != seq or seq in acked:
            return -1
        seg = self.segs[i]
        if i == self.head:
            i += 1
            n = len(seqs)
            while i < n and seqs[i] in acked:
                acked.discard(seqs[i])
                i += 1
            self.head = i
            if i >= COMPACT_MIN and 2 * i >= n:
                self._drop_head()
        else:
            acked.add(seq)
            if len(acked) >= COMPACT_MIN and 2 * len(acked) >= len(seqs) - self.head:
                self.compact()
        return seg

    def _drop_head(self) -> None:
        h = self.head
        del self.seqs[:h]
        del self.segs[:h]
        del self.offs[:h]
        del self.lens[:h]
        self.head = 0

    def compact(self) -> None:
        """Rewrite the columns with only pending entries."""
        h, acked = self.head, self.acked
        if not h and not acked:
            return
        if not acked:
            self._drop_head()
            return
        seqs, segs, offs, lens = self.seqs, self.segs, self.offs, self.lens
        ns, ng, no, nl = array("q"), array("i"), array("q"), array("i")
        for i in range(h, len(seqs)):
            s = seqs[i]
            if s in acked:
                continue
            ns.append(s)
            ng.append(segs[i])
            no.append(offs[i])
            nl.append(lens[i])
        self.seqs, self.segs, self.offs, self.lens = ns, ng, no, nl
        self.head = 0
        self.acked = set()

    def clear(self) -> List[int]:
        """Drop every pending entry; returns their segments (for live counts)."""
        gone = [self.segs[i] for i in range(self.head, len(self.seqs)) if self.seqs[i] not in self.acked]
        self.__init__()
        return gone

    def pending_count(self) -> int:
        return len(self.seqs) - self.head - len(self.acked)

    def is_empty(self) -> bool:
        return self.pending_count() == 0 and self.meta is None and self.mark < 0

    def page(self, key: str, after_seq: int, limit: int) -> List[Ref]:
        seqs, acked = self.seqs, self.acked
        i = bisect_right(seqs, after_seq, self.head)
        n = len(seqs)
        out: List[Ref] = []
        while i < n and len(out) < limit:
            s = seqs[i]
            if not acked or s not in acked:
                out.append(Ref(key, s, self.segs[i], self.offs[i], self.lens[i]))
            i += 1
        return out

    def find(self, seq: int) -> Optional[Tuple[int, int, int]]:
        seqs = self.seqs
        i = bisect_left(seqs, seq, self.head)
        if i < len(seqs) and seqs[i] == seq and seq not in self.acked:
            return self.segs[i], self.offs[i], self.lens[i]
        return None


# ---------------------------------------------------------------- checkpoint file
CKPT_NAME = "index.ckpt"
CKPT_PREV = "index.ckpt.prev"
CKPT_MAGIC = b"HAMQIDX2"
CKPT_MAGIC_V1 = b"HAMQIDX1"
CKPT_HEAD = struct.Struct("<8sBxxxQIQQQIIIII")
# magic, big-endian flag, lsn, segment, offset, next_seq, epoch, n_keys, n_live_segments, n_audit,
# n_segments (retention info), n_pinned (format 1: the same without the last two)
CKPT_HEAD_V1 = struct.Struct("<8sBxxxQIQQQIII")
KEY_HEAD = struct.Struct("<HqBIQii")  # key len, mark, has meta, meta len, count, meta segment, mark segment
KEY_HEAD_V1 = struct.Struct("<HqBIQ")
LIVE = struct.Struct("<IQ")
SEGINFO = struct.Struct("<IqqII")  # segment, first and last seq added (-1: none), n ack refs, n hold refs (int32s)
_BIG = sys.byteorder == "big"


class Checkpoint(NamedTuple):
    """What a checkpoint file holds."""

    lsn: int  # last batch covered
    segment: int  # journal position right after that batch
    offset: int
    next_seq: int
    epoch: int
    keys: Dict[str, KeyIndex]
    live: Dict[int, int]  # segment -> pending messages in it
    audit: List[str]
    # segment -> ((first, last) seq added in it, older segments its acks point into, older segments holding
    # records its DeleteKey/PutMeta override); see MessageStore.cleanup
    segments: Dict[int, Tuple[Tuple[int, int], List[int], List[int]]] = {}
    pinned: List[int] = []  # segments kept because what they hold is not known
    legacy: bool = False  # read from format 1: segments, pinned and the keys' meta_seg/mark_seg are unknown


def encode_checkpoint(c: Checkpoint) -> List[bytes]:
    """The checkpoint as a list of byte strings (copies, so the index may change right after).

    The trailing crc32 is added by ``write_checkpoint`` while it writes, so the
    snapshot taken in the event loop costs only the memory copies.
    """
    parts: List[bytes] = [
        CKPT_HEAD.pack(
            CKPT_MAGIC, int(_BIG), c.lsn, c.segment, c.offset, c.next_seq, c.epoch, len(c.keys), len(c.live),
            len(c.audit), len(c.segments), len(c.pinned),
        )
    ]
    for key, ki in c.keys.items():
        ki.compact()
        kb = key.encode("utf-8", "surrogatepass")
        mb = ki.meta.encode("utf-8", "surrogatepass") if ki.meta is not None else b""
        parts.append(
            KEY_HEAD.pack(len(kb), ki.mark, ki.meta is not None, len(mb), len(ki.seqs), ki.meta_seg, ki.mark_seg)
        )
        parts += [kb, mb, ki.seqs.tobytes(), ki.segs.tobytes(), ki.offs.tobytes(), ki.lens.tobytes()]
    for seg, count in c.live.items():
        parts.append(LIVE.pack(seg, count))
    for seg, ((lo, hi), acks, holds) in c.segments.items():
        parts.append(SEGINFO.pack(seg, lo, hi, len(acks), len(holds)))
        parts.append(array("i", acks + holds).tobytes())
    parts.append(array("i", c.pinned).tobytes())
    # the audit as one text, so loading 100k ids is one decode and one split, not 100k of each
    joined = "\0".join(c.audit)
    if joined.count("\0") == max(0, len(c.audit) - 1):
        parts.append(b"\0" + joined.encode("utf-8", "surrogatepass"))
    else:  # some id contains NUL: character lengths then the text
        parts.append(b"\1" + array("I", map(len, c.audit)).tobytes())
        parts.append("".join(c.audit).encode("utf-8", "surrogatepass"))
    return parts


def decode_checkpoint(data: bytes) -> Checkpoint:
    """Parse a checkpoint; raises ValueError naming what is wrong.

    A checkpoint whose checksum is right can still be malformed (written by an
    older format, or deliberately crafted): every structural fault becomes a
    ValueError, so the store quarantines the file and falls back instead of
    crashing at every start.
    """
    try:
        return _decode_checkpoint(data)
    except (IndexError, struct.error, UnicodeDecodeError, OverflowError, MemoryError) as exc:
        raise ValueError(f"malformed checkpoint ({type(exc).__name__}: {exc})") from None


def _decode_checkpoint(data: bytes) -> Checkpoint:
    if len(data) < CKPT_HEAD_V1.size + 4:
        raise ValueError("file is too short to be a checkpoint")
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    view = memoryview(data)[:-4]
    if zlib.crc32(view) != crc:
        raise ValueError("checksum mismatch")
    magic = bytes(view[:8])
    if magic == CKPT_MAGIC:
        legacy, head, key_head = False, CKPT_HEAD, KEY_HEAD
        magic, big, lsn, seg, off, next_seq, epoch, nkeys, nlive, naudit, nsegs, npinned = head.unpack_from(view)
    elif magic == CKPT_MAGIC_V1:
        legacy, head, key_head, nsegs, npinned = True, CKPT_HEAD_V1, KEY_HEAD_V1, 0, 0
        magic, big, lsn, seg, off, next_seq, epoch, nkeys, nlive, naudit = head.unpack_from(view)
    else:
        raise ValueError("not a hamq checkpoint")
    swap = bool(big) != _BIG
    pos = head.size
    keys: Dict[str, KeyIndex] = {}
    for _ in range(nkeys):
        ki = KeyIndex()
        if legacy:
            klen, mark, has_meta, mlen, count = key_head.unpack_from(view, pos)
        else:
            klen, mark, has_meta, mlen, count, ki.meta_seg, ki.mark_seg = key_head.unpack_from(view, pos)
        pos += key_head.size
        key = bytes(view[pos : pos + klen]).decode("utf-8", "surrogatepass")
        pos += klen
        ki.mark = ki.recovered_mark = mark
        if has_meta:
            ki.meta = bytes(view[pos : pos + mlen]).decode("utf-8", "surrogatepass")
        pos += mlen
        for name, code, width in (("seqs", "q", 8), ("segs", "i", 4), ("offs", "q", 8), ("lens", "i", 4)):
            col = array(code)
            col.frombytes(view[pos : pos + width * count])
            if swap:
                col.byteswap()
            pos += width * count
            setattr(ki, name, col)
        keys[key] = ki
    live: Dict[int, int] = {}
    for _ in range(nlive):
        s, n = LIVE.unpack_from(view, pos)
        pos += LIVE.size
        live[s] = n
    segments: Dict[int, Tuple[Tuple[int, int], List[int], List[int]]] = {}
    for _ in range(nsegs):
        s, lo, hi, na, nh = SEGINFO.unpack_from(view, pos)
        pos += SEGINFO.size
        refs = _ints(view[pos : pos + 4 * (na + nh)], na + nh, swap)
        pos += 4 * (na + nh)
        segments[s] = ((lo, hi), refs[:na], refs[na:])
    pinned = _ints(view[pos : pos + 4 * npinned], npinned, swap)
    pos += 4 * npinned
    mode = view[pos]
    pos += 1
    if mode == 0:
        audit = bytes(view[pos:]).decode("utf-8", "surrogatepass").split("\0") if naudit else []
    elif mode == 1:
        lens = array("I")
        lens.frombytes(view[pos : pos + 4 * naudit])
        if swap:
            lens.byteswap()
        pos += 4 * naudit
        text = bytes(view[pos:]).decode("utf-8", "surrogatepass")
        ends = list(accumulate(lens))
        if (ends[-1] if ends else 0) != len(text):
            raise ValueError("audit section has the wrong length")
        audit = [text[a:b] for a, b in zip([0] + ends, ends)]
    else:
        raise ValueError(f"unknown audit encoding {mode}")
    if len(audit) != naudit:
        raise ValueError("audit section has the wrong number of ids")
    return Checkpoint(lsn, seg, off, next_seq, epoch, keys, live, audit, segments, pinned, legacy)


def _ints(view, n: int, swap: bool) -> List[int]:
    col = array("i")
    col.frombytes(view)
    if len(col) != n:
        raise ValueError("segment list has the wrong length")
    if swap:
        col.byteswap()
    return col.tolist()


def write_checkpoint(directory: str, parts: List[bytes]) -> None:
    """Atomically replace the checkpoint, keeping the previous one as a fallback."""
    tmp = os.path.join(directory, CKPT_NAME + ".tmp")
    cur = os.path.join(directory, CKPT_NAME)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        crc = 0
        for part in parts:
            crc = zlib.crc32(part, crc)
            _write_all(fd, part)
        _write_all(fd, struct.pack("<I", crc))
        os.fsync(fd)
    finally:
        os.close(fd)
    if os.path.exists(cur):
        os.replace(cur, os.path.join(directory, CKPT_PREV))
    os.replace(tmp, cur)
    fsync_dir(directory)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
