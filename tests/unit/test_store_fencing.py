"""Fencing and seals: a store that is no longer master gets nothing accepted."""

from __future__ import annotations

import os

import pytest

from hamq.store import AddMessage, MessageStore, RememberId, StoreError, StoreFenced
from hamq.store.index import CKPT_NAME, CKPT_PREV


def add(i: int) -> AddMessage:
    return AddMessage("queue:a", f"id-{i}", [("n", str(i))], b"x" * 200)


def ids(store: MessageStore):
    return [store.read(r).message_id for r in store.iter_pending("queue:a")]


def journal_bytes(path) -> dict:
    return {n: (path / n).read_bytes() for n in sorted(os.listdir(path)) if n.endswith(".log")}


class Fence:
    """A fence like the lease's: raises StoreFenced once the epoch moved on."""

    def __init__(self) -> None:
        self.lost = False
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.lost:
            raise StoreFenced("not master any more: epoch moved on")


def test_a_fenced_store_writes_nothing(tmp_path):
    fence = Fence()
    store = MessageStore(tmp_path, fence=fence)
    store.open(epoch=1)
    store.append([add(1)])
    store.sync()
    assert fence.calls >= 2  # open and the group commit
    before = journal_bytes(tmp_path)
    fence.lost = True
    store.append([add(2), RememberId("queue:a", "id-2")])  # queued in memory for the next group commit, not written
    with pytest.raises(StoreFenced):
        store.sync()  # the group commit fences first: nothing becomes durable, nothing is receipted
    with pytest.raises(StoreFenced):
        store.checkpoint()
    with pytest.raises(StoreFenced):
        store.sync()
    store.close()  # logs, writes no checkpoint
    assert journal_bytes(tmp_path) == before
    assert not os.path.exists(tmp_path / CKPT_NAME)
    fresh = MessageStore(tmp_path)
    fresh.open(epoch=2)
    assert ids(fresh) == ["id-1"] and not fresh.is_duplicate("queue:a", "id-2")
    fresh.close()


def test_one_fence_check_per_group_commit(tmp_path):
    fence = Fence()
    store = MessageStore(tmp_path, fence=fence)
    store.open(epoch=1)
    calls = fence.calls
    for i in range(10):
        store.append([add(i)])
    assert fence.calls == calls  # queued: no fence, no write yet
    assert store.durable_lsn < store.written_lsn
    store.sync()
    assert fence.calls == calls + 1
    assert store.durable_lsn == store.written_lsn
    assert len(ids(store)) == 10


def test_reading_a_queued_message_writes_it_out_first(tmp_path):
    fence = Fence()
    store = MessageStore(tmp_path, fence=fence)
    store.open(epoch=1)
    store.append([add(1), add(2)])
    assert ids(store) == ["id-1", "id-2"]  # read back from the file: written (fenced) on demand
    fence.lost = True
    store.append([add(3)])
    with pytest.raises(StoreFenced):
        ids(store)  # the queued batch would have to be written: refused
    store.close()


def test_periodic_and_never_fence_and_write_each_batch(tmp_path):
    for strategy in ("periodic", "never"):
        fence = Fence()
        store = MessageStore(tmp_path / strategy, sync_strategy=strategy, fence=fence)
        store.open(epoch=1)
        store.append([add(1)])
        size = sum(len(b) for b in journal_bytes(tmp_path / strategy).values())
        fence.lost = True
        with pytest.raises(StoreFenced):
            store.append([add(2)])  # reported durable at once, so fenced at once
        assert sum(len(b) for b in journal_bytes(tmp_path / strategy).values()) == size
        store.close()


def test_fence_errors_of_any_kind_stop_the_write(tmp_path):
    def broken():
        raise OSError("EIO reading the epoch file")

    store = MessageStore(tmp_path)
    store.open()
    store.fence = store._journal.fence = broken
    store.append([add(1)])
    with pytest.raises(StoreFenced, match="EIO"):
        store.sync()
    assert isinstance(StoreFenced("x"), StoreError)  # the server halts on either
    store.close()


def test_fenced_rollover_creates_no_segment(tmp_path):
    fence = Fence()
    store = MessageStore(tmp_path, max_segment_bytes=4096, fence=fence)
    store.open(epoch=1)
    while len(os.listdir(tmp_path)) == 1:
        store.append([add(1)])
    store.sync()
    n = len([x for x in os.listdir(tmp_path) if x.endswith(".log")])
    fence.lost = True
    with pytest.raises(StoreFenced):
        for i in range(30):  # enough to fill the segment and roll over
            store.append([add(i)])
    assert len([x for x in os.listdir(tmp_path) if x.endswith(".log")]) == n


def test_open_with_an_older_epoch_is_refused(tmp_path):
    store = MessageStore(tmp_path)
    store.open(epoch=5)
    store.append([add(1)])
    store.close()
    before = journal_bytes(tmp_path)
    with pytest.raises(StoreFenced, match="epoch 5"):
        MessageStore(tmp_path).open(epoch=4)
    assert journal_bytes(tmp_path) == before


def test_zombie_appends_after_takeover_are_ignored(tmp_path):
    # the old master keeps its fd and no fence (as if SIGSTOPped past its lease)
    zombie = MessageStore(tmp_path)
    zombie.open(epoch=1)
    zombie.append([add(1)])
    zombie.sync()

    master = MessageStore(tmp_path)
    report = master.open(epoch=2)
    assert report.sealed[0] == 1 and report.sealed[2] == 1
    master.append([add(2)])

    zombie.append([add(66), RememberId("queue:a", "id-66")])  # lands past the seal of db-1.log
    zombie.append([add(67)])
    zombie.sync()
    assert ids(zombie) == ["id-1", "id-66", "id-67"]  # the zombie believes it wrote them
    master.append([add(3)])
    master.sync()
    master.close(checkpoint=False)
    zombie.close()  # its checkpoint covers bytes past the seal: recovery must refuse it
    assert os.path.exists(tmp_path / CKPT_NAME)

    fresh = MessageStore(tmp_path)
    report = fresh.open(epoch=3)
    assert ids(fresh) == ["id-1", "id-2", "id-3"]
    assert not fresh.is_duplicate("queue:a", "id-66")
    assert report.checkpoint is None  # the zombie's checkpoint was set aside
    fresh.close()


def test_zombie_bytes_ignored_when_replaying_from_a_checkpoint(tmp_path):
    zombie = MessageStore(tmp_path)
    zombie.open(epoch=1)
    zombie.append([add(1)])
    zombie.checkpoint()  # the checkpoint position is inside db-1.log, before the seal
    master = MessageStore(tmp_path)
    master.open(epoch=2)
    zombie.append([add(66)])
    zombie.sync()
    master.append([add(2)])
    master.close(checkpoint=False)
    fresh = MessageStore(tmp_path)
    report = fresh.open(epoch=2)
    assert report.checkpoint in (CKPT_NAME, CKPT_PREV)
    assert ids(fresh) == ["id-1", "id-2"]
    fresh.close()


def test_zombie_cannot_take_the_next_segment(tmp_path):
    zombie = MessageStore(tmp_path, max_segment_bytes=4096)
    zombie.open(epoch=1)  # db-1
    master = MessageStore(tmp_path, max_segment_bytes=4096)
    master.open(epoch=2)  # db-2 seals db-1
    with pytest.raises(StoreFenced, match="another broker"):
        for i in range(100):  # fills db-1 and tries to roll over into db-2, which the master owns
            zombie.append([add(i)])
    master.append([add(1000)])
    master.close()
    fresh = MessageStore(tmp_path)
    fresh.open(epoch=3)
    assert ids(fresh) == ["id-1000"]
    fresh.close()


def test_segment_created_by_a_stale_epoch_is_set_aside(tmp_path):
    # the zombie raced past its fence and created db-3 after the master (epoch 2) wrote db-2
    zombie = MessageStore(tmp_path, max_segment_bytes=4096)
    zombie.open(epoch=1)  # db-1
    master = MessageStore(tmp_path, max_segment_bytes=4096)
    master.open(epoch=2)  # db-2
    master.append([add(1)])
    master.sync()
    from hamq.store.codec import SegmentHeader

    os.close(zombie._journal.create_segment(SegmentHeader(3, 2, 0, 1, 99)))
    # the master rolls over into db-3: it moves the stale one aside and takes the number
    for i in range(40):
        master.append([add(i + 10)])
    master.close(checkpoint=False)
    assert os.listdir(tmp_path / "quarantine")
    fresh = MessageStore(tmp_path)
    fresh.open(epoch=2)
    assert len(ids(fresh)) == 41
    fresh.close()


def test_stale_segment_found_at_recovery_is_set_aside(tmp_path):
    master = MessageStore(tmp_path)
    master.open(epoch=2)
    master.append([add(1)])
    master.close(checkpoint=False)
    from hamq.store.codec import SegmentHeader, pack_segment_header

    (tmp_path / "db-2.log").write_bytes(pack_segment_header(SegmentHeader(2, 1, 9999, 1, 2)))
    fresh = MessageStore(tmp_path)
    report = fresh.open(epoch=3)
    assert any("stale epoch 1" in p for p in report.problems)
    assert ids(fresh) == ["id-1"]
    fresh.close()
