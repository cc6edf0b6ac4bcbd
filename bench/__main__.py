"""``make bench``: every benchmark, each figure a ratio against a baseline run side by side.

``python -m bench [server] [scale] [faults] [client] [locust] [ui] [proxy]`` runs only the steps
named (default: all).
Results are also written as JSON to ``bench/results/latest.json``. Each benchmark starts its
own servers in their own processes, on loopback, and stops them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench import bench_client, bench_faults, bench_proxy, bench_server, bench_ui

STEPS = ("server", "scale", "faults", "client", "locust", "ui", "proxy")


def _locust() -> tuple[dict[str, Any], str]:
    from load_tests.bench import compare_users

    figures = compare_users(10.0, users=4, rounds=2)
    return figures, (
        f"Locust user with the reference client vs a plain requests user ({figures['task']}, "
        f"{figures['users']} users, {figures['rounds']} rounds)\n"
        f"  {figures['resilient_rps']:.1f} vs {figures['plain_rps']:.1f} requests/s:"
        f" ratio {figures['ratio']:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    chosen = argv if argv is not None else sys.argv[1:]
    unknown = [step for step in chosen if step not in STEPS]
    if unknown:
        print(f"bench: unknown step(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}", file=sys.stderr)
        return 2
    steps = chosen or list(STEPS)
    results: dict[str, Any] = {}
    if "server" in steps:
        results["server_throughput"] = bench_server.run()
        print(bench_server.report(results["server_throughput"]), "\n", flush=True)
    if "scale" in steps:
        # 1 worker vs 2, embedded vs Redis state, WireMock warmed 40 s (BENCH_WIREMOCK=0: skip it).
        results["scale"] = bench_server.run_scale()
        print(bench_server.report_scale(results["scale"]), "\n", flush=True)
    if "faults" in steps:
        results["faults"] = bench_faults.run()
        print(bench_faults.report(results["faults"]), "\n", flush=True)
    if "proxy" in steps:
        results["proxy"] = bench_proxy.run()
        print(bench_proxy.report(results["proxy"]), "\n", flush=True)
    if "client" in steps:
        results["client"] = bench_client.run()
        print(bench_client.report(results["client"]), "\n", flush=True)
    if "locust" in steps:
        results["locust_users"], text = _locust()
        print(text, flush=True)
    if "ui" in steps:
        results["dashboard"] = bench_ui.run()
        print(bench_ui.report(results["dashboard"]), "\n", flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    print(f"\nresults written to {out / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
