"""Time, injected: a monotonic clock for durations, a wall clock for dates, a sleep.

Every policy takes all three, so tests drive them with :class:`FakeClock` and assert the
recorded sleeps instead of waiting.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "Sleep", "monotonic", "sleep", "wall"]


class Clock(Protocol):
    """A function returning seconds as a float (monotonic or epoch, by context)."""

    def __call__(self) -> float: ...


class Sleep(Protocol):
    """A function that blocks the calling thread for some seconds."""

    def __call__(self, seconds: float, /) -> None: ...


monotonic: Clock = time.monotonic
wall: Clock = time.time
sleep: Sleep = time.sleep


class FakeClock:
    """A clock for tests: time moves only when something sleeps or calls :meth:`advance`.

    ``clock`` is the monotonic reading, ``wall`` the epoch reading (they move together), and
    ``sleep`` advances both and records the duration in ``sleeps``. Thread-safe.
    """

    def __init__(self, start: float = 1000.0, *, epoch: float = 1_700_000_000.0) -> None:
        self._now = start
        self._offset = epoch - start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self._now

    def clock(self) -> float:
        """The monotonic reading."""
        return self._now

    def wall(self) -> float:
        """The epoch reading."""
        return self._now + self._offset

    def sleep(self, seconds: float, /) -> None:
        """Record ``seconds`` and advance by it, without blocking."""
        if seconds < 0:
            raise ValueError(f"sleep length must be non-negative, got {seconds}")
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` without recording a sleep."""
        with self._lock:
            self._now += seconds

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r}, sleeps={len(self.sleeps)})"


def to_seconds(name: str, value: object, *, allow_zero: bool = True) -> float:
    """``value`` (float seconds or ``timedelta``) as float seconds; a bad one raises naming ``name``."""
    from datetime import timedelta

    from ._errors import ConfigError

    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    result = float(value)
    if result != result or result < 0 or (result == 0 and not allow_zero) or result == float("inf"):
        raise ConfigError(
            f"{name} must be a finite {'non-negative' if allow_zero else 'positive'} "
            f"number of seconds, got {value!r}"
        )
    return result
