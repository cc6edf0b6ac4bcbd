"""The ``httpx`` drivers: the engine's loop as an ``httpx`` transport, sync and async.

::

    client = httpx.Client(transport=ResilientTransport(policies, auth=ApiKeyAuth("k")))
    client = httpx.AsyncClient(transport=AsyncResilientTransport(policies))

Every decision is the engine's (``_engine``); a transport only sends through the transport it
wraps (by default ``httpx.HTTPTransport`` / ``httpx.AsyncHTTPTransport``), sleeps (or awaits),
reads the body, and maps ``httpx`` errors onto the client's tree (the same public classes the
``requests`` driver raises; they pass through ``httpx.Client`` unchanged, so catch
``client.ApiError``, not ``httpx.HTTPError``).

The body is read inside the transport, under the call's deadline: each network read of the
default inner transport waits at most min(read timeout, time left) (its network backend is
wrapped to clip every read and connect), so a trickled body ends in ``DeadlineExceeded``. An
inner transport of your own is checked between chunks instead. Every response is therefore
buffered: a resilient call is a whole call.

The async transport never blocks the event loop: the engine's locks are held for a few counter
updates, never across an ``await``; a cancelled call gives its half-open permit and its unused
limiter token back. One transport (one breaker, limiter and cache) may serve any number of tasks.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import ssl
import time
from collections.abc import Iterable
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
from ._http import Final, Headers, Received, Request, Send, Sleep, host_key
from ._limiter import TokenBucket
from ._metrics import Metrics
from ._policies import Policies
from ._redaction import redact, redact_url

__all__ = ["AsyncResilientTransport", "ResilientTransport", "map_httpx_error"]

#: The monotonic instant the current attempt must have its body by (``None``: no deadline).
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("resilient_deadline", default=None)
#: The limiter bucket whose server-announced pause the current attempt's bytes wait out.
_HOLD: contextvars.ContextVar[TokenBucket | None] = contextvars.ContextVar("resilient_hold", default=None)

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
    hold = _HOLD.get()
    if hold is None:
        return 0.0
    wait = hold.paused_until - time.monotonic()  # a float read: no lock on every write
    if wait > 0:
        until = _DEADLINE.get()
        if until is not None and time.monotonic() + wait >= until:
            raise httpcore.ConnectTimeout("the host's rate-limit pause ends after the call's deadline")
    return wait


def _clip(timeout: float | None) -> float | None:
    until = _DEADLINE.get()
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
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, _clip(timeout))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
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


def _lowered(headers: httpx.Headers) -> _Lowered:
    items = headers.multi_items()  # lower-case names, decoded values
    lowered = _Lowered(items)
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
    # whole list on every look-up, so the engine gets a dict copy and what it sets is copied back.
    headers = Headers.from_pairs(request.headers.multi_items()).track()
    return Request(request.method, str(request.url), headers, body or None, replayable=replayable)


def _sync_headers(request: httpx.Request, neutral: Request) -> None:
    """Copy what the engine set (request id, key, credentials, validators) onto ``request``."""
    headers = neutral.headers
    touched = getattr(headers, "touched", None)
    if not touched:
        return
    target = request.headers
    for lower in touched:
        value = headers.get(lower)
        if value is None:
            if lower in target:
                del target[lower]
        else:
            target[lower] = value  # one scan: setting what is there already changes nothing
    touched.clear()


def _timeout_extension(request: httpx.Request, action: Send) -> None:
    """The attempt's timeouts for httpx: connect and read as the engine clipped them, writes like
    reads, and a wait for a pooled connection bounded by the call's deadline only (waiting for a
    connection is this client's own queue, not the host's slowness)."""
    left = action.deadline.remaining()
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

    def _setup(self, policies: Policies | None, auth: Auth | None, metrics: Metrics | None) -> None:
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
        return limiters.get(host_key(action.request.url))

    def _flow(self, request: httpx.Request) -> tuple[Request, Flow]:
        neutral = _request_of(request)
        return neutral, self.engine.call(neutral, timeout=_caller_timeout(request, self.policies))


def _sync_url(request: httpx.Request, neutral: Request, sent_url: str) -> None:
    if neutral.url != sent_url:  # auth put a key in the query
        request.url = httpx.URL(neutral.url)
    _sync_headers(request, neutral)


def _token_request(wanted: Request) -> httpx.Request:
    return httpx.Request("POST", wanted.url, headers=list(wanted.headers.items()), content=wanted.body or b"")


# -- sync ---------------------------------------------------------------------------------------
class ResilientTransport(_Base, httpx.BaseTransport):
    """An ``httpx`` transport running :class:`Policies`: ``httpx.Client(transport=...)``.

    ``transport`` is the transport that sends (default: ``httpx.HTTPTransport(**kwargs)``).
    """

    def __init__(
        self,
        policies: Policies | None = None,
        *,
        auth: Auth | None = None,
        metrics: Metrics | None = None,
        transport: httpx.BaseTransport | None = None,
        **kwargs: Any,
    ) -> None:
        self._setup(policies, auth, metrics)
        if transport is None:
            kwargs.setdefault(
                "limits",
                httpx.Limits(
                    max_connections=self.policies.pool_connections * self.policies.pool_maxsize,
                    max_keepalive_connections=self.policies.pool_maxsize,
                ),
            )
            transport = httpx.HTTPTransport(**kwargs)
        self.inner = transport
        self._clipped = _wrap_backend(transport, _Backend)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        neutral, flow = self._flow(request)
        sent_url = neutral.url
        engine = self.engine

        def send(action: Send) -> Received:
            if action.attempt == 0:
                target = _token_request(action.request)
            else:
                _sync_url(request, neutral, sent_url)
                target = request
            _timeout_extension(target, action)
            until = action.deadline.remaining()
            token = _DEADLINE.set(time.monotonic() + until if until != float("inf") else None)
            held = _HOLD.set(self._hold(action))
            try:
                response = self.inner.handle_request(target)
                try:
                    body = self._read(response, action)
                except BaseException as exc:
                    response.close()
                    _head_seen(exc, response)
                    raise
            except ApiError:
                raise
            except (httpx.HTTPError, httpcore.TimeoutException, OSError) as exc:
                raise _mapped(exc, target) from exc
            finally:
                _DEADLINE.reset(token)
                _HOLD.reset(held)
            return Received(response.status_code, _lowered(response.headers), body, response)

        def sleep(action: Sleep) -> None:
            engine.sleeper(action)(action.seconds)

        try:
            final = drive(flow, send, sleep, _close)
        except ApiError as exc:
            public(exc)
            raise
        return _response(final, request)

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


async def drive_async(flow: Flow, send: Any, sleep: Any) -> Final:
    """Run ``flow`` to its end, awaiting each send and sleep (the async twin of ``drive``).
    However the loop ends (a cancelled task included), the flow is closed, so the permits and
    tokens it holds are given back."""
    reply: Reply = None
    try:
        while True:
            action = flow.send(reply)
            if isinstance(reply, Received) and reply.native is not None:
                await reply.native.aclose()
            if isinstance(action, Sleep):
                await sleep(action)
                reply = None
            else:
                try:
                    reply = await send(action)
                except ApiError as exc:
                    reply = exc
    except StopIteration as stop:
        result: Final = stop.value
        return result
    finally:
        flow.close()


def _connection_limit(transport: Any) -> int | None:
    """The most connections ``transport``'s pool opens (``None``: unknown or unlimited)."""
    limit = getattr(getattr(transport, "_pool", None), "_max_connections", None)
    return limit if isinstance(limit, int) and limit > 0 else None


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
        **kwargs: Any,
    ) -> None:
        self._setup(policies, auth, metrics)
        if transport is None:
            kwargs.setdefault(
                "limits",
                httpx.Limits(
                    max_connections=self.policies.pool_connections * self.policies.pool_maxsize,
                    max_keepalive_connections=self.policies.pool_maxsize,
                ),
            )
            transport = httpx.AsyncHTTPTransport(**kwargs)
        self.inner = transport
        self._clipped = _wrap_backend(transport, _AsyncBackend)
        # httpcore's pool scans every queued request against every connection on each arrival
        # and each release: a thousand tasks queued in it cost seconds of blocked event loop (a
        # 429 then sits unread while other requests go out). The calls queue here instead, in
        # arrival order, and the pool never holds more requests than it has connections.
        self._slot_count = _connection_limit(transport)
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def _slots_here(self) -> asyncio.Semaphore | None:
        """The connection slots of the running event loop (a semaphore belongs to one loop)."""
        if self._slot_count is None:
            return None
        loop = asyncio.get_running_loop()
        slots = self._slots
        if slots is None or slots[0] is not loop:
            slots = self._slots = (loop, asyncio.Semaphore(self._slot_count))
        return slots[1]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.ByteStream):
            await request.aread()
        neutral, flow = self._flow(request)
        sent_url = neutral.url
        engine = self.engine

        async def send(action: Send) -> Received:
            if action.attempt == 0:
                target = _token_request(action.request)
            else:
                _sync_url(request, neutral, sent_url)
                target = request
            _timeout_extension(target, action)
            until = action.deadline.remaining()
            token = _DEADLINE.set(time.monotonic() + until if until != float("inf") else None)
            held = _HOLD.set(self._hold(action))
            slots = self._slots_here()
            acquired = False
            try:
                if slots is not None:
                    if slots.locked():
                        await _acquire_by(slots, until)
                    else:
                        await slots.acquire()  # free: returns without yielding
                    acquired = True
                response = await self.inner.handle_async_request(target)
                try:
                    body = await self._read(response, action)
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
                _DEADLINE.reset(token)
                _HOLD.reset(held)
            return Received(response.status_code, _lowered(response.headers), body, response)

        async def sleep(action: Sleep) -> None:
            await _await_sleep(engine.sleeper(action), action.seconds)

        try:
            final = await drive_async(flow, send, sleep)
        except ApiError as exc:
            public(exc)
            raise
        return _response(final, request)

    async def _read(self, response: httpx.Response, action: Send) -> bytes:
        if self._clipped:
            return await response.aread()
        chunks = []
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            if action.deadline.remaining() <= 0:
                raise DeadlineExceeded("the total deadline ran out while reading the body")
        response._content = b"".join(chunks)
        return response._content

    async def aclose(self) -> None:
        await self.inner.aclose()
