"""What the server really saw, per tenant: usage counters and recent latencies.

Counters accumulate in memory and are flushed to SQLite by the app every few seconds,
so ``/analytics/usage`` covers earlier runs too while the request path only bumps a
dict entry. Latency samples live in a bounded ring per tenant for ``/analytics/performance``.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

TIMEFRAMES = {"1m": 60, "5m": 300, "1h": 3600, "24h": 86400}


@functools.lru_cache(maxsize=64)
def _day_name(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * 86400, UTC).date().isoformat()


def day_of(ts: float) -> str:
    """The UTC date of ``ts``; cached by day, since every request asks."""
    return _day_name(int(ts // 86400))


class Traffic:
    def __init__(self, *, samples: int = 100_000, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._samples = samples
        self.pending: defaultdict[tuple[str, str, str, int], int] = defaultdict(int)
        self._recent: dict[str, deque[tuple[float, float, int]]] = {}

    def record(self, tenant: str, endpoint: str, status: int, started: float, duration: float) -> None:
        self.pending[(tenant, day_of(started), endpoint, status)] += 1
        ring = self._recent.get(tenant)
        if ring is None:
            ring = self._recent[tenant] = deque(maxlen=self._samples)
        ring.append((started, duration, status))

    def take_pending(self) -> list[tuple[str, str, str, int, int]]:
        rows = [(t, d, e, s, n) for (t, d, e, s), n in self.pending.items()]
        self.pending = defaultdict(int)
        return rows

    def pending_for(self, tenant: str, first: str, last: str) -> list[tuple[str, str, int, int]]:
        return [
            (d, e, s, n) for (t, d, e, s), n in self.pending.items() if t == tenant and first <= d <= last
        ]

    def performance(self, tenant: str, timeframe: str) -> dict[str, Any]:
        window = TIMEFRAMES[timeframe]
        since = self._wall() - window
        ring = self._recent.get(tenant, ())
        chosen = [(d, s) for (t, d, s) in ring if t >= since]
        durations = sorted(d * 1000.0 for d, _ in chosen)
        errors = sum(1 for _, s in chosen if s >= 500)
        n = len(durations)

        def pct(q: float) -> float:
            return round(durations[min(n - 1, int(q * n))], 3) if n else 0.0

        return {
            "latency_ms": {
                "p50": pct(0.50),
                "p95": pct(0.95),
                "p99": pct(0.99),
                "mean": round(sum(durations) / n, 3) if n else 0.0,
            },
            "error_rate": round(errors / n, 6) if n else 0.0,
            "requests_per_second": round(n / window, 6),
            "requests": n,
            "window": timeframe,
        }
