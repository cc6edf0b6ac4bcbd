"""Per-second samples of the logical calls, by client kind, and the metrics computed from them.

Every process (a local runner or a worker) adds one sample per request event; workers ship
what they gathered with each report to the master, which merges. Latencies are kept as a
histogram of rounded milliseconds (as locust does), so merging is adding counts and a long run
stays small. No locust import here: the runner and the tests read the same data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BREAKER_LEVEL", "KindMetrics", "Samples", "Window", "bucket_ms", "percentile"]

#: Breaker states, ordered by severity, for "the worst state seen in this second".
BREAKER_LEVEL = {"none": -1, "closed": 0, "half_open": 1, "open": 2}


def bucket_ms(ms: float) -> int:
    """``ms`` rounded like locust's response-time buckets: 1 ms, then 10 ms, then 100 ms."""
    if ms < 100:
        return int(round(ms))
    if ms < 1000:
        return int(round(ms, -1))
    return int(round(ms, -2))


def percentile(hist: Mapping[int, int], q: float) -> float:
    """The ``q`` quantile (0..1) of a histogram of values; NaN when empty."""
    total = sum(hist.values())
    if total == 0:
        return math.nan
    rank = q * total
    seen = 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return float(value)
    return float(max(hist))


def _add(into: dict[Any, int], other: Mapping[Any, int]) -> None:
    for k, v in other.items():
        into[k] = into.get(k, 0) + v


@dataclass
class Window:
    """What one client kind did in one second (or any merged span)."""

    calls: int = 0
    failures: int = 0
    attempts: int = 0
    throttled: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    cache_hits: int = 0
    breaker_rejections: int = 0
    breaker_opens: int = 0
    ratelimit_wait_s: float = 0.0
    backoff_s: float = 0.0
    latency: dict[int, int] = field(default_factory=dict)
    attempts_hist: dict[int, int] = field(default_factory=dict)
    breaker: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    _COUNTS = (
        "calls",
        "failures",
        "attempts",
        "throttled",
        "server_errors",
        "transport_errors",
        "cache_hits",
        "breaker_rejections",
        "breaker_opens",
    )

    def add_call(self, response_time_ms: float, error: str | None, context: Mapping[str, Any]) -> None:
        """Count one logical call."""
        self.calls += 1
        attempts = int(context.get("attempts", 1))
        self.attempts += attempts
        self.attempts_hist[attempts] = self.attempts_hist.get(attempts, 0) + 1
        b = bucket_ms(response_time_ms)
        self.latency[b] = self.latency.get(b, 0) + 1
        self.throttled += int(context.get("attempt_429", 0))
        self.server_errors += int(context.get("attempt_5xx", 0))
        self.transport_errors += int(context.get("attempt_transport", 0))
        if context.get("cache") in ("hit", "revalidated", "stale"):
            self.cache_hits += 1
        state = context.get("breaker_state")
        if state:
            self.breaker[state] = self.breaker.get(state, 0) + 1
        self.ratelimit_wait_s += float(context.get("ratelimit_wait_s", 0.0))
        self.backoff_s += float(context.get("backoff_s", 0.0))
        if error is not None:
            self.failures += 1
            self.errors[error] = self.errors.get(error, 0) + 1
            if error == "CircuitOpen":
                self.breaker_rejections += 1

    def merge(self, other: Window) -> None:
        """Add ``other``'s counts to this window."""
        for name in self._COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.ratelimit_wait_s += other.ratelimit_wait_s
        self.backoff_s += other.backoff_s
        _add(self.latency, other.latency)
        _add(self.attempts_hist, other.attempts_hist)
        _add(self.breaker, other.breaker)
        _add(self.errors, other.errors)

    def worst_breaker(self) -> str:
        """The most severe breaker state any call of this window ended in."""
        if not self.breaker:
            return "none"
        return max(self.breaker, key=lambda s: BREAKER_LEVEL.get(s, -1))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {name: getattr(self, name) for name in self._COUNTS}
        d["ratelimit_wait_s"] = round(self.ratelimit_wait_s, 6)
        d["backoff_s"] = round(self.backoff_s, 6)
        # JSON keys are strings; from_dict turns them back.
        d["latency"] = {str(k): v for k, v in self.latency.items()}
        d["attempts_hist"] = {str(k): v for k, v in self.attempts_hist.items()}
        d["breaker"] = dict(self.breaker)
        d["errors"] = dict(self.errors)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Window:
        w = cls()
        for name in cls._COUNTS:
            setattr(w, name, int(d.get(name, 0)))
        w.ratelimit_wait_s = float(d.get("ratelimit_wait_s", 0.0))
        w.backoff_s = float(d.get("backoff_s", 0.0))
        w.latency = {int(k): int(v) for k, v in d.get("latency", {}).items()}
        w.attempts_hist = {int(k): int(v) for k, v in d.get("attempts_hist", {}).items()}
        w.breaker = {str(k): int(v) for k, v in d.get("breaker", {}).items()}
        w.errors = {str(k): int(v) for k, v in d.get("errors", {}).items()}
        return w


@dataclass(frozen=True)
class KindMetrics:
    """The figures of one client kind over a span: what thresholds and summaries read."""

    kind: str
    calls: int
    failures: int
    seconds: float
    window: Window

    @property
    def fail_ratio(self) -> float:
        return self.failures / self.calls if self.calls else math.nan

    @property
    def success_ratio(self) -> float:
        return 1.0 - self.fail_ratio if self.calls else math.nan

    @property
    def rps(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else math.nan

    @property
    def attempts_per_call(self) -> float:
        return self.window.attempts / self.calls if self.calls else math.nan

    @property
    def throttled_ratio(self) -> float:
        """Attempts answered 429, over attempts sent."""
        return self.window.throttled / self.window.attempts if self.window.attempts else 0.0

    @property
    def cache_hit_ratio(self) -> float:
        return self.window.cache_hits / self.calls if self.calls else math.nan

    def latency_ms(self, q: float) -> float:
        return percentile(self.window.latency, q)


class Samples:
    """Windows by ``(kind, epoch second)``, plus run facts; mergeable across processes."""

    def __init__(self) -> None:
        self.windows: dict[tuple[str, int], Window] = {}
        self._pending: dict[tuple[str, int], Window] = {}
        self.sources: dict[str, int] = {}
        self.meta: dict[str, Any] = {}

    # -- gathering ------------------------------------------------------------------------------
    def add(
        self,
        kind: str,
        at: float,
        response_time_ms: float,
        error: str | None,
        context: Mapping[str, Any],
        *,
        pending: bool = False,
    ) -> None:
        """Count one call ending at epoch ``at``; ``pending`` keeps it for the next :meth:`drain`."""
        store = self._pending if pending else self.windows
        key = (kind, int(at))
        window = store.get(key)
        if window is None:
            window = store[key] = Window()
        window.add_call(response_time_ms, error, context)

    def add_breaker_open(self, kind: str, at: float, *, pending: bool = False) -> None:
        """Count a breaker transition to open."""
        store = self._pending if pending else self.windows
        key = (kind, int(at))
        window = store.get(key)
        if window is None:
            window = store[key] = Window()
        window.breaker_opens += 1

    def drain(self) -> list[dict[str, Any]]:
        """The pending windows, serialisable, and forget them (a worker's report)."""
        out = [{"kind": k, "second": s, **w.to_dict()} for (k, s), w in self._pending.items()]
        self._pending = {}
        return out

    def merge(self, rows: Iterable[Mapping[str, Any]], *, source: str | None = None) -> None:
        """Add rows from :meth:`drain` (a worker's report) into the windows."""
        for row in rows:
            key = (str(row["kind"]), int(row["second"]))
            w = Window.from_dict(row)
            if source is not None:
                self.sources[source] = self.sources.get(source, 0) + w.calls
            have = self.windows.get(key)
            if have is None:
                self.windows[key] = w
            else:
                have.merge(w)

    # -- reading --------------------------------------------------------------------------------
    def kinds(self) -> list[str]:
        return sorted({k for k, _ in self.windows})

    def span(self) -> tuple[int, int] | None:
        """First and last epoch second with data."""
        if not self.windows:
            return None
        seconds = [s for _, s in self.windows]
        return min(seconds), max(seconds)

    def series(self, kind: str, start: int | None = None, end: int | None = None) -> list[tuple[int, Window]]:
        """``(second, window)`` for each second from ``start`` to ``end`` (empty windows filled)."""
        span = self.span()
        if span is None:
            return []
        start = span[0] if start is None else start
        end = span[1] if end is None else end
        return [(s, self.windows.get((kind, s)) or Window()) for s in range(start, end + 1)]

    def metrics(self, kind: str, *, since: float | None = None, until: float | None = None) -> KindMetrics:
        """Totals of ``kind`` over the epoch seconds ``[since, until)`` (default: everything)."""
        total = Window()
        seconds: set[int] = set()
        for (k, s), w in self.windows.items():
            if k != kind or (since is not None and s < int(since)) or (until is not None and s >= until):
                continue
            total.merge(w)
            seconds.add(s)
        started, stopped = self.meta.get("started_at"), self.meta.get("stopped_at")
        if (
            since is None
            and until is None
            and isinstance(started, int | float)
            and isinstance(stopped, int | float)
        ):
            elapsed = float(stopped) - float(started)
        else:
            first = float(since) if since is not None else float(min(seconds, default=0))
            last = float(until) if until is not None else float(max(seconds, default=-1) + 1)
            elapsed = last - first
        return KindMetrics(kind, total.calls, total.failures, max(0.0, elapsed), total)

    # -- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "sources": self.sources,
            "windows": [
                {"kind": k, "second": s, **w.to_dict()} for (k, s), w in sorted(self.windows.items())
            ],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Samples:
        samples = cls()
        samples.meta = dict(d.get("meta", {}))
        samples.merge(d.get("windows", []))
        samples.sources = {str(k): int(v) for k, v in d.get("sources", {}).items()}
        return samples
