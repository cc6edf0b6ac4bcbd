"""``python -m load_tests run`` end to end, in child processes (locust never enters pytest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.socket, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _start(args: list[str], out: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "load_tests", "run", *args, "--out", str(out), "--quiet"]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_exit_code_follows_thresholds_not_injected_faults(tmp_path):
    """Under the flaky preset the naive baseline fails calls, yet a run that meets its thresholds
    exits 0; the same run against an impossible threshold exits 1. Both write every report."""
    passing = tmp_path / "passing.yaml"
    passing.write_text(
        yaml.safe_dump({"defaults": {"judge": ["resilient"], "thresholds": {"calls": ["count>0"]}}})
    )
    failing = tmp_path / "failing.yaml"
    failing.write_text(
        # Impossible whether or not the resilient users got a call in: the verdict cannot hang on timing.
        yaml.safe_dump({"defaults": {"judge": ["resilient"], "thresholds": {"calls": ["count<0"]}}})
    )
    common = ["--scenario", "steady", "--duration", "6", "--users", "2", "--clients", "naive,resilient"]
    runs = {
        "pass": _start([*common, "--thresholds", str(passing)], tmp_path / "pass"),
        "fail": _start([*common, "--thresholds", str(failing), "--seed", "2"], tmp_path / "fail"),
    }
    codes = {name: proc.wait(timeout=90) for name, proc in runs.items()}
    assert codes == {"pass": 0, "fail": 1}

    out = tmp_path / "pass"
    for name in (
        "locust_stats.csv",
        "locust_stats_history.csv",
        "locust.json",
        "locust.html",
        "report.html",
        "summary.md",
        "throughput.png",
        "latency.png",
        "failures.png",
        "breaker.png",
        "samples.json",
    ):
        assert (out / name).stat().st_size > 0, name
    samples = json.loads((out / "samples.json").read_text())
    naive = [w for w in samples["windows"] if w["kind"] == "naive"]
    assert sum(w["calls"] for w in naive) > 0
    # One locust event per logical call: locust's own count equals ours.
    stats = json.loads((out / "locust.json").read_text())
    assert sum(e["num_requests"] for e in stats) == sum(w["calls"] for w in samples["windows"])
    verdict = json.loads((tmp_path / "fail" / "thresholds.json").read_text())
    assert verdict["ok"] is False and verdict["results"][0]["metric"] == "calls"
    assert "Thresholds: FAIL" in (tmp_path / "fail" / "summary.md").read_text()
