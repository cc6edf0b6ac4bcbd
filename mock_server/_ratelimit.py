"""Server-side rate limiting: one token bucket per credential (and per mock session)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate

from ._tenants import RateLimit


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of taking a token, with the headers that describe the bucket."""

    allowed: bool
    headers: dict[str, str]
    retry_after: int


class RateLimiter:
    """Token buckets keyed by (credential, session); refills continuously.

    ``X-RateLimit-Reset`` and the IETF ``t`` say when the caller may send again: the
    time until the bucket is full while tokens remain, and the time until the next
    token once none does, so a client that waits for the reset is never refused.
    """

    def __init__(
        self,
        *,
        retry_after_format: str = "seconds",
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._buckets: dict[tuple[str, str | None], _Bucket] = {}
        self._http_date = retry_after_format == "http-date"
        self._clock = clock
        self._wall = wall

    def reset(self, session: str | None = None) -> None:
        """Refill every bucket, or only those of one session."""
        if session is None:
            self._buckets.clear()
        else:
            for key in [k for k in self._buckets if k[1] == session]:
                del self._buckets[key]

    def take(self, credential: str, session: str | None, limit: RateLimit) -> Verdict:
        now = self._clock()
        rate = limit.per_minute / 60.0
        bucket = self._buckets.get((credential, session))
        if bucket is None:
            bucket = self._buckets[(credential, session)] = _Bucket(float(limit.burst), now)
        else:
            bucket.tokens = min(float(limit.burst), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        allowed = bucket.tokens >= 1.0
        if allowed:
            bucket.tokens -= 1.0
        remaining = int(bucket.tokens)
        if remaining >= 1:
            reset = math.ceil((limit.burst - bucket.tokens) / rate)
        else:
            reset = max(1, math.ceil((1.0 - bucket.tokens) / rate))
        headers = {
            "X-RateLimit-Limit": str(limit.per_minute),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(math.ceil(self._wall()) + reset),
            "RateLimit-Policy": f'"default";q={limit.per_minute};w=60',
            "RateLimit": f'"default";r={remaining};t={reset}',
        }
        if not allowed:
            headers["Retry-After"] = (
                formatdate(math.ceil(self._wall()) + reset, usegmt=True) if self._http_date else str(reset)
            )
        return Verdict(allowed, headers, reset)
