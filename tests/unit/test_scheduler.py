"""Scheduled delivery: the sans-IO job list (hamq.core.scheduler) and the engine that stores its jobs
in the journal, each effect in one batch with what it belongs to (issue 15, cases 7-9)."""

import calendar

import pytest
from test_engine_support import Harness, make_config

from hamq.core.engine import Broker
from hamq.core.scheduler import JOB_ID, JOBS_KEY, MAX_REPEAT, ScheduleError, Scheduler
from hamq.store import Ack, AddMessage, MessageStore

T0 = 1_800_000_000.0  # a fixed "now", in seconds


# ---------------------------------------------------------------- the job list on its own
class Jobs:
    """A Scheduler driven the way the engine drives it, without a store."""

    def __init__(self):
        self.sched = Scheduler()

    def send(self, now=T0, body=b"hello", **headers):
        h = [("destination", "/queue/orders"), ("persistent", "true"), ("receipt", "r1")]
        h += [(k, str(v)) for k, v in headers.items()]
        job = self.sched.plan(h, body, now)
        if job is not None:
            self.sched.add(job)
        return job

    def fire(self, now):
        """Messages due at ``now``; each job that goes on is added back, as the engine does."""
        out = []
        for job in self.sched.due(now):
            out.append(job.fired_message())
            if job.advance():
                self.sched.add(job)
        return out


def hdr(headers, name):
    return next((v for k, v in headers if k == name), None)


@pytest.fixture
def jobs():
    return Jobs()


def test_plain_message_is_not_a_job(jobs):
    assert jobs.sched.plan([("destination", "/queue/a")], b"x", T0) is None
    assert jobs.sched.plan({"destination": "/queue/a", "AMQ_SCHEDULED_DELAY": "0"}, b"x", T0) is None
    assert len(jobs.sched) == 0 and jobs.sched.next_due() is None


def test_delayed_message_fires_once_at_its_due_time(jobs):
    job = jobs.send(AMQ_SCHEDULED_DELAY=1500)
    assert jobs.sched.next_due() == T0 + 1.5
    assert jobs.fire(T0 + 1.499) == []
    fired = jobs.fire(T0 + 1.5)
    assert len(fired) == 1
    headers, body = fired[0]
    assert body == b"hello"
    assert hdr(headers, "destination") == "/queue/orders" and hdr(headers, "persistent") == "true"
    assert hdr(headers, "AMQ_SCHEDULED_DELAY") is None and hdr(headers, "receipt") is None
    assert hdr(headers, "scheduledJobId") == job.job_id
    assert not any(k.startswith("x-hamq") for k, _ in headers)
    assert jobs.fire(T0 + 100) == [] and len(jobs.sched) == 0


def test_job_ids_are_the_brokers_own_never_a_clients_message_id(jobs):
    a = jobs.send(AMQ_SCHEDULED_DELAY=10, **{"message-id": "mine"})
    b = jobs.send(AMQ_SCHEDULED_DELAY=10, **{"message-id": "mine"})
    assert a.job_id != b.job_id and "mine" not in (a.job_id, b.job_id)


def test_repeat_and_period(jobs):
    jobs.send(AMQ_SCHEDULED_DELAY=1000, AMQ_SCHEDULED_PERIOD=500, AMQ_SCHEDULED_REPEAT=2)
    times = []
    t = T0
    while t < T0 + 10:
        times += [round(t - T0, 3) for _ in jobs.fire(t)]
        t += 0.25
    assert times == [1.0, 1.5, 2.0]


def test_repeat_without_delay_starts_now(jobs):
    jobs.send(AMQ_SCHEDULED_PERIOD=1000, AMQ_SCHEDULED_REPEAT=1)
    assert len(jobs.fire(T0)) == 1
    assert jobs.sched.next_due() == T0 + 1.0


def test_repeat_is_capped(jobs):
    jobs.send(AMQ_SCHEDULED_PERIOD=1, AMQ_SCHEDULED_REPEAT=5000)
    assert jobs.sched.jobs()[0].repeat == MAX_REPEAT


@pytest.mark.parametrize(
    "headers, problem",
    [
        ({"AMQ_SCHEDULED_DELAY": "soon"}, "AMQ_SCHEDULED_DELAY='soon' is not a whole number"),
        ({"AMQ_SCHEDULED_DELAY": "-5"}, "must be >= 0"),
        ({"AMQ_SCHEDULED_DELAY": "10", "AMQ_SCHEDULED_PERIOD": "x"}, "AMQ_SCHEDULED_PERIOD"),
        ({"AMQ_SCHEDULED_CRON": "* * *"}, "has 3 fields"),
    ],
)
def test_bad_values_are_refused_and_nothing_is_planned(jobs, headers, problem):
    with pytest.raises(ScheduleError) as err:
        jobs.send(**headers)
    assert problem in str(err.value) and "Fix:" in str(err.value)
    assert len(jobs.sched) == 0


def test_cron_fires_each_matching_minute(jobs):
    now = float(calendar.timegm((2027, 1, 1, 10, 7, 0)))
    jobs.send(now=now, AMQ_SCHEDULED_CRON="*/15 * * * *", AMQ_SCHEDULED_DELAY=99999999)
    first = float(calendar.timegm((2027, 1, 1, 10, 15, 0)))
    assert jobs.sched.next_due() == first + 99999.999  # delay shifts each cron firing
    jobs.sched.jobs()[0].next_ms = int(first * 1000)  # without the delay, to check the cron steps
    assert len(jobs.fire(first)) == 1
    # after a firing the next cron time plus the delay
    assert jobs.sched.next_due() == float(calendar.timegm((2027, 1, 1, 10, 30, 0))) + 99999.999


def test_cron_with_repeat_makes_a_burst(jobs):
    now = float(calendar.timegm((2027, 1, 1, 10, 0, 30)))
    jobs.send(now=now, AMQ_SCHEDULED_CRON="0 * * * *", AMQ_SCHEDULED_REPEAT=1, AMQ_SCHEDULED_PERIOD=1000)
    eleven = float(calendar.timegm((2027, 1, 1, 11, 0, 0)))
    assert jobs.sched.next_due() == eleven
    assert len(jobs.fire(eleven)) == 1
    assert jobs.sched.next_due() == eleven + 1
    assert len(jobs.fire(eleven + 1)) == 1
    assert jobs.sched.next_due() == eleven + 3600


def test_two_records_of_one_job_keep_the_newest(jobs):
    headers = [("destination", "/queue/a"), (JOB_ID, "j"), ("x-hamq-sched-next-ms", "5"),
               ("x-hamq-sched-fired", "0")]
    later = [(k, "1" if k == "x-hamq-sched-fired" else v) for k, v in headers]
    assert jobs.sched.load([(3, "j#0", headers, b""), (7, "j#1", later, b"")]) == [3]
    assert jobs.sched.jobs()[0].seq == 7 and jobs.sched.jobs()[0].fired == 1


# ---------------------------------------------------------------- the engine on a real journal
class Recording(MessageStore):
    """A MessageStore that remembers every batch it was asked to append."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.batches = []

    def append(self, ops):
        ops = list(ops)
        self.batches.append(ops)
        return super().append(ops)


def engine(tmp_path, epoch=1):
    store = Recording(tmp_path / "kahadb")
    store.open(epoch)
    h = Harness(broker=Broker(make_config(tmp_path, scheduler_support=True), store=store))
    h.clock.now = T0
    h.broker.clock = h.clock
    h.broker.recover()
    return h


def restart(h, tmp_path, epoch):
    h.broker.store.close()
    return engine(tmp_path, epoch)


def schedule(h, body=b"x", dest="/queue/later", receipt="r", **headers):
    h.send("p", "SEND", body, destination=dest, persistent="true", receipt=receipt, **headers)
    return h.take("p")


def tick(h, now):
    h.clock.now = now
    h.broker.tick(now)
    h.pump()


def test_a_scheduled_sends_receipt_waits_for_its_job_to_be_durable(tmp_path):
    h = engine(tmp_path)
    h.connect("p")
    frames = schedule(h, AMQ_SCHEDULED_DELAY=5000)
    assert [f.command for f in frames] == ["RECEIPT"]
    store = h.broker.store
    assert store.durable_lsn >= 1 and store.pending_count(JOBS_KEY) == 1


def test_a_firing_its_job_ack_and_its_next_occurrence_are_one_batch(tmp_path):
    h = engine(tmp_path)
    h.connect("p")
    schedule(h, AMQ_SCHEDULED_DELAY=1000, AMQ_SCHEDULED_PERIOD=1000, AMQ_SCHEDULED_REPEAT=1)
    store = h.broker.store
    (job_ref,) = list(store.iter_pending(JOBS_KEY))
    store.batches.clear()
    tick(h, T0 + 1)
    (batch,) = [b for b in store.batches if any(isinstance(op, AddMessage) and op.key == "queue:later" for op in b)]
    assert Ack(JOBS_KEY, job_ref.seq) in batch  # acked exactly where its message is stored
    assert [op.key for op in batch if isinstance(op, AddMessage)] == ["queue:later", JOBS_KEY]  # and goes on


def test_a_firing_that_never_became_durable_fires_again_once_and_only_once(tmp_path):
    h = engine(tmp_path)
    h.connect("p")
    schedule(h, AMQ_SCHEDULED_DELAY=1000)
    h.broker.store.close()  # durable so far: the job
    h = engine(tmp_path, epoch=2)
    store = h.broker.store
    store.sync = lambda: store.durable_lsn  # the firing's batch stays queued, never written or fsynced ...
    tick(h, T0 + 1)
    assert store.written_lsn > store.durable_lsn
    # ... and the master dies (no close: nothing more is written); the next one finds the job unfired
    h = engine(tmp_path, epoch=3)
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/later", id="s", ack="auto")
    tick(h, T0 + 2)
    tick(h, T0 + 3)
    assert len(h.take("c", "MESSAGE")) == 1
    assert h.broker.store.pending_count(JOBS_KEY) == 0


def test_a_resent_scheduled_send_is_receipted_without_a_second_job(tmp_path):
    h = engine(tmp_path)
    h.connect("p")
    for receipt in ("r1", "r2"):
        assert schedule(h, receipt=receipt, AMQ_SCHEDULED_DELAY=1000, _AMQ_DUPL_ID="order-1")[0].get(
            "receipt-id") == receipt
    assert len(h.broker.scheduler) == 1
    h = restart(h, tmp_path, 2)  # after a failover too
    h.connect("p")
    schedule(h, receipt="r3", AMQ_SCHEDULED_DELAY=1000, _AMQ_DUPL_ID="order-1")
    assert len(h.broker.scheduler) == 1


def test_a_commit_schedules_all_of_its_jobs_or_none(tmp_path):
    h = engine(tmp_path)
    h.connect("p")
    h.send("p", "BEGIN", transaction="t1")
    h.send("p", "SEND", b"good", destination="/queue/tx", transaction="t1", AMQ_SCHEDULED_DELAY="500")
    h.send("p", "SEND", b"now", destination="/queue/tx", transaction="t1", persistent="true")
    h.send("p", "SEND", b"bad", destination="/queue/tx", transaction="t1", AMQ_SCHEDULED_DELAY="soon")
    h.send("p", "COMMIT", transaction="t1", receipt="c1")
    assert [f.command for f in h.take("p")] == ["ERROR"]
    h.send("p", "ABORT", transaction="t1")
    tick(h, T0 + 5)
    assert len(h.broker.scheduler) == 0
    assert "tx" not in h.broker.queues or h.broker.queues["tx"].depth == 0
    h.send("p", "BEGIN", transaction="t2")
    h.send("p", "SEND", b"later", destination="/queue/tx", transaction="t2", AMQ_SCHEDULED_DELAY="500")
    h.send("p", "SEND", b"now", destination="/queue/tx", transaction="t2", persistent="true")
    store = h.broker.store
    store.batches.clear()
    h.send("p", "COMMIT", transaction="t2", receipt="c2")
    (batch,) = [b for b in store.batches if any(isinstance(op, AddMessage) for op in b)]
    assert sorted(op.key for op in batch if isinstance(op, AddMessage)) == ["queue:tx", JOBS_KEY]


def test_jobs_and_their_progress_survive_a_restart_at_their_original_times(tmp_path):
    h = engine(tmp_path)
    h.connect("p")
    schedule(h, AMQ_SCHEDULED_PERIOD=1000, AMQ_SCHEDULED_REPEAT=3)
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/later", id="s", ack="auto")
    tick(h, T0)
    tick(h, T0 + 1)
    assert len(h.take("c", "MESSAGE")) == 2
    h = restart(h, tmp_path, 2)
    assert h.broker.scheduler.next_due() == T0 + 2
    h.connect("c")
    h.send("c", "SUBSCRIBE", destination="/queue/later", id="s", ack="auto")
    for step in range(2, 10):
        tick(h, T0 + step)
    frames = h.take("c", "MESSAGE")
    assert len(frames) == 2 and len({f.get("message-id") for f in frames}) == 2
    assert len(h.broker.scheduler) == 0
