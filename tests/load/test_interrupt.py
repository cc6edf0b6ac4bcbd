"""Ctrl-C during ``python -m load_tests demo``: the run says it was interrupted, judges no
threshold, reports what it gathered, and exits 130; locust and the fake are stopped."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.socket, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _lines(stream, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)
    into.put("")


def _as_a_foreground_job() -> None:
    # A terminal's foreground job takes Ctrl-C. A shell starts a background job (``make test &``,
    # ``nohup ... &``) with SIGINT ignored, and an ignored signal is inherited across exec: Python
    # would then install no KeyboardInterrupt handler, and the SIGINT below would do nothing.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_the_demo_reports_a_partial_run_and_exits_130(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "load_tests", "demo", "--duration", "60", "--users", "1"]
    cmd += ["--progress", "1", "--out", str(out)]
    # A session of its own, as a terminal's foreground job: Ctrl-C signals the whole group.
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_as_a_foreground_job,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 40
        # The first progress line where both kinds have answered (a call held by a timeout fault
        # can keep one of them silent for its first seconds): the report then has both columns.
        while not any(line.startswith("[") and "naive" in line and "resilient" in line for line in seen):
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line, "the demo ended before its first progress line:\n" + "".join(seen)
            seen.append(line)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    while (line := lines.get(timeout=5)) != "":
        seen.append(line)
    text = "".join(seen)

    assert code == 130, text
    assert "thresholds: PASS" not in text and "thresholds: FAIL" not in text
    assert "thresholds: not judged: the run was interrupted" in text
    assert re.search(r"INTERRUPTED after \d+\.\d s of 60 s", text), text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    # The partial run is still reported, with the fake's view of it (read before stopping it).
    summary = (out / "summary.md").read_text()
    assert "INTERRUPTED after" in summary and "## Thresholds: not judged" in summary
    assert "Thresholds: PASS" not in summary
    assert "Partial run." in (out / "report.html").read_text()
    assert re.search(r"reached server\s+\d+\s+\d+", text), text
    # Nothing is left listening: the fake was stopped.
    port = int(re.search(r"against http://127\.0\.0\.1:(\d+)", text).group(1))
    # While it ran, the fake's dashboard was announced at its own URL.
    assert f"watch it live at http://127.0.0.1:{port}/__admin/ui" in text, text
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
