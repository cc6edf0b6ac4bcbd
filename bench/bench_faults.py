"""Latency fidelity of injected delay, and the throughput cost of loaded rules.

Fidelity: 50 ms injected on every request, against a bare Starlette app (uvicorn + httptools +
uvloop) that awaits ``asyncio.sleep(0.05)``, at the same number of connections, with the same
load generator, in the same run, in alternating rounds. The load is half the bare app's
capacity for such requests: one core's worth at the CPU time the bare app spends on one
(measured first, at a light load), halved. With 50 ms per request, N connections in a closed
loop offer N / 0.05 requests per second. Goals: the fake's p50 within 3 ms and its p99 within
10 ms of the bare app's. Rule cost: requests per second with 20 loaded rules that
never match, against none (goal: under 10% slower).
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench._load import LoadResult, generator, measure
from bench._servers import bare, fake, free_port

DELAY_S = 0.05


def connections_for(capacity_rps: float) -> int:
    """Connections that offer half of ``capacity_rps`` when each request takes 50 ms."""
    return max(16, round(capacity_rps / 2 * DELAY_S))


def delayed_capacity(probe_connections: int = 100) -> float:
    """The bare app's capacity for requests that await 50 ms: a core's worth at its CPU time per
    such request, measured at a light load (its CPU time per request grows with the number of
    requests in flight: a timer and a connection each)."""
    with bare(free_port(), {"/slow": f"sleep:{DELAY_S}"}) as base:
        probe = measure(
            "127.0.0.1", base.port, "/slow", connections=probe_connections, duration=2.0, pid=base.pid
        )
    if not probe.cpu_us:
        raise RuntimeError("the probe measured no CPU time")
    return 1e6 / probe.cpu_us


def _fidelity(duration: float, connections: int, rounds: int) -> dict[str, Any]:
    rules = {"seed": 1, "rules": [{"id": "lag", "fault": {"type": "latency", "fixed_ms": 50}}]}
    host = "127.0.0.1"
    mine: list[LoadResult] = []
    theirs: list[LoadResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lag.json"
        path.write_text(json.dumps(rules))
        with (
            fake(free_port(), "--faults", str(path)) as ours,
            bare(free_port(), {"/slow": f"sleep:{DELAY_S}"}) as base,
        ):
            load = {"connections": connections, "duration": duration, "latency": True}
            # Alternating rounds: the machine's other load drifts; both servers see the same drift.
            for _ in range(rounds):
                mine.append(measure(host, ours.port, "/health", pid=ours.pid, **load))  # type: ignore[arg-type]
                theirs.append(measure(host, base.port, "/slow", pid=base.pid, **load))  # type: ignore[arg-type]

    def median(results: list[LoadResult], attr: str) -> float:
        return statistics.median(getattr(r, attr) or float("nan") for r in results)

    fake_p50, fake_p99 = median(mine, "p50_ms"), median(mine, "p99_ms")
    bare_p50, bare_p99 = median(theirs, "p50_ms"), median(theirs, "p99_ms")
    return {
        "generator": mine[0].generator,
        "connections": connections,
        "rounds": rounds,
        "offered_rps": round(connections / DELAY_S),
        "fake_p50_ms": round(fake_p50, 2),
        "fake_p99_ms": round(fake_p99, 2),
        "bare_p50_ms": round(bare_p50, 2),
        "bare_p99_ms": round(bare_p99, 2),
        "p50_minus_bare_p50": round(fake_p50 - bare_p50, 2),
        "p99_minus_bare_p99": round(fake_p99 - bare_p99, 2),
        "round_deltas_ms": [
            [round(a.p50_ms - b.p50_ms, 1), round(a.p99_ms - b.p99_ms, 1)]
            for a, b in zip(mine, theirs, strict=True)
        ],
        "fake_rps": round(median(mine, "rps"), 1),
        "bare_rps": round(median(theirs, "rps"), 1),
        "fake_cpu_us_per_request": round(median(mine, "cpu_us"), 1),
        "bare_cpu_us_per_request": round(median(theirs, "cpu_us"), 1),
        "fake_non_2xx": sum(r.errors for r in mine),
        "bare_non_2xx": sum(r.errors for r in theirs),
    }


def _rule_cost(duration: float, rounds: int) -> dict[str, Any]:
    rules = {
        "seed": 1,
        "rules": [
            {
                "id": f"r{i}",
                "match": {"method": "POST", "path": f"/never/{i}/*"},
                "fault": {"type": "status", "status": 503},
            }
            for i in range(20)
        ],
    }
    host = "127.0.0.1"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.json"
        path.write_text(json.dumps(rules))
        with fake(free_port()) as plain, fake(free_port(), "--faults", str(path)) as ruled:
            a, b = [], []
            for _ in range(rounds):
                a.append(measure(host, plain.port, "/health", duration=duration).rps)
                b.append(measure(host, ruled.port, "/health", duration=duration).rps)
    plain_rps, ruled_rps = statistics.median(a), statistics.median(b)
    return {
        "no_rules_rps": round(plain_rps, 1),
        "twenty_rules_rps": round(ruled_rps, 1),
        "ratio": round(ruled_rps / plain_rps, 3),
        "slowdown_pct": round(100 * (1 - ruled_rps / plain_rps), 1),
    }


def run(duration: float = 3.0, rounds: int = 3) -> dict[str, Any]:
    capacity_rps = delayed_capacity()
    return {
        "generator": generator(),
        "bare_capacity_rps": round(capacity_rps, 1),
        "latency_fidelity": _fidelity(duration, connections_for(capacity_rps), rounds),
        "rule_cost": _rule_cost(duration / 2, rounds),
    }


def report(figures: dict[str, Any]) -> str:
    f, r = figures["latency_fidelity"], figures["rule_cost"]
    return "\n".join(
        [
            f"Latency fidelity ({f['generator']}): 50 ms injected vs bare app awaiting asyncio.sleep(0.05),"
            f" {f['connections']} connections ({f['offered_rps']} requests/s offered, half the bare"
            f" app's capacity of {figures['bare_capacity_rps']:.0f} for such requests; goals: p50 within"
            " 3 ms, p99 within 10 ms)",
            f"  fake p50 {f['fake_p50_ms']:.1f} ms  p99 {f['fake_p99_ms']:.1f} ms"
            f"  ({f['fake_cpu_us_per_request']:.0f} us CPU/request, {f['fake_non_2xx']} non-2xx)",
            f"  bare p50 {f['bare_p50_ms']:.1f} ms  p99 {f['bare_p99_ms']:.1f} ms"
            f"  ({f['bare_cpu_us_per_request']:.0f} us CPU/request)",
            f"  fake - bare: p50 {f['p50_minus_bare_p50']:+.1f} ms, p99 {f['p99_minus_bare_p99']:+.1f} ms"
            f" (medians of {f['rounds']} alternating rounds; each round's p50, p99:"
            f" {', '.join(f'{a:+.1f}/{b:+.1f}' for a, b in f['round_deltas_ms'])})",
            "Rule cost: GET /health with 20 non-matching rules vs none",
            f"  {r['twenty_rules_rps']:.0f} vs {r['no_rules_rps']:.0f} requests/s: ratio {r['ratio']:.3f}"
            f" ({r['slowdown_pct']:+.1f}% slower)",
        ]
    )


if __name__ == "__main__":
    print(report(run()))
