"""``python -m mock_server serve`` as a user runs it: help, banner, bind errors, Ctrl-C, logs."""

from __future__ import annotations

import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from mock_server import ServerConfig
from mock_server._cli import _parser, banner, config_from_args, main, url_of
from mock_server.exceptions import ConfigError

pytestmark = pytest.mark.socket

CMD = [sys.executable, "-m", "mock_server", "serve", "--port", "0", "--db", ":memory:"]


class Serve:
    """A ``mock_server serve`` process started on a free port; ``url`` is read from its banner."""

    def __init__(self, *args: str, cmd: Sequence[str] = CMD, **popen: Any) -> None:
        popen.setdefault("stderr", subprocess.PIPE)
        self.proc = subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, text=True, **popen)
        assert self.proc.stdout is not None
        self.first_line = self.proc.stdout.readline()
        if "listening on" not in self.first_line:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"no banner: {self.first_line}{out}{err}")
        self.url = self.first_line.split("listening on ")[1].split()[0]

    def interrupt(self) -> tuple[int, str, str]:
        """Ctrl-C: SIGINT, then the exit status and what the process printed."""
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=15)
        return self.proc.returncode, self.first_line + out, err or ""


@pytest.fixture
def serve() -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def start(*args: str, **popen: Any) -> Serve:
        started.append(Serve(*args, **popen))
        return started[-1]

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.communicate()


# -- help and banner -----------------------------------------------------------------------


def test_serve_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("127.0.0.1", "8000", ".mock_server/state.db", "10000", "3600", "60.0"):
        assert f"(default: {shown})" in text
    assert "(default: None)" not in text and "(default: False)" not in text


@pytest.mark.parametrize(
    ("host", "usable"), [("0.0.0.0", "http://127.0.0.1:8000"), ("::", "http://[::1]:8000")]
)
def test_a_wildcard_host_gives_a_url_a_client_can_use(host: str, usable: str) -> None:
    config = ServerConfig(host=host, port=8000)
    text = banner(config, url_of(host, 8000))
    assert text.splitlines()[0] == f"ResonanceOS v6 fake listening on {usable}"
    assert "all interfaces" in text and f"{usable}/openapi.json" in text
    assert "0.0.0.0:" not in text and "[::]:" not in text


def test_a_given_host_is_the_url() -> None:
    assert url_of("127.0.0.1", 9) == "http://127.0.0.1:9"
    assert url_of("::1", 9) == "http://[::1]:9"
    assert "all interfaces" not in banner(ServerConfig(), url_of("127.0.0.1", 8000))


@pytest.mark.parametrize(
    "settings",
    [{"preset": "flaky"}, {"faults": "rules.yaml"}, {"faults": "rules.yaml", "preset": "slow"}, {}],
)
def test_the_banner_has_no_double_spaces(settings: dict[str, str]) -> None:
    for line in banner(ServerConfig(**settings), "http://127.0.0.1:8000").splitlines():
        assert "  " not in line.strip(), repr(line)


# -- start and stop ------------------------------------------------------------------------


def test_the_banner_appears_once_the_server_answers(serve: Callable[..., Serve]) -> None:
    """No retry: as soon as the banner is printed, the port is bound and the app is up."""
    server = serve()
    assert requests.get(server.url + "/health", timeout=5).status_code == 200


def test_ctrl_c_exits_quietly_with_status_0(serve: Callable[..., Serve]) -> None:
    server = serve()
    requests.get(server.url + "/health", timeout=5)
    code, _, err = server.interrupt()
    assert code == 0
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_a_port_in_use_is_one_line_and_no_banner() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cmd = [sys.executable, "-m", "mock_server", "serve", "--port", str(port), "--db", ":memory:"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert result.stdout == ""  # no banner
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and "address already in use" in result.stderr


# -- access log ----------------------------------------------------------------------------


def test_access_log_prints_each_request_without_secrets(serve: Callable[..., Serve]) -> None:
    server = serve("--access-log")
    requests.get(server.url + "/health", timeout=5)
    requests.get(server.url + "/profiles", params={"api_key": "demo-key", "limit": "1"}, timeout=5)
    requests.get(server.url + "/profiles", params={"%70assword": "hunter2"}, timeout=5)
    code, out, err = server.interrupt()
    assert code == 0
    log = [line for line in (out + err).splitlines() if "HTTP/1.1" in line]
    assert any('"GET /health HTTP/1.1" 200' in line for line in log), out + err
    profiles = [line for line in log if "GET /profiles" in line]
    assert len(profiles) == 2, log
    assert "api_key=***" in profiles[0] and "limit=1" in profiles[0]
    assert "demo-key" not in profiles[0] and "hunter2" not in profiles[1]


def test_without_access_log_requests_are_not_logged(serve: Callable[..., Serve]) -> None:
    server = serve()
    requests.get(server.url + "/health", timeout=5)
    _, out, err = server.interrupt()
    assert "GET /health" not in out + err


# -- file descriptors ----------------------------------------------------------------------


def _limit_fds(soft: int, hard: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def test_serve_raises_the_open_files_limit_to_the_hard_limit(serve: Callable[..., Serve]) -> None:
    server = serve(preexec_fn=_limit_fds(64, 256))
    assert resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE) == (256, 256)


def _get(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = b""
    while b'"status":"ok"' not in raw:
        chunk = sock.recv(65536)
        assert chunk, raw
        raw += chunk
    return raw


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_out_of_file_descriptors_the_fake_stays_up_and_quiet(
    serve: Callable[..., Serve], tmp_path: Path, loop: str
) -> None:
    """More connections than descriptors: at most a line a second on stderr, open connections
    still answered, and new ones accepted again once the crowd leaves. asyncio's loop reports each
    failed accept (a storm, without ListenSocket); uvloop's reports none (libuv closes what it
    cannot accept), so the fake notices the last descriptor going instead."""
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err_file:
        server = serve("--loop", loop, preexec_fn=_limit_fds(64, 64), stderr=err_file)
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    keep = socket.create_connection((host, int(port)), timeout=5)
    crowd: list[socket.socket] = []
    try:
        assert b"200 OK" in _get(keep)
        t0 = time.monotonic()
        for _ in range(100):  # well past 64 descriptors
            crowd.append(socket.create_connection((host, int(port)), timeout=5))
        time.sleep(1.5)
        assert b"200 OK" in _get(keep)  # the open connection is still served
        lines = err_path.read_text().splitlines()
        assert 1 <= len(lines) <= time.monotonic() - t0 + 2, lines[:20]  # a line a second at most
        assert "Traceback" not in "\n".join(lines)
        assert re.search(r"too many open files.*limit 64", lines[0], re.I), lines[0]
    finally:
        for sock in crowd:
            sock.close()
    # asyncio listens again a second after a failed accept
    deadline = time.monotonic() + 5
    while True:
        try:
            assert requests.get(server.url + "/health", timeout=1).status_code == 200
            break
        except requests.RequestException:
            assert time.monotonic() < deadline, "new connections were not accepted again"
    keep.close()
    code, _, _ = server.interrupt()
    assert code == 0


_UPGRADE_WITH_BODY = (
    b"POST /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
    b"Content-Length: 5\r\n\r\nhello"
)


@pytest.mark.parametrize(("http", "status"), [("h11", b"405"), ("httptools", b"400")])
def test_http_chooses_the_parser(serve: Callable[..., Serve], http: str, status: bytes) -> None:
    """The two parsers differ on one request (an Upgrade with a body: httptools cannot read the
    body, so the fake refuses it), which shows which one serves."""
    server = serve("--http", http, "--loop", "asyncio")
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(_UPGRADE_WITH_BODY)
        assert sock.recv(65536).split(b" ")[1] == status


@pytest.mark.parametrize(("flag", "module"), [("--http", "httptools"), ("--loop", "uvloop")])
def test_a_missing_fast_parser_or_loop_names_the_flag(
    monkeypatch: pytest.MonkeyPatch, flag: str, module: str
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == module else real(name))
    args = _parser().parse_args(["serve", flag, module])
    with pytest.raises(ConfigError, match=f"{flag}: {module} is not installed"):
        config_from_args(args)
    config_from_args(_parser().parse_args(["serve", flag, "auto"]))  # auto falls back


def test_a_bad_header_timeout_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--header-timeout", "0"]) == 2
    assert "--header-timeout: must be positive" in capsys.readouterr().err


def test_the_listening_socket_is_tcp_so_asyncio_disables_nagle() -> None:
    # asyncio sets TCP_NODELAY on accepted connections only for a socket whose proto is TCP; a
    # socket made with proto 0 left every keep-alive response waiting ~40 ms for a delayed ACK.
    from mock_server._server import listen_socket

    sock = listen_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_serve_freezes_what_exists_at_start_out_of_the_collectors_sight() -> None:
    """A full garbage collection walks every object; those made at start-up (modules, the app:
    tens of thousands) are frozen once serving, so a collection does not stall every request."""
    import asyncio
    import gc
    import threading

    from mock_server._server import Server, listen_socket, uvicorn_config

    assert gc.get_freeze_count() == 0
    serving = threading.Event()
    config = uvicorn_config(ServerConfig(db=":memory:", port=0))
    server = Server(config, on_started=serving.set, freeze_gc=True)
    sock = listen_socket("127.0.0.1", 0)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        assert serving.wait(10)
        assert gc.get_freeze_count() > 10_000
    finally:
        server.should_exit = True
        thread.join(10)
        gc.unfreeze()
        sock.close()
