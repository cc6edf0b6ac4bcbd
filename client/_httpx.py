"""The ``httpx`` drivers: the engine's loop as an ``httpx`` transport, sync and async.

::

    client = httpx.Client(transport=ResilientTransport(policies, auth=ApiKeyAuth("k")))
    client = httpx.AsyncClient(transport=AsyncResilientTransport(policies))

Every decision is the engine's (``_engine``); a transport only sends through the transport it
wraps (by default ``httpx.HTTPTransport`` / ``httpx.AsyncHTTPTransport``), sleeps (or awaits),
reads the body, and maps ``httpx`` errors onto the client's tree (the same public classes the
``requests`` driver raises; they pass through ``httpx.Client`` unchanged, so catch
``client.ApiError``, not ``httpx.HTTPError``).

The deadline covers the body: each network read of the default inner transport waits at most
min(read timeout, time left) (its network backend is wrapped to clip every read and connect),
so a trickled body ends in ``DeadlineExceeded``; an inner transport of your own is checked
between chunks instead. What is read where is the engine's call (``Engine.body_wanted``), once
the head is in:

- a final answer the cache will not store is read up to ``buffer_bytes`` (64 KiB; a body that
  short is whole before the engine decides, so one that breaks is retried); a longer one
  streams: ``client.stream(...)`` and ``iter_bytes()`` read from the connection as the caller
  iterates (the bytes already read come first), still under the deadline
  (a body that outlives it raises ``DeadlineExceeded`` from the iteration, and counts as a
  failure in the metrics and the host's breaker); the connection goes back to the pool when
  the stream is closed or read to its end;
- a response the cache may store is read up to the larger of that and the cache's
  ``max_entry_bytes``; a longer body streams, unstored;
- a status the retry policy retries, a 401, and a token answer are read whole before the
  engine decides (a retry needs the connection back, an error may quote the body).

The async transport never blocks the event loop: the engine's locks are held for a few counter
updates, never across an ``await``; a cancelled call gives its half-open permit and its unused
limiter token back. One transport (one breaker, limiter and cache) may serve any number of tasks.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, KeysView
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import httpcore
import httpx

from ._auth import Auth
from ._clock import monotonic
from ._clock import sleep as _real_sleep
from ._engine import Engine, Flow, Reply, drive
from ._errors import ApiError, DeadlineExceeded
from ._exceptions import (
    ConnectionFailed,
    ConnectTimeout,
    ReadTimeout,
    RequestInvalid,
    ResponseInvalid,
    TransportError,
    public,
)
from ._http import MEMO_URL_CHARS, Final, Headers, Received, Request, Send, Sleep, host_key
from ._httpcache import Lookup
from ._limiter import TokenBucket
from ._metrics import Metrics
from ._policies import Policies
from ._redaction import redact, redact_url

__all__ = ["AsyncResilientTransport", "ResilientTransport", "map_httpx_error"]

#: A body up to this many bytes is read inside the transport, so a body that breaks is retried
#: like any failed attempt; a longer one streams to the caller (the transports' ``buffer_bytes``).
logger = logging.getLogger("client")
# Threads a sync transport keeps for background revalidations (stale-while-revalidate).
BACKGROUND_WORKERS = 2
BUFFER_BYTES = 64 * 1024

#: The current attempt, as its network reads and writes see it: the monotonic instant it must
#: have its body by (``None``: no deadline), and the limiter bucket whose server-announced pause
#: its bytes wait out (``None``: none). One variable, so an attempt sets and resets it once.
_ATTEMPT: contextvars.ContextVar[tuple[float | None, TokenBucket | None]] = contextvars.ContextVar(
    "resilient_attempt", default=(None, None)
)

# httpx class -> (client class, label, may the server have seen the request?)
_MAPPING: tuple[tuple[type[BaseException], type[ApiError], str, bool], ...] = (
    (httpx.ConnectTimeout, ConnectTimeout, "connect timeout", False),
    (httpx.PoolTimeout, ConnectTimeout, "no free connection in the pool", False),
    (httpx.ReadTimeout, ReadTimeout, "read timeout", True),
    (httpx.WriteTimeout, ReadTimeout, "write timeout", True),
    (httpx.TimeoutException, ReadTimeout, "timeout", True),
    (httpx.ConnectError, ConnectionFailed, "connection refused or unreachable", False),
    (httpx.ProxyError, ConnectionFailed, "proxy failed", False),
    (httpx.RemoteProtocolError, ConnectionFailed, "connection broken", True),
    (httpx.ReadError, ConnectionFailed, "connection broken while reading", True),
    (httpx.WriteError, ConnectionFailed, "connection broken while writing", True),
    (httpx.CloseError, ConnectionFailed, "connection close failed", True),
    (httpx.LocalProtocolError, RequestInvalid, "request could not be sent", False),
    (httpx.UnsupportedProtocol, RequestInvalid, "URL scheme not supported", False),
    (httpx.DecodingError, ResponseInvalid, "response body could not be decoded", True),
    (httpx.InvalidURL, RequestInvalid, "invalid URL", False),
    (httpx.StreamError, RequestInvalid, "request stream error", False),
    (httpx.TransportError, TransportError, "request failed", True),
    (OSError, ConnectionFailed, "connection error", True),
)


def map_httpx_error(exc: BaseException, *, method: str = "", url: str = "") -> ApiError:
    """The client's error for an ``httpx`` (or socket) exception, ready to ``raise ... from exc``."""
    if isinstance(exc, ApiError):
        return exc
    target: type[ApiError] = TransportError
    label, sent = "request failed", True
    for cls, mapped, mapped_label, mapped_sent in _MAPPING:
        if isinstance(exc, cls):
            target, label, sent = mapped, mapped_label, mapped_sent
            break
    where = f" during {method} {redact_url(url)}" if method or url else ""
    detail = redact(str(exc))[:300]
    message = f"{label}{where}: {type(exc).__name__}" + (f": {detail}" if detail else "")
    if issubclass(target, TransportError):
        return target(message, request_sent=sent)
    return target(message)


# -- the deadline on every network read, the limiter's word on every write ----------------------
def _hold_left() -> float:
    """How long to hold a write back: a pause the server announced after this attempt was
    admitted (another task's 429, say) holds its bytes too, however long the attempt waited
    for a connection. A hold past the deadline ends the attempt as unsent."""
    until, hold = _ATTEMPT.get()
    if hold is None:
        return 0.0
    paused_until = hold.paused_until  # a float read: no lock on every write
    if not paused_until:  # the host never asked for a pause: no clock reading
        return 0.0
    wait = paused_until - time.monotonic()
    if wait > 0:
        if until is not None and time.monotonic() + wait >= until:
            raise httpcore.ConnectTimeout("the host's rate-limit pause ends after the call's deadline")
    return wait


def _clip(timeout: float | None) -> float | None:
    until = _ATTEMPT.get()[0]
    if until is None:
        return timeout
    left = until - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the call's total deadline ran out")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clip(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:  # h11's empty body and end of message: nothing goes out, nothing to bound
            self._inner.write(buffer, timeout)
            return
        wait = _hold_left()
        while wait > 0:
            time.sleep(wait)
            wait = _hold_left()
        self._inner.write(buffer, _clip(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, _clip(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """A network backend whose every connect and read is clipped to the call's deadline."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_tcp(host, port, _clip(timeout), local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_unix_socket(path, _clip(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncStream(httpcore.AsyncNetworkStream):
    """Reads and writes are plain functions handing back the inner stream's coroutine: the
    caller awaits that directly, without a coroutine of ours around it on every read and write
    (a clip past the deadline raises as the caller calls, before it awaits: the same for it)."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> Coroutine[Any, Any, bytes]:
        return self._inner.read(max_bytes, _clip(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> Coroutine[Any, Any, None]:
        if not buffer:  # h11's empty body and end of message: nothing goes out, nothing to bound
            return self._inner.write(buffer, timeout)
        if _hold_left() > 0:
            return self._held_write(buffer, timeout)
        return self._inner.write(buffer, _clip(timeout))

    async def _held_write(self, buffer: bytes, timeout: float | None) -> None:
        wait = _hold_left()
        while wait > 0:
            await anyio.sleep(wait)
            wait = _hold_left()
        await self._inner.write(buffer, _clip(timeout))

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _AsyncStream(await self._inner.start_tls(ssl_context, server_hostname, _clip(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, _clip(timeout), local_address, socket_options)
        return _AsyncStream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _AsyncStream(await self._inner.connect_unix_socket(path, _clip(timeout), socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _wrap_backend(transport: Any, wrapper: type[Any]) -> bool:
    """Clip the network reads of an ``httpx`` default transport (``False``: not one we know)."""
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if backend is None:
        return False
    if not isinstance(backend, _Backend | _AsyncBackend):
        pool._network_backend = wrapper(backend)  # type: ignore[union-attr]
    return True


# -- shared -------------------------------------------------------------------------------------
class _Lowered(dict[str, str]):
    """Response headers as the engine reads them: lower-case names, repeated fields joined
    (as ``httpx.Headers.items()`` gives them), and look-ups by any case. Built once a response:
    ``httpx.Headers`` scans and decodes its whole list on every look-up, about a microsecond,
    and the engine looks up half a dozen fields."""

    __slots__ = ()

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())

    def lower_names(self) -> KeysView[str]:
        """The field names, lower-case (what the engine tests at once)."""
        return dict.keys(self)


def _lowered(headers: httpx.Headers) -> _Lowered:
    """Response headers as the engine reads them, decoded in one pass over httpx's own list of
    ``(name, lower-case name, value)`` bytes (its encoding looked up once: a property call)."""
    fields = getattr(headers, "_list", None)
    if type(fields) is not list:
        items = headers.multi_items()
        lowered = _Lowered(items)
    else:
        encoding = headers.encoding
        lowered = _Lowered({key.decode(encoding): value.decode(encoding) for _, key, value in fields})
        if len(lowered) == len(fields):
            return lowered
        items = [(key.decode(encoding), value.decode(encoding)) for _, key, value in fields]
    if len(lowered) != len(items):  # a repeated field: its lines joined, in order
        lowered = _Lowered()
        for name, value in items:
            seen = dict.get(lowered, name)
            dict.__setitem__(lowered, name, value if seen is None else f"{seen}, {value}")
    return lowered


def _request_of(request: httpx.Request) -> Request:
    stream = request.stream
    replayable = isinstance(stream, httpx.ByteStream)
    body = request.content if replayable else None
    # The engine reads and sets headers many times a call; httpx.Headers scans and decodes its
    # whole list on every look-up, so the engine gets a dict copy (lower-case names, as
    # ``multi_items()`` gives them; a later field replaces an earlier one) and what it sets is
    # copied back.
    given = request.headers
    fields = getattr(given, "_list", None)  # as in ``_lowered``
    if type(fields) is not list:
        headers = Headers.from_pairs(given.multi_items())
    else:
        encoding = given.encoding
        headers = Headers.from_store(
            {(lower := key.decode(encoding)): (lower, value.decode(encoding)) for _, key, value in fields}
        )
    headers.touched = {}  # tracked (``track()``): what the engine sets is copied back
    return Request(request.method, _url_text(request.url), headers, body or None, replayable=replayable)


_url_texts: dict[Any, str] = {}


def _url_text(url: httpx.URL) -> str:
    """``str(url)``, remembered by its parsed parts (httpx rebuilds the text from them each time,
    a few microseconds; most calls repeat a URL). Bounded in count and length (see
    ``_http.MEMO_URL_CHARS``); any other URL is made as usual."""
    parts = getattr(url, "_uri_reference", None)  # a named tuple of the URL's text parts
    if not isinstance(parts, tuple):
        return str(url)
    text = _url_texts.get(parts)
    if text is None:
        text = str(url)
        if len(_url_texts) < 4096 and len(text) <= MEMO_URL_CHARS:
            _url_texts[parts] = text
    return text


def _sync_headers(request: httpx.Request, neutral: Request) -> None:
    """Copy what the engine set (request id, key, credentials, validators) onto ``request``."""
    headers = neutral.headers
    touched = getattr(headers, "touched", None)
    if not touched:
        return
    target = request.headers
    # httpx.Headers keeps (name, lower-case name, value) bytes in a list, and its __setitem__
    # encodes and scans the whole list for every field set (some 3 us each, two or three fields a
    # call). A field the request lacked (the common case: a request id, a credential) is appended
    # as __setitem__ would append it; any other change goes through the public methods.
    fields = getattr(target, "_list", None)
    encoding = getattr(target, "_encoding", None) or "utf-8"
    for lower, new in touched.items():
        value = headers.get(lower)
        if value is None:
            if lower in target:
                del target[lower]
        elif new and type(fields) is list:
            name = lower.encode(encoding)  # lower-case already: its own look-up key
            fields.append((name, name, value.encode(encoding)))
        else:
            target[lower] = value  # one scan: setting what is there already changes nothing
    touched.clear()


def _timeout_extension(request: httpx.Request, action: Send, left: float) -> None:
    """The attempt's timeouts for httpx: connect and read as the engine clipped them, writes like
    reads, and a wait for a pooled connection bounded by the call's deadline only (waiting for a
    connection is this client's own queue, not the host's slowness; ``left``: its time left)."""
    request.extensions = {
        **request.extensions,
        "timeout": {
            "connect": action.connect,
            "read": action.read,
            "write": action.read,
            "pool": None if left == float("inf") else left,
        },
    }


def _caller_timeout(request: httpx.Request, policies: Policies) -> tuple[float, float] | None:
    """The timeout the caller set on this request, when it differs from httpx's default."""
    given = request.extensions.get("timeout")
    if not given or given == _HTTPX_DEFAULT:
        return None
    connect, read = given.get("connect"), given.get("read")
    return (
        float(connect) if connect is not None else policies.timeouts.connect,
        float(read) if read is not None else policies.timeouts.read,
    )


_HTTPX_DEFAULT = httpx.Timeout(5.0).as_dict()


def _served_response(final: Final, request: httpx.Request) -> httpx.Response:
    served = final.served
    assert served is not None
    return httpx.Response(
        served.status,
        headers=list(served.headers),
        content=served.body,
        request=request,
        extensions={"resilience": final.info, "cache_status": served.cache_status},
    )


def _response(final: Final, request: httpx.Request) -> httpx.Response:
    if final.served is not None:
        response = _served_response(final, request)
    else:
        assert final.received is not None
        response = final.received.native
    response.extensions = {**response.extensions, "resilience": final.info}
    return response


class _Base:
    """What both transports share: the engine and the request conversion."""

    def _limits(self) -> httpx.Limits:
        """The pool the policies ask for, for the transport made when none is given."""
        return httpx.Limits(
            max_connections=self.policies.pool_connections * self.policies.pool_maxsize,
            max_keepalive_connections=self.policies.pool_maxsize,
        )

    def _setup(
        self, policies: Policies | None, auth: Auth | None, metrics: Metrics | None, buffer_bytes: int
    ) -> None:
        if isinstance(buffer_bytes, bool) or not isinstance(buffer_bytes, int) or buffer_bytes < 0:
            raise ValueError(f"buffer_bytes: must be an int >= 0, got {buffer_bytes!r}")
        self.buffer_bytes = buffer_bytes
        self.policies = policies or Policies()
        self.engine = Engine(self.policies, auth=auth, metrics=metrics)

    @property
    def metrics(self) -> Metrics:
        """The counters of every call made through this transport."""
        return self.engine.metrics

    def _hold(self, action: Send) -> TokenBucket | None:
        """What holds this attempt's bytes back: its host's limiter pause (real time only: a
        fake clock's pauses are the engine's to wait out, in its own sleeps)."""
        limiters = self.engine.limiters
        if action.attempt == 0 or limiters is None or limiters.policy.clock is not monotonic:
            return None
        bucket = getattr(action.call, "bucket", None)  # the engine's own, for this call's host
        return bucket if bucket is not None else limiters.get(host_key(action.request.url))

    def _flow(self, request: httpx.Request, revalidate: Lookup | None = None) -> tuple[Request, Flow]:
        neutral = _request_of(request)
        flow = self.engine.call(
            neutral, timeout=_caller_timeout(request, self.policies), revalidate=revalidate
        )
        return neutral, flow


def _background_request(request: httpx.Request) -> httpx.Request:
    """The request a background revalidation sends: the caller's, before anything was sent
    (a stale answer is served before auth or validators touch it), with its own headers."""
    return httpx.Request(
        request.method, request.url, headers=request.headers.copy(), extensions=dict(request.extensions)
    )


def _sync_url(request: httpx.Request, neutral: Request, sent_url: str) -> None:
    if neutral.url != sent_url:  # auth put a key in the query
        request.url = httpx.URL(neutral.url)
    _sync_headers(request, neutral)


def _token_request(wanted: Request) -> httpx.Request:
    return httpx.Request("POST", wanted.url, headers=list(wanted.headers.items()), content=wanted.body or b"")


# -- streamed bodies ----------------------------------------------------------------------------
def _late(action: Send, cause: BaseException | None = None) -> DeadlineExceeded:
    error = DeadlineExceeded(
        f"the total deadline ran out while the caller read the streamed body of attempt {action.attempt}"
    )
    error.__cause__ = cause
    return error


def _until(action: Send) -> float | None:
    """The monotonic instant of the call's deadline, for the clipped reads (raises once past)."""
    left = action.deadline.remaining()
    if left <= 0:
        raise _late(action)
    return None if left == float("inf") else time.monotonic() + left


class _StreamBase:
    """What both streamed bodies share: the deadline, and the outcome of a broken body."""

    def __init__(self, engine: Engine, action: Send, head: list[bytes]) -> None:
        self._engine = engine
        self._action = action
        self._head = head
        self._closed = False

    def _failed(self, exc: BaseException) -> BaseException:
        """The client's error for a body that broke at ``exc``, counted as the call's failure."""
        action = self._action
        if isinstance(exc, ApiError):
            error: ApiError = exc
        elif action.deadline.remaining() <= 0:
            error = _late(action, exc)
        else:
            error = map_httpx_error(exc, method=action.request.method, url=action.request.url)
            error.__cause__ = exc
        self._engine.body_failed(action.request.url, error)
        return public(error)


class _SyncBody(_StreamBase, httpx.SyncByteStream):
    """A body read from the connection as the caller iterates, each read under the deadline."""

    def __init__(
        self,
        engine: Engine,
        action: Send,
        inner: httpx.SyncByteStream,
        head: list[bytes],
        chunks: Iterator[bytes] | None,
    ) -> None:
        super().__init__(engine, action, head)
        self._inner = inner
        self._chunks = chunks  # an iteration of ``inner`` already begun (its first bytes: head)

    def __iter__(self) -> Iterator[bytes]:
        head, self._head = self._head, []
        yield from head
        chunks = self._chunks if self._chunks is not None else iter(self._inner)
        while True:
            try:
                token = _ATTEMPT.set((_until(self._action), None))
                try:
                    chunk = next(chunks)
                finally:
                    _ATTEMPT.reset(token)
            except StopIteration:
                return
            except (ApiError, httpx.HTTPError, httpcore.TimeoutException, OSError) as exc:
                raise self._failed(exc) from exc
            yield chunk

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._inner.close()


class _AsyncBody(_StreamBase, httpx.AsyncByteStream):
    """The async twin of :class:`_SyncBody`; closing it also frees the call's connection slot."""

    def __init__(
        self,
        engine: Engine,
        action: Send,
        inner: httpx.AsyncByteStream,
        head: list[bytes],
        chunks: AsyncIterator[bytes] | None,
        release: Callable[[], None] | None,
    ) -> None:
        super().__init__(engine, action, head)
        self._inner = inner
        self._chunks = chunks
        self._release = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        head, self._head = self._head, []
        for chunk in head:
            yield chunk
        chunks = self._chunks if self._chunks is not None else self._inner.__aiter__()
        while True:
            try:
                token = _ATTEMPT.set((_until(self._action), None))
                try:
                    chunk = await chunks.__anext__()
                finally:
                    _ATTEMPT.reset(token)
            except StopAsyncIteration:
                return
            except (ApiError, httpx.HTTPError, httpcore.TimeoutException, OSError) as exc:
                raise self._failed(exc) from exc
            yield chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._inner.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


def _declared_length(headers: _Lowered) -> int | None:
    value = dict.get(headers, "content-length")
    return int(value) if value is not None and value.isdigit() else None


def _short(headers: _Lowered, buffer_bytes: int) -> bool:
    """Whether the body is declared short enough to be read whole here whatever the engine needs
    of it (it is never asked to leave more than ``buffer_bytes`` unread), so it is not asked:
    the common answer."""
    length = _declared_length(headers)
    return length is not None and length <= buffer_bytes


def _cap(wanted: int | None, buffer_bytes: int) -> int | None:
    """How many bytes to read before the transport returns (``None``: all, ``0``: none)."""
    return None if wanted is None else max(wanted, buffer_bytes)


def _check(action: Send, clipped: bool) -> None:
    """Between chunks of an inner transport whose reads are not clipped: the deadline."""
    if not clipped and action.deadline.remaining() <= 0:
        raise DeadlineExceeded("the total deadline ran out while reading the body")


# -- sync ---------------------------------------------------------------------------------------
class ResilientTransport(_Base, httpx.BaseTransport):
    """An ``httpx`` transport running :class:`Policies`: ``httpx.Client(transport=...)``.

    ``transport`` is the transport that sends (default: ``httpx.HTTPTransport(**kwargs)``).
    ``buffer_bytes`` (default 64 KiB): a body up to this long is read before the response is
    returned (one that breaks is retried); a longer one streams as the caller reads it (``0``:
    stream every body the engine does not need).
    """

    def __init__(
        self,
        policies: Policies | None = None,
        *,
        auth: Auth | None = None,
        metrics: Metrics | None = None,
        transport: httpx.BaseTransport | None = None,
        buffer_bytes: int = BUFFER_BYTES,
        **kwargs: Any,
    ) -> None:
        self._setup(policies, auth, metrics, buffer_bytes)
        if transport is None:
            kwargs.setdefault("limits", self._limits())
            transport = httpx.HTTPTransport(**kwargs)
        self.inner = transport
        self._clipped = _wrap_backend(transport, _Backend)
        # Background revalidations (stale-while-revalidate): a small pool the transport owns.
        self._runner = ThreadPoolExecutor(max_workers=BACKGROUND_WORKERS, thread_name_prefix="swr")
        self.engine.background = True

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._handle(request, None)

    def _handle(self, request: httpx.Request, revalidate: Lookup | None) -> httpx.Response:
        neutral, flow = self._flow(request, revalidate)
        sent_url = neutral.url
        engine = self.engine

        def send(action: Send) -> Received:
            if action.attempt == 0:
                target = _token_request(action.request)
            else:
                _sync_url(request, neutral, sent_url)
                target = request
            until = action.deadline.remaining()
            _timeout_extension(target, action, until)
            token = _ATTEMPT.set(
                (time.monotonic() + until if until != float("inf") else None, self._hold(action))
            )
            try:
                response = self.inner.handle_request(target)
                try:
                    headers = _lowered(response.headers)
                    body = self._take(response, headers, action)
                except BaseException as exc:
                    response.close()
                    _head_seen(exc, response)
                    raise
            except ApiError:
                raise
            except (httpx.HTTPError, httpcore.TimeoutException, OSError) as exc:
                raise _mapped(exc, target) from exc
            finally:
                _ATTEMPT.reset(token)
            return Received(response.status_code, headers, body, response)

        def sleep(action: Sleep) -> None:
            engine.sleeper(action)(action.seconds)

        try:
            final = drive(flow, send, sleep, _close)
        except ApiError as exc:
            public(exc)
            raise
        if final.revalidate is not None:
            self._background(_background_request(request), final.revalidate)
        return _response(final, request)

    def _background(self, request: httpx.Request, lk: Lookup) -> None:
        """Revalidate a stale entry off the caller's path (stale-while-revalidate)."""

        def revalidate() -> None:
            try:
                self._handle(request, lk).close()
            except Exception as exc:  # the stale entry stays and ages out; no caller to tell
                _close(getattr(exc, "response", None))
                logger.debug("background revalidation of %s failed: %s", redact_url(str(request.url)), exc)

        try:
            self._runner.submit(revalidate)
        except RuntimeError:  # closed: nobody will revalidate, so a later lookup may
            cache = self.engine.cache
            assert cache is not None
            cache.on_error(lk)

    def _take(self, response: httpx.Response, headers: _Lowered, action: Send) -> bytes | None:
        """The body, read here when the engine needs it or it is short; ``None``: the caller
        streams it (see the module doc)."""
        if response.is_closed:  # built with its content (a mock, say): nothing left to stream
            return response.content
        if _short(headers, self.buffer_bytes):
            return self._read(response, action)
        cap = _cap(self.engine.body_wanted(action, response.status_code, headers), self.buffer_bytes)
        if cap is None:
            return self._read(response, action)
        raw = response.stream
        assert isinstance(raw, httpx.SyncByteStream)
        head: list[bytes] = []
        chunks: Iterator[bytes] | None = None
        if cap > 0:
            length = _declared_length(headers)
            if length is not None and length <= cap:
                return self._read(response, action)
            if length is None:  # read up to the bound, then stream what is left
                chunks = iter(raw)
                got = 0
                for chunk in chunks:
                    head.append(chunk)
                    got += len(chunk)
                    _check(action, self._clipped)
                    if got > cap:
                        break
                else:
                    raw.close()  # read to its end: the connection is back in the pool
                    response.stream = httpx.ByteStream(b"".join(head))
                    return response.read()  # decoded, as read() keeps it
        response.stream = _SyncBody(self.engine, action, raw, head, chunks)
        return None

    def _read(self, response: httpx.Response, action: Send) -> bytes:
        if self._clipped:
            return response.read()
        chunks = []
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            if action.deadline.remaining() <= 0:
                raise DeadlineExceeded("the total deadline ran out while reading the body")
        response._content = b"".join(chunks)  # decoded, as read() keeps it
        return response._content

    def close(self) -> None:
        """Stop background revalidations (waiting for one in flight), then close the pool."""
        self._runner.shutdown(wait=True, cancel_futures=True)
        self.inner.close()


def _head_seen(exc: BaseException, response: httpx.Response) -> None:
    """Remember on a body error the head that did arrive (its rate-limit headers count)."""
    exc.__dict__["received"] = Received(response.status_code, _lowered(response.headers), None, response)


def _mapped(exc: BaseException, target: httpx.Request) -> ApiError:
    error = map_httpx_error(exc, method=target.method, url=str(target.url))
    seen = exc.__dict__.get("received")
    if seen is not None:
        error.__dict__["received"] = seen
    return error


def _close(native: Any) -> None:
    close = getattr(native, "close", None)
    if close is not None:
        close()


# -- async --------------------------------------------------------------------------------------
async def _await_sleep(fn: Any, seconds: float) -> None:
    if fn is _real_sleep:
        await asyncio.sleep(seconds)
        return
    result = fn(seconds)
    if inspect.isawaitable(result):
        await result


async def drive_async(flow: Flow, send: Any, sleep: Any, answered: Reply = None) -> Final:
    """Run ``flow`` to its end, awaiting each send and sleep (the async twin of ``drive``;
    ``answered`` as there). However the loop ends (a cancelled task included), the flow is
    closed, so the permits and tokens it holds are given back."""
    reply: Reply = None
    last = answered
    try:
        while True:
            action = flow.send(reply)
            if isinstance(last, Received) and last.native is not None:
                await last.native.aclose()
            if isinstance(action, Sleep):
                await sleep(action)
                reply = None
            else:
                try:
                    reply = await send(action)
                except ApiError as exc:
                    reply = exc
            last = reply
    except StopIteration as stop:
        result: Final = stop.value
        return result
    finally:
        flow.close()


def _connection_limit(transport: Any) -> int | None:
    """The most connections ``transport``'s pool opens (``None``: unknown or unlimited)."""
    limit = getattr(getattr(transport, "_pool", None), "_max_connections", None)
    return limit if isinstance(limit, int) and limit > 0 else None


class _Slots(asyncio.Semaphore):
    """The connection slots: a semaphore whose free slot, with no one waiting, is taken
    without a coroutine (what ``acquire`` does then, minus its await and its scan of the
    waiters); anything else waits in ``acquire``'s queue, in arrival order."""

    def take_now(self) -> bool:
        if self._value > 0 and not self._waiters:
            self._value -= 1
            return True
        return False


async def _acquire_by(slots: asyncio.Semaphore, left: float) -> None:
    """Wait for a connection slot, at most ``left`` seconds (the call's time left)."""
    if left == float("inf"):
        await slots.acquire()
        return
    try:
        async with asyncio.timeout(max(0.0, left)):
            await slots.acquire()
    except TimeoutError:
        raise httpx.PoolTimeout("no connection slot came free before the call's deadline") from None


class AsyncResilientTransport(_Base, httpx.AsyncBaseTransport):
    """An async ``httpx`` transport running :class:`Policies`: ``httpx.AsyncClient(transport=...)``.

    ``transport`` is the transport that sends (default: ``httpx.AsyncHTTPTransport(**kwargs)``).
    ``buffer_bytes`` as for :class:`ResilientTransport`.
    Sleeps are ``asyncio.sleep`` unless the policies carry an injected sleep (which may be a
    plain function or a coroutine function).
    """

    def __init__(
        self,
        policies: Policies | None = None,
        *,
        auth: Auth | None = None,
        metrics: Metrics | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        buffer_bytes: int = BUFFER_BYTES,
        **kwargs: Any,
    ) -> None:
        self._setup(policies, auth, metrics, buffer_bytes)
        if transport is None:
            kwargs.setdefault("limits", self._limits())
            transport = httpx.AsyncHTTPTransport(**kwargs)
        self.inner = transport
        self._clipped = _wrap_backend(transport, _AsyncBackend)
        # httpcore's pool scans every queued request against every connection on each arrival
        # and each release: a thousand tasks queued in it cost seconds of blocked event loop (a
        # 429 then sits unread while other requests go out). The calls queue here instead, in
        # arrival order, and the pool never holds more requests than it has connections.
        self._slot_count = _connection_limit(transport)
        self._slots: tuple[asyncio.AbstractEventLoop, _Slots] | None = None
        # Background revalidations (stale-while-revalidate), cancelled by aclose().
        self._tasks: set[asyncio.Task[None]] = set()
        self.engine.background = True

    def _slots_here(self) -> _Slots | None:
        """The connection slots of the running event loop (a semaphore belongs to one loop)."""
        if self._slot_count is None:
            return None
        loop = asyncio.get_running_loop()
        slots = self._slots
        if slots is None or slots[0] is not loop:
            slots = self._slots = (loop, _Slots(self._slot_count))
        return slots[1]

    def handle_async_request(self, request: httpx.Request) -> Coroutine[Any, Any, httpx.Response]:
        # A plain function handing back ``_handle``'s coroutine: no coroutine of its own a call.
        return self._handle(request, None)

    async def _handle(self, request: httpx.Request, revalidate: Lookup | None) -> httpx.Response:
        if not isinstance(request.stream, httpx.ByteStream):
            await request.aread()
        engine = self.engine
        neutral = _request_of(request)
        sent_url = neutral.url
        timeout = _caller_timeout(request, self.policies)

        try:
            if revalidate is not None:
                flow = engine.call(neutral, timeout=timeout, revalidate=revalidate)
                send = functools.partial(self._send, request, neutral, sent_url)
                final = await drive_async(flow, send, self._sleep)
            else:
                # The engine's straight path (see the requests driver).
                first = engine.start(neutral, timeout=timeout)
                answered: Reply = None
                if isinstance(first, Send):
                    try:
                        answered = await self._send(request, neutral, sent_url, first)
                    except ApiError as exc:
                        answered = exc
                    except BaseException:
                        engine.abandon(first)
                        raise
                    first = engine.settle(first, answered)
                if isinstance(first, Final):
                    final = first
                else:
                    send = functools.partial(self._send, request, neutral, sent_url)
                    final = await drive_async(first, send, self._sleep, answered)
        except ApiError as exc:
            public(exc)
            raise
        if final.revalidate is not None:
            self._background(_background_request(request), final.revalidate)
        return _response(final, request)

    async def _send(self, request: httpx.Request, neutral: Request, sent_url: str, action: Send) -> Received:
        """One attempt of ``_handle``'s call (``request``, as the engine sees it: ``neutral``)."""
        if action.attempt == 0:
            target = _token_request(action.request)
        else:
            _sync_url(request, neutral, sent_url)
            target = request
        until = action.deadline.remaining()
        _timeout_extension(target, action, until)
        token = _ATTEMPT.set(
            (time.monotonic() + until if until != float("inf") else None, self._hold(action))
        )
        here = self._slots
        if here is not None and getattr(here[0], "_thread_id", None) == threading.get_ident():
            # Their loop runs on this thread, so it is the running loop (one per thread):
            # known without ``get_running_loop()``, which makes a system call (getpid).
            slots: _Slots | None = here[1]
        else:
            slots = self._slots_here()
        acquired = False
        try:
            if slots is not None:
                if not slots.take_now():
                    await _acquire_by(slots, until)
                acquired = True
            response = await self.inner.handle_async_request(target)
            try:
                headers = _lowered(response.headers)
                body = await self._take(response, headers, action, slots if acquired else None)
                if body is None:
                    acquired = False  # the slot is the stream's now: its close frees it
            except BaseException as exc:
                await response.aclose()
                _head_seen(exc, response)
                raise
        except ApiError:
            raise
        except (httpx.HTTPError, httpcore.TimeoutException, OSError) as exc:
            raise _mapped(exc, target) from exc
        finally:
            if acquired:
                slots.release()  # type: ignore[union-attr]
            _ATTEMPT.reset(token)
        return Received(response.status_code, headers, body, response)

    async def _sleep(self, action: Sleep) -> None:
        await _await_sleep(self.engine.sleeper(action), action.seconds)

    def _background(self, request: httpx.Request, lk: Lookup) -> None:
        """Revalidate a stale entry in a task the transport owns (stale-while-revalidate)."""

        async def revalidate() -> None:
            try:
                response = await self._handle(request, lk)
                await response.aclose()
            except Exception as exc:  # the stale entry stays and ages out; no caller to tell
                native = getattr(exc, "response", None)
                if isinstance(native, httpx.Response):
                    await native.aclose()
                logger.debug("background revalidation of %s failed: %s", redact_url(str(request.url)), exc)

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio): no task to own; a later lookup may revalidate
            cache = self.engine.cache
            assert cache is not None
            cache.on_error(lk)
            return
        task = loop.create_task(revalidate())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _take(
        self, response: httpx.Response, headers: _Lowered, action: Send, slots: asyncio.Semaphore | None
    ) -> bytes | None:
        """The body, read here when the engine needs it or it is short; ``None``: the caller
        streams it, and the connection slot goes with the stream (see the module doc)."""
        if response.is_closed:  # built with its content (a mock, say): nothing left to stream
            return response.content
        if _short(headers, self.buffer_bytes):
            return await (response.aread() if self._clipped else self._read_checked(response, action))
        cap = _cap(self.engine.body_wanted(action, response.status_code, headers), self.buffer_bytes)
        if cap is None:
            return await self._read(response, action)
        raw = response.stream
        assert isinstance(raw, httpx.AsyncByteStream)
        head: list[bytes] = []
        chunks: AsyncIterator[bytes] | None = None
        if cap > 0:
            length = _declared_length(headers)
            if length is not None and length <= cap:
                return await self._read(response, action)
            if length is None:  # read up to the bound, then stream what is left
                chunks = raw.__aiter__()
                got = 0
                async for chunk in chunks:
                    head.append(chunk)
                    got += len(chunk)
                    _check(action, self._clipped)
                    if got > cap:
                        break
                else:
                    await raw.aclose()  # read to its end: the connection is back in the pool
                    response.stream = httpx.ByteStream(b"".join(head))
                    return await response.aread()  # decoded, as aread() keeps it
        release = slots.release if slots is not None else None
        response.stream = _AsyncBody(self.engine, action, raw, head, chunks, release)
        return None

    def _read(self, response: httpx.Response, action: Send) -> Coroutine[Any, Any, bytes]:
        """The whole body: ``aread()``'s own coroutine when every network read is clipped (no
        coroutine of ours around it), else a read checking the deadline between chunks."""
        if self._clipped:
            return response.aread()
        return self._read_checked(response, action)

    async def _read_checked(self, response: httpx.Response, action: Send) -> bytes:
        chunks = []
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            if action.deadline.remaining() <= 0:
                raise DeadlineExceeded("the total deadline ran out while reading the body")
        response._content = b"".join(chunks)
        return response._content

    async def aclose(self) -> None:
        """Cancel background revalidations (their entries stay stale), then close the pool."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.inner.aclose()
