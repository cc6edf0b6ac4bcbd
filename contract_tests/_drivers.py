"""The client under test, whichever driver runs the engine: ``requests``, ``httpx``, ``httpx-async``.

Every client property runs once per driver: the same policies, the same fake time, the same
fault plans, the fake's journal as witness. A :class:`Caller` hides the driver: ``request()``
returns the driver's response (``status_code``, ``headers``, ``json()``) or the client error the
call ended in; ``sent`` lists every attempt as it went out (with the test clock's readings and,
once back, the answer's status and headers). The async driver runs on one event loop per caller
(an ``asyncio.Runner``), so its engine, breaker, limiter and cache live across calls as they
would in an application.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import requests
from requests.structures import CaseInsensitiveDict

from client import (
    ApiError,
    AsyncResilientTransport,
    FakeClock,
    Policies,
    ResilientSession,
    ResilientTransport,
)
from client._engine import Engine
from client._metrics import Metrics

from ._support import CannedAdapter, RecordingAdapter, Sent

DRIVERS = ("requests", "httpx", "httpx-async")

Answer = tuple[int, Mapping[str, str]] | BaseException


def _sent(request: httpx.Request, clock: FakeClock) -> Sent:
    return Sent(
        clock.clock(),
        clock.wall(),
        request.method,
        str(request.url),
        CaseInsensitiveDict(list(request.headers.items())),  # type: ignore[arg-type]
        request.content or None,
    )


def _to_httpx(exc: BaseException) -> BaseException:
    """The httpx error a requests error in a script stands for (what the wire would raise)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return httpx.ConnectTimeout(str(exc))
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return httpx.ReadTimeout(str(exc))
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return httpx.RemoteProtocolError(str(exc))
    if isinstance(exc, requests.exceptions.ConnectionError):
        return httpx.ConnectError(str(exc))
    return exc


class _Recorder:
    """What an httpx inner transport saw: every attempt, with the test clock's readings."""

    def __init__(self, clock: FakeClock, hide: Sequence[str] = ()) -> None:
        self.clock = clock
        self.hide = tuple(hide)
        self.sent: list[Sent] = []
        self._lock = threading.Lock()

    def before(self, request: httpx.Request) -> Sent:
        record = _sent(request, self.clock)
        with self._lock:
            self.sent.append(record)
        return record

    def after(self, record: Sent, response: httpx.Response) -> None:
        for name in self.hide:  # answer headers the client must not see (a server without them)
            if name in response.headers:
                del response.headers[name]
        record.status = response.status_code
        record.response_headers = CaseInsensitiveDict(dict(response.headers))
        record.received_mono, record.received_wall = self.clock.clock(), self.clock.wall()


class _RecordingTransport(httpx.BaseTransport):
    def __init__(self, recorder: _Recorder) -> None:
        self.recorder = recorder
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        record = self.recorder.before(request)
        response = self.inner.handle_request(request)
        self.recorder.after(record, response)
        return response

    def close(self) -> None:
        self.inner.close()


class _AsyncRecordingTransport(httpx.AsyncBaseTransport):
    def __init__(self, recorder: _Recorder) -> None:
        self.recorder = recorder
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        record = self.recorder.before(request)
        response = await self.inner.handle_async_request(request)
        self.recorder.after(record, response)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Canned:
    """Scripted answers for the httpx drivers, like ``CannedAdapter`` for requests."""

    def __init__(self, clock: FakeClock, script: Sequence[Any]) -> None:
        self.recorder = _Recorder(clock)
        self.script = list(script)

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.recorder.before(request)
        n = len(self.recorder.sent)
        step = self.script[min(n - 1, len(self.script) - 1)]
        if callable(step) and not isinstance(step, BaseException):
            step = step(self.recorder.clock)
        if isinstance(step, BaseException):
            raise _to_httpx(step)
        status, headers = step
        return httpx.Response(
            status,
            headers={"Content-Type": "application/json", **headers},
            content=b'{"n": %d}' % n,
            request=request,
        )


class Caller:
    """One client under test, whichever driver; see the module docstring."""

    def __init__(
        self,
        driver: str,
        policies: Policies,
        clock: FakeClock,
        *,
        base_headers: Mapping[str, str],
        script: Sequence[Any] | None,
        real_time: bool = False,
        hide: Sequence[str] = (),
    ) -> None:
        self.driver = driver
        self.clock = clock
        timed = (
            policies
            if real_time
            else policies.with_time(clock=clock.clock, wall_clock=clock.wall, sleep=clock.sleep)
        )
        self._runner: asyncio.Runner | None = None
        if driver == "requests":
            session = ResilientSession(timed)
            adapter = (
                CannedAdapter(clock, script)
                if script is not None
                else RecordingAdapter(clock, hide=hide, max_retries=0)
            )
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers.update(base_headers)
            self.session: Any = session
            self._sent = adapter.sent
            self.engine: Engine = session.engine
        elif driver == "httpx":
            if script is not None:
                canned = _Canned(clock, script)
                inner: Any = httpx.MockTransport(canned.answer)
                recorder = canned.recorder
            else:
                recorder = _Recorder(clock, hide)
                inner = _RecordingTransport(recorder)
            transport = ResilientTransport(timed, transport=inner)
            self.session = httpx.Client(transport=transport, headers=dict(base_headers))
            self._sent = recorder.sent
            self.engine = transport.engine
        elif driver == "httpx-async":
            if script is not None:
                canned = _Canned(clock, script)
                inner = httpx.MockTransport(canned.answer)
                recorder = canned.recorder
            else:
                recorder = _Recorder(clock, hide)
                inner = _AsyncRecordingTransport(recorder)
            atransport = AsyncResilientTransport(timed, transport=inner)
            self._runner = asyncio.Runner()
            self.session = self._runner.run(_make_async_client(atransport, dict(base_headers)))
            self._sent = recorder.sent
            self.engine = atransport.engine
        else:
            raise ValueError(f"unknown driver {driver!r}")

    @property
    def sent(self) -> list[Sent]:
        """Every attempt, in order."""
        return self._sent

    @property
    def metrics(self) -> Metrics:
        return self.engine.metrics

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """The driver's response, or raises the client error the call ended in."""
        if self._runner is not None:
            return self._runner.run(self.session.request(method, url, **kwargs))
        return self.session.request(method, url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> Any:
        return self.request("PUT", url, **kwargs)

    def call(self, method: str, url: str, **kwargs: Any) -> Any:
        """``request()``, with a client error returned instead of raised."""
        try:
            return self.request(method, url, **kwargs)
        except ApiError as exc:
            return exc

    def many(self, count: int, method: str, url: str, **kwargs: Any) -> list[Any]:
        """``count`` calls at once (threads for the sync drivers, tasks for the async one);
        each outcome as :meth:`call` gives it."""
        if self._runner is not None:
            session = self.session

            async def one() -> Any:
                try:
                    return await session.request(method, url, **kwargs)
                except ApiError as exc:
                    return exc

            async def all_at_once() -> list[Any]:
                return list(await asyncio.gather(*(one() for _ in range(count))))

            return self._runner.run(all_at_once())
        barrier = threading.Barrier(count)

        def one_sync(_: int) -> Any:
            barrier.wait()
            return self.call(method, url, **kwargs)

        with ThreadPoolExecutor(max_workers=count) as pool:
            return list(pool.map(one_sync, range(count)))

    def close(self) -> None:
        if self._runner is not None:
            self._runner.run(self.session.aclose())
            self._runner.close()
        else:
            self.session.close()

    def __enter__(self) -> Caller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _make_async_client(
    transport: AsyncResilientTransport, headers: dict[str, str]
) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, headers=headers)


def caller(
    driver: str,
    policies: Policies,
    clock: FakeClock,
    *,
    base_headers: Mapping[str, str] | None = None,
    script: Sequence[Answer | Callable[[FakeClock], Answer]] | None = None,
    real_time: bool = False,
    hide: Sequence[str] = (),
) -> Caller:
    """A client under test on fake time (``real_time``: the policies' own clocks and sleeps; the
    test clock only stamps the records): the real wire (recorded; ``hide``: answer headers taken
    out before the client sees them), or ``script``'s answers."""
    return Caller(
        driver,
        policies,
        clock,
        base_headers=base_headers or {},
        script=script,
        real_time=real_time,
        hide=hide,
    )


class _SyncProfiles:
    """``AsyncProfiles`` called from synchronous code, one event loop for the client's life."""

    def __init__(self, profiles: Any, runner: asyncio.Runner) -> None:
        self._profiles = profiles
        self._runner = runner

    def create(self, *args: Any, **kwargs: Any) -> Any:
        return self._runner.run(self._profiles.create(*args, **kwargs))

    def update(self, *args: Any, **kwargs: Any) -> Any:
        return self._runner.run(self._profiles.update(*args, **kwargs))

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        return self._runner.run(self._profiles.delete(*args, **kwargs))

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._runner.run(self._profiles.get(*args, **kwargs))

    def list(self, **kwargs: Any) -> list[Any]:
        async def collect() -> list[Any]:
            return [p async for p in self._profiles.list(**kwargs)]

        return self._runner.run(collect())


class TypedClient:
    """The typed client of a driver, callable from synchronous test code: ``ResonanceClient``
    on requests or on an ``httpx.Client``, or ``AsyncResonanceClient`` on its own loop."""

    def __init__(
        self, driver: str, base_url: str, policies: Policies, *, auth: Any, headers: Mapping[str, str]
    ) -> None:
        from client import AsyncResonanceClient, ResonanceClient

        self._runner: asyncio.Runner | None = None
        if driver == "requests":
            session = ResilientSession(policies)
            session.headers.update(headers)
            self._client: Any = ResonanceClient(base_url, auth=auth, session=session)
            self.profiles: Any = self._client.profiles
        elif driver == "httpx":
            http = httpx.Client(transport=ResilientTransport(policies), headers=dict(headers))
            self._client = ResonanceClient(base_url, auth=auth, session=http)
            self.profiles = self._client.profiles
        else:
            self._runner = asyncio.Runner()

            async def make() -> Any:
                transport = AsyncResilientTransport(policies, auth=auth)
                http = httpx.AsyncClient(transport=transport, headers=dict(headers))
                return AsyncResonanceClient(base_url, client=http)

            self._client = self._runner.run(make())
            self.profiles = _SyncProfiles(self._client.profiles, self._runner)

    def close(self) -> None:
        if self._runner is not None:
            self._runner.run(self._client.aclose())
            self._runner.close()
        else:
            self._client.close()
