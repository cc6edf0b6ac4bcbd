"""One database file, one fake: a second on the same ``--db`` is refused, naming the file."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from mock_server import ServerConfig, ServerThread
from mock_server.exceptions import ConfigError

pytestmark = pytest.mark.socket


class Serve:
    """``serve --db db`` on a free port, once its banner is out (or it has exited)."""

    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mock_server", "serve", "--port", "0", "--db", str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.banner = self.proc.stdout.readline()
        self.pid = self.proc.pid

    @property
    def url(self) -> str:
        return self.banner.split("listening on ")[1].split()[0]

    def end(self, sig: int = signal.SIGINT) -> str:
        """Stop it with ``sig``; what it wrote on stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.communicate(timeout=20)[1]


def test_a_second_fake_on_the_same_db_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    first = Serve(db)
    try:
        assert "listening on" in first.banner
        second = Serve(db)
        err = second.end()
        assert second.proc.returncode == 2 and second.banner == ""
        assert str(db) in err and "already in use" in err and f"pid {first.pid}" in err
        assert "Traceback" not in err and err.count("\n") == 1
        # the first one is undisturbed
        assert requests.get(first.url + "/health", timeout=5).status_code == 200
    finally:
        first.end()
    again = Serve(db)  # released on exit
    try:
        assert "listening on" in again.banner
    finally:
        again.end()


def test_the_lock_goes_with_a_killed_process(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    first = Serve(db)
    first.end(signal.SIGKILL)  # no cleanup runs
    again = Serve(db)
    try:
        assert "listening on" in again.banner
    finally:
        again.end()


def test_server_threads_share_the_rule(tmp_path: Path) -> None:
    """In one process too: a second ServerThread on the file is refused until the first stops."""
    config = ServerConfig(db=str(tmp_path / "state.db"))
    with ServerThread(config):
        with pytest.raises(ConfigError, match="state.db: already in use"):
            ServerThread(config)
        # another spelling of the same file is the same file
        relative = ServerConfig(db=str(tmp_path / "sub" / ".." / "state.db"))
        with pytest.raises(ConfigError):
            ServerThread(relative)
    with ServerThread(config) as again:
        assert requests.get(again.url + "/health", timeout=5).status_code == 200


def test_in_memory_fakes_never_lock() -> None:
    with ServerThread(ServerConfig(db=":memory:")), ServerThread(ServerConfig(db=":memory:")):
        pass
