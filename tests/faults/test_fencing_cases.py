"""Issue 15, fencing and pauses (cases 1-3): a master that was frozen, or whose lock file was tampered
with, must never serve next to the broker that took over.

Each test drives real ``hamq run`` brokers on one shared directory and asserts what the clients saw.
"""

from __future__ import annotations

import pytest
from faultlab import journal, lockfile
from faultlab.faults import BATCH_MAGIC, FaultSpec
from faultlab.group import DEADLINE_S
from faultlab.stomp import StompClient, collect, drain, encode
from faultlab.watcher import ConnectWatcher


def _names(group):
    return {b.port: b.name for b in group.brokers.values()}


def test_case1_paused_ex_master_receipts_nothing_the_new_master_lacks(make_group):
    group = make_group(keep_alive_ms=300)
    spec = FaultSpec(group.root, "a")
    pause = spec.rule("pause-before-batch-write", ops=["pwrite", "write"], path="*/kahadb/db-*.log",
                      data_prefix=BATCH_MAGIC, action="pause", armed=False)
    old = group.add("a", spec)
    group.wait_master()
    slave = group.add("b")
    group.wait_slave(slave)
    client = StompClient.open(old.port)
    assert client.request("SEND", {"destination": "/queue/orders", "persistent": "true"}, b"before").command == \
        "RECEIPT"

    pause.arm()
    sent = [f"m{i}" for i in range(8)]
    for msg_id in sent:
        client.send("/queue/orders", msg_id.encode(), receipt=msg_id, persistent="true",
                    **{"message-id": msg_id, "_AMQ_DUPL_ID": msg_id})
    pause.wait()  # frozen after its fence check, right before the journal write of the batch
    lockfile.delete(group.kahadb)  # the lock is lost, as a lost NFSv4 lock would be
    new = group.wait_master(exclude=[old])  # took over with a new epoch and sealed the old segment
    old.resume()
    receipted = [f.get("receipt-id") for f in collect(client, idle_s=5) if f.command == "RECEIPT"]
    old.proc.wait(DEADLINE_S)

    delivered = {f.body.decode() for f in drain(new.port, "/queue/orders")}
    missing = [m for m in receipted if m not in delivered]
    print(f"receipted after the takeover: {receipted}; the new master has {sorted(delivered)}; "
          f"batches past the seal: {journal.batches_past_seals(group.kahadb)}")
    assert "before" in delivered
    assert not missing, f"{len(missing)} receipted message(s) the new master never saw: {missing}"


def test_case2_resumed_master_serves_nothing_before_it_rechecks_its_lock(make_group):
    group = make_group(keep_alive_ms=300)
    old = group.add("a")
    group.wait_master()
    slave = group.add("b")
    group.wait_slave(slave)
    producer = StompClient.open(old.port)
    producer.send("/queue/mem", b"in-memory", persistent="false")
    assert producer.request("SEND", {"destination": "/queue/other", "persistent": "false"}, b"x").command == \
        "RECEIPT"  # frames are handled in order: the in-memory message is queued now
    subscriber = StompClient.open(old.port)
    with ConnectWatcher(group.ports, names=_names(group)) as watcher:
        old.pause()
        fresh = StompClient(old.port)  # the kernel accepts it while the broker is frozen
        fresh.sock.sendall(encode("CONNECT", {"accept-version": "1.2", "host": "localhost"}, version="1.0"))
        producer.send("/queue/other", b"non-persistent", receipt="np-1", persistent="false")
        subscriber.subscribe("/queue/mem", "s1", ack="auto")
        lockfile.delete(group.kahadb)
        group.wait_master(exclude=[old])
        old.resume()
        answers = {name: [f.command for f in collect(c, idle_s=3)]
                   for name, c in (("new connection", fresh), ("producer", producer), ("subscriber", subscriber))}
        old.proc.wait(DEADLINE_S)
    print(f"after SIGCONT the ex-master sent: {answers}")
    assert "CONNECTED" not in answers["new connection"]
    assert "RECEIPT" not in answers["producer"]
    assert "MESSAGE" not in answers["subscriber"]
    assert watcher.dual_master() == [], watcher.describe()


def _tamper_and_watch(group, how: str, reps: int):
    """Tamper with the lock file ``reps`` times under a live master; returns (watcher, late receipts)."""
    for name in ("a", "b", "c"):
        group.add(name)
    group.wait_roles(group.wait_master())
    late = []
    with ConnectWatcher(group.ports, names=_names(group)) as watcher:
        for rep in range(reps):
            old = group.wait_master()
            group.wait_roles(old)
            client = StompClient.open(old.port)
            lockfile.TAMPERINGS[how](group.kahadb)
            group.wait_master(exclude=[old])
            try:  # the ex-master must not serve any more: a non-persistent SEND gets no receipt
                client.send("/queue/after", b"late", receipt=f"late-{rep}", persistent="false")
                late += [f.get("receipt-id") for f in collect(client, idle_s=2) if f.command == "RECEIPT"]
            except OSError:
                pass
            client.close()
            old.proc.wait(DEADLINE_S)  # it noticed and halted
            old.start()  # back as a slave, as systemd would restart it
    return watcher, late


def test_case3_lock_file_replaced_by_an_identical_copy_never_gives_two_masters(make_group):
    group = make_group(keep_alive_ms=2000, acquire_ms=100)  # schedulerSupport="false"
    watcher, late = _tamper_and_watch(group, "copy", reps=3)
    print(watcher.describe())
    assert watcher.dual_master() == [], watcher.describe()
    assert late == [], f"the ex-master receipted {late} after the new master took over"


@pytest.mark.parametrize("how", ["delete", "empty"])
def test_lock_file_deleted_or_emptied_never_gives_two_masters(make_group, how):
    """Issue 15 case 3's neighbours, which work today and must keep working."""
    group = make_group(keep_alive_ms=1000, acquire_ms=100)
    watcher, late = _tamper_and_watch(group, how, reps=2)
    print(watcher.describe())
    assert watcher.dual_master() == [], watcher.describe()
    assert late == []
