"""Load generators: wrk when installed, else a small asyncio one; both closed-loop, keep-alive.

Each runs in its own process beside the servers it measures (wrk is a process; the asyncio
generator runs in the benchmark's own process, on uvloop when installed), so the figures compare
servers under the same generator. wrk (C) costs a fraction of the CPU per request the asyncio
generator does, which matters on a 2-core machine where generator and server share the cores:
``BENCH_GENERATOR=asyncio`` forces the asyncio one. Each measurement is preceded by a warm-up
that is not counted.

Besides requests per second and latency, each measurement reports the server's CPU time per
request: ``utime + stime`` of the server process (``/proc/<pid>/stat``) over the measured run,
divided by the requests answered in it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]


@dataclass
class LoadResult:
    requests: int = 0
    #: Responses other than 2xx, and connections broken mid-request.
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    #: The server's CPU time per answered request, in microseconds (None: no pid given).
    cpu_us: float | None = None
    generator: str = "asyncio"
    #: Percentiles as wrk reports them (the asyncio generator keeps every latency instead).
    reported: dict[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50_ms(self) -> float:
        return self.reported.get("p50_ms", self.percentile(0.50) * 1000)

    @property
    def p99_ms(self) -> float:
        return self.reported.get("p99_ms", self.percentile(0.99) * 1000)

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.latencies) * 1000 if self.latencies else float("nan")


Pids = int | Sequence[int]


def cpu_seconds(pid: Pids) -> float:
    """User plus system CPU time so far (all threads) of process ``pid`` and its live descendants
    (a fake's workers and private redis-server), or of several such trees, in seconds."""
    if not isinstance(pid, int):
        return sum(cpu_seconds(p) for p in pid)
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # The command name is in parentheses and may hold spaces: count fields after it.
            fields = stat.read().rpartition(")")[2].split()
    except OSError:  # gone meanwhile
        return 0.0
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total + sum(cpu_seconds(child) for child in _children(pid))


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as children:
                found += [int(c) for c in children.read().split()]
    except OSError:
        pass
    return found


def generator() -> str:
    """``wrk`` when installed (unless BENCH_GENERATOR says otherwise), else ``asyncio``."""
    chosen = os.environ.get("BENCH_GENERATOR", "").strip().lower()
    if chosen in ("asyncio", "wrk"):
        return chosen
    return "wrk" if shutil.which("wrk") else "asyncio"


def request_bytes(
    method: str, path: str, host: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def measure(
    host: str,
    port: int,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    connections: int = 32,
    duration: float = 3.0,
    pid: Pids | None = None,
    latency: bool = False,
) -> LoadResult:
    """``GET path`` over ``connections`` keep-alive connections for ``duration`` seconds, after a
    warm-up, with the chosen generator."""
    if generator() == "wrk":
        url = f"http://{host}:{port}{path}"
        _wrk(url, connections, 1, headers)  # warm-up
        return _wrk(url, connections, max(1, round(duration)), headers, pid=pid)
    payload = request_bytes("GET", path, host, headers)
    return run_load(host, port, payload, connections=connections, duration=duration, record=latency, pid=pid)


def _wrk(
    url: str, connections: int, seconds: int, headers: dict[str, str] | None, *, pid: Pids | None = None
) -> LoadResult:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    cpu0 = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    cpu1 = cpu_seconds(pid) if pid else 0.0
    result = LoadResult(generator="wrk")
    done = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", out, re.M)
    if done is None:
        raise RuntimeError(f"wrk printed no total:\n{out}")
    result.requests = int(done.group(1))
    result.elapsed = float(done.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[done.group(3)]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    broken = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result.errors = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(n) for n in broken.groups()) if broken else 0
    )
    for label, key in (("50%", "p50_ms"), ("99%", "p99_ms")):
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if match:
            unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
            result.reported[key] = float(match.group(1)) * unit
    if pid and result.requests:
        result.cpu_us = (cpu1 - cpu0) / result.requests * 1e6
    return result


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    if length:
        await reader.readexactly(length)
    return status


async def _worker(
    host: str,
    port: int,
    payload: bytes,
    stop_at: float,
    result: LoadResult,
    record: bool,
    warmup_until: float,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    clock = time.perf_counter
    try:
        while True:
            start = clock()
            if start >= stop_at:
                return
            writer.write(payload)
            try:
                status = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                result.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            end = clock()
            if start < warmup_until:
                continue
            if not 200 <= status < 300:
                result.errors += 1
            result.requests += 1
            if record:
                result.latencies.append(end - start)
    finally:
        writer.close()


async def _run(
    host: str,
    port: int,
    payload: bytes,
    connections: int,
    duration: float,
    warmup: float,
    record: bool,
    pid: Pids | None = None,
) -> LoadResult:
    result = LoadResult()
    now = time.perf_counter()
    warmup_until = now + warmup
    stop_at = warmup_until + duration
    cpu: list[float] = []

    async def sample_at_warmup_end() -> None:
        await asyncio.sleep(max(0.0, warmup_until - time.perf_counter()))
        cpu.append(cpu_seconds(pid) if pid else 0.0)

    await asyncio.gather(
        sample_at_warmup_end(),
        *(_worker(host, port, payload, stop_at, result, record, warmup_until) for _ in range(connections)),
    )
    result.elapsed = duration
    if pid and result.requests:
        result.cpu_us = (cpu_seconds(pid) - cpu[0]) / result.requests * 1e6
    return result


def run_load(
    host: str,
    port: int,
    payload: bytes,
    *,
    connections: int = 32,
    duration: float = 3.0,
    warmup: float = 0.5,
    record: bool = True,
    pid: Pids | None = None,
) -> LoadResult:
    """Drive ``payload`` over ``connections`` keep-alive connections for ``duration`` seconds
    with the asyncio generator."""
    factory = uvloop.new_event_loop if uvloop is not None else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_run(host, port, payload, connections, duration, warmup, record, pid))
