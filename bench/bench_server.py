"""Throughput of the fake against a bare Starlette app answering the same JSON.

Both run under the same uvicorn settings, each in its own process, driven by the same
load generator in another; rounds alternate so drift affects both alike. The figure is
the ratio of requests per second (goal: >= 0.8 for /health, >= 0.5 for an authenticated
profile read).
"""

from __future__ import annotations

import statistics
from typing import Any

import requests

from bench._load import request_bytes, run_load
from bench._servers import bare, fake, free_port

PROFILE = {"tenant": "demo", "profile_name": "bench", "hrv_vector": [0.5] * 8, "metadata": {"k": "v"}}


def run(duration: float = 3.0, rounds: int = 3, connections: int = 32) -> dict[str, Any]:
    fake_port, bare_port = free_port(), free_port()
    with fake(fake_port) as fake_url:
        requests.post(f"{fake_url}/profiles", json=PROFILE, headers={"X-API-Key": "demo-key"}, timeout=5)
        health_body = requests.get(f"{fake_url}/health", timeout=5).text
        profile_body = requests.get(
            f"{fake_url}/profiles/demo/bench", headers={"X-API-Key": "demo-key"}, timeout=5
        ).text
        routes = {"/health": health_body, "/profiles/demo/bench": profile_body}
        with bare(bare_port, routes):
            host = "127.0.0.1"
            cases = {
                "GET /health": request_bytes("GET", "/health", host),
                "GET /profiles/demo/bench (authenticated)": request_bytes(
                    "GET", "/profiles/demo/bench", host, {"X-API-Key": "demo-key", "X-Mock-Session": "bench"}
                ),
            }
            figures: dict[str, Any] = {}
            for name, payload in cases.items():
                ours, base = [], []
                for _ in range(rounds):
                    ours.append(
                        run_load(
                            host, fake_port, payload, connections=connections, duration=duration, record=False
                        )
                    )
                    base.append(
                        run_load(
                            host, bare_port, payload, connections=connections, duration=duration, record=False
                        )
                    )
                fake_rps = statistics.median(r.rps for r in ours)
                bare_rps = statistics.median(r.rps for r in base)
                figures[name] = {
                    "fake_rps": round(fake_rps, 1),
                    "bare_rps": round(bare_rps, 1),
                    "ratio": round(fake_rps / bare_rps, 3),
                    "fake_non_2xx": sum(r.errors for r in ours),
                    "bare_non_2xx": sum(r.errors for r in base),
                }
    return figures


def report(figures: dict[str, Any]) -> str:
    lines = [
        "Fake throughput vs bare Starlette (same uvicorn settings, 32 keep-alive connections)",
        f"{'case':45} {'fake rps':>10} {'bare rps':>10} {'ratio':>7}",
    ]
    for name, f in figures.items():
        lines.append(f"{name:45} {f['fake_rps']:>10.0f} {f['bare_rps']:>10.0f} {f['ratio']:>7.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
