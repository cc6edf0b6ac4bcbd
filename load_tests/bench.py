"""The locust user with the reference client against a plain-requests user, for ``bench/``.

:func:`compare_users` runs a ``bench`` scenario (no faults, no quota to speak of, one task,
no wait between calls) once per client kind, each kind alone on a fresh fake for ``duration``
seconds with the same users, and returns both rates and their ratio (goal: at least 0.9).
Locust runs in child processes; this module never imports it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ._runner import RunOptions, run

__all__ = ["compare_users"]


def compare_users(
    duration: float = 10.0,
    *,
    users: int = 4,
    task: str = "get_profile",
    rounds: int = 1,
    out: Path | None = None,
) -> dict[str, Any]:
    """``{"plain_rps", "resilient_rps", "ratio", ...}`` from back-to-back locust runs.

    ``task`` is ``get_profile`` (``GET /profiles/{tenant}/{name}``, the client's cache off, so
    every call goes to the server: the client's own overhead) or ``generate`` (``POST
    /hr_generate``; the client adds an ``Idempotency-Key`` the fake must store, so the figure
    also carries that server-side cost). With ``rounds`` > 1 the order alternates (plain first,
    then resilient first, ...) so drift on a shared machine does not favour one side; the
    rates are pooled over the rounds.
    """
    scenario = {"get_profile": "bench", "generate": "bench-generate"}[task]
    route = {"get_profile": "GET /profiles/{tenant}/{name}", "generate": "POST /hr_generate"}[task]
    results: dict[str, Any] = {"duration_s": duration, "users": users, "task": route, "rounds": rounds}
    totals = {"naive": [0, 0.0, 0], "resilient": [0, 0.0, 0]}  # calls, seconds, failures
    with tempfile.TemporaryDirectory(prefix="load_tests-bench-") as tmp:
        base = out or Path(tmp)
        for r in range(rounds):
            order = ("naive", "resilient") if r % 2 == 0 else ("resilient", "naive")
            for kind in order:
                result = run(
                    RunOptions(
                        scenario=scenario,
                        duration=duration,
                        users=users,
                        out=base / f"{kind}-{r}",
                        kinds=(kind,),
                        quiet=True,
                    )
                )
                row = next((x for x in result.rows if x.kind == kind), None)
                if row is None:
                    raise RuntimeError(f"the {kind} bench run produced no samples (exit {result.exit_code})")
                totals[kind][0] += row.calls
                totals[kind][1] += row.calls / row.rps if row.rps else 0.0
                totals[kind][2] += round(row.calls * (1 - row.success))
    for kind, label in (("naive", "plain"), ("resilient", "resilient")):
        calls, seconds, failures = totals[kind]
        results[f"{label}_rps"] = round(calls / seconds, 2) if seconds else 0.0
        results[f"{label}_failures"] = failures
    plain = results["plain_rps"]
    results["ratio"] = round(results["resilient_rps"] / plain, 3) if plain else None
    results["goal"] = 0.9
    return results


if __name__ == "__main__":
    import json
    import sys

    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    print(
        json.dumps(compare_users(seconds, task=sys.argv[2] if len(sys.argv) > 2 else "get_profile"), indent=2)
    )
