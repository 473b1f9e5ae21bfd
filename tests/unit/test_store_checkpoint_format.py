"""A checkpoint with a valid checksum but a malformed body must not stop the broker."""

from __future__ import annotations

import struct
import zlib

from hamq.store import AddMessage, MessageStore
from hamq.store.index import CKPT_HEAD, CKPT_NAME


def _fill(path, n):
    store = MessageStore(path)
    store.open(epoch=1)
    for i in range(n):
        store.append([AddMessage("queue:a", f"id-{i}", [("n", str(i))], b"x" * 200)])
    store.sync()
    store.close()  # writes a checkpoint covering every message


def test_checkpoint_from_another_format_is_quarantined_and_the_journal_replayed(tmp_path):
    _fill(tmp_path, 20)
    ckpt = tmp_path / CKPT_NAME
    data = ckpt.read_bytes()
    # Keep the header (magic, counts) but drop the body, then fix up the checksum:
    # this is what a checkpoint of an older layout looks like to the parser.
    body = data[: CKPT_HEAD.size + 3]
    ckpt.write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    (tmp_path / (CKPT_NAME + ".prev")).unlink(missing_ok=True)

    store = MessageStore(tmp_path)
    report = store.open(epoch=2)
    assert any("malformed checkpoint" in p for p in report.problems), report.problems
    assert any(CKPT_NAME in q for q in report.quarantined)
    assert [store.read(r).message_id for r in store.iter_pending("queue:a")] == [f"id-{i}" for i in range(20)]
    store.close()

    # and the next start is clean again
    store = MessageStore(tmp_path)
    assert store.open(epoch=3).problems == []
    assert store.pending_count("queue:a") == 20
    store.close()
