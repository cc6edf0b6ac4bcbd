"""Client-side rate limiting: a token bucket per host that also obeys the server.

Callers reserve a token under the lock and sleep, without the lock, until their reserved slot:
waiting threads are served in arrival order and nobody spins. The server's own view wins when
it is stricter: ``X-RateLimit-Remaining: 0`` (or IETF ``RateLimit: ...;r=0;t=N``) pauses the
bucket until the reset, a 429 pauses it for its ``Retry-After``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._clock import Clock, Sleep, monotonic, sleep, to_seconds, wall
from ._exceptions import ConfigError, DeadlineExceeded, RateLimited
from ._retry import parse_retry_after
from ._timeouts import Deadline

__all__ = ["LimiterRegistry", "RateLimitPolicy", "TokenBucket"]

logger = logging.getLogger("client")

_IETF_REMAINING = re.compile(r"(?:^|[;,\s])r=(\d+)")
_IETF_RESET = re.compile(r"(?:^|[;,\s])t=(\d+(?:\.\d+)?)")
_NO_DEADLINE = Deadline(None)


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimitPolicy:
    """How fast the client may send to one host.

    Defaults: ``rate`` 10 requests a second on average with bursts of ``burst`` 20; ``block``
    (wait for a token, up to the call's deadline) rather than fail fast with
    :class:`RateLimited`; ``follow_server`` headers and 429s; a 429 without ``Retry-After``
    pauses the bucket ``pause_on_429`` (1 s); a server-announced pause is believed up to
    ``max_server_pause`` (300 s).
    """

    rate: float = 10.0
    burst: int = 20
    block: bool = True
    follow_server: bool = True
    pause_on_429: float = 1.0
    max_server_pause: float = 300.0
    clock: Clock = field(default=monotonic, repr=False, compare=False)
    wall_clock: Clock = field(default=wall, repr=False, compare=False)
    sleep: Sleep = field(default=sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, int | float) or not self.rate > 0:
            raise ConfigError(f"RateLimitPolicy.rate must be a positive number, got {self.rate!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ConfigError(f"RateLimitPolicy.burst must be an integer >= 1, got {self.burst!r}")
        object.__setattr__(
            self, "pause_on_429", to_seconds("RateLimitPolicy.pause_on_429", self.pause_on_429)
        )
        object.__setattr__(
            self, "max_server_pause", to_seconds("RateLimitPolicy.max_server_pause", self.max_server_pause)
        )


class TokenBucket:
    """The running state of one host's limiter; shared by threads."""

    def __init__(self, policy: RateLimitPolicy, host: str = "") -> None:
        self.policy = policy
        self.host = host
        self._lock = threading.Lock()
        self._tokens = float(policy.burst)
        self._updated = policy.clock()
        self._paused_until = 0.0
        self.waits = 0

    def level(self) -> float:
        """Tokens available now (negative while reservations are queued)."""
        with self._lock:
            self._refill(self.policy.clock())
            return self._tokens

    @property
    def paused_until(self) -> float:
        """The monotonic time before which the server asked for silence."""
        return self._paused_until

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self._tokens = min(
                float(self.policy.burst), self._tokens + (now - self._updated) * self.policy.rate
            )
            self._updated = now

    def acquire(self, deadline: Deadline | None = None) -> float:
        """Take a token, sleeping until it is due; return the seconds waited.

        Raises :class:`DeadlineExceeded` at once when the token would come after ``deadline``,
        and :class:`RateLimited` at once when waiting is needed and the policy does not block.
        """
        policy = self.policy
        with self._lock:
            now = policy.clock()
            self._refill(now)
            ready_at = now if self._tokens >= 1 else now + (1 - self._tokens) / policy.rate
            if self._paused_until > ready_at:
                ready_at = self._paused_until
            wait = ready_at - now
            if wait > 0:
                if not policy.block:
                    raise RateLimited(
                        f"client-side rate limit for {self.host or 'host'}: next slot in {wait:.3f} s",
                        status=0,
                        retry_after=wait,
                    )
                if not (deadline or _NO_DEADLINE).allows(wait):
                    raise DeadlineExceeded(
                        f"client-side rate limit for {self.host or 'host'}: "
                        f"next slot in {wait:.3f} s, after the deadline"
                    )
                self.waits += 1
            self._tokens -= 1
        waited = 0.0
        while wait > 0:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("rate limit: waiting %.3f s for %s", wait, self.host)
            policy.sleep(wait)
            waited += wait
            # A pause the server announced while we slept (a 429, or none remaining) holds this
            # request too: its token was taken before the server said to stop.
            with self._lock:
                wait = self._paused_until - policy.clock()
                if wait > 0 and not (deadline or _NO_DEADLINE).allows(wait):
                    raise DeadlineExceeded(
                        f"client-side rate limit for {self.host or 'host'}: "
                        f"server pause ends in {wait:.3f} s, after the deadline"
                    )
        return waited

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Adapt to a response: its rate-limit headers, and a 429's ``Retry-After``."""
        policy = self.policy
        if not policy.follow_server:
            return
        pause: float | None = None
        remaining: int | None = None
        ietf = headers.get("RateLimit")
        if ietf is not None:
            m = _IETF_REMAINING.search(ietf)
            if m is not None:
                remaining = int(m.group(1))
                if remaining == 0:
                    t = _IETF_RESET.search(ietf)
                    pause = float(t.group(1)) if t is not None else None
        else:
            raw = headers.get("X-RateLimit-Remaining")
            if raw is not None and raw.isdigit():
                remaining = int(raw)
                if remaining == 0:
                    reset = headers.get("X-RateLimit-Reset")
                    try:
                        pause = float(reset) - policy.wall_clock() if reset is not None else None
                    except ValueError:
                        pause = None
        if status == 429:
            after = parse_retry_after(headers.get("Retry-After"), now=policy.wall_clock())
            after = policy.pause_on_429 if after is None else after
            pause = after if pause is None else max(pause, after)
        elif remaining == 0 and pause is None:
            pause = policy.pause_on_429
        if pause is None and remaining is None:
            return
        with self._lock:
            now = policy.clock()
            self._refill(now)
            if remaining is not None and remaining < self._tokens:
                self._tokens = float(remaining)
            if pause is not None and pause > 0:
                until = now + min(pause, policy.max_server_pause)
                if until > self._paused_until:
                    self._paused_until = until


class LimiterRegistry:
    """One :class:`TokenBucket` per host key, created on first use."""

    def __init__(self, policy: RateLimitPolicy) -> None:
        self.policy = policy
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def get(self, host: str) -> TokenBucket:
        """The bucket for ``host``."""
        bucket = self._buckets.get(host)
        if bucket is None:
            with self._lock:
                bucket = self._buckets.setdefault(host, TokenBucket(self.policy, host))
        return bucket

    def total_waits(self) -> int:
        """Acquisitions that had to wait, over every host."""
        return sum(b.waits for b in list(self._buckets.values()))
