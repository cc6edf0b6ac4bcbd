"""Timeouts, deadlines and the fake clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from client import ConfigError, Deadline, DeadlineExceeded, FakeClock, Timeouts


def test_attempt_timeouts_are_clipped_to_the_deadline():
    """Connect and read never exceed the time left."""
    clock = FakeClock()
    t = Timeouts(connect=3, read=10, total=12, clock=clock)
    d = t.deadline()
    assert t.for_attempt(d) == (3, 10)
    clock.advance(10)
    assert t.for_attempt(d) == (2, 2)
    clock.advance(2)
    with pytest.raises(DeadlineExceeded):
        t.for_attempt(d)


def test_no_total_means_no_deadline():
    """total=None never expires."""
    t = Timeouts(total=None, clock=FakeClock())
    d = t.deadline()
    assert d.remaining() == float("inf") and d.allows(1e9)


def test_deadline_allows_only_waits_ending_before_it():
    """A wait that would end at or after the deadline is not allowed."""
    clock = FakeClock()
    d = Deadline(clock() + 5, clock)
    assert d.allows(4.9) and not d.allows(5) and not d.allows(6)


def test_timedelta_durations_are_accepted():
    """Durations may be timedelta."""
    assert Timeouts(read=timedelta(seconds=2)).read == 2.0


@pytest.mark.parametrize("kwargs", [{"connect": 0}, {"read": -1}, {"total": "soon"}, {"read": float("inf")}])
def test_bad_timeouts_raise_naming_the_field(kwargs):
    """Zero, negative, non-numeric and infinite timeouts are refused with the field's name."""
    with pytest.raises(ConfigError, match=f"Timeouts.{next(iter(kwargs))}"):
        Timeouts(**kwargs)


def test_timeouts_compare_by_value_ignoring_the_clock():
    """Two equal configs with different clocks are equal; repr shows the values."""
    assert Timeouts(read=5) == Timeouts(read=5, clock=FakeClock())
    assert repr(Timeouts(read=5)) == "Timeouts(connect=3.05, read=5.0, total=30.0)"


def test_fake_clock_records_sleeps_and_moves_both_clocks():
    """sleep() advances monotonic and wall time together and records the duration."""
    clock = FakeClock(start=10, epoch=1000)
    clock.sleep(2.5)
    clock.advance(1)
    assert (clock(), clock.wall(), clock.sleeps) == (13.5, 1003.5, [2.5])
    with pytest.raises(ValueError):
        clock.sleep(-1)
