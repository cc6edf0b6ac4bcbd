"""The ResonanceOS v6 API itself: routes, handlers and the request pipeline.

Each API request goes: read the body (413) → wait out failed authentications from its
address (429) → authenticate (401) → take a rate-limit token (429) → content type (415) →
parse (400) → validate (422) → handler. Handlers
raise :class:`ApiError`; one wrapper renders it, adds ``X-Request-ID`` and the rate-limit
headers, and records the traffic that analytics report on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import _generate
from ._auth import Authenticator, Principal, WrongCredential
from ._config import ServerConfig
from ._cursors import Cursors, new_key
from ._errors import ApiError, error_response
from ._ids import new_request_id
from ._inputs import (
    NAME,
    BatchIn,
    GenerateIn,
    ProfileIn,
    ProfileUpdateIn,
    bad_query,
    parse_json,
    query_choice,
    query_int,
    validate,
)
from ._openapi import DATE_RANGE_PATTERN, IDEMPOTENCY_PATTERN, openapi_document
from ._ratelimit import FailureLimiter, RateLimiter, Verdict
from ._request import Endpoint, RawResponse
from ._routing import DirectRouter
from ._store import IdempotencyRecord, Profile, Store
from ._tenants import TenantDirectory
from ._traffic import TIMEFRAMES, Traffic, day_of
from ._untrusted import BodyTooLarge, read_body

VERSION = "6.0.0"
JSON = "application/json"
M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Request, Principal, bytes, str], Awaitable[Response]]
DATE_RANGE = re.compile(DATE_RANGE_PATTERN)
IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_PATTERN)
# Headers of a first response that a replay repeats; the rest (request id, rate limits) are fresh.
_REPLAYED_HEADERS = ("content-type", "location", "etag", "last-modified")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(obj), status_code=status, headers=headers, media_type=JSON)


def request_id_of(scope: MutableMapping[str, Any], headers: Headers) -> str:
    """The request id the fault layer chose, else the client's if sane, else a new one."""
    state = scope.get("state")
    if state:
        rid = state.get("request_id")
        if rid:
            return str(rid)
    rid = headers.get("x-request-id")
    if rid and len(rid) <= 128 and rid.isascii() and rid.isprintable():
        return rid
    return new_request_id()


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        # Only February 29 of a common year gets here (the pattern admits no other non-date).
        return date.fromisoformat(text[:8] + "28")


def _now_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in header.split(","))


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
            self.directory, token_ttl=config.token_ttl, signature_window=config.signature_window, wall=wall
        )
        self.limiter = RateLimiter(retry_after_format=config.retry_after_format, clock=clock, wall=wall)
        self.auth_failures = FailureLimiter(config.auth_failure_limit, clock=clock)
        self.cursors = Cursors(config.cursor_key or new_key())
        self.traffic = Traffic(wall=wall)
        self.store = Store(config.db, wall=wall)
        self._cache_control = f"private, max-age={config.cache_max_age}"
        self._idem_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._openapi = dumps(openapi_document(VERSION))
        self._health_second = -1
        self._health_body = b""

    # -- application ---------------------------------------------------------------------
    def app(self) -> Starlette:
        e = self._endpoint
        table: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {
            "/health": {"GET": e("GET /health", self.health, auth=False)},
            "/openapi.json": {"GET": e("GET /openapi.json", self.openapi, auth=False)},
            "/oauth/token": {"POST": e("POST /oauth/token", self.token, auth=False, body=True)},
            "/hr_generate": {"POST": e("POST /hr_generate", self.generate, body=True)},
            "/hr_generate/batch": {"POST": e("POST /hr_generate/batch", self.generate_batch, body=True)},
            "/profiles": {
                "GET": e("GET /profiles", self.list_profiles),
                "POST": e("POST /profiles", self.create_profile, body=True),
            },
            "/profiles/{tenant}/{profile_name}": {
                "GET": e("GET /profiles/{tenant}/{profile_name}", self.get_profile),
                "PUT": e("PUT /profiles/{tenant}/{profile_name}", self.update_profile, body=True),
                "DELETE": e("DELETE /profiles/{tenant}/{profile_name}", self.delete_profile),
            },
            "/analytics/usage": {"GET": e("GET /analytics/usage", self.usage)},
            "/analytics/performance": {"GET": e("GET /analytics/performance", self.performance)},
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
        await self.store.open()
        await self.store.idempotency_purge(self.config.idempotency_ttl)
        flusher = asyncio.create_task(self._flush_forever())
        try:
            yield
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await self.flush()
            await self.store.close()

    async def flush(self) -> None:
        """Write pending usage counters to SQLite."""
        rows = self.traffic.take_pending()
        if rows:
            await self.store.add_usage(rows)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            await self.flush()

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

    def _endpoint(
        self, name: str, handler: Handler, *, auth: bool = True, body: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
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
                    host = _client_host(request)
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
                response = await handler(request, principal, raw, rid)  # type: ignore[arg-type]
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

    @staticmethod
    def _json(request: Request, raw: bytes, model: type[M]) -> M:
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != JSON and not (media.startswith("application/") and media.endswith("+json")):
            raise ApiError(415, f"expected Content-Type: application/json, got {media[:60] or 'none'!r}")
        return validate(model, parse_json(raw))

    # -- public endpoints ----------------------------------------------------------------
    async def health(self, request: Request, _p: Principal, _raw: bytes, _rid: str) -> Response:
        # The body changes once a second; build it once a second.
        second = int(self.wall())
        if second != self._health_second:
            stamp = _now_iso(second)
            self._health_body = dumps({"status": "ok", "version": VERSION, "timestamp": stamp})
            self._health_second = second
        return Response(self._health_body, media_type=JSON)

    async def openapi(self, request: Request, _p: Principal, _raw: bytes, _rid: str) -> Response:
        return Response(self._openapi, media_type=JSON)

    async def token(self, request: Request, _p: Principal, raw: bytes, rid: str) -> Response:
        def oauth_error(status: int, error: str, description: str) -> Response:
            # RFC 6749 section 5.2 shapes this endpoint's errors, not the API's error envelope.
            headers = {"Cache-Control": "no-store"}
            if status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="resonanceos"'
            return json_response(
                {"error": error, "error_description": description, "request_id": rid}, status, headers
            )

        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            return oauth_error(400, "invalid_request", "send the form as application/x-www-form-urlencoded")
        try:
            form = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
        except (UnicodeDecodeError, ValueError):
            return oauth_error(400, "invalid_request", "the form is not valid UTF-8 urlencoded data")
        grant = form.get("grant_type")
        if grant is None:
            return oauth_error(400, "invalid_request", "grant_type is required")
        if grant != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return oauth_error(401, "invalid_client", "the Basic credential is malformed")
            client_id, secret = user, password
        if not client_id or secret is None:
            return oauth_error(401, "invalid_client", "client_id and client_secret are required")
        host = _client_host(request)
        # A throttled address gets the API's 429 (the OAuth error set has no such error).
        self._check_failures(host)
        issued = self.auth.issue_token(client_id, secret)
        if issued is None:
            self.auth_failures.failed(host)
            return oauth_error(401, "invalid_client", "unknown client or wrong secret")
        token, ttl = issued
        return json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": ttl},
            headers={"Cache-Control": "no-store"},
        )

    # -- generation ----------------------------------------------------------------------
    async def generate(self, request: Request, p: Principal, raw: bytes, rid: str) -> Response:
        async def produce() -> Response:
            data = self._json(request, raw, GenerateIn)
            vector = self._options(p, data.tenant, data.profile_name)
            return json_response(self._generate(p, data.prompt, data, vector, rid))

        return await self._idempotent(request, p, raw, produce)

    async def generate_batch(self, request: Request, p: Principal, raw: bytes, rid: str) -> Response:
        async def produce() -> Response:
            data = self._json(request, raw, BatchIn)
            vector = self._options(p, data.tenant, data.profile_name)
            results: list[dict[str, Any]] = []
            for index, prompt in enumerate(data.prompts):
                if not 1 <= len(prompt) <= 10_000:
                    msg = f"prompts[{index}]: must be 1..10000 characters, got {len(prompt)}"
                    results.append(
                        {
                            "index": index,
                            "status": "error",
                            "error": {"code": "validation_error", "message": msg, "request_id": rid},
                        }
                    )
                else:
                    results.append(
                        {
                            "index": index,
                            "status": "ok",
                            "result": self._generate(p, prompt, data, vector, rid),
                        }
                    )
            return json_response({"results": results})

        return await self._idempotent(request, p, raw, produce)

    def _options(self, p: Principal, tenant: str | None, profile_name: str | None) -> list[float] | None:
        if tenant is not None and tenant != p.tenant.name:
            raise ApiError(403, "tenant must be your own tenant")
        if profile_name is None:
            return None
        profile = self.store.get(p.tenant.name, profile_name)
        if profile is None:
            raise ApiError(404, f"no profile named {profile_name!r}")
        return list(profile.hrv_vector)

    def _generate(
        self, p: Principal, prompt: str, data: GenerateIn | BatchIn, vector: list[float] | None, rid: str
    ) -> dict[str, Any]:
        tenant = p.tenant.name
        content, hrv, tokens = _generate.generate(
            tenant, prompt, data.profile_name, data.max_length, data.temperature, vector
        )
        return {
            "content": content,
            "hrv_vector": hrv,
            "metadata": {
                "tenant": tenant,
                "profile_name": data.profile_name,
                "model": _generate.MODEL,
                "tokens": tokens,
                "temperature": data.temperature,
                "max_length": data.max_length,
                "request_id": rid,
                "created_at": _now_iso(self.wall()),
            },
        }

    async def _idempotent(
        self, request: Request, p: Principal, raw: bytes, produce: Callable[[], Awaitable[Response]]
    ) -> Response:
        key = request.headers.get("idempotency-key")
        if key is None:
            return await produce()
        if not IDEMPOTENCY_KEY.fullmatch(key):
            raise ApiError(
                400,
                "Idempotency-Key must be 1..255 printable ASCII characters,"
                " not starting or ending with a space",
            )
        tenant = p.tenant.name
        fingerprint = hashlib.sha256(f"{request.method} {request.url.path}\n".encode() + raw).hexdigest()
        lock = self._idem_locks.setdefault((tenant, key), asyncio.Lock())
        # Concurrent repeats of one key wait for the first, then replay it: one effect, one answer.
        async with lock:
            record = await self.store.idempotency_get(tenant, key, self.config.idempotency_ttl)
            if record is not None:
                if not hmac.compare_digest(record.fingerprint, fingerprint):
                    raise ApiError(
                        422,
                        "this Idempotency-Key was used with a different request body",
                        details=[
                            {"loc": ["header", "Idempotency-Key"], "msg": "reused with a different body"}
                        ],
                    )
                headers = dict(record.headers)
                headers["Idempotent-Replayed"] = "true"
                return Response(record.body, status_code=record.status, headers=headers)
            response = await produce()
            if 200 <= response.status_code < 300:
                kept = {k: v for k, v in response.headers.items() if k in _REPLAYED_HEADERS}
                await self.store.idempotency_put(
                    tenant,
                    key,
                    IdempotencyRecord(
                        fingerprint, response.status_code, kept, bytes(response.body), self.wall()
                    ),
                )
        if not lock.locked() and len(self._idem_locks) > 1000:
            self._idem_locks = {k: v for k, v in self._idem_locks.items() if v.locked()}
        return response

    # -- profiles ------------------------------------------------------------------------
    def _validators(self, profile: Profile) -> dict[str, str]:
        return {"ETag": profile.etag, "Last-Modified": profile.last_modified}

    def _own(self, p: Principal, request: Request) -> tuple[str, str]:
        tenant = request.path_params["tenant"]
        name = request.path_params["profile_name"]
        if tenant != p.tenant.name:
            raise ApiError(403, "profiles of another tenant are not visible to this credential")
        if not NAME.fullmatch(name):
            raise ApiError(
                422,
                "profile_name: must be 1..64 characters of [A-Za-z0-9_.-], starting with a"
                " letter, digit or underscore",
                details=[{"loc": ["path", "profile_name"], "msg": "invalid profile name"}],
            )
        return tenant, name

    async def list_profiles(self, request: Request, p: Principal, _raw: bytes, _rid: str) -> Response:
        query = request.query_params
        limit = query_int(query, "limit", 20, 1, 100)
        cursor = query.get("cursor")
        after = None if cursor is None else self.cursors.decode(cursor, p.tenant.name)
        items, more = self.store.page(p.tenant.name, after, limit)
        next_cursor = self.cursors.encode(p.tenant.name, items[-1].name) if more else None
        body = b"".join(
            (
                b'{"items":[',
                b",".join(i.body for i in items),
                b'],"next_cursor":',
                dumps(next_cursor),
                b',"has_more":',
                b"true" if more else b"false",
                b"}",
            )
        )
        etag = f'W/"{hashlib.sha256(body).hexdigest()[:16]}"'
        headers = {"ETag": etag, "Cache-Control": self._cache_control}
        inm = request.headers.get("if-none-match")
        if inm is not None and _etag_matches(inm, etag):
            return Response(status_code=304, headers=headers)
        return Response(body, headers=headers, media_type=JSON)

    async def create_profile(self, request: Request, p: Principal, raw: bytes, rid: str) -> Response:
        async def produce() -> Response:
            data = self._json(request, raw, ProfileIn)
            if data.tenant != p.tenant.name:
                raise ApiError(403, "tenant must be your own tenant")
            async with self.store.write_lock:
                if self.store.get(data.tenant, data.profile_name) is not None:
                    raise ApiError(409, f"profile {data.profile_name!r} already exists")
                profile = await self.store.create(
                    data.tenant, data.profile_name, data.hrv_vector, data.metadata or {}
                )
            headers = self._validators(profile)
            headers["Location"] = f"/profiles/{profile.tenant}/{profile.name}"
            return Response(profile.body, status_code=201, headers=headers, media_type=JSON)

        return await self._idempotent(request, p, raw, produce)

    async def get_profile(self, request: Request, p: Principal, _raw: bytes, _rid: str) -> Response:
        tenant, name = self._own(p, request)
        profile = self.store.get(tenant, name)
        if profile is None:
            raise ApiError(404, f"no profile named {name!r}")
        if self._not_modified(request.headers, profile):
            headers = self._validators(profile)
            headers["Cache-Control"] = self._cache_control
            return Response(status_code=304, headers=headers)
        # The hot read: raw headers, not a dict Starlette would encode on every request.
        raw = [
            (b"etag", profile.etag.encode("latin-1")),
            (b"last-modified", profile.last_modified.encode("latin-1")),
            (b"cache-control", self._cache_control.encode("latin-1")),
        ]
        return RawResponse(profile.body, raw)

    @staticmethod
    def _not_modified(headers: Headers, profile: Profile) -> bool:
        inm = headers.get("if-none-match")
        if inm is not None:
            return _etag_matches(inm, profile.etag)
        ims = headers.get("if-modified-since")
        if ims is None:
            return False
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError, IndexError, OverflowError):
            # Not an HTTP-date (a year of 11 digits, say): RFC 9110 §13.1.3 says ignore it.
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return int(profile.updated_at) <= since.timestamp()

    def _check_if_match(self, headers: Headers, profile: Profile) -> None:
        if_match = headers.get("if-match")
        if if_match is not None and not _etag_matches(if_match, profile.etag):
            raise ApiError(412, f"If-Match does not match the current ETag {profile.etag}")

    async def update_profile(self, request: Request, p: Principal, raw: bytes, _rid: str) -> Response:
        tenant, name = self._own(p, request)
        data = self._json(request, raw, ProfileUpdateIn)
        async with self.store.write_lock:
            current = self.store.get(tenant, name)
            if current is None:
                raise ApiError(404, f"no profile named {name!r}")
            self._check_if_match(request.headers, current)
            metadata = current.metadata if data.metadata is None else data.metadata
            profile = await self.store.update(current, data.hrv_vector, metadata)
        return Response(profile.body, headers=self._validators(profile), media_type=JSON)

    async def delete_profile(self, request: Request, p: Principal, _raw: bytes, _rid: str) -> Response:
        tenant, name = self._own(p, request)
        async with self.store.write_lock:
            current = self.store.get(tenant, name)
            if current is None:
                raise ApiError(404, f"no profile named {name!r}")
            self._check_if_match(request.headers, current)
            await self.store.delete(current)
        return Response(status_code=204)

    # -- analytics -----------------------------------------------------------------------
    async def usage(self, request: Request, p: Principal, _raw: bytes, _rid: str) -> Response:
        first, last = self._date_range(request.query_params.get("date_range", "7d"))
        tenant = p.tenant.name
        rows = await self.store.usage(tenant, first.isoformat(), last.isoformat())
        rows += self.traffic.pending_for(tenant, first.isoformat(), last.isoformat())
        by_endpoint: dict[str, int] = {}
        by_status: dict[str, int] = {}
        by_day: dict[str, int] = {}
        for day, endpoint, status, count in rows:
            by_endpoint[endpoint] = by_endpoint.get(endpoint, 0) + count
            by_status[str(status)] = by_status.get(str(status), 0) + count
            by_day[day] = by_day.get(day, 0) + count
        return json_response(
            {
                "tenant": tenant,
                "date_range": {"start": first.isoformat(), "end": last.isoformat()},
                "total": sum(by_day.values()),
                "by_endpoint": dict(sorted(by_endpoint.items())),
                "by_status": dict(sorted(by_status.items())),
                "by_day": [{"date": d, "requests": n} for d, n in sorted(by_day.items())],
            }
        )

    def _date_range(self, raw: str) -> tuple[date, date]:
        today = date.fromisoformat(day_of(self.wall()))
        if raw == "today":
            return today, today
        if raw in ("7d", "30d"):
            return today - timedelta(days=int(raw[:-1]) - 1), today
        start, sep, end = raw.partition("..")
        if not sep or not DATE_RANGE.fullmatch(raw):
            raise bad_query("date_range", "must be today, 7d, 30d or YYYY-MM-DD..YYYY-MM-DD")
        # A reversed range is empty rather than an error: it selects no day.
        return _day(start), _day(end)

    async def performance(self, request: Request, p: Principal, _raw: bytes, _rid: str) -> Response:
        query = request.query_params
        metric = query_choice(query, "metric_type", "all", ("latency", "errors", "throughput", "all"))
        timeframe = query_choice(query, "timeframe", "5m", tuple(TIMEFRAMES))
        report = self.traffic.performance(p.tenant.name, timeframe)
        report["metric_type"] = metric
        return json_response(report)


def _client_host(request: Request) -> str | None:
    client = request.scope.get("client")
    return client[0] if client else None


def _by_method(
    handlers: dict[str, Callable[[Request], Awaitable[Response]]],
) -> Callable[[Request], Awaitable[Response]]:
    if len(handlers) == 1:
        return next(iter(handlers.values()))
    if "GET" in handlers:
        handlers = {**handlers, "HEAD": handlers["GET"]}

    async def endpoint(request: Request) -> Response:
        return await handlers[request.method](request)

    return endpoint
