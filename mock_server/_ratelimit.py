"""Server-side rate limiting: one token bucket per credential (and per mock session), and one
per client address for failed authentications.

A bucket that has refilled is the same as no bucket, so it is forgotten: memory follows the
callers active within a refill time, not every session or address ever seen. Each new bucket
looks at the two oldest-placed ones, dropping them if refilled and otherwise moving them to the
back, so the whole map is swept while it at most doubles and taking a token does no extra work;
there are never more than ``capacity``.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Generic, TypeVar

from ._tenants import RateLimit
from ._untrusted import SESSION_CHARS, session_id

K = TypeVar("K")


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    #: When the bucket will be full again if nothing is taken (then it can be forgotten).
    full_at: float


class _Buckets(Generic[K]):
    """Token buckets by key, refilled ones forgotten (see the module docstring)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.map: OrderedDict[K, _Bucket] = OrderedDict()

    def get(self, key: K, now: float, limit: RateLimit) -> _Bucket:
        """The bucket of ``key`` refilled up to ``now`` (a full new one if there was none)."""
        buckets = self.map
        bucket = buckets.get(key)
        if bucket is None:
            self._sweep(now)
            bucket = buckets[key] = _Bucket(float(limit.burst), now, now)
            return bucket
        rate = limit.per_minute / 60.0
        bucket.tokens = min(float(limit.burst), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        return bucket

    def peek(self, key: K) -> _Bucket | None:
        return self.map.get(key)

    @staticmethod
    def took(bucket: _Bucket, limit: RateLimit) -> None:
        """Note that ``bucket``'s tokens changed: when it will be full again."""
        bucket.full_at = bucket.updated + (limit.burst - bucket.tokens) * 60.0 / limit.per_minute

    def _sweep(self, now: float) -> None:
        buckets = self.map
        while len(buckets) >= self.capacity:
            buckets.popitem(last=False)
        for _ in range(2):
            if not buckets:
                return
            key, oldest = next(iter(buckets.items()))
            if oldest.full_at <= now:
                del buckets[key]
            else:
                buckets.move_to_end(key)


# The rate-limit headers' names as ASGI raw headers want them (lower case), and as shown.
_SHOWN = {
    b"x-ratelimit-limit": "X-RateLimit-Limit",
    b"x-ratelimit-remaining": "X-RateLimit-Remaining",
    b"x-ratelimit-reset": "X-RateLimit-Reset",
    b"ratelimit-policy": "RateLimit-Policy",
    b"ratelimit": "RateLimit",
    b"retry-after": "Retry-After",
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of taking a token, with the headers that describe the bucket.

    ``raw`` are ASGI raw headers (lower-case names), appended as they are to every response;
    ``headers`` the same as a dict, for the rare error response built from one.
    """

    allowed: bool
    raw: list[tuple[bytes, bytes]]
    retry_after: int

    @property
    def headers(self) -> dict[str, str]:
        return {_SHOWN[name]: value.decode("latin-1") for name, value in self.raw}


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
        capacity: int = 100_000,
    ) -> None:
        self._buckets: _Buckets[tuple[str, str | None]] = _Buckets(capacity)
        self._http_date = retry_after_format == "http-date"
        self._clock = clock
        self._wall = wall

    def __len__(self) -> int:
        """How many buckets are kept."""
        return len(self._buckets.map)

    def reset(self, session: str | None = None) -> None:
        """Refill every bucket, or only those of one session."""
        buckets = self._buckets.map
        if session is None:
            buckets.clear()
        else:
            session = session_id(session)
            for key in [k for k in buckets if k[1] == session]:
                del buckets[key]

    def retry_after(self, seconds: int) -> str:
        """The ``Retry-After`` value for a wait of ``seconds``, in the configured format."""
        return formatdate(math.ceil(self._wall()) + seconds, usegmt=True) if self._http_date else str(seconds)

    def take(self, credential: str, session: str | None, limit: RateLimit) -> Verdict:
        now = self._clock()
        if session is not None and len(session) > SESSION_CHARS:
            session = session_id(session)
        bucket = self._buckets.get((credential, session), now, limit)
        allowed = bucket.tokens >= 1.0
        if allowed:
            bucket.tokens -= 1.0
            self._buckets.took(bucket, limit)
        return self.verdict(allowed, bucket.tokens, limit)

    def verdict(self, allowed: bool, tokens: float, limit: RateLimit) -> Verdict:
        """The verdict and headers of a bucket left with ``tokens`` (here or in shared state)."""
        rate = limit.per_minute / 60.0
        remaining = int(tokens)
        if remaining >= 1:
            reset = math.ceil((limit.burst - tokens) / rate)
        else:
            reset = max(1, math.ceil((1.0 - tokens) / rate))
        per_minute = limit.per_minute
        raw = [
            (b"x-ratelimit-limit", b"%d" % per_minute),
            (b"x-ratelimit-remaining", b"%d" % remaining),
            (b"x-ratelimit-reset", b"%d" % (math.ceil(self._wall()) + reset)),
            (b"ratelimit-policy", b'"default";q=%d;w=60' % per_minute),
            (b"ratelimit", b'"default";r=%d;t=%d' % (remaining, reset)),
        ]
        if not allowed:
            raw.append((b"retry-after", self.retry_after(reset).encode("latin-1")))
        return Verdict(allowed, raw, reset)


def address_key(host: str | None) -> str:
    """Whom a failure is counted against: the IPv4 address, or the IPv6 /64 (one host's
    usual share), so a client cannot dodge the limit by walking its own subnet."""
    if host is None:
        return ""
    if ":" not in host:
        return host
    try:
        network = ipaddress.IPv6Network(f"{host.split('%', 1)[0]}/64", strict=False)
    except ValueError:
        return host
    return str(network)


class FailureLimiter:
    """Failed authentications per client address: a token bucket each, one token a failure.

    An address with no token left waits before its credentials are checked at all, whatever
    it sends: were a right guess let through, the 429s would only slow the guessing down.
    ``limit`` None turns the limiter off.
    """

    def __init__(
        self,
        limit: RateLimit | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        capacity: int = 100_000,
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._buckets: _Buckets[str] = _Buckets(capacity)

    def __len__(self) -> int:
        """How many addresses have failures still counted."""
        return len(self._buckets.map)

    def wait(self, host: str | None) -> int:
        """Seconds ``host`` must wait before its credentials are checked again; 0: none."""
        limit = self.limit
        if limit is None:
            return 0
        key = address_key(host)
        if self._buckets.peek(key) is None:
            return 0
        bucket = self._buckets.get(key, self._clock(), limit)
        if bucket.tokens >= 1.0:
            return 0
        return max(1, math.ceil((1.0 - bucket.tokens) * 60.0 / limit.per_minute))

    def failed(self, host: str | None) -> None:
        """Count a failed authentication from ``host``."""
        limit = self.limit
        if limit is None:
            return
        bucket = self._buckets.get(address_key(host), self._clock(), limit)
        bucket.tokens = max(0.0, bucket.tokens - 1.0)
        self._buckets.took(bucket, limit)
