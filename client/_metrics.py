"""What the client saw, and what to tune because of it.

Counters for logical requests, attempts, retries, cache outcomes, breaker transitions and
rate-limit waits, and a bounded ring of recent latencies for p50/p95/p99. :meth:`Metrics.advice`
turns them into sentences naming the setting to change.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ._breaker import BreakerState, BreakerTransition

__all__ = ["Metrics", "MetricsSnapshot"]

# Every counter bumped with ``+=`` below (the others through ``dict.get``).
_PER_CALL = (
    "requests",
    "attempts",
    "retries",
    "failures",
    "cache_hits",
    "attempt_statuses",
    "server_throttled",
    "rate_limit_waits",
    "breaker_transitions",
    "breaker_opens",
)


def _pct(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True, kw_only=True, slots=True)
class MetricsSnapshot:
    """A consistent copy of the counters; latencies in seconds."""

    requests: int = 0
    attempts: int = 0
    retries: int = 0
    failures: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    cache_revalidations: int = 0
    cache_stale_served: int = 0
    breaker_transitions: int = 0
    breaker_opens: int = 0
    breaker_rejections: int = 0
    rate_limit_waits: int = 0
    rate_limit_wait_seconds: float = 0.0
    budget_refusals: int = 0
    auth_refreshes: int = 0
    latency_p50: float = 0.0
    latency_p95: float = 0.0
    latency_p99: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def retry_ratio(self) -> float:
        """Retries per logical request."""
        return self.retries / self.requests if self.requests else 0.0

    @property
    def cache_hit_ratio(self) -> float:
        """Hits (fresh or revalidated) per cacheable lookup."""
        lookups = self.cache_hits + self.cache_misses + self.cache_revalidations
        return (self.cache_hits + self.cache_revalidations) / lookups if lookups else 0.0


class Metrics:
    """Thread-safe counters shared by every call of a session."""

    def __init__(self, *, reservoir: int = 4096, read_timeout: float | None = None) -> None:
        self._lock = threading.Lock()
        self._size = reservoir
        self._latencies: list[float] = []
        self._next = 0
        self.read_timeout = read_timeout
        # Plain dicts (a Counter's item access is a subclass's, slower on every call); the counts
        # every call bumps start at 0, so their updates are plain look-ups.
        self._c: dict[str, int] = dict.fromkeys(_PER_CALL, 0)
        self._statuses: dict[int, int] = {}
        self._errors: dict[str, int] = {}
        self._wait_seconds = 0.0

    def _latency(self, seconds: float) -> None:
        if len(self._latencies) < self._size:
            self._latencies.append(seconds)
        else:
            self._latencies[self._next] = seconds
            self._next = (self._next + 1) % self._size

    def record_call(
        self,
        *,
        latency: float,
        attempts: int,
        status: int | None,
        error: str | None,
        counter: str | None = None,
    ) -> None:
        """One logical request finished after ``attempts`` attempts (``counter``: a named counter
        to bump with it, under the same lock)."""
        with self._lock:
            c = self._c
            c["requests"] += 1
            if counter is not None:
                c[counter] = c.get(counter, 0) + 1
            c["attempts"] += attempts
            if attempts > 1:
                c["retries"] += attempts - 1
            if status is not None:
                statuses = self._statuses
                statuses[status] = statuses.get(status, 0) + 1
            if error is not None:
                c["failures"] += 1
                self._errors[error] = self._errors.get(error, 0) + 1
            latencies = self._latencies
            if len(latencies) < self._size:
                latencies.append(latency)
            else:
                self._latency(latency)

    def record_hit(self, latency: float = 0.0) -> None:
        """A logical request answered by a fresh cache entry."""
        with self._lock:
            self._c["requests"] += 1
            self._c["cache_hits"] += 1
            self._statuses[200] = self._statuses.get(200, 0) + 1
            self._latency(latency)

    def incr(self, name: str, amount: int = 1) -> None:
        """Bump a named counter (``cache_misses``, ``cache_revalidations``, ``breaker_rejections``...)."""
        with self._lock:
            self._c[name] = self._c.get(name, 0) + amount

    def record_body_error(self, error: str) -> None:
        """A streamed body failed after its call was counted (the head was an answer)."""
        with self._lock:
            self._c["failures"] += 1
            self._errors[error] = self._errors.get(error, 0) + 1

    def record_status(self, status: int) -> None:
        """An attempt's response status (retried attempts included)."""
        with self._lock:
            self._c["attempt_statuses"] += 1
            if status == 429:
                self._c["server_throttled"] += 1

    def record_wait(self, seconds: float) -> None:
        """The rate limiter made a call wait."""
        with self._lock:
            self._c["rate_limit_waits"] += 1
            self._wait_seconds += seconds

    def breaker_listener(self, transition: BreakerTransition) -> None:
        """A breaker listener counting transitions and openings."""
        with self._lock:
            self._c["breaker_transitions"] += 1
            if transition.new is BreakerState.OPEN:
                self._c["breaker_opens"] += 1

    def snapshot(self) -> MetricsSnapshot:
        """A consistent copy of everything counted so far."""
        with self._lock:
            c = dict(self._c)
            ordered = sorted(self._latencies)
            statuses = dict(self._statuses)
            errors = dict(self._errors)
            waited = self._wait_seconds
        return MetricsSnapshot(
            requests=c.get("requests", 0),
            attempts=c.get("attempts", 0),
            retries=c.get("retries", 0),
            failures=c.get("failures", 0),
            cache_hits=c.get("cache_hits", 0),
            cache_misses=c.get("cache_misses", 0),
            cache_revalidations=c.get("cache_revalidations", 0),
            cache_stale_served=c.get("cache_stale_served", 0),
            breaker_transitions=c.get("breaker_transitions", 0),
            breaker_opens=c.get("breaker_opens", 0),
            breaker_rejections=c.get("breaker_rejections", 0),
            rate_limit_waits=c.get("rate_limit_waits", 0),
            rate_limit_wait_seconds=waited,
            budget_refusals=c.get("budget_refusals", 0),
            auth_refreshes=c.get("auth_refreshes", 0),
            latency_p50=_pct(ordered, 0.50),
            latency_p95=_pct(ordered, 0.95),
            latency_p99=_pct(ordered, 0.99),
            statuses=statuses,
            errors=errors,
        )

    def server_throttled(self) -> int:
        """Attempts the server answered with 429."""
        with self._lock:
            return self._c.get("server_throttled", 0)

    def advice(self) -> list[str]:
        """Sentences naming what to tune, most pressing first; empty when nothing stands out."""
        s = self.snapshot()
        throttled = self.server_throttled()
        out: list[str] = []
        if s.requests == 0:
            return out
        if s.breaker_opens:
            out.append(
                f"The circuit breaker opened {s.breaker_opens} time(s) and refused "
                f"{s.breaker_rejections} call(s): "
                "the server is failing; check its health before tuning BreakerPolicy.failure_rate/window "
                "(raise them only if the failures are expected)."
            )
        if s.retry_ratio > 0.2:
            out.append(
                f"{s.retry_ratio:.0%} retries per request: check the server's errors "
                f"{dict(s.errors) or s.statuses}; "
                "if it is overloaded, lower RetryPolicy.attempts or raise RetryPolicy.backoff_base."
            )
        if s.budget_refusals:
            out.append(
                f"The retry budget refused {s.budget_refusals} retr(y/ies): failures are widespread; "
                "raising RetryBudget.ratio would add load to a struggling server, fix the cause instead."
            )
        if throttled:
            out.append(
                f"The server throttled {throttled} attempt(s) with 429: "
                "lower RateLimitPolicy.rate to the server's "
                "X-RateLimit-Limit or ask for a higher quota."
            )
        if s.rate_limit_waits > 0.1 * s.requests:
            out.append(
                f"{s.rate_limit_waits} of {s.requests} requests waited for the client-side rate limiter "
                f"({s.rate_limit_wait_seconds:.1f} s in all): "
                "raise RateLimitPolicy.rate/burst if the server allows, "
                "or lower the concurrency."
            )
        lookups = s.cache_hits + s.cache_misses + s.cache_revalidations
        if lookups >= 20 and s.cache_hit_ratio < 0.3:
            out.append(
                f"Cache hit ratio is {s.cache_hit_ratio:.0%} over {lookups} cacheable requests: "
                "check that responses carry max-age/ETag, that Vary and credentials do not split entries, "
                "or raise CachePolicy.max_entries."
            )
        timeouts = sum(n for name, n in s.errors.items() if "Timeout" in name or name == "DeadlineExceeded")
        if timeouts > 0.05 * s.requests:
            out.append(
                f"{timeouts} request(s) timed out: raise Timeouts.read/total if the server is merely slow, "
                "otherwise investigate its latency."
            )
        if self.read_timeout and s.latency_p99 > 0.8 * self.read_timeout:
            out.append(
                f"p99 latency {s.latency_p99:.2f} s is close to the read timeout {self.read_timeout:.2f} s: "
                "raise Timeouts.read or investigate the slow tail."
            )
        return out
