"""Latency fidelity of injected delay, and the throughput cost of loaded rules.

Fidelity: 50 ms injected on every request at 256 concurrent connections, against a bare
Starlette app that awaits ``asyncio.sleep(0.05)``, both under the same uvicorn settings and
the same load generator, in the same run (goal: p50 within 3 ms of 50 ms, p99 within 10 ms of
the bare app's p99). Rule cost: requests per second with 20 loaded rules that never match,
against none (goal: under 10% slower).
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench._load import request_bytes, run_load
from bench._servers import bare, fake, free_port


def _fidelity(duration: float, connections: int) -> dict[str, Any]:
    rules = {"seed": 1, "rules": [{"id": "lag", "fault": {"type": "latency", "fixed_ms": 50}}]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lag.json"
        path.write_text(json.dumps(rules))
        fake_port, bare_port = free_port(), free_port()
        with fake(fake_port, "--faults", str(path)), bare(bare_port, {"/slow": "sleep:0.05"}):
            host = "127.0.0.1"
            ours = run_load(
                host,
                fake_port,
                request_bytes("GET", "/health", host),
                connections=connections,
                duration=duration,
                warmup=1.0,
            )
            base = run_load(
                host,
                bare_port,
                request_bytes("GET", "/slow", host),
                connections=connections,
                duration=duration,
                warmup=1.0,
            )
    return {
        "connections": connections,
        "fake_p50_ms": round(ours.p50_ms, 2),
        "fake_p99_ms": round(ours.p99_ms, 2),
        "bare_p50_ms": round(base.p50_ms, 2),
        "bare_p99_ms": round(base.p99_ms, 2),
        "p50_minus_50ms": round(ours.p50_ms - 50.0, 2),
        "p99_minus_bare_p99": round(ours.p99_ms - base.p99_ms, 2),
        "fake_rps": round(ours.rps, 1),
        "bare_rps": round(base.rps, 1),
    }


def _wrk_percentiles(url: str, connections: int, duration: float) -> dict[str, float] | None:
    """p50 and p99 in ms as wrk (a C load generator) sees them, or None without wrk."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{max(1, int(duration))}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    found = {}
    for label, key in (("50%", "p50_ms"), ("99%", "p99_ms")):
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if match:
            found[key] = float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
    return found or None


def _fidelity_wrk(duration: float, connections: int) -> dict[str, Any] | None:
    if shutil.which("wrk") is None:
        return None
    rules = {"seed": 1, "rules": [{"id": "lag", "fault": {"type": "latency", "fixed_ms": 50}}]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lag.json"
        path.write_text(json.dumps(rules))
        fake_port, bare_port = free_port(), free_port()
        with (
            fake(fake_port, "--faults", str(path)) as fake_url,
            bare(bare_port, {"/slow": "sleep:0.05"}) as bare_url,
        ):
            ours = _wrk_percentiles(f"{fake_url}/health", connections, duration)
            base = _wrk_percentiles(f"{bare_url}/slow", connections, duration)
    if not ours or not base:
        return None
    return {
        "generator": "wrk",
        "connections": connections,
        "fake_p50_ms": ours["p50_ms"],
        "fake_p99_ms": ours["p99_ms"],
        "bare_p50_ms": base["p50_ms"],
        "bare_p99_ms": base["p99_ms"],
        "p50_minus_50ms": round(ours["p50_ms"] - 50.0, 2),
        "p99_minus_bare_p99": round(ours["p99_ms"] - base["p99_ms"], 2),
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
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.json"
        path.write_text(json.dumps(rules))
        plain_port, ruled_port = free_port(), free_port()
        with fake(plain_port), fake(ruled_port, "--faults", str(path)):
            host = "127.0.0.1"
            payload = request_bytes("GET", "/health", host)
            plain, ruled = [], []
            for _ in range(rounds):
                plain.append(
                    run_load(host, plain_port, payload, connections=32, duration=duration, record=False).rps
                )
                ruled.append(
                    run_load(host, ruled_port, payload, connections=32, duration=duration, record=False).rps
                )
    a, b = statistics.median(plain), statistics.median(ruled)
    return {
        "no_rules_rps": round(a, 1),
        "twenty_rules_rps": round(b, 1),
        "ratio": round(b / a, 3),
        "slowdown_pct": round(100 * (1 - b / a), 1),
    }


def run(duration: float = 4.0, rounds: int = 3) -> dict[str, Any]:
    figures = {"latency_fidelity": _fidelity(duration, 256), "rule_cost": _rule_cost(duration / 2, rounds)}
    with_wrk = _fidelity_wrk(duration, 256)
    if with_wrk is not None:
        figures["latency_fidelity_wrk"] = with_wrk
    return figures


def report(figures: dict[str, Any]) -> str:
    f, r = figures["latency_fidelity"], figures["rule_cost"]
    lines = _fidelity_lines(f, "asyncio load generator")
    if "latency_fidelity_wrk" in figures:
        lines += _fidelity_lines(figures["latency_fidelity_wrk"], "wrk")
    lines += [
        "Rule cost: GET /health with 20 non-matching rules vs none",
        f"  {r['twenty_rules_rps']:.0f} vs {r['no_rules_rps']:.0f} requests/s: ratio {r['ratio']:.3f}"
        f" ({r['slowdown_pct']:+.1f}% slower)",
    ]
    return "\n".join(lines)


def _fidelity_lines(f: dict[str, Any], generator: str) -> list[str]:
    return [
        f"Latency fidelity ({generator}): 50 ms injected vs bare app awaiting asyncio.sleep(0.05),"
        f" {f['connections']} connections",
        f"  fake p50 {f['fake_p50_ms']:.1f} ms (50 ms {f['p50_minus_50ms']:+.1f})"
        f"  p99 {f['fake_p99_ms']:.1f} ms",
        f"  bare p50 {f['bare_p50_ms']:.1f} ms                p99 {f['bare_p99_ms']:.1f} ms"
        f"  (fake p99 {f['p99_minus_bare_p99']:+.1f} ms vs bare)",
    ]


if __name__ == "__main__":
    print(report(run()))
