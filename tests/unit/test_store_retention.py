"""Cleanup keeps every segment a full replay still needs (the journal alone must rebuild the index).

A recovery without a usable checkpoint replays the segments that are left; a segment may only go
once nothing in it changes what that replay rebuilds: no pending message, no latest metadata of a
live key, no ack (or delete) of a message in a segment that is still there.
"""

from __future__ import annotations

import os

from hamq.store import Ack, AddMessage, DeleteKey, MarkDispatched, MessageStore, PutMeta
from hamq.store.index import CKPT_NAME, CKPT_PREV

SEG = 4096


def test_one_stuck_message_does_not_keep_the_journal(tmp_path):
    """Segment N+1 acks messages of N: keeping such segments would chain back to the stuck one forever."""
    store = MessageStore(tmp_path, max_segment_bytes=SEG)
    store.open(epoch=1)
    store.append([msg("queue:keep", 0), PutMeta("durable:c1:d1", "topic:t")])
    first = segments(tmp_path)[0]
    backlog = []
    for i in range(400):  # a queue consumed with a lag of 5: acks land in the segment after their message
        store.append([msg("queue:q", i)])
        backlog.append(store.last_seqs[0])
        if len(backlog) > 5:
            store.append([MarkDispatched("queue:q", backlog[1]), Ack("queue:q", backlog.pop(0))])
        if i % 50 == 49:
            clean(store)
    left = segments(tmp_path)
    assert first in left and len(left) <= 6, left
    store.close()
    store = reopen_without_checkpoints(tmp_path, 2)
    assert store.pending_count("queue:keep") == 1 and store.get_meta("durable:c1:d1") == "topic:t"
    assert [r.seq for r in store.iter_pending("queue:q")] == backlog
    assert store.get_mark("queue:q") >= backlog[0]
    store.close()


def msg(key: str, i: int, size: int = 400) -> AddMessage:
    return AddMessage(key, f"{key}-{i}", [("n", str(i))], b"x" * size)


def segments(path) -> list:
    return sorted(int(n[3:-4]) for n in os.listdir(path) if n.startswith("db-") and n.endswith(".log"))


def churn(store: MessageStore, key: str = "queue:churn", n: int = 60) -> None:
    """Messages through a queue (added then acked) so that segments roll and empty."""
    for i in range(n):
        store.append([msg(key, i)])
        store.append([Ack(key, store.last_seqs[0])])


def clean(store: MessageStore) -> list:
    store.checkpoint()
    store.append([msg("queue:tick", 0)])
    store.append([Ack("queue:tick", store.last_seqs[0])])
    store.checkpoint()
    return store.cleanup()


def reopen_without_checkpoints(path, epoch: int) -> MessageStore:
    for name in (CKPT_NAME, CKPT_PREV):
        (path / name).unlink(missing_ok=True)
    store = MessageStore(path, max_segment_bytes=SEG)
    store.open(epoch=epoch)
    return store


def test_cleanup_keeps_the_segment_with_the_latest_metadata_of_a_live_key(tmp_path):
    store = MessageStore(tmp_path, max_segment_bytes=SEG)
    store.open(epoch=1)
    store.append([PutMeta("durable:c1:d1", "topic:t")])
    first = segments(tmp_path)[0]
    churn(store)
    for i in range(5):
        store.append([msg("durable:c1:d1", i)])
    deleted = clean(store)
    assert first in deleted  # its PutMeta was carried forward first
    store.close()
    store = reopen_without_checkpoints(tmp_path, 2)
    assert store.get_meta("durable:c1:d1") == "topic:t"
    assert store.pending_count("durable:c1:d1") == 5
    store.close()


def test_cleanup_keeps_a_segment_whose_acks_point_into_a_segment_that_stays(tmp_path):
    store = MessageStore(tmp_path, max_segment_bytes=SEG)
    store.open(epoch=1)
    store.append([msg("queue:keep", 0)])
    qseqs = []
    for i in range(5):
        store.append([msg("queue:q", i)])
        qseqs.append(store.last_seqs[0])
    first = segments(tmp_path)[-1]
    zseqs = []
    while segments(tmp_path)[-1] == first:
        store.append([msg("queue:z", len(zseqs))])
        zseqs.append(store.last_seqs[0])
    store.append([Ack("queue:q", s) for s in qseqs])  # in the second segment, for messages in the first
    store.append([Ack("queue:z", s) for s in zseqs])
    churn(store)
    clean(store)
    assert first in segments(tmp_path)  # queue:keep is pending there
    store.close()
    store = reopen_without_checkpoints(tmp_path, 2)
    assert store.pending_count("queue:q") == 0
    assert store.pending_count("queue:keep") == 1
    store.close()


def test_bookkeeping_survives_a_recovery_from_a_checkpoint(tmp_path):
    store = MessageStore(tmp_path, max_segment_bytes=SEG)
    store.open(epoch=1)
    store.append([PutMeta("durable:c1:d1", "topic:t")])
    first = segments(tmp_path)[0]
    store.append([msg("durable:c1:d1", 0)])
    store.close()  # checkpoint format 2: the key's meta segment is in it
    store = MessageStore(tmp_path, max_segment_bytes=SEG)
    store.open(epoch=2)
    seq = next(iter(store.iter_pending("durable:c1:d1"))).seq
    store.append([Ack("durable:c1:d1", seq)])  # no pending message left in the first segment
    churn(store)
    assert first in clean(store)  # carried forward: the checkpoint said where the PutMeta was
    store.close()
    store = reopen_without_checkpoints(tmp_path, 3)
    assert store.get_meta("durable:c1:d1") == "topic:t"
    assert store.pending_count("durable:c1:d1") == 0
    store.close()


def test_segments_go_once_nothing_in_them_is_needed(tmp_path):
    store = MessageStore(tmp_path, max_segment_bytes=SEG)
    store.open(epoch=1)
    store.append([PutMeta("durable:c1:d1", "v1"), msg("queue:keep", 0)])
    keep_seq = store.last_seqs[0]
    first = segments(tmp_path)[0]
    churn(store)
    store.append([PutMeta("durable:c1:d1", "v2")])  # supersedes v1
    churn(store)
    clean(store)
    assert first in segments(tmp_path)  # queue:keep
    store.append([Ack("queue:keep", keep_seq), DeleteKey("durable:c1:d1")])
    churn(store)
    clean(store)
    clean(store)
    left = segments(tmp_path)
    assert first not in left and len(left) <= 4, left  # the chain of acks and deletes unwinds
    store.close()
    store = reopen_without_checkpoints(tmp_path, 2)
    assert store.keys() == ["queue:churn"] or store.keys() == []
    assert store.get_meta("durable:c1:d1") is None and store.pending_count("queue:keep") == 0
    store.close()


def test_delete_key_is_kept_while_the_records_it_deletes_are(tmp_path):
    store = MessageStore(tmp_path, max_segment_bytes=SEG)
    store.open(epoch=1)
    store.append([msg("queue:keep", 0), PutMeta("durable:c1:d1", "v1"), msg("durable:c1:d1", 0)])
    store.append([MarkDispatched("durable:c1:d1", store.last_seqs[0])])
    first = segments(tmp_path)[0]
    churn(store, n=10)
    store.append([DeleteKey("durable:c1:d1")])
    churn(store)
    clean(store)
    assert first in segments(tmp_path)
    store.close()
    store = reopen_without_checkpoints(tmp_path, 2)
    assert "durable:c1:d1" not in store.keys()
    assert store.pending_count("queue:keep") == 1
    store.close()


def test_a_checkpoint_of_format_1_is_read_and_keeps_the_segments_it_covers(tmp_path, caplog):
    store = MessageStore(tmp_path, max_segment_bytes=SEG)
    store.open(epoch=1)
    store.append([PutMeta("durable:c1:d1", "topic:t")])
    churn(store)
    store.checkpoint()
    before = segments(tmp_path)
    store.close(checkpoint=False)
    (tmp_path / CKPT_PREV).unlink(missing_ok=True)
    _downgrade(tmp_path / CKPT_NAME)
    store = MessageStore(tmp_path, max_segment_bytes=SEG)
    report = store.open(epoch=2)
    assert report.checkpoint == CKPT_NAME and report.problems == []
    assert "older format 1" in caplog.text
    assert store.get_meta("durable:c1:d1") == "topic:t"
    churn(store)
    clean(store)
    assert set(before) <= set(segments(tmp_path))
    store.close()
    store = reopen_without_checkpoints(tmp_path, 3)
    assert store.get_meta("durable:c1:d1") == "topic:t"
    store.close()


def test_a_replay_without_a_usable_checkpoint_logs_an_error(tmp_path, caplog):
    store = MessageStore(tmp_path, max_segment_bytes=SEG)
    store.open(epoch=1)
    store.append([PutMeta("durable:c1:d1", "topic:t")])
    churn(store)
    assert clean(store)
    store.close()
    store = reopen_without_checkpoints(tmp_path, 2)
    store.close()
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("no usable checkpoint" in e and "replaying the whole journal" in e for e in errors), errors


def _downgrade(path) -> None:
    """Rewrite a format 2 checkpoint as format 1 (what an older hamq wrote)."""
    import struct
    import zlib

    from hamq.store import index

    c = index.decode_checkpoint(path.read_bytes())
    parts = [index.CKPT_HEAD_V1.pack(index.CKPT_MAGIC_V1, 0, c.lsn, c.segment, c.offset, c.next_seq, c.epoch,
                                     len(c.keys), len(c.live), len(c.audit))]
    for key, ki in c.keys.items():
        kb, mb = key.encode(), (ki.meta or "").encode()
        parts.append(index.KEY_HEAD_V1.pack(len(kb), ki.mark, ki.meta is not None, len(mb), len(ki.seqs)))
        parts += [kb, mb, ki.seqs.tobytes(), ki.segs.tobytes(), ki.offs.tobytes(), ki.lens.tobytes()]
    for seg, n in c.live.items():
        parts.append(index.LIVE.pack(seg, n))
    parts.append(b"\0" + "\0".join(c.audit).encode())
    data = b"".join(parts)
    path.write_bytes(data + struct.pack("<I", zlib.crc32(data)))


def test_a_segment_that_does_not_read_back_cleanly_is_kept_not_carried(tmp_path, caplog):
    store = MessageStore(tmp_path, max_segment_bytes=SEG)
    store.open(epoch=1)
    store.append([msg("queue:keep", 0)])
    qseqs = []
    for i in range(3):
        store.append([msg("queue:q", i)])
        qseqs.append(store.last_seqs[0])
    first = segments(tmp_path)[-1]
    while segments(tmp_path)[-1] == first:
        store.append([msg("queue:z", 0)])
        store.append([Ack("queue:z", store.last_seqs[0])])
    second = segments(tmp_path)[-1]
    store.append([Ack("queue:q", s) for s in qseqs])  # in the second segment
    churn(store)
    store.sync()
    path = tmp_path / f"db-{second}.log"
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF
    path.write_bytes(bytes(data))
    clean(store)
    assert second in segments(tmp_path)
    assert "does not read back cleanly" in caplog.text
    store.close()
