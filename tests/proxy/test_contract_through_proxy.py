"""The fake's own contract tests pass through the proxy: the fake as the upstream, the provider
checks pointed at the proxy with ``--base-url``.

A focused subset, to keep the suite fast (about 10 s): the schema conformance of every operation
for valid input (schemathesis, ``test_provider_schema.py``'s positive cases, 30 examples each) and
the vector bounds on both sides (``test_provider_bounds.py``: accepted at the bounds, refused past
them with the error body). Together they cover every route and the documented statuses, headers
and bodies, so what the proxy changed on the way would fail them. The negative cases and the
stateful links test also pass through the proxy (run them with ``--base-url``); they are left out
here for time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from mock_server import AdminClient, ServerThread

from .conftest import ROOT, free_port, run_cli, wait_for_port

pytestmark = pytest.mark.socket


def test_provider_checks_pass_through_the_proxy(fake: ServerThread) -> None:
    # The proxy in a process of its own, as a user runs it (and off this process's GIL, which
    # the fake's thread holds).
    port = free_port()
    proc = run_cli("proxy", "--upstream", fake.url, "--port", str(port))
    try:
        wait_for_port(port, proc=proc)
        _check(fake, f"http://127.0.0.1:{port}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def _check(fake: ServerThread, url: str) -> None:
    proxy = AdminClient(url)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:randomly",
            "contract_tests/test_provider_schema.py",
            "contract_tests/test_provider_bounds.py",
            "-k",
            "not stateful and not negative",
            "--base-url",
            url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CI": "true"},
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
    # They did go through the proxy: its journal saw them, and so did the fake's.
    assert proxy.count() > 50
    assert fake.admin.count() >= proxy.count() - proxy.count(status=502)
