"""Throughput of the fake against a bare Starlette app answering the same JSON.

The bare app runs on uvicorn with httptools and uvloop (the fastest uvicorn there is); the fake
as ``serve`` runs it. Each is its own process, driven by the same load generator (``_load``);
rounds alternate so drift affects both alike, and each figure is the median of the rounds.
Goals: the fake's requests per second at least 0.8 of the bare app's for ``GET /health``, at
least 0.5 for an authenticated ``GET /profiles/{tenant}/{name}``, and no response other than
2xx. Also reported: each server's CPU time per request, and their ratio (bare over fake), which
is what the throughput ratio tends to when each server has a core of its own: on a shared 2-core
machine the generator and the machine's other load take their share, which pulls the measured
throughput ratio towards 1.
"""

from __future__ import annotations

import statistics
from typing import Any

import requests

from bench._load import LoadResult, generator, measure
from bench._servers import bare, fake, free_port

PROFILE = {"tenant": "demo", "profile_name": "bench", "hrv_vector": [0.5] * 8, "metadata": {"k": "v"}}
KEY = {"X-API-Key": "demo-key"}


def _median(results: list[LoadResult], attr: str) -> float:
    values = [getattr(r, attr) for r in results if getattr(r, attr) is not None]
    return statistics.median(values) if values else float("nan")


def run(duration: float = 3.0, rounds: int = 3, connections: int = 32) -> dict[str, Any]:
    host = "127.0.0.1"
    with fake(free_port()) as ours:
        requests.post(f"{ours.url}/profiles", json=PROFILE, headers=KEY, timeout=5)
        health_body = requests.get(f"{ours.url}/health", timeout=5).text
        profile_body = requests.get(f"{ours.url}/profiles/demo/bench", headers=KEY, timeout=5).text
        routes = {"/health": health_body, "/profiles/demo/bench": profile_body}
        with bare(free_port(), routes) as base:
            cases = {
                "GET /health": ("/health", None),
                "GET /profiles/demo/bench (authenticated)": (
                    "/profiles/demo/bench",
                    {**KEY, "X-Mock-Session": "bench"},
                ),
            }
            figures: dict[str, Any] = {"generator": generator(), "connections": connections}
            for name, (path, headers) in cases.items():
                mine: list[LoadResult] = []
                theirs: list[LoadResult] = []
                for _ in range(rounds):
                    for server, results in ((ours, mine), (base, theirs)):
                        results.append(
                            measure(
                                host,
                                server.port,
                                path,
                                headers=headers,
                                connections=connections,
                                duration=duration,
                                pid=server.pid,
                            )
                        )
                fake_rps, bare_rps = _median(mine, "rps"), _median(theirs, "rps")
                fake_cpu, bare_cpu = _median(mine, "cpu_us"), _median(theirs, "cpu_us")
                figures[name] = {
                    "fake_rps": round(fake_rps, 1),
                    "bare_rps": round(bare_rps, 1),
                    "ratio": round(fake_rps / bare_rps, 3),
                    "round_ratios": [round(a.rps / b.rps, 3) for a, b in zip(mine, theirs, strict=True)],
                    "fake_cpu_us_per_request": round(fake_cpu, 1),
                    "bare_cpu_us_per_request": round(bare_cpu, 1),
                    # What the ratio is when the server, not the generator, is the bottleneck.
                    "cpu_ratio": round(bare_cpu / fake_cpu, 3),
                    "fake_non_2xx": sum(r.errors for r in mine),
                    "bare_non_2xx": sum(r.errors for r in theirs),
                }
    return figures


def report(figures: dict[str, Any]) -> str:
    lines = [
        f"Fake vs bare Starlette on uvicorn + httptools + uvloop ({figures['generator']},"
        f" {figures['connections']} keep-alive connections; goals: ratio >= 0.8 /health,"
        " >= 0.5 profile, 0 non-2xx)",
        f"{'case':42} {'fake rps':>9} {'bare rps':>9} {'ratio':>6} {'fake CPU':>10} {'bare CPU':>10}"
        f" {'CPU ratio':>9} {'non-2xx':>8}",
    ]
    for name, f in figures.items():
        if not isinstance(f, dict):
            continue
        lines.append(
            f"{name:42} {f['fake_rps']:>9.0f} {f['bare_rps']:>9.0f} {f['ratio']:>6.2f}"
            f" {f['fake_cpu_us_per_request']:>7.1f} us {f['bare_cpu_us_per_request']:>7.1f} us"
            f" {f['cpu_ratio']:>9.2f} {f['fake_non_2xx']:>8}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
