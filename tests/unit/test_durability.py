"""The durability tracker (hamq.durability): tokens, deferred effects, ordered and gated release."""

from __future__ import annotations

from hamq.core.engine import Output
from hamq.durability import DurabilityTracker
from hamq.store.ops import Ack, AddMessage, MarkDispatched


class Store:
    """Records batches; written_lsn like MessageStore."""

    def __init__(self):
        self.batches: list = []
        self.written_lsn = 0

    def append(self, ops) -> int:
        self.batches.append(list(ops))
        self.written_lsn += 1
        return self.written_lsn


def out(conn, after=0, name="X"):
    return Output(conn, name, after_lsn=after)


def test_deferred_effects_and_marks_ride_in_front_of_the_next_batch():
    store = Store()
    t = DurabilityTracker(store)
    t.defer(Ack("queue:a", 1))
    t.mark("queue:a", 3)
    t.mark("queue:a", 2)  # lower: the highest wins
    add = AddMessage("queue:b", "m1", [], b"x")
    assert t.append([add]) == 1
    assert store.batches == [[Ack("queue:a", 1), MarkDispatched("queue:a", 3), add]]


def test_an_output_after_the_next_batch_waits_for_that_batch_or_for_what_is_written():
    store = Store()
    t = DurabilityTracker(store)
    delivery = out("c1")
    t.mark("queue:a", 5)
    t.after_next_batch(delivery)
    t.end_round()
    assert delivery.after_lsn == 1 and store.batches == [[MarkDispatched("queue:a", 5)]]
    receipt = out("c1")
    t.after_next_batch(receipt)  # nothing deferred: it waits for everything written so far
    t.end_round()
    assert receipt.after_lsn == 1 and len(store.batches) == 1


def test_release_keeps_each_connections_order_and_stops_at_the_first_not_durable():
    t = DurabilityTracker(Store())
    a1, a2, a3 = out("a", 2, "r1"), out("a", 0, "connected-later"), out("a", 1, "r2")
    b1 = out("b", 1)
    t.hold([a1, a2, a3, b1])
    assert t.release(1) == [("b", [b1])]  # a1 needs lsn 2; a2 and a3 wait behind it
    assert t.waiting() == 1
    assert t.release(2) == [("a", [a1, a2, a3])]
    assert t.waiting() == 0


def test_nothing_is_released_while_the_gate_is_closed_not_even_what_needs_no_disk():
    t = DurabilityTracker(Store())
    open_ = [False]
    t.gate = lambda: open_[0]
    connected = out("a", 0, "CONNECTED")
    t.hold([connected])
    assert t.release(10) == []
    open_[0] = True
    assert t.release(10) == [("a", [connected])]


def test_a_forgotten_connection_gets_nothing():
    t = DurabilityTracker(Store())
    t.hold([out("a", 1)])
    t.forget("a")
    assert t.release(5) == [] and t.waiting() == 0


def test_release_can_look_at_some_connections_only():
    t = DurabilityTracker(Store())
    a, b = out("a"), out("b")
    t.hold([a, b])
    assert t.release(0, ["b"]) == [("b", [b])]
    assert t.release(0) == [("a", [a])]


def test_without_a_store_every_token_is_zero():
    t = DurabilityTracker(None)
    t.defer(Ack("queue:a", 1))
    t.mark("queue:a", 1)
    o = out("a")
    t.after_next_batch(o)
    t.end_round()
    assert o.after_lsn == 0 and t.token_now() == 0


def test_outputs_put_back_after_the_gate_closed_go_out_first_and_their_acks_wait_for_the_hand_over():
    store = Store()
    t = DurabilityTracker(store)
    first, second, third = out("c1", name="A"), out("c1", name="B"), out("c1", name="C")
    second.after_release = (Ack("queue:a", 7),)
    t.hold([first, second])
    ((conn, ready),) = t.release(0)
    assert ready == [first, second]
    t.unrelease(conn, ready)  # the term found the gate closed before writing them
    t.hold([third])
    t.end_round()
    assert store.batches == []  # nothing was handed over, so no ack is written
    ((_, again),) = t.release(0)
    assert again == [first, second, third]
    t.released(again)
    t.end_round()
    assert store.batches == [[Ack("queue:a", 7)]]
