"""The ResonanceOS v6 API itself: routes and the request pipeline; the resources live in
:mod:`mock_server._resources` and their state in :mod:`mock_server._state`.

Each API request goes: read the body (413) → wait out failed authentications from its
address (429) → authenticate (401) → take a rate-limit token (429) → content type (415) →
parse (400) → validate (422) → handler. Handlers raise :class:`ApiError`; one wrapper renders
it, adds ``X-Request-ID`` and the rate-limit headers, and records the traffic that analytics
report on.

The state plugs in here, once: :class:`EmbeddedState` for one process (the default, SQLite or
memory), or a shared one (Redis) when ``config.state`` names it. With the embedded state the
token is taken synchronously before the handler; with a shared one it is a :class:`Ticket`
taken in the same round trip as the handler's first state operation (see ``_state._base``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._auth import Authenticator, Principal, WrongCredential
from ._config import ServerConfig
from ._cursors import Cursors, new_key
from ._errors import ApiError, error_response
from ._openapi import openapi_document
from ._ratelimit import FailureLimiter, RateLimiter, Verdict
from ._request import Endpoint
from ._resources import Analytics, Call, Generation, Handler, Idempotency, OAuth, Profiles
from ._resources._common import JSON, client_host, dumps, now_iso, request_id_of
from ._routing import DirectRouter
from ._state import ApiState, Refused, Ticket
from ._state._embedded import EmbeddedState
from ._store import Store
from ._tenants import TenantDirectory
from ._traffic import Traffic
from ._untrusted import BodyTooLarge, read_body

VERSION = "6.0.0"
_STATEFUL = ("/profiles", "/hr_generate", "/oauth/", "/analytics/")
Route_ = Callable[[Request], Awaitable[Response]]


class Api:
    """State and handlers of one fake; :meth:`app` builds its Starlette application."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.wall = wall
        self.directory = TenantDirectory(config.tenants)
        self.auth = Authenticator(
            self.directory,
            token_ttl=config.token_ttl,
            signature_window=config.signature_window,
            wall=wall,
            tenant_in_token=config.state is not None,
        )
        self.limiter = RateLimiter(retry_after_format=config.retry_after_format, clock=clock, wall=wall)
        self.auth_failures = FailureLimiter(config.auth_failure_limit, clock=clock)
        self._cursor_key = config.cursor_key or new_key()
        self.cursors = Cursors(self._cursor_key)
        self.traffic = Traffic(wall=wall)
        self.store: Store | None = None
        self.state: ApiState
        if config.state:
            from ._state._redis import RedisState

            self.state = RedisState(
                config.state,
                auth=self.auth,
                limiter=self.limiter,
                traffic=self.traffic,
                idempotency_ttl=config.idempotency_ttl,
                token_ttl=config.token_ttl,
                wall=wall,
            )
        else:
            self.store = Store(config.db, wall=wall)
            self.state = EmbeddedState(
                self.store,
                limiter=self.limiter,
                auth=self.auth,
                traffic=self.traffic,
                idempotency_ttl=config.idempotency_ttl,
            )
        idempotent = Idempotency(self.state, wall=wall)
        self.profiles = Profiles(
            self.state, cursors=self.cursors, idempotent=idempotent, cache_max_age=config.cache_max_age
        )
        self.generation = Generation(self.state, idempotent=idempotent, wall=wall)
        self.oauth = OAuth(self.state, failures=self.auth_failures, check_failures=self._check_failures)
        self.analytics = Analytics(self.state, wall=wall)
        self._openapi = dumps(openapi_document(VERSION))
        self._health_second = -1
        self._health_body = b""
        self._tasks: set[asyncio.Task[None]] = set()
        # As long as a signature's timestamp can be inside the window, either side of now.
        self._replay_ttl = 2 * config.signature_window + 1

    # -- application ---------------------------------------------------------------------
    @staticmethod
    def stateful(path: str) -> bool:
        """Whether requests to ``path`` may reach the state (``/health`` and ``/openapi.json``
        never do): the fault layer leaves their arrival to the state's first round trip."""
        return path.startswith(_STATEFUL)

    def app(self) -> Starlette:
        e = self._endpoint
        profiles = self.profiles
        # The embedded fake reads a profile with no await at all: the hot path.
        get_profile = profiles.get if self.store is None else profiles.get_embedded(self.store)
        table: dict[str, dict[str, Route_]] = {
            "/health": {"GET": e("GET /health", self.health, auth=False)},
            "/openapi.json": {"GET": e("GET /openapi.json", self.openapi, auth=False)},
            "/oauth/token": {"POST": e("POST /oauth/token", self.oauth.token, auth=False, body=True)},
            "/hr_generate": {"POST": e("POST /hr_generate", self.generation.generate, body=True)},
            "/hr_generate/batch": {"POST": e("POST /hr_generate/batch", self.generation.batch, body=True)},
            "/profiles": {
                "GET": e("GET /profiles", profiles.list),
                "POST": e("POST /profiles", profiles.create, body=True),
            },
            "/profiles/{tenant}/{profile_name}": {
                "GET": e("GET /profiles/{tenant}/{profile_name}", get_profile),
                "PUT": e("PUT /profiles/{tenant}/{profile_name}", profiles.update, body=True),
                "DELETE": e("DELETE /profiles/{tenant}/{profile_name}", profiles.delete),
            },
            "/analytics/usage": {"GET": e("GET /analytics/usage", self.analytics.usage)},
            "/analytics/performance": {"GET": e("GET /analytics/performance", self.analytics.performance)},
        }
        # One route per path, so a wrong method is 405 with every allowed method in Allow.
        routes = [
            Route(path, Endpoint(_by_method(handlers)), methods=list(handlers))
            for path, handlers in table.items()
        ]
        app = Starlette(exception_handlers={HTTPException: self._http_exception, Exception: self._unhandled})
        app.router = DirectRouter(routes, lifespan=self._lifespan)
        return app

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.state.open()
        if self.config.cursor_key is None:
            self.cursors.rekey(await self.state.cursor_key(self._cursor_key))
        try:
            yield
        finally:
            await self.state.close()

    async def flush(self) -> None:
        """Write pending usage counters out."""
        await self.state.flush()

    def reset_limits(self, session: str | None = None) -> None:
        """Refill every bucket, or one session's (an admin reset). Shared buckets are refilled
        by a task started here: the reset is done when :meth:`reset_shared_limits` is."""
        self.limiter.reset(session)
        if self.state.shared:
            task = asyncio.get_running_loop().create_task(self.state.reset_limits(session))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def reset_shared_limits(self, session: str | None = None) -> None:
        """Refill every bucket, or one session's, in this process and in the shared state."""
        self.limiter.reset(session)
        await self.state.reset_limits(session)

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        rid = request_id_of(request.scope, request.headers)
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        elif exc.status_code == 404:
            message = f"no route for {request.method} {request.url.path}"
        else:
            message = str(exc.detail)
        return error_response(ApiError(exc.status_code, message, headers=exc.headers), rid)

    async def _unhandled(self, request: Request, exc: Exception) -> Response:
        rid = request_id_of(request.scope, request.headers)
        return error_response(ApiError(500, "the fake hit an unexpected error; see its log"), rid)

    def _endpoint(self, name: str, handler: Handler, *, auth: bool = True, body: bool = False) -> Route_:
        if self.state.shared:
            return self._shared_endpoint(name, handler, auth=auth, body=body)

        async def endpoint(request: Request) -> Response:
            headers = request.headers
            rid = request_id_of(request.scope, headers)
            # Only authenticated traffic is recorded, so only it is timed.
            started = self.wall() if auth else 0.0
            t0 = self.clock() if auth else 0.0
            principal: Principal | None = None
            verdict: Verdict | None = None
            try:
                raw = await self._read_body(request) if body else b""
                if auth:
                    host = client_host(request)
                    self._check_failures(host)
                    try:
                        principal = self.auth.authenticate(headers, request.method, request.scope, raw)
                    except WrongCredential:
                        self.auth_failures.failed(host)
                        raise
                    verdict = self.limiter.take(
                        principal.credential, headers.get("x-mock-session"), principal.tenant.rate_limit
                    )
                    if not verdict.allowed:
                        # The except clause below adds limit_headers (Retry-After included).
                        raise ApiError(429, f"rate limit exceeded; retry in {verdict.retry_after} s")
                response = await handler(request, Call(principal, raw, rid, None))
            except ApiError as exc:
                if verdict is not None:
                    exc.headers.update(verdict.headers)
                response = error_response(exc, rid)
            else:
                # Appending raw headers skips MutableHeaders' scan: this runs on every request.
                # (ASGI header names are lower case: the fault layer reads them so.)
                raw_headers = response.raw_headers
                raw_headers.append((b"x-request-id", rid.encode("latin-1")))
                if verdict is not None:
                    raw_headers.extend(verdict.raw)
            if principal is not None:
                self.traffic.record(
                    principal.tenant.name, name, response.status_code, started, self.clock() - t0
                )
            return response

        return endpoint

    def _shared_endpoint(self, name: str, handler: Handler, *, auth: bool, body: bool) -> Route_:
        """The pipeline with a shared state: the token is a ticket taken with the first state
        operation (or after the handler, if it made none); errors after that keep its headers.
        The request's fault arrival, when a rule may match it, goes in that same round trip
        (see :mod:`mock_server._prelude`); a fault that fires there unwinds the handler
        (``Preempted``), its ``finally`` included, without taking the token."""
        state = self.state

        async def endpoint(request: Request) -> Response:
            headers = request.headers
            rid = request_id_of(request.scope, headers)
            started = self.wall() if auth else 0.0
            t0 = self.clock() if auth else 0.0
            principal: Principal | None = None
            ticket: Ticket | None = None
            try:
                raw = await self._read_body(request) if body else b""
                if auth:
                    host = client_host(request)
                    self._check_failures(host)
                    token = self.auth.unknown_token(headers)
                    if token is not None:
                        await state.resolve_token(token)
                    try:
                        principal = self.auth.authenticate(headers, request.method, request.scope, raw)
                    except WrongCredential:
                        # A fault that fires on arrival answers instead: not a failed login then.
                        await state.settle()
                        self.auth_failures.failed(host)
                        raise
                    # A signature used through another process is a replay here too: the state
                    # remembers it with the request's first operation (see Ticket).
                    ticket = Ticket(
                        principal.credential,
                        headers.get("x-mock-session"),
                        principal.tenant.rate_limit,
                        headers.get("x-signature"),
                        self._replay_ttl,
                    )
                try:
                    response = await handler(request, Call(principal, raw, rid, ticket))
                finally:
                    # Whatever the handler answered, the request costs its token (429 first).
                    if ticket is not None and ticket.verdict is None and not ticket.replayed:
                        verdict = await state.admit(ticket)
                        if not verdict.allowed:
                            raise Refused(verdict)
            except Refused as refused:
                verdict = refused.verdict
                exc = ApiError(429, f"rate limit exceeded; retry in {verdict.retry_after} s")
                exc.headers.update(verdict.headers)
                response = error_response(exc, rid)
            except ApiError as exc:
                if ticket is not None and ticket.verdict is not None:
                    exc.headers.update(ticket.verdict.headers)
                response = error_response(exc, rid)
            else:
                raw_headers = response.raw_headers
                raw_headers.append((b"x-request-id", rid.encode("latin-1")))
                if ticket is not None and ticket.verdict is not None:
                    raw_headers.extend(ticket.verdict.raw)
            # A request that made no state operation has its fault arrival counted now (one
            # round trip); one a fault preempts is neither answered nor recorded here.
            await state.settle()
            if principal is not None:
                state.record(principal.tenant.name, name, response.status_code, started, self.clock() - t0)
            return response

        return endpoint

    def _check_failures(self, host: str | None) -> None:
        """A 429 while ``host`` has failed authentication too often."""
        wait = self.auth_failures.wait(host)
        if wait:
            raise ApiError(
                429,
                f"too many failed authentication attempts from this address; retry in {wait} s",
                headers={"Retry-After": self.limiter.retry_after(wait)},
            )

    async def _read_body(self, request: Request) -> bytes:
        try:
            return await read_body(
                request.headers.get("content-length"), request.stream(), self.config.max_body_bytes
            )
        except BodyTooLarge as exc:
            raise ApiError(413, str(exc)) from None

    # -- public endpoints ----------------------------------------------------------------
    async def health(self, request: Request, call: Call) -> Response:
        # The body changes once a second; build it once a second.
        second = int(self.wall())
        if second != self._health_second:
            stamp = now_iso(second)
            self._health_body = dumps({"status": "ok", "version": VERSION, "timestamp": stamp})
            self._health_second = second
        return Response(self._health_body, media_type=JSON)

    async def openapi(self, request: Request, call: Call) -> Response:
        return Response(self._openapi, media_type=JSON)


def _by_method(handlers: dict[str, Route_]) -> Route_:
    if len(handlers) == 1:
        return next(iter(handlers.values()))
    if "GET" in handlers:
        handlers = {**handlers, "HEAD": handlers["GET"]}

    async def endpoint(request: Request) -> Response:
        return await handlers[request.method](request)

    return endpoint


__all__ = ["VERSION", "Api"]
