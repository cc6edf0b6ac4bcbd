"""A private ``redis-server`` for ``--workers N`` without ``--state``: started on a unix socket
in a temporary directory, stopped (and the directory removed) when the fake stops.

With ``data_dir`` it keeps an append-only file there, so the state outlives the run the way
an SQLite ``--db`` file does; without, it holds everything in memory (``--db :memory:``).
On Linux it is also told to stop if the fake is killed outright (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..exceptions import ConfigError

INSTALL_HINT = (
    "install one (apt-get install redis-server, brew install redis, or Valkey) or point --state"
    " at a running one (--state redis://HOST:PORT/DB)"
)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def private_data_dir(db: str) -> Path | None:
    """Where the private redis-server keeps its file for ``--db``: beside it (None: memory)."""
    if db in (":memory:", ""):
        return None
    path = Path(db).resolve()
    return path.with_name(path.name + ".redis")


class PrivateRedis:
    """One redis-server owned by this process."""

    def __init__(self, *, data_dir: Path | None = None, executable: str | None = None) -> None:
        found = executable or shutil.which("redis-server") or shutil.which("valkey-server")
        if found is None:
            raise ConfigError(
                "--workers: more than one worker needs a shared state, and no redis-server is"
                f" on PATH: {INSTALL_HINT}"
            )
        self.executable = found
        self.data_dir = data_dir
        self._tmp = Path(tempfile.mkdtemp(prefix="mock-server-redis-"))
        self.socket = self._tmp / "redis.sock"
        self.url = f"unix://{self.socket}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        args = [
            self.executable,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--save", "",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.data_dir is None:
            args += ["--appendonly", "no", "--dir", str(self._tmp)]
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            args += ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.data_dir)]
        log = (self._tmp / "redis.log").open("wb")
        try:
            self._process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
                # Not in the terminal's process group: Ctrl-C stops the workers, which write
                # their last counters to it, and only then this server is stopped.
                start_new_session=True,
            )
        except OSError as exc:
            self.stop()
            raise ConfigError(f"--workers: cannot start {self.executable}: {exc.strerror}") from None
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                text = (self._tmp / "redis.log").read_text(errors="replace").strip()[-500:]
                self.stop()
                raise ConfigError(f"--workers: the private redis-server did not start: {text or 'no output'}")
            time.sleep(0.02)
        return self

    def _answers(self) -> bool:
        import redis

        if not self.socket.exists():
            return False
        client = redis.Redis(unix_socket_path=str(self.socket), socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()  # redis-server saves (when it keeps a file) and exits on SIGTERM
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self._tmp, ignore_errors=True)
