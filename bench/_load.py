"""A small HTTP/1.1 load generator: N keep-alive connections, closed loop, for a fixed time.

It runs in its own process beside the servers it measures, so the figures compare servers
under the same generator. Latency is measured per request from write to the last body byte.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)

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
        return self.percentile(0.50) * 1000

    @property
    def p99_ms(self) -> float:
        return self.percentile(0.99) * 1000

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.latencies) * 1000 if self.latencies else float("nan")


def request_bytes(
    method: str, path: str, host: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


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
            if status >= 400:
                result.errors += 1
            result.requests += 1
            if record:
                result.latencies.append(end - start)
    finally:
        writer.close()


async def _run(
    host: str, port: int, payload: bytes, connections: int, duration: float, warmup: float, record: bool
) -> LoadResult:
    result = LoadResult()
    now = time.perf_counter()
    warmup_until = now + warmup
    stop_at = warmup_until + duration
    await asyncio.gather(
        *(_worker(host, port, payload, stop_at, result, record, warmup_until) for _ in range(connections))
    )
    result.elapsed = duration
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
) -> LoadResult:
    """Drive ``payload`` over ``connections`` keep-alive connections for ``duration`` seconds."""
    return asyncio.run(_run(host, port, payload, connections, duration, warmup, record))
