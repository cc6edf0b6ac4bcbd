"""Real processes on real sockets: a redis-server (pytest-redis's ``redis_proc``), fakes with
``workers=N`` sharing it, and a way to tell which worker process holds a connection."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
KEY = {"X-API-Key": "demo-key"}


@pytest.fixture
def redis_url(redis_proc: Any) -> str:
    """The session's redis-server, emptied for this test."""
    url = f"redis://{redis_proc.host}:{redis_proc.port}/0"
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()
    return url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Conn:
    """One kept-alive HTTP connection to a fake: every request on it reaches the same process."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)
        self.http = http.client.HTTPConnection(host, self.port, timeout=10)
        self.http.connect()

    @property
    def local_port(self) -> int:
        assert self.http.sock is not None
        return int(self.http.sock.getsockname()[1])

    def __call__(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        sent = dict(KEY if headers is None else headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode() if not isinstance(body, bytes) else body
            sent.setdefault("Content-Type", "application/json")
        self.http.request(method, path, body=data, headers=sent)
        response = self.http.getresponse()
        raw = response.read()
        text: Any = json.loads(raw) if raw and "json" in (response.getheader("content-type") or "") else raw
        return response.status, {k.lower(): v for k, v in response.getheaders()}, text

    def close(self) -> None:
        self.http.close()


def _socket_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server side of the loopback connection from ``client_port``."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if (
                int(local.rsplit(":", 1)[1], 16) == server_port
                and int(remote.rsplit(":", 1)[1], 16) == client_port
            ):
                return inode
    return None


def worker_of(conn: Conn, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the server side of ``conn`` (Linux /proc), None if unknown."""
    inode = None
    for _ in range(50):  # accepted a moment after connect() returns
        inode = _socket_inode(conn.port, conn.local_port)
        if inode is not None:
            break
        time.sleep(0.01)
    if inode is None:
        return None
    wanted = f"socket:[{inode}]"
    for _ in range(100):
        for pid in pids:
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                        return pid
                except OSError:
                    continue
        time.sleep(0.01)
    return None


def conns_on_distinct_workers(url: str, pids: list[int], count: int, tries: int = 150) -> list[Conn]:
    """Connections held by ``count`` different workers, or at least two (the kernel picks the
    worker that accepts, and with 3 workers on 2 cores one may seldom win), each list item on
    a worker of its own; the first two are always on different workers."""
    chosen: dict[int, Conn] = {}
    spare: list[Conn] = []
    for _ in range(tries):
        conn = Conn(url)
        conn("GET", "/health", headers={})  # the worker has accepted it once this is answered
        pid = worker_of(conn, pids)
        if pid is not None and pid not in chosen:
            chosen[pid] = conn
            if len(chosen) == count:
                break
        else:
            spare.append(conn)
    if len(chosen) < min(2, count):
        pytest.fail(f"connections reached only {len(chosen)} of {count} workers in {tries} tries")
    conns = list(chosen.values())
    while len(conns) < count:  # a worker never reached: reuse another connection's
        conns.append(spare.pop() if spare else conns[0])
    for conn in spare:
        conn.close()
    return conns


class CliFake:
    """``python -m mock_server serve ...`` in a subprocess; ``url`` from its banner."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mock_server", "serve", "--port", "0", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"http://\S+", line)
        if match is None:
            self.proc.kill()
            _, err = self.proc.communicate()
            pytest.fail(f"the fake did not start: {line!r} {err[-2000:]!r}")
        self.url = match.group(0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()


@pytest.fixture
def cli_fake() -> Iterator[Callable[..., CliFake]]:
    started: list[CliFake] = []

    def start(*args: str, env: dict[str, str] | None = None) -> CliFake:
        fake = CliFake(*args, env=env)
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()
