"""What a new master does with the store it takes over (issue 15 cases 4 and 6).

Case 4: what replay found is fsynced before the seal is written and before it counts as
durable; a sealed segment found shorter than its seal is a torn tail of that segment only.
Case 6: a replay makes a checkpoint due at once, and ``checkpoint_journal_bytes`` bounds
the journal a takeover has to replay, whatever the kill history.
"""

from __future__ import annotations

import os

import pytest

from hamq.store import AddMessage, MessageStore


def add(i: int) -> AddMessage:
    return AddMessage("queue:a", f"id-{i}", [], bytes([i % 251]) * 200)


def ids(store: MessageStore):
    return [store.read(r).message_id for r in store.iter_pending("queue:a")]


def killed_master(d, epoch: int, n: int, start: int = 0) -> MessageStore:
    """A master that wrote ``n`` batches without an fsync, then died (its store is never closed)."""
    store = MessageStore(d, sync_strategy="never", checkpoint_interval_ms=3_600_000)
    store.open(epoch=epoch)
    for i in range(start, start + n):
        store.append([add(i)])
    return store


def test_takeover_fsyncs_the_replayed_tail_before_it_writes_the_seal(tmp_path, monkeypatch):
    killed_master(tmp_path, 1, 5)
    events = []
    real_fsync, real_open = os.fsync, os.open

    def fsync(fd):
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        return real_fsync(fd)

    def open_(path, flags, *args, **kw):
        if flags & os.O_EXCL:
            events.append(("create", os.path.basename(os.fspath(path))))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "open", open_)
    store = MessageStore(tmp_path)
    report = store.open(epoch=2)
    monkeypatch.undo()
    assert report.sealed == (1, os.path.getsize(tmp_path / "db-1.log"), 1)
    assert ("fsync", "db-1.log") in events, events
    assert events.index(("fsync", "db-1.log")) < events.index(("create", "db-2.log")), events
    assert store.durable_lsn == 5 and ids(store) == [f"id-{i}" for i in range(5)]
    store.close()


def test_a_sealed_segment_shorter_than_its_seal_loses_only_its_own_tail(tmp_path):
    killed_master(tmp_path, 1, 5)
    b = MessageStore(tmp_path)
    sealed = b.open(epoch=2).sealed[1]
    for i in range(10, 15):
        b.append([add(i)])
    b.sync()
    b.close(checkpoint=False)
    # a power loss takes the last 300 bytes of db-1 (as if the sealer had not fsynced them)
    os.truncate(tmp_path / "db-1.log", sealed - 300)
    store = MessageStore(tmp_path)
    report = store.open(epoch=3)
    size = (sealed - 64) // 5
    kept = [f"id-{i}" for i in range(5) if 64 + (i + 1) * size <= sealed - 300]
    assert len(kept) < 5
    assert ids(store) == kept + [f"id-{i}" for i in range(10, 15)]
    assert not [q for q in report.quarantined if "db-2.log" in q], report.quarantined
    assert os.path.exists(tmp_path / "db-2.log")
    assert any("shorter than its seal" in p for p in report.problems), report.problems
    store.close()
    store = MessageStore(tmp_path)
    assert store.open(epoch=3).problems == []
    store.close()


def test_a_replay_makes_a_checkpoint_due_at_once(tmp_path):
    killed_master(tmp_path, 1, 30)
    store = MessageStore(tmp_path, checkpoint_interval_ms=3_600_000)
    assert store.open(epoch=2).replayed_batches == 30
    assert store.maybe_checkpoint() is True
    assert store.maybe_checkpoint() is False  # and not again until more is written
    store.close(checkpoint=False)


def test_replay_stays_flat_over_20_short_terms(tmp_path):
    replays = []
    for term in range(20):
        store = MessageStore(tmp_path, sync_strategy="never", checkpoint_interval_ms=3_600_000)
        replays.append(store.open(epoch=term + 1).replayed_batches)
        store.maybe_checkpoint()  # what the term's first tick does
        for i in range(20):
            store.append([add(term * 20 + i)])
        # killed -9: no close, no final checkpoint
    assert max(replays) <= 20, replays
    assert len(ids(store)) == 400


def test_checkpoint_journal_bytes_bounds_the_journal_since_the_last_checkpoint(tmp_path):
    store = MessageStore(tmp_path, checkpoint_interval_ms=3_600_000, checkpoint_journal_bytes=10_000)
    store.open(epoch=1)
    store.append([add(0)])
    assert store.maybe_checkpoint() is False
    for i in range(1, 60):
        store.append([add(i)])
    assert store.maybe_checkpoint() is True
    assert store.maybe_checkpoint() is False
    store.sync()
    # killed -9: the next open replays only what followed the checkpoint
    again = MessageStore(tmp_path)
    report = again.open(epoch=2)
    assert report.replayed_batches == 0 and report.checkpoint == "index.ckpt"
    assert len(ids(again)) == 60
    again.close()
    with pytest.raises(ValueError, match="checkpoint_journal_bytes"):
        MessageStore(tmp_path, checkpoint_journal_bytes=0)
