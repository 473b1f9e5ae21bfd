"""MessageStore: round trips, restart, checkpoint, cleanup, audit, marks, sync strategies, bad input."""

from __future__ import annotations

import logging
import os
import threading

import pytest

from hamq.store import (
    Ack,
    AddMessage,
    DeleteKey,
    MarkDispatched,
    MessageStore,
    PutMeta,
    RememberId,
    StoreError,
)
from hamq.store.audit import DuplicateAudit
from hamq.store.index import CKPT_NAME, CKPT_PREV


def body(i: int, size: int = 100) -> bytes:
    return (b"%08d" % i) * (size // 8)


def add(i: int, key: str = "queue:a") -> AddMessage:
    return AddMessage(key, f"id-{i}", [("persistent", "true"), ("n", str(i)), ("empty", "")], body(i))


def contents(store: MessageStore, key: str = "queue:a"):
    return [(m.message_id, m.headers, m.body) for m in (store.read(r) for r in store.iter_pending(key))]


def segments(path) -> list:
    return sorted(int(n[3:-4]) for n in os.listdir(path) if n.startswith("db-") and n.endswith(".log"))


def test_append_read_ack_round_trip(tmp_path):
    store = MessageStore(tmp_path)
    store.open(epoch=1)
    lsn = store.append([add(1), add(2), add(3, "queue:b")])
    assert lsn == 1
    assert len(store.last_seqs) == 3 and store.last_seqs == sorted(store.last_seqs)
    assert store.durable_lsn == 0  # always: nothing is durable before sync()
    assert store.sync() == 1 and store.durable_lsn == 1
    assert store.keys() == ["queue:a", "queue:b"]
    assert store.pending_count("queue:a") == 2
    msgs = [store.read(r) for r in store.iter_pending("queue:a")]
    assert [m.message_id for m in msgs] == ["id-1", "id-2"]
    assert msgs[0].headers == [("persistent", "true"), ("n", "1"), ("empty", "")]
    assert msgs[1].body == body(2) and not msgs[1].redelivered
    assert store.append([Ack("queue:a", msgs[0].seq)]) == 2
    assert [m.message_id for m in (store.read(r) for r in store.iter_pending("queue:a"))] == ["id-2"]
    # a repeated ack of the same message is harmless
    store.append([Ack("queue:a", msgs[0].seq)])
    assert store.pending_count("queue:a") == 1
    store.close()


def test_dict_headers_and_unicode_round_trip(tmp_path):
    store = MessageStore(tmp_path)
    store.open()
    store.append([AddMessage("queue:ü", "id-ü", {"k:é": "v\n\x00w", "lone": "\udcff"}, b"\x00\xff")])
    (ref,) = store.iter_pending("queue:ü")
    m = store.read(ref)
    assert m.headers == [("k:é", "v\n\x00w"), ("lone", "\udcff")] and m.body == b"\x00\xff"
    store.close()
    store = MessageStore(tmp_path)
    store.open()
    assert [x.headers for x in map(store.read, store.iter_pending("queue:ü"))] == [m.headers]
    store.close()


@pytest.mark.parametrize("checkpoint", [True, False])
def test_restart_with_pending_messages_returns_them_in_order(tmp_path, checkpoint):
    store = MessageStore(tmp_path, max_segment_bytes=8192)  # several segments
    store.open(epoch=1)
    for i in range(200):
        store.append([add(i)])
    for ref in list(store.iter_pending("queue:a"))[::3]:
        store.append([Ack("queue:a", ref.seq)])
    store.sync()
    expected = contents(store)
    store.close(checkpoint=checkpoint)
    assert len(segments(tmp_path)) > 3

    store = MessageStore(tmp_path, max_segment_bytes=8192)
    report = store.open(epoch=1)
    assert report.pending_messages == len(expected) == 133
    assert contents(store) == expected
    assert report.checkpoint == (CKPT_NAME if checkpoint else None)
    assert report.replayed_batches == (0 if checkpoint else 200 + 67)
    # new messages get seqs above every recovered one
    store.append([add(999)])
    assert store.last_seqs[0] > max(r.seq for r in store.iter_pending("queue:a") if r.seq != store.last_seqs[0])
    store.close()


def test_checkpoint_then_replay_only_what_follows(tmp_path):
    store = MessageStore(tmp_path)
    store.open()
    for i in range(10):
        store.append([add(i)])
    store.checkpoint()
    for i in range(10, 13):
        store.append([add(i)])
    store.append([Ack("queue:a", store.last_seqs[0])])
    store.sync()
    store.close(checkpoint=False)

    store = MessageStore(tmp_path)
    report = store.open()
    assert report.checkpoint == CKPT_NAME and report.checkpoint_lsn == 10
    assert report.replayed_batches == 4 and report.replayed_ops == 4
    assert [m[0] for m in contents(store)] == [f"id-{i}" for i in range(12)]
    store.close()


def test_maybe_checkpoint_respects_interval_and_skips_when_idle(tmp_path):
    store = MessageStore(tmp_path, checkpoint_interval_ms=5000)
    store.open()
    store.append([add(1)])
    t = store._last_checkpoint
    assert store.maybe_checkpoint(t + 1) is False
    assert store.maybe_checkpoint(t + 5) is True
    assert os.path.exists(tmp_path / CKPT_NAME)
    assert store.maybe_checkpoint(t + 11) is False  # nothing new since
    store.close()


def test_corrupt_checkpoint_falls_back_to_previous_one(tmp_path, caplog):
    store = MessageStore(tmp_path)
    store.open()
    store.append([add(1)])
    store.checkpoint()
    store.append([add(2)])
    store.checkpoint()
    store.append([add(3)])
    store.close(checkpoint=False)
    with open(tmp_path / CKPT_NAME, "r+b") as f:
        f.seek(20)
        f.write(b"\xff\xff")
    store = MessageStore(tmp_path)
    with caplog.at_level(logging.ERROR, logger="hamq.store"):
        report = store.open()
    assert report.checkpoint == CKPT_PREV and report.replayed_batches == 2
    assert "checkpoint index.ckpt is unusable" in caplog.text
    assert [m[0] for m in contents(store)] == ["id-1", "id-2", "id-3"]
    assert any("quarantine" in p for p in report.quarantined)
    store.close()


def test_cleanup_deletes_fully_acked_segments_only(tmp_path):
    store = MessageStore(tmp_path, max_segment_bytes=4096)
    store.open()
    seqs = []
    for i in range(120):
        store.append([add(i)])
        seqs.append(store.last_seqs[0])
    before = segments(tmp_path)
    assert len(before) >= 4
    keep = seqs[-1]  # the newest message stays pending
    store.append([Ack("queue:a", s) for s in seqs[1:-1]])  # ack all but the first and last
    assert store.cleanup() == []  # no checkpoint yet: nothing may go
    store.checkpoint()
    store.append([add(500)])
    store.checkpoint()
    deleted = store.cleanup()
    first_ref = next(iter(store.iter_pending("queue:a")))
    assert deleted and first_ref.segment not in deleted  # the segment of the still-pending first message stays
    after = segments(tmp_path)
    assert set(after) == set(before + [s for s in after if s not in before]) - set(deleted)
    assert [m[0] for m in contents(store)] == ["id-0", "id-119", "id-500"]
    store.close()
    store = MessageStore(tmp_path, max_segment_bytes=4096)
    store.open()
    assert [m[0] for m in contents(store)] == ["id-0", "id-119", "id-500"]
    assert keep in [r.seq for r in store.iter_pending("queue:a")]
    store.close()


def test_transaction_batch_is_atomic_on_recovery(tmp_path):
    store = MessageStore(tmp_path)
    store.open()
    store.append([add(1)])
    first = store.last_seqs[0]
    store.append([add(2), add(3), Ack("queue:a", first), PutMeta("durable:c:s", "sel")])
    store.sync()
    store.close(checkpoint=False)
    path = tmp_path / "db-1.log"
    os.truncate(path, os.path.getsize(path) - 1)  # tear the transaction's batch
    store = MessageStore(tmp_path)
    report = store.open()
    assert report.replayed_batches == 1
    assert [m[0] for m in contents(store)] == ["id-1"]  # none of the transaction's ops
    assert store.get_meta("durable:c:s") is None
    store.close()


def test_duplicate_audit_survives_restart_and_is_bounded(tmp_path):
    def dup(i):
        return store.is_duplicate("queue:a", f"id-{i}")

    store = MessageStore(tmp_path, audit_size=4)
    store.open()
    for i in range(5):
        store.append([add(i), RememberId("queue:a", f"id-{i}")])
    assert dup(4) and dup(3)
    assert not dup(0)  # fell out of the bounded audit
    assert not store.is_duplicate("queue:b", "id-4")  # scoped to its destination
    store.append([Ack("queue:a", s) for s in [r.seq for r in store.iter_pending("queue:a")]])
    remembered = [dup(i) for i in range(5)]
    store.close()  # checkpoint holds the audit
    store = MessageStore(tmp_path, audit_size=4)
    store.open()
    assert [dup(i) for i in range(5)] == remembered
    store.append([add(7), RememberId("queue:a", "id-7")])
    store.close(checkpoint=False)  # id-7 only in the journal
    store = MessageStore(tmp_path, audit_size=4)
    store.open()
    assert dup(7) and dup(4)
    assert len(store._audit) <= 4
    store.close()


def test_a_message_id_alone_is_never_a_duplicate(tmp_path):
    store = MessageStore(tmp_path)
    store.open()
    store.append([add(1)])
    assert not store.is_duplicate("queue:a", "id-1")
    store.close()


def test_audit_keeps_at_least_the_last_half_of_its_capacity():
    audit = DuplicateAudit(100)
    for i in range(1000):
        audit.add(f"m{i}")
        audit.add(f"m{i}")  # a repeat is not a new id
        assert all(f"m{j}" in audit for j in range(max(0, i - 49), i + 1))
        assert len(audit) <= 100
    assert "m0" not in audit
    copy = DuplicateAudit(100)
    copy.load(audit.ids())
    assert all(f"m{j}" in copy for j in range(950, 1000))


def test_mark_dispatched_sets_redelivered_after_restart(tmp_path):
    store = MessageStore(tmp_path)
    store.open()
    store.append([add(1), add(2), add(3)])
    s1, s2, s3 = store.last_seqs
    store.append([MarkDispatched("queue:a", s2)])
    # within this run the flag reflects only what was recovered at open
    assert not any(store.read(r).redelivered for r in store.iter_pending("queue:a"))
    store.close(checkpoint=False)
    for _ in range(2):  # from the journal, then from the checkpoint
        store = MessageStore(tmp_path)
        store.open()
        flags = [(m.seq, m.redelivered) for m in map(store.read, store.iter_pending("queue:a"))]
        assert flags == [(s1, True), (s2, True), (s3, False)]
        assert store.get_mark("queue:a") == s2
        store.close()


def test_meta_and_delete_key(tmp_path):
    store = MessageStore(tmp_path)
    store.open()
    store.append([PutMeta("durable:c:s", '{"selector": "a = 1"}'), add(1, "durable:c:s"), add(2, "durable:c:t")])
    store.append([MarkDispatched("durable:c:s", store.last_seqs[0])])
    store.append([DeleteKey("durable:c:s")])
    assert store.keys() == ["durable:c:t"] and store.get_meta("durable:c:s") is None
    store.append([PutMeta("durable:c:u", "x"), PutMeta("durable:c:u", "y")])
    store.close()
    store = MessageStore(tmp_path)
    store.open()
    assert store.keys() == ["durable:c:t", "durable:c:u"]
    assert store.get_meta("durable:c:u") == "y" and store.pending_count("durable:c:s") == 0
    assert store.get_mark("durable:c:s") == -1
    store.close()


def test_iter_pending_pages_and_tolerates_acks_while_iterating(tmp_path):
    store = MessageStore(tmp_path)
    store.open()
    for chunk in range(3):
        store.append([add(chunk * 1000 + i) for i in range(1000)])
    seen = []
    for ref in store.iter_pending("queue:a"):
        seen.append(ref.seq)
        store.append([Ack("queue:a", ref.seq), Ack("queue:a", ref.seq + 1)])  # and the next one, not yet yielded
    assert len(seen) == 1500 and seen == sorted(seen)
    assert store.pending_count("queue:a") == 0
    after = list(store.iter_pending("queue:a", after_seq=10))
    assert after == []
    store.close()


def test_out_of_order_acks_and_compaction(tmp_path):
    store = MessageStore(tmp_path)
    store.open()
    store.append([add(i) for i in range(10000)])
    seqs = list(store.last_seqs)
    odd = seqs[1::2]
    store.append([Ack("queue:a", s) for s in odd])
    assert store.pending_count("queue:a") == 5000
    assert [r.seq for r in store.iter_pending("queue:a")] == seqs[0::2]
    store.close()
    store = MessageStore(tmp_path)
    store.open()
    assert [r.seq for r in store.iter_pending("queue:a", after_seq=seqs[9000])] == seqs[9002::2]
    store.close()


def test_sync_strategies(tmp_path):
    for strategy in ("periodic", "never"):
        d = tmp_path / strategy
        store = MessageStore(d, sync_strategy=strategy, sync_interval_ms=60000)
        store.open()
        lsn = store.append([add(1)])
        assert store.durable_lsn == lsn  # reported at once: the documented risk
        assert store.sync() == lsn
        store.close()
        store = MessageStore(d, sync_strategy=strategy)
        store.open()
        assert [m[0] for m in contents(store)] == ["id-1"]
        store.close()


def test_group_commit_sync_in_a_thread_while_appending(tmp_path):
    store = MessageStore(tmp_path)
    store.open()
    stop = threading.Event()
    seen = []
    errors = []

    def syncer():
        try:
            while not stop.is_set():
                durable = store.sync()
                seen.append((durable, store.written_lsn))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=syncer)
    t.start()
    for i in range(300):
        store.append([add(i)])
    stop.set()
    t.join()
    assert not errors
    assert all(d <= w for d, w in seen)  # never ahead of what was written
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # never goes back
    assert store.sync() == store.written_lsn == 300
    store.close()


def test_bad_input_is_refused_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="sync_strategy"):
        MessageStore(tmp_path, sync_strategy="sometimes")
    store = MessageStore(tmp_path)
    with pytest.raises(StoreError, match="open"):
        store.append([add(1)])
    store.open()
    size = os.path.getsize(tmp_path / "db-1.log")
    with pytest.raises(TypeError, match="body must be bytes"):
        store.append([add(1), AddMessage("queue:a", "x", [], "text")])
    with pytest.raises(TypeError, match="key must be a str"):
        store.append([Ack(None, 1)])
    with pytest.raises(ValueError, match="non-negative"):
        store.append([Ack("queue:a", -1)])
    with pytest.raises(TypeError, match="cannot store a tuple"):
        store.append([("queue:a", 1)])
    with pytest.raises(ValueError, match="over the 65535-byte limit"):
        store.append([AddMessage("queue:" + "x" * 70000, "i", [], b"")])
    assert os.path.getsize(tmp_path / "db-1.log") == size
    assert store.keys() == [] and not store.is_duplicate("queue:a", "id-1")
    assert store.append([]) == 0  # nothing to write
    store.append([add(1)])
    assert store.last_seqs == [1]  # refused batches consumed no seq
    store.close()


def test_read_detects_damage_in_a_checkpointed_message(tmp_path):
    store = MessageStore(tmp_path)
    store.open()
    store.append([add(1)])
    store.close()  # checkpointed: the next open does not re-scan the batch
    store = MessageStore(tmp_path)
    store.open()
    (ref,) = list(store.iter_pending("queue:a"))
    with open(tmp_path / f"db-{ref.segment}.log", "r+b") as f:
        f.seek(ref.offset + ref.length - 5)
        f.write(b"X")
    with pytest.raises(StoreError, match="damaged on disk"):
        store.read(ref)
    store.close()


def test_duplicate_ids_with_nul_survive_a_checkpoint(tmp_path):
    store = MessageStore(tmp_path)
    store.open()
    store.append([AddMessage("queue:a", "m1", [], b""), RememberId("queue:a", "a\0b"),
                  AddMessage("queue:a", "m2", [], b""), RememberId("queue:a", "ü\udcff")])
    store.close()
    store = MessageStore(tmp_path)
    report = store.open()
    assert report.checkpoint == CKPT_NAME and report.replayed_batches == 0
    assert store.is_duplicate("queue:a", "a\0b") and store.is_duplicate("queue:a", "ü\udcff")
    assert not store.is_duplicate("queue:a", "a")
    store.close()


def test_checkpoint_written_by_a_worker_thread_while_appending(tmp_path):
    store = MessageStore(tmp_path)
    store.open()
    for i in range(5):
        store.append([add(i)])
    snap = store.snapshot_checkpoint()  # in the appending thread
    worker = threading.Thread(target=store.write_checkpoint, args=(snap,))
    worker.start()
    for i in range(5, 8):
        store.append([add(i)])
    worker.join()
    store.sync()
    store.close(checkpoint=False)
    store = MessageStore(tmp_path)
    report = store.open()
    assert report.checkpoint_lsn == 5 and report.replayed_batches == 3
    assert [m[0] for m in contents(store)] == [f"id-{i}" for i in range(8)]
    store.close()


def test_the_same_object_can_be_closed_and_reopened(tmp_path):
    store = MessageStore(tmp_path)
    store.open(epoch=1)
    store.append([add(1), add(2)])
    store.append([Ack("queue:a", store.last_seqs[0])])
    store.close()
    report = store.open(epoch=2)
    assert report.pending_messages == 1 and [m[0] for m in contents(store)] == ["id-2"]
    store.append([add(3)])
    assert store.last_seqs == [3]
    store.close()


def test_stats_follow_the_store(tmp_path):
    store = MessageStore(tmp_path)
    store.open()
    store.append([add(1), add(2), RememberId("queue:a", "d1"), RememberId("queue:a", "d2")])
    st = store.stats()
    assert (st["pendingMessages"], st["writtenLsn"], st["durableLsn"], st["checkpointLsn"]) == (2, 1, 0, 0)
    store.sync()
    store.checkpoint()
    st = store.stats()
    assert (st["durableLsn"], st["checkpointLsn"], st["segment"], st["auditSize"]) == (1, 1, 1, 2)
    store.close()
