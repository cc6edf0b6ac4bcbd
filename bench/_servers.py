"""Servers the benchmarks measure, each in its own process under the same uvicorn settings."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

UVICORN = dict(log_level="warning", access_log=False, lifespan="on", timeout_keep_alive=30, backlog=2048)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def process(args: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[str]:
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/health", timeout=1)
                break
            except requests.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{args} did not start: {proc.stderr.read().decode() if proc.stderr else ''}"
                    ) from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


ROOMY_TENANTS = {
    "tenants": [
        {
            "name": name,
            "api_keys": [f"{name}-key"],
            "basic": {name: f"{name}-pass"},
            "oauth_clients": {f"{name}-client": f"{name}-secret"},
            "signing_secret": f"{name}-signing-secret",
            "rate_limit": {"per_minute": 60_000_000, "burst": 1_000_000},
        }
        for name in ("demo", "acme")
    ]
}


@contextmanager
def fake(port: int, *extra: str) -> Iterator[str]:
    """The fake, started the way a user starts it, with limits no benchmark reaches (else the
    server's own rate limiter is what gets measured)."""
    with tempfile.TemporaryDirectory() as tmp:
        tenants = Path(tmp) / "tenants.json"
        tenants.write_text(json.dumps(ROOMY_TENANTS))
        args = [
            "-m",
            "mock_server",
            "serve",
            "--port",
            str(port),
            "--db",
            ":memory:",
            "--tenants",
            str(tenants),
        ]
        with process([*args, *extra], port) as url:
            yield url


@contextmanager
def bare(port: int, routes: dict[str, str]) -> Iterator[str]:
    """A bare Starlette app answering fixed JSON on ``routes`` (path -> JSON text or 'sleep:S')."""
    with process(["-m", "bench._bare", str(port), json.dumps(routes)], port) as url:
        yield url
