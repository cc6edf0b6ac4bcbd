"""Running the fake under uvicorn: in the foreground (the CLI) or in a thread (tests)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from types import TracebackType

import uvicorn

from ._admin_client import AdminClient
from ._api import Api
from ._app import build
from ._config import ServerConfig
from ._faults import UVICORN_HTTP


def uvicorn_config(config: ServerConfig) -> uvicorn.Config:
    app, _ = build(config)
    return _uvicorn(app, config)


def _uvicorn(app: object, config: ServerConfig) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=config.host,
        port=config.port,
        lifespan="on",
        # uvicorn's h11 protocol, letting the fault layer reach the socket for resets.
        http=UVICORN_HTTP,
        access_log=config.access_log,
        log_level="warning",
        timeout_keep_alive=30,
        backlog=2048,
        # Held requests are released on shutdown; this bounds the wait if one is not.
        timeout_graceful_shutdown=5,
    )


class ServerThread:
    """A real fake on a free loopback port, served by uvicorn in a background thread.

    Use as a context manager or call :meth:`start` and :meth:`stop`. ``url`` is the base
    URL once started.
    """

    def __init__(self, config: ServerConfig | None = None, *, port: int = 0) -> None:
        # Port 0: the OS picks a free one, so parallel test runs never collide.
        self.config = replace(config or ServerConfig(db=":memory:"), port=port)
        self.app, self.api = build(self.config)
        app = self.app
        self._server = uvicorn.Server(_uvicorn(app, self.config))
        self._thread = threading.Thread(target=self._run, name="mock-server", daemon=True)
        self._error: BaseException | None = None
        self.url = ""
        self._admin: AdminClient | None = None

    @property
    def admin(self) -> AdminClient:
        """A client of this fake's admin API (faults, journal, compliance)."""
        if self._admin is None:
            self._admin = AdminClient(self.url, token=self.config.admin_token)
        return self._admin

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve())
        except BaseException as exc:  # surfaced by start(); a thread has no one else to tell
            self._error = exc

    def start(self, timeout: float = 15.0) -> ServerThread:
        self._thread.start()
        deadline = threading.Event()
        waited = 0.0
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the fake did not start: {self._error!r}")
            if waited > timeout:
                raise RuntimeError(f"the fake did not start within {timeout} s")
            deadline.wait(0.01)
            waited += 0.01
        sock = self._server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


__all__ = ["Api", "ServerThread", "uvicorn_config"]
