"""The engine imports no HTTP library: its tests pass in an interpreter where neither
``requests`` nor ``httpx`` is ever imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
ENGINE_MODULES = (
    "client._auth",
    "client._breaker",
    "client._httpcache",
    "client._clock",
    "client._engine",
    "client._errors",
    "client._http",
    "client._limiter",
    "client._metrics",
    "client._policies",
    "client._redaction",
    "client._retry",
    "client._timeouts",
)

SCRIPT = """
import sys
import pytest
code = pytest.main(["-q", "-p", "no:cacheprovider", {tests!r}])
for name in {modules!r}:
    __import__(name)
leaked = sorted(m for m in ("requests", "httpx", "urllib3", "httpcore") if m in sys.modules)
print("LEAKED", leaked)
sys.exit(int(code) or (3 if leaked else 0))
"""


def test_engine_tests_pass_without_any_http_library() -> None:
    script = SCRIPT.format(modules=ENGINE_MODULES, tests=str(HERE / "test_engine.py"))
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=HERE.parent.parent,
        # Installed pytest plugins (schemathesis's) import requests themselves: load none.
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert "LEAKED []" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
