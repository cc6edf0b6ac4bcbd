"""Servers the benchmarks measure, each in its own process, started as a user starts it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import requests

from load_tests._fake import Fake, free_port

__all__ = ["UVICORN", "Served", "bare", "fake", "free_port", "process"]

#: The bare app's uvicorn settings: the fastest uvicorn there is (httptools on uvloop, the two
#: C extensions of uvicorn[standard]), with the fake's keep-alive and backlog.
UVICORN = dict(
    log_level="warning",
    access_log=False,
    lifespan="on",
    timeout_keep_alive=30,
    backlog=2048,
    http="httptools",
    loop="uvloop",
)


@dataclass(frozen=True)
class Served:
    url: str
    pid: int

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@contextmanager
def process(args: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[Served]:
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
        yield Served(url, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@contextmanager
def fake(port: int, *extra: str) -> Iterator[Served]:
    """The fake, started the way a user starts it (the CLI in its own process, default HTTP stack:
    httptools on uvloop), with the default journal and limits no benchmark reaches (else the
    server's own rate limiter is measured)."""
    with Fake(port=port, extra_args=extra, quota=(60_000_000, 1_000_000), journal_size=10_000) as server:
        assert server._proc is not None  # started
        yield Served(server.url, server._proc.pid)


@contextmanager
def bare(port: int, routes: dict[str, str]) -> Iterator[Served]:
    """A bare Starlette app answering fixed JSON on ``routes`` (path -> JSON text or 'sleep:S')."""
    with process(["-m", "bench._bare", str(port), json.dumps(routes)], port) as served:
        yield served
