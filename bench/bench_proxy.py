"""The cost of one proxy hop: ``mock-server proxy`` in front of the bare Starlette app, against
the bare app reached direct, side by side, in alternating rounds, with the same load generator.

Latency: one keep-alive connection, closed loop (one request at a time), ``GET /ping``; goal: the
hop adds at most 1 ms at p50. Throughput: 32 connections; goal: through the proxy at least half
the requests per second of going direct. The proxy runs as a user runs it (the CLI, its own
process, default HTTP stack: httptools on uvloop, no rules), so the hop includes the fault layer's
per-request work (journal entry, request id, metrics) as well as the forwarding itself.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench._load import LoadResult, generator, measure
from bench._servers import Served, bare, free_port, process

ROUTES = {"/ping": '{"ok":true,"service":"bare"}'}


@contextmanager
def proxy(port: int, upstream: str) -> Iterator[Served]:
    """``mock-server proxy`` to ``upstream`` in its own process (it answers /health by forwarding)."""
    with process(["-m", "mock_server", "proxy", "--upstream", upstream, "--port", str(port)], port) as served:
        yield served


def _median(results: list[LoadResult], attr: str) -> float:
    return statistics.median(getattr(r, attr) or float("nan") for r in results)


def run(duration: float = 3.0, rounds: int = 3) -> dict[str, Any]:
    host = "127.0.0.1"
    hop: dict[str, list[LoadResult]] = {"direct": [], "proxy": []}
    load: dict[str, list[LoadResult]] = {"direct": [], "proxy": []}
    with bare(free_port(), ROUTES) as base, proxy(free_port(), base.url) as front:
        for _ in range(rounds):
            # Alternating: the machine's other load drifts; both paths see the same drift.
            hop["direct"].append(
                measure(host, base.port, "/ping", connections=1, duration=duration, latency=True)
            )
            hop["proxy"].append(
                measure(
                    host, front.port, "/ping", connections=1, duration=duration, latency=True, pid=front.pid
                )
            )
            load["direct"].append(
                measure(host, base.port, "/ping", connections=32, duration=duration, pid=base.pid)
            )
            load["proxy"].append(
                measure(host, front.port, "/ping", connections=32, duration=duration, pid=front.pid)
            )
    direct_p50, proxy_p50 = _median(hop["direct"], "p50_ms"), _median(hop["proxy"], "p50_ms")
    direct_rps, proxy_rps = _median(load["direct"], "rps"), _median(load["proxy"], "rps")
    return {
        "generator": generator(),
        "rounds": rounds,
        "direct_p50_ms": round(direct_p50, 3),
        "proxy_p50_ms": round(proxy_p50, 3),
        "hop_p50_ms": round(proxy_p50 - direct_p50, 3),
        "direct_p99_ms": round(_median(hop["direct"], "p99_ms"), 3),
        "proxy_p99_ms": round(_median(hop["proxy"], "p99_ms"), 3),
        "round_hops_ms": [
            round(p.p50_ms - d.p50_ms, 3) for d, p in zip(hop["direct"], hop["proxy"], strict=True)
        ],
        "direct_rps": round(direct_rps, 1),
        "proxy_rps": round(proxy_rps, 1),
        "throughput_ratio": round(proxy_rps / direct_rps, 3),
        "proxy_cpu_us_per_request": round(_median(load["proxy"], "cpu_us"), 1),
        "direct_cpu_us_per_request": round(_median(load["direct"], "cpu_us"), 1),
        "errors": sum(r.errors for r in hop["proxy"] + load["proxy"]),
        "goals": {"hop_p50_ms_max": 1.0, "throughput_ratio_min": 0.5},
    }


def report(f: dict[str, Any]) -> str:
    hops = ", ".join(f"{h:+.3f}" for h in f["round_hops_ms"])
    return "\n".join(
        [
            f"Proxy hop ({f['generator']}): mock-server proxy in front of the bare Starlette app vs the"
            f" bare app direct, medians of {f['rounds']} alternating rounds (goals: +1 ms at p50 at most,"
            " throughput at least 0.5x)",
            f"  1 connection: p50 {f['proxy_p50_ms']:.3f} vs {f['direct_p50_ms']:.3f} ms direct:"
            f" the hop adds {f['hop_p50_ms']:+.3f} ms (each round: {hops});"
            f" p99 {f['proxy_p99_ms']:.3f} vs {f['direct_p99_ms']:.3f} ms",
            f"  32 connections: {f['proxy_rps']:.0f} vs {f['direct_rps']:.0f} requests/s direct: ratio"
            f" {f['throughput_ratio']:.3f} (proxy {f['proxy_cpu_us_per_request']:.0f} us CPU/request,"
            f" bare app {f['direct_cpu_us_per_request']:.0f}; {f['errors']} errors through the proxy)",
        ]
    )


if __name__ == "__main__":
    print(report(run()))
