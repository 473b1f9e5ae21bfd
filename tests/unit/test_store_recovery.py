"""Recovery from torn tails and corruption, including hypothesis property tests."""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hamq.store import Ack, AddMessage, MarkDispatched, MessageStore, PutMeta, RememberId, StoreError


def add(i: int, key: str = "queue:a") -> AddMessage:
    return AddMessage(key, f"id-{i}", [("n", str(i))], bytes([i % 251]) * 300)


def ids(store: MessageStore, key: str = "queue:a"):
    return [store.read(r).message_id for r in store.iter_pending(key)]


def write_batches(path, n: int, **kw) -> MessageStore:
    store = MessageStore(path, **kw)
    store.open(epoch=1)
    for i in range(n):
        store.append([add(i)])
    store.sync()
    store.close(checkpoint=False)
    return store


def test_torn_tail_is_truncated_logged_and_kept_aside(tmp_path, caplog):
    write_batches(tmp_path, 5)
    seg = tmp_path / "db-1.log"
    full = os.path.getsize(seg)
    os.truncate(seg, full - 100)  # the last batch is half written
    store = MessageStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="hamq.store"):
        report = store.open(epoch=1)
    assert ids(store) == [f"id-{i}" for i in range(4)]
    (problem,) = report.problems
    assert "torn tail in journal segment db-1.log at offset" in problem and "bytes dropped" in problem
    assert "torn tail" in caplog.text
    dropped = [p for p in report.quarantined if "db-1.log.from-" in p]
    assert dropped and os.path.getsize(dropped[0]) == full - 100 - report.sealed[1]
    store.close()
    # the new segment continues the lsn sequence; a second restart is clean
    store = MessageStore(tmp_path)
    report = store.open(epoch=1)
    assert report.problems == [] and ids(store) == [f"id-{i}" for i in range(4)]
    store.close()


def test_zero_filled_tail_counts_as_torn(tmp_path):
    write_batches(tmp_path, 3)
    with open(tmp_path / "db-1.log", "ab") as f:
        f.write(b"\0" * 5000)
    store = MessageStore(tmp_path)
    with_problems = store.open(epoch=1)
    assert "torn tail" in with_problems.problems[0]
    assert ids(store) == ["id-0", "id-1", "id-2"]
    store.close()


def test_corrupt_batch_in_the_middle_is_skipped_and_the_rest_replayed(tmp_path, caplog):
    write_batches(tmp_path, 6)
    seg = tmp_path / "db-1.log"
    data = bytearray(seg.read_bytes())
    size = (len(data) - 64) // 6
    third = 64 + 2 * size  # start of the third batch (equal-sized batches)
    data[third + 50] ^= 0x40
    seg.write_bytes(bytes(data))
    store = MessageStore(tmp_path)
    with caplog.at_level(logging.ERROR, logger="hamq.store"):
        report = store.open(epoch=1)
    assert ids(store) == ["id-0", "id-1", "id-3", "id-4", "id-5"]  # only the damaged batch is lost
    assert f"corrupt data in journal segment db-1.log at offsets {third}-{third + size}" in caplog.text
    assert f"skipped {size} bytes" in caplog.text
    assert report.skipped == [(1, third, third + size)]
    (saved,) = [p for p in report.quarantined if ".from-%d" % third in p]
    assert open(saved, "rb").read() == bytes(data[third : third + size])  # the damaged bytes, kept
    assert os.path.getsize(seg) == len(data) and report.sealed == (1, len(data), 1)  # nothing cut off
    store.append([add(9)])
    store.close()
    store = MessageStore(tmp_path)
    assert store.open(epoch=2).problems == []  # the close checkpoint is past the damage
    assert ids(store) == ["id-0", "id-1", "id-3", "id-4", "id-5", "id-9"]
    store.close()


def test_corruption_in_an_older_segment_keeps_the_later_segments(tmp_path):
    write_batches(tmp_path, 40, max_segment_bytes=4096)
    segs = sorted(n for n in os.listdir(tmp_path) if n.endswith(".log"))
    assert len(segs) >= 3
    with open(tmp_path / "db-1.log", "r+b") as f:
        f.seek(64 + 40)
        f.write(b"\xee")
    store = MessageStore(tmp_path)
    report = store.open(epoch=1)
    assert ids(store) == [f"id-{i}" for i in range(1, 40)]
    assert any("corrupt data in journal segment db-1.log at offsets 64-" in p for p in report.problems)
    assert not [m for m in os.listdir(tmp_path / "quarantine") if not m.startswith("db-1.log.from-64")]
    store.append([add(99)])
    store.close()
    store = MessageStore(tmp_path)
    assert store.open(epoch=1).problems == [] and ids(store)[-2:] == ["id-39", "id-99"]
    store.close()


def test_torn_segment_creation_is_set_aside(tmp_path):
    write_batches(tmp_path, 2)
    (tmp_path / "db-2.log").write_bytes(b"HAMQSEG1\x02\x00")  # crash while creating the next segment
    store = MessageStore(tmp_path)
    report = store.open(epoch=1)
    assert ids(store) == ["id-0", "id-1"]
    assert report.segment == 2 and any("header is unreadable" in p for p in report.problems)
    store.close()


def test_read_of_an_acked_message_whose_segment_is_gone(tmp_path):
    store = MessageStore(tmp_path, max_segment_bytes=4096)
    store.open()
    store.append([add(0)])
    ref = next(iter(store.iter_pending("queue:a")))
    for i in range(1, 30):
        store.append([add(i)])
    store.append([Ack("queue:a", r.seq) for r in store.iter_pending("queue:a") if r.segment == ref.segment])
    store.checkpoint()
    store.checkpoint()
    assert ref.segment in store.cleanup()
    try:
        store.read(ref)
    except KeyError as exc:
        assert "no longer pending" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("read of a deleted message must fail")
    store.close()


# ------------------------------------------------------------------ property tests
KEYS = ["queue:a", "queue:b", "durable:c:s"]


def run_ops(store, data, model, history, rng_state):
    """Append random batches; the model is the expected pending state after each batch."""
    n_batches = data.draw(st.integers(1, 12), label="batches")
    for _ in range(n_batches):
        ops = []
        pending = dict(model)
        for _ in range(data.draw(st.integers(1, 4), label="ops")):
            kind = data.draw(st.sampled_from(["add", "add", "ack", "mark", "meta"]))
            key = data.draw(st.sampled_from(KEYS))
            if kind == "add":
                i = rng_state["n"]
                rng_state["n"] += 1
                size = data.draw(st.integers(0, 700))
                ops.append(AddMessage(key, f"m{i}", [("i", str(i))], bytes([i % 256]) * size))
            elif kind == "ack" and pending:
                seq = data.draw(st.sampled_from(sorted(pending)))
                ops.append(Ack(pending[seq][0], seq))
                del pending[seq]
            elif kind == "mark":
                ops.append(MarkDispatched(key, data.draw(st.integers(0, 50))))
            else:
                ops.append(PutMeta(key, "v%d" % rng_state["n"]))
        store.append(ops)
        it = iter(store.last_seqs)
        for op in ops:
            if isinstance(op, AddMessage):
                pending[next(it)] = (op.key, op.message_id, op.headers, op.body)
        model.clear()
        model.update(pending)
        history.append(dict(model))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_truncation_and_corruption_never_yield_a_bad_message(data):
    d = tempfile.mkdtemp(prefix="hamq-store-prop-")
    try:
        rng_state = {"n": 0}
        model: dict = {}
        history = [{}]
        kw = dict(max_segment_bytes=4096, sync_strategy=data.draw(st.sampled_from(["always", "never"])))
        store = MessageStore(d, **kw)
        store.open(epoch=1)
        run_ops(store, data, model, history, rng_state)
        if data.draw(st.booleans(), label="checkpoint midway"):
            store.checkpoint()
        if data.draw(st.booleans(), label="takeover midway"):
            store.sync()
            store.close(checkpoint=data.draw(st.booleans()))
            store = MessageStore(d, **kw)
            store.open(epoch=2)
        run_ops(store, data, model, history, rng_state)
        store.sync()
        store.close(checkpoint=False)

        # damage: truncate and/or flip bytes in a random segment or checkpoint file
        files = sorted(f for f in os.listdir(d) if f.endswith(".log") or f.startswith("index.ckpt"))
        for _ in range(data.draw(st.integers(1, 3), label="damages")):
            victim = os.path.join(d, data.draw(st.sampled_from(files)))
            size = os.path.getsize(victim)
            if size == 0:
                continue
            pos = data.draw(st.integers(0, size - 1))
            if data.draw(st.booleans(), label="truncate"):
                os.truncate(victim, pos)
            else:
                with open(victim, "r+b") as f:
                    f.seek(pos)
                    old = f.read(1)
                    f.seek(pos)
                    f.write(bytes([old[0] ^ data.draw(st.integers(1, 255))]))

        store = MessageStore(d, **kw)
        store.open(epoch=3)  # never raises
        recovered = {}
        damaged_reads = 0
        for key in store.keys():
            for ref in store.iter_pending(key):
                try:
                    m = store.read(ref)
                except StoreError:
                    damaged_reads += 1  # detected damage inside a checkpointed record: refused, not delivered
                    recovered[ref.seq] = None
                    continue
                recovered[m.seq] = (m.key, m.message_id, m.headers, m.body)
        # every message that survives is exactly one that was appended (a damaged batch is lost
        # whole, the intact batches around it are replayed)
        for seq, got in recovered.items():
            if got is not None:
                assert any(h.get(seq) == got for h in history), f"message {seq} differs from what was appended"
        # and the store is writable again
        store.append([AddMessage("queue:a", "after", [], b"ok"), RememberId("queue:a", "after")])
        store.close()
        store = MessageStore(d, **kw)
        store.open(epoch=3)
        assert store.is_duplicate("queue:a", "after")
        store.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(0, 10_000), seed=st.integers(0, 2**32 - 1))
def test_undamaged_prefix_survives_a_single_truncation(cut, seed):
    """Cutting the journal at any byte keeps every batch that ends before the cut."""
    d = tempfile.mkdtemp(prefix="hamq-store-cut-")
    try:
        rng = random.Random(seed)
        store = MessageStore(d)
        store.open()
        ends = []
        for i in range(20):
            store.append([add(i, "queue:a") for _ in range(rng.randint(1, 2))][:1])
            ends.append(store._journal.offset)
        store.sync()
        store.close(checkpoint=False)
        seg = os.path.join(d, "db-1.log")
        cut = min(cut, os.path.getsize(seg))
        os.truncate(seg, cut)
        store = MessageStore(d)
        store.open()
        expected = [f"id-{i}" for i, end in enumerate(ends) if end <= cut]
        assert ids(store) == expected
        store.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_replay_across_read_chunks_and_of_a_batch_bigger_than_a_chunk(tmp_path):
    from hamq.store.journal import SCAN_CHUNK

    store = MessageStore(tmp_path)
    store.open(epoch=1)
    n = SCAN_CHUNK // 1000 + 500  # enough ~1 KiB batches to cross the first read chunk
    for i in range(n):
        store.append([AddMessage("queue:a", f"s{i}", [], bytes([i % 256]) * 1000)])
    big = bytes(range(256)) * (SCAN_CHUNK // 256 + 1000)
    store.append([AddMessage("queue:big", "big", [("size", str(len(big)))], big)])
    store.append([AddMessage("queue:a", "last", [], b"z")])
    store.sync()
    store.close(checkpoint=False)
    store = MessageStore(tmp_path)
    report = store.open(epoch=1)
    assert report.replayed_batches == n + 2 and report.problems == []
    got = [store.read(r) for r in store.iter_pending("queue:a")]
    assert [m.message_id for m in got] == [f"s{i}" for i in range(n)] + ["last"]
    assert all(m.body == bytes([i % 256]) * 1000 for i, m in enumerate(got[:-1]))
    (ref,) = store.iter_pending("queue:big")
    assert store.read(ref).body == big
    store.close()
