"""The reference client against baselines, side by side against one fake in its own process.

Every figure is a ratio against a baseline measured in the same run, in alternating rounds, of
the time per call and of the client process's CPU time per call (the CPU figure is the steadier
one on a machine shared with other work: another process's load stretches the wall clock of both
sides unevenly, while the CPU the client spends per call barely moves):

- Overhead of the requests driver: time per call of the full client (retry, breaker, limiter,
  cache, timeouts all on; no faults) against a bare ``requests.Session`` doing the same calls
  (goal: at most 1.05x).
- Overhead of the async driver: the same against a bare ``httpx.AsyncClient`` (goal: at most
  1.10x).
- Cache: time per fresh cache hit against a requests-cache in-memory hit (requests driver) and a
  hishel hit (async driver) of the same response (goal: at least 10x faster than each).
- 1,000 concurrent async calls under the ``chaos`` preset: the fake's compliance verdict on
  the client's session (goal: pass).

``python -m bench.bench_client --instructions`` also counts instructions per call of each
overhead case and its baseline under valgrind (load-independent; minutes long, so not part of
``make bench``).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import requests
import requests_cache

from bench._servers import fake, free_port
from client import (
    ApiError,
    ApiKeyAuth,
    AsyncResilientTransport,
    AsyncResonanceClient,
    BreakerPolicy,
    CachePolicy,
    Policies,
    RateLimitPolicy,
    ResilientSession,
    RetryBudget,
    RetryPolicy,
    Timeouts,
)

KEY = {"X-API-Key": "demo-key"}
#: The baselines send the same header fields as the client: its credential and an
#: ``X-Request-ID`` of the same length (the client sends one on every call). A fixed value: making
#: ids is the client's own work, and is counted as such; sending one is the wire's.
REQUEST_ID = "00000000-0000-4000-8000-000000000000"
BASE_HEADERS = {**KEY, "X-Request-ID": REQUEST_ID}
PROFILE = {"tenant": "demo", "profile_name": "bench", "hrv_vector": [0.5] * 8}


def _policies() -> Policies:
    return Policies(
        retry=RetryPolicy(),
        breaker=BreakerPolicy(),
        cache=CachePolicy(),
        limiter=RateLimitPolicy(rate=1_000_000, burst=1_000_000),
    )


#: Calls per alternating batch: short batches, many of them, so a burst of load elsewhere on the
#: machine lands on both sides alike.
BATCH = 100


def _per_call(fn: Callable[[], Any], calls: int) -> tuple[float, float]:
    """Wall and CPU seconds per call."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls, (time.process_time() - cpu) / calls


def _medians(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> Timing:
    return Timing(
        statistics.median(x[0] for x in a),
        statistics.median(x[0] for x in b),
        statistics.median(x[1] for x in a),
        statistics.median(x[1] for x in b),
    )


def _side_by_side(ours: Callable[[], Any], base: Callable[[], Any], calls: int, rounds: int) -> Timing:
    a, b = [], []
    for _ in range(max(1, calls * rounds // BATCH)):
        a.append(_per_call(ours, BATCH))
        b.append(_per_call(base, BATCH))
    return _medians(a, b)


async def _per_call_async(fn: Callable[[], Awaitable[Any]], calls: int) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await fn()
    return (time.perf_counter() - start) / calls, (time.process_time() - cpu) / calls


async def _side_by_side_async(
    ours: Callable[[], Awaitable[Any]], base: Callable[[], Awaitable[Any]], calls: int, rounds: int
) -> Timing:
    a, b = [], []
    for _ in range(max(1, calls * rounds // BATCH)):
        a.append(await _per_call_async(ours, BATCH))
        b.append(await _per_call_async(base, BATCH))
    return _medians(a, b)


class Timing(NamedTuple):
    """Median wall and CPU seconds per call of the client and of its baseline."""

    ours: float
    base: float
    ours_cpu: float
    base_cpu: float


def _figure(t: Timing, base_name: str) -> dict[str, Any]:
    return {
        "client_us": round(t.ours * 1e6, 1),
        f"{base_name}_us": round(t.base * 1e6, 1),
        "ratio": round(t.ours / t.base, 3),
        "client_cpu_us": round(t.ours_cpu * 1e6, 1),
        f"{base_name}_cpu_us": round(t.base_cpu * 1e6, 1),
        "cpu_ratio": round(t.ours_cpu / t.base_cpu, 3),
    }


def _requests_driver(url: str, calls: int, rounds: int, figures: dict[str, Any]) -> None:
    ours = ResilientSession(_policies(), auth=ApiKeyAuth("demo-key"))
    bare = requests.Session()
    bare.headers.update(BASE_HEADERS)
    body = {"prompt": "benchmark", "max_length": 16}
    # The same fields on the wire (see BASE_HEADERS), so the difference is the client's own work
    # (the generic layer sends no Idempotency-Key).
    cases = {
        "GET /health": (lambda: ours.get(f"{url}/health"), lambda: bare.get(f"{url}/health", timeout=10)),
        "POST /hr_generate": (
            lambda: ours.post(f"{url}/hr_generate", json=body),
            lambda: bare.post(f"{url}/hr_generate", json=body, timeout=10),
        ),
    }
    for name, (mine, theirs) in cases.items():
        for _ in range(50):
            mine(), theirs()
        figures[f"requests driver, {name}"] = _figure(
            _side_by_side(mine, theirs, calls, rounds), "bare_requests"
        )
    profile_url = f"{url}/profiles/demo/bench"
    rc = requests_cache.CachedSession(backend="memory", cache_control=True)
    rc.headers.update(KEY)
    assert ours.get(profile_url).status_code == 200 and rc.get(profile_url).status_code == 200
    assert rc.get(profile_url).from_cache
    assert getattr(ours.get(profile_url), "cache_status", None) == "hit"
    t_hit, t_rc, _, _ = _side_by_side(
        lambda: ours.get(profile_url), lambda: rc.get(profile_url), calls * 4, rounds
    )
    figures["fresh cache hit, requests driver vs requests-cache"] = {
        "client_us": round(t_hit * 1e6, 2),
        "requests_cache_us": round(t_rc * 1e6, 2),
        "speedup": round(t_rc / t_hit, 1),
    }
    ours.close()
    bare.close()


async def _async_driver(url: str, calls: int, rounds: int, figures: dict[str, Any]) -> None:
    import hishel
    import hishel.httpx

    transport = AsyncResilientTransport(_policies(), auth=ApiKeyAuth("demo-key"))
    async with (
        httpx.AsyncClient(transport=transport) as ours,
        httpx.AsyncClient(headers=BASE_HEADERS) as bare,
    ):
        for _ in range(50):
            await ours.get(f"{url}/health")
            await bare.get(f"{url}/health")
        timing = await _side_by_side_async(
            lambda: ours.get(f"{url}/health"), lambda: bare.get(f"{url}/health"), calls, rounds
        )
        figures["async driver, GET /health"] = _figure(timing, "bare_httpx")
        profile_url = f"{url}/profiles/demo/bench"
        with tempfile.TemporaryDirectory() as folder:
            storage = hishel.AsyncSqliteStorage(database_path=str(Path(folder) / "hishel.db"))
            async with hishel.httpx.AsyncCacheClient(storage=storage, rfc=True, headers=KEY) as hc:  # type: ignore[attr-defined]
                assert (await ours.get(profile_url)).status_code == 200
                assert (await hc.get(profile_url)).status_code == 200
                hit = await ours.get(profile_url)
                assert hit.extensions.get("cache_status") == "hit"
                t_hit, t_hc, _, _ = await _side_by_side_async(
                    lambda: ours.get(profile_url), lambda: hc.get(profile_url), calls, rounds
                )
        figures["fresh cache hit, async driver vs hishel"] = {
            "client_us": round(t_hit * 1e6, 2),
            "hishel_us": round(t_hc * 1e6, 2),
            "speedup": round(t_hc / t_hit, 1),
        }


def chaos_policies() -> Policies:
    """The policies a fleet under faults runs with (as the load tests' resilient client)."""
    return Policies(
        retry=RetryPolicy(
            attempts=4,
            backoff_base=0.1,
            backoff_cap=2.0,
            retry_after_cap=10.0,
            budget=RetryBudget(ratio=0.5, min_per_second=2.0),
            rng=random.Random(1),
        ),
        breaker=BreakerPolicy(
            window=50,
            min_calls=20,
            failure_rate=0.7,
            open_for=2.0,
            failure_statuses=frozenset(range(500, 600)),
        ),
        limiter=RateLimitPolicy(rate=10_000, burst=10_000),
        cache=CachePolicy(stale_if_error=60.0),
        timeouts=Timeouts(connect=2.0, read=2.5, total=60.0),
        pool_connections=4,
        pool_maxsize=8,
    )


async def _chaos_run(url: str, calls: int) -> dict[str, Any]:
    session = f"bench-async-{uuid.uuid4().hex[:8]}"
    transport = AsyncResilientTransport(chaos_policies(), auth=ApiKeyAuth("demo-key"))
    client = httpx.AsyncClient(transport=transport, headers={"X-Mock-Session": session})
    async with AsyncResonanceClient(url, client=client) as api:
        names = [f"chaos-{i:02d}" for i in range(20)]

        async def one(i: int) -> str:
            try:
                if i % 10 == 0:
                    await api.generate(f"prompt {i}", max_length=16)
                else:
                    await api.profiles.get("demo", names[i % len(names)])
                return "ok"
            except ApiError as exc:
                return type(exc).__name__

        started = time.perf_counter()
        outcomes = await asyncio.gather(*(one(i) for i in range(calls)))
        elapsed = time.perf_counter() - started
    report = requests.get(f"{url}/__admin/compliance", params={"session": session}, timeout=30).json()
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o] = counts.get(o, 0) + 1
    return {
        "calls": calls,
        "seconds": round(elapsed, 2),
        "outcomes": counts,
        "success": round(counts.get("ok", 0) / calls, 4),
        "requests": report.get("requests"),
        "verdict": report.get("verdict"),
        "score": report.get("score"),
        "findings": [{"kind": f.get("kind"), "count": f.get("count")} for f in report.get("findings", [])],
    }


def _seed(url: str) -> None:
    """The profiles the chaos run reads, created through the faults by the resilient client."""
    from client import Conflict, ResonanceClient

    with ResonanceClient(url, auth=ApiKeyAuth("demo-key")) as api:
        api.session.headers["X-Mock-Session"] = "seed"
        for i in range(20):
            for _ in range(10):
                try:
                    api.profiles.create("demo", f"chaos-{i:02d}", [0.5] * 8)
                    break
                except Conflict:
                    break
                except ApiError:
                    continue


def run(calls: int = 1500, rounds: int = 5, concurrent: int = 1000) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    port = free_port()
    with fake(port) as served:
        url = served.url
        requests.post(f"{url}/profiles", json=PROFILE, headers=KEY, timeout=5)
        _requests_driver(url, calls, rounds, figures)
        asyncio.run(_async_driver(url, calls, rounds, figures))
    port = free_port()
    with fake(port, "--preset", "chaos", "--seed", "1") as served:
        url = served.url
        _seed(url)
        figures["1000 concurrent async calls, chaos preset"] = asyncio.run(_chaos_run(url, concurrent))
    return figures


def report(figures: dict[str, Any]) -> str:
    lines = ["Client vs baselines (against the fake, no faults; all policies on)"]
    for name, f in figures.items():
        if "ratio" in f:
            base = next(k for k in f if k.endswith("_us") and not k.startswith("client") and "cpu" not in k)
            lines.append(
                f"  {name:52} client {f['client_us']:8.1f} us/call  {base[:-3]} {f[base]:8.1f}"
                f"  ratio {f['ratio']:.3f};  CPU {f['client_cpu_us']:7.1f} vs {f[base[:-3] + '_cpu_us']:7.1f}"
                f" us/call, ratio {f['cpu_ratio']:.3f}"
            )
        elif "speedup" in f:
            base = next(k for k in f if k.endswith("_us") and k != "client_us")
            lines.append(
                f"  {name:52} client {f['client_us']:8.2f} us/call  {base[:-3]} {f[base]:8.2f}"
                f"  {f['speedup']:.0f}x faster"
            )
        else:
            lines.append(
                f"  {name}: {f['success']:.1%} of {f['calls']} calls succeeded in {f['seconds']} s;"
                f" compliance {f['verdict']} ({f['score']}%), findings {f['findings'] or 'none'}"
            )
    return "\n".join(lines)


# -- instructions per call (opt-in: minutes long, needs valgrind) --------------------------------
#: The overhead cases, each as (client, baseline): what ``_calls`` runs in a child process.
CASES = ("requests GET /health", "requests POST /hr_generate", "async GET /health")


def _calls(case: str, side: str, url: str, n: int) -> None:
    """Make ``n`` calls of one case with one side (after 20 to warm up), as the timed rounds do."""
    body = {"prompt": "benchmark", "max_length": 16}
    if case.startswith("requests"):
        if side == "client":
            session: requests.Session = ResilientSession(_policies(), auth=ApiKeyAuth("demo-key"))
            timeout = None
        else:
            session = requests.Session()
            session.headers.update(BASE_HEADERS)
            timeout = 10
        get = "GET" in case
        for _ in range(20 + n):
            if get:
                session.get(f"{url}/health", timeout=timeout)
            else:
                session.post(f"{url}/hr_generate", json=body, timeout=timeout)
        session.close()
        return

    async def main() -> None:
        if side == "client":
            transport = AsyncResilientTransport(_policies(), auth=ApiKeyAuth("demo-key"))
            client = httpx.AsyncClient(transport=transport)
        else:
            client = httpx.AsyncClient(headers=BASE_HEADERS)
        async with client:
            for _ in range(20 + n):
                await client.get(f"{url}/health")

    asyncio.run(main())


def _collected(case: str, side: str, url: str, n: int) -> int:
    """Instructions valgrind's callgrind counts in a child making ``n`` calls."""
    import os
    import re
    import subprocess
    import sys

    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m",
         "bench.bench_client", "--calls", case, side, url, str(n)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"},
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from valgrind: {done.stderr[-500:]}")
    return int(found.group(1))


def instructions(few: int = 50, many: int = 250) -> dict[str, dict[str, float]]:
    """Instructions per call of the client and its baseline in each overhead case: independent of
    the machine's load, unlike the times. Each side runs ``few`` and ``many`` calls in a child
    process under valgrind; the difference over ``many - few`` cancels start-up and imports.
    Each case takes a few minutes; CPU time still counts what instructions do not (cache misses)."""
    figures: dict[str, dict[str, float]] = {}
    with fake(free_port()) as served:
        for case in CASES:
            per_call = {
                side: (_collected(case, side, served.url, many) - _collected(case, side, served.url, few))
                / (many - few)
                for side in ("client", "baseline")
            }
            figures[case] = {**per_call, "ratio": round(per_call["client"] / per_call["baseline"], 4)}
    return figures


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--calls"]:
        _calls(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif sys.argv[1:2] == ["--instructions"]:
        for case, f in instructions().items():
            print(
                f"  {case:30} client {f['client']:11,.0f}  baseline {f['baseline']:11,.0f}"
                f"  instructions per call, ratio {f['ratio']:.4f}"
            )
    else:
        print(report(run()))
