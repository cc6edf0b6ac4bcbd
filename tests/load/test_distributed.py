"""Locust's distributed mode on loopback: one master, two workers, merged stats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from load_tests._fake import free_port

pytestmark = [pytest.mark.socket, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_master_merges_two_workers(tmp_path):
    """Both workers run users and report; the master's samples and locust's stats agree."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    master = subprocess.Popen(
        [sys.executable, "-m", "load_tests", "run", "--scenario", "steady", "--duration", "6", "--users", "2"]
        + [
            "--master",
            "--expect-workers",
            "2",
            "--master-port",
            str(port),
            "--out",
            str(tmp_path),
            "--quiet",
        ],
        cwd=ROOT,
        env=env,
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "load_tests", "worker", "--master-port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        assert master.wait(timeout=90) == 0
        for w in workers:
            w.wait(timeout=30)
    finally:
        for p in (master, *workers):
            if p.poll() is None:
                p.kill()
                p.wait()
    samples = json.loads((tmp_path / "samples.json").read_text())
    assert len(samples["sources"]) == 2 and all(n > 0 for n in samples["sources"].values())
    assert samples["meta"]["distributed"] is True
    merged = sum(w["calls"] for w in samples["windows"])
    assert merged == sum(samples["sources"].values())
    stats = json.loads((tmp_path / "locust.json").read_text())
    assert sum(e["num_requests"] for e in stats) == merged
    assert (tmp_path / "report.html").exists()
