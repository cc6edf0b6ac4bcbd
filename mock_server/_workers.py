"""``--workers N``: N processes serving one port, acting as one fake.

The parent binds the listening socket and hands it to each worker (spawned, as uvicorn's
multiprocess supervisor does); the kernel gives each new connection to whichever worker accepts
it first. Every worker serves with the fake's own protocols (``_faults._protocols``), so socket
faults stay real, and keeps its state in the shared Redis (``--state``, or a private
redis-server this parent starts and stops). The workers share the cursor signing key, so a
page cursor from one is good on every other.

The parent restarts a worker that dies (``kill -9`` included) and stops them all, and the
private redis-server, on SIGINT or SIGTERM.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import socket
import sys
import threading
import time
from dataclasses import replace
from multiprocessing.context import SpawnProcess
from types import FrameType, TracebackType
from typing import IO, Any

from ._admin_client import AdminClient
from ._config import ServerConfig
from ._state._connect import check_reachable
from ._state._private import PrivateRedis, private_data_dir
from .exceptions import ConfigError

multiprocessing.allow_connection_pickling()
_spawn = multiprocessing.get_context("spawn")


def _worker(config: ServerConfig, sock: socket.socket, ready: Any) -> None:  # pragma: no cover - a child
    """One worker process: the fake on the shared socket until SIGINT/SIGTERM."""
    from ._app import build
    from ._server import ListenSocket, Server, _uvicorn, raise_fd_limit

    listener = ListenSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    if config.state is not None:
        try:
            check_reachable(config.state)  # one line, not the app's start-up traceback
        except ConfigError as exc:
            print(f"mock-server: {exc}", file=sys.stderr, flush=True)
            sys.exit(2)
    raise_fd_limit()
    app, _ = build(config)
    server = Server(_uvicorn(app, config), on_started=lambda: ready.put(os.getpid()), freeze_gc=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[listener])


class Workers:
    """N worker processes on one socket, with their shared state; :meth:`start`, :meth:`stop`.

    ``sock`` is the bound listening socket (None: bind ``config.host:config.port`` here).
    Without ``config.state`` a private redis-server is started (ConfigError if there is none).
    """

    def __init__(self, config: ServerConfig, *, sock: socket.socket | None = None) -> None:
        if config.workers < 1:
            raise ConfigError(f"--workers: must be 1 or more, got {config.workers}")
        self._private: PrivateRedis | None = None
        self._db_lock: IO[str] | None = None
        self._sock = sock
        # No cursor key is made up here: every process takes the one its shared state holds.
        self.config = config
        self._ready: Any = _spawn.Queue()
        self._processes: list[SpawnProcess] = []
        self._stopping = threading.Event()
        self.url = ""
        self._admin: AdminClient | None = None

    @property
    def admin(self) -> AdminClient:
        """A client of the admin API (whichever worker the connection lands on)."""
        if self._admin is None:
            self._admin = AdminClient(self.url, token=self.config.admin_token)
        return self._admin

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    def start(self, timeout: float = 60.0) -> Workers:
        from ._server import listen_socket
        from ._store import _lock_db

        try:
            if self.config.state is None:
                # The private server's file sits beside --db: one fake per file, as with SQLite.
                self._db_lock = _lock_db(self.config.db)
                self._private = PrivateRedis(data_dir=private_data_dir(self.config.db)).start()
                self.config = replace(self.config, state=self._private.url)
            else:
                check_reachable(self.config.state)
            if self._sock is None:
                self._sock = listen_socket(self.config.host, self.config.port)
            host, port = self._sock.getsockname()[:2]
            self.config = replace(self.config, port=port)
            self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
            for _ in range(self.config.workers):
                self._spawn()
            self._wait_ready(self.config.workers, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self) -> None:
        assert self._sock is not None
        # A plain socket: multiprocessing pickles socket.socket, not subclasses of it.
        plain = socket.socket(
            self._sock.family, self._sock.type, self._sock.proto, fileno=os.dup(self._sock.fileno())
        )
        process = _spawn.Process(
            target=_worker, args=(self.config, plain, self._ready), name="mock-server-worker", daemon=True
        )
        process.start()
        plain.close()
        self._processes.append(process)

    def _wait_ready(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while count:
            try:
                self._ready.get(timeout=0.1)
                count -= 1
            except queue.Empty:
                dead = [p for p in self._processes if p.exitcode is not None]
                if dead:
                    raise RuntimeError(
                        f"a worker exited with code {dead[0].exitcode} while starting"
                    ) from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the workers did not start within {timeout} s") from None

    def supervise(self, on_started: Any = None) -> int:
        """Until SIGINT or SIGTERM: restart workers that die; then stop everything. Returns 0, or
        1 (with a line on stderr) when a dead worker could not be started again."""

        def stop(signum: int, frame: FrameType | None) -> None:
            self._stopping.set()

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            if on_started is not None:
                on_started()
            while not self._stopping.wait(0.2):
                try:
                    self.restart_dead()
                except RuntimeError as exc:
                    print(f"mock-server: a worker died; {exc}; stopping", file=sys.stderr, flush=True)
                    return 1
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()
        return 0

    def restart_dead(self) -> int:
        """Start a new worker for each one that died; how many were restarted."""
        dead = [p for p in self._processes if p.exitcode is not None]
        for process in dead:
            self._processes.remove(process)
            process.close()
            self._spawn()
        if dead:
            self._wait_ready(len(dead), 60.0)
        return len(dead)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        for process in self._processes:
            if process.exitcode is None and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)  # uvicorn's graceful shutdown: counters flushed
        deadline = time.monotonic() + timeout
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                process.kill()
                process.join()
        self._processes = []
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._private is not None:
            self._private.stop()
            self._private = None
        if self._db_lock is not None:
            self._db_lock.close()
            self._db_lock = None

    def __enter__(self) -> Workers:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
