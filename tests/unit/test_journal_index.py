"""The compact per-key index and the record codec, tested against simple models."""

from __future__ import annotations

import random
import struct
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from hamq.store.codec import (
    ENC,
    ERRS,
    T_ADD,
    decode_add,
    decode_headers,
    encode_add,
    encode_headers,
    encode_op,
    iter_ops,
)
from hamq.store.index import (
    COMPACT_MIN,
    Checkpoint,
    KeyIndex,
    decode_checkpoint,
    encode_checkpoint,
)
from hamq.store.ops import Ack, AddMessage, DeleteKey, MarkDispatched, PutMeta

text = st.text(max_size=20)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 3 * COMPACT_MIN), n_acks=st.integers(0, 6000), seed=st.integers(0, 2**32))
def test_key_index_matches_a_set_model(n, n_acks, seed):
    rng = random.Random(seed)
    acks = [rng.randrange(3 * COMPACT_MIN) for _ in range(n_acks)]
    ki = KeyIndex()
    for i in range(n):
        ki.add(10 + 2 * i, i // 100, 64 + i, 50)
    model = {10 + 2 * i: (i // 100, 64 + i, 50) for i in range(n)}
    for a in acks:
        seq = 10 + 2 * a if a % 3 else 10 + 2 * (a // 3)  # mix in-order heads with random picks
        seg = ki.ack(seq)
        expected = model.pop(seq, None)
        assert seg == (expected[0] if expected else -1)
    assert ki.pending_count() == len(model)
    refs = ki.page("k", -1, 10**9)
    assert [(r.seq, r.segment, r.offset, r.length) for r in refs] == [(s, *model[s]) for s in sorted(model)]
    for seq in list(model)[:50]:
        assert ki.find(seq) == model[seq]
    if model:
        middle = sorted(model)[len(model) // 2]
        assert [r.seq for r in ki.page("k", middle, 5)] == [s for s in sorted(model) if s > middle][:5]
    ki.compact()
    assert [r.seq for r in ki.page("k", -1, 10**9)] == sorted(model)
    assert sorted(ki.clear()) == sorted(v[0] for v in model.values())
    assert ki.pending_count() == 0


def test_checkpoint_round_trip_and_damage_detection():
    ki = KeyIndex()
    for i in range(100):
        ki.add(i + 1, 1 + i // 50, 64 + 10 * i, 10)
    ki.ack(5)
    ki.mark = 40
    ki.meta = "sel é"
    other = KeyIndex()
    other.mark = 3
    data = b"".join(encode_checkpoint(Checkpoint(7, 2, 128, 101, 3, {"q:a": ki, "d:x": other}, {1: 49, 2: 50},
                                                 ["m1", "m\0x", "ü"])))
    data += struct.pack("<I", zlib.crc32(data))
    c = decode_checkpoint(data)
    assert (c.lsn, c.segment, c.offset, c.next_seq, c.epoch) == (7, 2, 128, 101, 3)
    assert c.live == {1: 49, 2: 50} and c.audit == ["m1", "m\0x", "ü"]
    got = c.keys["q:a"]
    assert [r.seq for r in got.page("q:a", -1, 1000)] == [s for s in range(1, 101) if s != 5]
    assert (got.mark, got.recovered_mark, got.meta) == (40, 40, "sel é")
    assert c.keys["d:x"].meta is None and c.keys["d:x"].mark == 3
    for pos in (0, 30, len(data) // 2, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 1
        try:
            decode_checkpoint(bytes(bad))
        except ValueError as exc:
            assert "checksum" in str(exc) or "not a hamq checkpoint" in str(exc)
        else:  # pragma: no cover
            raise AssertionError(f"damage at byte {pos} went unnoticed")


@settings(max_examples=100, deadline=None)
@given(
    key=text, mid=text, body=st.binary(max_size=300), seq=st.integers(0, 2**63 - 1),
    headers=st.lists(st.tuples(text, text), max_size=6),
)
def test_message_record_round_trip(key, mid, body, seq, headers):
    record = encode_add(seq, AddMessage(key, mid, headers, body))
    assert decode_add(record) == (seq, key, mid, headers, body)
    assert decode_headers(encode_headers(dict(headers))) == list(dict(headers).items())
    (view,) = iter_ops(memoryview(record))
    assert (view.type, view.key, view.seq, view.text, view.offset, view.length) == (T_ADD, key, seq, mid, 0,
                                                                                  len(record))
    bad = bytearray(record)
    bad[-1 if body else 5] ^= 0x10
    try:
        decode_add(bytes(bad))
    except ValueError:
        pass
    else:  # pragma: no cover
        raise AssertionError("a flipped bit must be detected")


def test_other_operations_round_trip():
    ops = [Ack("q", 5), MarkDispatched("q", 9), PutMeta("d:c:s", "{}"), DeleteKey("d:c:s")]
    payload = b"".join(encode_op(op) for op in ops)
    views = iter_ops(payload)
    assert [(v.type, v.key, v.seq, v.text) for v in views] == [
        (2, "q", 5, None), (3, "q", 9, None), (4, "d:c:s", 0, "{}"), (5, "d:c:s", 0, None)]
    assert "x".encode(ENC, ERRS) == b"x"
