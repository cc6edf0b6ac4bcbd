"""``make bench``: every benchmark, each figure a ratio against a baseline run side by side.

Results are also written as JSON to ``bench/results/latest.json``. Each benchmark starts its
own servers in their own processes, on loopback, and stops them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench import bench_client, bench_faults, bench_server


def _locust(results: dict[str, Any]) -> str:
    from load_tests.bench import compare_users

    figures = compare_users(10.0, users=4, rounds=2)
    results["locust_users"] = figures
    return (
        f"Locust user with the reference client vs a plain requests user ({figures['task']}, "
        f"{figures['users']} users, {figures['rounds']} rounds)\n"
        f"  {figures['resilient_rps']:.1f} vs {figures['plain_rps']:.1f} requests/s:"
        f" ratio {figures['ratio']:.3f}"
    )


def main() -> int:
    results: dict[str, Any] = {}
    steps = [
        ("server_throughput", bench_server.run, bench_server.report),
        ("faults", bench_faults.run, bench_faults.report),
        ("client", bench_client.run, bench_client.report),
    ]
    for name, run, report in steps:
        figures = run()
        results[name] = figures
        print(report(figures), "\n", flush=True)
    print(_locust(results), flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    print(f"\nresults written to {out / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
