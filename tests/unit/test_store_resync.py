"""Mid-segment damage (issue 15 case 5): replay resynchronises on the next batch that verifies.

The decisions are checked on bytes where they can be (``find_resync``), and end to end on
a store directory for the single-bit-flip goal: one flipped bit loses at most the batch it hits.
"""

from __future__ import annotations

import os
import random
import shutil

import pytest

from hamq.store import AddMessage, MessageStore
from hamq.store.codec import BATCH_HEADER_SIZE, encode_add, pack_batch


def payload(i: int, size: int = 200) -> bytes:
    return encode_add(i + 1, AddMessage("queue:a", f"id-{i}", [], bytes([i % 251]) * size))


def segment_bytes(epoch: int, first_lsn: int, n: int) -> bytes:
    return b"".join(pack_batch(payload(i), epoch, first_lsn + i) for i in range(n))


def test_a_false_header_fails_its_checksum():
    from hamq.store.scan import verified_batch

    good = pack_batch(payload(0), 1, 5)
    assert verified_batch(good, 0) == (1, 5, len(good))
    forged = bytearray(good)
    forged[-1] ^= 1  # magic and length look right, the crc does not
    assert verified_batch(bytes(forged), 0) is None
    assert verified_batch(b"HQB1" + os.urandom(200), 0) is None
    assert verified_batch(good[:-1], 0) is None  # cut short


def test_resync_skips_exactly_the_damaged_batch():
    from hamq.store.scan import find_resync

    data = bytearray(segment_bytes(1, 10, 5))
    size = len(data) // 5
    data[size + 100] ^= 4  # the payload of lsn 11
    rest = bytes(data[size:])
    assert find_resync(rest, 64 + size, epoch=1, next_lsn=11) == (64 + 2 * size, 12)


def test_resync_never_replays_an_older_lap_another_epoch_or_a_far_lsn():
    from hamq.store.scan import find_resync

    damaged = b"\xee" * 300
    older = segment_bytes(1, 3, 2)  # lsns at or below the expected one: left from an older lap
    assert find_resync(damaged + older, 0, epoch=1, next_lsn=11) is None
    other = segment_bytes(2, 12, 2)  # another epoch's batches
    assert find_resync(damaged + other, 0, epoch=1, next_lsn=11) is None
    far = segment_bytes(1, 500, 2)  # 489 batches lost in 300 bytes: impossible
    assert find_resync(damaged + far, 0, epoch=1, next_lsn=11) is None
    fine = segment_bytes(1, 12, 2)
    assert find_resync(damaged + fine, 0, epoch=1, next_lsn=11) == (300, 12)


def test_a_batch_shaped_body_inside_the_damaged_batch_is_not_preferred_to_its_successor():
    from hamq.store.scan import find_resync

    fake = pack_batch(payload(7, 20), 1, 12)  # what a crafted body could hold: our epoch, the next lsn
    body = encode_add(1, AddMessage("queue:a", "x", [], b"." * 40 + fake + b"." * 40))
    damaged = bytearray(pack_batch(body, 1, 11))
    damaged[BATCH_HEADER_SIZE + 5] ^= 1  # its payload is hit; its header (and length) are intact
    real = segment_bytes(1, 12, 2)
    assert find_resync(bytes(damaged) + real, 0, epoch=1, next_lsn=11) == (len(damaged), 12)


def test_resync_needs_the_next_lsn_after_the_candidate():
    from hamq.store.scan import find_resync

    lone = pack_batch(payload(1), 1, 12)
    junk = b"\x99" * 100  # neither a batch nor the end of the data after it
    assert find_resync(b"\xee" * 300 + lone + junk, 0, epoch=1, next_lsn=11) is None
    assert find_resync(b"\xee" * 300 + lone, 0, epoch=1, next_lsn=11) == (300, 12)  # the end of the data


def _write(d, n):
    store = MessageStore(d, sync_strategy="never")
    store.open(epoch=1)
    for i in range(n):
        store.append([AddMessage("queue:a", f"id-{i}", [], bytes([i]) * 150)])
    store.close(checkpoint=False)
    with open(os.path.join(d, "db-1.log"), "rb") as f:
        return f.read()


def _recover(d):
    store = MessageStore(d)
    report = store.open(epoch=2)
    got = [store.read(r).message_id for r in store.iter_pending("queue:a")]
    store.close(checkpoint=False)
    return got, report


def test_any_single_bit_flip_loses_at_most_the_batch_it_hits(tmp_path):
    n = 6
    clean = _write(tmp_path / "clean", n)
    size = (len(clean) - 64) // n
    rng = random.Random(15)
    # every bit of batch 3's header, and a sample of the other bytes of batches 2-5
    offsets = [64 + 2 * size + i for i in range(BATCH_HEADER_SIZE)]
    offsets += rng.sample(range(64 + size, 64 + (n - 1) * size), 40)
    for k, off in enumerate(offsets):
        d = tmp_path / f"t{k}"
        shutil.copytree(tmp_path / "clean", d)
        bit = rng.randrange(8) if k >= BATCH_HEADER_SIZE else k % 8
        data = bytearray(clean)
        data[off] ^= 1 << bit
        (d / "db-1.log").write_bytes(bytes(data))
        hit = (off - 64) // size
        got, report = _recover(d)
        expected = [f"id-{i}" for i in range(n) if i != hit]
        assert got == expected, f"bit {bit} of byte {off} (batch {hit}): {got}; {report.problems}"
        assert os.listdir(d / "quarantine"), "the damaged bytes must be kept"


@pytest.mark.parametrize("which", ["middle", "newest"])
def test_a_flipped_bit_in_a_segment_header_loses_no_batch(tmp_path, which):
    store = MessageStore(tmp_path, sync_strategy="never", max_segment_bytes=4096)
    store.open(epoch=1)
    for i in range(40):
        store.append([AddMessage("queue:a", f"id-{i}", [], bytes([i]) * 150)])
    store.close(checkpoint=False)
    segs = sorted(int(n[3:-4]) for n in os.listdir(tmp_path) if n.endswith(".log"))
    victim = segs[1] if which == "middle" else segs[-1]
    path = tmp_path / f"db-{victim}.log"
    data = bytearray(path.read_bytes())
    data[20] ^= 0x10  # inside the sealed length / epoch fields: the header crc fails
    path.write_bytes(bytes(data))
    again = MessageStore(tmp_path)
    report = again.open(epoch=2)
    assert [again.read(r).message_id for r in again.iter_pending("queue:a")] == [f"id-{i}" for i in range(40)]
    assert any("damaged header" in p for p in report.problems), report.problems
    assert not [q for q in report.quarantined if q.endswith(".log") or ".log." in q and ".from-" not in q]
    again.close()
