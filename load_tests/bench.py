"""The locust user with the reference client against a plain-requests user, for ``bench/``.

:func:`compare_users` runs the ``bench`` scenario (no faults, a generous quota, ``POST
/hr_generate`` only, no wait between calls) once per client kind on one fresh fake, each kind
alone for ``duration`` seconds with the same users, and returns both rates and their ratio
(goal: at least 0.9). Locust runs in child processes; this module never imports it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ._runner import RunOptions, run

__all__ = ["compare_users"]


def compare_users(duration: float = 10.0, *, users: int = 4, out: Path | None = None) -> dict[str, Any]:
    """``{"plain_rps", "resilient_rps", "ratio", ...}`` from two back-to-back locust runs."""
    results: dict[str, Any] = {"duration_s": duration, "users": users, "task": "POST /hr_generate"}
    with tempfile.TemporaryDirectory(prefix="load_tests-bench-") as tmp:
        base = out or Path(tmp)
        for kind, label in (("naive", "plain"), ("resilient", "resilient")):
            result = run(
                RunOptions(
                    scenario="bench",
                    duration=duration,
                    users=users,
                    out=base / kind,
                    kinds=(kind,),
                    quiet=True,
                )
            )
            row = next((r for r in result.rows if r.kind == kind), None)
            if row is None:
                raise RuntimeError(f"the {kind} bench run produced no samples (exit {result.exit_code})")
            results[f"{label}_rps"] = round(row.rps, 2)
            results[f"{label}_p50_ms"] = row.p50
            results[f"{label}_failures"] = round(1 - row.success, 4)
    results["ratio"] = (
        round(results["resilient_rps"] / results["plain_rps"], 3) if results["plain_rps"] else None
    )
    results["goal"] = 0.9
    return results


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(compare_users(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0), indent=2))
