"""Retry: when to try again, how long to wait, and when to stop.

The backoff is a pure function of the attempt number and an injected ``random.Random``
(:func:`backoff`); the decision is :meth:`RetryPolicy.next_sleep`, which either returns the
sleep before the next attempt, returns ``None`` (do not retry, hand the outcome back), or raises
the error that ends the call early: :class:`RetriesExhausted`, :class:`RateLimited` when the
server asks for a wait longer than allowed, :class:`DeadlineExceeded` when the sleep would cross
the total deadline.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime

from ._clock import Clock, Sleep, monotonic, sleep, to_seconds, wall
from ._errors import (
    ApiError,
    ConfigError,
    DeadlineExceeded,
    HttpError,
    RateLimited,
    RetriesExhausted,
    TransportError,
)
from ._http import host_key
from ._redaction import redact_url
from ._timeouts import Deadline

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRY_STATUSES",
    "BudgetTracker",
    "RetryBudget",
    "RetryDetails",
    "RetryPolicy",
    "RetryState",
    "backoff",
    "parse_retry_after",
]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: The methods an ``idempotency_hosts`` entry gives an automatic key to.
AUTO_KEY_METHODS = frozenset({"POST", "PATCH"})


def _host_entry(value: str) -> str:
    """An ``idempotency_hosts`` entry as compared: ``scheme://host:port``, or a bare host name."""
    value = value.strip().lower().rstrip("/")
    return host_key(value) if "://" in value else value


_DELTA_SECONDS = re.compile(r"\s*(\d+(?:\.\d+)?)\s*")


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff before retry number ``attempt`` (1 for the first retry).

    Uniform on ``[0, min(cap, base * 2 ** (attempt - 1))]``: the jitter spreads a fleet's
    retries over the whole window instead of synchronising them ("Exponential Backoff And
    Jitter", AWS architecture blog).
    """
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, got {attempt}")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 1000))
    return rng.uniform(0.0, ceiling)


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or ``None`` when absent or unparseable.

    Accepts delta-seconds and HTTP-dates in any of the three RFC 9110 forms, with any zone
    (``GMT``, ``UTC``, ``+0200``, ``PST``...); a zone-less date is read as UTC. ``now`` is the
    wall clock (epoch seconds). A date in the past gives 0.
    """
    if not value:
        return None
    match = _DELTA_SECONDS.fullmatch(value)
    if match is not None:
        return float(match.group(1))
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryBudget:
    """A cap on retries across every call of a session, so a fleet cannot amplify an outage.

    Within the sliding ``window`` (default 10 s), retries may be at most ``ratio`` (default
    0.2) of the logical requests answered (each counted once, when its first attempt ends, so
    a call that queued longer than the window still brings its share), plus ``min_per_second``
    (default 1) so a quiet client can still retry.
    """

    ratio: float = 0.2
    min_per_second: float = 1.0
    window: float = 10.0

    def __post_init__(self) -> None:
        if not 0 <= self.ratio <= 10:
            raise ConfigError(f"RetryBudget.ratio must be within 0..10, got {self.ratio!r}")
        to_seconds("RetryBudget.window", self.window, allow_zero=False)
        if self.min_per_second < 0:
            raise ConfigError(f"RetryBudget.min_per_second must be >= 0, got {self.min_per_second!r}")


class BudgetTracker:
    """The running state of a :class:`RetryBudget`: request and retry counts per time slot."""

    _SLOTS = 10

    def __init__(self, budget: RetryBudget, clock: Clock = monotonic) -> None:
        self.budget = budget
        self._clock = clock
        self._slot_len = budget.window / self._SLOTS
        self._requests = [0] * self._SLOTS
        self._retries = [0] * self._SLOTS
        self._slot = int(clock() // self._slot_len)
        self._lock = threading.Lock()

    def _roll(self) -> int:
        slot = int(self._clock() // self._slot_len)
        if slot != self._slot:
            for s in range(self._slot + 1, min(slot, self._slot + self._SLOTS) + 1):
                self._requests[s % self._SLOTS] = 0
                self._retries[s % self._SLOTS] = 0
            self._slot = slot
        return slot % self._SLOTS

    def record_request(self) -> None:
        """Count one logical request (each call, not each attempt), when its first attempt ends."""
        with self._lock:
            self._requests[self._roll()] += 1

    def try_spend(self) -> bool:
        """Take permission for one retry; ``False`` when the budget is spent."""
        with self._lock:
            index = self._roll()
            allowed = (
                self.budget.ratio * sum(self._requests) + self.budget.min_per_second * self.budget.window
            )
            if sum(self._retries) + 1 > allowed:
                return False
            self._retries[index] += 1
            return True

    def levels(self) -> tuple[int, int]:
        """``(requests, retries)`` within the window."""
        with self._lock:
            self._roll()
            return sum(self._requests), sum(self._retries)


@dataclass(frozen=True, slots=True)
class RetryDetails:
    """What a retry hook is told, before the sleep that precedes the next attempt."""

    method: str
    url: str
    attempt: int
    sleep: float
    idle_for: float
    reason: str
    status: int | None
    retry_after: float | None


class RetryState:
    """The retry bookkeeping of one logical call."""

    __slots__ = ("attempt", "idle_for", "method", "replayable", "retryable_method", "upcoming_sleep", "url")

    def __init__(self, method: str, url: str, *, retryable_method: bool, replayable: bool = True) -> None:
        self.method = method
        self.url = url
        self.retryable_method = retryable_method
        self.replayable = replayable
        self.attempt = 0
        self.idle_for = 0.0
        self.upcoming_sleep = 0.0

    def __repr__(self) -> str:
        return (
            f"RetryState(method={self.method!r}, attempt={self.attempt}, idle_for={self.idle_for:.3f}, "
            f"upcoming_sleep={self.upcoming_sleep:.3f})"
        )


def _no_hooks() -> tuple[Callable[[RetryDetails], None], ...]:
    return ()


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """When and how to retry a failed attempt.

    Defaults: 4 attempts in all; full-jitter backoff from ``backoff_base`` 0.1 s capped at
    ``backoff_cap`` 10 s; retries on connection errors, timeouts and ``statuses``
    429/500/502/503/504, for idempotent ``methods`` or requests carrying ``idempotency_header``;
    the same ``X-Request-ID`` on every attempt; ``Retry-After`` honoured and, beyond
    ``retry_after_cap`` (60 s), a prompt failure (beyond the time left, :class:`DeadlineExceeded`);
    a :class:`RetryBudget`. Connect failures are retried for any method: nothing was sent.

    No automatic ``Idempotency-Key`` by default: a key only makes a retried POST safe against
    an API that honours it, and against one that ignores it a retry is a second charge. Opt in
    with ``idempotency_methods`` (every host: e.g. ``frozenset({"POST"})``) or
    ``idempotency_hosts`` (``"https://api.example.com"`` or a bare host name: its POST and
    PATCH requests get a key). A request given a key by the caller is retried either way.

    ``raise_on_exhausted`` (default true): when the last permitted attempt still gets a
    retryable error status, raise :class:`RetriesExhausted` (:class:`RateLimited` for a 429)
    instead of returning that response.
    """

    attempts: int = 4
    backoff_base: float = 0.1
    backoff_cap: float = 10.0
    statuses: frozenset[int] = RETRY_STATUSES
    methods: frozenset[str] = IDEMPOTENT_METHODS
    respect_retry_after: bool = True
    retry_after_cap: float = 60.0
    budget: RetryBudget | None = field(default_factory=RetryBudget)
    idempotency_header: str = "Idempotency-Key"
    idempotency_methods: frozenset[str] = frozenset()
    idempotency_hosts: frozenset[str] = frozenset()
    request_id_header: str | None = "X-Request-ID"
    raise_on_exhausted: bool = True
    hooks: tuple[Callable[[RetryDetails], None], ...] = field(default_factory=_no_hooks, compare=False)
    rng: random.Random | None = field(default=None, repr=False, compare=False)
    clock: Clock = field(default=monotonic, repr=False, compare=False)
    wall_clock: Clock = field(default=wall, repr=False, compare=False)
    sleep: Sleep = field(default=sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ConfigError(f"RetryPolicy.attempts must be an integer >= 1, got {self.attempts!r}")
        object.__setattr__(self, "backoff_base", to_seconds("RetryPolicy.backoff_base", self.backoff_base))
        object.__setattr__(self, "backoff_cap", to_seconds("RetryPolicy.backoff_cap", self.backoff_cap))
        object.__setattr__(
            self, "retry_after_cap", to_seconds("RetryPolicy.retry_after_cap", self.retry_after_cap)
        )
        object.__setattr__(self, "statuses", frozenset(self.statuses))
        object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))
        object.__setattr__(
            self, "idempotency_methods", frozenset(m.upper() for m in self.idempotency_methods)
        )
        if isinstance(self.idempotency_hosts, str):
            raise ConfigError(
                "RetryPolicy.idempotency_hosts must be a set of hosts, "
                f"got the string {self.idempotency_hosts!r}"
            )
        object.__setattr__(
            self, "idempotency_hosts", frozenset(_host_entry(h) for h in self.idempotency_hosts)
        )
        object.__setattr__(self, "hooks", tuple(self.hooks))

    def wants_key(self, method: str, url: str) -> bool:
        """Whether a request lacking an ``Idempotency-Key`` gets one added (and so is retried)."""
        if method in self.idempotency_methods:
            return True
        if not self.idempotency_hosts or method not in AUTO_KEY_METHODS:
            return False
        key = host_key(url)
        return (
            key in self.idempotency_hosts
            or key.split("://", 1)[1].rsplit(":", 1)[0] in self.idempotency_hosts
        )

    def is_retryable_method(self, method: str, has_idempotency_key: bool) -> bool:
        """Whether a request that may have reached the server can be sent again."""
        return method in self.methods or has_idempotency_key

    def next_sleep(
        self,
        state: RetryState,
        error: ApiError,
        *,
        deadline: Deadline,
        rng: random.Random,
        budget: BudgetTracker | None = None,
    ) -> float | None:
        """The sleep before the next attempt after ``error``, or ``None`` to stop and hand it back.

        Raises :class:`RetriesExhausted`, :class:`RateLimited` or :class:`DeadlineExceeded` (each
        ``from`` ``error``) when retrying is called for but cannot happen in time.
        """
        status = error.status if isinstance(error, HttpError) else None
        if isinstance(error, TransportError):
            if error.request_sent and not state.retryable_method:
                return None
        elif status is None or status not in self.statuses or not state.retryable_method:
            return None
        if not state.replayable:
            return None
        if self.attempts == 1:
            return None
        if state.attempt >= self.attempts:
            if isinstance(error, HttpError) and not self.raise_on_exhausted:
                return None
            raise RetriesExhausted(
                f"gave up after {state.attempt} attempts: {error}",
                last=error,
                attempts=state.attempt,
                response=error.response,
            ) from error
        retry_after = error.retry_after if self.respect_retry_after and isinstance(error, HttpError) else None
        if retry_after is not None and not deadline.allows(retry_after):
            # The server's wait would end after the deadline: waiting is pointless, fail now.
            raise DeadlineExceeded(
                f"the server asked to retry after {retry_after:.1f} s, after the total deadline "
                f"({deadline.remaining():.1f} s left): {error}"
            ) from error
        if retry_after is not None and retry_after > self.retry_after_cap:
            # Waiting longer than the caller allows is unwanted: fail now.
            if isinstance(error, RateLimited):
                raise error
            raise RetriesExhausted(
                f"the server asked to retry after {retry_after:.1f} s, beyond what is allowed: {error}",
                last=error,
                attempts=state.attempt,
                response=error.response,
            ) from error
        delay = backoff(state.attempt, base=self.backoff_base, cap=self.backoff_cap, rng=rng)
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        if not deadline.allows(delay):
            raise DeadlineExceeded(
                f"the next retry (in {delay:.3f} s) would cross the total deadline; last error: {error}"
            ) from error
        if budget is not None and not budget.try_spend():
            raise RetriesExhausted(
                f"retry budget exhausted after {state.attempt} attempts: {error}",
                last=error,
                attempts=state.attempt,
                response=error.response,
            ) from error
        state.upcoming_sleep = delay
        if self.hooks:
            details = RetryDetails(
                method=state.method,
                url=redact_url(state.url),
                attempt=state.attempt,
                sleep=delay,
                idle_for=state.idle_for,
                reason=type(error).__name__,
                status=status,
                retry_after=retry_after,
            )
            for hook in self.hooks:
                hook(details)
        return delay
