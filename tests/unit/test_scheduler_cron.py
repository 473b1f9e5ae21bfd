"""Cron arithmetic of the scheduler (hamq.core.scheduler.CronSpec), in UTC."""

import calendar

import pytest

from hamq.core.scheduler import CronSpec, ScheduleError


def ts(y, mo, d, h=0, mi=0, s=0):
    return float(calendar.timegm((y, mo, d, h, mi, s)))


@pytest.mark.parametrize(
    "cron, after, expected",
    [
        ("*/15 * * * *", ts(2026, 1, 1, 0, 0), ts(2026, 1, 1, 0, 15)),
        ("*/15 * * * *", ts(2026, 1, 1, 0, 7, 30), ts(2026, 1, 1, 0, 15)),
        ("* * * * *", ts(2026, 1, 1, 0, 0, 59), ts(2026, 1, 1, 0, 1)),
        ("0 0 * * *", ts(2026, 12, 31, 23, 59), ts(2027, 1, 1)),
        ("0 9 * * MON-FRI", ts(2026, 11, 28, 12, 0), ts(2026, 11, 30, 9, 0)),  # Saturday -> Monday
        ("0 9 * * 1-5", ts(2026, 11, 28, 12, 0), ts(2026, 11, 30, 9, 0)),
        ("0 12 * * 7", ts(2026, 11, 25), ts(2026, 11, 29, 12)),  # 7 is Sunday
        ("0 12 * * sun", ts(2026, 11, 25), ts(2026, 11, 29, 12)),
        ("30 2 29 2 *", ts(2026, 3, 1), ts(2028, 2, 29, 2, 30)),  # leap day
        ("0 0 1 jan,jul *", ts(2026, 2, 1), ts(2026, 7, 1)),
        ("5,10-12 3 * * *", ts(2026, 1, 1, 3, 10, 30), ts(2026, 1, 1, 3, 11)),
        ("0 0 13 * FRI", ts(2026, 11, 1), ts(2026, 11, 6)),  # both day fields: either matches (Fri 6th)
        ("0 0 13 * FRI", ts(2026, 11, 7), ts(2026, 11, 13)),  # the 13th (a Friday here, too)
        ("0 0 13 * MON", ts(2026, 11, 10), ts(2026, 11, 13)),  # the 13th although a Friday
        ("0-10/5 * * * *", ts(2026, 1, 1, 0, 6), ts(2026, 1, 1, 0, 10)),
        ("10/20 * * * *", ts(2026, 1, 1, 0, 31), ts(2026, 1, 1, 0, 50)),
    ],
)
def test_next_after(cron, after, expected):
    assert CronSpec(cron).next_after(after) == expected


def test_next_after_is_strictly_after_a_matching_minute():
    spec = CronSpec("0 * * * *")
    assert spec.next_after(ts(2026, 1, 1, 5)) == ts(2026, 1, 1, 6)


@pytest.mark.parametrize(
    "cron, problem",
    [
        ("* * * *", "has 4 fields"),
        ("61 * * * *", "out of range"),
        ("* 24 * * *", "out of range"),
        ("* * 0 * *", "out of range"),
        ("a * * * *", "not understood"),
        ("*/0 * * * *", "not understood"),
        ("5-1 * * * *", "out of range"),
        ("* * * foo *", "not understood"),
    ],
)
def test_bad_cron_names_the_field_and_the_fix(cron, problem):
    with pytest.raises(ScheduleError) as err:
        CronSpec(cron)
    assert problem in str(err.value) and "Fix:" in str(err.value)


def test_a_date_that_never_comes_is_an_error():
    with pytest.raises(ScheduleError, match="never matches"):
        CronSpec("0 0 30 2 *").next_after(ts(2026, 1, 1))
