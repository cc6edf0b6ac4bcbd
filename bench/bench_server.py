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

import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import requests

from bench._load import LoadResult, _wrk, generator, measure
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


# -- scale-out: workers, state backends, and WireMock as an anchor -----------------------------

WIREMOCK_CACHE = Path.home() / ".cache" / "mock-server-bench" / "wiremock"
WIREMOCK_WARMUP = 40.0


def _redis_server(port: int) -> subprocess.Popen[bytes]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not on PATH (apt-get install redis-server)")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)


def _scripts(port: int) -> int:
    """Scripts redis-server has run: what a request's round trip runs (the API's operation with
    its token, or a fault arrival). Batched journal, metrics and usage writes are plain commands."""
    client = redis.Redis(port=port)
    try:
        stats: Any = client.info("commandstats")
    finally:
        client.close()
    return sum(int(stats.get(f"cmdstat_{n}", {}).get("calls", 0)) for n in ("evalsha", "eval"))


def _round_trips(redis_port: int, port: int, path: str, headers: dict[str, str] | None) -> float:
    """Scripts redis-server runs per request answered, over a 1-second run of 8 connections
    (at most 8 requests in flight at its end are counted by Redis and not by wrk)."""
    before = _scripts(redis_port)
    done = _wrk(f"http://127.0.0.1:{port}{path}", 8, 1, headers)
    return round((_scripts(redis_port) - before) / max(1, done.requests), 3)


def run_scale(duration: float = 3.0, rounds: int = 3, connections: int = 32) -> dict[str, Any]:
    """1 worker against 2, embedded state against Redis, each fake from the CLI, same rounds."""
    host = "127.0.0.1"
    if shutil.which("redis-server") is None:
        return {"skipped": "no redis-server on PATH (apt-get install redis-server)"}
    redis_port = free_port()
    redis_proc = _redis_server(redis_port)
    state = f"redis://127.0.0.1:{redis_port}/0"
    folder = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    # A rule that matches every request and never fires: each request is counted for it.
    never = folder / "never.json"
    never.write_text(
        json.dumps({"rules": [{"id": "never", "after": 10**9, "fault": {"type": "status", "status": 503}}]})
    )
    configs = {
        "1 worker, embedded": (),
        "1 worker, Redis": ("--state", state),
        # Its own database: rules are shared by every fake on one.
        "1 worker, Redis, rule": ("--state", state[:-1] + "1", "--faults", str(never)),
        "2 workers, Redis": ("--workers", "2", "--state", state),
    }
    cases = {
        "GET /health": ("/health", None),
        "GET /profiles/demo/bench (authenticated)": (
            "/profiles/demo/bench",
            {**KEY, "X-Mock-Session": "bench"},
        ),
    }
    figures: dict[str, Any] = {"generator": generator(), "connections": connections, "cases": {}}
    try:
        with contextlib.ExitStack() as stack:
            servers = {
                name: stack.enter_context(fake(free_port(), *extra)) for name, extra in configs.items()
            }
            for server in servers.values():
                requests.post(f"{server.url}/profiles", json=PROFILE, headers=KEY, timeout=5)
            for case, (path, headers) in cases.items():
                results: dict[str, list[LoadResult]] = {name: [] for name in servers}
                for _ in range(rounds):
                    for name, server in servers.items():
                        # Redis's own CPU counts as the server's when the state is there.
                        pids = [server.pid, redis_proc.pid] if "Redis" in name else server.pid
                        results[name].append(
                            measure(
                                host,
                                server.port,
                                path,
                                headers=headers,
                                connections=connections,
                                duration=duration,
                                pid=pids,
                            )
                        )
                trips = {
                    name: _round_trips(redis_port, server.port, path, headers)
                    for name, server in servers.items()
                    if "Redis" in name
                }
                figures["cases"][case] = {
                    name: {
                        "rps": round(_median(rs, "rps"), 1),
                        "cpu_us_per_request": round(_median(rs, "cpu_us"), 1),
                        "non_2xx": sum(r.errors for r in rs),
                        "redis_round_trips_per_request": trips.get(name),
                    }
                    for name, rs in results.items()
                }
    finally:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
    figures["wiremock"] = run_wiremock(duration=duration, rounds=rounds, connections=connections)
    return figures


def _wiremock_jar() -> Path | None:
    """The WireMock 3 standalone jar: $WIREMOCK_JAR, else npm's wiremock package in a cache
    outside the repository (installed there with npm when missing)."""
    given = os.environ.get("WIREMOCK_JAR")
    if given:
        return Path(given) if Path(given).is_file() else None
    found = sorted(WIREMOCK_CACHE.glob("node_modules/wiremock/build/wiremock-standalone-*.jar"))
    if not found and shutil.which("npm"):
        WIREMOCK_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "i", "wiremock", "--prefix", str(WIREMOCK_CACHE), "--no-audit", "--no-fund"],
            capture_output=True,
            timeout=300,
            check=False,
        )
        found = sorted(WIREMOCK_CACHE.glob("node_modules/wiremock/build/wiremock-standalone-*.jar"))
    return found[-1] if found else None


def run_wiremock(duration: float = 3.0, rounds: int = 3, connections: int = 32) -> dict[str, Any]:
    """WireMock 3 (its JVM warmed for 40 s) against the fake on ``GET /health``: an anchor.
    Skipped with BENCH_WIREMOCK=0, or without java or the jar."""
    if os.environ.get("BENCH_WIREMOCK", "1") == "0":
        return {"skipped": "BENCH_WIREMOCK=0"}
    java = shutil.which("java")
    jar = _wiremock_jar() if java else None
    if java is None or jar is None:
        return {"skipped": "no java" if java is None else "no WireMock jar (npm i wiremock)"}
    host = "127.0.0.1"
    port = free_port()
    args = [java, "-jar", str(jar), "--port", str(port), "--bind-address", host, "--disable-banner"]
    args += ["--no-request-journal", "--disable-request-logging"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"http://{host}:{port}/__admin/mappings", timeout=1)
                break
            except requests.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    return {"skipped": "WireMock did not start"}
                time.sleep(0.2)
        with fake(free_port()) as ours:
            body = requests.get(f"{ours.url}/health", timeout=5).text
            stub = {
                "request": {"method": "GET", "url": "/health"},
                "response": {"status": 200, "body": body, "headers": {"Content-Type": "application/json"}},
            }
            requests.post(f"http://{host}:{port}/__admin/mappings", json=stub, timeout=5).raise_for_status()
            measure(host, port, "/health", connections=connections, duration=WIREMOCK_WARMUP)  # JIT warm-up
            theirs: list[LoadResult] = []
            mine: list[LoadResult] = []
            for _ in range(rounds):
                theirs.append(
                    measure(host, port, "/health", connections=connections, duration=duration, pid=proc.pid)
                )
                mine.append(
                    measure(
                        host, ours.port, "/health", connections=connections, duration=duration, pid=ours.pid
                    )
                )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    wm_rps, fake_rps = _median(theirs, "rps"), _median(mine, "rps")
    return {
        "jar": jar.name,
        "warmup_s": WIREMOCK_WARMUP,
        "wiremock_rps": round(wm_rps, 1),
        "fake_rps": round(fake_rps, 1),
        "ratio": round(fake_rps / wm_rps, 3),
        "wiremock_cpu_us_per_request": round(_median(theirs, "cpu_us"), 1),
        "fake_cpu_us_per_request": round(_median(mine, "cpu_us"), 1),
        "wiremock_non_2xx": sum(r.errors for r in theirs),
    }


def report_scale(figures: dict[str, Any]) -> str:
    if "skipped" in figures:
        return f"Scale-out: skipped ({figures['skipped']})"
    lines = [
        f"Scale-out: 1 worker vs 2, embedded state vs Redis ({figures['generator']},"
        f" {figures['connections']} keep-alive connections; 2 cores, the load generator takes one;"
        " CPU is the server's own, workers and redis-server included)",
        f"{'case':42} {'server':22} {'rps':>8} {'CPU/request':>12} {'non-2xx':>8} {'Redis trips':>12}",
    ]
    for case, by_server in figures["cases"].items():
        for name, f in by_server.items():
            trips = f.get("redis_round_trips_per_request")
            shown = "" if trips is None else f"{trips:.3f}"
            lines.append(
                f"{case:42} {name:22} {f['rps']:>8.0f} {f['cpu_us_per_request']:>9.1f} us {f['non_2xx']:>8}"
                f" {shown:>12}"
            )
    lines.append("(1 worker, Redis, rule: a rule that matches every request and never fires)")
    wm = figures.get("wiremock", {})
    if "skipped" in wm:
        lines.append(f"WireMock anchor: skipped ({wm['skipped']})")
    elif wm:
        lines.append(
            f"WireMock anchor ({wm['jar']}, warmed {wm['warmup_s']:.0f} s), GET /health:"
            f" WireMock {wm['wiremock_rps']:.0f} rps"
            f" at {wm['wiremock_cpu_us_per_request']:.1f} us CPU/request, the fake {wm['fake_rps']:.0f} rps"
            f" at {wm['fake_cpu_us_per_request']:.1f} us: ratio {wm['ratio']:.2f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
