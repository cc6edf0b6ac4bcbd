"""Schemathesis's own command line, as a user runs it, is clean against the provider.

The repository's ``schemathesis.toml`` tells ``st run`` which refusals of valid data are about
state (a cursor this server never issued, a reused Idempotency-Key, a stale If-Match); the
document says the rest. The run is bounded (few examples, a fixed seed) to keep it to seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mock_server import ServerConfig, ServerThread

pytestmark = pytest.mark.socket
CONFIG = Path(__file__).resolve().parents[1] / "schemathesis.toml"


def _st() -> str:
    """The ``st`` console script of the running interpreter's environment."""
    beside = Path(sys.executable).with_name("st")
    found = str(beside) if beside.exists() else shutil.which("st")
    if found is None:
        pytest.fail("the schemathesis command line (st) is not installed; pip install -e '.[dev]'")
    return found


@pytest.fixture(scope="module")
def served(request: pytest.FixtureRequest) -> Iterator[str]:
    """The provider's base URL: ``--base-url``, or a fake with default settings on a free port
    (as ``python -m mock_server serve`` starts it, limits included)."""
    base = request.config.getoption("--base-url")
    if base:
        yield str(base).rstrip("/")
        return
    with ServerThread(ServerConfig(db=":memory:")) as server:
        yield server.url


def test_st_run_is_clean(served: str, api_key: str, tmp_path: Path) -> None:
    """``st run URL/openapi.json -H 'X-API-Key: KEY' --checks all`` exits 0 with the shipped
    configuration, found the way a user's run finds it (in the working directory)."""
    assert CONFIG.is_file(), f"{CONFIG} is missing"
    # st writes .hypothesis and .schemathesis where it runs: a scratch directory keeps them out
    # of the checkout.
    shutil.copy(CONFIG, tmp_path / "schemathesis.toml")
    command = [
        _st(),
        "run",
        f"{served}/openapi.json",
        "-H",
        f"X-API-Key: {api_key}",
        "--checks",
        "all",
        "--max-examples",
        "10",
        "--seed",
        "1",
    ]
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, f"st run exited {done.returncode}:\n{report}"
    assert "No issues found" in done.stdout or "passed" in done.stdout, report
