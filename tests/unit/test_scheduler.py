"""Scheduled delivery on a real journal store (hamq.core.scheduler.Scheduler)."""

import calendar

import pytest

from hamq.core.scheduler import JOBS_KEY, MAX_REPEAT, ScheduleError, Scheduler
from hamq.store import MessageStore

T0 = 1_800_000_000.0  # a fixed "now", in seconds


@pytest.fixture
def store_dir(tmp_path):
    return tmp_path / "scheduler"


def _open(path, epoch=1):
    path.mkdir(exist_ok=True)
    store = MessageStore(path, sync_strategy="never")
    store.open(epoch)
    return store


@pytest.fixture
def sched(store_dir):
    store = _open(store_dir)
    yield Scheduler(store)
    store.close()


def send(sched, now=T0, body=b"hello", **headers):
    h = [("destination", "/queue/orders"), ("persistent", "true"), ("receipt", "r1")]
    h += [(k, str(v)) for k, v in headers.items()]
    return sched.schedule(h, body, now)


def hdr(headers, name):
    return next((v for k, v in headers if k == name), None)


def test_plain_message_is_not_a_job(sched):
    assert sched.schedule([("destination", "/queue/a")], b"x", T0) is False
    assert sched.schedule({"destination": "/queue/a", "AMQ_SCHEDULED_DELAY": "0"}, b"x", T0) is False
    assert len(sched) == 0 and sched.next_due() is None


def test_delayed_message_fires_once_at_its_due_time(sched):
    assert send(sched, AMQ_SCHEDULED_DELAY=1500) is True
    assert sched.next_due() == T0 + 1.5
    assert sched.due(T0 + 1.499) == []
    fired = sched.due(T0 + 1.5)
    assert len(fired) == 1
    headers, body = fired[0]
    assert body == b"hello"
    assert hdr(headers, "destination") == "/queue/orders" and hdr(headers, "persistent") == "true"
    assert hdr(headers, "AMQ_SCHEDULED_DELAY") is None and hdr(headers, "receipt") is None
    job_id = hdr(headers, "scheduledJobId")
    assert hdr(headers, "message-id") == job_id + ":0"
    assert not any(k.startswith("x-hamq") for k, _ in headers)
    assert sched.due(T0 + 100) == []
    assert sched.store.pending_count(JOBS_KEY) == 0  # its ack was recorded


def test_repeat_and_period(sched):
    send(sched, AMQ_SCHEDULED_DELAY=1000, AMQ_SCHEDULED_PERIOD=500, AMQ_SCHEDULED_REPEAT=2)
    times = []
    t = T0
    while t < T0 + 10:
        for headers, _ in sched.due(t):
            times.append((round(t - T0, 3), hdr(headers, "message-id").rsplit(":", 1)[1]))
        t += 0.25
    assert times == [(1.0, "0"), (1.5, "1"), (2.0, "2")]


def test_repeat_without_delay_starts_now(sched):
    send(sched, AMQ_SCHEDULED_PERIOD=1000, AMQ_SCHEDULED_REPEAT=1)
    assert len(sched.due(T0)) == 1
    assert sched.next_due() == 0.0  # the firing is not recorded yet
    sched.flush()
    assert sched.next_due() == T0 + 1.0


def test_repeat_is_capped(sched):
    send(sched, AMQ_SCHEDULED_PERIOD=1, AMQ_SCHEDULED_REPEAT=5000)
    assert sched.jobs()[0].repeat == MAX_REPEAT


@pytest.mark.parametrize(
    "headers, problem",
    [
        ({"AMQ_SCHEDULED_DELAY": "soon"}, "AMQ_SCHEDULED_DELAY='soon' is not a whole number"),
        ({"AMQ_SCHEDULED_DELAY": "-5"}, "must be >= 0"),
        ({"AMQ_SCHEDULED_DELAY": "10", "AMQ_SCHEDULED_PERIOD": "x"}, "AMQ_SCHEDULED_PERIOD"),
        ({"AMQ_SCHEDULED_CRON": "* * *"}, "has 3 fields"),
    ],
)
def test_bad_values_are_refused_and_nothing_is_stored(sched, headers, problem):
    with pytest.raises(ScheduleError) as err:
        send(sched, **headers)
    assert problem in str(err.value) and "Fix:" in str(err.value)
    assert len(sched) == 0 and sched.store.pending_count(JOBS_KEY) == 0


def test_cron_fires_each_matching_minute(sched):
    now = float(calendar.timegm((2027, 1, 1, 10, 7, 0)))
    send(sched, now=now, AMQ_SCHEDULED_CRON="*/15 * * * *", AMQ_SCHEDULED_DELAY=99999999)
    first = float(calendar.timegm((2027, 1, 1, 10, 15, 0)))
    assert sched.next_due() == first + 99999.999  # delay shifts each cron firing
    sched.jobs()[0].next_ms = int(first * 1000)  # without the delay, to check the cron steps
    assert len(sched.due(first)) == 1
    sched.flush()
    # after a firing the next cron time plus the delay
    assert sched.next_due() == float(calendar.timegm((2027, 1, 1, 10, 30, 0))) + 99999.999


def test_cron_with_repeat_makes_a_burst(sched):
    now = float(calendar.timegm((2027, 1, 1, 10, 0, 30)))
    send(sched, now=now, AMQ_SCHEDULED_CRON="0 * * * *", AMQ_SCHEDULED_REPEAT=1, AMQ_SCHEDULED_PERIOD=1000)
    eleven = float(calendar.timegm((2027, 1, 1, 11, 0, 0)))
    assert sched.next_due() == eleven
    assert len(sched.due(eleven)) == 1
    sched.flush()
    assert sched.next_due() == eleven + 1
    assert len(sched.due(eleven + 1)) == 1
    sched.flush()
    assert sched.next_due() == eleven + 3600


def test_job_survives_restart_and_fires_at_its_original_time(store_dir):
    store = _open(store_dir, epoch=1)
    Scheduler(store).schedule([("destination", "/queue/a"), ("AMQ_SCHEDULED_DELAY", "60000")], b"x", T0)
    store.close()
    # the next master (higher epoch) reloads the job
    store = _open(store_dir, epoch=2)
    sched = Scheduler(store)
    assert sched.next_due() == T0 + 60
    assert sched.due(T0 + 59) == []
    assert len(sched.due(T0 + 60)) == 1
    sched.flush()
    store.close()
    store = _open(store_dir, epoch=3)
    assert len(Scheduler(store)) == 0 and Scheduler(store).due(T0 + 1000) == []
    store.close()


def test_firing_not_yet_recorded_repeats_with_the_same_message_id(store_dir):
    # A master killed between handing out a firing and recording it: the next master fires it
    # again with the same message-id, which the main store's duplicate audit stores only once.
    store = _open(store_dir, epoch=1)
    sched = Scheduler(store)
    sched.schedule([("destination", "/queue/a"), ("AMQ_SCHEDULED_DELAY", "10")], b"x", T0)
    first = sched.due(T0 + 1)
    store.close()  # "killed" before flush()
    store = _open(store_dir, epoch=2)
    again = Scheduler(store).due(T0 + 2)
    assert hdr(first[0][0], "message-id") == hdr(again[0][0], "message-id")
    store.close()


def test_repeating_job_progress_survives_restart(store_dir):
    store = _open(store_dir, epoch=1)
    sched = Scheduler(store)
    sched.schedule([("destination", "/queue/a"), ("AMQ_SCHEDULED_PERIOD", "1000"),
                    ("AMQ_SCHEDULED_REPEAT", "3")], b"x", T0)
    assert len(sched.due(T0)) == 1 and len(sched.due(T0 + 1)) == 1
    sched.flush()
    store.close()
    store = _open(store_dir, epoch=2)
    sched = Scheduler(store)
    ids = []
    for step in range(2, 10):
        ids += [hdr(h, "message-id").rsplit(":", 1)[1] for h, _ in sched.due(T0 + step)]
    assert ids == ["2", "3"]
    store.close()


def test_tick_delivers_through_the_callback(sched):
    got = []
    sched.deliver = lambda dest, headers, body: got.append((dest, dict(headers), body))
    send(sched, AMQ_SCHEDULED_DELAY=10)
    assert sched.tick(T0) == 0
    assert sched.tick(T0 + 1) == 1
    dest, headers, body = got[0]
    assert dest == "/queue/orders" and "destination" not in headers and body == b"hello"
