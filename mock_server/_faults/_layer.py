"""The fault layer: the outermost ASGI app, in front of the fake API.

Every HTTP request passes here first. ``/__admin/...`` is served here and never reaches the API.
Any other request gets its request id (the client's ``X-Request-ID`` if sane, else a new one,
left in ``scope["state"]["request_id"]`` for the API), a journal entry, and a decision made
synchronously on arrival, so decisions follow arrival order whatever happens later. Then the
layer delays it, answers it with a fault, breaks its connection, or hands it to the API and
perhaps alters what comes back.

Delays are futures resolved by ``loop.call_later`` (what ``asyncio.sleep`` does), registered
so that an admin reset can release them at once: a released request gets a 503. A delay is never
shorter than asked (see :class:`_Timer`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import ipaddress
import math
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._ids import new_request_id
from .._ratelimit import FailureLimiter
from .._untrusted import bounded, bounded_or_none, session_id
from . import _inject, _transport
from ._engine import Decision, Engine
from ._errors import FaultConfigError
from ._journal import FIELD_CHARS, Entry, Journal, redact_query
from ._metrics import Metrics
from ._model import Fault, RuleSet
from ._parse import parse_fault_header

TenantOf = Callable[[Mapping[str, str]], str | None]
# The request headers the layer itself reads, picked out in one pass over the raw list.
_WANTED = frozenset(
    (b"x-request-id", b"x-mock-session", b"x-mock-fault", b"idempotency-key", b"x-api-key", b"authorization")
)


_NOTED = frozenset((b"retry-after", b"x-ratelimit-remaining", b"x-ratelimit-reset", b"ratelimit"))


class _LazyHeaders:
    """All request headers, decoded only if a rule asks for one (most rules never do)."""

    __slots__ = ("_headers", "_scope")

    def __init__(self, scope: Scope) -> None:
        self._scope = scope
        self._headers: Headers | None = None

    def get(self, name: str, default: str | None = None, /) -> str | None:
        if self._headers is None:
            self._headers = Headers(scope=self._scope)
        return self._headers.get(name, default)


OnReset = Callable[[str | None], None]

_ELAPSED, _GONE, _CANCELLED, _SHUTDOWN = "elapsed", "gone", "cancelled", "shutdown"
_LOOPBACK_NAMES = frozenset({"localhost", "testclient"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _no_tenant(headers: Mapping[str, str]) -> str | None:
    return None


def _no_reset(session: str | None) -> None:
    return None


def _resolve(fut: asyncio.Future[str], value: str) -> None:
    if not fut.done():
        fut.set_result(value)


class _Timer:
    """Resolves ``fut`` as elapsed once ``delay_s`` has passed, never before.

    uvloop's timers count whole milliseconds from a clock read at the start of the loop's turn,
    so one can fire up to a millisecond early: an injected 30 ms would then be 29.5. The timer
    checks the time when it fires and waits out what is left.
    """

    __slots__ = ("_loop", "_fut", "_deadline", "_handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[str], delay_s: float) -> None:
        self._loop = loop
        self._fut = fut
        self._deadline = time.monotonic() + delay_s
        self._handle = loop.call_later(delay_s, self._fire)

    def _fire(self) -> None:
        left = self._deadline - time.monotonic()
        if left > 0:
            self._handle = self._loop.call_later(left, self._fire)
        else:
            _resolve(self._fut, _ELAPSED)

    def cancel(self) -> None:
        self._handle.cancel()


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a scope's client address) is this machine."""
    if host is None:
        return False
    if host in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _sane_request_id(value: str | None) -> bool:
    return value is not None and 0 < len(value) <= 128 and value.isascii() and value.isprintable()


class FaultLayer:
    """Wraps the fake API with fault rules, the request journal and the admin API.

    ``rules`` are the start-up rules (``POST /__admin/reset`` comes back to them); ``seed``
    overrides theirs (default 0). ``X-Mock-Fault`` is honoured only with
    ``allow_fault_header``. ``/__admin`` answers loopback clients only, unless ``admin_token``
    is set: then every admin call needs ``X-Admin-Token`` and may come from anywhere.
    ``tenant_of`` names the tenant a request's credentials belong to (without verifying them);
    ``on_reset`` is called with the session (None: all) when an admin reset should refill
    the API's rate-limit buckets. ``rate_limit`` is the limit an injected 429 advertises.
    ``journal_max_bytes`` bounds the journal's memory; ``session_ttl`` is how long an idle
    ``X-Mock-Session`` keeps its counters; ``max_body_bytes`` bounds admin request bodies.
    ``auth_failures``, when given, counts wrong ``X-Admin-Token`` values per client address
    (with the API's failed logins) and makes a throttled address wait.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        rules: RuleSet | None = None,
        seed: int | None = None,
        allow_fault_header: bool = False,
        admin_token: str | None = None,
        journal_size: int = 10_000,
        journal_max_bytes: int = 256 * 1024 * 1024,
        session_ttl: float = 600.0,
        max_body_bytes: int = 1024 * 1024,
        auth_failures: FailureLimiter | None = None,
        tenant_of: TenantOf | None = None,
        on_reset: OnReset | None = None,
        rate_limit: int = 600,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        from ._admin import build_admin

        self.app = app
        self.initial_rules = rules if rules is not None else RuleSet()
        self.seed = seed if seed is not None else (self.initial_rules.seed or 0)
        self.allow_fault_header = allow_fault_header
        self.rate_limit = rate_limit
        self.clock = clock
        self.wall = wall
        self.max_body_bytes = max_body_bytes
        self.engine = Engine(self.initial_rules, seed=self.seed, clock=clock, session_ttl=session_ttl)
        self.journal = Journal(journal_size, max_bytes=journal_max_bytes)
        self._auth_failures = auth_failures
        self.metrics = Metrics()
        self.in_flight = 0
        self._admin_token = admin_token.encode() if admin_token is not None else None
        self._tenant_of = tenant_of or _no_tenant
        self._on_reset = on_reset or _no_reset
        self._held: dict[asyncio.Future[str], str | None] = {}
        self._admin = build_admin(self)

    def __repr__(self) -> str:
        return f"FaultLayer(rules={len(self.engine.rules)}, seed={self.seed})"

    # -- ASGI entry -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/__admin") and (len(path) == 8 or path[8] == "/"):
            await self._serve_admin(scope, receive, send)
            return

        started = self.clock()
        headers: dict[str, str] = {}
        for key, value in scope["headers"]:
            if key in _WANTED:
                headers[key.decode("latin-1")] = value.decode("latin-1")
        client_rid = headers.get("x-request-id")
        client_given = _sane_request_id(client_rid)
        rid: str = client_rid if client_given else new_request_id()  # type: ignore[assignment]
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = rid
        # Bounded: the session keys counters and journal entries a client can make by the million.
        session = session_id(headers.get("x-mock-session"))
        tenant = self._tenant_of(headers)
        method: str = scope["method"]

        bad_header: FaultConfigError | None = None
        decision: Decision | None = None
        header_fault = headers.get("x-mock-fault") if self.allow_fault_header else None
        if header_fault is not None:
            try:
                decision = self.engine.decide_header(parse_fault_header(header_fault), session)
            except FaultConfigError as exc:
                bad_header = exc
        else:
            decision = self.engine.decide(method, path, tenant, session, _LazyHeaders(scope))

        query = scope.get("query_string", b"")
        entry = Entry(
            seq=self.journal.next_seq(),
            request_id=rid,
            client_request_id=client_given,
            method=bounded(method, FIELD_CHARS["method"]),
            path=bounded(path, FIELD_CHARS["path"]),
            query=bounded(redact_query(query.decode("latin-1")), FIELD_CHARS["query"]) if query else "",
            tenant=tenant,
            session=session,
            idempotency_key=bounded_or_none(headers.get("idempotency-key"), FIELD_CHARS["idempotency_key"]),
            arrived_at=self.wall(),
            arrived_mono=started,
            fault=None if decision is None else (decision.fault.type if decision.fault else "latency"),
            rule=None if decision is None else decision.rule,
            rules=() if decision is None else decision.rules,
            injected_delay_s=0.0 if decision is None else decision.delay_s,
        )
        self.journal.record(entry)
        if method in _BODY_METHODS:
            receive = _digesting(receive, entry)
        self.in_flight += 1
        try:
            if bad_header is not None:
                await self._answer_bad_header(bad_header, entry, send)
            elif decision is None:
                await self.app(scope, receive, self._observing(entry, send))
            else:
                await self._inject(decision, entry, scope, receive, send)
        finally:
            self.in_flight -= 1
            self._finish(entry, scope)

    def _observing(self, entry: Entry, send: Send) -> Send:
        async def observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry.status = message["status"]
                self._note_headers(entry, message.get("headers", ()))
            elif not message.get("more_body", False) and message["type"] == "http.response.body":
                entry.outcome = "response"
            await send(message)

        return observed

    def _note_headers(self, entry: Entry, headers: Any) -> None:
        """Keep what the compliance report needs from the response: when to come back."""
        ratelimit: Any = None
        for key, value in headers:
            # ASGI header names are lowercase already; most headers are of no interest.
            if key not in _NOTED:
                continue
            name = bytes(key)
            if name == b"retry-after":
                entry.retry_after_s = self._retry_after_seconds(bytes(value).decode("latin-1"))
            elif name == b"x-ratelimit-remaining":
                entry.ratelimit_remaining = _int_or_none(value)
            elif name == b"x-ratelimit-reset":
                reset = _int_or_none(value)
                entry.ratelimit_reset_at = float(reset) if reset is not None else None
            elif name == b"ratelimit":
                ratelimit = value
        # The IETF header's t= is the reset only where X-RateLimit-Reset did not say (every API
        # response has both: parse it only when needed).
        if entry.ratelimit_reset_at is None and ratelimit is not None:
            t_seconds: float | None = None
            for part in bytes(ratelimit).decode("latin-1").split(";"):
                if part.strip().startswith("t="):
                    t_seconds = _float_or_none(part.strip()[2:])
            if t_seconds is not None:
                entry.ratelimit_reset_at = self.wall() + t_seconds

    def _retry_after_seconds(self, value: str) -> float | None:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - self.wall())
        except (TypeError, ValueError, IndexError, OverflowError):
            return None

    def _finish(self, entry: Entry, scope: Scope) -> None:
        entry.duration_s = self.clock() - entry.arrived_mono
        if entry.outcome is None:
            entry.outcome = "response" if entry.status is not None else "error"
        route = scope.get("route")
        self.metrics.observe(entry, self.metrics.route_label(getattr(route, "path", None), entry.path))
        self.journal.complete(entry)

    async def _answer_bad_header(self, exc: FaultConfigError, entry: Entry, send: Send) -> None:
        body = _inject.error_body(400, str(exc), entry.request_id)
        headers = [
            (b"content-type", _inject.JSON),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", entry.request_id.encode()),
        ]
        entry.status, entry.outcome = 400, "response"
        await _inject.send_response(send, 400, headers, body)

    # -- holding requests -----------------------------------------------------------------------

    async def _hold(
        self, delay_s: float | None, session: str | None, scope: Scope, receive: Receive | None = None
    ) -> str:
        """Wait ``delay_s`` (None: forever); ``elapsed``, or ``cancelled`` by an admin reset, or
        ``shutdown`` when the server stops, or ``gone`` when ``receive`` is given and the client
        disconnects first."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        timer = _Timer(loop, fut, delay_s) if delay_s is not None else None
        watcher: asyncio.Task[None] | None = None
        if receive is not None:
            watcher = loop.create_task(_inject.until_disconnect(receive))
            watcher.add_done_callback(lambda _: _resolve(fut, _GONE))
        self._held[fut] = session
        extension = _transport.extension_of(scope)
        if extension is not None:
            extension["release"] = functools.partial(_resolve, fut, _SHUTDOWN)
        try:
            return await fut
        finally:
            self._held.pop(fut, None)
            if extension is not None:
                extension.pop("release", None)
            if timer is not None:
                timer.cancel()
            if watcher is not None and not watcher.done():
                watcher.cancel()

    def cancel_held(self, session: str | None = None, *, all_sessions: bool = True) -> int:
        """Release requests held by delays and timeouts (every one, or one session's)."""
        released = 0
        for fut, owner in list(self._held.items()):
            if all_sessions or owner == session:
                _resolve(fut, _CANCELLED)
                released += 1
        return released

    @property
    def held(self) -> int:
        return len(self._held)

    # -- injecting ------------------------------------------------------------------------------

    async def _inject(
        self, decision: Decision, entry: Entry, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if decision.delay_s > 0:
            held = await self._hold(decision.delay_s, entry.session, scope)
            if held != _ELAPSED:
                await self._answer_cancelled(entry, send, held)
                return
        fault = decision.fault
        if fault is None:
            await self.app(scope, receive, self._observing(entry, send))
            return
        kind = fault.type
        if kind == "status":
            # Read (and so fingerprint) the body the API never sees: the compliance report
            # tells a retry of this request from a new one with a different body.
            await _inject.drain(receive)
            status, headers, body = _inject.status_response(
                fault, entry.request_id, self.wall(), rate_limit=self.rate_limit, rule=decision.rule
            )
            self._note_headers(entry, headers)
            entry.status, entry.outcome = status, "response"
            await _inject.send_response(send, status, headers, body)
        elif kind == "timeout":
            await self._timeout(fault, entry, scope, receive, send)
        elif kind in ("reset", "close"):
            transport = self._transport(scope, send, kind)
            if kind == "close":
                await _inject.drain(receive)
                _transport.close(transport)
                entry.outcome = "closed"
            else:
                await _inject.drain(receive)
                _transport.reset(transport)
                entry.outcome = "reset"
            await _inject.wait_closed(receive)
        else:
            await self._alter(fault, entry, scope, receive, send)

    def _transport(self, scope: Scope, send: Send, kind: str) -> asyncio.Transport:
        transport = _transport.transport_of(scope, send)
        if transport is None:
            raise RuntimeError(
                f"the {kind!r} fault needs the connection: serve the app with uvicorn "
                "(uvicorn.Config(app, http=UVICORN_HTTP))"
            )
        return transport

    async def _timeout(self, fault: Fault, entry: Entry, scope: Scope, receive: Receive, send: Send) -> None:
        if not await _inject.drain(receive):
            entry.outcome = "client_gone"
            return
        outcome = await self._hold(fault.hang_s, entry.session, scope, receive)
        if outcome in (_CANCELLED, _SHUTDOWN):
            await self._answer_cancelled(entry, send, outcome)
        elif outcome == _GONE:
            entry.outcome = "client_gone"
        else:
            _transport.close(self._transport(scope, send, "timeout"))
            entry.outcome = "timeout"
            await _inject.wait_closed(receive)

    async def _alter(self, fault: Fault, entry: Entry, scope: Scope, receive: Receive, send: Send) -> None:
        """Faults that change the API's own response: truncate, malformed_json,
        wrong_content_type, slow_body."""
        captured = await _inject.capture(self.app, scope, receive)
        entry.status = captured.status
        self._note_headers(entry, captured.headers)
        body = bytes(captured.body)
        kind = fault.type
        if kind == "truncate":
            transport = self._transport(scope, send, kind)
            if body and scope["method"] != "HEAD":
                cut = min(int(len(body) * (fault.fraction or 0.0)), len(body) - 1)
                headers = captured.replaced(b"content-length", str(len(body)).encode())
                headers = [(k, v) for k, v in headers if k.lower() != b"transfer-encoding"]
                await send({"type": "http.response.start", "status": captured.status, "headers": headers})
                await send({"type": "http.response.body", "body": body[:cut], "more_body": True})
            _transport.close(transport)
            entry.outcome = "truncated"
            await _inject.wait_closed(receive)
            return
        if kind == "malformed_json":
            body = _inject.corrupt_json(body)
            headers = captured.replaced(b"content-length", str(len(body)).encode())
        elif kind == "wrong_content_type":
            content_type = (fault.content_type or _inject.DEFAULT_WRONG_TYPE).encode()
            headers = captured.replaced(b"content-type", content_type)
        else:
            headers = captured.headers
        await send({"type": "http.response.start", "status": captured.status, "headers": headers})
        if kind == "slow_body":
            if not await self._trickle(fault, body, entry, scope, send):
                return
        else:
            await send({"type": "http.response.body", "body": body, "more_body": False})
        entry.outcome = "response"

    async def _trickle(self, fault: Fault, body: bytes, entry: Entry, scope: Scope, send: Send) -> bool:
        """Send ``body`` slowly; False when an admin reset or the client cut it short."""
        if fault.bytes_per_s is not None:
            chunk = max(1, math.ceil(fault.bytes_per_s * 0.05))
            pause = chunk / fault.bytes_per_s
        else:
            chunk = fault.chunk_bytes or 16
            pause = (fault.chunk_delay_ms or 0.0) / 1000.0
        transport = _transport.transport_of(scope, send)
        for start in range(0, len(body), chunk):
            piece = body[start : start + chunk]
            last = start + chunk >= len(body)
            await send({"type": "http.response.body", "body": piece, "more_body": not last})
            if last:
                return True
            if transport is not None and transport.is_closing():
                entry.outcome = "client_gone"
                return False
            if await self._hold(pause, entry.session, scope) != _ELAPSED:
                entry.outcome = "cancelled"
                if transport is not None:
                    _transport.close(transport)
                return False
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return True

    async def _answer_cancelled(self, entry: Entry, send: Send, why: str) -> None:
        message = "the server is shutting down" if why == _SHUTDOWN else "request cancelled by an admin reset"
        fault = Fault("status", status=503, message=message)
        status, headers, body = _inject.status_response(fault, entry.request_id, self.wall())
        entry.status, entry.outcome = status, "cancelled"
        await _inject.send_response(send, status, headers, body)

    # -- admin ----------------------------------------------------------------------------------

    async def _serve_admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._admin_refusal(scope)
        if refusal is not None:
            status, message, extra = refusal
            body = _inject.error_body(status, message, new_request_id())
            headers = [(b"content-type", _inject.JSON), (b"content-length", str(len(body)).encode())]
            if status == 401:
                headers.append((b"www-authenticate", b'AdminToken realm="mock-server-admin"'))
            headers.extend(extra)
            await _inject.send_response(send, status, headers, body)
            return
        await self._admin(scope, receive, send)

    def _admin_refusal(self, scope: Scope) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        client = scope.get("client")
        host = client[0] if client else None
        if self._admin_token is not None:
            failures = self._auth_failures
            wait = failures.wait(host) if failures is not None else 0
            if wait:
                message = f"too many failed authentication attempts from this address; retry in {wait} s"
                return 429, message, [(b"retry-after", str(wait).encode())]
            given = Headers(scope=scope).get("x-admin-token")
            if given is None or not hmac.compare_digest(given.encode(), self._admin_token):
                if given is not None and failures is not None:
                    failures.failed(host)
                return 401, "the admin API needs a valid X-Admin-Token header", []
            return None
        if not is_loopback(host):
            message = "the admin API answers loopback clients only (start the server with --admin-token)"
            return 403, message, []
        return None

    def reset(self, session: str | None = None) -> dict[str, Any]:
        """``POST /__admin/reset``: everything (rules back to the start-up set, counters,
        journal, rate-limit buckets, held requests), or one session's counters, journal entries,
        buckets and held requests."""
        if session is None:
            self.engine.replace(self.initial_rules.rules)
            dropped = self.journal.clear()
            released = self.cancel_held()
        else:
            session = session_id(session)
            self.engine.reset_counters(session, all_sessions=False)
            dropped = self.journal.clear(session)
            released = self.cancel_held(session, all_sessions=False)
        self._on_reset(session)
        return {"session": session, "journal_entries_dropped": dropped, "held_requests_cancelled": released}


def _digesting(receive: Receive, entry: Entry) -> Receive:
    """``receive``, fingerprinting the request body into ``entry.body_digest`` as it is read."""
    digest = hashlib.blake2b(digest_size=16)

    async def digesting() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            digest.update(message.get("body", b""))
            if not message.get("more_body", False):
                entry.body_digest = digest.hexdigest()
        return message

    return digesting


def _int_or_none(value: Any) -> int | None:
    try:
        return int(bytes(value))
    except ValueError:
        return None


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
