"""Running the fake under uvicorn: in the foreground (the CLI) or in a thread (tests)."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import Any, Self

import uvicorn

from ._admin_client import AdminClient
from ._api import Api
from ._app import build
from ._config import ServerConfig
from ._faults._journal import redact_query
from ._faults._limits import ConnectionLimits
from ._faults._protocols import protocol_with
from .exceptions import ConfigError

try:  # POSIX only; elsewhere the limit is left as it is
    import resource
except ImportError:  # pragma: no cover
    resource = None  # type: ignore[assignment]

_log = logging.getLogger("uvicorn.error")
# accept() fails with these when the process (or the system) is out of descriptors or memory.
_EXHAUSTED = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


def uvicorn_config(config: ServerConfig) -> uvicorn.Config:
    app, _ = build(config)
    return _uvicorn(app, config)


def _uvicorn(app: object, config: ServerConfig) -> uvicorn.Config:
    limits = ConnectionLimits(
        max_header_bytes=config.max_header_bytes,
        max_header_line_bytes=config.max_header_line_bytes,
        header_timeout=config.header_timeout,
    )
    uconfig = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=config.host,
        port=config.port,
        lifespan="on",
        # uvicorn's httptools (or h11) protocol, letting the fault layer reach the socket for
        # resets, and bounding each connection's header size and header time.
        http=protocol_with(limits, http=config.http, on_connection=_watch_descriptors),
        loop=_loop_choice(config.loop),
        # The fake has no WebSocket routes: an Upgrade is answered as plain HTTP/1.1.
        ws="none",
        # Clients reach the fake directly: X-Forwarded-For from a loopback client (which uvicorn
        # trusts by default) would let it pick the address its failed logins are counted under.
        proxy_headers=False,
        access_log=config.access_log,
        log_level="warning",
        timeout_keep_alive=30,
        backlog=2048,
        # Held requests are released on shutdown; this bounds the wait if one is not.
        timeout_graceful_shutdown=5,
    )
    # uvicorn.Config just set every uvicorn logger to log_level; the access log is at INFO.
    access = logging.getLogger("uvicorn.access")
    if config.access_log:
        access.setLevel(logging.INFO)
    if not any(isinstance(f, _RedactedAccessLog) for f in access.filters):
        access.addFilter(_RedactedAccessLog())
    return uconfig


def _loop_choice(loop: str) -> str:
    if loop not in ("auto", "uvloop", "asyncio"):
        raise ConfigError(f"loop: must be one of auto, uvloop, asyncio, got {loop!r}")
    if loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise ConfigError(
                "loop: uvloop is not installed (pip install uvloop), or choose asyncio"
            ) from None
    return loop


class _RedactedAccessLog(logging.Filter):
    """Hides secret-looking query values (``?api_key=...``) in uvicorn's access log lines.

    uvicorn logs ``(client, method, path_with_query, http_version, status)`` as the record's
    args; the query is redacted the way the journal redacts it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            path, _, query = args[2].partition("?")
            record.args = (*args[:2], f"{path}?{redact_query(query)}", *args[3:])
        return True


class ListenSocket(socket.socket):
    """A listening socket whose accept() ends asyncio's accept loop at the first EMFILE.

    Out of file descriptors, CPython's accept loop (``selector_events._accept_connection``,
    up to 3.13; gh-151615) does not stop at the first failure: it tries again up to
    ``backlog`` (2,048) times in the same tick, logging a traceback and scheduling a retry
    for each, and the retries multiply. Answering the next accept() with "would block", as an
    empty queue does, ends that loop after one failure and one retry, a second later, which
    is what asyncio means to do: connections already open are served meanwhile, and new ones
    are accepted once descriptors are free again.
    """

    _stop = False

    def accept(self) -> tuple[socket.socket, Any]:
        if self._stop:
            self._stop = False
            raise BlockingIOError(errno.EAGAIN, "no more accepts until the retry")
        try:
            return super().accept()
        except OSError as exc:
            self._stop = exc.errno in _EXHAUSTED
            raise


class _AcceptErrors:
    """The event loop's exception handler: a failed accept() is one line, not a traceback,
    and one a second at most (with :class:`ListenSocket`, asyncio retries once a second).

    uvloop never reports a failed accept: libuv, out of descriptors, accepts and closes what
    waits (its "EMFILE trick") and tells no one. There :meth:`note_connection` reports instead,
    when a new connection takes the last descriptor the limit allows.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, watch: bool = False) -> None:
        self._clock = clock
        self._last = -math.inf
        self._quiet = 0
        self._watch = watch
        self._fd_limit = _soft_fd_limit()

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (
            isinstance(exc, OSError) and exc.errno in _EXHAUSTED and "accept" in context.get("message", "")
        ):
            loop.default_exception_handler(context)
            return
        self._report(exc.strerror or str(exc), "wait")

    def note_connection(self, transport: asyncio.Transport) -> None:
        if not self._watch or not self._fd_limit.isdigit():
            return
        sock = transport.get_extra_info("socket")
        # Descriptors are numbered from 0, lowest free first: this one is the last there is.
        if sock is not None and sock.fileno() >= int(self._fd_limit) - 1:
            self._report(os.strerror(errno.EMFILE), "are closed at once")

    def _report(self, strerror: str, new_ones: str) -> None:
        now = self._clock()
        if now - self._last < 1.0:
            self._quiet += 1
            return
        self._last = now
        more = f" ({self._quiet} more since the last report)" if self._quiet else ""
        self._quiet = 0
        _log.error(
            "cannot accept new connections: %s (open files limit %s)%s; open connections are"
            " still served, new ones %s until some close",
            strerror,
            self._fd_limit,
            more,
            new_ones,
        )


def _watch_descriptors(transport: asyncio.Transport) -> None:
    """Each new connection, under an event loop that does not report failed accepts."""
    handler = asyncio.get_running_loop().get_exception_handler()
    if isinstance(handler, _AcceptErrors):
        handler.note_connection(transport)


def _soft_fd_limit() -> str:
    if resource is None:  # pragma: no cover
        return "unknown"
    return str(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def raise_fd_limit() -> None:
    """Raise this process's soft limit on open files to its hard limit, as the JVM and Go do.

    Each connection is a descriptor; the usual soft limit (1,024) is far below what the
    machine allows. The CLI calls this; :class:`ServerThread` does not, since it runs inside
    someone else's process, where select()-based code breaks above 1,024 descriptors.
    """
    if resource is None:  # pragma: no cover
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # macOS reports an unlimited hard limit but refuses more than OPEN_MAX (10,240).
    for target in (hard, 10_240):
        if target != resource.RLIM_INFINITY and soft >= target:
            return
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return
        except (ValueError, OSError):
            continue


def listen_socket(host: str, port: int) -> ListenSocket:
    """A socket bound to ``host:port`` (port 0: a free one); raises OSError if it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket says TCP, and without it every keep-alive response waits ~40 ms (Nagle).
    sock = ListenSocket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class Server(uvicorn.Server):
    """uvicorn's server, with bounded accept-error reporting and a hook once it is serving.

    ``freeze_gc``: once serving, move every object that exists (modules, the app, the OpenAPI
    document: some 45,000) out of the garbage collector's sight (``gc.freeze``). A full
    collection otherwise walks them all, about 40 ms during which no request is answered, and
    one comes every few tens of thousands of requests: a p99 made by the collector. For a
    process of its own (``serve``), not for a server inside someone else's (ServerThread).
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        on_started: Callable[[], None] | None = None,
        freeze_gc: bool = False,
    ) -> None:
        super().__init__(config)
        self._on_started = on_started
        self._freeze_gc = freeze_gc

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        # asyncio's own loops report a failed accept() to the handler; uvloop's does not.
        loop.set_exception_handler(_AcceptErrors(watch=not isinstance(loop, asyncio.BaseEventLoop)))
        await super().startup(sockets=sockets)
        if self.started and self._freeze_gc:
            gc.collect()
            gc.freeze()
        if self.started and self._on_started is not None:
            self._on_started()


class BackgroundServer:
    """A server on a loopback port, served by uvicorn in a background thread: the lifecycle the
    fake's :class:`ServerThread` and the proxy's ``FrontThread`` share.

    Use as a context manager or call :meth:`start` and :meth:`stop`. ``url`` is the base URL
    once started. ``what`` names the server in errors ("the fake did not start: ...").
    """

    def __init__(
        self, uconfig: uvicorn.Config, *, host: str, port: int, admin_token: str | None, what: str
    ) -> None:
        self._server = Server(uconfig)
        self._host, self._port = host, port
        self._admin_token = admin_token
        self._what = what
        self._thread = threading.Thread(target=self._run, name=f"mock-server {what}", daemon=True)
        self._error: BaseException | None = None
        self._sock: socket.socket | None = None
        self.url = ""
        self._admin: AdminClient | None = None

    @property
    def admin(self) -> AdminClient:
        """A client of this server's admin API (faults, journal, compliance)."""
        if self._admin is None:
            self._admin = AdminClient(self.url, token=self._admin_token)
        return self._admin

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def _run(self) -> None:
        try:
            # The loop the config names (uvloop by default), as ``serve`` runs: uvicorn installs
            # no signal handlers outside the main thread, so any loop runs here.
            with asyncio.Runner(loop_factory=self._server.config.get_loop_factory()) as runner:
                runner.run(self._server.serve(sockets=[self._sock] if self._sock else None))
        except BaseException as exc:  # surfaced by start(); a thread has no one else to tell
            self._error = exc

    def start(self, timeout: float = 15.0) -> Self:
        try:
            self._sock = listen_socket(self._host, self._port)
        except OSError as exc:
            raise RuntimeError(f"the {self._what} did not start: {self._host}:{self._port}: {exc}") from exc
        self._thread.start()
        pause = threading.Event()
        waited = 0.0
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the {self._what} did not start: {self._error!r}")
            if waited > timeout:
                raise RuntimeError(f"the {self._what} did not start within {timeout} s")
            pause.wait(0.01)
            waited += 0.01
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ServerThread(BackgroundServer):
    """A real fake on a free loopback port, served by uvicorn in a background thread.

    Use as a context manager or call :meth:`start` and :meth:`stop`. ``url`` is the base
    URL once started.
    """

    def __init__(self, config: ServerConfig | None = None, *, port: int = 0) -> None:
        # Port 0: the OS picks a free one, so parallel test runs never collide.
        self.config = replace(config or ServerConfig(db=":memory:"), port=port)
        if self.config.workers != 1:
            raise ConfigError(
                f"workers: ServerThread serves in one process, got {self.config.workers};"
                " use mock_server.Workers (or the mock_server fixture's workers=N) for several"
            )
        self.app, self.api = build(self.config)
        super().__init__(
            _uvicorn(self.app, self.config),
            host=self.config.host,
            port=self.config.port,
            admin_token=self.config.admin_token,
            what="fake",
        )


__all__ = [
    "Api",
    "BackgroundServer",
    "ListenSocket",
    "Server",
    "ServerThread",
    "listen_socket",
    "raise_fd_limit",
    "uvicorn_config",
]
