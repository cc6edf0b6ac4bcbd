"""The reference client against baselines, side by side against one fake in its own process.

- Overhead: time per call of the full client (retry, breaker, limiter, cache, timeouts all on;
  no faults) against a bare ``requests.Session`` doing the same calls (goal: at most 1.10x).
- Cache: time per fresh cache hit against a requests-cache in-memory hit of the same response
  (goal: at least 10x faster).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests
import requests_cache

from bench._servers import fake, free_port
from client import (
    ApiKeyAuth,
    BreakerPolicy,
    CachePolicy,
    Policies,
    RateLimitPolicy,
    ResilientSession,
    RetryPolicy,
)

KEY = {"X-API-Key": "demo-key"}
PROFILE = {"tenant": "demo", "profile_name": "bench", "hrv_vector": [0.5] * 8}


def _per_call(fn: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def _side_by_side(
    ours: Callable[[], Any], base: Callable[[], Any], calls: int, rounds: int
) -> tuple[float, float]:
    a, b = [], []
    for _ in range(rounds):
        a.append(_per_call(ours, calls))
        b.append(_per_call(base, calls))
    return statistics.median(a), statistics.median(b)


def run(calls: int = 1500, rounds: int = 5) -> dict[str, Any]:
    port = free_port()
    with fake(port) as served:
        url = served.url
        requests.post(f"{url}/profiles", json=PROFILE, headers=KEY, timeout=5)
        policies = Policies(
            retry=RetryPolicy(),
            breaker=BreakerPolicy(),
            cache=CachePolicy(),
            limiter=RateLimitPolicy(rate=1_000_000, burst=1_000_000),
        )
        ours = ResilientSession(policies, auth=ApiKeyAuth("demo-key"))
        bare = requests.Session()
        bare.headers.update(KEY)
        body = {"prompt": "benchmark", "max_length": 16}
        figures: dict[str, Any] = {}
        cases = {
            "GET /health": (lambda: ours.get(f"{url}/health"), lambda: bare.get(f"{url}/health", timeout=10)),
            "POST /hr_generate": (
                lambda: ours.post(f"{url}/hr_generate", json=body),
                lambda: bare.post(f"{url}/hr_generate", json=body, timeout=10),
            ),
            # The client adds an Idempotency-Key and a request id to every POST, which costs the
            # server a lookup and a write; this baseline sends the same headers, leaving the
            # client's own work as the difference.
            "POST /hr_generate, baseline with the same headers": (
                lambda: ours.post(f"{url}/hr_generate", json=body),
                lambda: bare.post(
                    f"{url}/hr_generate",
                    json=body,
                    timeout=10,
                    headers={"Idempotency-Key": uuid.uuid4().hex, "X-Request-ID": uuid.uuid4().hex},
                ),
            ),
        }
        for name, (mine, theirs) in cases.items():
            for _ in range(50):
                mine(), theirs()
            t_ours, t_bare = _side_by_side(mine, theirs, calls, rounds)
            figures[f"overhead {name}"] = {
                "client_us": round(t_ours * 1e6, 1),
                "bare_us": round(t_bare * 1e6, 1),
                "ratio": round(t_ours / t_bare, 3),
            }
        profile_url = f"{url}/profiles/demo/bench"
        rc = requests_cache.CachedSession(backend="memory", cache_control=True)
        rc.headers.update(KEY)
        assert ours.get(profile_url).status_code == 200 and rc.get(profile_url).status_code == 200
        assert rc.get(profile_url).from_cache
        t_hit, t_rc = _side_by_side(
            lambda: ours.get(profile_url), lambda: rc.get(profile_url), calls * 4, rounds
        )
        figures["fresh cache hit"] = {
            "client_us": round(t_hit * 1e6, 2),
            "requests_cache_us": round(t_rc * 1e6, 2),
            "speedup": round(t_rc / t_hit, 1),
        }
        hits = ours.metrics.snapshot().cache_hits
        figures["fresh cache hit"]["client_hits_counted"] = hits
    return figures


def report(figures: dict[str, Any]) -> str:
    lines = ["Client vs baselines (against the fake, no faults)"]
    for name, f in figures.items():
        if name.startswith("overhead"):
            lines.append(
                f"  {name:52} client {f['client_us']:8.1f} us/call  bare requests {f['bare_us']:8.1f}"
                f"  ratio {f['ratio']:.3f}"
            )
    hit = figures["fresh cache hit"]
    lines.append(
        f"  {'fresh cache hit':52} client {hit['client_us']:8.2f} us/call  requests-cache"
        f" {hit['requests_cache_us']:8.2f}  {hit['speedup']:.0f}x faster"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
