"""The fake as a child process for a load run, and the admin look-ups the reports need.

The fake runs in its own process (``python -m mock_server serve``): locust's gevent
monkey-patching must never meet the server's asyncio, and the load generator should not steal
the server's CPU inside one interpreter.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import yaml

__all__ = ["Fake", "free_port", "server_facts"]


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tenants_yaml(per_minute: int, burst: int) -> str:
    tenants = []
    for name in ("demo", "acme"):
        tenants.append(
            {
                "name": name,
                "api_keys": [f"{name}-key"],
                "basic": {name: f"{name}-pass"},
                "oauth_clients": {f"{name}-client": f"{name}-secret"},
                "signing_secret": f"{name}-signing-secret",
                "require_signature": False,
                "rate_limit": {"per_minute": per_minute, "burst": burst},
            }
        )
    return yaml.safe_dump({"tenants": tenants}, sort_keys=False)


class Fake:
    """``python -m mock_server serve`` on a free loopback port; a context manager.

    ``quota`` is the tenants' ``(per_minute, burst)``; the journal is made large enough to keep
    every request of a run, so per-session counts and compliance cover the whole run.
    """

    def __init__(
        self,
        *,
        preset: str | None = None,
        seed: int = 1,
        quota: tuple[int, int] = (600, 100),
        journal_size: int = 500_000,
        log_path: Path | None = None,
        python: str = sys.executable,
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.fixed_port = port
        self.extra_args = tuple(extra_args)
        self.preset = preset
        self.seed = seed
        self.quota = quota
        self.journal_size = journal_size
        self.log_path = log_path
        self.python = python
        self.port = 0
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._log: Any = None

    def command(self, port: int, tenants: Path) -> list[str]:
        cmd = [self.python, "-m", "mock_server", "serve", "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--db", ":memory:", "--seed", str(self.seed), "--journal-size", str(self.journal_size)]
        cmd += ["--tenants", str(tenants)]
        if self.preset:
            cmd += ["--preset", self.preset]
        return [*cmd, *self.extra_args]

    def start(self, timeout: float = 20.0) -> str:
        """Start the fake and wait for ``/health``; returns its URL."""
        self._tmp = tempfile.TemporaryDirectory(prefix="load_tests-")
        tenants = Path(self._tmp.name) / "tenants.yaml"
        tenants.write_text(_tenants_yaml(*self.quota), encoding="utf-8")
        self._log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        last_error: str = ""
        for _ in range(1 if self.fixed_port else 3):  # a port taken between free_port() and bind: retry
            self.port = self.fixed_port or free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            self._proc = subprocess.Popen(
                self.command(self.port, tenants),
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                # Its own process group: a Ctrl-C in the terminal must not stop the fake before
                # the runner has read its journal for the partial run; stop() ends it.
                process_group=0,
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    last_error = f"the fake exited with code {self._proc.returncode}"
                    break
                try:
                    if requests.get(self.url + "/health", timeout=1).status_code == 200:
                        return self.url
                except requests.RequestException as exc:
                    last_error = str(exc)
                time.sleep(0.1)
            self.stop()
        raise RuntimeError(f"could not start the fake: {last_error}")

    def stop(self) -> None:
        """Terminate the fake (kill it if it lingers)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
            self._log = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Fake:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def server_facts(url: str, sessions: Sequence[str]) -> dict[str, Any]:
    """Per session: requests the fake saw (from its journal) and its compliance report.

    Returns ``{}`` when the host has no admin API (a real upstream).
    """
    out: dict[str, Any] = {}
    for session in sessions:
        try:
            count = requests.get(f"{url}/__admin/requests/count", params={"session": session}, timeout=30)
            report = requests.get(f"{url}/__admin/compliance", params={"session": session}, timeout=60)
        except requests.RequestException:
            return {}
        if count.status_code != 200 or report.status_code != 200:
            return {}
        out[session] = {"requests": count.json().get("count"), "compliance": report.json()}
    return out
