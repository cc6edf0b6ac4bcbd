"""The modules the pytest process may import stay free of locust and gevent."""

from __future__ import annotations

import subprocess
import sys

PURE = [
    "load_tests",
    "load_tests._cli",
    "load_tests._fake",
    "load_tests._runner",
    "load_tests._samples",
    "load_tests._scenarios",
    "load_tests._summary",
    "load_tests._thresholds",
    "load_tests.bench",
]


def test_pure_modules_do_not_import_locust():
    """Importing the runner, thresholds, summary and bench never monkey-patches anything."""
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in PURE)
        + "bad = [m for m in ('locust', 'gevent') if m in sys.modules]\n"
        + "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_locust_command_for_processes_and_master(tmp_path):
    """--processes and --master bind loopback only; the limiter rate is split per process."""
    from load_tests._runner import RunOptions, locust_command

    opts = RunOptions(scenario="rate-limit", out=tmp_path, processes=3)
    cmd = locust_command(opts, "http://127.0.0.1:1", "rid", fake=True, master_port=5999)
    assert cmd[cmd.index("--processes") + 1] == "3"
    assert cmd[cmd.index("--master-bind-host") + 1] == "127.0.0.1"
    assert float(cmd[cmd.index("--lt-limiter-rate") + 1]) == 1.5
    assert cmd[-1] == "ResilientUser" and "--lt-fake" in cmd

    opts = RunOptions(scenario="chaos", out=tmp_path, master=True, expect_workers=2)
    cmd = locust_command(opts, "http://127.0.0.1:1", "rid", fake=False, master_port=5999)
    assert "--master" in cmd and cmd[cmd.index("--expect-workers") + 1] == "2"
    assert cmd[-2:] == ["NaiveUser", "ResilientUser"] and "--lt-fake" not in cmd
