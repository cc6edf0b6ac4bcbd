"""Every policy of one client, in one immutable value (what a driver is configured with)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ._breaker import BreakerPolicy
from ._clock import Clock, Sleep
from ._httpcache import CachePolicy
from ._limiter import RateLimitPolicy
from ._retry import RetryPolicy
from ._timeouts import Timeouts

__all__ = ["Policies"]


def _default_retry() -> RetryPolicy | None:
    return RetryPolicy()


def _default_breaker() -> BreakerPolicy | None:
    return BreakerPolicy()


def _default_cache() -> CachePolicy | None:
    return CachePolicy()


@dataclass(frozen=True, kw_only=True, slots=True)
class Policies:
    """Every policy of the resilient layer; ``None`` turns one off.

    Defaults: retries (:class:`RetryPolicy`), a circuit breaker per host
    (:class:`BreakerPolicy`), a private cache (:class:`CachePolicy`), :class:`Timeouts`; no
    client-side rate limiter (``limiter``), since only the caller knows its quota. Connection
    pools: ``pool_connections`` hosts, ``pool_maxsize`` connections each (10 and 10).
    """

    retry: RetryPolicy | None = field(default_factory=_default_retry)
    breaker: BreakerPolicy | None = field(default_factory=_default_breaker)
    limiter: RateLimitPolicy | None = None
    cache: CachePolicy | None = field(default_factory=_default_cache)
    timeouts: Timeouts = field(default_factory=Timeouts)
    pool_connections: int = 10
    pool_maxsize: int = 10

    @classmethod
    def off(cls, *, timeouts: Timeouts | None = None) -> Policies:
        """No retry, breaker, limiter or cache: only timeouts."""
        return cls(retry=None, breaker=None, limiter=None, cache=None, timeouts=timeouts or Timeouts())

    def with_time(self, *, clock: Clock, wall_clock: Clock, sleep: Sleep) -> Policies:
        """A copy whose every policy uses the given clocks and sleep (tests pass a ``FakeClock``)."""
        changes: dict[str, Any] = {"timeouts": dataclasses.replace(self.timeouts, clock=clock)}
        if self.retry is not None:
            changes["retry"] = dataclasses.replace(
                self.retry, clock=clock, wall_clock=wall_clock, sleep=sleep
            )
        if self.breaker is not None:
            changes["breaker"] = dataclasses.replace(self.breaker, clock=clock)
        if self.limiter is not None:
            changes["limiter"] = dataclasses.replace(
                self.limiter, clock=clock, wall_clock=wall_clock, sleep=sleep
            )
        if self.cache is not None:
            changes["cache"] = dataclasses.replace(self.cache, clock=clock, wall_clock=wall_clock)
        return dataclasses.replace(self, **changes)
