"""Cleanup keeps every segment a full replay still needs (the journal alone must rebuild the index).

A recovery without a usable checkpoint replays the segments that are left; a segment may only go
once nothing in it changes what that replay rebuilds: no pending message, no latest metadata of a
live key, no ack (or delete) of a message in a segment that is still there.
"""

from __future__ import annotations

import os

from hamq.store import Ack, AddMessage, MessageStore, PutMeta
from hamq.store.index import CKPT_NAME, CKPT_PREV

SEG = 4096


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
    assert deleted, "the churn should have emptied segments"
    assert first in segments(tmp_path)
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
