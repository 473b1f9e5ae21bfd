"""Issue 15, journal and recovery (cases 4-6): what a takeover trusts, what one damaged bit costs, and
how much a takeover replays after many short terms.
"""

from __future__ import annotations

import re
import time

from faultlab import journal
from faultlab.faults import BATCH_MAGIC, FaultSpec, power_cut
from faultlab.group import DEADLINE_S
from faultlab.stomp import Closed, StompClient, drain

NEVER_CHECKPOINT = 'checkpointInterval="3600000"'


def _send(client: StompClient, destination: str, msg_id: str, body: bytes = None) -> str:
    """A persistent SEND with a receipt and both duplicate-id headers; returns RECEIPT or ERROR."""
    headers = {"destination": destination, "persistent": "true", "message-id": msg_id, "_AMQ_DUPL_ID": msg_id}
    return client.request("SEND", headers, body if body is not None else msg_id.encode()).command


def test_case4_power_cut_after_a_takeover_loses_none_of_the_new_masters_receipts(make_group):
    group = make_group(keep_alive_ms=300)
    iolog = group.root / "iolog"
    spec_a = FaultSpec(group.root, "a").record_io(iolog)
    die = spec_a.rule("die-after-write", ops=["pwrite", "write"], path="*/kahadb/db-*.log",
                      data_prefix=BATCH_MAGIC, when="after", action="kill", armed=False)
    a = group.add("a", spec_a)
    group.wait_master()
    b = group.add("b", FaultSpec(group.root, "b").record_io(iolog))
    group.wait_slave(b)
    client = StompClient.open(a.port)
    before = [f"a{i}" for i in range(5)]
    assert all(_send(client, "/queue/q", m) == "RECEIPT" for m in before)

    die.arm()  # A writes the next batch, then dies before its fsync: the bytes are only in the page cache
    client.send("/queue/q", b"u", receipt="u", persistent="true", **{"message-id": "u", "_AMQ_DUPL_ID": "u"})
    die.wait()
    a.proc.wait(DEADLINE_S)
    group.wait_master(exclude=[a])
    client = StompClient.open(b.port)
    # the failover resend of the unreceipted message, then more: B receipts them all
    by_b = [m for m in ["u"] + [f"b{i}" for i in range(5)] if _send(client, "/queue/q", m) == "RECEIPT"]
    assert by_b == ["u", "b0", "b1", "b2", "b3", "b4"]
    b_epoch = b.epoch()

    group.kill_all()
    cut = power_cut(iolog, group.kahadb)  # every file back to what an fsync made durable
    c = group.add("c")
    group.wait_master()
    delivered = [f.body.decode() for f in drain(c.port, "/queue/q")]
    quarantined = journal.quarantined_segment_epochs(group.kahadb)
    print(f"power cut put back {cut.files}; C delivered {delivered}; quarantined {quarantined}")
    missing = [m for m in before + by_b if m not in delivered]
    assert not missing, f"receipted messages lost after the power cut: {missing}"
    assert not [q for q in quarantined if q[1] == b_epoch], f"B's segment went to quarantine: {quarantined}"


def _fill(group, count: int):
    """A master that writes ``count`` batches (one receipted message each) and is then killed -9."""
    broker = group.add("a")
    group.wait_master()
    client = StompClient.open(broker.port)
    ids = [f"m{i:04d}" for i in range(count)]
    for msg_id in ids:
        assert _send(client, "/queue/q", msg_id) == "RECEIPT"
    client.close()
    broker.kill()
    return broker, ids


def test_case5_one_flipped_bit_in_batch_50_of_300_loses_at_most_that_batch(make_group):
    group = make_group(kahadb_attrs=NEVER_CHECKPOINT)
    broker, ids = _fill(group, 300)
    (_n, path, _h), = journal.segments(group.kahadb)
    found = journal.batches(path)
    assert len(found) == 300
    damaged = found[49]
    journal.flip_bit(path, damaged.offset + 4 + 2, 4)  # bit 20 of the payload length field of batch 50
    broker.start()
    group.wait_master()
    delivered = [f.body.decode() for f in drain(broker.port, "/queue/q")]
    lost = [m for m in ids if m not in delivered]
    print(f"{len(lost)} of 300 lost: {lost[:3]}...; quarantine {journal.quarantine(group.kahadb)}")
    assert sorted(delivered) == sorted(set(delivered)) and set(delivered) <= set(ids)
    assert lost in ([], [ids[49]]), f"{len(lost)} messages lost for one flipped bit in batch 50 (first {lost[:3]})"
    assert journal.quarantine(group.kahadb), "the damaged bytes must be kept in quarantine/"


_REPLAYED = re.compile(r"replayed[ _](?:batches[=: ]+)?(\d+)")


def _replayed_batches(broker, opens_before: int) -> int:
    """Batches the broker replayed when it last opened the store: /status if it tells, else its log."""
    store = (broker.status() or {}).get("store") or {}
    for key in ("replayedBatches", "recoveryReplayedBatches"):
        if key in store:
            return int(store[key])
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        found = _REPLAYED.findall(broker.log())
        if len(found) > opens_before:
            return int(found[-1])
        time.sleep(0.05)
    raise AssertionError("no replay figure: neither /status store.replayedBatches nor a 'replayed N batches' "
                         f"log line after the takeover; log tail:\n{broker.log()[-2000:]}")


def test_case6_replay_at_takeover_stays_bounded_over_20_short_terms(make_group):
    per_term = 20
    group = make_group(kahadb_attrs='checkpointInterval="120000"')
    master = group.add("a")
    group.wait_master()
    other = group.add("b")
    group.wait_slave(other)
    replays = []
    for term in range(20):
        client = StompClient.open(master.port)
        for i in range(per_term):
            assert _send(client, "/queue/q", f"t{term}-{i}") == "RECEIPT"
        client.close()
        time.sleep(1.5)  # a short term, far below checkpointInterval, but time enough to checkpoint soon after opening
        opens = len(_REPLAYED.findall(other.log()))
        master.kill()
        new = group.wait_master(exclude=[master])
        replays.append(_replayed_batches(new, opens))
        master.start()
        group.wait_slave(master)
        master, other = new, master
    print(f"batches replayed at each of 20 takeovers ({per_term} written per term): {replays}")
    bound = 4 * per_term + 10  # the last term or two, never the kill history
    assert max(replays) <= bound, f"replay grew with the kill history: {replays} (bound {bound})"
    delivered = drain(master.port, "/queue/q", idle_s=3)
    assert len(delivered) == 20 * per_term


def test_takeovers_killed_at_each_step_of_their_recovery_then_power_cut_lose_nothing(make_group):
    """Attack the case 4 and 6 fixes: each new master dies at another step of its takeover.

    A dies between a batch write and its fsync; B after its fsync of the replayed tail (before
    its seal); C after writing its seal (before that fsync); D after its first checkpoint, at
    the rename of its second; E takes over; then the power goes out everywhere. Every receipted
    message, and the unreceipted one whose failover resend was receipted as a duplicate, is
    delivered, and no segment goes to quarantine.
    """
    group = make_group(keep_alive_ms=300, kahadb_attrs='checkpointInterval="3600000" checkpointJournalBytes="64kb"')
    iolog = group.root / "iolog"
    paths = ("*/db-*.log", "*/index.ckpt*")
    spec = {name: FaultSpec(group.root, name).record_io(iolog, paths) for name in "abcde"}
    die_a = spec["a"].rule("after-write", ops=["pwrite", "write"], path="*/kahadb/db-*.log", data_prefix=BATCH_MAGIC,
                           when="after", action="kill", armed=False)
    die_b = spec["b"].rule("after-tail-fsync", ops=["fsync", "fdatasync"], path="*/kahadb/db-*.log", when="after",
                           action="kill")
    die_c = spec["c"].rule("after-seal-write", ops=["pwrite", "write"], path="*/kahadb/db-*.log",
                           data_prefix="HAMQSEG1", when="after", action="kill")
    die_d = spec["d"].rule("at-second-checkpoint-rename", ops=["rename", "replace"], path="*index.ckpt*", nth=2,
                           when="before", action="kill")
    a = group.add("a", spec["a"])
    group.wait_master()
    for name in "bcde":
        group.wait_slave(group.add(name, spec[name]))
    client = StompClient.open(a.port)
    receipted = [f"a{i}" for i in range(5)]
    assert all(_send(client, "/queue/q", m) == "RECEIPT" for m in receipted)
    die_a.arm()
    client.send("/queue/q", b"u", receipt="u", persistent="true", **{"message-id": "u", "_AMQ_DUPL_ID": "u"})
    for rule in (die_a, die_b, die_c):
        rule.wait()
    d = group.wait_master(exclude=[group["a"], group["b"], group["c"]])
    assert d.name == "d", f"{d.name} took over; B and C should have died on their way"
    client = StompClient.open(d.port)
    assert _send(client, "/queue/q", "u") == "RECEIPT"  # the failover resend: a duplicate of the replayed tail
    receipted.append("u")
    sent = 0
    while not die_d.events():
        msg_id = f"d{sent}"
        try:
            answer = _send(client, "/queue/q", msg_id, msg_id.encode() + b":" + b"x" * 4000)
        except Closed:
            break  # D died at its checkpoint while this SEND waited: never receipted
        if answer != "RECEIPT":
            break
        receipted.append(msg_id)
        sent += 1
        assert sent < 2000, "D never wrote its second checkpoint"
        time.sleep(0.005)  # paced, so that D's checkpoint ticks see the journal grow
    die_d.wait()
    group.wait_master(exclude=[group[n] for n in "abcd"])
    group.kill_all()
    cut = power_cut(iolog, group.kahadb)
    last = group.add("f")  # without kill rules: the drain below must not meet another kill
    group.wait_master()
    delivered = [f.body.split(b":")[0].decode() for f in drain(last.port, "/queue/q")]
    print(f"power cut put back {cut.files}; delivered {delivered}; quarantine {journal.quarantine(group.kahadb)}")
    missing = [m for m in receipted if m not in delivered]
    assert not missing, f"receipted messages lost: {missing}"
    assert len(delivered) == len(set(delivered)), f"delivered twice: {delivered}"
    assert not journal.quarantined_segment_epochs(group.kahadb), journal.quarantine(group.kahadb)
