"""A lean HTTP/1.1 client to one upstream: a keep-alive pool of asyncio connections parsed by
httptools (llhttp, in C).

Why not httpx: its connection pool checks every pooled connection's socket on each request and
asks which async library runs on each lock, so one proxied request cost milliseconds of CPU under
load. Here a request takes an idle connection (last used first), writes its head and streams its
body with back-pressure (``drain``), and reads the answer as httptools parses it: the status and
headers as they are, then the body's bytes as they were on the wire, chunk framing removed (the
client's side frames them again the same way). A connection goes back to the pool when its answer
was read whole and both sides keep it alive.

Reading is flow-controlled too: past ``_HIGH`` bytes buffered and unread, the connection stops
reading from the socket until the reader catches up, so a fast upstream and a slow client do not
fill memory.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator
from typing import cast

import httptools

RawHeaders = list[tuple[bytes, bytes]]
_HIGH = 256 * 1024
_LOW = 64 * 1024
_NO_BODY_STATUS = frozenset({204, 304})


class UpstreamError(Exception):
    """The upstream could not be reached, or broke the exchange; ``before_answer``: no status yet."""

    def __init__(self, message: str, *, before_answer: bool = True, timeout: bool = False) -> None:
        super().__init__(message)
        self.before_answer = before_answer
        self.timeout = timeout


class _Unasked(Exception):
    """Bytes of an answer no request asked for."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.error: BaseException | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._begin()

    def _begin(self) -> None:
        self.status = 0
        self.reason = b""
        self.headers: RawHeaders = []
        self.head_done: asyncio.Future[None] = self.loop.create_future()
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.complete = False
        self.got_bytes = False
        self.until_eof = False
        self.asked = False
        self.keep_alive = False
        self.head_only = False
        self._wake: asyncio.Future[None] | None = None
        self._paused = False

    # -- asyncio ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; what is called is the same.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if not self.asked:
            # Bytes on an idle connection, answering nothing (a server's "408" before it closes
            # an idle keep-alive): taken for the next request's answer, they would be a lie.
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
            return
        if self.complete and not self.head_only:
            # Bytes after a whole answer, unasked for: the connection is not reusable.
            self._fail(UpstreamError("the upstream sent bytes after its answer", before_answer=False))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if isinstance(exc, httptools.HttpParserCallbackError) and self.complete and self.error is None:
                # An answer after the one asked for (see on_message_begin): the asked one stands,
                # the connection goes.
                self.closed = True
                if self.transport is not None:
                    self.transport.abort()
                return
            self._fail(
                UpstreamError(f"the upstream's answer is not HTTP/1.1: {exc}", before_answer=not self.status)
            )

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.until_eof and self.head_done.done() and not self.complete:
            self.complete = True  # a body that ends with the connection
            self._wakeup()
            return
        if not self.complete:
            what = "the upstream closed the connection"
            self._fail(
                UpstreamError(f"{what}: {exc}" if exc else what, before_answer=not self.head_done.done())
            )

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # -- httptools --------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            raise _Unasked  # a second answer in the same read: stops the parser before its head

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if 100 <= self.status < 200 and self.status != 101:
            # An interim answer (100 Continue, 103 Early Hints): the real one follows.
            self.reason = b""
            self.headers = []
            return
        # Asked now: once the message is complete, httptools no longer says.
        self.keep_alive = self.parser.should_keep_alive()
        if not self.head_done.done():
            self.head_done.set_result(None)
        if self.head_only or self.status in _NO_BODY_STATUS:
            return
        names = {k.lower() for k, _ in self.headers}
        if b"content-length" not in names and b"transfer-encoding" not in names:
            self.until_eof = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wakeup()

    def on_message_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200 and not self.head_done.done():
            return
        self.complete = True
        self._wakeup()

    # -- for the client -----------------------------------------------------------------------------

    def _wakeup(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _fail(self, exc: UpstreamError) -> None:
        if self.error is None:
            self.error = exc
        if not self.head_done.done():
            self.head_done.set_exception(exc)
            self.head_done.exception()  # retrieved: no "never retrieved" warning if no one waits
        self._wakeup()
        if self.transport is not None:
            self.transport.abort()

    def write(self, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        if not self._can_write.is_set():
            await self._can_write.wait()
        if self.error is not None:
            raise self.error

    async def chunk(self, timeout: float) -> bytes | None:
        """The next piece of the body; None at its end."""
        while not self.chunks:
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            self._wake = self.loop.create_future()
            try:
                await asyncio.wait_for(self._wake, timeout)
            except TimeoutError:
                raise UpstreamError(
                    f"the upstream sent nothing for {timeout:g} s mid-body", before_answer=False, timeout=True
                ) from None
        data = self.chunks.popleft()
        self.buffered -= len(data)
        if self._paused and self.buffered < _LOW and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    @property
    def reusable(self) -> bool:
        return (
            self.complete
            and not self.closed
            and self.error is None
            and not self.until_eof
            and not self.head_only
            and self.keep_alive
        )


class Answer:
    """An upstream's answer: status, reason, version and headers as sent; the body to read."""

    def __init__(self, pool: UpstreamPool, conn: _Connection) -> None:
        self._pool = pool
        self._conn = conn
        self.status = conn.status
        self.reason = conn.reason.decode("latin-1")
        self.http_version = "HTTP/" + conn.parser.get_http_version()
        self.headers = conn.headers
        self._done = False

    async def body(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (raises :class:`UpstreamError` if it breaks off)."""
        while True:
            data = await self._conn.chunk(self._pool.timeout)
            if data is None:
                return
            yield data

    def whole(self) -> bytes | None:
        """The whole body when it has all arrived already (most small answers come in one read
        with their headers), else None: then read it with :meth:`body`."""
        conn = self._conn
        if not conn.complete:
            return None
        data = b"".join(conn.chunks) if len(conn.chunks) != 1 else conn.chunks[0]
        conn.chunks.clear()
        conn.buffered = 0
        return data

    @property
    def finished(self) -> bool:
        """Whether the body has been read to its end (no byte left to come)."""
        return self._conn.complete and not self._conn.chunks

    def close(self) -> None:
        """Give the connection back to the pool if the answer was read whole, else drop it."""
        if self._done:
            return
        self._done = True
        self._pool.release(self._conn)


class UpstreamPool:
    """Keep-alive connections to ``host:port`` (TLS when ``tls``), at most ``max_idle`` kept idle."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool = False,
        connect_timeout: float = 5.0,
        timeout: float = 30.0,
        max_idle: int = 256,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if tls else None
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.max_idle = max_idle
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    _Connection,
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            raise UpstreamError(f"cannot connect to {self.host}:{self.port}: timed out") from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
        return conn

    def _take(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    def release(self, conn: _Connection) -> None:
        if conn.reusable and len(self._idle) < self.max_idle:
            conn.parser = httptools.HttpResponseParser(conn)
            conn._begin()
            self._idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()

    def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()

    async def request(
        self,
        method: str,
        target: bytes,
        headers: RawHeaders,
        body: AsyncIterator[bytes] | None,
        *,
        chunked: bool,
    ) -> Answer:
        """Send one request; its answer once the status and headers are in.

        ``body`` is streamed as it comes: as is when ``headers`` give its length, chunk-framed
        when ``chunked`` (then ``headers`` must say ``Transfer-Encoding: chunked``).
        """
        head = bytearray(method.encode("latin-1") + b" " + target + b" HTTP/1.1\r\n")
        for name, value in headers:
            head += name + b": " + value + b"\r\n"
        head += b"\r\n"
        conn = self._take()
        if conn is not None and body is None:
            try:
                return await self._exchange(conn, method, bytes(head), None, chunked)
            except UpstreamError as exc:
                # A kept-alive connection the upstream had just closed: nothing was answered, and
                # a request without a body can be sent again on a new connection.
                if not (exc.before_answer and not conn.got_bytes and not exc.timeout):
                    raise
            conn = None
        if conn is None:
            conn = await self._connect()
        return await self._exchange(conn, method, bytes(head), body, chunked)

    async def _exchange(
        self, conn: _Connection, method: str, head: bytes, body: AsyncIterator[bytes] | None, chunked: bool
    ) -> Answer:
        conn.head_only = method == "HEAD"
        conn.asked = True
        try:
            conn.write(head)
            if body is not None:
                async for piece in body:
                    conn.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                    await conn.drain()
                if chunked:
                    conn.write(b"0\r\n\r\n")
            if not conn.head_done.done():
                # A timer rather than wait_for: no task and no extra futures per request.
                timer = conn.loop.call_later(self.timeout, _time_out, conn.head_done)
                try:
                    await conn.head_done
                finally:
                    timer.cancel()
            else:
                conn.head_done.result()  # raises what broke the exchange, if anything did
        except UpstreamError:
            _drop(conn)
            raise
        except BaseException:
            _drop(conn)  # the client went away mid-body, or the task was cancelled
            raise
        if conn.head_only:
            conn.complete = True
        return Answer(self, conn)


def _time_out(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(UpstreamError("no answer in time", timeout=True))


def _drop(conn: _Connection) -> None:
    if conn.transport is not None:
        conn.transport.abort()


__all__ = ["Answer", "UpstreamError", "UpstreamPool"]
