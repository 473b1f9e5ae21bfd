"""Preallocated journal segments: the end of the data is found by content, never by file size."""

from __future__ import annotations

import os
import shutil
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from hamq.store import AddMessage, MessageStore
from hamq.store.codec import SEGMENT_HEADER_SIZE
from hamq.store.journal import FILL, fill_at, is_blank, is_fill


def add(i: int) -> AddMessage:
    return AddMessage("queue:a", f"id-{i}", [("n", str(i))], bytes([i % 251 + 1]) * 300)


def ids(store: MessageStore):
    return [store.read(r).message_id for r in store.iter_pending("queue:a")]


def crashed_writer(path, n: int, **kw) -> MessageStore:
    """A store that appended and synced ``n`` batches and then died without close()."""
    store = MessageStore(path, **kw)
    store.open(epoch=1)
    for i in range(n):
        store.append([add(i)])
    store.sync()
    return store


def test_fill_pattern_is_aligned_to_the_file_offset():
    assert fill_at(0, 16) == FILL * 2
    assert fill_at(3, 5) == FILL[3:]
    assert is_fill(fill_at(13, 1000), 13) and not is_fill(fill_at(13, 1000), 14)
    assert not is_fill(b"", 0)


def test_blank_is_zeros_and_fill_in_any_mix_but_nothing_else():
    mixed = fill_at(5, 4096)[:1000] + bytes(2000) + fill_at(3005, 1091)
    assert is_blank(mixed, 5) and is_blank(bytes(100), 7) and is_blank(fill_at(1, 3), 1)
    assert not is_blank(mixed[:2000] + b"\x01" + mixed[2001:], 5)
    assert not is_blank(fill_at(0, 64), 1)  # fill out of phase is not fill


def test_open_segment_is_preallocated_and_close_trims_it(tmp_path):
    store = crashed_writer(tmp_path, 3)
    seg = tmp_path / "db-1.log"
    end = store._journal.offset
    assert os.path.getsize(seg) > end  # fill ahead of the writer
    assert is_fill(seg.read_bytes()[end:], end)
    store.close()
    assert os.path.getsize(seg) == end


def test_never_and_periodic_do_not_preallocate(tmp_path):
    for strategy in ("never", "periodic"):
        d = tmp_path / strategy
        store = crashed_writer(d, 2, sync_strategy=strategy)
        assert os.path.getsize(d / "db-1.log") == store._journal.offset
        store.close()


def test_crash_with_a_preallocated_tail_recovers_cleanly_and_trims_it(tmp_path):
    dead = crashed_writer(tmp_path, 5)
    end = dead._journal.offset
    store = MessageStore(tmp_path)
    report = store.open(epoch=2)
    assert report.problems == [] and report.quarantined == []
    assert ids(store) == [f"id-{i}" for i in range(5)]
    assert report.sealed == (1, end, 1)
    assert os.path.getsize(tmp_path / "db-1.log") == end
    store.close()
    dead._journal.close()  # the dead writer's fds; it trims nothing of the sealed data
    again = MessageStore(tmp_path)
    assert again.open(epoch=2).problems == [] and ids(again) == [f"id-{i}" for i in range(5)]
    again.close()


def test_a_torn_write_into_the_fill_is_a_torn_tail(tmp_path):
    dead = crashed_writer(tmp_path, 4)
    end = dead._journal.offset
    dead.append([add(4)])  # written, never synced: the crash tears it
    with dead._journal._lock:
        dead._journal._flush_queue()  # out of the group-commit queue into the file
    seg = tmp_path / "db-1.log"
    with open(seg, "r+b") as f:
        f.seek(end + 100)
        f.write(fill_at(end + 100, 200))  # the middle of the batch never reached the disk
    store = MessageStore(tmp_path)
    report = store.open(epoch=2)
    assert ids(store) == [f"id-{i}" for i in range(4)]
    (problem,) = report.problems
    assert "torn tail" in problem
    store.close()


def test_rollover_trims_the_old_segment_and_seals_it_at_its_data(tmp_path):
    store = MessageStore(tmp_path, max_segment_bytes=8192)
    store.open(epoch=1)
    for i in range(80):
        store.append([add(i)])
        store.sync()
    segs = sorted(int(n[3:-4]) for n in os.listdir(tmp_path) if n.endswith(".log"))
    assert len(segs) >= 3
    for n in segs[:-1]:
        data = (tmp_path / f"db-{n}.log").read_bytes()
        assert not is_blank(data[-1:], len(data) - 1)  # no fill left behind the data
        assert os.path.getsize(tmp_path / f"db-{n}.log") <= 8192
    store.close()
    again = MessageStore(tmp_path, max_segment_bytes=8192)
    assert again.open(epoch=1).problems == [] and ids(again) == [f"id-{i}" for i in range(80)]
    again.close()


def test_zombie_bytes_past_a_seal_still_warn_but_fill_past_it_does_not(tmp_path, caplog):
    dead = crashed_writer(tmp_path, 2)
    end = dead._journal.offset
    master = MessageStore(tmp_path)
    master.open(epoch=2)
    master.append([add(10)])
    master.close(checkpoint=False)
    seg = tmp_path / "db-1.log"
    with open(seg, "r+b") as f:  # blank space past the seal, as a crash in the middle of a trim leaves it
        f.seek(end)
        f.write(fill_at(end, 5000))
    fresh = MessageStore(tmp_path)
    with caplog.at_level("WARNING", logger="hamq.store"):
        assert fresh.open(epoch=3).problems == []
    assert "past the seal" not in caplog.text
    fresh.close(checkpoint=False)  # the next open replays db-1 again
    dead.append([add(66)])  # the zombie wakes up and writes past the seal
    dead.sync()
    caplog.clear()
    fresh = MessageStore(tmp_path)
    with caplog.at_level("WARNING", logger="hamq.store"):
        fresh.open(epoch=3)
    assert "past the seal" in caplog.text
    assert ids(fresh) == ["id-0", "id-1", "id-10"]
    fresh.close()
    dead._journal.close()


@settings(max_examples=30, deadline=None)
@given(
    synced=st.integers(0, 12),
    unsynced=st.integers(0, 3),
    damage=st.lists(st.tuples(st.integers(0, 20_000), st.sampled_from(["zero", "fill", "cut"])), max_size=2),
)
def test_crash_with_damage_in_the_unsynced_tail_keeps_every_synced_batch(synced, unsynced, damage):
    """Whatever a crash does to the bytes after the last fsync, recovery keeps every synced batch, in order."""
    d = tempfile.mkdtemp(prefix="hamq-prealloc-")
    try:
        dead = crashed_writer(d, synced)
        durable_end = dead._journal.offset
        for i in range(synced, synced + unsynced):
            dead.append([add(i)])
        seg = os.path.join(d, "db-1.log")
        size = os.path.getsize(seg)
        for pos, kind in damage:
            pos = durable_end + pos % max(1, size - durable_end)
            if kind == "cut":
                os.truncate(seg, pos)
                size = min(size, pos)
                continue
            n = min(512, max(0, size - pos))
            with open(seg, "r+b") as f:
                f.seek(pos)
                f.write(bytes(n) if kind == "zero" else fill_at(pos, n))
        store = MessageStore(d)
        store.open(epoch=2)
        got = ids(store)
        assert got[:synced] == [f"id-{i}" for i in range(synced)]
        assert got == [f"id-{i}" for i in range(len(got))]  # a prefix: nothing after a hole
        store.close()
        dead._journal.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_segment_header_size_leaves_the_fill_aligned():
    assert SEGMENT_HEADER_SIZE % len(FILL) == 0


def test_a_failed_preallocation_is_a_warning_and_the_data_is_still_written(tmp_path, monkeypatch, caplog):
    import errno

    from hamq.store import journal

    real = journal._pwrite_all

    def no_room_for_fill(fd, data, offset):
        if data == fill_at(offset, len(data)):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data, offset)

    monkeypatch.setattr(journal, "_pwrite_all", no_room_for_fill)
    store = MessageStore(tmp_path)
    store.open(epoch=1)
    for i in range(3):
        store.append([add(i)])
        assert store.sync() == store.written_lsn
    assert store._journal.preallocate is False
    assert "cannot preallocate journal segment 1" in caplog.text
    assert os.path.getsize(tmp_path / "db-1.log") == store._journal.offset
    store.close()
    again = MessageStore(tmp_path)
    assert again.open(epoch=2).problems == [] and ids(again) == [f"id-{i}" for i in range(3)]
    again.close()


def test_preallocate_false_writes_only_the_data(tmp_path):
    store = crashed_writer(tmp_path, 3, preallocate=False)  # the server's choice on shared storage
    assert os.path.getsize(tmp_path / "db-1.log") == store._journal.offset
    store.close()
    again = MessageStore(tmp_path)
    assert again.open(epoch=2).problems == [] and ids(again) == [f"id-{i}" for i in range(3)]
    again.close()
