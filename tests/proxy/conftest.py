"""Upstreams for the proxy tests: httpbin under gunicorn (a real service no one here wrote), the
fake itself, and tiny raw servers; proxies and replays started on free loopback ports."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import h11
import pytest

from mock_server import DEFAULT_TENANTS, RateLimit, ServerConfig, ServerThread
from mock_server._proxy._app import FrontThread, ProxyConfig, ReplayConfig

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the process exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@dataclass(frozen=True)
class Upstream:
    url: str
    port: int


def _gunicorn_httpbin(port: int) -> subprocess.Popen[bytes]:
    # Threads: /drip and /delay hold a worker each while they wait.
    return subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "1",
            "-k",
            "gthread",
            "--threads",
            "16",
            "--log-level",
            "warning",
            "httpbin:app",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture(scope="session")
def httpbin_factory() -> Iterator[Callable[[], tuple[Upstream, subprocess.Popen[bytes]]]]:
    """Start httpbin under gunicorn on a free loopback port; every one stops at the end."""
    missing = [m for m in ("httpbin", "gunicorn") if importlib.util.find_spec(m) is None]
    if missing:
        # `make` installs both (httpbin with --no-deps, see the Makefile): missing means a stale venv.
        pytest.fail(f"dev dependencies missing: {', '.join(missing)} (run `make` to reinstall .venv)")
    started: list[subprocess.Popen[bytes]] = []

    def start() -> tuple[Upstream, subprocess.Popen[bytes]]:
        port = free_port()
        proc = _gunicorn_httpbin(port)
        started.append(proc)
        wait_for_port(port, proc=proc)
        return Upstream(f"http://127.0.0.1:{port}", port), proc

    yield start
    for proc in started:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="session")
def httpbin(httpbin_factory: Callable[[], tuple[Upstream, subprocess.Popen[bytes]]]) -> Upstream:
    """One httpbin for the session."""
    return httpbin_factory()[0]


@pytest.fixture
def front() -> Iterator[Callable[..., FrontThread]]:
    """Start proxies (``upstream=``) or replays (``har=``) on free ports; all stop at the end."""
    started: list[FrontThread] = []

    def start(**kwargs: object) -> FrontThread:
        kwargs.setdefault("port", 0)
        config = ProxyConfig(**kwargs) if "upstream" in kwargs else ReplayConfig(**kwargs)  # type: ignore[arg-type]
        thread = FrontThread(config).start()
        started.append(thread)
        return thread

    yield start
    for thread in reversed(started):
        thread.stop()


ROOMY = tuple(replace(t, rate_limit=RateLimit(per_minute=600_000, burst=100_000)) for t in DEFAULT_TENANTS)


@pytest.fixture
def fake() -> Iterator[ServerThread]:
    """The fake as the upstream (roomy limits: the proxy's own are under test)."""
    with ServerThread(ServerConfig(db=":memory:", tenants=ROOMY, auth_failure_limit=None)) as server:
        yield server


# -- a raw HTTP/1.1 client that shows the framing ------------------------------------------------------


@dataclass
class Raw:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def names(self) -> set[bytes]:
        return {k for k, _ in self.headers}


def raw_request(
    port: int,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    timeout: float = 10.0,
) -> Raw:
    """One request on a fresh connection, read with h11: headers exactly as they came."""
    conn = h11.Connection(h11.CLIENT)
    all_headers = [("Host", f"127.0.0.1:{port}"), *(headers or [])]
    if body:
        all_headers.append(("Content-Length", str(len(body))))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(conn.send(h11.Request(method=method, target=target, headers=all_headers)))
        if body:
            sock.sendall(conn.send(h11.Data(data=body)))
        sock.sendall(conn.send(h11.EndOfMessage()))
        response: h11.Response | None = None
        chunks = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                chunks += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    assert response is not None
    return Raw(response.status_code, response.reason, list(response.headers), bytes(chunks))


# -- tiny raw upstreams -----------------------------------------------------------------------------------


class RawServer:
    """A loopback TCP server whose connections are handled by ``handler(sock)`` in threads."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.handler = handler
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.handler(conn)
            except OSError:
                pass

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            break
        data += piece
    return data


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Callable[[socket.socket], None]) -> RawServer:
        server = RawServer(handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def run_cli(*args: str) -> subprocess.Popen[bytes]:
    """``python -m mock_server ARGS`` as a user runs it (its own process group)."""
    return subprocess.Popen(
        [sys.executable, "-m", "mock_server", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
