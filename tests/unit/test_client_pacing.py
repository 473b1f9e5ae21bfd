import pytest

from hamq.client.pacing import Pacer


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_no_limit_never_sleeps():
    clock = FakeClock()
    pacer = Pacer(0, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        pacer.wait()
    assert clock.slept == []


def test_sends_are_spaced_one_interval_apart():
    clock = FakeClock()
    pacer = Pacer(100, clock=clock, sleep=clock.sleep)
    for _ in range(101):
        pacer.wait()
    # the first slot is immediate; 100 more take one second in all
    assert clock.now == pytest.approx(101.0)
    assert len(clock.slept) == 100


def test_time_spent_sending_counts_towards_the_interval():
    clock = FakeClock()
    pacer = Pacer(10, clock=clock, sleep=clock.sleep)
    pacer.wait()
    clock.now += 0.08  # the send itself took 80 ms
    pacer.wait()
    assert clock.slept == [pytest.approx(0.02)]


def sends_without_sleep_after(lag: float) -> int:
    """At 10 msgs/s, the sends that go out at once after the producer fell ``lag`` seconds behind."""
    clock = FakeClock()
    pacer = Pacer(10, clock=clock, sleep=clock.sleep)
    pacer.wait()
    clock.now += lag
    count = 0
    while True:
        before = len(clock.slept)
        pacer.wait()
        if len(clock.slept) != before:
            return count
        count += 1


def test_after_a_stall_it_bursts_at_most_one_second():
    # a 5 s failover outage: the schedule restarted at "now", no backlog of 50
    assert sends_without_sleep_after(5.0) == 1


def test_small_lag_is_caught_up():
    # half a second late: within the one-second catch-up
    assert sends_without_sleep_after(0.5) == 5


def test_negative_rate_is_refused():
    with pytest.raises(ValueError, match="rate"):
        Pacer(-1)
