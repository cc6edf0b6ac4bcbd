"""The flags and failure modes of scale-out, through the real CLI and real processes: bad
--workers and --state, Redis unreachable at start, Redis lost mid-run (503, then recovery with
nothing acknowledged lost), and the private redis-server's lifecycle."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from mock_server import ServerThread
from mock_server._config import ServerConfig

from .conftest import ROOT, Conn, free_port

pytestmark = pytest.mark.socket


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mock_server", "serve", "--port", "0", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--workers", "0"], "--workers: must be 1 or more, got 0"),
        (["--workers", "-2"], "--workers: must be 1 or more, got -2"),
        (["--state", "http://127.0.0.1:6379/0"], "--state: 'http://127.0.0.1:6379/0' is not a Redis URL"),
        (["--state", "redis://127.0.0.1:6379/zero"], "--state: 'redis://127.0.0.1:6379/zero': the database"),
        (["--state", "redis:///0"], "--state: 'redis:///0' names no host"),
    ],
)
def test_a_bad_flag_is_an_error_naming_it(args: list[str], named: str) -> None:
    done = serve(*args)
    assert done.returncode == 2
    assert named in done.stderr
    assert "Traceback" not in done.stderr


def test_redis_unreachable_at_start_exits_naming_the_url() -> None:
    port = free_port()  # nothing listens there
    done = serve("--state", f"redis://user:hunter2@127.0.0.1:{port}/0")
    assert done.returncode != 0
    assert f"redis://user:***@127.0.0.1:{port}/0" in done.stderr
    assert "cannot reach Redis" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


def test_workers_without_a_redis_server_on_path_say_how_to_get_one(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no redis-server, no valkey-server
    done = serve("--workers", "2", "--db", ":memory:", env=env)
    assert done.returncode == 2
    assert "apt-get install redis-server" in done.stderr and "--state" in done.stderr


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(c) for c in text]
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def test_workers_without_state_run_a_private_redis_server_and_stop_it(
    cli_fake: Callable[..., Any], tmp_path: Path
) -> None:
    fake = cli_fake("--workers", "2", "--db", ":memory:")
    children = _children(fake.proc.pid)
    private = [c for c in children if "redis-server" in _cmdline(c)]
    assert len(private) == 1, [_cmdline(c) for c in children]
    sock = next(p for p in _cmdline(private[0]).split() if p.endswith("redis.sock"))
    conn = Conn(fake.url)
    body = {"tenant": "demo", "profile_name": "p", "hrv_vector": [0.5] * 8}
    assert conn("POST", "/profiles", body)[0] == 201
    conn.close()
    fake.stop()  # SIGTERM to the parent
    assert fake.proc.returncode == 0
    deadline = time.monotonic() + 5
    while Path(f"/proc/{private[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{private[0]}").exists() or "redis-server" not in _cmdline(private[0])
    assert not Path(sock).parent.exists()
    assert all(not Path(f"/proc/{c}").exists() or not _cmdline(c) for c in children)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """A redis-server this test may kill and start again on the same port and files."""
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    exe = shutil.which("redis-server")
    assert exe is not None

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--dir", str(tmp_path), "--save", "", "--appendonly", "yes",
             "--appendfsync", "always"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(proc)
        client = redis.Redis(port=port, socket_connect_timeout=0.2)
        for _ in range(200):
            try:
                if client.ping():
                    break
            except redis.RedisError:
                time.sleep(0.02)
        client.close()
        start.url = f"redis://127.0.0.1:{port}/0"  # type: ignore[attr-defined]
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_redis_lost_mid_run_is_a_503_and_recovers_with_nothing_acknowledged_lost(
    own_redis: Callable[[], subprocess.Popen[bytes]],
) -> None:
    first = own_redis()
    url = own_redis.url  # type: ignore[attr-defined]
    with ServerThread(ServerConfig(db=":memory:", state=url)) as fake:
        conn = Conn(fake.url)
        body = {"tenant": "demo", "profile_name": "kept", "hrv_vector": [0.5] * 8}
        status, headers, _ = conn("POST", "/profiles", body)
        assert status == 201
        # /health makes no state operation; a rule that may fire on it needs Redis all the same.
        rule = {"id": "later", "match": {"path": "/health"}, "after": 100_000, "fault": {"type": "reset"}}
        assert conn("POST", "/__admin/faults", rule, {})[0] == 201
        assert conn("GET", "/health")[0] == 200
        first.kill()  # kill -9 of Redis itself
        first.wait()
        conn.close()
        conn = Conn(fake.url)
        status, headers_lost, error = conn("GET", "/profiles/demo/kept")
        assert status == 503
        assert error["error"]["code"] == "state_unavailable"
        assert error["error"]["request_id"] == headers_lost["x-request-id"]
        assert "retry-after" in headers_lost
        status, _, error = conn("GET", "/health")
        assert (status, error["error"]["code"]) == (503, "state_unavailable")
        own_redis()  # back on the same port, from its append-only file
        status, again, _ = conn("GET", "/profiles/demo/kept")
        assert (status, again["etag"]) == (200, headers["etag"])
        assert conn("GET", "/health")[0] == 200
        conn.close()


def test_workers_in_python_name_the_field() -> None:
    from mock_server import ConfigError, Workers

    with pytest.raises(ConfigError, match="^workers: ServerThread serves in one process, got 2"):
        ServerThread(ServerConfig(db=":memory:", workers=2))
    with pytest.raises(ConfigError, match="^--workers: must be 1 or more, got 0"):
        Workers(ServerConfig(db=":memory:", workers=0))


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "rediss://user:pw@cache.example:6380/2",
        "unix:///run/redis.sock?db=3",
        "redis://h",
    ],
)
def test_every_form_of_state_url_is_accepted(url: str) -> None:
    from mock_server._state._connect import check_url, shown

    assert check_url(url) == url
    assert "pw" not in shown(url)


@pytest.mark.mock_server(workers=2)
def test_the_fixture_starts_workers_on_a_private_redis_server(mock_server: Any) -> None:
    from mock_server import Workers

    from .conftest import conns_on_distinct_workers

    assert isinstance(mock_server, Workers) and len(mock_server.pids) == 2
    assert mock_server.config.state is not None and mock_server.config.state.startswith("unix://")
    a, b = conns_on_distinct_workers(mock_server.url, mock_server.pids, 2)
    assert a("POST", "/profiles", {"tenant": "demo", "profile_name": "f", "hrv_vector": [0.5] * 8})[0] == 201
    assert b("GET", "/profiles/demo/f")[0] == 200
    # Another worker's journal records reach this one in batches (within 50 ms): wait, then count.
    assert mock_server.admin.wait(1, timeout_s=2, path="/profiles/demo/f")
    assert mock_server.admin.count(path="/profiles/demo/f") == 1
    a.close()
    b.close()


def test_a_worker_that_cannot_start_again_stops_the_fake_with_one_line(
    own_redis: Callable[[], subprocess.Popen[bytes]], cli_fake: Callable[..., Any]
) -> None:
    server = own_redis()
    url = own_redis.url  # type: ignore[attr-defined]
    fake = cli_fake("--workers", "2", "--state", url, "--db", ":memory:")
    workers = [c for c in _children(fake.proc.pid) if "spawn_main" in _cmdline(c)]
    assert len(workers) == 2
    server.kill()  # Redis gone for good
    server.wait()
    os.kill(workers[0], signal.SIGKILL)
    _, err = fake.proc.communicate(timeout=20)
    assert fake.proc.returncode == 1
    assert f"mock-server: --state {url}: cannot reach Redis there" in err
    assert "mock-server: a worker died; a worker exited with code 2 while starting; stopping" in err
    assert "Traceback" not in err
