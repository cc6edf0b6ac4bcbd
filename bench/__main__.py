"""``make bench``: every benchmark, printed as ratios against a baseline run side by side.

Results are also written as JSON to ``bench/results/latest.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench import bench_server


def main() -> int:
    results = {}
    figures = bench_server.run()
    print(bench_server.report(figures), flush=True)
    results["server_throughput"] = figures
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    print(f"\nresults written to {out / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
