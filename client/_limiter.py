"""Client-side rate limiting: a token bucket per host that also obeys the server.

Sans-IO: :meth:`TokenBucket.reserve` takes a token under the lock and says how long to wait for
it; the caller sleeps (or awaits) without the lock, then asks :meth:`TokenBucket.pause_left`
whether the server announced a pause meanwhile. Waiting callers are served in arrival order and
nobody spins. A call cancelled before it sends gives its token back (:meth:`TokenBucket.cancel`).
:meth:`TokenBucket.admit` also keeps the requests in flight at or below what the server last
said remains (:meth:`TokenBucket.done` when each is answered), so no request is on its way when
an answer says none are left.
The server's own view wins when it is stricter: ``X-RateLimit-Remaining: 0`` (or IETF
``RateLimit: ...;r=0;t=N``) pauses the bucket until the reset, a 429 pauses it for its
``Retry-After``.

``X-RateLimit-Reset`` comes in two forms in the wild: an epoch (GitHub, this project's fake) or
seconds to wait (many others). A value below 10^9 (September 2001 as an epoch) is read as
seconds to wait, anything larger as an epoch.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._clock import Clock, Sleep, monotonic, sleep, to_seconds, wall
from ._errors import ConfigError, DeadlineExceeded, RateLimited
from ._retry import parse_retry_after
from ._timeouts import Deadline

__all__ = ["LimiterRegistry", "RateLimitPolicy", "TokenBucket"]

logger = logging.getLogger("client")

_IETF_REMAINING = re.compile(r"(?:^|[;,\s])r=(\d+)")
_IETF_RESET = re.compile(r"(?:^|[;,\s])t=(\d+(?:\.\d+)?)")
_NO_DEADLINE = Deadline(None)
#: ``X-RateLimit-Reset`` values below this are seconds to wait, not an epoch.
EPOCH_THRESHOLD = 1e9
#: The fields ``observe`` reads (lower-case), besides a 429's Retry-After.
_LIMIT_FIELDS = frozenset({"ratelimit", "x-ratelimit-remaining"})
#: How long the server's last ``Remaining`` caps the requests in flight (it only grows as the
#: server refills, so an old one is merely cautious), and how often a capped request looks again.
REMAINING_TTL = 1.0
IN_FLIGHT_POLL = 0.005
MAX_POLL = 0.25
#: Past this many requests in flight, the cap after a refusal is lifted altogether.
MAX_CAP = 1024.0


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
        # The server's last word on how many requests remain, and the requests in flight: never
        # more in flight than remain, or a request already on its way arrives after the answer
        # that said none were left (the demo's compliance finding under 8 concurrent users).
        self._in_flight = 0
        self._remaining: int | None = None
        self._remaining_at = 0.0
        # After the server refuses (a 429, or none remaining), fewer requests go out at once:
        # halve what was in flight, then grow by one per round of answers (AIMD, as TCP). The
        # fewer on their way, the fewer cross the next refusal before the client can read it.
        self._cap = float("inf")
        # Gated callers look again after a short poll; the more of them, the longer each waits,
        # so a thousand waiting tasks do not flood the event loop with wake-ups.
        self._gated = 0

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

    def reserve(self, deadline: Deadline | None = None) -> float:
        """Take a token now and return the seconds to wait before using it (0: send now).

        Raises :class:`DeadlineExceeded` at once when the token would come after ``deadline``,
        and :class:`RateLimited` at once when waiting is needed and the policy does not block.
        """
        with self._lock:
            return self._reserve(self.policy.clock(), deadline)

    def _reserve(self, now: float, deadline: Deadline | None) -> float:
        policy = self.policy
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
        return max(0.0, wait)

    def take(self, deadline: Deadline | None = None) -> float:
        """:meth:`reserve`, then at once :meth:`admit` when no wait is due, under one lock (the
        common case, a token at hand: one lock and one clock reading instead of two). 0 when
        the request may go now (counted in flight until :meth:`done`); else the seconds to wait
        before asking :meth:`admit` (the token is taken: give it back with :meth:`cancel` if the
        request is not sent). Raises as they do, with no token taken."""
        with self._lock:
            policy = self.policy
            now = policy.clock()
            if self._in_flight == 0 and self._paused_until <= now:
                # The common case, inline (two calls fewer on every request): nothing in flight
                # and no pause, so nothing gates it; a token at hand after the refill admits it.
                self._refill(now)
                if self._tokens >= 1:
                    self._tokens -= 1
                    self._in_flight = 1
                    self._gated = 0
                    return 0.0
            wait = self._reserve(now, deadline)
            if wait > 0:
                return wait
            try:
                return self._admit(now, deadline)
            except BaseException:
                # A pause past the deadline: the token was never used (as ``cancel``).
                self._tokens = min(float(self.policy.burst), self._tokens + 1)
                raise

    def pause_left(self, deadline: Deadline | None = None) -> float:
        """Seconds left of a pause the server announced (0: none); a pause that would cross
        ``deadline`` raises :class:`DeadlineExceeded`.

        Asked after waiting for a reserved slot: a pause announced while the caller slept (a
        429, or none remaining) holds its request too, since its token was taken before the
        server said to stop.
        """
        with self._lock:
            wait = self._paused_until - self.policy.clock()
        if wait > 0 and not (deadline or _NO_DEADLINE).allows(wait):
            raise DeadlineExceeded(
                f"client-side rate limit for {self.host or 'host'}: "
                f"server pause ends in {wait:.3f} s, after the deadline"
            )
        return max(0.0, wait)

    def admit(self, deadline: Deadline | None = None) -> float:
        """After the reserved slot: 0 when the request may go now (it is then counted in flight
        until :meth:`done`), else the seconds to wait before asking again: what is left of a
        server-announced pause, or a short poll while as many requests are in flight as the
        server said remain (their answers will say more). A wait crossing ``deadline`` raises
        :class:`DeadlineExceeded`."""
        with self._lock:
            return self._admit(self.policy.clock(), deadline)

    def _admit(self, now: float, deadline: Deadline | None) -> float:
        wait = self._paused_until - now
        if wait > 0:
            if not (deadline or _NO_DEADLINE).allows(wait):
                raise DeadlineExceeded(
                    f"client-side rate limit for {self.host or 'host'}: "
                    f"server pause ends in {wait:.3f} s, after the deadline"
                )
            return wait
        remaining = self._remaining
        if self._in_flight > 0 and (
            self._in_flight >= self._cap
            or (
                remaining is not None
                and self._in_flight >= remaining
                and now - self._remaining_at < REMAINING_TTL
            )
        ):
            self._gated += 1
            wait = min(MAX_POLL, IN_FLIGHT_POLL * (1 + self._gated // 8))
            if not (deadline or _NO_DEADLINE).allows(wait):
                raise DeadlineExceeded(
                    f"client-side rate limit for {self.host or 'host'}: {remaining} request(s) remain "
                    "and as many are in flight; no answer before the deadline"
                )
            return wait
        self._in_flight += 1
        self._gated = 0
        return 0.0

    def done(self) -> None:
        """An admitted request got its answer (or failed): it is no longer in flight."""
        with self._lock:
            if self._in_flight > 0:
                self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        """Admitted requests not yet answered."""
        return self._in_flight

    def cancel(self) -> None:
        """Give back a token reserved by a call that will not send (cancelled, or failed first)."""
        with self._lock:
            self._refill(self.policy.clock())
            self._tokens = min(float(self.policy.burst), self._tokens + 1)

    def acquire(self, deadline: Deadline | None = None) -> float:
        """Take a token, sleeping (``policy.sleep``) until it is due; return the seconds waited."""
        wait = self.reserve(deadline)
        waited = 0.0
        try:
            while wait > 0:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("rate limit: waiting %.3f s for %s", wait, self.host)
                self.policy.sleep(wait)
                waited += wait
                wait = self.pause_left(deadline)
            # ``acquire`` users send outside this bucket's sight: nothing is counted in flight.
        except BaseException:
            self.cancel()
            raise
        return waited

    def observe(self, status: int, headers: Mapping[str, str], *, done: bool = False) -> None:
        """Adapt to a response: its rate-limit headers, and a 429's ``Retry-After``. ``done``:
        the response answers an admitted request, no longer in flight (as :meth:`done`, under
        the same lock: an answer is one lock, not two)."""
        policy = self.policy
        if not policy.follow_server:
            if done:
                self.done()
            return
        names = getattr(headers, "lower_names", None)
        if names is not None and status != 429 and names().isdisjoint(_LIMIT_FIELDS):
            # Nothing to adapt to (one set operation, not a look-up per field).
            if done:
                self.done()
            return
        pause: float | None = None
        remaining: int | None = None
        try:
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
                        pause = reset_seconds(headers.get("X-RateLimit-Reset"), now=policy.wall_clock())
            if status == 429:
                after = parse_retry_after(headers.get("Retry-After"), now=policy.wall_clock())
                after = policy.pause_on_429 if after is None else after
                pause = after if pause is None else max(pause, after)
            elif remaining == 0 and pause is None:
                pause = policy.pause_on_429
        except BaseException:
            # Unreadable headers (or an interrupt): the answer still ends its request's flight.
            if done:
                self.done()
            raise
        refused = status == 429 or remaining == 0
        if pause is None and remaining is None:
            if done:
                self.done()
            return
        with self._lock:
            if done and self._in_flight > 0:
                self._in_flight -= 1
            now = policy.clock()
            self._refill(now)
            if refused:
                if now >= self._paused_until:
                    # Once per episode, as TCP halves once per window: the other refusals of
                    # a pause answer requests that were already out when it began.
                    self._cap = max(1.0, min(self._cap, self._in_flight + 1.0) / 2)
            elif self._cap != float("inf"):
                self._cap += 1.0 / self._cap
                if self._cap > MAX_CAP:
                    self._cap = float("inf")
            if remaining is not None:
                self._remaining = remaining
                self._remaining_at = now
                if remaining < self._tokens:
                    self._tokens = float(remaining)
            if pause is not None and pause > 0:
                until = now + min(pause, policy.max_server_pause)
                if until > self._paused_until:
                    self._paused_until = until


def reset_seconds(value: str | None, *, now: float) -> float | None:
    """Seconds until an ``X-RateLimit-Reset`` (an epoch, or seconds to wait below 10^9)."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if number != number or number in (float("inf"), float("-inf")):
        return None
    if number < EPOCH_THRESHOLD:
        return max(0.0, number)
    return number - now


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
