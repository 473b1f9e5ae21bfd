"""Delayed and repeated delivery (``schedulerSupport="true"``), as ActiveMQ's job scheduler. Sans-IO.

A SEND carrying ``AMQ_SCHEDULED_DELAY`` (ms), ``AMQ_SCHEDULED_PERIOD`` (ms),
``AMQ_SCHEDULED_REPEAT`` (extra deliveries, capped at 1000) or
``AMQ_SCHEDULED_CRON`` (5 fields, takes priority) becomes a *job* instead of a
message.  Values are strings, so plain STOMP headers work.

Jobs live in the broker's own journal under the key ``scheduler:jobs``, next
to the messages, so every effect of a job is one atomic store batch with the
effects it belongs to: a scheduled SEND's job with the rest of its
transaction (a COMMIT schedules all of its jobs or none), a firing's message
with the ack of the job and its next occurrence (a job is never acked before
its message is durable, and never fires twice), a resend's duplicate id with
the job it made (a failover resend makes no second job). A job survives a
takeover: the next master reloads it and fires it at its original due time,
not "delay" after the takeover. (Brokers before 1.1 kept jobs in a store of
their own under ``<dataDirectory>/<brokerName>/scheduler``; a new master moves
them into the journal once, see ``hamq.ha.scheduler_store``.)

Sans-IO: the engine asks this module what to do (:meth:`Scheduler.plan`,
:meth:`Scheduler.due`) and writes the store batches itself; the caller passes
``now`` (seconds, like ``time.time()``); nothing here sleeps, reads or writes.

Cron semantics: minute hour day-of-month month day-of-week, in UTC; ``*``,
lists, ranges, ``/step``, month and day names; when both day fields are
restricted a day matching either counts (as in cron).  With a cron entry,
``AMQ_SCHEDULED_REPEAT`` and ``_PERIOD`` make a burst after each cron time
(ActiveMQ's meaning) and ``_DELAY`` shifts it.
"""

from __future__ import annotations

import calendar
import itertools
import time
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

DELAY = "AMQ_SCHEDULED_DELAY"
PERIOD = "AMQ_SCHEDULED_PERIOD"
REPEAT = "AMQ_SCHEDULED_REPEAT"
CRON = "AMQ_SCHEDULED_CRON"
JOB_ID = "scheduledJobId"
SCHEDULE_HEADERS = (DELAY, PERIOD, REPEAT, CRON)
MAX_REPEAT = 1000

#: The store key the jobs live under, and the internal header names that hold a job's state.
JOBS_KEY = "scheduler:jobs"
_STATE = "x-hamq-sched-"
_NEXT = _STATE + "next-ms"
_FIRED = _STATE + "fired"
_BASE = _STATE + "cron-base-ms"

#: Headers of the SEND frame itself, not of the message: a job does not keep them.
_NOT_KEPT = frozenset({"receipt", "transaction", "content-length"})

Headers = List[Tuple[str, str]]
HeadersIn = Union[Mapping[str, str], Sequence[Tuple[str, str]]]


class ScheduleError(ValueError):
    """A scheduling header has a bad value; the message names the header and the fix."""


# ---------------------------------------------------------------- cron

_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_DAYS = {d.upper(): (i + 1) % 7 for i, d in enumerate(calendar.day_abbr)}  # MON=1 .. SUN=0


class CronSpec:
    """A parsed 5-field cron entry; :meth:`next_after` finds the next matching minute."""

    FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day-of-month", 1, 31, {}),
              ("month", 1, 12, _MONTHS), ("day-of-week", 0, 7, _DAYS))

    def __init__(self, text: str):
        parts = text.split()
        if len(parts) != 5:
            raise ScheduleError(
                "%s=%r has %d fields. Fix: give 5 fields 'minute hour day-of-month month day-of-week', "
                "e.g. '*/5 * * * *'" % (CRON, text, len(parts))
            )
        self.text = text
        sets = [self._field(p, *spec) for p, spec in zip(parts, self.FIELDS)]
        self.minutes, self.hours, self.days, self.months, dows = sets
        self.dows = {d % 7 for d in dows}  # 7 is Sunday too
        self.dom_any = parts[2] == "*"
        self.dow_any = parts[4] == "*"

    def _field(self, text: str, name: str, low: int, high: int, names: Dict[str, int]) -> frozenset:
        values = set()
        for item in text.split(","):
            rng, _, step_text = item.partition("/")
            try:
                step = int(step_text) if step_text else 1
                if step < 1:
                    raise ValueError
                if rng == "*":
                    start, end = low, high
                else:
                    a, _, b = rng.partition("-")
                    start = self._value(a, names)
                    end = self._value(b, names) if b else (high if step_text else start)
            except ValueError:
                raise ScheduleError(
                    "%s=%r: the %s field %r is not understood. Fix: use *, N, N-M, lists N,M and steps */N"
                    % (CRON, text, name, item)
                ) from None
            if not (low <= start <= high and low <= end <= high and start <= end):
                raise ScheduleError(
                    "%s: the %s field %r is out of range. Fix: use values %d-%d" % (CRON, name, item, low, high)
                )
            values.update(range(start, end + 1, step))
        return frozenset(values)

    @staticmethod
    def _value(text: str, names: Dict[str, int]) -> int:
        upper = text.strip().upper()
        if upper in names:
            return names[upper]
        return int(upper)

    def _day_matches(self, year: int, month: int, day: int) -> bool:
        dom = day in self.days
        dow = (calendar.weekday(year, month, day) + 1) % 7 in self.dows
        if self.dom_any and self.dow_any:
            return True
        if self.dom_any:
            return dow
        if self.dow_any:
            return dom
        return dom or dow

    def next_after(self, t: float) -> float:
        """The first matching minute strictly after ``t`` (UTC seconds)."""
        first = time.gmtime(int(t // 60 + 1) * 60)
        lo = (first.tm_mon, first.tm_mday, first.tm_hour, first.tm_min)
        for year in range(first.tm_year, first.tm_year + 9):  # a date like Feb 30 never comes
            for month in sorted(self.months):
                if (year, month) < (first.tm_year, lo[0]):
                    continue
                for day in range(1, calendar.monthrange(year, month)[1] + 1):
                    if (year, month, day) < (first.tm_year, lo[0], lo[1]) or not self._day_matches(year, month, day):
                        continue
                    for hour in sorted(self.hours):
                        if (year, month, day, hour) < (first.tm_year, lo[0], lo[1], lo[2]):
                            continue
                        for minute in sorted(self.minutes):
                            if (year, month, day, hour, minute) >= (first.tm_year,) + lo:
                                return float(calendar.timegm((year, month, day, hour, minute, 0)))
        raise ScheduleError("%s=%r never matches a real date. Fix: check day and month" % (CRON, self.text))


# ---------------------------------------------------------------- jobs


def _as_pairs(headers: HeadersIn) -> Headers:
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


def _int_header(pairs: Headers, name: str, minimum: int = 0) -> Optional[int]:
    value = None
    for k, v in pairs:
        if k == name:
            value = v
            break
    if value is None or value.strip() == "":
        return None
    try:
        number = int(value.strip())
    except ValueError:
        raise ScheduleError(
            "%s=%r is not a whole number. Fix: send an integer, e.g. %s:5000" % (name, value, name)
        ) from None
    if number < minimum:
        raise ScheduleError("%s=%r must be >= %d. Fix: send a non-negative number" % (name, value, minimum))
    return number


class Job:
    """A job's definition (from the headers) and its progress, all stored in the job's own headers."""

    def __init__(self, job_id: str, headers: Headers, body: bytes, seq: int = -1):
        self.job_id = job_id
        self.headers = headers
        self.body = body
        self.seq = seq
        state = {k: v for k, v in headers if k.startswith(_STATE)}
        self.next_ms = int(state[_NEXT])
        self.fired = int(state.get(_FIRED, "0"))
        self.cron_base_ms = int(state[_BASE]) if _BASE in state else None
        self.delay = _int_header(headers, DELAY) or 0
        self.period = _int_header(headers, PERIOD) or 0
        self.repeat = min(_int_header(headers, REPEAT) or 0, MAX_REPEAT)
        cron_text = next((v for k, v in headers if k == CRON), "").strip()
        self.cron = CronSpec(cron_text) if cron_text else None

    def fired_message(self) -> Tuple[Headers, bytes]:
        """The message to deliver for this firing: schedule and state headers removed, the job's id added."""
        out = [(k, v) for k, v in self.headers if not k.startswith(_STATE) and k not in SCHEDULE_HEADERS]
        out.append((JOB_ID, self.job_id))
        return out, self.body

    @property
    def record_id(self) -> str:
        """The store's message id for this version of the job (one per firing state)."""
        return "%s#%d" % (self.job_id, self.fired)

    def advance(self) -> bool:
        """Move to the next firing; False when the job is finished."""
        self.fired += 1
        if self.cron is None:
            if self.fired > self.repeat:
                return False
            self.next_ms += self.period
            return True
        in_burst = self.fired % (self.repeat + 1)
        if in_burst:
            self.next_ms += self.period
        else:
            self.cron_base_ms = int(self.cron.next_after(self.cron_base_ms / 1000.0) * 1000)
            self.next_ms = self.cron_base_ms + self.delay
        return True

    def stored_headers(self) -> Headers:
        out = [(k, v) for k, v in self.headers if not k.startswith(_STATE)]
        out.append((_NEXT, str(self.next_ms)))
        out.append((_FIRED, str(self.fired)))
        if self.cron_base_ms is not None:
            out.append((_BASE, str(self.cron_base_ms)))
        return out


class Scheduler:
    """The job list of one master term: decides what to schedule and what is due; writes nothing.

    The engine stores a planned job (:meth:`plan`) in the batch of its SEND,
    then adds it (:meth:`add`); it takes what is :meth:`due`, writes each
    firing's message, the job's ack and its next occurrence in one batch, and
    adds the job again when it goes on.
    """

    def __init__(self, id_prefix: str = "ID:job"):
        self.id_prefix = id_prefix
        self._counter = itertools.count(1)
        self._jobs: Dict[str, Job] = {}

    # -------------------------------------------------------- loading
    def load(self, stored: Iterable[Tuple[int, str, Headers, bytes]]) -> List[int]:
        """Jobs read back from the store as ``(seq, record id, headers, body)``; returns the seqs to ack.

        Two records of one job (left by a pre-1.1 scheduler store whose update
        lost its ack) keep the newest.
        """
        stale = []
        for seq, record_id, headers, body in stored:
            headers = _as_pairs(headers)
            job_id = next((v for k, v in headers if k == JOB_ID), record_id.rsplit("#", 1)[0])
            job = Job(job_id, headers, body, seq)
            previous = self._jobs.get(job_id)
            if previous is not None:
                older, job = (previous, job) if previous.seq < job.seq else (job, previous)
                stale.append(older.seq)
            self._jobs[job_id] = job
        return stale

    # -------------------------------------------------------- API for the engine
    @staticmethod
    def is_scheduled(headers: HeadersIn) -> bool:
        """Does this SEND ask for scheduling (any AMQ_SCHEDULED_* header with a value)?"""
        return any(k in SCHEDULE_HEADERS and str(v).strip() for k, v in _as_pairs(headers))

    def plan(self, headers: HeadersIn, body: bytes, now: float) -> Optional[Job]:
        """The job this SEND asks for, not yet added; None when it is not a job.

        A delay of 0 with no repeat and no cron is not a job (delivered at
        once, as ActiveMQ does).  Raises :class:`ScheduleError` on bad values,
        before anything is stored.
        """
        pairs = [(k, v) for k, v in _as_pairs(headers) if k not in _NOT_KEPT]
        if not self.is_scheduled(pairs):
            return None
        delay = _int_header(pairs, DELAY) or 0
        _int_header(pairs, PERIOD)  # validated now, used when the job advances
        repeat = _int_header(pairs, REPEAT) or 0
        cron_text = next((v for k, v in pairs if k == CRON), "").strip()
        if not cron_text and delay == 0 and repeat == 0:
            return None
        if repeat > MAX_REPEAT:
            pairs = [(k, str(MAX_REPEAT) if k == REPEAT else v) for k, v in pairs]
        now_ms = int(now * 1000)
        job_id = "%s-%d" % (self.id_prefix, next(self._counter))
        state: Headers = [(JOB_ID, job_id)]
        if cron_text:
            base = int(CronSpec(cron_text).next_after(now) * 1000)
            state += [(_NEXT, str(base + delay)), (_BASE, str(base))]
        else:
            state.append((_NEXT, str(now_ms + delay)))
        return Job(job_id, [(k, v) for k, v in pairs if k != JOB_ID] + state, bytes(body))

    def add(self, job: Job) -> None:
        """``job`` (a new one, or the next occurrence of a fired one) is in the store now."""
        self._jobs[job.job_id] = job

    def due(self, now: float) -> List[Job]:
        """Jobs whose time has come, oldest first, taken off the list: the engine fires each one."""
        now_ms = int(now * 1000)
        ready = sorted((j for j in self._jobs.values() if j.next_ms <= now_ms), key=lambda j: j.next_ms)
        for job in ready:
            del self._jobs[job.job_id]
        return ready

    def next_due(self) -> Optional[float]:
        """When the earliest job is due (seconds), or None."""
        if not self._jobs:
            return None
        return min(j.next_ms for j in self._jobs.values()) / 1000.0

    def jobs(self) -> List[Job]:
        return sorted(self._jobs.values(), key=lambda j: j.next_ms)

    def __len__(self) -> int:
        return len(self._jobs)


def strip_schedule_headers(headers: Iterable[Tuple[str, str]]) -> Headers:
    """The headers without AMQ_SCHEDULED_*: for a message delivered at once."""
    return [(k, v) for k, v in headers if k not in SCHEDULE_HEADERS]
